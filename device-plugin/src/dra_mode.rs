//! `--mode dra`: the node's pools published as one ResourceSlice pool, and claims prepared
//! through the kubelet's DRA plugin API, on the same discovery, provisioning, health and
//! config reload as the classic mode ([`crate::node`] drives both; here it reports every
//! change to [`DraSink`] instead of serving device-plugin sockets).
//!
//! - The node's name from `--node-name` or `NODE_NAME`; API credentials the in-cluster way
//!   (or `KUBECONFIG`); the Node's UID makes it the slices' owner when it can be read.
//! - Sockets (0600, in directories created 0700): `dra.sock` in
//!   `<dra-plugins-dir>/sriov.arm.com/` serving `v1.DRAPlugin` and `v1.DRAResourceHealth`, and
//!   `sriov.arm.com-reg.sock` in the plugins registry for the kubelet's plugin watcher,
//!   re-created with back-off when the kubelet refuses the registration.
//! - Every registration (the kubelet's start, which wipes the node's slices, registers us
//!   again) and every [`RESYNC`] the slices are checked against the devices and rewritten when
//!   they differ; SIGTERM deletes them.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use kubelet_proto::dra::dra_plugin_server::DraPluginServer;
use kubelet_proto::dra_health::dra_resource_health_server::DraResourceHealthServer;
use kubelet_proto::pluginregistration::registration_server::RegistrationServer;
use sriov_dra::checkpoint::CheckpointFile;
use sriov_dra::health::HealthService;
use sriov_dra::k8s_openapi::api::core::v1::Node;
use sriov_dra::kube;
use sriov_dra::plugin::{DraService, KubeClaims};
use sriov_dra::publish::Publisher;
use sriov_dra::registration::{plugin_info, registration_socket, service_socket, DraRegistration};
use sriov_dra::{SliceTarget, VfDevice, DRIVER_NAME};
use sriov_host::PciDevice;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;

use crate::cli::Opts;
use crate::context::{HostPaths, PoolObserver};
use crate::dra_devices::{vf_devices, SharedPools, VfPreparer};
use crate::pool::PoolCell;
use crate::socket::{self, ensure_dir, SocketError};

