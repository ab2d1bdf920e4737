//! DEL, and the teardown shared with ADD's undo and stale-holder cleanup: restore exactly what
//! the state records, in reverse order, best effort, reporting every failure.

use std::fs::File;
use std::path::Path;

use nix::errno::Errno;
use sriov_host::netlink::{Link, Netlink, NetlinkError};
use sriov_host::{netns, MacAddr, Sysfs};

use crate::env::Env;
use crate::error::{CniError, Result};
use crate::netconf::NetConf;
use crate::result::CniResult;
use crate::state::{self, Mode, NetdevState, State, VfLock};
use crate::vfops::VfOps;
use crate::{ipam, pf, vf};

/// When teardown runs IPAM DEL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ipam {
    /// Only if IPAM ADD succeeded (ADD's undo).
    IfDone,
    /// Whenever the attachment has IPAM (DEL; IPAM DEL is idempotent).
    Always,
}

/// DEL: restore what the attachment's state records, then remove it. A state file that is not
/// this attachment's (its container ID or ifname differ from the call's, or its device from the
/// call's deviceID) is left as it is and logged; the call then goes on as if there were no state
/// (IPAM DEL with the call's config) and succeeds.
pub fn del(env: &Env, conf: &NetConf) -> Result<()> {
    let p = state::path(&env.state_dir, &env.container_id, &env.ifname);
    if let Err(e) = env.refuse_own_netns() {
        // Except to release an attachment recorded in that very netns (an earlier version
        // accepted it at ADD): the record, not CNI_NETNS, says where to look.
        let recorded_here = State::load(&p)
            .ok()
            .flatten()
            .and_then(|s| s.netns)
            .is_some_and(|n| netns::is_current(&n).unwrap_or(false));
        if !recorded_here {
            return Err(e);
        }
        tracing::warn!(netns = ?env.netns, "CNI_NETNS is the plugin's own netns; releasing the attachment recorded there");
    }
    let Some(first) = State::load_for_del(&p)?.filter(|st| owned(st, env, conf, &p)) else {
        if let Some((st, file)) = crate::legacy::load(
            &env.state_dir,
            &env.container_id,
            &env.ifname,
            env.netns.as_deref(),
            conf.device_id,
        ) {
            tracing::info!(cache = %file.display(), "releasing an attachment made by the previous sriov-cni");
            let _lock = VfLock::acquire(&env.state_dir, st.device_id)?;
            let errors = teardown(&st, env, Ipam::Always, &[]);
            if !errors.is_empty() {
                return Err(CniError::op(format!(
                    "releasing VF {}: {}",
                    st.device_id,
                    join(&errors)
                )));
            }
            let _ = std::fs::remove_file(&file);
            return Ok(());
        }
        tracing::info!(state = %p.display(), "no state recorded; nothing to restore");
        if let Some(t) = &conf.ipam_type {
            match ipam::find(&env.path, t) {
                Ok(plugin) => {
                    ipam::exec(&plugin, "DEL", &conf.raw, &[])?;
                }
                Err(e) => tracing::warn!(error = %e, "skipping IPAM DEL"),
            }
        }
        return Ok(());
    };
    let _lock = VfLock::acquire(&env.state_dir, first.device_id)?;
    // Re-read under the lock: a concurrent DEL may have finished.
    let Some(st) = State::load(&p)?.filter(|st| owned(st, env, conf, &p)) else {
        return Ok(());
    };
    let prev_mac = result_mac(conf.prev_result.as_ref(), &env.ifname);
    let undone = teardown_all(&st, env, Ipam::Always, &[], prev_mac);
    if !undone.errors.is_empty() {
        return Err(CniError::op(format!(
            "releasing VF {}: {}",
            st.device_id,
            join(&undone.errors)
        )));
    }
    if let Some(what) = undone.missing {
        // Nothing here is the VF's netdev (the pod may have changed it beyond recognition):
        // nothing is moved or renamed; what could be released was. The kernel returns the
        // netdev to the host when the pod netns goes.
        tracing::warn!(pci = %st.device_id, looked_for = %what,
            "VF netdev not found; released IPAM and the PF-side settings only: the netdev returns to the host when the pod netns is deleted, under the name and MAC the pod left it");
    }
    st.remove(&env.state_dir)?;
    tracing::info!(pci = %st.device_id, "VF released");
    Ok(())
}

