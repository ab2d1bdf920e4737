use super::*;

/// A healthy VF `n` of PF 0000:03:00.0 in pool `ps225_sriov_netdevice`.
pub(crate) fn vf(n: u8) -> VfDevice {
    VfDevice {
        pci: format!("0000:03:{:02x}.{}", 1 + n / 8, n % 8)
            .parse()
            .expect("pci"),
        pf_name: Some("enp3s0f0np0".into()),
        pf_pci: "0000:03:00.0".parse().expect("pci"),
        vendor: sriov_host::PciId(0x14e4),
        device: sriov_host::PciId(0x1806),
        driver: Some("bnxt_en".into()),
        numa_node: Some(1),
        vf_index: n.into(),
        link_type: Some("ether".into()),
        pool: "ps225_sriov_netdevice".into(),
        pcie_root: Some("pci0000:00".into()),
        healthy: true,
    }
}

fn target() -> SliceTarget {
    SliceTarget::new(DRIVER_NAME, "node-a").expect("valid")
}

fn attr<'a>(d: &'a Device, key: &str) -> Option<&'a DeviceAttribute> {
    d.attributes.as_ref().and_then(|a| a.get(key))
}

#[test]
fn one_slice_per_64_devices_all_with_the_pool_generation_and_count() {
    let devices: Vec<VfDevice> = (0..130).map(vf).collect();
    let slices = build_slices(&target(), &devices, 7);
    assert_eq!(slices.len(), 3);
    let sizes: Vec<usize> = slices
        .iter()
        .map(|s| s.spec.devices.as_ref().map_or(0, Vec::len))
        .collect();
    assert_eq!(sizes, [64, 64, 2]);
    for (i, s) in slices.iter().enumerate() {
        assert_eq!(
            s.metadata.name.as_deref(),
            Some(format!("node-a-sriov.arm.com-{i}").as_str())
        );
        assert_eq!(s.spec.driver, "sriov.arm.com");
        assert_eq!(s.spec.node_name.as_deref(), Some("node-a"));
        assert_eq!(s.spec.pool.name, "node-a");
        assert_eq!(s.spec.pool.generation, 7);
        assert_eq!(s.spec.pool.resource_slice_count, 3);
    }
}

#[test]
fn no_devices_still_publish_an_empty_pool() {
    let slices = build_slices(&target(), &[], 1);
    assert_eq!(slices.len(), 1);
    assert_eq!(slices[0].spec.devices.as_deref(), Some(&[][..]));
    assert_eq!(slices[0].spec.pool.resource_slice_count, 1);
}

#[test]
fn devices_are_ordered_by_pci_address_and_a_duplicate_is_published_once() {
    let mut second = vf(0);
    second.pool = "other".into();
    let slices = build_slices(&target(), &[vf(3), vf(0), second, vf(1)], 1);
    let devices = slices[0].spec.devices.as_ref().expect("devices");
    let names: Vec<&str> = devices.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["0000-03-01-0", "0000-03-01-1", "0000-03-01-3"]);
    let pool = attr(&devices[0], "pool").and_then(|a| a.string.as_deref());
    assert_eq!(pool, Some("ps225_sriov_netdevice"), "the first entry wins");
}

#[test]
fn attributes_a_user_selects_on() {
    let d = device(&vf(6));
    let s = |k: &str| attr(&d, k).and_then(|a| a.string.clone());
    let i = |k: &str| attr(&d, k).and_then(|a| a.int);
    assert_eq!(d.name, "0000-03-01-6");
    assert_eq!(s("pciAddress").as_deref(), Some("0000:03:01.6"));
    assert_eq!(
        s("resource.kubernetes.io/pciBusID").as_deref(),
        Some("0000:03:01.6")
    );
    assert_eq!(s("pfName").as_deref(), Some("enp3s0f0np0"));
    assert_eq!(s("pfPciAddress").as_deref(), Some("0000:03:00.0"));
    assert_eq!(s("vendor").as_deref(), Some("14e4"));
    assert_eq!(s("device").as_deref(), Some("1806"));
    assert_eq!(s("driver").as_deref(), Some("bnxt_en"));
    assert_eq!(s("linkType").as_deref(), Some("ether"));
    assert_eq!(s("pool").as_deref(), Some("ps225_sriov_netdevice"));
    assert_eq!(
        s("resource.kubernetes.io/pcieRoot").as_deref(),
        Some("pci0000:00")
    );
    assert_eq!(i("vfIndex"), Some(6));
    assert_eq!(i("numaNode"), Some(1));
    assert_eq!(i("resource.kubernetes.io/numaNode"), Some(1));
    assert!(d.taints.is_none(), "a healthy VF carries no taint");
    // Every attribute holds exactly one value, as the API requires.
    for (k, a) in d.attributes.as_ref().expect("attributes") {
        let set = [
            a.string.is_some(),
            a.int.is_some(),
            a.bool.is_some(),
            a.version.is_some(),
        ];
        assert_eq!(set.iter().filter(|x| **x).count(), 1, "{k}");
    }
}

#[test]
fn unknown_facts_are_left_out_not_guessed() {
    let mut v = vf(0);
    v.pf_name = None;
    v.driver = None;
    v.numa_node = None;
    v.link_type = None;
    v.pcie_root = None;
    let d = device(&v);
    for k in [
        "pfName",
        "driver",
        "numaNode",
        "resource.kubernetes.io/numaNode",
        "linkType",
        "resource.kubernetes.io/pcieRoot",
    ] {
        assert!(attr(&d, k).is_none(), "{k}");
    }
}

#[test]
fn an_unhealthy_vf_is_tainted_no_schedule() {
    let mut v = vf(2);
    v.healthy = false;
    let d = device(&v);
    let taints = d.taints.clone().expect("taint");
    assert_eq!(taints.len(), 1);
    assert_eq!(taints[0].key, "sriov.arm.com/unhealthy");
    assert_eq!(taints[0].effect, "NoSchedule");
    assert!(
        attr(&d, "pciAddress").is_some(),
        "still listed, with its attributes"
    );
}

#[test]
fn an_overlong_attribute_value_is_left_out() {
    let mut v = vf(0);
    v.pool = "p".repeat(65);
    assert!(attr(&device(&v), "pool").is_none());
    v.pool = "p".repeat(64);
    assert!(attr(&device(&v), "pool").is_some());
}

#[test]
fn target_names_are_validated_and_quoted() {
    for bad in ["", "Node-A", "node_a", "-a", &"n".repeat(201)] {
        let err = SliceTarget::new(DRIVER_NAME, bad).expect_err(bad);
        assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
    }
    assert!(SliceTarget::new("Sriov.arm.com", "a").is_err());
    let t = SliceTarget::new(DRIVER_NAME, "worker-1.example").expect("ok");
    assert_eq!(
        t.field_selector(),
        "spec.driver=sriov.arm.com,spec.nodeName=worker-1.example"
    );
}

#[test]
fn slices_are_owned_by_the_node_when_its_uid_is_known() {
    let plain = build_slices(&target(), &[vf(0)], 1);
    assert!(plain[0].metadata.owner_references.is_none());
    let owned = build_slices(&target().owned_by_node("6c1f-uid"), &[vf(0)], 1);
    let refs = owned[0].metadata.owner_references.as_ref().expect("owner");
    assert_eq!(refs.len(), 1);
    assert_eq!(
        (
            refs[0].kind.as_str(),
            refs[0].name.as_str(),
            refs[0].uid.as_str()
        ),
        ("Node", "node-a", "6c1f-uid")
    );
    assert_eq!(refs[0].controller, Some(true));
}
