//! The kubelet's gRPC APIs, generated at build time from the `.proto` files beside this crate:
//!
//! - [`v1beta1`]: the device-plugin API (`Registration` served by the kubelet, `DevicePlugin`
//!   served by a plugin)
//! - [`pluginregistration`]: the plugin-watcher registration API
//!
//! plus [`connect_uds`], a client channel over a unix socket.

#![allow(clippy::unwrap_used)]

pub mod v1beta1 {
    tonic::include_proto!("v1beta1");
}

pub mod pluginregistration {
    tonic::include_proto!("pluginregistration");
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