/// Whether `st`, read from `p`, is the state of the attachment this call is for (logged when not).
fn owned(st: &State, env: &Env, conf: &NetConf, p: &Path) -> bool {
    match st.mismatch(&env.container_id, &env.ifname, conf.device_id) {
        None => true,
        Some(why) => {
            tracing::warn!(state = %p.display(), reason = %why, "not acting on a state file that is not this attachment's; leaving it as it is");
            false
        }
    }
}

/// The MAC the chain's final result (`prevResult`) reports for our interface.
fn result_mac(prev: Option<&serde_json::Value>, ifname: &str) -> Option<MacAddr> {
    let r = CniResult::from_value(prev?).ok()?;
    r.interfaces
        .iter()
        .filter(|i| i.name == ifname)
        .find_map(|i| i.mac.as_deref()?.parse().ok())
}

/// One thing a teardown could not restore.
#[derive(Debug, thiserror::Error)]
pub enum TeardownError {
    /// The IPAM plugin's DEL failed.
    #[error("{0}")]
    Ipam(CniError),
    /// A netlink call failed: opening a socket, or a change to the VF netdev in the host or the
    /// pod (the error keeps the operation, the link and the errno).
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    /// The host's network namespace could not be opened to bring the netdev back.
    #[error("opening host netns: {0}")]
    HostNetns(std::io::Error),
    /// The netdev came back to the host, but under a temporary name.
    #[error("VF netdev returned to the host as {temp}: its original name {name} is taken")]
    NameTaken {
        /// The name it has now.
        temp: String,
        /// Its original name, taken by another netdev.
        name: String,
    },
    /// A PF-side VF setting could not be put back.
    #[error("restoring VF {vf} {what} on {pf}: {source}")]
    PfSetting {
        /// The PF netdev.
        pf: String,
        /// The VF index.
        vf: u32,
        /// The setting (and the value being restored, for the MAC).
        what: String,
        /// The kernel's refusal.
        source: NetlinkError,
    },
}

