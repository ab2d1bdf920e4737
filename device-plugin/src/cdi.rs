//! CDI (Container Device Interface) specs, with `--cdi`: one spec file per pool in `--cdi-dir`,
//! `sriov-dp-<prefix>-<resourceName>.json`, kept in sync with the pool's device list and removed
//! when the pool stops or goes away. Allocate then answers with fully-qualified CDI names
//! (`<prefix>/<resourceName>=<PCI address>`) instead of device specs.
//!
//! Names: the kind is `<prefix>/<resourceName>` (CDI vendor and class: a letter first, then
//! letters, digits, `_`, `-`, `.`, ending in a letter or digit). A pool whose prefix or name
//! breaks that rule (one starting with a digit) gets no spec and keeps answering with device
//! specs; the log says so. A device's CDI name is its PCI address unchanged: CDI device names
//! allow `:` and `.` and may start with a digit (spec 0.5.0 and later).
//!
//! Each device's `containerEdits` hold its device nodes (`/dev/vfio/vfio` and `/dev/vfio/<group>`,
//! `/dev/uioN`, `/dev/infiniband/...`, `/dev/vhost-net` and `/dev/net/tun`, as Allocate would hand
//! out) and one environment variable naming the device,
//! `PCIDEVICE_<PREFIX>_<NAME>_<ADDRESS>=<address>` (address with every character outside
//! `[A-Za-z0-9_]` as `_`): CDI refuses a device without edits, and per-device names cannot
//! clobber each other when a container gets several devices. The pool-wide
//! `PCIDEVICE_<PREFIX>_<NAME>` and `..._INFO` variables still come from Allocate.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use serde_json::{json, Value};
use sriov_host::fsio::write_atomic;
use sriov_host::PciAddress;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::allocate::DeviceNodes;
use crate::context::HostPaths;
use crate::pool::{Pool, PoolCell};
use crate::resource::ResourceName;

/// The CDI spec version written: the first that allows device names starting with a digit
/// (0.5.0) and dots in the class (0.6.0).
pub const CDI_VERSION: &str = "0.6.0";

#[derive(Debug, thiserror::Error)]
pub enum CdiError {
    #[error("resource {resource} cannot be a CDI kind: {reason}")]
    Kind { resource: String, reason: String },
    #[error("cannot write CDI spec {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot remove CDI spec {path}: {source}")]
    Remove {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The spec file name of a pool: `sriov-dp-<prefix>-<resourceName>.json`.
pub fn spec_file_name(resource: &ResourceName) -> String {
    format!("sriov-dp-{}-{}.json", resource.prefix(), resource.name())
}

/// The CDI kind of a pool, `<prefix>/<resourceName>`, when both parts are valid CDI names.
pub fn kind(resource: &ResourceName) -> Result<String, CdiError> {
    for (what, part) in [("vendor", resource.prefix()), ("class", resource.name())] {
        check_vendor_or_class(part).map_err(|reason| CdiError::Kind {
            resource: resource.to_string(),
            reason: format!("{what} {part:?} {reason}"),
        })?;
    }
    Ok(resource.to_string())
}

fn check_vendor_or_class(s: &str) -> Result<(), &'static str> {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(f), Some(l)) if f.is_ascii_alphabetic() && l.is_ascii_alphanumeric() => {}
        _ => return Err("must start with a letter and end with a letter or digit"),
    }
    if b.iter()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'))
    {
        Ok(())
    } else {
        Err("may only contain letters, digits, '_', '-' and '.'")
    }
}

/// The CDI device name of a device: its PCI address.
pub fn device_name(a: PciAddress) -> String {
    a.to_string()
}

/// The fully-qualified CDI name of a device, `<kind>=<name>`.
pub fn qualified_name(kind: &str, a: PciAddress) -> String {
    format!("{kind}={}", device_name(a))
}

fn device_env(resource: &ResourceName, a: PciAddress) -> String {
    let addr: String = a
        .to_string()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("{}_{addr}={a}", resource.env_name())
}

