//! Resolving a VF from its PCI address through sysfs: its PF, index, netdev and driver.

use sriov_host::{PciAddress, Sysfs};

use crate::error::{CniError, Result, INVALID_CONFIG};

/// Drivers that take a VF away from the kernel network stack.
pub const USERSPACE_DRIVERS: &[&str] = &["vfio-pci", "uio_pci_generic", "igb_uio"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vf {
    pub pci: PciAddress,
    pub pf: PciAddress,
    /// The PF's netdev in this netns; absent when the PF has none (userspace driver).
    pub pf_netdev: Option<String>,
    pub index: u32,
    /// The VF's netdev in this netns.
    pub netdev: Option<String>,
    pub driver: Option<String>,
}

impl Vf {
    pub fn resolve(sysfs: &Sysfs, pci: PciAddress) -> Result<Vf> {
        if !sysfs.exists(pci) {
            return Err(CniError::new(
                INVALID_CONFIG,
                format!(
                    "deviceID: PCI device {pci} not found under {}/bus/pci/devices",
                    sysfs.root().display()
                ),
            ));
        }
        let pf = sysfs.physfn(pci)?.ok_or_else(|| {
            CniError::new(
                INVALID_CONFIG,
                format!("deviceID: {pci} is not a VF (it has no physfn link)"),
            )
        })?;
        let index = sysfs.vf_index(pf, pci)?.ok_or_else(|| {
            CniError::op(format!(
                "VF {pci}: its PF {pf} has no virtfn link pointing at it"
            ))
        })?;
        let pf_netdev = single(sysfs.netdevs(pf)?, pf)?;
        let netdev = single(sysfs.netdevs(pci)?, pci)?;
        let driver = sysfs.driver(pci)?;
        Ok(Vf {
            pci,
            pf,
            pf_netdev,
            index,
            netdev,
            driver,
        })
    }

    /// No netdev and a userspace driver: DPDK mode.
    pub fn is_userspace(&self) -> bool {
        self.netdev.is_none()
            && self
                .driver
                .as_deref()
                .is_some_and(|d| USERSPACE_DRIVERS.contains(&d))
    }
}

fn single(mut names: Vec<String>, pci: PciAddress) -> Result<Option<String>> {
    match names.len() {
        0 => Ok(None),
        1 => Ok(names.pop()),
        _ => Err(CniError::op(format!(
            "PCI device {pci} has several netdevs ({}): expected one",
            names.join(", ")
        ))),
    }
}
