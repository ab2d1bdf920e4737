//! Device health as the kubelet sees it. This is the one place that decides it (docs/CONTRACT.md,
//! "Health"): the PCI device is present, still bound to the driver it was pooled with, and the
//! PF's netdev (when it has one in this network namespace) is administratively up with carrier.

use std::collections::HashMap;
use std::fmt;

use sriov_host::linkmon::LinkState;
use sriov_host::{PciAddress, PciDevice, Sysfs};

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

/// The link state of every netdev in this network namespace, by name, as rtnetlink reported it.
#[derive(Debug, Default, Clone)]
pub struct Links {
    by_name: HashMap<String, LinkState>,
}

impl Links {
    /// Apply notifications; returns true when some link's usability changed.
    pub fn apply(&mut self, states: Vec<LinkState>) -> bool {
        let mut changed = false;
        for s in states {
            // A rename arrives as a NEWLINK with the new name: forget the old one.
            let old: Vec<String> = self
                .by_name
                .iter()
                .filter(|(n, o)| o.index == s.index && **n != s.name)
                .map(|(n, _)| n.clone())
                .collect();
            for n in old {
                self.by_name.remove(&n);
                changed = true;
            }
            if s.removed {
                changed |= self.by_name.remove(&s.name).is_some();
                continue;
            }
            let prev = self.by_name.get(&s.name).map(LinkState::healthy);
            changed |= prev != Some(s.healthy());
            self.by_name.insert(s.name.clone(), s);
        }
        changed
    }

    /// Forget everything (before a fresh dump).
    pub fn clear(&mut self) {
        self.by_name.clear();
    }

    pub fn get(&self, name: &str) -> Option<&LinkState> {
        self.by_name.get(name)
    }
}

/// Health of pooled devices against one view of the node: sysfs plus link states. PF netdev
/// names are read from sysfs once per PF.
pub struct Checker<'a> {
    sysfs: &'a Sysfs,
    links: &'a Links,
    pf_netdev: std::cell::RefCell<HashMap<PciAddress, Option<String>>>,
}

impl<'a> Checker<'a> {
    pub fn new(sysfs: &'a Sysfs, links: &'a Links) -> Self {
        Checker {
            sysfs,
            links,
            pf_netdev: Default::default(),
        }
    }

    /// Why the PF of `pooled` makes it unusable, if it does: its netdev is known to rtnetlink and
    /// is down or without carrier. A PF without a netdev here (userspace driver), or one whose
    /// netdev rtnetlink does not know, has no say.
    pub fn pf_problem(&self, pooled: &PciDevice) -> Option<&'static str> {
        let pf = pooled.pf()?;
        let name = self
            .pf_netdev
            .borrow_mut()
            .entry(pf)
            .or_insert_with(|| {
                self.sysfs
                    .netdevs(pf)
                    .ok()
                    .and_then(|v| v.into_iter().next())
            })
            .clone()?;
        let st = self.links.get(&name)?;
        if !st.admin_up {
            Some("PF netdev administratively down")
        } else if !st.carrier {
            Some("PF netdev has no carrier")
        } else {
            None
        }
    }

    pub fn check(&self, pooled: &PciDevice) -> Health {
        if check(self.sysfs, pooled) == Health::Unhealthy || self.pf_problem(pooled).is_some() {
            Health::Unhealthy
        } else {
            Health::Healthy
        }
    }
}