/// The device nodes a device's CDI entry holds: those Allocate would hand out. A device whose
/// nodes cannot be found gets none; Allocate refuses such a device anyway, naming the missing node.
fn device_nodes(pool: &Pool, paths: &HostPaths, a: PciAddress) -> Vec<String> {
    match DeviceNodes::read(pool, paths, a) {
        Ok(n) => n.nodes,
        Err(e) => {
            tracing::warn!(pool = %pool.config.resource, pci = %a, error = %e, "CDI spec: device without its device nodes");
            Vec::new()
        }
    }
}

/// The spec of a pool for `devices`, or `None` when there is nothing to write (CDI refuses a
/// spec without devices).
pub fn build_spec(
    pool: &Pool,
    paths: &HostPaths,
    devices: &[PciAddress],
) -> Result<Option<Value>, CdiError> {
    let nodes: Vec<(PciAddress, Vec<String>)> = devices
        .iter()
        .map(|&a| (a, device_nodes(pool, paths, a)))
        .collect();
    spec_from_nodes(&pool.config.resource, &nodes)
}

fn spec_from_nodes(
    resource: &ResourceName,
    devices: &[(PciAddress, Vec<String>)],
) -> Result<Option<Value>, CdiError> {
    let kind = kind(resource)?;
    if devices.is_empty() {
        return Ok(None);
    }
    let devs: Vec<Value> = devices
        .iter()
        .map(|(a, nodes)| {
            let mut edits = json!({ "env": [device_env(resource, *a)] });
            if !nodes.is_empty() {
                edits["deviceNodes"] = nodes
                    .iter()
                    .map(|p| json!({ "path": p, "permissions": "rw" }))
                    .collect();
            }
            json!({ "name": device_name(*a), "containerEdits": edits })
        })
        .collect();
    Ok(Some(json!({
        "cdiVersion": CDI_VERSION,
        "kind": kind,
        "devices": devs,
    })))
}

/// What was last written to one spec file.
#[derive(Debug)]
struct Written {
    content: Option<Vec<u8>>,
    /// The device nodes of each device in it.
    nodes: HashMap<PciAddress, Vec<String>>,
}

/// The CDI side of the daemon: where specs go, and what was last written per spec file.
#[derive(Debug)]
pub struct Cdi {
    dir: PathBuf,
    /// Spec file name -> what was last written; held while writing, so writers never interleave.
    written: Mutex<HashMap<String, Written>>,
}

