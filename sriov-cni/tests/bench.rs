//! ADD+DEL wall time of `sriov` next to Debian's `host-device` doing the same netns move with the
//! same host-local IPAM, interleaved in one run, plus `sriov` without IPAM. Prints a table.
//!
//! `cargo test --release -p sriov-cni --test bench -- --ignored --nocapture`

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const ITERATIONS: usize = 30;

fn stats(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let p95 = ((v.len() as f64 * 0.95).ceil() as usize).clamp(1, v.len()) - 1;
    (ms(v[v.len() / 2]), ms(v[p95]))
}

#[test]
#[ignore = "benchmark: run explicitly"]
fn add_del_wall_time() {
    let Some(bed) = Bed::new("bench") else { return };
    let (a, b, c) = (bed.add_vf(1), bed.add_vf(2), bed.add_vf(3));
    let pod = bed.pod("p1");
    let ipam = bed.host_local("10.77.10.0/24", "10.77.10.1");
    let sriov_conf = conf(&a.pci, json!({"ipam": ipam}));
    let hostdev_conf = json!({"cniVersion": "1.0.0", "name": "sriov-test", "type": "host-device", "device": b.netdev, "ipam": ipam});
    let bare_conf = conf(&c.pci, json!({}));
    let cycle = |bin: &str, conf: &Value, id: &str, ifname: &str| {
        let att = Att {
            container_id: id,
            netns: Some(&pod),
            ifname,
        };
        let t = Instant::now();
        ok(&bed.run(bin, "ADD", conf, &att, &[]), "ADD");
        ok(&bed.run(bin, "DEL", conf, &att, &[]), "DEL");
        t.elapsed()
    };
    let (mut s, mut h, mut n) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ITERATIONS {
        s.push(cycle(BIN, &sriov_conf, "bench-s", "net1"));
        h.push(cycle(
            "/usr/lib/cni/host-device",
            &hostdev_conf,
            "bench-h",
            "net2",
        ));
        n.push(cycle(BIN, &bare_conf, "bench-n", "net3"));
    }
    println!("\nADD+DEL wall time, {ITERATIONS} interleaved iterations (plugins spawned inside the test host netns):");
    println!("{:<36} {:>10} {:>10}", "plugin", "median ms", "p95 ms");
    for (name, v) in [
        ("sriov + host-local", s),
        ("host-device + host-local", h),
        ("sriov, no IPAM", n),
    ] {
        let (med, p95) = stats(v);
        println!("{name:<36} {med:>10.2} {p95:>10.2}");
    }
    assert_restored(&bed, &a);
    assert_restored(&bed, &c);
}
