//! The kubelet's gRPC APIs, generated at build time from the `.proto` files beside this crate:
//!
//! - [`v1beta1`]: the device-plugin API (`Registration` served by the kubelet, `DevicePlugin`
//!   served by a plugin)
//! - [`pluginregistration`]: the plugin-watcher registration API
//! - [`dra`]: the Dynamic Resource Allocation plugin API v1 (`DRAPlugin`, served by a DRA driver)
//! - [`dra_health`]: the DRA device-health API v1 (`DRAResourceHealth`, served by a DRA driver)
//!
//! plus [`connect_uds`], a client channel over a unix socket.

#![allow(clippy::unwrap_used)]

pub mod v1beta1 {
    tonic::include_proto!("v1beta1");
}

pub mod pluginregistration {
    tonic::include_proto!("pluginregistration");
}

/// The kubelet's DRA plugin API v1 (package `k8s.io.kubelet.pkg.apis.dra.v1`).
pub mod dra {
    tonic::include_proto!("k8s.io.kubelet.pkg.apis.dra.v1");
    /// What a DRA driver lists in `PluginInfo.supported_versions` for this service.
    pub const SERVICE: &str = "v1.DRAPlugin";
}

/// The kubelet's DRA device-health API v1 (package `v1`).
pub mod dra_health {
    tonic::include_proto!("v1");
    /// What a DRA driver lists in `PluginInfo.supported_versions` for this service.
    pub const SERVICE: &str = "v1.DRAResourceHealth";
}

pub mod authority;
mod uds;
pub use authority::AuthorityFix;
pub use uds::{connect_uds, ConnectError};

/// The device-plugin API version this crate speaks.
pub const VERSION: &str = "v1beta1";
/// Health strings of [`v1beta1::Device::health`].
pub const HEALTHY: &str = "Healthy";
pub const UNHEALTHY: &str = "Unhealthy";
/// The kubelet's registration socket name in the device-plugins directory.
pub const KUBELET_SOCKET: &str = "kubelet.sock";
