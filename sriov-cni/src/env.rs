//! The CNI environment: `CNI_COMMAND`, `CNI_CONTAINERID`, `CNI_NETNS`, `CNI_IFNAME`, `CNI_ARGS`,
//! `CNI_PATH`, plus our `SRIOV_SYSFS_ROOT` and `SRIOV_CNI_STATE_DIR`.

use std::collections::HashMap;
use std::path::PathBuf;

use sriov_host::MacAddr;

use crate::error::{CniError, Result};

pub const DEFAULT_STATE_DIR: &str = "/var/lib/cni/sriov";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Version,
    Status,
    Gc,
}

impl std::str::FromStr for Command {
    type Err = CniError;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "VERSION" => Command::Version,
            "STATUS" => Command::Status,
            "GC" => Command::Gc,
            other => {
                return Err(CniError::env(format!(
                    "CNI_COMMAND: unknown command {other:?}: expected ADD, DEL, CHECK, VERSION, STATUS or GC"
                )))
            }
        })
    }
}

/// `CNI_ARGS` keys we use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniArgs {
    pub mac: Option<MacAddr>,
    pub other: HashMap<String, String>,
}

impl CniArgs {
    pub fn parse(s: &str) -> Result<Self> {
        let mut out = CniArgs::default();
        for part in s.split(';').filter(|p| !p.is_empty()) {
            let Some((k, v)) = part.split_once('=') else {
                return Err(CniError::env(format!(
                    "CNI_ARGS: {part:?} is not KEY=VALUE (expected KEY=VALUE pairs separated by ';')"
                )));
            };
            if k == "MAC" {
                let mac: MacAddr = v
                    .parse()
                    .map_err(|e| CniError::env(format!("CNI_ARGS MAC: {e}")))?;
                if mac.is_zero() || mac.is_multicast() {
                    return Err(CniError::env(format!(
                        "CNI_ARGS MAC: {mac} is not a unicast address: expected a non-zero unicast MAC"
                    )));
                }
                out.mac = Some(mac);
            } else {
                out.other.insert(k.to_string(), v.to_string());
            }
        }
        Ok(out)
    }
}

/// The validated environment of one invocation.
#[derive(Debug, Clone)]
pub struct Env {
    pub command: Command,
    pub container_id: String,
    pub netns: Option<PathBuf>,
    pub ifname: String,
    pub args: CniArgs,
    pub path: Vec<PathBuf>,
    pub sysfs_root: PathBuf,
    pub state_dir: PathBuf,
}

/// A name the kernel accepts for a netdev: 1-15 bytes, no '/', ':' or whitespace, not "." or "..".
pub fn valid_ifname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s != "."
        && s != ".."
        && !s
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c == '\0')
}

/// Container IDs as the CNI spec allows: alphanumerics, then alphanumerics, '_', '.', '-'.
pub fn valid_container_id(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

impl Env {
    /// Read and validate the environment through `get` (`std::env::var` in the binary).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let command: Command = get("CNI_COMMAND")
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                CniError::env(
                    "CNI_COMMAND is not set: expected ADD, DEL, CHECK, VERSION, STATUS or GC",
                )
            })?
            .parse()?;
        let needs_attachment = matches!(command, Command::Add | Command::Del | Command::Check);
        let container_id = get("CNI_CONTAINERID").unwrap_or_default();
        if needs_attachment && !valid_container_id(&container_id) {
            return Err(CniError::env(format!(
                "CNI_CONTAINERID {container_id:?} is missing or invalid: expected letters, digits, '_', '.', '-', starting with a letter or digit"
            )));
        }
        let ifname = get("CNI_IFNAME").unwrap_or_default();
        if needs_attachment && !valid_ifname(&ifname) {
            return Err(CniError::env(format!(
                "CNI_IFNAME {ifname:?} is missing or invalid: expected 1-15 characters without '/', ':' or whitespace"
            )));
        }
        let netns = get("CNI_NETNS")
            .filter(|s| !s.is_empty())
            .map(PathBuf::from);
        if matches!(command, Command::Add | Command::Check) {
            match &netns {
                None => {
                    return Err(CniError::env(
                        "CNI_NETNS is not set: ADD and CHECK need the pod's network namespace path",
                    ))
                }
                Some(p) if !p.is_absolute() => {
                    return Err(CniError::env(format!(
                        "CNI_NETNS {} is not an absolute path",
                        p.display()
                    )))
                }
                _ => {}
            }
        }
        let args = CniArgs::parse(&get("CNI_ARGS").unwrap_or_default())?;
        let path = get("CNI_PATH")
            .unwrap_or_default()
            .split(':')
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .collect();
        Ok(Env {
            command,
            container_id,
            netns,
            ifname,
            args,
            path,
            sysfs_root: get("SRIOV_SYSFS_ROOT")
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "/sys".into())
                .into(),
            state_dir: get("SRIOV_CNI_STATE_DIR")
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| DEFAULT_STATE_DIR.into())
                .into(),
        })
    }
}

