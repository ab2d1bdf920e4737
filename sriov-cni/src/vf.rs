//! Resolving a VF from its PCI address through sysfs: its PF, index, netdev and driver; and
//! finding its netdev again later by what it is, never by its name alone.

use sriov_host::netlink::{Link, Netlink, NetlinkError, ParentDev};
use sriov_host::{MacAddr, PciAddress, Sysfs};

use crate::error::{CniError, Result, INVALID_CONFIG};
use crate::state::State;

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

/// What tells the VF's netdev from any other netdev, wherever it is and whatever it is called.
///
/// A netdev that reports a parent device is the VF's exactly when that parent is the VF's PCI
/// device: only the VF driver creates such a netdev, so nothing in a pod can forge it. A netdev
/// without one (a veth standing in for a VF; a real VF on a kernel before 5.14) is the VF's when
/// the VF reported none at ADD either, and it has the ifindex and one of the MACs recorded: a
/// pod cannot create a netdev with the ifindex of one that still exists in its netns.
#[derive(Debug, Clone, Copy)]
pub struct Identity<'a> {
    pub pci: PciAddress,
    /// The parent device the netdev reported at ADD.
    pub parent: Option<&'a ParentDev>,
    /// The ifindex it has where it is looked for; `None` when it was found by a name only this
    /// attachment uses.
    pub ifindex: Option<u32>,
    /// The MACs it may carry.
    pub macs: &'a [MacAddr],
}

impl Identity<'_> {
    /// `Ok` when `link` is the VF's netdev; else why it is not.
    pub fn check(&self, link: &Link) -> std::result::Result<(), String> {
        match (&link.parent, self.parent) {
            (Some(p), _) if p.is_pci(self.pci) => Ok(()),
            (Some(p), _) => Err(format!("its parent device is {p}, not pci/{}", self.pci)),
            (None, Some(want)) => Err(format!(
                "it reports no parent device (the VF reported {want})"
            )),
            (None, None) => {
                if let Some(i) = self.ifindex.filter(|i| *i != link.index) {
                    return Err(format!("ifindex {} is not the VF's {i}", link.index));
                }
                match link.mac {
                    Some(m) if self.macs.contains(&m) => Ok(()),
                    m => Err(format!(
                        "MAC {} is none of the VF's ({})",
                        m.map(|m| m.to_string()).unwrap_or_else(|| "(none)".into()),
                        join(self.macs)
                    )),
                }
            }
        }
    }

    /// What is looked for, for a message.
    pub fn describe(&self) -> String {
        match (self.parent, self.ifindex) {
            (Some(p), _) => format!("a netdev whose parent device is {p}"),
            (None, Some(i)) => format!("ifindex {i} with MAC {}", join(self.macs)),
            (None, None) => format!("a netdev with MAC {}", join(self.macs)),
        }
    }
}

fn join(macs: &[MacAddr]) -> String {
    let v: Vec<String> = macs.iter().map(|m| m.to_string()).collect();
    v.join(" or ")
}

/// The MACs the VF netdev may carry in the pod: its own, the one ADD set, and `extra` (the MAC
/// the chain's final result reports, e.g. after `tuning`).
pub fn pod_macs(st: &State, extra: Option<MacAddr>) -> Vec<MacAddr> {
    let own = st.netdev.as_ref().and_then(|n| n.mac);
    let mut v = Vec::new();
    for m in [own, st.pod_mac, extra].into_iter().flatten() {
        if !v.contains(&m) {
            v.push(m);
        }
    }
    v
}

/// Where a lookup of the VF's netdev ended.
#[derive(Debug)]
pub enum Lookup {
    Found(Link),
    /// Not there: what was looked for, and why the candidates were not it.
    Missing(String),
}

