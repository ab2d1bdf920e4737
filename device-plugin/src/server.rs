//! The `v1beta1.DevicePlugin` service of one pool.

use std::pin::Pin;
use std::sync::Arc;

use kubelet_proto::v1beta1::device_plugin_server::{DevicePlugin, DevicePluginServer};
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

use crate::allocate::{allocate_checked, validate_request, AllocateError};
use crate::cdi::Cdi;
use crate::context::HostPaths;
use crate::metrics::Metrics;
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
    /// Where allocations (and registrations) are counted.
    pub metrics: Arc<Metrics>,
}

/// The largest request message a pool accepts (tonic's default is 4 MiB): room for some 60,000
/// device IDs, far beyond any pool.
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;

/// The gRPC service of one pool, with the request size limit.
pub fn device_plugin_server(svc: PluginService) -> DevicePluginServer<PluginService> {
    DevicePluginServer::new(svc).max_decoding_message_size(MAX_REQUEST_BYTES)
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
        let req = req.into_inner();
        // The kubelet names each free device once and the must-include ones again, for one
        // container: more IDs than twice the pool's size, or more containers than devices, is
        // not a request it makes, and would cost time for nothing.
        let named: usize = req
            .container_requests
            .iter()
            .map(|c| c.available_device_i_ds.len() + c.must_include_device_i_ds.len())
            .sum();
        let containers = req.container_requests.len();
        if named > 2 * inv.len() || containers > inv.len().max(1) {
            let e = format!(
                "{pool}: {named} device IDs for {containers} containers in one GetPreferredAllocation; the pool has {} devices",
                inv.len()
            );
            tracing::warn!(pool = %pool, error = %e, "GetPreferredAllocation refused");
            return Err(Status::invalid_argument(e));
        }
        let mut container_responses = Vec::new();
        for c in req.container_requests {
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
        let resource = current.config.resource.to_string();
        let containers: Vec<Vec<String>> = req
            .into_inner()
            .container_requests
            .into_iter()
            .map(|c| c.devices_ids)
            .collect();
        // A refused Allocate counts as one refused container allocation; its IDs are not logged
        // (there may be thousands), the error names the one at fault.
        let refused = |e: AllocateError| {
            tracing::warn!(pool = %resource, containers = containers.len(), error = %e, "allocate refused");
            self.metrics.allocation(&resource, false);
            let msg = e.to_string();
            if e.is_invalid_argument() {
                Status::invalid_argument(msg)
            } else {
                Status::failed_precondition(msg)
            }
        };
        // Checked here (cheap, no I/O) so a bad request is refused before any thread is used.
        let checked = validate_request(&current, &containers).map_err(refused)?;
        // Sysfs reads and device-info writes: off the runtime, so the other pools, the
        // kubelet's other calls and /healthz go on meanwhile.
        let paths = self.paths.clone();
        let cdi = self.cdi.clone();
        let pool = current.clone();
        let out = tokio::task::spawn_blocking(move || {
            let mut responses = Vec::with_capacity(checked.len());
            for addrs in &checked {
                let mut r = allocate_checked(&pool, &paths, addrs)?;
                if let Some(cdi) = &cdi {
                    cdi.apply(&pool, &paths, addrs, &mut r);
                }
                responses.push(r);
            }
            Ok::<_, AllocateError>(responses)
        })
        .await
        .map_err(|e| {
            tracing::error!(pool = %resource, error = %e, "allocate task failed");
            Status::internal(format!("{resource}: allocate task failed"))
        })?;
        match out {
            Ok(container_responses) => {
                for (c, r) in containers.iter().zip(&container_responses) {
                    tracing::info!(pool = %resource, devices = ?c, cdi = !r.cdi_devices.is_empty(), "allocated");
                    self.metrics.allocation(&resource, true);
                }
                Ok(Response::new(AllocateResponse {
                    container_responses,
                }))
            }
            Err(e) => Err(refused(e)),
        }
    }

    async fn pre_start_container(
        &self,
        _: Request<PreStartContainerRequest>,
    ) -> Result<Response<PreStartContainerResponse>, Status> {
        Ok(Response::new(PreStartContainerResponse {}))
    }
}
