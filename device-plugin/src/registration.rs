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
    let mut reg = KubeletRegistration::new(&svc, &dir);
    let sock = reg.sock.clone();
    let serve = |svc: &PluginService| {
        let mut svc = svc.clone();
        svc.stop = stop.child_token();
        let token = svc.stop.clone();
        socket::serve(&sock, Routes::new(device_plugin_server(svc)), token)
    };
    let mut serving = serve(&svc)?;
    tracing::info!(pool = %reg.resource, socket = %reg.sock.display(), "serving");
    loop {
        let next_try = reg.next_try;
        let wake = async {
            match next_try {
                Some(t) => sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = stop.cancelled() => {
                serving.shutdown().await;
                tracing::info!(pool = %reg.resource, "stopped");
                return Ok(());
            }
            _ = wake => reg.try_register(&svc).await,
            ev = events.recv() => {
                let ev = match ev {
                    Ok(ev) => ev,
                    Err(broadcast::error::RecvError::Lagged(_)) => DirEvent::Overflow,
                    Err(broadcast::error::RecvError::Closed) => {
                        tracing::error!(pool = %reg.resource, "directory watch ended; kubelet restarts will go unnoticed");
                        // Keep serving; only the stop token ends this task now.
                        stop.cancelled().await;
                        serving.shutdown().await;
                        return Ok(());
                    }
                };
                if reg.socket_lost(&ev, serving.is_in_place()) {
                    tracing::info!(pool = %reg.resource, socket = %reg.sock.display(), "socket removed (kubelet restart?): serving again");
                    let old = std::mem::replace(&mut serving, serve(&svc)?);
                    // The old server's file is gone already; only its task has to end.
                    old.stop_without_removing();
                    reg.served_again();
                }
                reg.kubelet_event(&ev);
            }
        }
    }
}

/// Where one pool stands with the kubelet in kubelet mode, between events.
struct KubeletRegistration {
    resource: String,
    sock_name: String,
    /// Our socket.
    sock: PathBuf,
    /// The kubelet's registration socket.
    kubelet: PathBuf,
    /// When to try `Register` next (`None`: wait for `kubelet.sock` to appear).
    next_try: Option<Instant>,
    /// The delay after the next failed try.
    delay: Duration,
    waiting_logged: bool,
    /// Which `kubelet.sock` we registered with since our socket was last (re-)created: a
    /// creation event for that same file must not register twice.
    registered_with: Option<FileId>,
    taken_over_logged: bool,
}

impl KubeletRegistration {
    fn new(svc: &PluginService, dir: &Path) -> Self {
        let config = &svc.pool.get().config;
        let sock_name = config.resource.socket_name();
        KubeletRegistration {
            resource: config.resource.to_string(),
            sock: dir.join(&sock_name),
            sock_name,
            kubelet: dir.join(KUBELET_SOCKET),
            next_try: Some(Instant::now()),
            delay: REGISTER_RETRY_FIRST,
            waiting_logged: false,
            registered_with: None,
            taken_over_logged: false,
        }
    }

    /// Try `Register` now.
    fn retry_now(&mut self) {
        self.next_try = Some(Instant::now());
        self.delay = REGISTER_RETRY_FIRST;
    }

    /// The time to try came: register when `kubelet.sock` exists, else wait for it to appear;
    /// a failure is retried with back-off.
    async fn try_register(&mut self, svc: &PluginService) {
        self.next_try = None;
        if !self.kubelet.exists() {
            if !self.waiting_logged {
                tracing::info!(pool = %self.resource, kubelet = %self.kubelet.display(), "waiting for the kubelet");
                self.waiting_logged = true;
            }
            return;
        }
        let target = FileId::of(&self.kubelet);
        match register(&self.kubelet, &self.sock_name, &self.resource).await {
            Ok(()) => {
                self.registered_with = target;
                tracing::info!(pool = %self.resource, endpoint = %self.sock_name, "registered with the kubelet");
                svc.metrics.registration(&self.resource, "kubelet");
                self.delay = REGISTER_RETRY_FIRST;
                self.waiting_logged = false;
            }
            Err(e) => {
                if self.delay >= Duration::from_millis(500) {
                    tracing::warn!(pool = %self.resource, error = %e, retry_in = ?self.delay, "registration failed");
                } else {
                    tracing::debug!(pool = %self.resource, error = %e, retry_in = ?self.delay, "registration failed");
                }
                self.next_try = Some(Instant::now() + self.delay);
                self.delay = (self.delay * 2).min(REGISTER_RETRY_MAX);
            }
        }
    }

    /// Whether `ev` means our socket is gone and must be served again. It is gone when its file
    /// (by identity, `in_place`) is no longer at the path: a removal event for the name may be
    /// our own unlink of a stale file. Another file at the path (another instance of the plugin
    /// starting, say) is left alone: taking it back would make the two fight for ever.
    fn socket_lost(&mut self, ev: &DirEvent, in_place: bool) -> bool {
        let gone = match ev {
            DirEvent::Removed(n) => *n == self.sock_name && !in_place,
            DirEvent::Overflow => !in_place,
            DirEvent::Created(_) => false,
        };
        if gone && std::fs::symlink_metadata(&self.sock).is_ok() {
            if !self.taken_over_logged {
                tracing::warn!(pool = %self.resource, socket = %self.sock.display(), "another process replaced our socket; leaving it alone (is a second plugin running on this node?)");
                self.taken_over_logged = true;
            }
            return false;
        }
        gone
    }

    /// Our socket was created again: register again.
    fn served_again(&mut self) {
        self.registered_with = None;
        self.retry_now();
    }

    /// A new `kubelet.sock` (the kubelet restarted) means registering again, unless it is the
    /// one we registered with.
    fn kubelet_event(&mut self, ev: &DirEvent) {
        let kubelet_new = match ev {
            DirEvent::Created(n) => n == KUBELET_SOCKET,
            DirEvent::Overflow => true,
            DirEvent::Removed(_) => false,
        };
        if !kubelet_new {
            return;
        }
        if self.registered_with.is_some() && FileId::of(&self.kubelet) == self.registered_with {
            tracing::debug!(pool = %self.resource, "already registered with this kubelet socket");
        } else {
            tracing::info!(pool = %self.resource, "kubelet socket appeared: registering");
            self.retry_now();
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
