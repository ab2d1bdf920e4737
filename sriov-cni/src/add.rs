//! ADD: attach a VF to a pod. Everything is validated before the first change; every change is
//! recorded in the attachment's [`State`] as it happens, so that a failure part-way is undone by
//! the same teardown DEL uses.

use std::hash::{Hash, Hasher};
use std::path::Path;

use nix::errno::Errno;
use serde_json::Value;
use sriov_host::netlink::{IpNet, Link, Netlink};
use sriov_host::{netns, MacAddr, PciAddress, Sysfs};

use crate::env::Env;
use crate::error::{CniError, Result, INVALID_ENV, OPERATION_FAILED};
use crate::netconf::{NetConf, PfSettings};
use crate::result::{parse_cidr, CniResult, Interface};
use crate::state::{Mode, NetdevState, State, VfLock};
use crate::vf::Vf;
use crate::{del, ipam, pf, state, vf};

pub fn add(env: &Env, conf: &NetConf) -> Result<Value> {
    let pci = conf.require_device_id()?;
    let sysfs = Sysfs::new(&env.sysfs_root);
    let netns_path = env
        .netns
        .clone()
        .ok_or_else(|| CniError::env("CNI_NETNS is not set"))?;
    if !netns::is_alive(&netns_path) {
        return Err(CniError::new(
            INVALID_ENV,
            format!(
                "CNI_NETNS {}: not a network namespace",
                netns_path.display()
            ),
        ));
    }
    env.refuse_own_netns()?;
    let ipam_plugin = match &conf.ipam_type {
        Some(t) => Some(ipam::find(&env.path, t)?),
        None => None,
    };
    // Fails before anything changes when the device is not a VF, or (kernel mode) when the
    // pod already has an interface called CNI_IFNAME.
    // The pod's socket is kept for the attachment itself.
    let pod = if Vf::resolve(&sysfs, pci)?.netdev.is_some() {
        let mut pod = Netlink::open_here(&netns_path)?;
        ifname_free(&mut pod, &netns_path, &env.ifname)?;
        Some(pod)
    } else {
        None
    };

    let _lock = VfLock::acquire(&env.state_dir, pci)?;
    clear_holders(env, pci)?;
    let vf = Vf::resolve(&sysfs, pci)?;
    let mode = if vf.netdev.is_some() {
        Mode::Kernel
    } else if vf.is_userspace() {
        Mode::Dpdk
    } else {
        return Err(CniError::op(format!(
            "VF {pci} has no netdev in this network namespace and its driver ({}) is not a userspace driver (vfio-pci, uio_pci_generic, igb_uio): it may be in use in another network namespace",
            vf.driver.as_deref().unwrap_or("none")
        )));
    };

    let mut nl = Netlink::open()?;
    let vf_orig = match &vf.pf_netdev {
        Some(p) => nl.vf_info(p)?.into_iter().find(|i| i.index == vf.index),
        None => None,
    };
    pf::precheck(
        &conf.pf,
        vf.pf_netdev.as_deref(),
        vf_orig.as_ref(),
        vf.index,
    )?;
    let netdev = match &vf.netdev {
        Some(name) => Some(netdev_state(&mut nl, name, pci)?),
        None => None,
    };
    tracing::info!(pci = %pci, pf = ?vf.pf_netdev, vf = vf.index, ?mode, "attaching VF");

    let conf_value: Value = serde_json::from_slice(&conf.raw).unwrap_or(Value::Null);
    let mut st = State {
        container_id: env.container_id.clone(),
        ifname: env.ifname.clone(),
        netns: Some(netns_path.clone()),
        mode,
        device_id: pci,
        pf: Some(vf.pf),
        pf_netdev: vf.pf_netdev.clone(),
        vf_index: vf.index,
        vf_orig,
        applied: PfSettings::default(),
        netdev,
        // Recorded as moved from the first write on (the netdev "may have left the host"): a
        // DEL after a crash before the move looks in the pod first, finds nothing there and
        // restores it in the host. One state write less per ADD than recording the move
        // separately just before it.
        temp_name: (mode == Mode::Kernel).then(|| temp_name(&env.container_id, &env.ifname, pci)),
        moved: mode == Mode::Kernel,
        pod_ifindex: None,
        pod_mac: None,
        pod_mtu: None,
        ipam_type: conf.ipam_type.clone(),
        ipam_done: false,
        conf: conf_value,
        result: None,
    };
    st.save(&env.state_dir)?;

    let run = Run {
        env,
        conf,
        netns: &netns_path,
        ipam: ipam_plugin.as_deref(),
    };
    let out = match mode {
        Mode::Kernel => run.kernel(&mut nl, pod, &mut st),
        Mode::Dpdk => run.dpdk(&mut nl, &mut st),
    };
    match out {
        Ok(v) => {
            st.result = Some(v.clone());
            st.save(&env.state_dir)?;
            Ok(CniResult::from_value(&v)?.to_value(conf.cni_version))
        }
        Err(e) => Err(undo(env, &st, e)),
    }
}

