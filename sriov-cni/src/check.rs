//! CHECK: is what ADD set up still there? Compared with `prevResult` (the chain's final result),
//! falling back to what ADD recorded; the interface must be the VF's netdev (by identity).

use sriov_host::netlink::Netlink;
use sriov_host::netns;

use crate::env::Env;
use crate::error::{CniError, Result, UNKNOWN_CONTAINER};
use crate::netconf::NetConf;
use crate::result::CniResult;
use crate::state::{self, Mode, State};
use crate::{ipam, pf, vf};

pub fn check(env: &Env, conf: &NetConf) -> Result<()> {
    env.refuse_own_netns()?;
    let p = state::path(&env.state_dir, &env.container_id, &env.ifname);
    let st = State::load(&p)?.ok_or_else(|| {
        CniError::new(
            UNKNOWN_CONTAINER,
            format!(
                "no attachment recorded for container {} interface {}",
                env.container_id, env.ifname
            ),
        )
    })?;
    let expected = match conf.prev_result.as_ref().or(st.result.as_ref()) {
        Some(v) => CniResult::from_value(v)?,
        None => CniResult::default(),
    };
    let netns_path = env.netns.clone().or(st.netns.clone()).unwrap_or_default();
    let mut problems = Vec::new();

    if st.mode == Mode::Kernel {
        if !netns::is_alive(&netns_path) {
            return Err(CniError::op(format!(
                "netns {} is gone",
                netns_path.display()
            )));
        }
        let mut pod = Netlink::open_here(&netns_path)?;
        let link = pod.link_by_name(&env.ifname).map_err(|e| {
            CniError::op(format!(
                "interface {} not found in netns {}: {e}",
                env.ifname,
                netns_path.display()
            ))
        })?;
        let sandbox = netns_path.display().to_string();
        let idx = expected.interfaces.iter().position(|i| {
            i.name == env.ifname && i.sandbox.as_deref().is_none_or(|s| s == sandbox)
        });
        let want_mac = idx
            .and_then(|i| expected.interfaces[i].mac.clone())
            .or(st.pod_mac.map(|m| m.to_string()));
        if st.netdev.as_ref().is_some_and(|n| n.ifindex.is_some()) {
            let result_mac = want_mac.as_deref().and_then(|m| m.parse().ok());
            let what = match vf::find_in_pod(&mut pod, &st, &vf::pod_macs(&st, result_mac))? {
                vf::Lookup::Found(l) if l.index == link.index => None,
                vf::Lookup::Found(l) => Some(format!("the VF is {}", l.name)),
                vf::Lookup::Missing(m) => Some(format!("looked for {m}")),
            };
            if let Some(what) = what {
                problems.push(format!(
                    "{} is not VF {}'s netdev ({what})",
                    env.ifname, st.device_id
                ));
            }
        }
        if let (Some(w), Some(have)) = (want_mac, link.mac) {
            if !w.eq_ignore_ascii_case(&have.to_string()) {
                problems.push(format!("{} MAC is {have}, expected {w}", env.ifname));
            }
        }
        if let Some(m) = st.pod_mtu {
            if link.mtu != m {
                problems.push(format!("{} MTU is {}, expected {m}", env.ifname, link.mtu));
            }
        }
        let have = pod.addresses(&link)?;
        for ip in expected
            .ips
            .iter()
            .filter(|ip| ip.interface.is_none() || ip.interface == idx)
        {
            let net = ip.net()?;
            if !have.contains(&net) {
                problems.push(format!("{} lacks address {net}", env.ifname));
            }
        }
    }
    if let (Some(pfname), false) = (&st.pf_netdev, st.applied.requested().is_empty()) {
        let mut nl = Netlink::open()?;
        match nl
            .vf_info(pfname)?
            .into_iter()
            .find(|v| v.index == st.vf_index)
        {
            Some(now) => problems.extend(
                pf::drift(&st.applied, &now)
                    .into_iter()
                    .map(|d| format!("VF {} {d}", st.vf_index)),
            ),
            None => problems.push(format!("PF {pfname} no longer reports VF {}", st.vf_index)),
        }
    }
    if !problems.is_empty() {
        return Err(CniError::op(format!(
            "check failed: {}",
            problems.join("; ")
        )));
    }
    if let Some(t) = &conf.ipam_type {
        let plugin = ipam::find(&env.path, t)?;
        ipam::exec(&plugin, "CHECK", &conf.raw, &[])?;
    }
    Ok(())
}
