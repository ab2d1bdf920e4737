//! The DRA services over a real unix socket and real gRPC, as the kubelet calls them: the
//! service names the kubelet dials, registration info, prepare/unprepare keyed by claim UID,
//! and the health stream following the device list.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::resource::v1::{
    AllocationResult, DeviceAllocationResult, DeviceRequestAllocationResult, ResourceClaim,
    ResourceClaimStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kubelet_proto::dra::dra_plugin_client::DraPluginClient;
use kubelet_proto::dra::dra_plugin_server::DraPluginServer;
use kubelet_proto::dra::{Claim, NodePrepareResourcesRequest, NodeUnprepareResourcesRequest};
use kubelet_proto::dra_health::dra_resource_health_client::DraResourceHealthClient;
use kubelet_proto::dra_health::dra_resource_health_server::DraResourceHealthServer;
use kubelet_proto::dra_health::{HealthStatus, NodeWatchResourcesRequest};
use kubelet_proto::pluginregistration::registration_client::RegistrationClient;
use kubelet_proto::pluginregistration::registration_server::RegistrationServer;
use kubelet_proto::pluginregistration::{InfoRequest, RegistrationStatus};
use sriov_dra::cdi::ContainerEdits;
use sriov_dra::checkpoint::CheckpointFile;
use sriov_dra::health::HealthService;
use sriov_dra::plugin::{ClaimRef, ClaimSource, DevicePreparer, DraService};
use sriov_dra::registration::{plugin_info, registration_socket, service_socket, DraRegistration};
use sriov_dra::{SliceTarget, VfDevice, DRIVER_NAME};
use sriov_host::PciAddress;
use tokio::net::UnixListener;
use tokio::sync::watch;
use tokio_stream::wrappers::UnixListenerStream;
use tokio_stream::StreamExt;
use tonic::server::NamedService;
use tonic::transport::Server;

struct OneClaim;

