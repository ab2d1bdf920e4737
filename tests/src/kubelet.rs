//! A test kubelet: the kubelet's side of the device-plugin API over real unix sockets.
//!
//! Kubelet mode: [`TestKubelet`] serves `v1beta1.Registration` on `<dir>/kubelet.sock`, records
//! every `RegisterRequest`, dials the plugin back, calls `GetDevicePluginOptions`, follows
//! `ListAndWatch`, and offers `allocate`/`preferred` calls. [`TestKubelet::restart`] does what a
//! restarting kubelet does: delete every socket in the directory, then create `kubelet.sock` again.
//!
//! Watcher mode: [`WatcherClient`] plays the kubelet's plugin watcher on a plugins-registry
//! directory (`GetInfo`, `NotifyRegistrationStatus`, then DevicePlugin calls on the same socket).
//!
//! Nothing here knows about fake trees: the same helpers drive the plugin on real hardware.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kubelet_proto::pluginregistration::registration_client::RegistrationClient as WatcherRegistrationClient;
use kubelet_proto::pluginregistration::{InfoRequest, PluginInfo, RegistrationStatus};
use kubelet_proto::v1beta1::device_plugin_client::DevicePluginClient;
use kubelet_proto::v1beta1::registration_server::{Registration, RegistrationServer};
use kubelet_proto::v1beta1::{
    AllocateRequest, AllocateResponse, ContainerAllocateRequest, ContainerAllocateResponse,
    ContainerPreferredAllocationRequest, Device, DevicePluginOptions, Empty,
    PreferredAllocationRequest, RegisterRequest,
};
use kubelet_proto::{connect_uds, KUBELET_SOCKET, VERSION};
use tokio::net::UnixListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::UnixListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Server};
use tonic::{Request, Response, Status};

/// A `RegisterRequest` and when it arrived.
#[derive(Debug, Clone)]
pub struct Registered {
    pub at: Instant,
    pub request: RegisterRequest,
}

/// What the kubelet knows about one resource.
#[derive(Debug, Clone, Default)]
pub struct ResourceState {
    pub options: Option<DevicePluginOptions>,
    /// The latest ListAndWatch message (`None` before the first one).
    pub devices: Option<Vec<Device>>,
    /// How many ListAndWatch messages arrived on the current stream.
    pub updates: usize,
    /// When the first message of the current stream arrived.
    pub first_list_at: Option<Instant>,
}

#[derive(Default)]
struct Shared {
    registrations: Mutex<Vec<Registered>>,
    clients: Mutex<HashMap<String, DevicePluginClient<Channel>>>,
    /// Bumped on every registration or device update, so waiters can re-check.
    changed: Mutex<Option<watch::Sender<u64>>>,
    resources: Mutex<HashMap<String, ResourceState>>,
}

impl Shared {
    fn bump(&self) {
        if let Some(tx) = self.changed.lock().unwrap().as_ref() {
            tx.send_modify(|n| *n += 1);
        }
    }
}

/// The test kubelet (kubelet-mode registration).
pub struct TestKubelet {
    dir: PathBuf,
    shared: Arc<Shared>,
    changed: watch::Receiver<u64>,
    stop: CancellationToken,
    server: Option<JoinHandle<()>>,
    /// When `kubelet.sock` was last created.
    pub started_at: Instant,
}

struct RegistrationSvc {
    dir: PathBuf,
    shared: Arc<Shared>,
    stop: CancellationToken,
}

#[tonic::async_trait]
impl Registration for RegistrationSvc {
    async fn register(&self, req: Request<RegisterRequest>) -> Result<Response<Empty>, Status> {
        let r = req.into_inner();
        if r.version != VERSION {
            return Err(Status::invalid_argument(format!(
                "unsupported version {:?}",
                r.version
            )));
        }
        if r.endpoint.is_empty() || r.endpoint.contains('/') {
            return Err(Status::invalid_argument(format!(
                "bad endpoint {:?}",
                r.endpoint
            )));
        }
        self.shared.registrations.lock().unwrap().push(Registered {
            at: Instant::now(),
            request: r.clone(),
        });
        self.shared.bump();
        // Like the kubelet: answer first, then dial the plugin back.
        let shared = self.shared.clone();
        let path = self.dir.join(&r.endpoint);
        let stop = self.stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = follow_plugin(shared, path, r.resource_name) => {}
            }
        });
        Ok(Response::new(Empty {}))
    }
}

