//! The `sriov` CNI plugin: attaches an SR-IOV VF to a pod, as a kernel netdev moved into the
//! pod's network namespace, or (VF bound to a userspace driver) for DPDK.
//!
//! - [`env`]: the CNI environment; [`netconf`]: the validated network config
//! - [`vf`]: resolving a VF through sysfs; [`pf`]: PF-side VF settings
//! - [`add`], [`del`], [`check`]: the commands; [`state`]: what ADD recorded, and the VF lock
//! - [`legacy`]: attachments made by the Go sriov-cni, released by DEL
//! - [`ipam`]: IPAM delegation; [`result`], [`version`]: results in every supported version
//! - [`log`]: logging to stderr or `logFile`, one escaped line per event

pub mod add;
pub mod check;
pub mod del;
pub mod env;
pub mod error;
pub mod ipam;
pub mod legacy;
pub mod log;
pub mod netconf;
pub mod pf;
pub mod result;
pub mod state;
pub mod version;
pub mod vf;
pub mod vfops;

use crate::env::{Command, Env};
use crate::error::{CniError, Result};
use crate::netconf::NetConf;

/// The largest network config accepted on stdin: 1 MiB. A netconf, even with a `prevResult` of
/// many interfaces, addresses and routes, is a few kilobytes; a larger input is refused before
/// it is parsed, so a runaway writer cannot make the plugin buffer without bound.
pub const MAX_STDIN: usize = 1 << 20;

/// Read the network config from `r`: at most [`MAX_STDIN`] bytes. More is refused (code 7,
/// naming the limit) without being parsed.
pub fn read_stdin(r: impl std::io::Read) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut buf = Vec::new();
    r.take(MAX_STDIN as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|e| CniError::new(error::IO, format!("reading stdin: {e}")))?;
    if buf.len() > MAX_STDIN {
        return Err(CniError::config(format!(
            "network config on stdin is larger than {MAX_STDIN} bytes (1 MiB): a netconf with its prevResult is a few kilobytes; check what the runtime passes"
        )));
    }
    Ok(buf)
}

/// Run one invocation. `Ok(Some(json))` is printed on stdout.
pub fn run(env: &Env, stdin: &[u8]) -> Result<Option<String>> {
    if env.command == Command::Version {
        let (v, _, _) = netconf::peek(stdin);
        return Ok(Some(version::version_json(v.as_deref().unwrap_or("1.1.0"))));
    }
    let conf = NetConf::parse(stdin, &env.args)?;
    match env.command {
        Command::Add => add::add(env, &conf).map(|v| Some(v.to_string())),
        Command::Del => del::del(env, &conf).map(|_| None),
        Command::Check => {
            if !conf.cni_version.has_check() {
                return Err(CniError::new(
                    error::INCOMPATIBLE_VERSION,
                    format!(
                        "CHECK is not defined for cniVersion {}: use 0.4.0 or later",
                        conf.cni_version
                    ),
                ));
            }
            check::check(env, &conf).map(|_| None)
        }
        Command::Status => status(env, &conf).map(|_| None),
        Command::Gc => gc(env, &conf).map(|_| None),
        Command::Version => Ok(None),
    }
}

fn status(env: &Env, conf: &NetConf) -> Result<()> {
    if let Some(t) = &conf.ipam_type {
        ipam::find(&env.path, t).map_err(|e| {
            CniError::new(
                error::PLUGIN_NOT_AVAILABLE,
                format!("plugin not available: {}", e.msg),
            )
        })?;
    }
    Ok(())
}

/// GC: release attachments the runtime no longer lists whose netns is gone.
fn gc(env: &Env, conf: &NetConf) -> Result<()> {
    let valid = conf.valid_attachments.clone().unwrap_or_default();
    let mut errors = Vec::new();
    for st in state::all(&env.state_dir) {
        let listed = valid
            .iter()
            .any(|(c, i)| *c == st.container_id && *i == st.ifname);
        let alive = st.netns.as_deref().is_some_and(sriov_host::netns::is_alive);
        if listed || alive {
            continue;
        }
        let _lock = state::VfLock::acquire(&env.state_dir, st.device_id)?;
        let ns = st
            .netns
            .as_deref()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let overrides = [
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", st.container_id.as_str()),
            ("CNI_IFNAME", st.ifname.as_str()),
            ("CNI_NETNS", ns.as_str()),
        ];
        let e = del::teardown(&st, env, del::Ipam::Always, &overrides);
        if e.is_empty() {
            st.remove(&env.state_dir)?;
        } else {
            errors.extend(e.iter().map(ToString::to_string));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(CniError::op(format!("gc: {}", errors.join("; "))))
    }
}

/// The version to shape an error in: the config's when it is readable.
pub fn error_version(stdin: &[u8]) -> String {
    let (v, _, _) = netconf::peek(stdin);
    v.filter(|v| v.parse::<version::Version>().is_ok())
        .unwrap_or_else(|| "1.1.0".into())
}
