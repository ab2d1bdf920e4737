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

use sriov_host::PciAddress;

use crate::allocate::{allocate, HostPaths};
use crate::cdi::Cdi;
use crate::metrics;
use crate::pool::{DeviceStatus, PoolCell};
use crate::prefer::{preferred, Inventory};

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
    /// With `--cdi`: Allocate answers with CDI names.
    pub cdi: Option<Arc<Cdi>>,
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
        let current = self.pool.get();
        let inv = Inventory::of_pool(&current);
        let policy = current.config.allocation_policy;
        let pool = &current.config.resource;
        let mut container_responses = Vec::new();
        for c in req.into_inner().container_requests {
            let ids = preferred(
                &inv,
                policy,
                &c.available_device_i_ds,
                &c.must_include_device_i_ds,
                c.allocation_size,
            )
            .map_err(|e| {
                tracing::warn!(pool = %pool, error = %e, "GetPreferredAllocation refused");
                Status::invalid_argument(format!("{pool}: {e}"))
            })?;
            tracing::debug!(pool = %pool, policy = ?policy, devices = ?ids, "preferred allocation");
            container_responses.push(ContainerPreferredAllocationResponse { device_i_ds: ids });
        }
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
                Ok(mut r) => {
                    if let Some(cdi) = &self.cdi {
                        let ids: Vec<PciAddress> = c
                            .devices_ids
                            .iter()
                            .filter_map(|i| i.parse().ok())
                            .collect();
                        cdi.apply(&current, &self.paths, &ids, &mut r);
                    }
                    tracing::info!(pool = %pool, devices = ?c.devices_ids, "allocated");
                    metrics::allocation(&pool.to_string(), true);
                    container_responses.push(r);
                }
                Err(e) => {
                    tracing::warn!(pool = %pool, devices = ?c.devices_ids, error = %e, "allocate refused");
                    metrics::allocation(&pool.to_string(), false);
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
