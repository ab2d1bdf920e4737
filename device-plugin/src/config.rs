//! The pool config: upstream's `resourceList` format plus our `provision` section and per-pool
//! `allocationPolicy` (see docs/CONTRACT.md, "Config file").
//!
//! The JSON is walked by hand rather than derived so that every error names the pool, the key
//! and what was expected, and so that an unknown key is reported with the closest known one.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use crate::json::{as_bool, as_str, kind, upstream_keys, KeyError};
use crate::provision_config::parse_provision;
use crate::resource::ResourceName;
use crate::selectors::Selector;
use serde_json::{Map, Value};
use sriov_host::provision::ProvisionRequest;

/// The whole config file.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The pools, in file order (a device lands in the first pool that matches it).
    pub pools: Vec<PoolConfig>,
    /// VFs to create and bind before pools are built (applied by the provisioning step).
    pub provision: Vec<ProvisionRequest>,
}

/// What a pool hands out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceType {
    /// Network devices, PCI class 0x02 (upstream `netDevice`, the default).
    NetDevice,
    /// Accelerators, PCI class 0x12 (upstream `accelerator`).
    Accelerator,
}

/// How GetPreferredAllocation picks devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AllocationPolicy {
    /// Fill the most allocated PF first, so whole PFs stay free.
    #[default]
    Packed,
    /// Round-robin over PFs, least loaded first.
    Spread,
}

/// One entry of `resourceList`.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolConfig {
    /// `resourcePrefix` (or the `--resource-prefix` default) and `resourceName`.
    pub resource: ResourceName,
    /// `deviceType`: `netDevice` (default) or `accelerator`.
    pub device_type: DeviceType,
    /// `excludeTopology`: never report NUMA affinity for this pool's devices.
    pub exclude_topology: bool,
    /// `selectors`: an object, or a list of objects that are ORed.
    pub selectors: Vec<Selector>,
    /// `additionalInfo`: extra key/values for the `_INFO` env, keyed by device ID or `"*"`.
    pub additional_info: BTreeMap<String, BTreeMap<String, String>>,
    /// `allocationPolicy`: `packed` (default) or `spread`.
    pub allocation_policy: AllocationPolicy,
}

impl PoolConfig {
    /// The `extra` entries for one device: the `"*"` entries overridden by the device's own.
    pub fn extra_for(&self, device_id: &str) -> BTreeMap<String, String> {
        let mut out = self.additional_info.get("*").cloned().unwrap_or_default();
        if let Some(own) = self.additional_info.get(device_id) {
            out.extend(own.clone());
        }
        out
    }

    /// True when any selector asks for `/dev/vhost-net`.
    pub fn needs_vhost_net(&self) -> bool {
        self.selectors.iter().any(|s| s.need_vhost_net)
    }

