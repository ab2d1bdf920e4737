//! Plugin-watcher registration of a DRA driver: the `pluginregistration.Registration` service
//! the kubelet's plugin watcher calls on our socket in its registry directory.
//!
//! What the kubelet (1.37) expects, from its DRA plugin manager: `PluginInfo.type` is
//! `"DRAPlugin"`, `name` the driver name, `endpoint` the absolute path of the socket serving
//! the DRA services, and `supported_versions` the gRPC services offered there (not versions):
//! `"v1.DRAPlugin"` (required; the kubelet picks the first it knows of `v1.DRAPlugin`,
//! `v1beta1.DRAPlugin`) and, optionally, `"v1.DRAResourceHealth"` for the device-health stream.

use std::path::{Path, PathBuf};

use kubelet_proto::pluginregistration::registration_server::Registration;
use kubelet_proto::pluginregistration::{
    InfoRequest, PluginInfo, RegistrationStatus, RegistrationStatusResponse,
};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

/// `PluginInfo.type` of a DRA driver.
pub const PLUGIN_TYPE: &str = "DRAPlugin";

/// The kubelet's plugin-watcher directory.
pub const DEFAULT_REGISTRY_DIR: &str = "/var/lib/kubelet/plugins_registry";

/// The parent of a DRA driver's data directory (`<dir>/<driver>/`, which holds `dra.sock`).
pub const DEFAULT_PLUGINS_DIR: &str = "/var/lib/kubelet/plugins";

/// The registration socket of `driver` in the registry directory: `<driver>-reg.sock`.
pub fn registration_socket(registry_dir: &Path, driver: &str) -> PathBuf {
    registry_dir.join(format!("{driver}-reg.sock"))
}

/// The socket serving `DRAPlugin` (and `DRAResourceHealth`): `<plugins-dir>/<driver>/dra.sock`.
pub fn service_socket(plugins_dir: &Path, driver: &str) -> PathBuf {
    plugins_dir.join(driver).join("dra.sock")
}

/// What we tell the plugin watcher about `driver` serving on `endpoint` (absolute).
pub fn plugin_info(driver: &str, endpoint: &Path, health: bool) -> PluginInfo {
    let mut versions = vec![kubelet_proto::dra::SERVICE.to_string()];
    if health {
        versions.push(kubelet_proto::dra_health::SERVICE.to_string());
    }
    PluginInfo {
        r#type: PLUGIN_TYPE.to_string(),
        name: driver.to_string(),
        endpoint: endpoint.display().to_string(),
        supported_versions: versions,
    }
}

/// The `Registration` service; the kubelet's verdicts arrive on the channel returned by
/// [`DraRegistration::new`] (a failed registration is for the caller to act on, by re-creating
/// the socket after a back-off as the classic watcher mode does).
pub struct DraRegistration {
    info: PluginInfo,
    status: mpsc::Sender<RegistrationStatus>,
}

impl DraRegistration {
    /// The service answering `info`, and the receiver of the kubelet's registration status.
    pub fn new(info: PluginInfo) -> (DraRegistration, mpsc::Receiver<RegistrationStatus>) {
        let (status, rx) = mpsc::channel(1);
        (DraRegistration { info, status }, rx)
    }
}

#[tonic::async_trait]
impl Registration for DraRegistration {
    async fn get_info(&self, _: Request<InfoRequest>) -> Result<Response<PluginInfo>, Status> {
        Ok(Response::new(self.info.clone()))
    }

    async fn notify_registration_status(
        &self,
        req: Request<RegistrationStatus>,
    ) -> Result<Response<RegistrationStatusResponse>, Status> {
        let st = req.into_inner();
        if st.plugin_registered {
            tracing::info!(
                driver = self.info.name,
                "registered with the kubelet as a DRA driver"
            );
        } else {
            tracing::error!(
                driver = self.info.name,
                error = st.error,
                "kubelet refused the DRA driver registration"
            );
        }
        // A full channel means a reaction is already pending.
        let _ = self.status.try_send(st);
        Ok(Response::new(RegistrationStatusResponse {}))
    }
}
