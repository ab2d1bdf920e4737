//! Per-attachment state (`$SRIOV_CNI_STATE_DIR/<containerID>-<ifname>.json`), written atomically,
//! holding everything DEL needs to restore the VF; and the per-VF lock.
//!
//! The directory is 0700 and the files 0600: they hold the whole netconf. A state file is acted
//! on only when it is the one of the attachment at hand: its name, and the container ID, ifname
//! (and device, when the call names one) inside it, must agree.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
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
    /// The result ADD returned (in the 1.0.0+ shape).
    pub result: Option<Value>,
}

/// Mode of state and lock files.
const FILE_MODE: u32 = 0o600;
/// Mode of the state directory.
const DIR_MODE: u32 = 0o700;

/// Create the state directory (0700) when missing, and tighten an existing one that others may
/// read or write to 0700 (logged): its files hold every attachment's netconf.
pub fn ensure_dir(dir: &Path) -> Result<()> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(|e| io("creating", parent, e))?;
    }
    match fs::DirBuilder::new().mode(DIR_MODE).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io("creating state directory", dir, e)),
    }
    let meta = fs::metadata(dir).map_err(|e| io("reading state directory", dir, e))?;
    if !meta.is_dir() {
        return Err(io(
            "state directory",
            dir,
            "not a directory: set SRIOV_CNI_STATE_DIR to a directory",
        ));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        tracing::warn!(dir = %dir.display(), mode = %format!("{mode:o}"), "state directory is open to other users; tightening it to 0700");
        fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE))
            .map_err(|e| io("setting mode 0700 on state directory", dir, e))?;
    }
    Ok(())
}

/// The state file of attachment (`container_id`, `ifname`) in `dir`.
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
        ensure_dir(dir)?;
        let p = self.path(dir);
        let json = serde_json::to_vec_pretty(self).map_err(|e| io("encoding state", &p, e))?;
        sriov_host::fsio::replace_file(&p, &json, FILE_MODE).map_err(|e| io("writing state", &p, e))
    }

    /// Why this state must not be acted on for the attachment (`container_id`, `ifname`), on
    /// `device` when the call names one; `None` when it is that attachment's.
    pub fn mismatch(
        &self,
        container_id: &str,
        ifname: &str,
        device: Option<PciAddress>,
    ) -> Option<String> {
        if self.container_id != container_id || self.ifname != ifname {
            return Some(format!(
                "it records container {:?} interface {:?}, not container {container_id:?} interface {ifname:?}",
                self.container_id, self.ifname
            ));
        }
        match device {
            Some(d) if d != self.device_id => Some(format!(
                "it records device {}, but the call names deviceID {d}",
                self.device_id
            )),
            _ => None,
        }
    }

    /// Whether this state is the one kept at `file` in `dir`: its container ID and ifname are
    /// valid and name exactly that file.
    fn named_by(&self, dir: &Path, file: &Path) -> bool {
        crate::env::valid_container_id(&self.container_id)
            && crate::env::valid_ifname(&self.ifname)
            && self.path(dir) == file
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

/// Every state file in `dir` (unreadable ones, and ones whose content names another attachment
/// than their file name, are logged and skipped).
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
            Ok(Some(s)) if s.named_by(dir, &p) => out.push(s),
            Ok(Some(s)) => tracing::warn!(
                state = %p.display(),
                container_id = %s.container_id,
                ifname = %s.ifname,
                "ignoring a state file whose content names another attachment"
            ),
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
    /// Lock `vf`, through `<dir>/vf-<pci>.lock` (created 0600; a symlink or anything but a
    /// regular file there is refused, never followed).
    pub fn acquire(dir: &Path, vf: PciAddress) -> Result<Self> {
        ensure_dir(dir)?;
        let p = dir.join(format!("vf-{vf}.lock"));
        let f = sriov_host::fsio::open_append_regular(&p, FILE_MODE).map_err(|e| {
            io(
                "opening lock",
                &p,
                format!("{e}; remove it if it is not ours"),
            )
        })?;
        let lock =
            Flock::lock(f, FlockArg::LockExclusive).map_err(|(_, e)| io("locking", &p, e))?;
        Ok(VfLock { _lock: lock })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(container_id: &str, ifname: &str) -> State {
        State {
            container_id: container_id.into(),
            ifname: ifname.into(),
            netns: None,
            mode: Mode::Dpdk,
            device_id: "0000:03:10.1".parse().unwrap(),
            pf: None,
            pf_netdev: None,
            vf_index: 1,
            vf_orig: None,
            applied: PfSettings::default(),
            netdev: None,
            temp_name: None,
            moved: false,
            pod_mac: None,
            pod_mtu: None,
            pod_ifindex: None,
            ipam_type: None,
            ipam_done: false,
            conf: Value::Null,
            result: None,
        }
    }

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn state_files_are_private_and_the_directory_is_tightened() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/state");
        sample("c1", "net1").save(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("c1-net1.json")), 0o600);
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let _lock = VfLock::acquire(&dir, "0000:03:10.1".parse().unwrap()).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("vf-0000:03:10.1.lock")), 0o600);
    }

    #[test]
    fn all_skips_a_state_file_named_for_another_attachment() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        sample("c1", "net1").save(dir).unwrap();
        let json = fs::read(dir.join("c1-net1.json")).unwrap();
        fs::write(dir.join("ghost-net1.json"), &json).unwrap();
        // A file name that matches, and a container ID that points `remove` elsewhere.
        let mut out = sample("c1", "net2");
        out.container_id = "sub/c1".into();
        fs::write(dir.join("c1-net2.json"), serde_json::to_vec(&out).unwrap()).unwrap();
        let found: Vec<String> = all(dir)
            .iter()
            .map(|s| format!("{}-{}", s.container_id, s.ifname))
            .collect();
        assert_eq!(found, ["c1-net1"]);
    }

    #[test]
    fn mismatch_names_what_differs() {
        let s = sample("c1", "net1");
        assert_eq!(s.mismatch("c1", "net1", None), None);
        assert_eq!(s.mismatch("c1", "net1", Some(s.device_id)), None);
        assert!(s.mismatch("c2", "net1", None).unwrap().contains("\"c2\""));
        assert!(s.mismatch("c1", "net2", None).unwrap().contains("net2"));
        let other: PciAddress = "0000:03:10.2".parse().unwrap();
        assert!(s
            .mismatch("c1", "net1", Some(other))
            .unwrap()
            .contains("0000:03:10.2"));
    }

    #[test]
    fn a_symlink_at_the_lock_path_is_refused_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state");
        fs::create_dir_all(&dir).unwrap();
        let victim = tmp.path().join("victim");
        let pci: PciAddress = "0000:03:10.1".parse().unwrap();
        std::os::unix::fs::symlink(&victim, dir.join(format!("vf-{pci}.lock"))).unwrap();
        let e = VfLock::acquire(&dir, pci).err().expect("refused");
        assert!(
            e.msg.contains("symlink") && e.msg.contains("vf-0000:03:10.1.lock"),
            "{}",
            e.msg
        );
        assert!(!victim.exists(), "lock created at the symlink's target");
    }
}
