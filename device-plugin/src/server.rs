//! The `v1beta1.DevicePlugin` service of one pool.

use std::pin::Pin;
use std::sync::Arc;

use kubelet_proto::v1beta1::device_plugin_server::DevicePlugin;
use kubelet_proto::v1beta1::{
    AllocateRequest, AllocateResponse, ContainerPreferredAllocationResponse, Device,
    DevicePluginOptions, Empty, ListAndWatchResponse, NumaNode, PreStartContainerRequest,
    PreStartContainerResponse, PreferredAllocationRequest, PreferredAllocationResponse,
    TopologyInfo,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::allocate::{allocate, HostPaths};
use crate::pool::{DeviceStatus, PoolCell};
use crate::prefer::preferred;

/// The options every pool advertises.
pub fn options() -> DevicePluginOptions {
    DevicePluginOptions {
        pre_start_required: false,
        get_preferred_allocation_available: true,
    }
}

/// One pool's DevicePlugin service. `stop` ends every ListAndWatch stream (so a graceful server
/// shutdown does not wait for the kubelet to hang up).
#[derive(Clone)]
pub struct PluginService {
    /// The pool's current snapshot (swapped on reload and device changes).
    pub pool: Arc<PoolCell>,
    pub paths: Arc<HostPaths>,
    pub stop: CancellationToken,
}

/// A device list as the kubelet wants it.
pub fn to_response(list: &[DeviceStatus]) -> ListAndWatchResponse {
    ListAndWatchResponse {
        devices: list
            .iter()
            .map(|s| Device {
                id: s.id.to_string(),
                health: s.health.as_str().to_string(),
                topology: s.numa.map(|n| TopologyInfo {
                    nodes: vec![NumaNode { id: i64::from(n) }],
                }),
            })
            .collect(),
    }
}

type ListStream = Pin<Box<dyn Stream<Item = Result<ListAndWatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl DevicePlugin for PluginService {
    async fn get_device_plugin_options(
        &self,
        _: Request<Empty>,
    ) -> Result<Response<DevicePluginOptions>, Status> {
        Ok(Response::new(options()))
    }

    type ListAndWatchStream = ListStream;

    async fn list_and_watch(
        &self,
        _: Request<Empty>,
    ) -> Result<Response<Self::ListAndWatchStream>, Status> {
        let current = self.pool.get();
        let pool = current.config.resource.to_string();
        tracing::info!(pool = %pool, devices = current.devices.len(), "ListAndWatch opened");
        let mut rx = current.subscribe();
        let stop = self.stop.clone();
        let (tx, out) = mpsc::channel(4);
        // Every message is the complete list: send the current one, then one per change, until
        // the kubelet hangs up or the server stops.
        tokio::spawn(async move {
            loop {
                let list = rx.borrow_and_update().clone();
                if tx.send(Ok(to_response(&list))).await.is_err() {
                    break;
                }
                tokio::select! {
                    r = rx.changed() => if r.is_err() { break },
                    _ = stop.cancelled() => break,
                    _ = tx.closed() => break,
                }
            }
            tracing::debug!(pool = %pool, "ListAndWatch closed");
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(out))))
    }

    async fn get_preferred_allocation(
        &self,
        req: Request<PreferredAllocationRequest>,
    ) -> Result<Response<PreferredAllocationResponse>, Status> {
        let pool = self.pool.get();
        let container_responses = req
            .into_inner()
            .container_requests
            .iter()
            .map(|c| {
                let size = usize::try_from(c.allocation_size).unwrap_or(0);
                ContainerPreferredAllocationResponse {
                    device_i_ds: preferred(
                        &pool,
                        &c.available_device_i_ds,
                        &c.must_include_device_i_ds,
                        size,
                    ),
                }
            })
            .collect();
        Ok(Response::new(PreferredAllocationResponse {
            container_responses,
        }))
    }

    async fn allocate(
        &self,
        req: Request<AllocateRequest>,
    ) -> Result<Response<AllocateResponse>, Status> {
        let current = self.pool.get();
        let pool = &current.config.resource;
        let mut container_responses = Vec::new();
        for c in req.into_inner().container_requests {
            match allocate(&current, &self.paths, &c.devices_ids) {
                Ok(r) => {
                    tracing::info!(pool = %pool, devices = ?c.devices_ids, "allocated");
                    container_responses.push(r);
                }
                Err(e) => {
                    tracing::warn!(pool = %pool, devices = ?c.devices_ids, error = %e, "allocate refused");
                    let msg = e.to_string();
                    return Err(if e.is_invalid_argument() {
                        Status::invalid_argument(msg)
                    } else {
                        Status::failed_precondition(msg)
                    });
                }
            }
        }
        Ok(Response::new(AllocateResponse {
            container_responses,
        }))
    }

    async fn pre_start_container(
        &self,
        _: Request<PreStartContainerRequest>,
    ) -> Result<Response<PreStartContainerResponse>, Status> {
        Ok(Response::new(PreStartContainerResponse {}))
    }
}
