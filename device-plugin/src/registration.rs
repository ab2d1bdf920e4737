//! Getting a pool known to the kubelet, in one of two ways:
//!
//! - kubelet mode: serve in the device-plugins directory, then `Register` on `kubelet.sock`;
//!   serve and register again after a kubelet restart (seen through inotify).
//! - watcher mode: serve `pluginregistration.Registration` and `DevicePlugin` on one socket in
//!   the plugins registry; re-create it with back-off when the kubelet reports a failure.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kubelet_proto::pluginregistration::registration_server::{Registration, RegistrationServer};
use kubelet_proto::pluginregistration::{
    InfoRequest, PluginInfo, RegistrationStatus, RegistrationStatusResponse,
};
use kubelet_proto::v1beta1::registration_client::RegistrationClient;
use kubelet_proto::v1beta1::RegisterRequest;
use kubelet_proto::{connect_uds, KUBELET_SOCKET, VERSION};
use tokio::sync::{broadcast, mpsc};
use tokio::time::{sleep, sleep_until, Instant};
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic::{Request, Response, Status};

use crate::server::{device_plugin_server, options, PluginService, MAX_REQUEST_BYTES};
use crate::socket::{self, SocketError};
use crate::watch::DirEvent;

/// Retry delays for `Register` while `kubelet.sock` exists but does not answer yet (the file
/// appears at bind(), a moment before the kubelet listens on it).
const REGISTER_RETRY_FIRST: Duration = Duration::from_millis(10);
const REGISTER_RETRY_MAX: Duration = Duration::from_secs(5);
/// Back-off before re-creating the registry socket after a failed registration.
const WATCHER_BACKOFF_FIRST: Duration = Duration::from_secs(1);
const WATCHER_BACKOFF_MAX: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error(transparent)]
    Connect(#[from] kubelet_proto::ConnectError),
    #[error("kubelet refused registration of {resource}: {status}")]
    Refused { resource: String, status: Status },
}

/// Call `Register` once.
pub async fn register(
    kubelet_sock: &Path,
    socket_name: &str,
    resource: &str,
) -> Result<(), RegisterError> {
    let channel = connect_uds(kubelet_sock).await?;
    let mut client = RegistrationClient::new(channel);
    client
        .register(RegisterRequest {
            version: VERSION.into(),
            endpoint: socket_name.into(),
            resource_name: resource.into(),
            options: Some(options()),
        })
        .await
        .map_err(|status| RegisterError::Refused {
            resource: resource.into(),
            status,
        })?;
    Ok(())
}

/// Kubelet mode for one pool: runs until `stop`, then removes the socket.
pub async fn run_kubelet_mode(
    svc: PluginService,
    dir: PathBuf,
    mut events: broadcast::Receiver<DirEvent>,
    stop: CancellationToken,
) -> Result<(), SocketError> {
    let resource = svc.pool.get().config.resource.to_string();
    let sock_name = svc.pool.get().config.resource.socket_name();
    let sock = dir.join(&sock_name);
    let kubelet = dir.join(KUBELET_SOCKET);
    let serve = |svc: &PluginService| {
        let mut svc = svc.clone();
        svc.stop = stop.child_token();
        let token = svc.stop.clone();
        socket::serve(&sock, Routes::new(device_plugin_server(svc)), token)
    };
    let mut serving = serve(&svc)?;
    tracing::info!(pool = %resource, socket = %sock.display(), "serving");
    // When to try Register next (None: wait for kubelet.sock to appear), and the next delay.
    let mut next_try: Option<Instant> = Some(Instant::now());
    let mut delay = REGISTER_RETRY_FIRST;
    let mut waiting_logged = false;
    // Which kubelet.sock we registered with since our socket was last (re-)created: a creation
    // event for that same file must not register twice.
    let mut registered_with: Option<FileId> = None;
    let mut taken_over_logged = false;
    loop {
        let wake = async {
            match next_try {
                Some(t) => sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = stop.cancelled() => {
                serving.shutdown().await;
                tracing::info!(pool = %resource, "stopped");
                return Ok(());
            }
            _ = wake => {
                next_try = None;
                if !kubelet.exists() {
                    if !waiting_logged {
                        tracing::info!(pool = %resource, kubelet = %kubelet.display(), "waiting for the kubelet");
                        waiting_logged = true;
                    }
                    continue;
                }
                let target = FileId::of(&kubelet);
                match register(&kubelet, &sock_name, &resource).await {
                    Ok(()) => {
                        registered_with = target;
                        tracing::info!(pool = %resource, endpoint = %sock_name, "registered with the kubelet");
                        svc.metrics.registration(&resource, "kubelet");
                        delay = REGISTER_RETRY_FIRST;
                        waiting_logged = false;
                    }
                    Err(e) => {
                        if delay >= Duration::from_millis(500) {
                            tracing::warn!(pool = %resource, error = %e, retry_in = ?delay, "registration failed");
                        } else {
                            tracing::debug!(pool = %resource, error = %e, retry_in = ?delay, "registration failed");
                        }
                        next_try = Some(Instant::now() + delay);
                        delay = (delay * 2).min(REGISTER_RETRY_MAX);
                    }
                }
            }
            ev = events.recv() => {
                let ev = match ev {
                    Ok(ev) => ev,
                    Err(broadcast::error::RecvError::Lagged(_)) => DirEvent::Overflow,
                    Err(broadcast::error::RecvError::Closed) => {
                        tracing::error!(pool = %resource, "directory watch ended; kubelet restarts will go unnoticed");
                        // Keep serving; only the stop token ends this task now.
                        stop.cancelled().await;
                        serving.shutdown().await;
                        return Ok(());
                    }
                };
                // Our socket is gone when its file (by identity) is no longer at the path: a
                // removal event for the name may be our own unlink of a stale file.
                let ours_gone = match &ev {
                    DirEvent::Removed(n) => *n == sock_name && !serving.is_in_place(),
                    DirEvent::Overflow => !serving.is_in_place(),
                    DirEvent::Created(_) => false,
                };
                let kubelet_new = match &ev {
                    DirEvent::Created(n) => n == KUBELET_SOCKET,
                    DirEvent::Overflow => true,
                    DirEvent::Removed(_) => false,
                };
                if ours_gone && std::fs::symlink_metadata(&sock).is_ok() {
                    // Another file took the path (another instance of the plugin starting, say):
                    // taking it back would make the two fight for ever.
                    if !taken_over_logged {
                        tracing::warn!(pool = %resource, socket = %sock.display(), "another process replaced our socket; leaving it alone (is a second plugin running on this node?)");
                        taken_over_logged = true;
                    }
                } else if ours_gone {
                    tracing::info!(pool = %resource, socket = %sock.display(), "socket removed (kubelet restart?): serving again");
                    let old = std::mem::replace(&mut serving, serve(&svc)?);
                    // The old server's file is gone already; only its task has to end.
                    old.stop_without_removing();
                    registered_with = None;
                    next_try = Some(Instant::now());
                    delay = REGISTER_RETRY_FIRST;
                }
                if kubelet_new && registered_with.is_some() && FileId::of(&kubelet) == registered_with {
                    tracing::debug!(pool = %resource, "already registered with this kubelet socket");
                } else if kubelet_new {
                    tracing::info!(pool = %resource, "kubelet socket appeared: registering");
                    next_try = Some(Instant::now());
                    delay = REGISTER_RETRY_FIRST;
                }
            }
        }
    }
}

/// Identity of a file: a re-created `kubelet.sock` differs even when its inode number is reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
    ctime: i64,
    ctime_nsec: i64,
}

