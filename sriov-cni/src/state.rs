//! Per-attachment state (`$SRIOV_CNI_STATE_DIR/<containerID>-<ifname>.json`), written atomically,
//! holding everything DEL needs to restore the VF; and the per-VF lock.

use std::fs;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sriov_host::netlink::{ParentDev, VfInfo};
use sriov_host::{MacAddr, PciAddress};

use crate::error::{CniError, Result, DECODE, IO};
use crate::netconf::PfSettings;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The VF's netdev is moved into the pod.
    Kernel,
    /// The VF is bound to a userspace driver; nothing moves.
    Dpdk,
}

/// A netdev's identity and settings as recorded before ADD changed them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetdevState {
    pub name: String,
    pub mac: Option<MacAddr>,
    pub mtu: u32,
    pub up: bool,
    /// Its ifindex in the host netns. `None` in records of earlier versions (and of the Go
    /// plugin), which hold no identity: their netdev is looked for by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ifindex: Option<u32>,
    /// The parent device the kernel reported for it (a VF's PCI device); `None` when it reported
    /// none (a veth standing in for a VF, a kernel before 5.14).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<ParentDev>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub container_id: String,
    pub ifname: String,
    pub netns: Option<PathBuf>,
    pub mode: Mode,
    pub device_id: PciAddress,
    pub pf: Option<PciAddress>,
    pub pf_netdev: Option<String>,
    pub vf_index: u32,
    /// The VF's admin state on the PF before ADD (absent when the PF reports none).
    pub vf_orig: Option<VfInfo>,
    /// PF-side settings ADD applied (only these are restored).
    pub applied: PfSettings,
    /// The VF netdev in the host before ADD (kernel mode).
    pub netdev: Option<NetdevState>,
    /// The unique name the netdev carries while it moves.
    pub temp_name: Option<String>,
    /// True once the netdev may have left the host netns.
    pub moved: bool,
    /// The netdev's ifindex in the pod netns, recorded once it is there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_ifindex: Option<u32>,
    /// The MAC and MTU ADD set in the pod.
    pub pod_mac: Option<MacAddr>,
    pub pod_mtu: Option<u32>,
    pub ipam_type: Option<String>,
    /// True once IPAM ADD succeeded.
    pub ipam_done: bool,
    /// The config ADD ran with, for IPAM DEL.
    pub conf: Value,
    pub device_info_file: Option<PathBuf>,
    /// The result ADD returned (in the 1.0.0+ shape).
    pub result: Option<Value>,
}

pub fn path(dir: &Path, container_id: &str, ifname: &str) -> PathBuf {
    dir.join(format!("{container_id}-{ifname}.json"))
}

fn io(what: &str, p: &Path, e: impl std::fmt::Display) -> CniError {
    CniError::new(IO, format!("{what} {}: {e}", p.display()))
}

impl State {
    pub fn path(&self, dir: &Path) -> PathBuf {
        path(dir, &self.container_id, &self.ifname)
    }

    /// Replace the state file. Not fsynced: the file must survive this process dying at any
    /// point (the rename makes it all-or-nothing), but what it describes (a VF inside a pod's
    /// netns) does not survive a host crash, and three fsyncs would double an ADD's own time.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let p = self.path(dir);
        let json = serde_json::to_vec_pretty(self).map_err(|e| io("encoding state", &p, e))?;
        sriov_host::devinfo::replace_file(&p, &json, false).map_err(|e| io("writing state", &p, e))
    }

    /// The state at `p` for DEL: `None` when there is none, or when the file cannot be parsed
    /// (empty or torn after a power loss, or not ours): such a file is renamed to `*.corrupt`
    /// and logged, so the attachment can still be released instead of failing DEL forever.
    pub fn load_for_del(p: &Path) -> Result<Option<State>> {
        match Self::load(p) {
            Err(e) if e.code == DECODE => {
                let aside = p.with_extension("json.corrupt");
                tracing::warn!(error = %e, moved_to = %aside.display(), "state file unreadable; releasing without it");
                fs::rename(p, &aside).map_err(|e| io("moving aside", p, e))?;
                Ok(None)
            }
            r => r,
        }
    }

    /// The state at `p`, `None` when there is none.
    pub fn load(p: &Path) -> Result<Option<State>> {
        match fs::read(p) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| CniError::new(DECODE, format!("reading state {}: {e}", p.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("reading state", p, e)),
        }
    }

    pub fn remove(&self, dir: &Path) -> Result<()> {
        let p = self.path(dir);
        match fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io("removing state", &p, e)),
        }
    }
}

/// Every state file in `dir` (unreadable ones are logged and skipped).
pub fn all(dir: &Path) -> Vec<State> {
    let Ok(rd) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for ent in rd.flatten() {
        let p = ent.path();
        let is_state = p.extension().is_some_and(|e| e == "json")
            && !p
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if !is_state {
            continue;
        }
        match State::load(&p) {
            Ok(Some(s)) => out.push(s),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "skipping unreadable state file"),
        }
    }
    out
}

/// An exclusive lock on one VF, held until dropped.
pub struct VfLock {
    _lock: Flock<fs::File>,
}

impl VfLock {
    pub fn acquire(dir: &Path, vf: PciAddress) -> Result<Self> {
        fs::create_dir_all(dir).map_err(|e| io("creating state directory", dir, e))?;
        let p = dir.join(format!("vf-{vf}.lock"));
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(|e| io("opening lock", &p, e))?;
        let lock =
            Flock::lock(f, FlockArg::LockExclusive).map_err(|(_, e)| io("locking", &p, e))?;
        Ok(VfLock { _lock: lock })
    }
}
