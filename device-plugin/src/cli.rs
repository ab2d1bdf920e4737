//! Command-line flags (docs/CONTRACT.md, "`sriov-device-plugin` flags").

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "sriov-device-plugin",
    version,
    about = "Kubernetes device plugin for SR-IOV virtual functions"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub opts: Opts,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print every PF and VF found, with the pool each falls in, and exit.
    Inventory {
        #[command(flatten)]
        opts: Opts,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// How the plugin makes itself known to the kubelet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RegistrationMode {
    /// Register on kubelet.sock in the device-plugins directory.
    Kubelet,
    /// Put a socket in the plugins registry for the kubelet's plugin watcher.
    Watcher,
    /// Watcher if the plugins registry directory exists, else kubelet.
    Auto,
}

/// How the node's VFs are offered to pods. The two are exclusive on a node, so a VF is never
/// allocatable through both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// One device-plugin resource per pool (`arm.com/ps225_dpdk: 1`).
    Classic,
    /// Dynamic Resource Allocation: every pooled VF in this node's ResourceSlices, prepared
    /// for ResourceClaims through the kubelet's DRA plugin API (docs/dra.md).
    Dra,
}

#[derive(Debug, Clone, Args)]
pub struct Opts {
    /// classic (device-plugin resources) or dra (ResourceSlices and claims).
    #[arg(long, value_enum, default_value = "classic")]
    pub mode: Mode,
    /// The node's name (dra mode), else the NODE_NAME environment variable (the downward
    /// API's spec.nodeName).
    #[arg(long)]
    pub node_name: Option<String>,
    /// Parent of the DRA driver's directory `<dir>/sriov.arm.com/` (dra.sock, checkpoint.json).
    #[arg(long, default_value = "/var/lib/kubelet/plugins")]
    pub dra_plugins_dir: PathBuf,
    /// Pool config, JSON (upstream resourceList format plus the provision section).
    #[arg(long, default_value = "/etc/pcidp/config.json")]
    pub config: PathBuf,
    /// Root of the sysfs tree.
    #[arg(long, default_value = "/sys")]
    pub sysfs_root: PathBuf,
    /// Where device nodes are looked up; paths handed to the kubelet are always /dev/...
    #[arg(long, default_value = "/dev")]
    pub dev_root: PathBuf,
    /// Holds kubelet.sock and the plugin sockets (kubelet mode).
    #[arg(long, default_value = "/var/lib/kubelet/device-plugins")]
    pub device_plugins_dir: PathBuf,
    /// Plugin-watcher registration directory (watcher registration, and dra mode).
    #[arg(long, default_value = "/var/lib/kubelet/plugins_registry")]
    pub plugins_registry_dir: PathBuf,
    /// kubelet, watcher or auto.
    #[arg(long, value_enum, default_value = "auto")]
    pub registration: RegistrationMode,
    /// Where NPWG device-info files are written.
    #[arg(long, default_value = "/var/run/k8s.cni.cncf.io/devinfo/dp")]
    pub devinfo_dir: PathBuf,
    /// Where CDI spec files are written (with --cdi; in dra mode, one per prepared claim).
    #[arg(long, default_value = "/var/run/cdi")]
    pub cdi_dir: PathBuf,
    /// Write CDI specs and fill cdi_devices (classic mode; dra mode always uses CDI).
    #[arg(long)]
    pub cdi: bool,
    /// Default prefix of resource names.
    #[arg(long, default_value = "intel.com")]
    pub resource_prefix: String,
    /// Prometheus /metrics and /healthz listener, IP:port, e.g. 127.0.0.1:9808.
    #[arg(long)]
    pub metrics_addr: Option<std::net::SocketAddr>,
}
