//! CNI benchmarks: `sriov` next to Debian's `host-device` doing the same job (move a veth end
//! standing in for the VF netdev into a pod netns and back, same host-local IPAM), driven the
//! same way and interleaved in one run; then 16 ADDs at once on 16 VFs.

use std::path::{Path, PathBuf};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use sriov_tests::netbed::{Att, Bed, BedVf, CNI_PATH};

use crate::report::Section;
use crate::stats::{ms, Samples};
use crate::Settings;

/// Debian's reference plugin.
pub fn host_device() -> PathBuf {
    Path::new(CNI_PATH).join("host-device")
}

/// One plugin set-up: binary and network config.
struct Plugin {
    label: &'static str,
    ipam: &'static str,
    bin: String,
    conf: Value,
    /// Environment beyond the bed's (e.g. another state directory).
    env: Vec<(String, String)>,
}

fn sriov_conf(pci: &str, ipam: Option<&Value>) -> Value {
    let mut c = json!({"cniVersion": "1.0.0", "name": "bench", "type": "sriov", "deviceID": pci});
    if let Some(i) = ipam {
        c["ipam"] = i.clone();
    }
    c
}

fn host_device_conf(netdev: &str, ipam: Option<&Value>) -> Value {
    let mut c =
        json!({"cniVersion": "1.0.0", "name": "bench", "type": "host-device", "device": netdev});
    if let Some(i) = ipam {
        c["ipam"] = i.clone();
    }
    c
}

/// Run one command, failing with the plugin's output.
fn run(bed: &Bed, p: &Plugin, cmd: &str, att: &Att) -> Result<Duration> {
    let t = Instant::now();
    let env: Vec<(&str, &str)> = p
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let out = bed.run(&p.bin, cmd, &p.conf, att, &env);
    let d = t.elapsed();
    if !out.ok {
        bail!(
            "{} {cmd} failed: stdout={} stderr={}",
            p.label,
            out.stdout,
            out.stderr
        );
    }
    Ok(d)
}