impl FileId {
    fn of(path: &Path) -> Option<FileId> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path).ok()?;
        Some(FileId {
            dev: m.dev(),
            ino: m.ino(),
            ctime: m.ctime(),
            ctime_nsec: m.ctime_nsec(),
        })
    }
}

/// Watcher mode for one pool: runs until `stop`, then removes the socket.
pub async fn run_watcher_mode(
    svc: PluginService,
    dir: PathBuf,
    stop: CancellationToken,
) -> Result<(), SocketError> {
    let resource = svc.pool.get().config.resource.to_string();
    let sock = dir.join(svc.pool.get().config.resource.socket_name());
    let mut backoff = WATCHER_BACKOFF_FIRST;
    loop {
        let (tx, mut status_rx) = mpsc::channel(4);
        let reg = WatcherRegistration {
            info: PluginInfo {
                r#type: "DevicePlugin".into(),
                name: resource.clone(),
                endpoint: sock.to_string_lossy().into_owned(),
                supported_versions: vec![VERSION.into()],
            },
            status: tx,
        };
        let mut dp = svc.clone();
        dp.stop = stop.child_token();
        let token = dp.stop.clone();
        let routes = Routes::new(device_plugin_server(dp))
            .add_service(RegistrationServer::new(reg).max_decoding_message_size(MAX_REQUEST_BYTES));
        let serving = socket::serve(&sock, routes, token)?;
        tracing::info!(pool = %resource, socket = %sock.display(), "serving for the plugin watcher");
        loop {
            tokio::select! {
                _ = stop.cancelled() => {
                    serving.shutdown().await;
                    tracing::info!(pool = %resource, "stopped");
                    return Ok(());
                }
                st = status_rx.recv() => {
                    let Some(st) = st else { continue };
                    if st.plugin_registered {
                        tracing::info!(pool = %resource, "registered through the plugin watcher");
                        svc.metrics.registration(&resource, "watcher");
                        backoff = WATCHER_BACKOFF_FIRST;
                        continue;
                    }
                    tracing::error!(pool = %resource, error = %st.error, retry_in = ?backoff, "kubelet reports registration failed; re-creating the socket");
                    serving.shutdown().await;
                    tokio::select! {
                        _ = stop.cancelled() => return Ok(()),
                        _ = sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(WATCHER_BACKOFF_MAX);
                    break;
                }
            }
        }
    }
}

/// `pluginregistration.Registration`, served beside DevicePlugin in watcher mode.
struct WatcherRegistration {
    info: PluginInfo,
    status: mpsc::Sender<RegistrationStatus>,
}

#[tonic::async_trait]
impl Registration for WatcherRegistration {
    async fn get_info(&self, _: Request<InfoRequest>) -> Result<Response<PluginInfo>, Status> {
        Ok(Response::new(self.info.clone()))
    }

    async fn notify_registration_status(
        &self,
        req: Request<RegistrationStatus>,
    ) -> Result<Response<RegistrationStatusResponse>, Status> {
        // A full channel means a reaction is already pending.
        let _ = self.status.try_send(req.into_inner());
        Ok(Response::new(RegistrationStatusResponse {}))
    }
}
