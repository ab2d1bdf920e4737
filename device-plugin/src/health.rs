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
    /// Interface index to name, to notice renames.
    names: HashMap<u32, String>,
}

impl Links {
    /// Apply notifications; returns the names of links that appeared, disappeared, were
    /// renamed (old and new name), or whose usability (up with carrier) changed.
    pub fn apply(&mut self, states: Vec<LinkState>) -> Vec<String> {
        let mut changed = Vec::new();
        for s in states {
            // A rename arrives as a NEWLINK with the new name: forget the old one.
            if let Some(old) = self.names.get(&s.index) {
                if *old != s.name {
                    self.by_name.remove(old);
                    changed.push(old.clone());
                }
            }
            if s.removed {
                self.names.remove(&s.index);
                if self.by_name.remove(&s.name).is_some() {
                    changed.push(s.name.clone());
                }
                continue;
            }
            let prev = self.by_name.get(&s.name).map(LinkState::healthy);
            if prev != Some(s.healthy()) {
                changed.push(s.name.clone());
            }
            self.names.insert(s.index, s.name.clone());
            self.by_name.insert(s.name.clone(), s);
        }
        changed
    }

    /// Forget everything (before a fresh dump).
    pub fn clear(&mut self) {
        self.by_name.clear();
        self.names.clear();
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

#[cfg(test)]
mod tests {
    use sriov_host::discovery::discover;
    use sriov_tests::fakesys::ps225_two_pfs;

    use super::*;

    fn link(index: u32, name: &str, admin_up: bool, carrier: bool) -> LinkState {
        LinkState {
            index,
            name: name.into(),
            admin_up,
            carrier,
            removed: false,
        }
    }

    #[test]
    fn pf_link_state_decides_for_its_vfs_only_when_rtnetlink_knows_the_netdev() {
        let f = ps225_two_pfs();
        let sys = f.sysfs();
        let devs = discover(&sys).unwrap();
        let vf = |a: &str| devs.iter().find(|d| d.address.to_string() == a).unwrap();
        let mut links = Links::default();
        // Unknown netdevs (not in this namespace): no say.
        assert_eq!(
            Checker::new(&sys, &links).check(vf("0000:03:10.0")),
            Health::Healthy
        );
        assert_eq!(
            links.apply(vec![
                link(2, "enp3s0f0np0", false, false),
                link(3, "enp4s0f0np0", true, true)
            ]),
            ["enp3s0f0np0", "enp4s0f0np0"]
        );
        let c = Checker::new(&sys, &links);
        assert_eq!(c.check(vf("0000:03:10.0")), Health::Unhealthy);
        assert_eq!(
            c.check(vf("0000:03:10.6")),
            Health::Unhealthy,
            "vfio VFs too"
        );
        assert_eq!(c.check(vf("0000:04:10.0")), Health::Healthy);
        assert_eq!(
            c.pf_problem(vf("0000:03:10.0")),
            Some("PF netdev administratively down")
        );
        // Up without carrier is still unusable: no change to publish.
        assert!(links
            .apply(vec![link(2, "enp3s0f0np0", true, false)])
            .is_empty());
        assert_eq!(
            Checker::new(&sys, &links).pf_problem(vf("0000:03:10.1")),
            Some("PF netdev has no carrier")
        );
        // A PF without a netdev (userspace driver) does not make its VFs unhealthy.
        f.set_netdev("0000:03:00.0", None);
        assert_eq!(
            Checker::new(&sys, &links).check(vf("0000:03:10.0")),
            Health::Healthy
        );
        // A VF netdev leaving the namespace changes nothing.
        f.set_netdev("0000:04:10.0", None);
        assert_eq!(
            Checker::new(&sys, &links).check(vf("0000:04:10.0")),
            Health::Healthy
        );
    }

    #[test]
    fn renames_and_removals_are_followed() {
        let mut links = Links::default();
        links.apply(vec![link(7, "eth0", true, true)]);
        assert_eq!(
            links.apply(vec![link(7, "ens1f0", true, true)]),
            ["eth0", "ens1f0"]
        );
        assert!(links.get("eth0").is_none());
        assert!(links.get("ens1f0").is_some());
        let mut gone = link(7, "ens1f0", true, true);
        gone.removed = true;
        assert_eq!(links.apply(vec![gone]), ["ens1f0"]);
        assert!(links.get("ens1f0").is_none());
    }
}