/// ADD failed with `e`: undo what `st` records, through DEL's teardown. The state file goes
/// when everything was undone; otherwise it stays for DEL, and `e` says what is left.
fn undo(env: &Env, st: &State, e: CniError) -> CniError {
    tracing::warn!(error = %e, "ADD failed; undoing what it changed");
    let undone = del::teardown_all(st, env, del::Ipam::IfDone, &[], None);
    let mut errors: Vec<String> = undone.errors.iter().map(ToString::to_string).collect();
    errors.extend(undone.missing.map(|m| format!("VF netdev not found: {m}")));
    if errors.is_empty() {
        let _ = st.remove(&env.state_dir);
        e
    } else {
        for x in &errors {
            tracing::error!(error = %x, "undo failed");
        }
        e.with_details(format!("undo incomplete: {}", errors.join("; ")))
    }
}

/// The VF netdev `name` as it is before ADD changes it; refused when the kernel says it belongs
/// to another device than VF `pci`.
fn netdev_state(nl: &mut Netlink, name: &str, pci: PciAddress) -> Result<NetdevState> {
    let l = nl.link_by_name(name)?;
    if let Some(p) = l.parent.as_ref().filter(|p| !p.is_pci(pci)) {
        return Err(CniError::op(format!(
            "netdev {name} listed under VF {pci} belongs to {p}: not attaching it"
        )));
    }
    Ok(NetdevState {
        name: l.name,
        mac: l.mac,
        mtu: l.mtu,
        up: l.up,
        ifindex: Some(l.index),
        parent: l.parent,
    })
}

/// Another attachment holding this VF: refuse when its netns is alive, clean it up when not.
fn clear_holders(env: &Env, pci: PciAddress) -> Result<()> {
    for s in state::all(&env.state_dir)
        .into_iter()
        .filter(|s| s.device_id == pci)
    {
        let same = s.container_id == env.container_id && s.ifname == env.ifname;
        let alive = s.netns.as_deref().is_some_and(netns::is_alive);
        if alive && !same {
            return Err(CniError::new(
                crate::error::VF_BUSY,
                format!(
                    "VF {pci} is in use by container {} (netns {}, interface {}); release it (DEL) first",
                    s.container_id,
                    s.netns.as_deref().map(|p| p.display().to_string()).unwrap_or_default(),
                    s.ifname
                ),
            ));
        }
        tracing::info!(pci = %pci, holder = %s.container_id, "cleaning up a stale attachment of this VF");
        let ns = s
            .netns
            .as_deref()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let overrides = [
            ("CNI_CONTAINERID", s.container_id.as_str()),
            ("CNI_IFNAME", s.ifname.as_str()),
            ("CNI_NETNS", ns.as_str()),
        ];
        let errors = del::teardown(&s, env, del::Ipam::Always, &overrides);
        if !errors.is_empty() {
            return Err(CniError::op(format!(
                "VF {pci}: cleaning up stale attachment of container {} failed: {}",
                s.container_id,
                del::join(&errors)
            )));
        }
        s.remove(&env.state_dir)?;
    }
    Ok(())
}

/// `CNI_IFNAME` must not name an interface the pod already has (its primary `eth0`, `lo`,
/// another attachment's): checked before anything changes.
fn ifname_free(pod: &mut Netlink, netns_path: &Path, ifname: &str) -> Result<()> {
    match pod.link_by_name(ifname) {
        Ok(_) => Err(ifname_taken(netns_path, ifname)),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn ifname_taken(netns_path: &Path, ifname: &str) -> CniError {
    CniError::env(format!(
        "CNI_IFNAME {ifname}: netns {} already has an interface of that name; choose another interface name for this attachment",
        netns_path.display()
    ))
}

/// A unique, valid netdev name for the VF while it moves.
pub fn temp_name(container_id: &str, ifname: &str, pci: PciAddress) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (container_id, ifname, pci.to_string()).hash(&mut h);
    format!("sv{:012x}", h.finish() & 0xffff_ffff_ffff)
}

struct Run<'a> {
    env: &'a Env,
    conf: &'a NetConf,
    netns: &'a Path,
    ipam: Option<&'a Path>,
}