impl Env {
    /// Refuse a `CNI_NETNS` that is the plugin's own network namespace (the host's, compared by
    /// the namespace file's device and inode): the VF would be renamed in the host and IPAM's
    /// address and routes would land there. libcni's skel refuses it too (for ADD and DEL).
    /// A path that is not a live network namespace is left to each command's own checks.
    pub fn refuse_own_netns(&self) -> Result<()> {
        let Some(p) = self.netns.as_deref() else {
            return Ok(());
        };
        if sriov_host::netns::is_current(p).unwrap_or(false) {
            return Err(CniError::env(format!(
                "CNI_NETNS {}: this is the plugin's own network namespace (the host's), not a pod's; pass the pod sandbox's network namespace",
                p.display()
            )));
        }
        Ok(())
    }
}

/// A plugin name that is safe to look up in `CNI_PATH`: a plain file name.
pub fn valid_plugin_name(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains('/') && !s.contains('\0')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Result<Env> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Env::from_lookup(|k| map.get(k).cloned())
    }

    const OK: &[(&str, &str)] = &[
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "abc-1"),
        ("CNI_NETNS", "/run/netns/x"),
        ("CNI_IFNAME", "net1"),
        ("CNI_PATH", "/opt/cni/bin:/usr/lib/cni"),
    ];

    #[test]
    fn parses_a_full_environment() {
        let e = env(OK).unwrap();
        assert_eq!(e.command, Command::Add);
        assert_eq!(e.path.len(), 2);
        assert_eq!(e.state_dir, PathBuf::from(DEFAULT_STATE_DIR));
        assert_eq!(e.sysfs_root, PathBuf::from("/sys"));
    }

    #[test]
    fn rejects_bad_environment_with_code_4() {
        let cases: &[(&str, &str, &str)] = &[
            ("CNI_COMMAND", "", "CNI_COMMAND"),
            ("CNI_COMMAND", "FOO", "CNI_COMMAND"),
            ("CNI_CONTAINERID", "", "CNI_CONTAINERID"),
            ("CNI_CONTAINERID", "../x", "CNI_CONTAINERID"),
            ("CNI_IFNAME", "", "CNI_IFNAME"),
            ("CNI_IFNAME", "a-very-long-interface", "CNI_IFNAME"),
            ("CNI_IFNAME", "a/b", "CNI_IFNAME"),
            ("CNI_NETNS", "", "CNI_NETNS"),
            ("CNI_NETNS", "rel/path", "CNI_NETNS"),
            ("CNI_ARGS", "MAC=zz", "CNI_ARGS MAC"),
            ("CNI_ARGS", "MAC=01:00:5e:00:00:01", "CNI_ARGS MAC"),
            ("CNI_ARGS", "MAC=00:00:00:00:00:00", "CNI_ARGS MAC"),
            ("CNI_ARGS", "novalue", "CNI_ARGS"),
        ];
        for (k, v, want) in cases {
            let mut pairs: Vec<(&str, &str)> = OK.iter().filter(|(n, _)| n != k).copied().collect();
            pairs.push((k, v));
            let e = env(&pairs).unwrap_err();
            assert_eq!(e.code, 4, "{k}={v}: {e}");
            assert!(e.msg.contains(want), "{k}={v}: {}", e.msg);
        }
    }

    #[test]
    fn del_tolerates_missing_netns() {
        let mut pairs: Vec<(&str, &str)> = OK
            .iter()
            .filter(|(n, _)| *n != "CNI_NETNS" && *n != "CNI_COMMAND")
            .copied()
            .collect();
        pairs.push(("CNI_COMMAND", "DEL"));
        assert!(env(&pairs).unwrap().netns.is_none());
    }

    #[test]
    fn cni_args() {
        let a = CniArgs::parse("IgnoreUnknown=1;MAC=02:00:00:00:00:01;K8S_POD_NAME=x").unwrap();
        assert_eq!(a.mac, Some("02:00:00:00:00:01".parse().unwrap()));
        assert_eq!(a.other.get("K8S_POD_NAME").map(String::as_str), Some("x"));
        assert_eq!(CniArgs::parse("").unwrap(), CniArgs::default());
    }
}