impl Cdi {
    pub fn new(dir: &Path) -> Cdi {
        Cdi {
            dir: dir.to_path_buf(),
            written: Mutex::new(HashMap::new()),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn spec_path(&self, resource: &ResourceName) -> PathBuf {
        self.dir.join(spec_file_name(resource))
    }

    /// Bring the pool's spec file in line with its current device list: written (atomically)
    /// when its content changed, removed when the pool has no device.
    pub fn sync(&self, pool: &Pool, paths: &HostPaths) -> Result<(), CdiError> {
        let nodes: Vec<(PciAddress, Vec<String>)> = pool
            .current()
            .iter()
            .map(|s| (s.id, device_nodes(pool, paths, s.id)))
            .collect();
        let name = spec_file_name(&pool.config.resource);
        let path = self.dir.join(&name);
        let content = match spec_from_nodes(&pool.config.resource, &nodes)? {
            Some(v) => Some(serde_json::to_vec_pretty(&v).map_err(|e| CdiError::Write {
                path: path.clone(),
                source: std::io::Error::other(e),
            })?),
            None => None,
        };
        let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        let same = written.get(&name).is_some_and(|w| w.content == content);
        if same && content.is_some() == path.exists() {
            return Ok(());
        }
        match &content {
            Some(c) => {
                write_atomic(&path, c).map_err(|source| CdiError::Write {
                    path: path.clone(),
                    source,
                })?;
                tracing::info!(pool = %pool.config.resource, path = %path.display(), devices = nodes.len(), "CDI spec written");
            }
            None => remove_file(&path)?,
        }
        let nodes = nodes.into_iter().collect();
        written.insert(name, Written { content, nodes });
        Ok(())
    }

    /// Whether the spec file on disk has `ids` with these device nodes.
    fn holds(&self, pool: &Pool, paths: &HostPaths, ids: &[PciAddress]) -> bool {
        let name = spec_file_name(&pool.config.resource);
        let written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        let Some(w) = written.get(&name) else {
            return false;
        };
        w.content.is_some()
            && self.dir.join(&name).exists()
            && ids
                .iter()
                .all(|&a| w.nodes.get(&a) == Some(&device_nodes(pool, paths, a)))
    }

    /// Remove a pool's spec file (a missing file is fine).
    pub fn remove(&self, resource: &ResourceName) -> Result<(), CdiError> {
        let name = spec_file_name(resource);
        let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        remove_file(&self.dir.join(&name))?;
        written.remove(&name);
        tracing::info!(pool = %resource, "CDI spec removed");
        Ok(())
    }

    /// Fill a container's Allocate answer with CDI names instead of device specs. When the
    /// pool cannot have a spec (its kind is invalid, or the spec cannot be written) the device
    /// specs stay, and the reason is logged.
    pub fn apply(
        &self,
        pool: &Pool,
        paths: &HostPaths,
        ids: &[PciAddress],
        resp: &mut kubelet_proto::v1beta1::ContainerAllocateResponse,
    ) {
        let kind = match kind(&pool.config.resource) {
            Ok(k) => k,
            Err(e) => {
                tracing::debug!(error = %e, "Allocate answers with device specs");
                return;
            }
        };
        // A device node may have appeared since the spec was last written (a driver bound):
        // the allocated devices are checked (cheap), the whole pool rewritten only if they differ.
        if self.holds(pool, paths, ids) {
            tracing::trace!(pool = %pool.config.resource, "CDI spec up to date");
        } else if let Err(e) = self.sync(pool, paths) {
            tracing::warn!(pool = %pool.config.resource, error = %e, "Allocate answers with device specs");
            return;
        }
        resp.cdi_devices = ids
            .iter()
            .map(|&a| kubelet_proto::v1beta1::CdiDevice {
                name: qualified_name(&kind, a),
            })
            .collect();
        resp.devices.clear();
    }
}

fn remove_file(path: &Path) -> Result<(), CdiError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(CdiError::Remove {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Keep a pool's spec in sync with its device list until `stop` is cancelled (the pool stops
/// or is removed) or the pool is dropped; the spec is removed then. The cell's snapshot is read
/// on every change, so reloads that swap it are followed. `None` (and a warning) when the pool
/// cannot be a CDI kind.
pub fn spawn_sync(
    cdi: Arc<Cdi>,
    cell: &Arc<PoolCell>,
    paths: Arc<HostPaths>,
    stop: CancellationToken,
) -> Option<JoinHandle<()>> {
    let pool = cell.get();
    let resource = pool.config.resource.clone();
    if let Err(e) = kind(&resource) {
        tracing::warn!(error = %e, "no CDI spec for this pool; Allocate answers with device specs");
        return None;
    }
    let mut rx = pool.subscribe();
    drop(pool);
    let weak: Weak<PoolCell> = Arc::downgrade(cell);
    Some(tokio::spawn(async move {
        loop {
            rx.borrow_and_update();
            let Some(cell) = weak.upgrade() else { break };
            if let Err(e) = cdi.sync(&cell.get(), &paths) {
                tracing::warn!(pool = %resource, error = %e, "CDI spec not updated");
            }
            drop(cell);
            tokio::select! {
                r = rx.changed() => if r.is_err() { break },
                _ = stop.cancelled() => break,
            }
        }
        if let Err(e) = cdi.remove(&resource) {
            tracing::warn!(pool = %resource, error = %e, "CDI spec not removed");
        }
    }))
}

#[cfg(test)]
#[path = "cdi_tests.rs"]
mod tests;