async fn follow_plugin(shared: Arc<Shared>, path: PathBuf, resource: String) {
    let channel = match connect_uds(&path).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("test kubelet: {e}");
            return;
        }
    };
    let mut client = DevicePluginClient::new(channel);
    let options = match client.get_device_plugin_options(Empty {}).await {
        Ok(o) => o.into_inner(),
        Err(e) => {
            eprintln!("test kubelet: GetDevicePluginOptions({resource}): {e}");
            return;
        }
    };
    {
        let mut res = shared.resources.lock().unwrap();
        let st = res.entry(resource.clone()).or_default();
        st.options = Some(options);
        st.updates = 0;
        st.first_list_at = None;
    }
    shared
        .clients
        .lock()
        .unwrap()
        .insert(resource.clone(), client.clone());
    let mut stream = match client.list_and_watch(Empty {}).await {
        Ok(s) => s.into_inner(),
        Err(e) => {
            eprintln!("test kubelet: ListAndWatch({resource}): {e}");
            return;
        }
    };
    while let Ok(Some(msg)) = stream.message().await {
        {
            let mut res = shared.resources.lock().unwrap();
            let st = res.entry(resource.clone()).or_default();
            st.devices = Some(msg.devices);
            st.updates += 1;
            st.first_list_at.get_or_insert_with(Instant::now);
        }
        shared.bump();
    }
}

/// Bind a unix socket, replacing a stale file.
fn bind(path: &Path) -> std::io::Result<UnixListener> {
    let _ = std::fs::remove_file(path);
    UnixListener::bind(path)
}

impl TestKubelet {
    /// Start serving `<dir>/kubelet.sock` (the directory is created if needed).
    pub async fn start(dir: &Path) -> TestKubelet {
        std::fs::create_dir_all(dir).unwrap();
        let shared = Arc::new(Shared::default());
        let (tx, rx) = watch::channel(0);
        *shared.changed.lock().unwrap() = Some(tx);
        let mut k = TestKubelet {
            dir: dir.to_path_buf(),
            shared,
            changed: rx,
            stop: CancellationToken::new(),
            server: None,
            started_at: Instant::now(),
        };
        k.serve();
        k
    }

    fn serve(&mut self) {
        self.stop = CancellationToken::new();
        let listener = bind(&self.socket_path()).unwrap();
        self.started_at = Instant::now();
        let svc = RegistrationSvc {
            dir: self.dir.clone(),
            shared: self.shared.clone(),
            stop: self.stop.clone(),
        };
        let shutdown = self.stop.clone().cancelled_owned();
        self.server = Some(tokio::spawn(async move {
            let _ = Server::builder()
                .add_service(RegistrationServer::new(svc))
                .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
                .await;
        }));
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn socket_path(&self) -> PathBuf {
        self.dir.join(KUBELET_SOCKET)
    }

    /// Stop serving and remove `kubelet.sock`; what the kubelet knew about plugins is dropped.
    pub async fn stop(&mut self) {
        self.stop.cancel();
        if let Some(s) = self.server.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), s).await;
        }
        let _ = std::fs::remove_file(self.socket_path());
        self.shared.clients.lock().unwrap().clear();
        self.shared.resources.lock().unwrap().clear();
    }

    /// A kubelet restart: stop, delete every socket in the directory (the plugins' too), then
    /// serve `kubelet.sock` again. Registrations seen before are kept (see [`Self::registrations`]).
    pub async fn restart(&mut self) {
        self.stop().await;
        for e in std::fs::read_dir(&self.dir).unwrap().flatten() {
            use std::os::unix::fs::FileTypeExt;
            if e.file_type().map(|t| t.is_socket()).unwrap_or(false) {
                let _ = std::fs::remove_file(e.path());
            }
        }
        self.serve();
    }

    /// Every registration so far, oldest first.
    pub fn registrations(&self) -> Vec<Registered> {
        self.shared.registrations.lock().unwrap().clone()
    }

    /// How many times `resource` registered so far.
    pub fn registration_count(&self, resource: &str) -> usize {
        self.shared
            .registrations
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.request.resource_name == resource)
            .count()
    }

    /// Wait until `resource` has sent a device list on a stream opened after `since` (its
    /// registration), and return that list.
    pub async fn wait_for_fresh_list(
        &self,
        resource: &str,
        since: Instant,
        timeout: Duration,
    ) -> Result<Vec<Device>, String> {
        self.wait_for(&format!("a new device list of {resource}"), timeout, |k| {
            k.resource(resource)
                .filter(|r| r.first_list_at.is_some_and(|t| t >= since))
                .and_then(|r| r.devices)
        })
        .await
    }

    /// The current state of a resource.
    pub fn resource(&self, resource: &str) -> Option<ResourceState> {
        self.shared.resources.lock().unwrap().get(resource).cloned()
    }

    /// Wait until `check` returns `Some`, re-checking on every registration or update.
    pub async fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&Self) -> Option<T>,
    ) -> Result<T, String> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut rx = self.changed.clone();
        loop {
            rx.borrow_and_update();
            if let Some(v) = check(self) {
                return Ok(v);
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(format!("{what}: test kubelet gone")),
                Err(_) => return Err(format!("{what}: timed out after {timeout:?}")),
            }
        }
    }

    /// Wait for the `n`-th registration (1-based) of `resource`.
    pub async fn wait_for_registration(
        &self,
        resource: &str,
        n: usize,
        timeout: Duration,
    ) -> Result<Registered, String> {
        self.wait_for(&format!("registration #{n} of {resource}"), timeout, |k| {
            k.registrations()
                .into_iter()
                .filter(|r| r.request.resource_name == resource)
                .nth(n - 1)
        })
        .await
    }

    /// Wait until the latest device list of `resource` satisfies `pred`, and return it.
    pub async fn wait_for_devices(
        &self,
        resource: &str,
        mut pred: impl FnMut(&[Device]) -> bool,
        timeout: Duration,
    ) -> Result<Vec<Device>, String> {
        self.wait_for(&format!("devices of {resource}"), timeout, |k| {
            k.resource(resource)
                .and_then(|r| r.devices)
                .filter(|d| pred(d))
        })
        .await
    }

    fn client(&self, resource: &str) -> Result<DevicePluginClient<Channel>, Status> {
        self.shared
            .clients
            .lock()
            .unwrap()
            .get(resource)
            .cloned()
            .ok_or_else(|| Status::unavailable(format!("no plugin registered for {resource}")))
    }

    /// Allocate `ids` for one container.
    pub async fn allocate(
        &self,
        resource: &str,
        ids: &[&str],
    ) -> Result<ContainerAllocateResponse, Status> {
        let r = self
            .allocate_many(resource, &[ids.iter().map(|s| s.to_string()).collect()])
            .await?;
        r.container_responses
            .into_iter()
            .next()
            .ok_or_else(|| Status::internal("empty AllocateResponse"))
    }

    /// Allocate for several containers in one call.
    pub async fn allocate_many(
        &self,
        resource: &str,
        containers: &[Vec<String>],
    ) -> Result<AllocateResponse, Status> {
        let req = AllocateRequest {
            container_requests: containers
                .iter()
                .map(|ids| ContainerAllocateRequest {
                    devices_ids: ids.clone(),
                })
                .collect(),
        };
        Ok(self.client(resource)?.allocate(req).await?.into_inner())
    }

    /// GetPreferredAllocation for one container.
    pub async fn preferred(
        &self,
        resource: &str,
        available: &[&str],
        must_include: &[&str],
        size: i32,
    ) -> Result<Vec<String>, Status> {
        let req = PreferredAllocationRequest {
            container_requests: vec![ContainerPreferredAllocationRequest {
                available_device_i_ds: available.iter().map(|s| s.to_string()).collect(),
                must_include_device_i_ds: must_include.iter().map(|s| s.to_string()).collect(),
                allocation_size: size,
            }],
        };
        let r = self
            .client(resource)?
            .get_preferred_allocation(req)
            .await?
            .into_inner();
        Ok(r.container_responses
            .into_iter()
            .next()
            .map(|c| c.device_i_ds)
            .unwrap_or_default())
    }
}

