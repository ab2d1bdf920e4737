//! What can go wrong while provisioning a PF; every variant names the `provision` entry's PF.

use std::path::PathBuf;

use super::PfRef;
use crate::netlink::NetlinkError;
use crate::pci::PciAddress;
use crate::sysfs::SysfsError;

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("provision {pf}: no such PF (no PCI device, and no netdev of that name in this network namespace)")]
    NoPf { pf: PfRef },
    #[error("provision {pf} ({pci}): not an SR-IOV PF (no sriov_totalvfs)")]
    NotSriov { pf: PfRef, pci: PciAddress },
    #[error("provision {pf} ({pci}): numVfs {asked} exceeds sriov_totalvfs {total}")]
    TooManyVfs {
        pf: PfRef,
        pci: PciAddress,
        asked: u32,
        total: u32,
    },
    #[error("provision {pf}: vfDrivers names VF {index}, but numVfs is {num_vfs} (valid: 0-{max})", max = num_vfs.saturating_sub(1))]
    RuleOutOfRange { pf: PfRef, index: u32, num_vfs: u32 },
    #[error("provision {pf}: VF {index} is named by two vfDrivers entries ({a} and {b})")]
    RuleOverlap {
        pf: PfRef,
        index: u32,
        a: String,
        b: String,
    },
    #[error("provision {pf}: invalid driver name {driver:?} (letters, digits, '_', '-', '.')")]
    BadDriver { pf: PfRef, driver: String },
    #[error("provision {pf}: PF {ifname} is down: drivers create no VFs (or VFs without carrier) while the PF is down; bring it up or set linkUp")]
    PfDown { pf: PfRef, ifname: String },
    #[error("provision {pf}: cannot bring PF {ifname} up: {source}")]
    LinkUp {
        pf: PfRef,
        ifname: String,
        source: NetlinkError,
    },
    #[error("provision {pf}: {what} refused: VF {index} ({vf}) is in use by a pod ({evidence}); remove the pod first")]
    InUse {
        pf: PfRef,
        what: String,
        index: u32,
        vf: PciAddress,
        evidence: String,
    },
    #[error("provision {pf} ({pci}): the kernel created {got} of {asked} VFs{hint}; the PF was restored to {before} VFs")]
    Created {
        pf: PfRef,
        pci: PciAddress,
        got: u32,
        asked: u32,
        before: u32,
        hint: String,
    },
    #[error("provision {pf} ({pci}): writing sriov_numvfs={value} failed: {source}")]
    WriteNumVfs {
        pf: PfRef,
        pci: PciAddress,
        value: u32,
        source: SysfsError,
    },
    #[error("provision {pf}: driver {driver} is not loaded (no {path}); load it on the node (modprobe {driver})")]
    DriverMissing {
        pf: PfRef,
        driver: String,
        path: PathBuf,
    },
    #[error("provision {pf}: VF {index} ({vf}) has no IOMMU group: vfio-pci needs the IOMMU enabled (intel_iommu=on or amd_iommu=on with iommu=pt on x86, the SMMU on Arm)")]
    NoIommu {
        pf: PfRef,
        index: u32,
        vf: PciAddress,
    },
    #[error("provision {pf}: binding VF {index} ({vf}) to {driver} failed: {reason}")]
    Bind {
        pf: PfRef,
        index: u32,
        vf: PciAddress,
        driver: String,
        reason: String,
    },
    #[error("provision {pf}: {0}", pf = .1)]
    Sysfs(SysfsError, PfRef),
}
