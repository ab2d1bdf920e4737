//! What a provisioning run is asked ([`ProvisionRequest`]), what it needs from the PF's link
//! ([`PfLink`]), how long it waits ([`Timeouts`]) and what it reports ([`ProvisionReport`]).

use std::fmt;
use std::time::Duration;

use crate::netlink::NetlinkError;
use crate::pci::PciAddress;
use crate::range::IndexSet;

/// How a `provision` entry names its PF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PfRef {
    /// By its netdev name in the plugin's network namespace, e.g. `enp3s0f0`.
    Netdev(String),
    /// By PCI address: stable across renames and usable when the PF has no netdev.
    Pci(PciAddress),
}

impl fmt::Display for PfRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PfRef::Netdev(n) => f.write_str(n),
            PfRef::Pci(a) => write!(f, "{a}"),
        }
    }
}

impl PfRef {
    /// A PCI address if it parses as one, else a netdev name.
    pub fn parse(s: &str) -> PfRef {
        s.parse()
            .map(PfRef::Pci)
            .unwrap_or_else(|_| PfRef::Netdev(s.to_string()))
    }
}

/// One VF range and the driver it must be bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VfDriverRule {
    /// The VF indexes the rule covers.
    pub vfs: IndexSet,
    /// The kernel driver (module name) to bind them to, e.g. `vfio-pci`.
    pub driver: String,
}

/// What one `provision` entry asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvisionRequest {
    /// The PF to provision.
    pub pf: PfRef,
    /// How many VFs it must have (`sriov_numvfs`); 0 removes them all.
    pub num_vfs: u32,
    /// Which VFs get which driver; VFs no rule names are left on whatever driver they have.
    pub vf_drivers: Vec<VfDriverRule>,
    /// Bring the PF up first if it is down, instead of refusing.
    pub link_up: bool,
}

/// The PF's link, as provisioning needs it. Implemented over rtnetlink by the daemon.
pub trait PfLink {
    /// Whether the netdev `ifname` is administratively up.
    fn is_up(&self, ifname: &str) -> Result<bool, NetlinkError>;
    /// Bring the netdev `ifname` up.
    fn set_up(&self, ifname: &str) -> Result<(), NetlinkError>;
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProvisionReport {
    /// The PF the request resolved to; `None` only in a default report.
    pub pf: Option<PciAddress>,
    /// Whether the PF was down and was brought up.
    pub link_raised: bool,
    /// `sriov_numvfs` before the run.
    pub vfs_before: u32,
    /// `sriov_numvfs` after the run.
    pub vfs_after: u32,
    /// VFs moved to another driver: index, PCI address, new driver.
    pub rebound: Vec<(u32, PciAddress, String)>,
}

impl ProvisionReport {
    /// Whether the run changed anything on the host.
    pub fn changed(&self) -> bool {
        self.link_raised || self.vfs_before != self.vfs_after || !self.rebound.is_empty()
    }
}

/// Bounds for the kernel's work.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// How long to wait for the kernel to create VFs after writing `sriov_numvfs`.
    pub create: Duration,
    /// How long to wait for one VF to bind to its driver.
    pub bind: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            create: Duration::from_secs(30),
            bind: Duration::from_secs(10),
        }
    }
}