impl ClaimSource for OneClaim {
    async fn get(&self, namespace: &str, name: &str) -> Result<ResourceClaim, String> {
        Ok(ResourceClaim {
            metadata: ObjectMeta {
                namespace: Some(namespace.into()),
                name: Some(name.into()),
                uid: Some("uid-1".into()),
                ..Default::default()
            },
            status: Some(ResourceClaimStatus {
                allocation: Some(AllocationResult {
                    devices: Some(DeviceAllocationResult {
                        results: Some(vec![DeviceRequestAllocationResult {
                            request: "vf".into(),
                            driver: DRIVER_NAME.into(),
                            pool: "node-a".into(),
                            device: "0000-03-01-0".into(),
                            ..Default::default()
                        }]),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
    }
}

struct Cdi;

impl DevicePreparer for Cdi {
    fn prepare(&self, _: &ClaimRef, _: PciAddress) -> Result<ContainerEdits, String> {
        Ok(ContainerEdits::default())
    }
    fn unprepare(&self, _: &ClaimRef, _: PciAddress) -> Result<(), String> {
        Ok(())
    }
}

fn vf(healthy: bool) -> VfDevice {
    VfDevice {
        pci: "0000:03:01.0".parse().expect("pci"),
        pf_name: None,
        pf_pci: "0000:03:00.0".parse().expect("pci"),
        vendor: sriov_host::PciId(0x14e4),
        device: sriov_host::PciId(0x1806),
        driver: Some("vfio-pci".into()),
        numa_node: None,
        vf_index: 0,
        link_type: None,
        pool: "ps225_dpdk".into(),
        pcie_root: None,
        healthy,
    }
}

fn serve(listener: UnixListener, router: tonic::transport::server::Router) {
    tokio::spawn(router.serve_with_incoming(UnixListenerStream::new(listener)));
}

#[test]
fn service_names_are_the_ones_the_kubelet_dials() {
    // From the kubelet's generated clients (k8s.io/kubelet v0.37 api_grpc.pb.go).
    type Dra = DraPluginServer<DraService<OneClaim, Cdi>>;
    assert_eq!(
        <Dra as NamedService>::NAME,
        "k8s.io.kubelet.pkg.apis.dra.v1.DRAPlugin"
    );
    assert_eq!(
        <DraResourceHealthServer<HealthService> as NamedService>::NAME,
        "v1.DRAResourceHealth"
    );
    assert_eq!(kubelet_proto::dra::SERVICE, "v1.DRAPlugin");
    assert_eq!(kubelet_proto::dra_health::SERVICE, "v1.DRAResourceHealth");
}

#[tokio::test]
async fn registration_prepare_unprepare_and_health_over_unix_sockets() {
    let dir = tempfile::tempdir().expect("tmp");
    let reg_path = registration_socket(&dir.path().join("plugins_registry"), DRIVER_NAME);
    let dra_path = service_socket(&dir.path().join("plugins"), DRIVER_NAME);
    assert!(reg_path.ends_with("plugins_registry/sriov.arm.com-reg.sock"));
    assert!(dra_path.ends_with("plugins/sriov.arm.com/dra.sock"));
    for p in [&reg_path, &dra_path] {
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    }

    let (reg, mut status) = DraRegistration::new(plugin_info(DRIVER_NAME, &dra_path, true));
    serve(
        UnixListener::bind(&reg_path).expect("bind"),
        Server::builder().add_service(RegistrationServer::new(reg)),
    );
    let target = SliceTarget::new(DRIVER_NAME, "node-a").expect("target");
    let svc = DraService::new(
        target,
        OneClaim,
        Arc::new(Cdi),
        CheckpointFile::in_dir(dir.path()),
        dir.path().join("cdi"),
    )
    .expect("svc");
    let (devices, rx) = watch::channel(Arc::new(vec![vf(true)]));
    serve(
        UnixListener::bind(&dra_path).expect("bind"),
        Server::builder()
            .add_service(DraPluginServer::new(svc))
            .add_service(DraResourceHealthServer::new(HealthService::new(
                "node-a", rx,
            ))),
    );

    // The plugin watcher's side.
    let mut rc = RegistrationClient::new(
        kubelet_proto::connect_uds(&reg_path)
            .await
            .expect("connect"),
    );
    let info = rc
        .get_info(InfoRequest {})
        .await
        .expect("info")
        .into_inner();
    assert_eq!(info.r#type, "DRAPlugin");
    assert_eq!(info.name, "sriov.arm.com");
    assert_eq!(info.endpoint, dra_path.display().to_string());
    assert_eq!(
        info.supported_versions,
        ["v1.DRAPlugin", "v1.DRAResourceHealth"]
    );
    rc.notify_registration_status(RegistrationStatus {
        plugin_registered: false,
        error: "no".into(),
    })
    .await
    .expect("notify");
    assert!(!status.recv().await.expect("status").plugin_registered);

    // The DRA manager's side.
    let ch = kubelet_proto::connect_uds(&dra_path)
        .await
        .expect("connect");
    let mut dra = DraPluginClient::new(ch.clone());
    let claim = Claim {
        namespace: "default".into(),
        uid: "uid-1".into(),
        name: "net1".into(),
    };
    let resp = dra
        .node_prepare_resources(NodePrepareResourcesRequest {
            claims: vec![claim.clone()],
        })
        .await
        .expect("prepare")
        .into_inner();
    let r = &resp.claims["uid-1"];
    assert_eq!(r.error, "");
    assert_eq!(
        r.devices[0].cdi_device_ids,
        ["sriov.arm.com/vf=0000:03:01.0"]
    );
    let resp = dra
        .node_unprepare_resources(NodeUnprepareResourcesRequest {
            claims: vec![claim],
        })
        .await
        .expect("unprepare")
        .into_inner();
    assert_eq!(resp.claims["uid-1"].error, "");

    let mut health = DraResourceHealthClient::new(ch)
        .node_watch_resources(NodeWatchResourcesRequest {})
        .await
        .expect("watch")
        .into_inner();
    let first = health.next().await.expect("snapshot").expect("ok");
    assert_eq!(first.devices[0].health, HealthStatus::Healthy as i32);
    let id = first.devices[0].device.clone().expect("id");
    assert_eq!(
        (id.pool_name.as_str(), id.device_name.as_str()),
        ("node-a", "0000-03-01-0")
    );
    devices.send_replace(Arc::new(vec![vf(false)]));
    let next = tokio::time::timeout(Duration::from_secs(5), health.next())
        .await
        .expect("in time");
    let next = next.expect("snapshot").expect("ok");
    assert_eq!(next.devices[0].health, HealthStatus::Unhealthy as i32);
    assert!(!next.devices[0].message.is_empty());
}