/// The VF's netdev in the pod netns `pod`, by identity (see [`Identity`]), or what was looked
/// for when no netdev there is the VF. Records of earlier versions and of the Go plugin hold no
/// identity: then a netdev whose parent device is the VF, else one with a name the attachment
/// used (`CNI_IFNAME`, the temporary name) that reports no parent device.
pub fn find_in_pod(
    pod: &mut Netlink,
    st: &State,
    macs: &[MacAddr],
) -> std::result::Result<Lookup, NetlinkError> {
    let Some(rec) = &st.netdev else {
        return Ok(Lookup::Missing("no VF netdev recorded".into()));
    };
    let Some(host_index) = rec.ifindex else {
        return legacy_in_pod(pod, st);
    };
    // The ifindex it has in the pod, else the one it had in the host: a move keeps it unless
    // the target netns already uses it.
    let index = st.pod_ifindex.unwrap_or(host_index);
    let id = Identity {
        pci: st.device_id,
        parent: rec.parent.as_ref(),
        ifindex: Some(index),
        macs,
    };
    let not_found = |why: String| Ok(Lookup::Missing(format!("{} ({why})", id.describe())));
    let why = match pod.link_by_index(index) {
        Ok(l) => match id.check(&l) {
            Ok(()) => return Ok(Lookup::Found(l)),
            Err(why) => format!("{} (ifindex {index}): {why}", l.name),
        },
        Err(e) if e.is_not_found() => format!("no ifindex {index}"),
        Err(e) => return Err(e),
    };
    if rec.parent.is_some() {
        // Moved out and back in since: a new ifindex, the same parent.
        return match pod.links()?.into_iter().find(|l| id.check(l).is_ok()) {
            Some(l) => Ok(Lookup::Found(l)),
            None => not_found(why),
        };
    }
    if let (None, Some(temp)) = (st.pod_ifindex, &st.temp_name) {
        // Just moved, and its host ifindex was taken in the pod: the temporary name is this
        // attachment's alone.
        let by_temp = Identity {
            ifindex: None,
            ..id
        };
        match pod.link_by_name(temp) {
            Ok(l) if by_temp.check(&l).is_ok() => return Ok(Lookup::Found(l)),
            Ok(_) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    not_found(why)
}

fn legacy_in_pod(pod: &mut Netlink, st: &State) -> std::result::Result<Lookup, NetlinkError> {
    if let Some(l) = pod
        .links()?
        .into_iter()
        .find(|l| l.parent.as_ref().is_some_and(|p| p.is_pci(st.device_id)))
    {
        return Ok(Lookup::Found(l));
    }
    for name in [Some(st.ifname.as_str()), st.temp_name.as_deref()]
        .into_iter()
        .flatten()
    {
        match pod.link_by_name(name) {
            Ok(l) if l.parent.is_none() => {
                tracing::warn!(netdev = name, pci = %st.device_id,
                    "attachment recorded without the netdev's identity (by an earlier version or the Go plugin): taking the netdev by its name");
                return Ok(Lookup::Found(l));
            }
            Ok(_) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Lookup::Missing(format!(
        "a netdev whose parent device is pci/{} or, without one, named {}",
        st.device_id, st.ifname
    )))
}

/// The VF's netdev in this (the host) netns: one the VF's sysfs `net/` directory lists, which
/// does not report another parent device. `None` when there is none.
pub fn find_in_host(nl: &mut Netlink, sysfs: &Sysfs, pci: PciAddress) -> Option<Link> {
    for name in sysfs.netdevs(pci).unwrap_or_default() {
        match nl.link_by_name(&name) {
            Ok(l) => match &l.parent {
                Some(p) if !p.is_pci(pci) => {
                    tracing::warn!(netdev = %name, parent = %p, pci = %pci,
                        "netdev listed under the VF reports another parent device; not touching it")
                }
                _ => return Some(l),
            },
            Err(e) => tracing::debug!(netdev = %name, error = %e, "listed VF netdev not found"),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Mode;

    const VF: &str = "0000:03:10.1";

    fn mac(s: &str) -> MacAddr {
        s.parse().unwrap()
    }

    fn link(index: u32, m: &str, parent: Option<(&str, &str)>) -> Link {
        Link {
            index,
            name: "net1".into(),
            mac: Some(mac(m)),
            mtu: 1500,
            up: true,
            parent: parent.map(|(bus, name)| ParentDev {
                bus: bus.into(),
                name: name.into(),
            }),
        }
    }

    #[test]
    fn a_netdev_with_a_parent_device_is_the_vf_exactly_when_the_parent_is_the_vf() {
        let parent = ParentDev {
            bus: "pci".into(),
            name: VF.into(),
        };
        let macs = [mac("02:00:00:00:10:01")];
        let id = Identity {
            pci: VF.parse().unwrap(),
            parent: Some(&parent),
            ifindex: Some(4),
            macs: &macs,
        };
        // Another ifindex and MAC (moved out and back, MAC changed in the pod): still the VF.
        assert_eq!(
            id.check(&link(9, "02:66:00:00:00:01", Some(("pci", VF)))),
            Ok(())
        );
        for (l, why) in [
            (
                link(4, "02:00:00:00:10:01", Some(("pci", "0000:03:10.2"))),
                "parent device is pci/0000:03:10.2",
            ),
            (
                link(4, "02:00:00:00:10:01", Some(("virtio", VF))),
                "parent device is virtio/",
            ),
            // A look-alike with the VF's ifindex and MAC but no parent device.
            (
                link(4, "02:00:00:00:10:01", None),
                "reports no parent device",
            ),
        ] {
            let e = id.check(&l).unwrap_err();
            assert!(e.contains(why), "{e}");
        }
        assert!(id.describe().contains("parent device is pci/0000:03:10.1"));
    }

    #[test]
    fn a_netdev_without_one_is_matched_by_ifindex_and_mac() {
        let macs = [mac("02:00:00:00:10:01"), mac("02:bb:00:00:00:05")];
        let id = Identity {
            pci: VF.parse().unwrap(),
            parent: None,
            ifindex: Some(4),
            macs: &macs,
        };
        assert_eq!(id.check(&link(4, "02:00:00:00:10:01", None)), Ok(()));
        assert_eq!(id.check(&link(4, "02:bb:00:00:00:05", None)), Ok(()));
        let e = id.check(&link(5, "02:00:00:00:10:01", None)).unwrap_err();
        assert!(e.contains("ifindex 5 is not the VF's 4"), "{e}");
        let e = id.check(&link(4, "02:66:00:00:00:01", None)).unwrap_err();
        assert!(
            e.contains("MAC 02:66:00:00:00:01 is none of the VF's"),
            "{e}"
        );
        // Its parent is authoritative even when ADD recorded none.
        assert_eq!(
            id.check(&link(7, "02:66:00:00:00:01", Some(("pci", VF)))),
            Ok(())
        );
        // Found by the attachment's own temporary name: the MAC alone.
        let by_name = Identity {
            ifindex: None,
            ..id
        };
        assert_eq!(by_name.check(&link(9, "02:00:00:00:10:01", None)), Ok(()));
    }

    #[test]
    fn records_of_the_previous_version_load_without_identity() {
        // A state file as the previous version wrote it.
        let old = r#"{
          "container_id": "c1", "ifname": "net1", "netns": "/run/netns/p1", "mode": "kernel",
          "device_id": "0000:03:10.1", "pf": "0000:03:00.0", "pf_netdev": "pf0", "vf_index": 1,
          "vf_orig": {"index": 1, "mac": "00:00:00:00:00:00", "vlan": 0, "qos": 0,
            "proto": "802.1q", "spoofchk": true, "trust": false, "min_tx_rate": 0,
            "max_tx_rate": 0, "link_state": "auto"},
          "applied": {"mac": null, "vlan": null, "vlan_qos": null, "vlan_proto": null,
            "spoofchk": null, "trust": null, "link_state": null, "min_tx_rate": null,
            "max_tx_rate": null},
          "netdev": {"name": "vf1", "mac": "02:00:00:00:10:01", "mtu": 1500, "up": false},
          "temp_name": "sv0123456789ab", "moved": true, "pod_mac": null, "pod_mtu": 1400,
          "ipam_type": null, "ipam_done": false, "conf": {}, "device_info_file": null,
          "result": null
        }"#;
        let st: State = serde_json::from_str(old).unwrap();
        let n = st.netdev.as_ref().unwrap();
        assert_eq!((n.ifindex, &n.parent, st.pod_ifindex), (None, &None, None));
        assert_eq!(st.mode, Mode::Kernel);
        assert_eq!(
            pod_macs(&st, Some(mac("02:bb:00:00:00:05"))),
            [mac("02:00:00:00:10:01"), mac("02:bb:00:00:00:05")]
        );
    }
}