/// Messages of `errors`, joined for a CNI error.
pub fn join(errors: &[TeardownError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// What a teardown could not do.
#[derive(Debug, Default)]
pub struct Undone {
    /// Every failure.
    pub errors: Vec<TeardownError>,
    /// The VF netdev was nowhere to be found: what was looked for, where.
    pub missing: Option<String>,
}

/// Undo what `st` records. Returns every failure; an empty list means all was restored, or the
/// VF netdev was not found (logged).
pub fn teardown(
    st: &State,
    env: &Env,
    ipam: Ipam,
    overrides: &[(&str, &str)],
) -> Vec<TeardownError> {
    let undone = teardown_all(st, env, ipam, overrides, None);
    if let Some(what) = &undone.missing {
        tracing::warn!(pci = %st.device_id, looked_for = %what, "VF netdev not found; nothing to restore there");
    }
    undone.errors
}

/// Undo what `st` records: every failure, and whether the VF netdev was found. `result_mac` is
/// the MAC the chain's final result reports for the interface (a MAC the netdev may carry).
pub fn teardown_all(
    st: &State,
    env: &Env,
    ipam: Ipam,
    overrides: &[(&str, &str)],
    result_mac: Option<MacAddr>,
) -> Undone {
    let mut errors = Vec::new();
    let mut missing = None;
    let run_ipam = match ipam {
        Ipam::IfDone => st.ipam_done,
        Ipam::Always => true,
    };
    if let (true, Some(t)) = (run_ipam, &st.ipam_type) {
        let raw = serde_json::to_vec(&st.conf).unwrap_or_default();
        let r = ipam::find(&env.path, t).and_then(|p| ipam::exec(&p, "DEL", &raw, overrides));
        if let Err(e) = r {
            errors.push(TeardownError::Ipam(e));
        }
    }
    let mut nl = match Netlink::open() {
        Ok(n) => n,
        Err(e) => {
            errors.push(e.into());
            return Undone { errors, missing };
        }
    };
    let pf_ctx = match (&st.pf_netdev, &st.vf_orig) {
        (Some(p), Some(o)) => Some((p.clone(), o.clone())),
        _ => None,
    };
    let mut resend = false;
    if let Some((pfname, orig)) = &pf_ctx {
        let netdev_mac = st.netdev.as_ref().and_then(|n| n.mac);
        resend = pf::restore_mac(&mut nl, pfname, orig, &st.applied, netdev_mac, &mut errors);
    }
    if st.mode == Mode::Kernel {
        if let Some(orig) = &st.netdev {
            missing = restore_netdev(st, env, &mut nl, orig, resend, result_mac, &mut errors);
        }
    }
    if let Some((pfname, orig)) = &pf_ctx {
        pf::restore(&mut nl, pfname, orig, &st.applied, &mut errors);
    }
    Undone { errors, missing }
}

/// Bring the VF netdev back to the host netns under its original name, MAC and MTU. With
/// `resend` (the PF's admin MAC was just cleared), the MAC is set even when the netdev already
/// has it, through a temporary one, so that the VF driver tells the PF its MAC again. The netdev
/// is found by identity ([`vf::find_in_pod`], [`vf::find_in_host`]); returns what was looked
/// for when it was nowhere.
fn restore_netdev(
    st: &State,
    env: &Env,
    nl: &mut Netlink,
    orig: &NetdevState,
    mut resend: bool,
    result_mac: Option<MacAddr>,
    errors: &mut Vec<TeardownError>,
) -> Option<String> {
    let mut looked = Vec::new();
    let mut failed = false;
    if st.moved {
        match st.netns.as_deref().filter(|p| netns::is_alive(p)) {
            // Recorded by an earlier version that took the host netns for a pod's.
            Some(path) if netns::is_current(path).unwrap_or(false) => {
                tracing::info!(netns = %path.display(), "recorded netns is the host's; looking there")
            }
            Some(path) => match return_from_pod(st, path, orig, resend, result_mac) {
                Ok(FromPod::Returned) => resend = false,
                Ok(FromPod::NotThere(what)) => {
                    tracing::info!(netns = %path.display(), looked_for = %what, "VF netdev not in the pod; looking in the host");
                    looked.push(format!("in netns {}: {what}", path.display()));
                }
                Err(e) => {
                    errors.push(e);
                    failed = true;
                }
            },
            None => tracing::info!("pod netns is gone; looking for the VF netdev in the host"),
        }
    }
    let sysfs = Sysfs::new(&env.sysfs_root);
    let Some(mut link) = vf::find_in_host(nl, &sysfs, st.device_id) else {
        looked.push(format!(
            "in the host: no netdev of VF {} (its sysfs net/ directory)",
            st.device_id
        ));
        return (!failed).then(|| looked.join("; "));
    };
    if let Err(e) = fix_link(nl, &mut link, orig, resend) {
        errors.push(e.into());
    }
    None
}

/// Rename a VF netdev back to `name`. A netdev that came back to the host under another name
/// (the pod netns was deleted) is given `name` by udev as an alternative name, and a name in use
/// as an altname cannot be taken (EEXIST): when the altname is the netdev's own, drop it first.
pub(crate) fn rename_back(
    nl: &mut impl VfOps,
    link: &Link,
    name: &str,
) -> Result<(), NetlinkError> {
    match nl.rename(link, name) {
        Err(x)
            if x.errno() == Some(Errno::EEXIST)
                && nl.altnames(link).is_ok_and(|a| a.iter().any(|n| n == name)) =>
        {
            tracing::info!(netdev = %link.name, altname = name, "dropping the netdev's own altname to take it back as its name");
            nl.del_altname(link, name)?;
            nl.rename(link, name)
        }
        r => r,
    }
}

/// Set `mac` on a VF netdev. The kernel does not call the driver for an unchanged address: with
/// `resend`, a netdev that already has `mac` goes through a temporary MAC first.
fn set_vf_netdev_mac(
    nl: &mut Netlink,
    link: &mut Link,
    mac: MacAddr,
    resend: bool,
) -> Result<(), NetlinkError> {
    if link.mac == Some(mac) {
        if !resend {
            return Ok(());
        }
        let temp = pf::temporary_mac(mac);
        tracing::debug!(netdev = %link.name, %temp, "through a temporary MAC so that the VF driver reports its MAC to the PF");
        nl.set_mac(link, temp)?;
    }
    nl.set_mac(link, mac)?;
    link.mac = Some(mac);
    Ok(())
}

/// Rename, MAC, MTU and admin state back to `orig`, changing only what differs (and the MAC
/// also when `resend`).
fn fix_link(
    nl: &mut Netlink,
    link: &mut Link,
    orig: &NetdevState,
    resend: bool,
) -> Result<(), NetlinkError> {
    if link.name != orig.name {
        if link.up {
            nl.set_down(link)?;
            link.up = false;
        }
        rename_back(nl, link, &orig.name)?;
        link.name = orig.name.clone();
    }
    if let Some(mac) = orig.mac {
        set_vf_netdev_mac(nl, link, mac, resend)?;
    }
    if link.mtu != orig.mtu && orig.mtu > 0 {
        nl.set_mtu(link, orig.mtu)?;
    }
    if orig.up && !link.up {
        nl.set_up(link)?;
    } else if !orig.up && link.up {
        nl.set_down(link)?;
    }
    Ok(())
}

/// Where [`return_from_pod`] left the VF netdev.
enum FromPod {
    /// Moved to the host netns (renamed there, or left for the host-side restore to rename).
    Returned,
    /// Not in the pod: what was looked for.
    NotThere(String),
}

/// In the pod: down, original MAC (see [`set_vf_netdev_mac`] for `resend`) and MTU, then move
/// to this netns under the original name.
fn return_from_pod(
    st: &State,
    path: &std::path::Path,
    orig: &NetdevState,
    resend: bool,
    result_mac: Option<MacAddr>,
) -> Result<FromPod, TeardownError> {
    let mut pod = Netlink::open_here(path)?;
    let macs = vf::pod_macs(st, result_mac);
    let mut link = match vf::find_in_pod(&mut pod, st, &macs)? {
        vf::Lookup::Found(l) => l,
        vf::Lookup::Missing(what) => return Ok(FromPod::NotThere(what)),
    };
    if link.up {
        pod.set_down(&link)?;
    }
    if let Some(mac) = orig.mac {
        set_vf_netdev_mac(&mut pod, &mut link, mac, resend)?;
    }
    if orig.mtu > 0 && link.mtu != orig.mtu {
        pod.set_mtu(&link, orig.mtu)?;
    }
    let host = File::open("/proc/thread-self/ns/net").map_err(TeardownError::HostNetns)?;
    match pod.move_to_netns(&link, &host, &orig.name) {
        Ok(()) => Ok(FromPod::Returned),
        Err(x) if x.errno() == Some(Errno::EEXIST) && pod.link_by_index(link.index).is_err() => {
            // Moved, but the rename in the host was refused (e.g. the name is the netdev's own
            // altname): the host-side restore renames it.
            tracing::info!(error = %x, "VF netdev moved to the host; renaming it there");
            Ok(FromPod::Returned)
        }
        Err(x) if x.errno() == Some(Errno::EEXIST) => {
            // The original name is taken in the host: come back under the unique name.
            let temp = st.temp_name.clone().unwrap_or_else(|| "sriovtmp".into());
            pod.move_to_netns(&link, &host, &temp)?;
            Err(TeardownError::NameTaken {
                temp,
                name: orig.name.clone(),
            })
        }
        Err(x) => Err(x.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pf_setting_left_unrestored_keeps_the_kernels_errno_and_reads_as_before() {
        let e = TeardownError::PfSetting {
            pf: "enp3s0f0".into(),
            vf: 2,
            what: "spoofchk".into(),
            source: NetlinkError::Kernel {
                op: "set VF spoofchk",
                target: "enp3s0f0".into(),
                source: std::io::Error::from_raw_os_error(Errno::EOPNOTSUPP as i32),
            },
        };
        let source = std::error::Error::source(&e)
            .and_then(|s| s.downcast_ref::<NetlinkError>())
            .expect("the netlink error is the source");
        assert_eq!(source.errno(), Some(Errno::EOPNOTSUPP));
        assert!(
            e.to_string()
                .starts_with("restoring VF 2 spoofchk on enp3s0f0: set VF spoofchk on enp3s0f0: "),
            "{e}"
        );
        assert_eq!(
            join(&[e, TeardownError::HostNetns(std::io::Error::other("x"))])
                .matches("; ")
                .count(),
            1
        );
    }
}