impl Run<'_> {
    fn pf_settings(&self, nl: &mut Netlink, st: &mut State) -> Result<()> {
        if let (Some(pf), Some(orig)) = (st.pf_netdev.clone(), st.vf_orig.clone()) {
            let r = pf::apply(nl, &pf, st.vf_index, &self.conf.pf, &orig, &mut st.applied);
            if !st.applied.requested().is_empty() {
                // A DEL after a crash from here on must restore them.
                st.save(&self.env.state_dir)?;
            }
            r?;
        }
        Ok(())
    }

    fn ipam_add(&self, st: &mut State) -> Result<CniResult> {
        let Some(plugin) = self.ipam else {
            return Ok(CniResult::default());
        };
        let v = ipam::exec(plugin, "ADD", &self.conf.raw, &[])?;
        st.ipam_done = true;
        let v = v.ok_or_else(|| CniError::op("ipam ADD returned no result"))?;
        CniResult::from_value(&v)
    }

    /// `pod`: a socket in the pod's netns, when one is open already.
    fn kernel(&self, nl: &mut Netlink, pod: Option<Netlink>, st: &mut State) -> Result<Value> {
        self.pf_settings(nl, st)?;
        let orig = st
            .netdev
            .clone()
            .ok_or_else(|| CniError::op("no VF netdev recorded"))?;
        let link = match orig.ifindex {
            Some(i) => nl.link_by_index(i)?,
            None => nl.link_by_name(&orig.name)?,
        };
        if link.up {
            nl.set_down(&link)?;
        }
        // Recorded before the first change: the undo looks for the netdev in the pod too.
        let temp = st
            .temp_name
            .clone()
            .ok_or_else(|| CniError::op("no temporary netdev name recorded"))?;
        // One request, no rename in the host first: a rename there is a "move" uevent, on which
        // udev may give the netdev its predictable name (e.g. enp1s0v1) as an alternative name
        // before it leaves; the altname travels with it and makes renaming it back to that name
        // on DEL fail with EEXIST (seen in the lab with systemd 252's udev).
        let ns = netns::open(self.netns)?;
        nl.move_to_netns(&link, &ns, &temp)?;

        let mut pod = match pod {
            Some(p) => p,
            None => Netlink::open_here(self.netns)?,
        };
        let mut plink = match vf::find_in_pod(&mut pod, st, &vf::pod_macs(st, None))? {
            vf::Lookup::Found(l) => l,
            vf::Lookup::Missing(what) => {
                return Err(CniError::op(format!(
                    "VF {} moved, but its netdev is not in netns {}: looked for {what}",
                    st.device_id,
                    self.netns.display()
                )))
            }
        };
        st.pod_ifindex = Some(plink.index);
        st.save(&self.env.state_dir)?;
        match pod.rename(&plink, &self.env.ifname) {
            // Created in the pod since the check: the undo takes the VF back by its ifindex.
            Err(e) if e.errno() == Some(Errno::EEXIST) => {
                return Err(ifname_taken(self.netns, &self.env.ifname))
            }
            r => r?,
        }
        plink.name = self.env.ifname.clone();
        if let Some(mac) = self.conf.pf.mac {
            // The netdev first, then the same admin MAC on the PF.
            self.set_pod_mac(nl, &mut pod, &plink, mac, st)?;
            st.pod_mac = Some(mac);
            if let Some(pfname) = st.pf_netdev.clone() {
                pf::apply_mac(nl, &pfname, st.vf_index, mac, &mut st.applied)?;
            }
        }
        if let Some(mtu) = self.conf.mtu {
            pod.set_mtu(&plink, mtu)?;
            st.pod_mtu = Some(mtu);
        }

        let mut res = self.ipam_add(st)?;
        announce(self.netns, &self.env.ifname);
        for ip in &res.ips {
            pod.add_address(&plink, ip.net()?)?;
        }
        pod.set_up(&plink)?;
        add_routes(&mut pod, &plink, &res)?;

        let now = pod.link_by_index(plink.index)?;
        let iface = Interface {
            name: self.env.ifname.clone(),
            mac: now.mac.map(|m| m.to_string()),
            mtu: Some(now.mtu),
            sandbox: Some(self.netns.display().to_string()),
            pci_id: Some(st.device_id.to_string()),
            extra: Default::default(),
        };
        Ok(self.result(&mut res, iface))
    }

    /// Set `mac` on the VF netdev in the pod. An untrusted VF whose PF already holds an admin MAC
    /// for it cannot change its own MAC (igb refuses: EADDRNOTAVAIL); that happens to a VF an
    /// administrator gave an admin MAC, or one a DPDK attachment used, whose restore leaves the
    /// recorded admin MAC set. Then the admin MAC is cleared (recorded as applied, so that the
    /// restore puts the recorded one back) and the MAC set again.
    fn set_pod_mac(
        &self,
        nl: &mut Netlink,
        pod: &mut Netlink,
        link: &Link,
        mac: MacAddr,
        st: &mut State,
    ) -> Result<()> {
        let err = match pod.set_mac(link, mac) {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        let Some(pfname) = st
            .pf_netdev
            .clone()
            .filter(|_| err.errno() == Some(Errno::EADDRNOTAVAIL))
        else {
            return Err(err.into());
        };
        tracing::info!(pf = %pfname, vf = st.vf_index, error = %err,
            "the VF may not change its MAC while the PF holds an admin MAC for it; clearing that first");
        if let Err(e) = pf::apply_mac(nl, &pfname, st.vf_index, MacAddr::ZERO, &mut st.applied) {
            tracing::debug!(error = %e, "PF refuses a zero admin MAC");
            return Err(err.into());
        }
        pod.set_mac(link, mac)?;
        Ok(())
    }

    fn dpdk(&self, nl: &mut Netlink, st: &mut State) -> Result<Value> {
        self.pf_settings(nl, st)?;
        if let (Some(mac), Some(pfname)) = (self.conf.pf.mac, st.pf_netdev.clone()) {
            pf::apply_mac(nl, &pfname, st.vf_index, mac, &mut st.applied)?;
        }
        // The device-info file Multus reads for network-status is the device plugin's, which
        // Multus copies to runtimeConfig.CNIDeviceInfoFile: nothing to write here.
        let mut res = self.ipam_add(st)?;
        let iface = Interface {
            name: self.env.ifname.clone(),
            mac: self.conf.pf.mac.map(|m| m.to_string()),
            mtu: None,
            sandbox: Some(self.netns.display().to_string()),
            pci_id: Some(st.device_id.to_string()),
            extra: Default::default(),
        };
        Ok(self.result(&mut res, iface))
    }

    /// Our interface appended to `prevResult`'s, IPAM's addresses pointing at it.
    fn result(&self, ipam: &mut CniResult, iface: Interface) -> Value {
        let mut out = match &self.conf.prev_result {
            Some(p) => CniResult::from_value(p).unwrap_or_default(),
            None => CniResult::default(),
        };
        let idx = out.interfaces.len();
        out.interfaces.push(iface);
        for ip in ipam.ips.iter_mut() {
            ip.interface = Some(idx);
        }
        out.ips.append(&mut ipam.ips);
        out.routes.append(&mut ipam.routes);
        if ipam.dns.is_some() {
            out.dns = ipam.dns.take();
        }
        out.to_value(crate::version::Version::V1_1_0)
    }
}

