//! What the driver publishes about a VF: a plain value the caller fills from its own discovery
//! and health state, so this crate needs nothing from the device plugin's internals.

use std::fmt;
use std::str::FromStr;

use sriov_host::{PciAddress, PciId};

/// One VF as the node sees it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VfDevice {
    /// The VF's PCI address: its identity, and the device's name in the slice
    /// ([`DeviceName::of`]).
    pub pci: PciAddress,
    /// The PF's netdev name, when the PF has one in the host network namespace.
    pub pf_name: Option<String>,
    /// The PF's PCI address.
    pub pf_pci: PciAddress,
    /// PCI vendor ID of the VF.
    pub vendor: PciId,
    /// PCI device ID of the VF.
    pub device: PciId,
    /// The driver bound to the VF now (`bnxt_en`, `vfio-pci`, ...), if any.
    pub driver: Option<String>,
    /// The NUMA node of the VF, when the kernel knows it (`numa_node` >= 0).
    pub numa_node: Option<u32>,
    /// The VF's index on its PF (`virtfnN`).
    pub vf_index: u32,
    /// The link type of the PF's netdev (`ether`, `infiniband`), when known.
    pub link_type: Option<String>,
    /// The pool (the config's `resourceName`) the VF belongs to.
    pub pool: String,
    /// The PCIe root complex, `pci<domain>:<bus>` (e.g. `pci0000:00`), when known.
    pub pcie_root: Option<String>,
    /// The device plugin's live health verdict (PF link, PCI presence, driver match).
    pub healthy: bool,
}

/// The name of a device in a ResourceSlice: the PCI address with `:` and `.` as `-`
/// (`0000:03:10.6` -> `0000-03-10-6`), a DNS label as the API requires, and reversible, so a
/// name the kubelet hands back maps to exactly one PCI address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceName(PciAddress);

/// A device name that is not one of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("device name {0:?} is not a VF of this driver (expected a PCI address written like 0000-03-10-6)")]
pub struct DeviceNameError(pub String);

impl DeviceName {
    /// The device name of the VF at `pci`.
    pub fn of(pci: &PciAddress) -> DeviceName {
        DeviceName(*pci)
    }

    /// The PCI address this name stands for.
    pub fn pci(&self) -> PciAddress {
        self.0
    }
}

impl FromStr for DeviceName {
    type Err = DeviceNameError;
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        let bad = || DeviceNameError(name.to_string());
        let parts: Vec<&str> = name.split('-').collect();
        let [dom, bus, dev, func] = parts[..] else {
            return Err(bad());
        };
        let pci: PciAddress = format!("{dom}:{bus}:{dev}.{func}")
            .parse()
            .map_err(|_| bad())?;
        // Only the canonical spelling: one device, one name.
        if DeviceName(pci).to_string() != name {
            return Err(bad());
        }
        Ok(DeviceName(pci))
    }
}

impl fmt::Display for DeviceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.to_string().replace([':', '.'], "-"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_name_round_trips_through_the_pci_address() {
        let pci: PciAddress = "0000:03:10.6".parse().expect("pci");
        let name = DeviceName::of(&pci);
        assert_eq!(name.to_string(), "0000-03-10-6");
        let back: DeviceName = "0000-03-10-6".parse().expect("ours");
        assert_eq!(back.pci(), pci);
    }

    #[test]
    fn foreign_or_non_canonical_names_are_refused() {
        for bad in [
            "gpu-0",
            "0000-03-10",
            "0000-03-10-6-1",
            "0000-3-10-6",
            "0000-03-10-9",
            "0000-03-1A-6",
            "",
        ] {
            let err = bad.parse::<DeviceName>().expect_err(bad);
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }
}
