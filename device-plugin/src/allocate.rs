//! Allocate: what a container gets for a set of device IDs — environment, device nodes and the
//! device-info files the CNI and Multus read.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kubelet_proto::v1beta1::{ContainerAllocateResponse, DeviceSpec};
use serde_json::{json, Map, Value};
use sriov_host::devinfo::{write_device_info, DeviceInfo, PciInfo};
use sriov_host::pci::PciAddressError;
use sriov_host::{PciAddress, SysfsError};

use crate::context::HostPaths;
use crate::pool::Pool;

/// The real device directory: paths handed to the kubelet always name it.
const DEV: &str = "/dev";

#[derive(Debug, thiserror::Error)]
pub enum AllocateError {
    #[error("invalid device ID {id:?}: {source}")]
    BadId { id: String, source: PciAddressError },
    #[error("device {id} is not in pool {pool}")]
    NotOwned { id: String, pool: String },
    #[error("device {id} is asked for more than once in one Allocate; every device goes to one container once")]
    Duplicate { id: PciAddress },
    #[error("{asked} device IDs asked of pool {pool}, which has {has} devices")]
    TooMany {
        asked: usize,
        pool: String,
        has: usize,
    },
    #[error("container request {index} names no device")]
    Empty { index: usize },
    #[error("device {id}: {source}")]
    Sysfs { id: PciAddress, source: SysfsError },
    #[error("device {id} needs {path}, which does not exist on this node")]
    MissingNode { id: PciAddress, path: PathBuf },
    #[error("cannot write device-info file {path}: {source}")]
    DevInfo {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl AllocateError {
    /// Whether the kubelet asked for something wrong (as opposed to a node-side failure).
    pub fn is_invalid_argument(&self) -> bool {
        matches!(
            self,
            AllocateError::BadId { .. }
                | AllocateError::NotOwned { .. }
                | AllocateError::Duplicate { .. }
                | AllocateError::TooMany { .. }
                | AllocateError::Empty { .. }
        )
    }
}

/// Parse and check every ID before anything is looked up or written.
pub fn validate_ids(pool: &Pool, ids: &[String]) -> Result<Vec<PciAddress>, AllocateError> {
    Ok(validate_request(pool, &[ids])?.remove(0))
}

/// Check a whole Allocate request (the IDs of each container) before anything is looked up or
/// written: no more IDs in all than the pool has, each a PCI address of the pool, none twice
/// (within a container or across them), no container without IDs. The size check comes first,
/// so an oversized request costs no parsing.
pub fn validate_request<S: AsRef<[String]>>(
    pool: &Pool,
    containers: &[S],
) -> Result<Vec<Vec<PciAddress>>, AllocateError> {
    let asked: usize = containers.iter().map(|c| c.as_ref().len()).sum();
    if asked > pool.devices.len() {
        return Err(AllocateError::TooMany {
            asked,
            pool: pool.config.resource.to_string(),
            has: pool.devices.len(),
        });
    }
    let mut seen = std::collections::HashSet::with_capacity(asked);
    containers
        .iter()
        .enumerate()
        .map(|(index, ids)| {
            let ids = ids.as_ref();
            if ids.is_empty() {
                return Err(AllocateError::Empty { index });
            }
            ids.iter()
                .map(|id| {
                    let a: PciAddress = id.parse().map_err(|source| AllocateError::BadId {
                        id: id.clone(),
                        source,
                    })?;
                    if !pool.devices.contains_key(&a) {
                        return Err(AllocateError::NotOwned {
                            id: id.clone(),
                            pool: pool.config.resource.to_string(),
                        });
                    }
                    if !seen.insert(a) {
                        return Err(AllocateError::Duplicate { id: a });
                    }
                    Ok(a)
                })
                .collect()
        })
        .collect()
}

/// Build one container's response and write its device-info files (blocking file I/O: call it
/// off the async runtime).
pub fn allocate(
    pool: &Pool,
    paths: &HostPaths,
    ids: &[String],
) -> Result<ContainerAllocateResponse, AllocateError> {
    let addrs = validate_ids(pool, ids)?;
    allocate_checked(pool, paths, &addrs)
}

/// [`allocate`] for IDs [`validate_request`] has checked.
pub fn allocate_checked(
    pool: &Pool,
    paths: &HostPaths,
    addrs: &[PciAddress],
) -> Result<ContainerAllocateResponse, AllocateError> {
    let resource = &pool.config.resource;
    let mut specs: Vec<DeviceSpec> = Vec::new();
    let mut info = Map::new();
    for &a in addrs {
        let dev = DeviceNodes::read(pool, paths, a)?;
        let id = a.to_string();
        let mut entry = Map::new();
        entry.insert("generic".into(), json!({ "deviceID": id }));
        if let Some(group) = &dev.vfio_group {
            entry.insert(
                "vfio".into(),
                json!({ "mount": format!("{DEV}/vfio/vfio"), "dev-mount": group }),
            );
        }
        if let Some(uio) = &dev.uio {
            entry.insert("uio".into(), json!({ "dev-mount": uio }));
        }
        if !dev.rdma.is_empty() {
            let m: Map<String, Value> = dev
                .rdma
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            entry.insert("rdma".into(), Value::Object(m));
        }
        if pool.config.needs_vhost_net() {
            entry.insert(
                "vhost".into(),
                json!({ "net-mount": format!("{DEV}/vhost-net"), "tun-mount": format!("{DEV}/net/tun") }),
            );
        }
        let extra = pool.config.extra_for(&id);
        if !extra.is_empty() {
            entry.insert("extra".into(), json!(extra));
        }
        info.insert(id.clone(), Value::Object(entry));
        for p in dev.nodes {
            if !specs.iter().any(|s| s.host_path == p) {
                specs.push(DeviceSpec {
                    container_path: p.clone(),
                    host_path: p,
                    permissions: "rw".into(),
                });
            }
        }
        let devinfo = DeviceInfo::pci(PciInfo {
            pci_address: a,
            pf_pci_address: pool.devices.get(&a).and_then(|d| d.pf()),
            rdma_device: dev.rdma_name,
            vhost_net: pool
                .config
                .needs_vhost_net()
                .then(|| format!("{DEV}/vhost-net")),
        });
        let path = paths.devinfo_dir.join(resource.devinfo_file(&id));
        write_device_info(&path, &devinfo).map_err(|source| AllocateError::DevInfo {
            path: path.clone(),
            source,
        })?;
    }
    let env = resource.env_name();
    let mut envs = std::collections::HashMap::new();
    envs.insert(
        env.clone(),
        addrs
            .iter()
            .map(PciAddress::to_string)
            .collect::<Vec<_>>()
            .join(","),
    );
    envs.insert(format!("{env}_INFO"), Value::Object(info).to_string());
    Ok(ContainerAllocateResponse {
        envs,
        devices: specs,
        ..Default::default()
    })
}

/// The device nodes one device needs, as real `/dev` paths, checked under the dev root.
#[derive(Debug, Default)]
pub(crate) struct DeviceNodes {
    pub(crate) nodes: Vec<String>,
    vfio_group: Option<String>,
    uio: Option<String>,
    /// `rdma_cm`, `uverbs`, `umad`, `issm` -> path.
    rdma: BTreeMap<String, String>,
    rdma_name: Option<String>,
}

impl DeviceNodes {
    pub(crate) fn read(
        pool: &Pool,
        paths: &HostPaths,
        a: PciAddress,
    ) -> Result<DeviceNodes, AllocateError> {
        let sys = |source| AllocateError::Sysfs { id: a, source };
        let mut out = DeviceNodes::default();
        let need = |rel: String| -> Result<String, AllocateError> {
            let host = paths.dev_root.join(&rel);
            if !host.exists() {
                return Err(AllocateError::MissingNode { id: a, path: host });
            }
            Ok(format!("{DEV}/{rel}"))
        };
        let driver = paths.sysfs.driver(a).map_err(sys)?;
        match driver.as_deref() {
            Some("vfio-pci") => {
                let group = paths.sysfs.iommu_group(a).map_err(sys)?.ok_or_else(|| {
                    AllocateError::MissingNode {
                        id: a,
                        path: paths.sysfs.pci_dir(a).join("iommu_group"),
                    }
                })?;
                out.nodes.push(need("vfio/vfio".into())?);
                let g = need(format!("vfio/{group}"))?;
                out.nodes.push(g.clone());
                out.vfio_group = Some(g);
            }
            Some("uio_pci_generic") | Some("igb_uio") => {
                if let Some(n) = first_entry(&paths.sysfs.pci_dir(a).join("uio"), "uio") {
                    let p = need(n)?;
                    out.nodes.push(p.clone());
                    out.uio = Some(p);
                }
            }
            _ => {}
        }
        if pool.config.is_rdma() {
            let rdma = paths.sysfs.rdma_devices(a).map_err(sys)?;
            out.rdma_name = rdma.first().cloned();
            let dir = paths.sysfs.pci_dir(a);
            let mut char_devs = Vec::new();
            for (sub, prefixes) in [
                ("infiniband_verbs", &["uverbs"][..]),
                ("infiniband_mad", &["umad", "issm"][..]),
            ] {
                for p in prefixes {
                    if let Some(n) = first_entry(&dir.join(sub), p) {
                        char_devs.push((p.to_string(), n));
                    }
                }
            }
            char_devs.push(("rdma_cm".into(), "rdma_cm".into()));
            for (kind, name) in char_devs {
                let p = need(format!("infiniband/{name}"))?;
                out.nodes.push(p.clone());
                out.rdma.insert(kind, p);
            }
        }
        if pool.config.needs_vhost_net() {
            out.nodes.push(need("vhost-net".into())?);
            out.nodes.push(need("net/tun".into())?);
        }
        Ok(out)
    }
}

/// The first (sorted) name in `dir` starting with `prefix`.
fn first_entry(dir: &Path, prefix: &str) -> Option<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| n.starts_with(prefix))
        .collect();
    v.sort();
    v.into_iter().next()
}

#[cfg(test)]
#[path = "allocate_tests.rs"]
mod tests;
