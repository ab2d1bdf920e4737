//! Host state shared by `sriov-device-plugin` and the `sriov` CNI plugin.
//!
//! - [`pci`]: validated PCI addresses and IDs, with vendor/device names
//! - [`sysfs`]: the sysfs tree rooted at a path (real or fake)
//! - [`discovery`]: PFs, VFs and their drivers, netdevs, NUMA nodes, IOMMU groups
//! - [`range`]: VF index lists (`"0-3,6"`)
//! - [`mac`]: MAC addresses
//! - [`devinfo`]: NPWG device-info files
//! - [`fsio`]: replacing files and opening append-only files without following what is planted

#![warn(missing_docs)]

pub mod devinfo;
pub mod discovery;
pub mod fsio;
pub mod mac;
pub mod netlink;
pub mod netns;
pub mod pci;
pub mod range;
pub mod sysfs;

pub use discovery::{PciDevice, Role};
pub use mac::MacAddr;
pub use pci::{PciAddress, PciId};
pub use range::IndexSet;
pub use sysfs::{Sysfs, SysfsError};
pub mod filewatch;
pub mod linkmon;
pub mod provision;
pub mod uevent;
