//! The kubelet's DRA device-health stream (`v1.DRAResourceHealth`, beta and on by default
//! since Kubernetes 1.36 behind `ResourceHealthStatus`): every change of the node's VF list is
//! sent as a complete snapshot, so the kubelet can show a VF's health in the status of the pods
//! using it (`allocatedResourcesStatus`). This complements the slice taint, which only keeps the
//! scheduler from handing out an unhealthy VF.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use kubelet_proto::dra_health::dra_resource_health_server::DraResourceHealth;
use kubelet_proto::dra_health::{
    DeviceHealth, DeviceIdentifier, HealthStatus, NodeWatchResourcesRequest,
    NodeWatchResourcesResponse,
};
use tokio::sync::watch;
use tokio_stream::wrappers::WatchStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use crate::model::{DeviceName, VfDevice};

/// The health snapshot of `devices` in `pool`.
pub fn snapshot(pool: &str, devices: &[VfDevice]) -> NodeWatchResourcesResponse {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    NodeWatchResourcesResponse {
        devices: devices
            .iter()
            .map(|d| DeviceHealth {
                device: Some(DeviceIdentifier {
                    pool_name: pool.to_string(),
                    device_name: DeviceName::of(&d.pci).to_string(),
                }),
                health: if d.healthy {
                    HealthStatus::Healthy
                } else {
                    HealthStatus::Unhealthy
                } as i32,
                last_updated_time: now,
                health_check_timeout_seconds: 0,
                message: if d.healthy {
                    String::new()
                } else {
                    "PF link down, PCI device gone, or driver no longer matches its pool"
                        .to_string()
                },
            })
            .collect(),
    }
}

/// The `DRAResourceHealth` service: each stream starts with the current list and follows it.
pub struct HealthService {
    pool: String,
    devices: watch::Receiver<Arc<Vec<VfDevice>>>,
}

impl HealthService {
    /// The service for `pool` (the node name), following `devices`.
    pub fn new(pool: &str, devices: watch::Receiver<Arc<Vec<VfDevice>>>) -> HealthService {
        HealthService {
            pool: pool.to_string(),
            devices,
        }
    }
}

type HealthStream = Pin<Box<dyn Stream<Item = Result<NodeWatchResourcesResponse, Status>> + Send>>;

#[tonic::async_trait]
impl DraResourceHealth for HealthService {
    type NodeWatchResourcesStream = HealthStream;

    async fn node_watch_resources(
        &self,
        _: Request<NodeWatchResourcesRequest>,
    ) -> Result<Response<Self::NodeWatchResourcesStream>, Status> {
        let pool = self.pool.clone();
        let stream = WatchStream::new(self.devices.clone()).map(move |d| Ok(snapshot(&pool, &d)));
        Ok(Response::new(Box::pin(stream)))
    }
}