/// Routes from the IPAM result; a route without `gw` goes via the gateway of the same family.
fn add_routes(pod: &mut Netlink, link: &Link, res: &CniResult) -> Result<()> {
    for r in &res.routes {
        let dst: IpNet = parse_cidr(&r.dst)?;
        let gw = r.gw.or_else(|| {
            res.ips
                .iter()
                .filter_map(|ip| ip.gateway)
                .find(|g| g.is_ipv4() == dst.addr.is_ipv4())
        });
        match pod.add_route(link, dst, gw) {
            Ok(()) => {}
            Err(e) if e.errno() == Some(Errno::EEXIST) => {}
            Err(e) => return Err(CniError::new(OPERATION_FAILED, e.to_string())),
        }
    }
    Ok(())
}

/// Have the kernel announce the addresses when the link comes up: gratuitous ARP (`arp_notify`)
/// and unsolicited neighbour advertisements (`ndisc_notify`). Best effort.
fn announce(netns_path: &Path, ifname: &str) {
    let res = netns::run_here(netns_path, || {
        for (fam, key) in [("ipv4", "arp_notify"), ("ipv6", "ndisc_notify")] {
            let p = format!("/proc/sys/net/{fam}/conf/{ifname}/{key}");
            if let Err(e) = std::fs::write(&p, "1") {
                tracing::debug!(path = %p, error = %e, "cannot enable address announcement");
            }
        }
    });
    if let Err(e) = res {
        tracing::debug!(error = %e, "cannot enable address announcement");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_are_valid_and_distinct() {
        let pci: PciAddress = "0000:03:10.1".parse().unwrap();
        let a = temp_name("c1", "net1", pci);
        let b = temp_name("c2", "net1", pci);
        assert!(crate::env::valid_ifname(&a) && a.starts_with("sv"), "{a}");
        assert_ne!(a, b);
        assert_eq!(a, temp_name("c1", "net1", pci), "stable for one attachment");
    }
}
