//! The node context: where host state lives, how pools register with the kubelet, CDI and the
//! metrics. Built once from the flags in [`crate::daemon`] and passed down; nothing below the
//! daemon reads the flags.

use std::path::PathBuf;
use std::sync::Arc;

use sriov_host::{PciDevice, Sysfs};
use tokio::sync::broadcast;

use crate::cdi::Cdi;
use crate::cli::Opts;
use crate::metrics::Metrics;
use crate::pool::{HostFacts, PoolCell};
use crate::route::default_route_netdevs;
use crate::watch::DirEvent;

/// Where host state lives; every path is overridable so the plugin runs against a fake tree.
#[derive(Debug, Clone)]
pub struct HostPaths {
    /// The sysfs tree (`/sys` on a node).
    pub sysfs: Sysfs,
    /// Where device nodes are looked up (`/dev` on a node).
    pub dev_root: PathBuf,
    /// Where device-info files are written.
    pub devinfo_dir: PathBuf,
    /// The proc tree (`/proc` on a node): the routing tables are read under its `net/`.
    pub proc_root: PathBuf,
}

/// The proc root on a node; there is no flag for it.
pub const PROC_ROOT: &str = "/proc";

impl HostPaths {
    /// The paths the flags name.
    pub fn from_opts(opts: &Opts) -> HostPaths {
        HostPaths {
            sysfs: Sysfs::new(&opts.sysfs_root),
            dev_root: opts.dev_root.clone(),
            devinfo_dir: opts.devinfo_dir.clone(),
            proc_root: PathBuf::from(PROC_ROOT),
        }
    }

    /// What pool membership needs to know about the node now, besides sysfs: the default-route
    /// netdevs and whether `vhost-net` exists.
    pub fn facts(&self) -> HostFacts {
        HostFacts {
            excluded_netdevs: default_route_netdevs(&self.proc_root.join("net")),
            vhost_net_available: self.dev_root.join("vhost-net").exists(),
        }
    }
}

/// How every pool makes itself known to the kubelet (`--registration`, resolved).
#[derive(Debug)]
pub enum Registration {
    /// A socket in the plugins registry, for the kubelet's plugin watcher.
    Watcher {
        /// The plugins registry directory.
        registry_dir: PathBuf,
    },
    /// A socket in the device-plugins directory and `Register` on `kubelet.sock`.
    Kubelet {
        /// The device-plugins directory.
        dir: PathBuf,
        /// Its inotify events (kubelet restarts, our sockets removed).
        events: broadcast::Sender<DirEvent>,
    },
    /// None: the DRA mode offers the pools' VFs through ResourceSlices instead
    /// ([`NodeContext::observer`]).
    Dra,
}

/// Told about the node after every change (health, devices, pools, config): the DRA mode
/// publishes the pools' VFs from here.
pub trait PoolObserver: Send + Sync {
    /// The pools (in config order) and every device discovered, as they are now.
    fn changed(&self, pools: &[Arc<PoolCell>], devices: &[PciDevice]);
}

/// Everything the running node needs besides the config and the devices.
pub struct NodeContext {
    /// Where host state lives.
    pub paths: Arc<HostPaths>,
    /// The config file (for messages; its content arrives as events).
    pub config_path: PathBuf,
    /// The default prefix of resource names.
    pub resource_prefix: String,
    /// How pools register.
    pub registration: Registration,
    /// With `--cdi`: the pools' CDI specs.
    pub cdi: Option<Arc<Cdi>>,
    /// The daemon's metrics.
    pub metrics: Arc<Metrics>,
    /// Told about every change (the DRA mode).
    pub observer: Option<Arc<dyn PoolObserver>>,
}
