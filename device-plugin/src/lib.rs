//! The SR-IOV device plugin: pools of PCI devices (mostly VFs) described by an
//! upstream-compatible config, served to the kubelet over the device-plugin v1beta1 API.
//!
//! - [`cli`] — flags
//! - [`config`], [`selectors`], [`provision_config`], [`resource`]: the config file and what it
//!   means; [`json`]: the JSON checks they share
//! - [`route`]: the netdevs carrying the default route (never pooled)
//! - [`pool`], [`health`]: pool membership and the live device list of each pool
//! - [`server`], [`allocate`], [`prefer`]: the DevicePlugin service
//! - [`cdi`]: CDI spec files (`--cdi`); [`metrics`]: Prometheus metrics (`--metrics-addr`)
//! - [`socket`], [`registration`], [`watch`]: sockets, kubelet and plugin-watcher registration,
//!   kubelet restarts
//! - [`provision_apply`]: applying the `provision` section (VF creation and driver binding,
//!   done by `sriov_host::provision`) and the per-PF plan `inventory` shows
//! - [`events`], [`node`]: link, uevent and config-file events; the running node that reacts
//!   to them (health, pool membership, hot reload); [`lifecycle`]: one pool's server from start
//!   to stop
//! - [`context`]: the node context (host paths, registration, CDI, metrics) built once
//! - [`dra_mode`], [`dra_devices`] (feature `dra`): `--mode dra`, the same pools published as
//!   ResourceSlices and prepared for ResourceClaims
//! - [`daemon`]: orchestration; [`inventory`]: the `inventory` subcommand

pub mod allocate;
pub mod cdi;
pub mod cli;
pub mod config;
pub mod context;
pub mod daemon;
#[cfg(feature = "dra")]
pub mod dra_devices;
#[cfg(feature = "dra")]
pub mod dra_mode;
pub mod events;
pub mod health;
pub mod inventory;
pub mod json;
pub mod lifecycle;
pub mod metrics;
pub mod node;
pub mod pool;
pub mod prefer;
pub mod provision_apply;
pub mod provision_config;
pub mod registration;
pub mod resource;
pub mod route;
pub mod selectors;
pub mod server;
pub mod socket;
pub mod watch;
