//! The daemon: config, discovery, pools, one server per pool, until SIGTERM/SIGINT.

use std::sync::Arc;
use std::time::Duration;

use sriov_host::discovery::discover;
use sriov_host::{PciDevice, Sysfs, SysfsError};
use tokio::signal::unix::{signal, SignalKind};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::allocate::HostPaths;
use crate::cdi::{self, Cdi};
use crate::cli::{Opts, RegistrationMode};
use crate::config::{Config, ConfigError};
use crate::metrics;
use crate::pool::{assign, HostFacts, Pool};
use crate::registration::{run_kubelet_mode, run_watcher_mode};
use crate::route::default_route_netdevs;
use crate::server::PluginService;
use crate::socket::{ensure_dir, SocketError};
use crate::watch::{watch_dir, WatchError};

/// How often device health is re-checked.
const HEALTH_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("discovery in {root}: {source}")]
    Discovery {
        root: std::path::PathBuf,
        source: SysfsError,
    },
    #[error(transparent)]
    Socket(#[from] SocketError),
    #[error(transparent)]
    Watch(#[from] WatchError),
    #[error("cannot listen for metrics on {addr}: {source}")]
    Metrics {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot install signal handler: {0}")]
    Signal(std::io::Error),
}

impl DaemonError {
    /// The process exit code (docs/CONTRACT.md): 2 for a bad config, 1 for anything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            DaemonError::Config(_) => 2,
            _ => 1,
        }
    }
}

/// The config, everything discovered, and each pool's devices (in config order).
pub struct Discovered {
    pub config: Config,
    pub devices: Vec<PciDevice>,
    pub pools: Vec<Vec<PciDevice>>,
}

/// Read the config, discover devices and assign them to pools.
pub fn discover_pools(opts: &Opts) -> Result<Discovered, DaemonError> {
    let config = Config::load(&opts.config, &opts.resource_prefix)?;
    let sysfs = Sysfs::new(&opts.sysfs_root);
    let devices = discover(&sysfs).map_err(|source| DaemonError::Discovery {
        root: opts.sysfs_root.clone(),
        source,
    })?;
    let facts = HostFacts {
        excluded_netdevs: default_route_netdevs(std::path::Path::new("/proc/net")),
        vhost_net_available: opts.dev_root.join("vhost-net").exists(),
    };
    let pools = assign(&sysfs, &devices, &config, &facts);
    Ok(Discovered {
        config,
        devices,
        pools,
    })
}

/// Run until SIGTERM or SIGINT; the sockets are removed on the way out.
pub async fn run(opts: Opts) -> Result<(), DaemonError> {
    let mut term = signal(SignalKind::terminate()).map_err(DaemonError::Signal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(DaemonError::Signal)?;
    let found = discover_pools(&opts)?;
    tracing::info!(
        devices = found.devices.len(),
        pools = found.config.pools.len(),
        "discovery done"
    );
    if !found.config.provision.is_empty() {
        tracing::warn!(
            entries = found.config.provision.len(),
            "provision section parsed; VF creation is not applied by this version"
        );
    }
    let paths = Arc::new(HostPaths {
        sysfs: Sysfs::new(&opts.sysfs_root),
        dev_root: opts.dev_root.clone(),
        devinfo_dir: opts.devinfo_dir.clone(),
    });
    let stop = CancellationToken::new();
    let pools: Vec<Arc<Pool>> = found
        .config
        .pools
        .into_iter()
        .zip(found.pools)
        .map(|(c, d)| Arc::new(Pool::new(c, d)))
        .collect();
    if let Some(addr) = opts.metrics_addr {
        metrics::serve(metrics::global(), addr, stop.clone())
            .await
            .map_err(|source| DaemonError::Metrics { addr, source })?;
    }
    metrics::record_pfs(&found.devices);
    for pool in &pools {
        metrics::spawn_pool_watch(metrics::global(), pool, stop.clone());
    }
    let cdi = opts.cdi.then(|| Arc::new(Cdi::new(&opts.cdi_dir)));
    if let Some(cdi) = &cdi {
        for pool in &pools {
            cdi::spawn_sync(cdi.clone(), pool, paths.clone(), stop.clone());
        }
    }

    let mode = match opts.registration {
        RegistrationMode::Auto if opts.plugins_registry_dir.is_dir() => RegistrationMode::Watcher,
        RegistrationMode::Auto => RegistrationMode::Kubelet,
        m => m,
    };
    tracing::info!(mode = ?mode, "registration mode");
    let mut tasks = JoinSet::new();
    match mode {
        RegistrationMode::Watcher => {
            ensure_dir(&opts.plugins_registry_dir)?;
            for pool in &pools {
                let svc = service(pool, &paths, &stop, &cdi);
                tasks.spawn(run_watcher_mode(
                    svc,
                    opts.plugins_registry_dir.clone(),
                    stop.clone(),
                ));
            }
        }
        _ => {
            ensure_dir(&opts.device_plugins_dir)?;
            let events = watch_dir(&opts.device_plugins_dir)?;
            for pool in &pools {
                let svc = service(pool, &paths, &stop, &cdi);
                tasks.spawn(run_kubelet_mode(
                    svc,
                    opts.device_plugins_dir.clone(),
                    events.subscribe(),
                    stop.clone(),
                ));
            }
        }
    }
    spawn_health(pools.clone(), paths.sysfs.clone(), stop.clone());

    let mut failure = None;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = int.recv() => tracing::info!("SIGINT: stopping"),
        Some(res) = tasks.join_next() => {
            if let Ok(Err(e)) = res {
                failure = Some(e);
            }
        }
    }
    stop.cancel();
    while let Some(res) = tasks.join_next().await {
        if let Ok(Err(e)) = res {
            failure.get_or_insert(e);
        }
    }
    if let Some(cdi) = &cdi {
        for pool in &pools {
            if let Err(e) = cdi.remove(&pool.config.resource) {
                tracing::warn!(error = %e, "CDI spec left behind");
            }
        }
    }
    match failure {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

fn service(
    pool: &Arc<Pool>,
    paths: &Arc<HostPaths>,
    stop: &CancellationToken,
    cdi: &Option<Arc<Cdi>>,
) -> PluginService {
    PluginService {
        pool: pool.clone(),
        paths: paths.clone(),
        stop: stop.clone(),
        cdi: cdi.clone(),
    }
}

fn spawn_health(pools: Vec<Arc<Pool>>, sysfs: Sysfs, stop: CancellationToken) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(HEALTH_INTERVAL);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {
                    for p in &pools {
                        p.refresh_health(&sysfs);
                    }
                }
            }
        }
    });
}