    /// True when any selector asks for RDMA devices.
    pub fn is_rdma(&self) -> bool {
        self.selectors.iter().any(|s| s.is_rdma)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {path} is {kind}, not a regular file; point --config at a JSON file")]
    NotRegular { path: PathBuf, kind: &'static str },
    #[error("config {path} is larger than the {} MiB limit; a pool config is a few KiB", MAX_CONFIG_BYTES / (1024 * 1024))]
    TooLarge { path: PathBuf },
    #[error("config {path} is not valid JSON: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("config {path}: {source}")]
    Invalid {
        path: PathBuf,
        source: Box<ConfigError>,
    },
    #[error("{key}: {problem}")]
    Top { key: String, problem: String },
    #[error("pool {pool:?}: {key}: {problem}")]
    Pool {
        pool: String,
        key: String,
        problem: String,
    },
    #[error("pool {0:?} is defined twice: every prefix/resourceName must be unique")]
    Duplicate(String),
}

const TOP_KEYS: &[&str] = &["resourceList", "provision"];
const POOL_KEYS: &[&str] = &[
    "resourceName",
    "resourcePrefix",
    "deviceType",
    "excludeTopology",
    "selectors",
    "additionalInfo",
    "allocationPolicy",
];

/// Fields of upstream's in-memory pool struct that its own marshalled configs carry
/// (`"SelectorObj": null` in its per-node config example) and that it discards on read.
const POOL_IGNORED: &[&str] = &["SelectorObj", "SelectorObjs"];

/// The largest config file read; anything larger is refused unread.
pub const MAX_CONFIG_BYTES: u64 = 4 * 1024 * 1024;

/// Read a config file: a regular file (symlinks followed, as a ConfigMap volume needs) of at
/// most [`MAX_CONFIG_BYTES`]. Anything else (a FIFO, a device such as `/dev/zero`, a directory)
/// is refused without reading from it or waiting on it.
pub fn read_config(path: &Path) -> Result<Vec<u8>, ConfigError> {
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let read_err = |source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    };
    // O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused just below).
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(path)
        .map_err(read_err)?;
    let meta = file.metadata().map_err(read_err)?;
    let ft = meta.file_type();
    if !ft.is_file() {
        let kind = if ft.is_dir() {
            "a directory"
        } else if ft.is_fifo() {
            "a FIFO"
        } else if ft.is_char_device() {
            "a character device"
        } else if ft.is_block_device() {
            "a block device"
        } else if ft.is_socket() {
            "a socket"
        } else {
            "a special file"
        };
        return Err(ConfigError::NotRegular {
            path: path.to_path_buf(),
            kind,
        });
    }
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(ConfigError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    // The size may change under us: never read more than the limit allows.
    let mut out = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(read_err)?;
    if out.len() as u64 > MAX_CONFIG_BYTES {
        return Err(ConfigError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    Ok(out)
}

impl Config {
    /// Read ([`read_config`]) and validate a config file.
    pub fn load(path: &Path, default_prefix: &str) -> Result<Config, ConfigError> {
        let text = read_config(path)?;
        let value: Value = serde_json::from_slice(&text).map_err(|source| ConfigError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_value(&value, default_prefix).map_err(|e| ConfigError::Invalid {
            path: path.to_path_buf(),
            source: Box::new(e),
        })
    }

    /// Validate an already-parsed JSON document.
    pub fn from_value(v: &Value, default_prefix: &str) -> Result<Config, ConfigError> {
        let top = |key: &str, problem: String| ConfigError::Top {
            key: key.to_string(),
            problem,
        };
        let obj = v
            .as_object()
            .ok_or_else(|| top("config", format!("expected an object, got {}", kind(v))))?;
        let obj = &upstream_keys(obj, TOP_KEYS, &[]).map_err(|e| top(&e.key, e.problem))?;
        let list = obj
            .get("resourceList")
            .ok_or_else(|| top("resourceList", "missing: expected a list of pools".into()))?
            .as_array()
            .ok_or_else(|| top("resourceList", "expected a list of pools".into()))?;
        let mut pools = Vec::with_capacity(list.len());
        let mut seen = HashSet::new();
        for (i, p) in list.iter().enumerate() {
            let pool = parse_pool(i, p, default_prefix)?;
            if !seen.insert(pool.resource.clone()) {
                return Err(ConfigError::Duplicate(pool.resource.to_string()));
            }
            pools.push(pool);
        }
        let provision = match obj.get("provision") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .enumerate()
                .map(|(i, p)| parse_provision(i, p).map_err(|e| top(&e.key, e.problem)))
                .collect::<Result<_, _>>()?,
            Some(other) => {
                return Err(top(
                    "provision",
                    format!("expected a list of objects, got {}", kind(other)),
                ))
            }
        };
        Ok(Config { pools, provision })
    }
}

/// Builds the errors of one pool, named by its `resourceName` (or its place in `resourceList`
/// when it has none).
struct PoolErr {
    pool: String,
}

impl PoolErr {
    fn new(i: usize, v: &Value) -> PoolErr {
        let pool = v
            .get("resourceName")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| format!("resourceList[{i}]"));
        PoolErr { pool }
    }

    /// The error for `key` (a path inside the pool, such as `selectors[1].vendors`).
    fn at(&self, key: &str, problem: String) -> ConfigError {
        ConfigError::Pool {
            pool: self.pool.clone(),
            key: key.to_string(),
            problem,
        }
    }

    /// The error for a [`KeyError`] found inside the pool.
    fn key(&self, e: KeyError) -> ConfigError {
        self.at(&e.key, e.problem)
    }
}

/// One `resourceList` entry. The keys are checked in a fixed order (unknown keys, name and
/// prefix, `deviceType`, `excludeTopology`, `selectors`, `additionalInfo`,
/// `allocationPolicy`), so a pool with several mistakes always reports the same one first.
fn parse_pool(i: usize, v: &Value, default_prefix: &str) -> Result<PoolConfig, ConfigError> {
    let e = PoolErr::new(i, v);
    let obj = v.as_object().ok_or_else(|| {
        e.at(
            "resourceList",
            format!("expected an object, got {}", kind(v)),
        )
    })?;
    let obj = &upstream_keys(obj, POOL_KEYS, POOL_IGNORED).map_err(|k| e.key(k))?;
    let resource = parse_resource(obj, default_prefix, &e)?;
    let device_type = parse_device_type(obj, &e)?;
    let exclude_topology = match obj.get("excludeTopology") {
        None => false,
        Some(b) => as_bool(b).map_err(|p| e.at("excludeTopology", p))?,
    };
    let selectors = parse_selectors(obj, &e)?;
    let additional_info = match obj.get("additionalInfo") {
        None => BTreeMap::new(),
        Some(a) => parse_additional_info(a).map_err(|k| e.key(k))?,
    };
    let allocation_policy = parse_allocation_policy(obj, &e)?;
    Ok(PoolConfig {
        resource,
        device_type,
        exclude_topology,
        selectors,
        additional_info,
        allocation_policy,
    })
}

/// `resourceName` (required) and `resourcePrefix` (default: `--resource-prefix`).
fn parse_resource(
    obj: &Map<String, Value>,
    default_prefix: &str,
    e: &PoolErr,
) -> Result<ResourceName, ConfigError> {
    let name = match obj.get("resourceName") {
        None => return Err(e.at("resourceName", "missing: every pool needs a name".into())),
        Some(n) => as_str(n).map_err(|p| e.at("resourceName", p))?,
    };
    let prefix = match obj.get("resourcePrefix") {
        None => default_prefix,
        Some(p) => as_str(p).map_err(|problem| e.at("resourcePrefix", problem))?,
    };
    ResourceName::new(prefix, name).map_err(|err| {
        let key = if matches!(err, crate::resource::ResourceNameError::Name(_)) {
            "resourceName"
        } else {
            "resourcePrefix"
        };
        e.at(key, err.to_string())
    })
}

/// `deviceType`: `netDevice` (the default) or `accelerator`.
fn parse_device_type(obj: &Map<String, Value>, e: &PoolErr) -> Result<DeviceType, ConfigError> {
    let Some(t) = obj.get("deviceType") else {
        return Ok(DeviceType::NetDevice);
    };
    match as_str(t).map_err(|p| e.at("deviceType", p))? {
        "netDevice" => Ok(DeviceType::NetDevice),
        "accelerator" => Ok(DeviceType::Accelerator),
        other => Err(e.at(
            "deviceType",
            format!("unsupported value {other:?}: expected \"netDevice\" or \"accelerator\""),
        )),
    }
}

/// `selectors` (required): one object, or a list of objects that are ORed.
fn parse_selectors(obj: &Map<String, Value>, e: &PoolErr) -> Result<Vec<Selector>, ConfigError> {
    match obj.get("selectors") {
        None => Err(e.at(
            "selectors",
            "missing: expected an object or a list of objects".into(),
        )),
        Some(s @ Value::Object(_)) => Ok(vec![
            Selector::parse(s).map_err(|k| e.key(k.under("selectors")))?
        ]),
        Some(Value::Array(list)) => list
            .iter()
            .enumerate()
            .map(|(j, s)| {
                Selector::parse(s).map_err(|k| e.key(k.under(&format!("selectors[{j}]"))))
            })
            .collect(),
        Some(other) => Err(e.at(
            "selectors",
            format!(
                "expected an object or a list of objects, got {}",
                kind(other)
            ),
        )),
    }
}

/// `allocationPolicy`: `packed` (the default) or `spread`.
fn parse_allocation_policy(
    obj: &Map<String, Value>,
    e: &PoolErr,
) -> Result<AllocationPolicy, ConfigError> {
    let Some(p) = obj.get("allocationPolicy") else {
        return Ok(AllocationPolicy::Packed);
    };
    match as_str(p).map_err(|problem| e.at("allocationPolicy", problem))? {
        "packed" => Ok(AllocationPolicy::Packed),
        "spread" => Ok(AllocationPolicy::Spread),
        other => Err(e.at(
            "allocationPolicy",
            format!("unsupported value {other:?}: expected \"packed\" or \"spread\""),
        )),
    }
}

/// `additionalInfo`: upstream's `{"<deviceID>|*": {"k": "v"}}`; a flat `{"k": "v"}` applies to
/// every device.
fn parse_additional_info(
    v: &Value,
) -> Result<BTreeMap<String, BTreeMap<String, String>>, KeyError> {
    let key = "additionalInfo";
    let obj = v
        .as_object()
        .ok_or_else(|| KeyError::new(key, format!("expected an object, got {}", kind(v))))?;
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (k, val) in obj {
        match val {
            Value::String(s) => {
                out.entry("*".into())
                    .or_default()
                    .insert(k.clone(), s.clone());
            }
            Value::Object(inner) => {
                let m = out.entry(k.clone()).or_default();
                for (ik, iv) in inner {
                    let s = as_str(iv).map_err(|p| KeyError::new(format!("{key}.{k}.{ik}"), p))?;
                    m.insert(ik.clone(), s.to_string());
                }
            }
            other => {
                return Err(KeyError::new(
                    format!("{key}.{k}"),
                    format!(
                        "expected a string or an object of strings, got {}",
                        kind(other)
                    ),
                ))
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
