//! What Multus v4.3.0 adds to a netconf when the NAD declares `capabilities` (none of upstream
//! sriov-cni's own examples do): `runtimeConfig.ips`, `.mac`, `.deviceID` and
//! `.CNIDeviceInfoFile`, next to the top-level `deviceID`/`pciBusID` and `CNI_ARGS` `IP=`/`MAC=`.
//! Run on the veth bed through `support/multus.rs`.
#![allow(clippy::unwrap_used)]

mod common;
#[path = "support/multus.rs"]
mod multus;

use common::*;
use multus::{Multus, IFNAME};
use serde_json::json;

#[test]
fn runtime_ips_reach_static_ipam_and_the_device_info_file_is_left_to_multus() {
    let Some(bed) = Bed::new("multus_ips") else {
        return;
    };
    let vf = bed.add_vf(1);
    let pod = bed.pod("p");
    let nad = json!({
        "cniVersion": "1.0.0",
        "name": "sriov-static",
        "type": "sriov",
        "capabilities": {"ips": true, "deviceID": true, "CNIDeviceInfoFile": true},
        "ipam": {"type": "static"},
    });
    let mut m = Multus::new(&bed, BIN, "sriov-static", &nad, &pod, &vf.pci);
    m.ips = Some(vec!["10.56.218.50/24".into()]);
    let stdin = m.stdin(None);
    assert_eq!(stdin["deviceID"], vf.pci.as_str());
    assert_eq!(stdin["pciBusID"], vf.pci.as_str());
    assert_eq!(stdin["runtimeConfig"]["deviceID"], vf.pci.as_str());
    assert_eq!(stdin["runtimeConfig"]["ips"], json!(["10.56.218.50/24"]));
    let info = m.device_info_file();
    assert_eq!(stdin["runtimeConfig"]["CNIDeviceInfoFile"], info.as_str());
    assert!(m.cni_args(true).ends_with(";IP=10.56.218.50/24"));

    let add = m.add();
    ok(&add, "ADD");
    assert_eq!(add.json["ips"][0]["address"], "10.56.218.50/24");
    assert_eq!(
        bed.addrs(Some(&pod), IFNAME),
        vec!["10.56.218.50/24".to_string()]
    );
    assert!(
        !std::path::Path::new(&info).exists(),
        "the CNI wrote Multus' device-info file {info}"
    );
    ok(&m.check(&add.json).expect("CHECK at 1.0.0"), "CHECK");
    ok(&m.del(Some(&add.json)), "DEL");
    assert_restored(&bed, &vf);
    assert!(bed.link(Some(&pod), IFNAME).is_none());
}

#[test]
fn runtime_mac_is_a_pf_side_setting() {
    let Some(bed) = Bed::new("multus_mac") else {
        return;
    };
    let vf = bed.add_vf(1);
    let pod = bed.pod("p");
    let nad = json!({
        "cniVersion": "1.0.0",
        "name": "sriov-mac",
        "type": "sriov",
        "capabilities": {"mac": true},
    });
    let mut m = Multus::new(&bed, BIN, "sriov-mac", &nad, &pod, &vf.pci);
    m.mac = Some("CA:FE:C0:FF:EE:00".into());
    assert_eq!(
        m.stdin(None)["runtimeConfig"],
        json!({"mac": "CA:FE:C0:FF:EE:00"})
    );
    // The VF's admin MAC is set through the PF, as upstream does; a veth PF cannot take it.
    let add = m.add();
    assert_eq!(add.code(), Some(101), "{}", add.stdout);
    assert!(add.msg().starts_with("mac: PF pf0"), "{}", add.msg());
    ok(&m.del(None), "DEL after the failed ADD");
    assert_restored(&bed, &vf);
}

#[test]
fn a_nad_cannot_pick_another_vf_through_its_own_runtime_config() {
    let Some(bed) = Bed::new("multus_nad_rc") else {
        return;
    };
    let (allocated, other) = (bed.add_vf(1), bed.add_vf(2));
    let pod = bed.pod("p");
    // No capabilities: the CNI library leaves the NAD's runtimeConfig as written, next to the
    // top-level deviceID Multus injects from the kubelet's allocation.
    let nad = json!({
        "cniVersion": "1.0.0",
        "name": "sriov-rc",
        "type": "sriov",
        "runtimeConfig": {"deviceID": other.pci},
    });
    let m = Multus::new(&bed, BIN, "sriov-rc", &nad, &pod, &allocated.pci);
    let stdin = m.stdin(None);
    assert_eq!(stdin["deviceID"], allocated.pci.as_str());
    assert_eq!(stdin["runtimeConfig"]["deviceID"], other.pci.as_str());
    let add = m.add();
    assert_eq!(add.code(), Some(7), "{}", add.stdout);
    assert!(
        add.msg().starts_with("runtimeConfig.deviceID"),
        "{}",
        add.msg()
    );
    assert!(bed.link(Some(&pod), IFNAME).is_none(), "a VF was attached");
    assert_restored(&bed, &other);
    assert_restored(&bed, &allocated);
}