impl Drop for TestKubelet {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The kubelet's plugin watcher, for watcher-mode registration.
pub struct WatcherClient {
    dir: PathBuf,
}

impl WatcherClient {
    pub fn new(dir: &Path) -> WatcherClient {
        WatcherClient {
            dir: dir.to_path_buf(),
        }
    }

    /// Sockets in the registry directory (names not starting with '.'), sorted.
    pub fn sockets(&self) -> Vec<PathBuf> {
        use std::os::unix::fs::FileTypeExt;
        let mut v: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map(|rd| {
                rd.flatten()
                    .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                    .filter(|e| e.file_type().map(|t| t.is_socket()).unwrap_or(false))
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Wait until a socket named `name` exists and answers; returns its path.
    pub async fn wait_for_socket(&self, name: &str, timeout: Duration) -> Result<PathBuf, String> {
        let path = self.dir.join(name);
        let deadline = Instant::now() + timeout;
        loop {
            if path.exists() && connect_uds(&path).await.is_ok() {
                return Ok(path);
            }
            if Instant::now() > deadline {
                return Err(format!("{}: no socket after {timeout:?}", path.display()));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub async fn get_info(&self, sock: &Path) -> Result<PluginInfo, Status> {
        let ch = connect_uds(sock)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(WatcherRegistrationClient::new(ch)
            .get_info(InfoRequest {})
            .await?
            .into_inner())
    }

    pub async fn notify(&self, sock: &Path, registered: bool, error: &str) -> Result<(), Status> {
        let ch = connect_uds(sock)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        WatcherRegistrationClient::new(ch)
            .notify_registration_status(RegistrationStatus {
                plugin_registered: registered,
                error: error.into(),
            })
            .await?;
        Ok(())
    }

    /// A DevicePlugin client on the same socket.
    pub async fn device_plugin(&self, sock: &Path) -> Result<DevicePluginClient<Channel>, Status> {
        let ch = connect_uds(sock)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(DevicePluginClient::new(ch))
    }
}

/// The first ListAndWatch message of a plugin.
pub async fn first_list(client: &mut DevicePluginClient<Channel>) -> Result<Vec<Device>, Status> {
    let mut s = client.list_and_watch(Empty {}).await?.into_inner();
    s.message()
        .await?
        .map(|m| m.devices)
        .ok_or_else(|| Status::aborted("ListAndWatch ended without a message"))
}
