//! The daemon: config, event sources, then the node (provisioning, pools, one server per pool,
//! health and reload: [`crate::node`]) until SIGTERM/SIGINT.

use std::sync::Arc;

use sriov_host::SysfsError;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::cdi::Cdi;
use crate::cli::{Mode, Opts, RegistrationMode};
use crate::config::{Config, ConfigError};
use crate::context::{HostPaths, NodeContext, Registration};
use crate::events;
use crate::metrics::{self, Metrics};
use crate::node::Node;
use crate::socket::{ensure_dir, SocketError};
use crate::watch::{watch_dir, WatchError};

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
    #[cfg(feature = "dra")]
    #[error(transparent)]
    Dra(#[from] crate::dra_mode::DraError),
    #[error("--mode dra: this build has no DRA mode (built without the `dra` feature)")]
    NoDra,
}

impl DaemonError {
    /// The process exit code (docs/CONTRACT.md): 2 for a bad config or bad flags, 1 for
    /// anything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            DaemonError::Config(_) | DaemonError::NoDra => 2,
            #[cfg(feature = "dra")]
            DaemonError::Dra(e) if e.is_usage() => 2,
            _ => 1,
        }
    }
}

/// Async worker threads of the daemon's runtime.
pub const WORKER_THREADS: usize = 2;
/// Threads for blocking work (Allocate's device-info writes, provisioning): Allocates beyond
/// this many at once wait their turn.
pub const BLOCKING_THREADS: usize = 16;

/// Raise the soft limit on open files to the hard limit, so a flood of connections on one
/// listener cannot leave the kubelet sockets without a descriptor to accept with (the metrics
/// listener caps its own connections too). Failing to is logged, not fatal.
pub fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => tracing::debug!(from = soft, to = hard, "open-file limit raised"),
            Err(e) => {
                tracing::warn!(soft, hard, error = %e, "cannot raise the open-file limit")
            }
        },
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot read the open-file limit"),
    }
}

/// Run until SIGTERM or SIGINT; the sockets are removed on the way out.
pub async fn run(opts: Opts) -> Result<(), DaemonError> {
    // The DRA mode's flags and credentials first: a mistake there is reported before anything
    // starts.
    #[cfg(feature = "dra")]
    let dra = match opts.mode {
        Mode::Dra => {
            let paths = HostPaths::from_opts(&opts);
            Some(crate::dra_mode::DraMode::start(&opts, &paths).await?)
        }
        Mode::Classic => None,
    };
    #[cfg(not(feature = "dra"))]
    if opts.mode == Mode::Dra {
        return Err(DaemonError::NoDra);
    }
    let mut term = signal(SignalKind::terminate()).map_err(DaemonError::Signal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(DaemonError::Signal)?;
    // Event sources first, so nothing that happens while we start is missed (a config change
    // racing with the load below is applied again, harmlessly).
    let (tx, mut events) = mpsc::unbounded_channel();
    if let Err(e) = events::spawn_config(&opts.config, tx.clone()) {
        tracing::error!(config = %opts.config.display(), error = %e, "cannot watch the config; changes need a restart");
    }
    if let Err(e) = events::spawn_links(tx.clone()) {
        tracing::error!(error = %e, "cannot follow link state; PF link health is not reported");
    }
    if let Err(e) = events::spawn_uevents(tx.clone()) {
        tracing::warn!(error = %e, "cannot follow PCI uevents; device changes are seen by the 60 s re-scan only");
    }
    // Kept until the end: the channel stays open even when every source failed to start.
    let _keep_open = tx;
    let config = Config::load(&opts.config, &opts.resource_prefix)?;
    let paths = Arc::new(HostPaths::from_opts(&opts));
    let ctx = NodeContext {
        paths: paths.clone(),
        config_path: opts.config.clone(),
        resource_prefix: opts.resource_prefix.clone(),
        registration: match opts.mode {
            Mode::Classic => registration(&opts)?,
            Mode::Dra => Registration::Dra,
        },
        cdi: (opts.cdi && opts.mode == Mode::Classic).then(|| Arc::new(Cdi::new(&opts.cdi_dir))),
        metrics: Arc::new(Metrics::new()),
        #[cfg(feature = "dra")]
        observer: dra.as_ref().map(|d| d.observer()),
        #[cfg(not(feature = "dra"))]
        observer: None,
    };
    let stop = CancellationToken::new();
    if let Some(addr) = opts.metrics_addr {
        metrics::serve(ctx.metrics.clone(), addr, stop.clone())
            .await
            .map_err(|source| DaemonError::Metrics { addr, source })?;
    }
    let (fail_tx, mut failures) = mpsc::unbounded_channel();
    let root = opts.sysfs_root.clone();
    let (mut node, pending) = Node::start(ctx, stop.clone(), config, &mut events, fail_tx)
        .await
        .map_err(|source| DaemonError::Discovery { root, source })?;
    // The DRA socket opens once the pools exist (a claim is prepared from them).
    #[cfg(feature = "dra")]
    let dra_server = match &dra {
        Some(d) => Some(d.serve(&opts, paths, stop.clone())?),
        None => None,
    };
    #[cfg(not(feature = "dra"))]
    drop(paths);

    let mut failure = None;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = int.recv() => tracing::info!("SIGINT: stopping"),
        Some((pool, e)) = failures.recv() => {
            tracing::error!(pool = %pool, error = %e, "pool server failed");
            failure = Some(e);
        }
        _ = node.run(&mut events, pending) => tracing::error!("event sources ended; stopping"),
    }
    stop.cancel();
    node.shutdown().await;
    #[cfg(feature = "dra")]
    if let Some(d) = dra {
        if let Some(s) = dra_server {
            s.finish().await;
        }
        d.shutdown().await;
    }
    match failure {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

/// Resolve `--registration` (auto: watcher when the plugins registry exists) and prepare its
/// directory; kubelet mode watches the device-plugins directory from here on.
fn registration(opts: &Opts) -> Result<Registration, DaemonError> {
    let mode = match opts.registration {
        RegistrationMode::Auto if opts.plugins_registry_dir.is_dir() => RegistrationMode::Watcher,
        RegistrationMode::Auto => RegistrationMode::Kubelet,
        m => m,
    };
    tracing::info!(mode = ?mode, "registration mode");
    Ok(match mode {
        RegistrationMode::Watcher => {
            ensure_dir(&opts.plugins_registry_dir)?;
            Registration::Watcher {
                registry_dir: opts.plugins_registry_dir.clone(),
            }
        }
        _ => {
            ensure_dir(&opts.device_plugins_dir)?;
            Registration::Kubelet {
                dir: opts.device_plugins_dir.clone(),
                events: watch_dir(&opts.device_plugins_dir)?,
            }
        }
    })
}
