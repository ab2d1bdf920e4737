//! Discovery against the real /sys of the emulated lab (scenario 05-discovery): an igb PF with
//! 4 VFs, VF0-2 on igbvf and VF3 on vfio-pci. Built only with the `lab` feature
//! (scripts/lab.sh); run anywhere but the lab guest (no `SRIOV_LAB`) it fails.

use std::collections::BTreeSet;

use sriov_host::discovery::discover;
use sriov_host::{PciId, Role, Sysfs};

fn assert_in_lab() {
    assert!(
        std::env::var_os("SRIOV_LAB").is_some(),
        "not in the emulated lab: run scripts/lab.sh 05-discovery"
    );
}

#[test]
fn lab_igb_pf_and_vfs_are_discovered() {
    assert_in_lab();
    let devs = discover(&Sysfs::default()).expect("discovery of the guest's /sys");
    for d in &devs {
        eprintln!(
            "  {} {}:{} driver={:?} netdevs={:?} group={:?} {:?}",
            d.address, d.vendor, d.device, d.driver, d.netdevs, d.iommu_group, d.role
        );
    }

    let pfs: Vec<_> = devs.iter().filter(|d| d.is_pf()).collect();
    assert_eq!(pfs.len(), 1, "one igb PF");
    let pf = pfs[0];
    assert_eq!((pf.vendor, pf.device), (PciId(0x8086), PciId(0x10c9)));
    assert_eq!(
        pf.role,
        Role::Pf {
            total_vfs: 7,
            num_vfs: 4
        }
    );
    assert_eq!(pf.driver.as_deref(), Some("igb"));
    assert!(pf.netdev().is_some(), "PF has a netdev");

    let mut vfs: Vec<_> = devs.iter().filter(|d| d.pf() == Some(pf.address)).collect();
    vfs.sort_by_key(|d| d.vf_index());
    assert_eq!(vfs.len(), 4);
    let mut groups = BTreeSet::new();
    for (i, vf) in vfs.iter().enumerate() {
        assert_eq!(vf.vf_index(), Some(i as u32));
        assert_eq!((vf.vendor, vf.device), (PciId(0x8086), PciId(0x10ca)));
        let group = vf.iommu_group.expect("every VF has an IOMMU group");
        assert!(groups.insert(group), "VF{i} shares IOMMU group {group}");
        if i < 3 {
            assert_eq!(vf.driver.as_deref(), Some("igbvf"), "VF{i}");
            assert_eq!(vf.netdevs.len(), 1, "VF{i} has one netdev");
            assert_eq!(vf.link_type, Some(1), "VF{i} is ethernet");
        } else {
            assert_eq!(vf.driver.as_deref(), Some("vfio-pci"), "VF{i}");
            assert!(vf.netdevs.is_empty(), "a vfio-pci VF has no netdev");
        }
    }
}
