//! What can go wrong while provisioning a PF; every variant names the `provision` entry's PF.

use std::path::PathBuf;

use super::PfRef;
use crate::netlink::NetlinkError;
use crate::pci::PciAddress;
use crate::sysfs::SysfsError;

/// Why a `provision` entry could not be applied. The entry is checked before any change and a
/// failed VF-count change is undone; a failure while binding VFs leaves those already rebound.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("provision {pf}: no such PF (no PCI device, and no netdev of that name in this network namespace)")]
    /// The entry names a PCI address with no device, or an interface name absent from this
    /// network namespace; fix the name or run the plugin in the host network namespace.
    NoPf {
        /// The PF as the entry names it.
        pf: PfRef,
    },
    #[error("provision {pf} ({pci}): not an SR-IOV PF (no sriov_totalvfs)")]
    /// The device has no `sriov_totalvfs` file, so the kernel cannot create VFs on it (not an
    /// SR-IOV device, SR-IOV off in firmware, or it is itself a VF); name a different PF.
    NotSriov {
        /// The PF as the entry names it.
        pf: PfRef,
        /// The device it resolved to.
        pci: PciAddress,
    },
    #[error("provision {pf} ({pci}): numVfs {asked} exceeds sriov_totalvfs {total}")]
    /// `numVfs` is above what the device offers (`sriov_totalvfs`); lower it, or raise the
    /// limit in firmware.
    TooManyVfs {
        /// The PF as the entry names it.
        pf: PfRef,
        /// The device it resolved to.
        pci: PciAddress,
        /// The entry's `numVfs`.
        asked: u32,
        /// The device's `sriov_totalvfs`.
        total: u32,
    },
    #[error("provision {pf}: vfDrivers names VF {index}, but numVfs is {num_vfs} (valid: 0-{max})", max = num_vfs.saturating_sub(1))]
    /// A `vfDrivers` entry names a VF index at or past `numVfs`; fix the index list or raise
    /// `numVfs`.
    RuleOutOfRange {
        /// The PF as the entry names it.
        pf: PfRef,
        /// A VF index out of range.
        index: u32,
        /// The entry's `numVfs`.
        num_vfs: u32,
    },
    #[error("provision {pf}: VF {index} is named by two vfDrivers entries ({a} and {b})")]
    /// Two `vfDrivers` entries claim the same VF, so its driver would be ambiguous; make the
    /// index lists disjoint.
    RuleOverlap {
        /// The PF as the entry names it.
        pf: PfRef,
        /// A VF index claimed twice.
        index: u32,
        /// The first entry's driver.
        a: String,
        /// The second entry's driver.
        b: String,
    },
    #[error("provision {pf}: invalid driver name {driver:?} (letters, digits, '_', '-', '.')")]
    /// A driver name has characters a kernel module name cannot have (it would become a sysfs
    /// path); use the module's name as `lsmod` shows it.
    BadDriver {
        /// The PF as the entry names it.
        pf: PfRef,
        /// The name as written.
        driver: String,
    },
    #[error("provision {pf}: PF {ifname} is down: drivers create no VFs (or VFs without carrier) while the PF is down; bring it up or set linkUp")]
    /// The VF count must change but the PF's netdev is administratively down and the entry does
    /// not set `linkUp`; bring the PF up or set `linkUp`.
    PfDown {
        /// The PF as the entry names it.
        pf: PfRef,
        /// The PF's netdev.
        ifname: String,
    },
    #[error("provision {pf}: cannot bring PF {ifname} up: {source}")]
    /// Setting the PF up (for `linkUp`) failed in netlink; the source says why (often missing
    /// `CAP_NET_ADMIN`).
    LinkUp {
        /// The PF as the entry names it.
        pf: PfRef,
        /// The PF's netdev.
        ifname: String,
        /// The netlink failure.
        source: NetlinkError,
    },
    #[error("provision {pf}: {what} refused: VF {index} ({vf}) is in use by a pod ({evidence}); remove the pod first")]
    /// A change would destroy or rebind a VF a pod still holds; the VF was left alone. Remove
    /// the pod first.
    InUse {
        /// The PF as the entry names it.
        pf: PfRef,
        /// The refused change, e.g. `binding it to vfio-pci`.
        what: String,
        /// The VF's index on the PF.
        index: u32,
        /// The VF's PCI address.
        vf: PciAddress,
        /// What shows the VF is in use: its netdev is gone from the host network namespace, or
        /// a device-info file names it.
        evidence: String,
    },
    #[error("provision {pf} ({pci}): the kernel created {got} of {asked} VFs{hint}; the PF was restored to {before} VFs")]
    /// The write to `sriov_numvfs` succeeded but fewer VFs appeared than asked (firmware or
    /// driver limit, or the PF is down) within the timeout; the PF was set back to its former
    /// count. The hint names the likely cause.
    Created {
        /// The PF as the entry names it.
        pf: PfRef,
        /// The device it resolved to.
        pci: PciAddress,
        /// VFs the kernel created.
        got: u32,
        /// The entry's `numVfs`.
        asked: u32,
        /// The VF count restored.
        before: u32,
        /// The likely cause in parentheses, with a leading space.
        hint: String,
    },
    #[error("provision {pf} ({pci}): writing sriov_numvfs={value} failed: {source}")]
    /// The kernel refused the write to `sriov_numvfs`; the driver logs its reason in the
    /// kernel log (`dmesg`).
    WriteNumVfs {
        /// The PF as the entry names it.
        pf: PfRef,
        /// The device it resolved to.
        pci: PciAddress,
        /// The count written.
        value: u32,
        /// The failed write.
        source: SysfsError,
    },
    #[error("provision {pf}: driver {driver} is not loaded (no {path}); load it on the node (modprobe {driver})")]
    /// A `vfDrivers` driver has no directory under `/sys/bus/pci/drivers`, so VFs cannot be
    /// bound to it; load the module on the node.
    DriverMissing {
        /// The PF as the entry names it.
        pf: PfRef,
        /// The driver asked for.
        driver: String,
        /// The driver directory that is absent.
        path: PathBuf,
    },
    #[error("provision {pf}: VF {index} ({vf}) has no IOMMU group: vfio-pci needs the IOMMU enabled (intel_iommu=on or amd_iommu=on with iommu=pt on x86, the SMMU on Arm)")]
    /// A VF meant for `vfio-pci` has no `iommu_group` link: the IOMMU is off; enable it on
    /// the kernel command line and reboot.
    NoIommu {
        /// The PF as the entry names it.
        pf: PfRef,
        /// The VF's index on the PF.
        index: u32,
        /// The VF's PCI address.
        vf: PciAddress,
    },
    #[error("provision {pf}: binding VF {index} ({vf}) to {driver} failed: {reason}")]
    /// Unbinding a VF, setting its `driver_override` or probing it failed; the reason says
    /// which step and the kernel's error.
    Bind {
        /// The PF as the entry names it.
        pf: PfRef,
        /// The VF's index on the PF.
        index: u32,
        /// The VF's PCI address.
        vf: PciAddress,
        /// The driver asked for.
        driver: String,
        /// The failed step and the kernel's error.
        reason: String,
    },
    /// Reading or writing the PF's sysfs files failed (the PF vanished, or a permission
    /// problem); the error names the path.
    #[error("provision {pf}: {0}", pf = .1)]
    Sysfs(SysfsError, PfRef),
}
