//! Device health as the kubelet sees it. This is the one place that decides it; carrier and
//! admin state of the PF netdev (via netlink) plug in here.

use std::fmt;

use sriov_host::{PciDevice, Sysfs};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Healthy,
    Unhealthy,
}

impl Health {
    /// The kubelet's string for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => kubelet_proto::HEALTHY,
            Health::Unhealthy => kubelet_proto::UNHEALTHY,
        }
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The health of a pooled device now: unhealthy when its PCI device is gone or it is no longer
/// bound to the driver it had when it was pooled.
pub fn check(sysfs: &Sysfs, pooled: &PciDevice) -> Health {
    if !sysfs.exists(pooled.address) {
        return Health::Unhealthy;
    }
    match sysfs.driver(pooled.address) {
        Ok(d) if d == pooled.driver => Health::Healthy,
        _ => Health::Unhealthy,
    }
}