/// How often the slices are checked against the devices even without a change (one LIST):
/// bounds how long slices the kubelet or anyone else deleted stay missing.
pub const RESYNC: Duration = Duration::from_secs(60);
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Why the DRA mode cannot start.
#[derive(Debug, thiserror::Error)]
pub enum DraError {
    #[error("--mode dra needs the node's name: pass --node-name or set NODE_NAME from the downward API (fieldRef spec.nodeName)")]
    NoNodeName,
    #[error(transparent)]
    Target(#[from] sriov_dra::slice::SliceError),
    #[error("--cdi is for the classic mode; the dra mode always writes one CDI spec per prepared claim into --cdi-dir")]
    CdiFlag,
    #[error("--mode dra needs Kubernetes API credentials (the pod's service account, or KUBECONFIG): {0}")]
    Credentials(#[source] kube::Error),
    #[error("claim checkpoint: {0}")]
    Checkpoint(#[from] sriov_dra::checkpoint::CheckpointError),
    #[error(transparent)]
    Socket(#[from] SocketError),
}

impl DraError {
    /// Whether the flags (or `NODE_NAME`) are wrong, as opposed to the node or the cluster.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            DraError::NoNodeName | DraError::Target(_) | DraError::CdiFlag
        )
    }
}

/// The node name the flags and environment give, validated as a slice pool name.
pub fn target(opts: &Opts) -> Result<SliceTarget, DraError> {
    if opts.cdi {
        return Err(DraError::CdiFlag);
    }
    let node = match &opts.node_name {
        Some(n) => n.clone(),
        None => std::env::var("NODE_NAME").map_err(|_| DraError::NoNodeName)?,
    };
    if node.is_empty() {
        return Err(DraError::NoNodeName);
    }
    Ok(SliceTarget::new(DRIVER_NAME, &node)?)
}

/// The node's change reports turned into slices and health snapshots.
pub struct DraSink {
    sysfs: sriov_host::Sysfs,
    publisher: Arc<Publisher>,
    health: watch::Sender<Arc<Vec<VfDevice>>>,
    pools: SharedPools,
    last: Mutex<Option<Vec<VfDevice>>>,
}

impl PoolObserver for DraSink {
    fn changed(&self, pools: &[Arc<PoolCell>], devices: &[PciDevice]) {
        *self.pools.write().unwrap_or_else(|e| e.into_inner()) = pools.to_vec();
        let list = vf_devices(&self.sysfs, pools, devices);
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.as_ref() == Some(&list) {
            return;
        }
        let unhealthy = list.iter().filter(|d| !d.healthy).count();
        tracing::info!(
            devices = list.len(),
            unhealthy,
            "DRA devices changed; publishing"
        );
        self.publisher.update(list.clone());
        self.health.send_replace(Arc::new(list.clone()));
        *last = Some(list);
    }
}

/// The DRA side of the daemon, started before the node so its first report is published.
pub struct DraMode {
    target: SliceTarget,
    client: kube::Client,
    publisher: Arc<Publisher>,
    sink: Arc<DraSink>,
    health: watch::Receiver<Arc<Vec<VfDevice>>>,
    pools: SharedPools,
}

impl DraMode {
    /// Credentials, the Node's UID (for the slices' owner) and the publisher.
    pub async fn start(opts: &Opts, paths: &HostPaths) -> Result<DraMode, DraError> {
        let mut target = target(opts)?;
        let client = kube::Client::try_default()
            .await
            .map_err(DraError::Credentials)?;
        match kube::Api::<Node>::all(client.clone())
            .get(target.node())
            .await
        {
            Ok(n) => match n.metadata.uid {
                Some(uid) => target = target.owned_by_node(&uid),
                None => {
                    tracing::warn!(node = target.node(), "Node has no uid; slices get no owner")
                }
            },
            Err(e) => {
                tracing::warn!(node = target.node(), error = %e, "cannot read the Node; slices get no owner (they are still deleted at SIGTERM)")
            }
        }
        let publisher = Arc::new(Publisher::spawn(
            kube::Api::all(client.clone()),
            target.clone(),
        ));
        let (health_tx, health) = watch::channel(Arc::new(Vec::new()));
        let pools: SharedPools = Arc::new(RwLock::new(Vec::new()));
        let sink = Arc::new(DraSink {
            sysfs: paths.sysfs.clone(),
            publisher: publisher.clone(),
            health: health_tx,
            pools: pools.clone(),
            last: Mutex::new(None),
        });
        tracing::info!(driver = target.driver(), node = target.node(), "dra mode");
        Ok(DraMode {
            target,
            client,
            publisher,
            sink,
            health,
            pools,
        })
    }

    /// What the node reports its changes to.
    pub fn observer(&self) -> Arc<dyn PoolObserver> {
        self.sink.clone()
    }

    /// Serve the DRA socket and register with the kubelet, until `stop`.
    pub fn serve(
        &self,
        opts: &Opts,
        paths: Arc<HostPaths>,
        stop: CancellationToken,
    ) -> Result<DraServer, DraError> {
        let driver_dir = driver_dir(&opts.dra_plugins_dir);
        ensure_dir(&driver_dir)?;
        ensure_dir(&opts.plugins_registry_dir)?;
        ensure_dir(&opts.cdi_dir)?;
        let preparer = Arc::new(VfPreparer::new(self.pools.clone(), paths));
        let svc = DraService::new(
            self.target.clone(),
            KubeClaims(self.client.clone()),
            preparer,
            CheckpointFile::in_dir(&driver_dir),
            opts.cdi_dir.clone(),
        )?;
        let health = HealthService::new(self.target.node(), self.health.clone());
        let sock = service_socket(&opts.dra_plugins_dir, DRIVER_NAME);
        let routes = Routes::new(DraPluginServer::new(svc))
            .add_service(DraResourceHealthServer::new(health));
        let serving = socket::serve(&sock, routes, stop.child_token())?;
        tracing::info!(socket = %sock.display(), "serving the DRA plugin API");
        let reg_sock = registration_socket(&opts.plugins_registry_dir, DRIVER_NAME);
        let task = tokio::spawn(register(
            reg_sock,
            sock,
            self.publisher.clone(),
            stop.clone(),
        ));
        Ok(DraServer { serving, task })
    }

    /// Delete the node's slices (SIGTERM): after the node and the server stopped.
    pub async fn shutdown(self) {
        let DraMode {
            publisher, sink, ..
        } = self;
        drop(sink);
        match Arc::try_unwrap(publisher) {
            Ok(p) => match p.shutdown().await {
                Ok(()) => tracing::info!("resource slices deleted"),
                Err(e) => tracing::error!(error = %e, "resource slices left behind"),
            },
            Err(_) => tracing::error!("publisher still in use; resource slices left behind"),
        }
    }
}

/// The DRA socket's server and the registration task.
pub struct DraServer {
    serving: socket::Serving,
    task: JoinHandle<Result<(), SocketError>>,
}

impl DraServer {
    /// Wait for registration to end (after the stop token), then remove the DRA socket.
    pub async fn finish(self) {
        match self.task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "DRA registration failed"),
            Err(e) => tracing::error!(error = %e, "DRA registration task failed"),
        }
        self.serving.shutdown().await;
    }
}

/// The registration socket for the plugin watcher, re-created after a refusal; each successful
/// registration, and every [`RESYNC`], checks the slices again.
async fn register(
    reg_sock: PathBuf,
    endpoint: PathBuf,
    publisher: Arc<Publisher>,
    stop: CancellationToken,
) -> Result<(), SocketError> {
    let mut backoff = BACKOFF_FIRST;
    let mut tick = tokio::time::interval(RESYNC);
    tick.tick().await;
    loop {
        let (reg, mut status) = DraRegistration::new(plugin_info(DRIVER_NAME, &endpoint, true));
        let serving = socket::serve(
            &reg_sock,
            Routes::new(RegistrationServer::new(reg)),
            stop.child_token(),
        )?;
        tracing::info!(socket = %reg_sock.display(), "waiting for the kubelet's plugin watcher");
        loop {
            tokio::select! {
                _ = stop.cancelled() => {
                    serving.shutdown().await;
                    return Ok(());
                }
                _ = tick.tick() => publisher.resync(),
                st = status.recv() => {
                    let Some(st) = st else { continue };
                    if st.plugin_registered {
                        backoff = BACKOFF_FIRST;
                        publisher.resync();
                        continue;
                    }
                    serving.shutdown().await;
                    tracing::warn!(retry_in = ?backoff, "re-creating the registration socket");
                    tokio::select! {
                        _ = stop.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    break;
                }
            }
        }
    }
}

/// The driver's data directory (`dra.sock`, `checkpoint.json`) under `plugins_dir`.
pub fn driver_dir(plugins_dir: &Path) -> PathBuf {
    plugins_dir.join(DRIVER_NAME)
}
