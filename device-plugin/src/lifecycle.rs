//! One pool's life on the node: started with its server, registration, metrics watch and (with
//! `--cdi`) its CDI spec; updated in place when its config or devices change (open ListAndWatch
//! streams follow); stopped when it leaves the config. Device-info files of devices that leave
//! a pool are removed.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sriov_host::{PciAddress, PciDevice};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::cdi;
use crate::config::PoolConfig;
use crate::context::{HostPaths, NodeContext, Registration};
use crate::metrics;
use crate::pool::{Pool, PoolCell};
use crate::registration::{run_kubelet_mode, run_watcher_mode};
use crate::server::PluginService;
use crate::socket::SocketError;

/// How long a stopping pool's server gets to end.
const STOP_WAIT: Duration = Duration::from_secs(3);

/// A pool server that failed (its socket could not be served): the resource and the error.
pub type Failure = (String, SocketError);

/// A pool with its server.
pub struct RunningPool {
    /// The pool's current snapshot.
    pub cell: Arc<PoolCell>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl RunningPool {
    /// Serve `pool` and register it as the context says, until `parent` (or [`Self::stop`]) is
    /// cancelled. A server that fails is reported on `fail`.
    pub fn start(
        ctx: &NodeContext,
        pool: Pool,
        parent: &CancellationToken,
        fail: mpsc::UnboundedSender<Failure>,
    ) -> RunningPool {
        let resource = pool.config.resource.to_string();
        let cell = PoolCell::new(pool);
        let stop = parent.child_token();
        let svc = PluginService {
            pool: cell.clone(),
            paths: ctx.paths.clone(),
            stop: stop.clone(),
            cdi: ctx.cdi.clone(),
            metrics: ctx.metrics.clone(),
        };
        metrics::spawn_pool_watch(ctx.metrics.clone(), &cell.get(), stop.clone());
        if let Some(cdi) = &ctx.cdi {
            cdi::spawn_sync(cdi.clone(), &cell, ctx.paths.clone(), stop.clone());
        }
        let task = match &ctx.registration {
            Registration::Watcher { registry_dir } => {
                let fut = run_watcher_mode(svc, registry_dir.clone(), stop.clone());
                tokio::spawn(async move {
                    if let Err(e) = fut.await {
                        let _ = fail.send((resource, e));
                    }
                })
            }
            Registration::Dra => tokio::spawn(stop.clone().cancelled_owned()),
            Registration::Kubelet { dir, events } => {
                let fut = run_kubelet_mode(svc, dir.clone(), events.subscribe(), stop.clone());
                tokio::spawn(async move {
                    if let Err(e) = fut.await {
                        let _ = fail.send((resource, e));
                    }
                })
            }
        };
        RunningPool { cell, stop, task }
    }

    /// Swap the pool's snapshot when its config or device set changed; remove the device-info
    /// files of devices that left.
    pub fn update(&self, paths: &HostPaths, config: PoolConfig, members: Vec<PciDevice>) {
        let cur = self.cell.get();
        let before: BTreeSet<PciAddress> = cur.devices.keys().copied().collect();
        let after: BTreeSet<PciAddress> = members.iter().map(|d| d.address).collect();
        if cur.config == config && before == after {
            return;
        }
        let left: Vec<PciAddress> = before.difference(&after).copied().collect();
        let joined = after.difference(&before).count();
        tracing::info!(
            pool = %config.resource,
            devices = after.len(),
            joined,
            left = left.len(),
            config_changed = cur.config != config,
            "pool changed"
        );
        remove_devinfo(paths, &cur.config, &left);
        self.cell.set(cur.successor(config, members));
    }

    /// Stop the server (socket removed) and remove the device-info files of every device.
    pub async fn stop(self, paths: &HostPaths) {
        self.stop.cancel();
        let pool = self.cell.get();
        let all: Vec<PciAddress> = pool.devices.keys().copied().collect();
        remove_devinfo(paths, &pool.config, &all);
        if tokio::time::timeout(STOP_WAIT, self.task).await.is_err() {
            tracing::warn!(pool = %pool.config.resource, "pool server did not stop within 3 s");
        }
    }

    /// Wait for the server to end after the daemon's stop token was cancelled; the CDI spec is
    /// removed (device-info files stay: the node is not changing, only the daemon stopping).
    pub async fn finish(self, cdi: Option<&cdi::Cdi>) {
        let _ = tokio::time::timeout(STOP_WAIT, self.task).await;
        if let Some(cdi) = cdi {
            if let Err(e) = cdi.remove(&self.cell.get().config.resource) {
                tracing::warn!(error = %e, "CDI spec left behind");
            }
        }
    }
}

/// Remove the pool's device-info files of the devices `gone`.
fn remove_devinfo(paths: &HostPaths, config: &PoolConfig, gone: &[PciAddress]) {
    for a in gone {
        let path: PathBuf = paths
            .devinfo_dir
            .join(config.resource.devinfo_file(&a.to_string()));
        match std::fs::remove_file(&path) {
            Ok(()) => {
                tracing::info!(pool = %config.resource, pci = %a, path = %path.display(), "device-info file removed")
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove device-info file")
            }
        }
    }
}
