//! Discovery against fake trees shaped like real hardware, and against this machine's own /sys.
#![allow(clippy::unwrap_used)]

use sriov_host::discovery::discover;
use std::collections::BTreeSet;

use sriov_host::{PciAddress, PciId, Role, Sysfs};
use sriov_tests::fakesys::{ps225_two_pfs, scale_tree};

#[test]
fn finds_ps225_pfs_and_vfs_with_their_links() {
    let f = ps225_two_pfs();
    let devs = discover(&f.sysfs()).unwrap();
    assert_eq!(devs.len(), 18);
    let pfs: Vec<_> = devs.iter().filter(|d| d.is_pf()).collect();
    assert_eq!(pfs.len(), 2);
    assert_eq!(
        pfs[0].role,
        Role::Pf {
            total_vfs: 16,
            num_vfs: 8
        }
    );
    assert_eq!(pfs[0].netdev(), Some("enp3s0f0np0"));
    assert_eq!(pfs[1].numa_node, Some(1));
    let vf = devs
        .iter()
        .find(|d| d.address.to_string() == "0000:04:10.6")
        .unwrap();
    assert_eq!(
        vf.role,
        Role::Vf {
            pf: "0000:04:00.0".parse().unwrap(),
            index: 6
        }
    );
    assert_eq!(vf.driver.as_deref(), Some("vfio-pci"));
    assert_eq!(vf.device, PciId(0xd800));
    assert_eq!(vf.iommu_group, Some(114));
    assert!(vf.netdevs.is_empty());
    let vf0 = devs
        .iter()
        .find(|d| d.address.to_string() == "0000:03:10.0")
        .unwrap();
    assert_eq!(vf0.netdev(), Some("enp3s0f0v0"));
    assert_eq!(vf0.link_type, Some(1));
    assert_eq!(
        f.sysfs().netdev_pci("enp3s0f0v0").unwrap(),
        Some(vf0.address)
    );
}

#[test]
fn a_vf_without_netdev_keeps_its_identity() {
    let f = ps225_two_pfs();
    f.set_netdev("0000:03:10.2", None); // moved into a pod
    let devs = discover(&f.sysfs()).unwrap();
    let vf = devs
        .iter()
        .find(|d| d.address.to_string() == "0000:03:10.2")
        .unwrap();
    assert_eq!(vf.vf_index(), Some(2));
    assert_eq!(vf.driver.as_deref(), Some("bnxt_en"));
}

#[test]
fn scale_tree_has_every_vf() {
    let f = scale_tree(4, 64);
    let devs = discover(&f.sysfs()).unwrap();
    assert_eq!(devs.iter().filter(|d| d.is_vf()).count(), 256);
}

/// Read-only discovery of this machine's /sys: it succeeds whatever the hardware (a developer's
/// SR-IOV NIC included), and what it reports is consistent: one entry per address, every VF
/// names a PF that was discovered too, and no PF has more VFs than it reports enabled.
#[test]
fn real_sys_discovery_is_consistent() {
    let sys = Sysfs::default();
    if !sys.root().join("bus/pci/devices").exists() {
        sriov_tests::gate::skip("no /sys/bus/pci on this machine");
        return;
    }
    let devs = discover(&sys).expect("discovery of the real /sys");
    assert_consistent(&devs);
}

/// The real-/sys check holds on a machine with SR-IOV NICs: a tree shaped like a PS225 host.
#[test]
fn the_real_sys_check_holds_with_sriov_pfs() {
    let devs = discover(&ps225_two_pfs().sysfs()).unwrap();
    assert!(devs.iter().any(|d| d.is_pf()));
    assert_consistent(&devs);
}

fn assert_consistent(devs: &[sriov_host::PciDevice]) {
    let addrs: BTreeSet<PciAddress> = devs.iter().map(|d| d.address).collect();
    assert_eq!(addrs.len(), devs.len(), "one entry per PCI address");
    for d in devs {
        if let Some(pf) = d.pf() {
            assert!(
                addrs.contains(&pf),
                "VF {} names PF {pf}, not discovered",
                d.address
            );
        }
        if let Role::Pf { num_vfs, .. } = d.role {
            let vfs = devs.iter().filter(|v| v.pf() == Some(d.address)).count();
            assert!(
                vfs <= num_vfs as usize,
                "PF {} reports {num_vfs} VFs, discovery found {vfs}",
                d.address
            );
        }
    }
}
