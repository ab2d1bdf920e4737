//! CNI errors: a code from the CNI spec (or ours, 100+) and a message naming what is wrong.

use serde::Serialize;

/// The runtime asked for a version (or a command of a version) the plugin does not speak.
pub const INCOMPATIBLE_VERSION: u32 = 1;
/// The container (or its attachment) is unknown.
pub const UNKNOWN_CONTAINER: u32 = 3;
/// A `CNI_*` environment variable is missing or invalid.
pub const INVALID_ENV: u32 = 4;
/// An I/O error (reading stdin, state files).
pub const IO: u32 = 5;
/// Content that cannot be decoded (state, a delegated plugin's result).
pub const DECODE: u32 = 6;
/// The network config is invalid.
pub const INVALID_CONFIG: u32 = 7;
/// STATUS: the plugin cannot serve ADDs now (its IPAM plugin is missing).
pub const PLUGIN_NOT_AVAILABLE: u32 = 50;
/// The VF is held by another live attachment.
pub const VF_BUSY: u32 = 100;
/// The PF (driver) refused or cannot take a requested PF-side VF setting.
pub const PF_SETTING: u32 = 101;
/// A kernel or host operation failed (netlink, sysfs, netns).
pub const OPERATION_FAILED: u32 = 102;

/// An error as the runtime receives it on stdout.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{msg}")]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    pub details: String,
}

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }
    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }
    pub fn env(msg: impl Into<String>) -> Self {
        Self::new(INVALID_ENV, msg)
    }
    pub fn config(msg: impl Into<String>) -> Self {
        Self::new(INVALID_CONFIG, msg)
    }
    pub fn op(msg: impl Into<String>) -> Self {
        Self::new(OPERATION_FAILED, msg)
    }
    /// The error JSON, shaped for `cni_version`.
    pub fn to_json(&self, cni_version: &str) -> String {
        #[derive(Serialize)]
        struct Out<'a> {
            #[serde(rename = "cniVersion")]
            cni_version: &'a str,
            code: u32,
            msg: &'a str,
            #[serde(skip_serializing_if = "str::is_empty")]
            details: &'a str,
        }
        serde_json::to_string(&Out {
            cni_version,
            code: self.code,
            msg: &self.msg,
            details: &self.details,
        })
        .unwrap_or_else(|_| format!("{{\"code\":{},\"msg\":\"error\"}}", self.code))
    }
}

pub type Result<T, E = CniError> = std::result::Result<T, E>;

impl From<sriov_host::netlink::NetlinkError> for CniError {
    fn from(e: sriov_host::netlink::NetlinkError) -> Self {
        CniError::op(e.to_string())
    }
}

impl From<sriov_host::SysfsError> for CniError {
    fn from(e: sriov_host::SysfsError) -> Self {
        CniError::op(e.to_string())
    }
}

impl From<sriov_host::netns::NetnsError> for CniError {
    fn from(e: sriov_host::netns::NetnsError) -> Self {
        CniError::op(e.to_string())
    }
}