/// Section 1: ADD+DEL wall time, interleaved.
pub fn add_del(s: &Settings) -> Result<Section> {
    let mut sec = Section::new(
        "CNI ADD+DEL: sriov vs host-device",
        &format!(
            "Each plugin binary is spawned inside a throwaway \"host\" netns whose VF netdevs are veth \
             ends named by a fake sysfs tree; ADD moves the netdev into a fresh pod netns, DEL moves \
             it back. The set-ups run interleaved (one ADD+DEL of each in turn, A B C D E A B C D E ...), {} iterations each, \
             from the same driver; times are wall time of the plugin process (spawn to exit).",
            s.cni_iters
        ),
        &[
            "plugin",
            "IPAM",
            "ADD+DEL p50 ms",
            "p95 ms",
            "ADD p50 ms",
            "DEL p50 ms",
            "vs host-device (p50)",
        ],
    );
    let Some(bed) = Bed::new("bench-cni") else {
        sec.note("skipped: needs root (network namespaces)");
        return Ok(sec);
    };
    let hd = host_device();
    let have_hd = hd.is_file();
    let ipam = bed.host_local("10.77.10.0/24", "10.77.10.1");
    let vfs: Vec<BedVf> = (0..5).map(|i| bed.add_vf(i)).collect();
    let pod = bed.pod("p1");
    // The same plugin with its state files on tmpfs: what keeping them on disk costs.
    let tmpfs_state = tempfile::Builder::new()
        .prefix("cnistate")
        .tempdir_in(sriov_tests::fakesys::fast_tmp())?;
    let mut plugins = vec![
        Plugin {
            label: "sriov",
            ipam: "host-local",
            bin: s.cni_bin.clone(),
            conf: sriov_conf(&vfs[0].pci, Some(&ipam)),
            env: vec![],
        },
        Plugin {
            label: "host-device",
            ipam: "host-local",
            bin: hd.display().to_string(),
            conf: host_device_conf(&vfs[1].netdev, Some(&ipam)),
            env: vec![],
        },
        Plugin {
            label: "sriov",
            ipam: "none",
            bin: s.cni_bin.clone(),
            conf: sriov_conf(&vfs[2].pci, None),
            env: vec![],
        },
        Plugin {
            label: "host-device",
            ipam: "none",
            bin: hd.display().to_string(),
            conf: host_device_conf(&vfs[3].netdev, None),
            env: vec![],
        },
        Plugin {
            label: "sriov, state dir on tmpfs",
            ipam: "none",
            bin: s.cni_bin.clone(),
            conf: sriov_conf(&vfs[4].pci, None),
            env: vec![(
                "SRIOV_CNI_STATE_DIR".into(),
                tmpfs_state.path().display().to_string(),
            )],
        },
    ];
    if !have_hd {
        plugins.retain(|p| p.label != "host-device");
        sec.note(format!(
            "{} not found: install containernetworking-plugins (scripts/install-deps.sh base)",
            hd.display()
        ));
    }
    let ids: Vec<String> = (0..plugins.len()).map(|i| format!("bench-{i}")).collect();
    let ifnames: Vec<String> = (0..plugins.len())
        .map(|i| format!("net{}", i + 1))
        .collect();
    let mut adds = vec![Samples::new(); plugins.len()];
    let mut dels = vec![Samples::new(); plugins.len()];
    let mut both = vec![Samples::new(); plugins.len()];
    // One untimed round first: page cache, host-local's data dir.
    for round in 0..=s.cni_iters {
        for (i, p) in plugins.iter().enumerate() {
            let att = Att {
                container_id: &ids[i],
                netns: Some(&pod),
                ifname: &ifnames[i],
            };
            let a = run(&bed, p, "ADD", &att)?;
            let d = run(&bed, p, "DEL", &att)?;
            if round > 0 {
                adds[i].push(a);
                dels[i].push(d);
                both[i].push(a + d);
            }
        }
    }
    for v in &vfs {
        let l = bed
            .link(None, &v.netdev)
            .with_context(|| format!("{} not back in the host netns", v.netdev))?;
        if l.mac != v.mac {
            bail!("{}: MAC {} not restored to {}", v.netdev, l.mac, v.mac);
        }
    }
    let reference = |ipam: &str| -> Option<Duration> {
        plugins
            .iter()
            .position(|p| p.label == "host-device" && p.ipam == ipam)
            .map(|i| both[i].median())
    };
    for (i, p) in plugins.iter().enumerate() {
        let ratio = match reference(p.ipam) {
            Some(r) if p.label.starts_with("sriov") && !r.is_zero() => {
                format!("{:.2}x", both[i].median().as_secs_f64() / r.as_secs_f64())
            }
            Some(_) if p.label == "host-device" => "1.00x".into(),
            _ => "-".into(),
        };
        sec.row(vec![
            p.label.into(),
            p.ipam.into(),
            ms(both[i].median()),
            ms(both[i].pct(95.0)),
            ms(adds[i].median()),
            ms(dels[i].median()),
            ratio,
        ]);
    }
    sec.note(
        "Reference: host-device only moves the netdev (and runs IPAM). sriov also resolves the VF \
         through sysfs, takes a per-VF lock, reads the VF's PF-side state from the PF, and records \
         an attachment state file before changing anything (what DEL needs to restore the VF \
         after a crash); DEL reads that file back and restores name, MAC and MTU.",
    );
    sec.note(
        "The state file is replaced by write-then-rename (no fsync: what it records does not \
         outlive a host crash), three times per ADD (before the first change, after the move, with \
         the result) and removed by DEL; the tmpfs row runs the same binary with \
         SRIOV_CNI_STATE_DIR on tmpfs, so the difference to the row above is what the default \
         directory on disk (/var/lib/cni/sriov) costs.",
    );
    sec.note(
        "IPAM: host-local is a separate process spawned by the plugin, so \"host-local\" rows \
         include one more fork+exec per ADD and per DEL for both plugins.",
    );
    Ok(sec)
}

