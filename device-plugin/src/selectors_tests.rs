use serde_json::json;
use sriov_host::{PciDevice, Role};

use super::*;

fn vf(addr: &str, pf: &str, index: u32, driver: &str) -> PciDevice {
    PciDevice {
        address: addr.parse().unwrap(),
        vendor: PciId(0x14e4),
        device: PciId(0xd800),
        class: 0x020000,
        driver: Some(driver.into()),
        netdevs: vec![],
        numa_node: Some(0),
        iommu_group: Some(1),
        rdma_devices: vec![],
        link_type: None,
        role: Role::Vf {
            pf: pf.parse().unwrap(),
            index,
        },
    }
}

fn cand<'a>(d: &'a PciDevice, pf_netdev: Option<&'a str>) -> Candidate<'a> {
    Candidate {
        dev: d,
        pf_netdev,
        pf_link_type: Some(1),
        acpi_index: Some("101"),
        vhost_net_available: false,
    }
}

fn sel(v: serde_json::Value) -> Selector {
    Selector::parse(&v).unwrap()
}

#[test]
fn empty_selector_matches_everything() {
    let d = vf("0000:03:10.0", "0000:03:00.0", 0, "bnxt_en");
    assert!(sel(json!({})).matches(&cand(&d, None)));
}

#[test]
fn keys_are_anded() {
    let d = vf("0000:03:10.2", "0000:03:00.0", 2, "bnxt_en");
    let c = cand(&d, Some("enp3s0f0np0"));
    assert!(
        sel(json!({"vendors": ["14e4"], "devices": ["0xd800"], "drivers": ["bnxt_en"]}))
            .matches(&c)
    );
    assert!(!sel(json!({"vendors": ["14e4"], "drivers": ["vfio-pci"]})).matches(&c));
    assert!(!sel(json!({"vendors": ["8086"]})).matches(&c));
    assert!(sel(json!({"pciAddresses": ["0000:03:10.2"]})).matches(&c));
    assert!(!sel(json!({"pciAddresses": ["0000:03:10.3"]})).matches(&c));
    assert!(sel(json!({"linkTypes": ["ether"]})).matches(&c));
    assert!(!sel(json!({"linkTypes": ["infiniband"]})).matches(&c));
    assert!(sel(json!({"acpiIndexes": ["101"]})).matches(&c));
    assert!(!sel(json!({"isRdma": true})).matches(&c));
    assert!(!sel(json!({"needVhostNet": true})).matches(&c));
}

#[test]
fn pf_names_and_root_devices_with_ranges() {
    let d = vf("0000:03:10.6", "0000:03:00.0", 6, "vfio-pci");
    let c = cand(&d, Some("enp3s0f0np0"));
    assert!(sel(json!({"pfNames": ["enp3s0f0np0"]})).matches(&c));
    assert!(sel(json!({"pfNames": ["enp3s0f0np0#0-3,6"]})).matches(&c));
    assert!(!sel(json!({"pfNames": ["enp3s0f0np0#0-5"]})).matches(&c));
    assert!(!sel(json!({"pfNames": ["enp4s0f0np0"]})).matches(&c));
    assert!(sel(json!({"rootDevices": ["0000:03:00.0#6-7"]})).matches(&c));
    assert!(!sel(json!({"rootDevices": ["0000:03:00.0#0"]})).matches(&c));
    assert!(!sel(json!({"rootDevices": ["0000:04:00.0"]})).matches(&c));
}

#[test]
fn a_range_never_matches_a_non_vf() {
    let mut d = vf("0000:05:00.0", "0000:05:00.0", 0, "igb");
    d.role = Role::Plain;
    let c = cand(&d, Some("eno1"));
    assert!(sel(json!({"pfNames": ["eno1"]})).matches(&c));
    assert!(!sel(json!({"pfNames": ["eno1#0"]})).matches(&c));
    assert!(sel(json!({"rootDevices": ["0000:05:00.0"]})).matches(&c));
}

#[test]
fn a_single_string_is_a_one_element_list() {
    let s = sel(json!({"drivers": "bnxt_en"}));
    assert_eq!(s.drivers, vec!["bnxt_en"]);
}

#[test]
fn unsupported_upstream_keys_are_refused_by_name() {
    let e = Selector::parse(&json!({"ddpProfiles": ["GTP"]})).unwrap_err();
    assert_eq!(e.key, "ddpProfiles");
    assert!(e.problem.contains("not supported"), "{e}");
}

#[test]
fn unsupported_upstream_keys_are_refused_in_any_case() {
    for key in ["DDPProfiles", "pKeys", "VdpaType", "auxtypes"] {
        let e = Selector::parse(&json!({ key: ["x"] })).unwrap_err();
        assert_eq!(e.key, key);
        assert!(e.problem.contains("not supported"), "{e}");
    }
}
