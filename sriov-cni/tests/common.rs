//! Shared helpers for the plugin's real-kernel tests.
#![allow(dead_code)]

use std::path::Path;

use serde_json::{json, Value};
pub use sriov_tests::netbed::{Att, Bed, BedVf, CniOut};

pub const BIN: &str = env!("CARGO_BIN_EXE_sriov");

pub fn conf(device: &str, extra: Value) -> Value {
    let mut c =
        json!({"cniVersion": "1.0.0", "name": "sriov-test", "type": "sriov", "deviceID": device});
    if let (Some(m), Some(e)) = (c.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            m.insert(k.clone(), v.clone());
        }
    }
    c
}

pub fn sriov(
    bed: &Bed,
    cmd: &str,
    conf: &Value,
    cid: &str,
    netns: Option<&Path>,
    ifname: &str,
) -> CniOut {
    let att = Att {
        container_id: cid,
        netns,
        ifname,
    };
    bed.run(BIN, cmd, conf, &att, &[])
}

/// `cmd` for the usual attachment: container `c1`, interface `net1` in `pod`.
pub fn c1(bed: &Bed, cmd: &str, conf: &Value, pod: &Path) -> CniOut {
    sriov(bed, cmd, conf, "c1", Some(pod), "net1")
}

/// What the kernel does with a VF netdev whose pod netns goes away: it comes back to the host
/// under its pod name with the pod's MAC and MTU. A veth dies with its netns instead, so a new
/// one (peer `<name>p`) stands in.
pub fn returned_from_pod(bed: &Bed, name: &str, mac: &str, mtu: u32) {
    let (peer, mtu) = (format!("{name}p"), mtu.to_string());
    bed.ip_host(&[
        "link", "add", name, "address", mac, "mtu", &mtu, "type", "veth", "peer", "name", &peer,
    ]);
}

/// With `prevResult` added, as the runtime does for CHECK and DEL.
pub fn with_prev(conf: &Value, prev: &Value) -> Value {
    let mut c = conf.clone();
    c["prevResult"] = prev.clone();
    c
}

pub fn ok(out: &CniOut, what: &str) {
    assert!(
        out.ok,
        "{what} failed: stdout={} stderr={}",
        out.stdout, out.stderr
    );
}

/// The VF netdev is back in the host with its original name, MAC and MTU.
pub fn assert_restored(bed: &Bed, vf: &BedVf) {
    let l = bed
        .link(None, &vf.netdev)
        .unwrap_or_else(|| panic!("{} not back in the host netns", vf.netdev));
    assert_eq!(l.mac, vf.mac, "MAC restored");
    assert_eq!(l.mtu, vf.mtu, "MTU restored");
}