/// Section 4: 16 ADDs at once (then 16 DELs at once), per set-up.
pub fn concurrency(s: &Settings) -> Result<Section> {
    let n = s.conc_vfs;
    let mut sec = Section::new(
        &format!("CNI concurrency: {n} parallel ADDs on {n} VFs"),
        &format!(
            "{n} threads released together by a barrier each run one ADD for its own VF into its own \
             pod netns; then {n} DELs the same way. {} rounds per set-up. \"wall\" is barrier \
             release to the last exit (median over rounds); per-call times are over all calls of all \
             rounds. \"serial p50\" is the median single ADD from section 1 times {n}, what one \
             caller at a time would take.",
            s.conc_rounds
        ),
        &[
            "plugin",
            "IPAM",
            "ADD wall ms",
            "call p50 ms",
            "call p95 ms",
            "call max ms",
            "DEL wall ms",
            "speed-up vs serial",
        ],
    );
    let Some(bed) = Bed::new("bench-conc") else {
        sec.note("skipped: needs root (network namespaces)");
        return Ok(sec);
    };
    let hd = host_device();
    let ipam = bed.host_local("10.77.0.0/16", "10.77.0.1");
    let vfs: Vec<BedVf> = (0..n).map(|i| bed.add_vf(i)).collect();
    let pods: Vec<PathBuf> = (0..n).map(|i| bed.pod(&format!("c{i}"))).collect();
    let mut setups: Vec<(&'static str, &'static str, String)> = vec![
        ("sriov", "none", s.cni_bin.clone()),
        ("sriov", "host-local", s.cni_bin.clone()),
    ];
    if hd.is_file() {
        let hd = hd.display().to_string();
        setups.push(("host-device", "none", hd.clone()));
        setups.push(("host-device", "host-local", hd));
    }
    for (label, ipam_name, bin) in setups {
        let with_ipam = (ipam_name != "none").then_some(&ipam);
        let plugins: Vec<Plugin> = vfs
            .iter()
            .map(|v| Plugin {
                label,
                ipam: ipam_name,
                bin: bin.clone(),
                env: vec![],
                conf: if label == "sriov" {
                    sriov_conf(&v.pci, with_ipam)
                } else {
                    host_device_conf(&v.netdev, with_ipam)
                },
            })
            .collect();
        let (mut add_wall, mut del_wall, mut calls, mut single) = (
            Samples::new(),
            Samples::new(),
            Samples::new(),
            Samples::new(),
        );
        for round in 0..=s.conc_rounds {
            // Serial reference, same VFs, one at a time.
            for (i, p) in plugins.iter().enumerate() {
                let id = format!("serial-{i}");
                let att = Att {
                    container_id: &id,
                    netns: Some(&pods[i]),
                    ifname: "net1",
                };
                let a = run(&bed, p, "ADD", &att)?;
                run(&bed, p, "DEL", &att)?;
                if round > 0 {
                    single.push(a);
                }
            }
            let (wall, per) = parallel(&bed, &plugins, &pods, "ADD")?;
            let (dwall, _) = parallel(&bed, &plugins, &pods, "DEL")?;
            if round > 0 {
                add_wall.push(wall);
                del_wall.push(dwall);
                calls.extend(&per);
            }
        }
        let serial = single.median() * n;
        let speedup = if add_wall.median().is_zero() {
            "-".into()
        } else {
            format!(
                "{:.2}x (serial {} ms)",
                serial.as_secs_f64() / add_wall.median().as_secs_f64(),
                ms(serial)
            )
        };
        sec.row(vec![
            label.to_string(),
            ipam_name.to_string(),
            ms(add_wall.median()),
            ms(calls.median()),
            ms(calls.pct(95.0)),
            ms(calls.max()),
            ms(del_wall.median()),
            speedup,
        ]);
    }
    sec.note(format!(
        "With {} cores, a speed-up near the core count means the calls do not serialize on a lock; \
         host-local takes one lock on its data directory per ADD and DEL, so rows with IPAM \
         serialize on it for both plugins. sriov locks per VF only.",
        crate::cores()
    ));
    Ok(sec)
}

/// Run `cmd` for every plugin at once; returns wall time and per-call times.
fn parallel(
    bed: &Bed,
    plugins: &[Plugin],
    pods: &[PathBuf],
    cmd: &str,
) -> Result<(Duration, Samples)> {
    let barrier = Barrier::new(plugins.len() + 1);
    let ids: Vec<String> = (0..plugins.len()).map(|i| format!("conc-{i}")).collect();
    let (wall, results) = std::thread::scope(|sc| {
        let handles: Vec<_> = plugins
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let (barrier, id, pod) = (&barrier, &ids[i], &pods[i]);
                sc.spawn(move || {
                    let att = Att {
                        container_id: id,
                        netns: Some(pod),
                        ifname: "net1",
                    };
                    barrier.wait();
                    run(bed, p, cmd, &att)
                })
            })
            .collect();
        barrier.wait();
        let t = Instant::now();
        let results: Vec<Result<Duration>> = handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("worker panicked")))
            })
            .collect();
        (t.elapsed(), results)
    });
    let mut per = Samples::new();
    for r in results {
        per.push(r?);
    }
    Ok((wall, per))
}
