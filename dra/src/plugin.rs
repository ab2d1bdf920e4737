//! The kubelet's DRA plugin service (`v1.DRAPlugin`): NodePrepareResources and
//! NodeUnprepareResources over two seams, [`ClaimSource`] (reads a ResourceClaim's allocation
//! from the API server) and [`DevicePreparer`] (the per-VF work the classic mode does at
//! Allocate: device-info file, CDI spec, vfio nodes), with every step recorded in the
//! [`checkpoint`](crate::checkpoint) so both calls are idempotent across restarts.
//!
//! Prepare of one claim: a claim already `prepared` answers from the record. Otherwise the
//! claim is read and its UID checked against the kubelet's (identity, not names), the devices
//! allocated by this driver from this node's pool are taken from its allocation, devices a
//! half-prepared record of the claim holds but the allocation no longer names are undone, a VF
//! already held by another recorded claim is refused, the claim is recorded `preparing`, each device is
//! prepared (a failure undoes this call's devices and drops the record), and the record becomes
//! `prepared`. Unprepare of one claim undoes every recorded device (errors reported, record
//! kept for the kubelet's retry) and drops the record; an unknown claim is already undone.
//! Calls are serialized: the checkpoint has one writer.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use k8s_openapi::api::resource::v1::ResourceClaim;
use kubelet_proto::dra::dra_plugin_server::DraPlugin;
use kubelet_proto::dra::{
    Claim, Device, NodePrepareResourceResponse, NodePrepareResourcesRequest,
    NodePrepareResourcesResponse, NodeUnprepareResourceResponse, NodeUnprepareResourcesRequest,
    NodeUnprepareResourcesResponse,
};
use sriov_host::PciAddress;
use tokio::sync::Mutex;
use tonic::{Request, Response, Status};

use crate::cdi::{check_uid, remove_claim_spec, write_claim_spec, ContainerEdits};
use crate::checkpoint::{Checkpoint, CheckpointFile, ClaimRecord, ClaimState, PreparedDevice};
use crate::model::DeviceName;
use crate::slice::SliceTarget;

/// The CDI class of our devices: CDI IDs are `<driver>/vf=<PCI address>`, so Multus, which
/// takes the part after `=` as the CNI's `deviceID`, hands the CNI the VF's PCI address.
pub const CDI_CLASS: &str = "vf";

/// The fully-qualified CDI device ID of the VF at `pci`: `sriov.arm.com/vf=0000:03:10.6`.
pub fn cdi_device_id(driver: &str, pci: &PciAddress) -> String {
    format!("{driver}/{CDI_CLASS}={pci}")
}

/// The claim being worked on, as the kubelet names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRef {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

/// Reads ResourceClaims (the API server in production).
pub trait ClaimSource: Send + Sync + 'static {
    /// The claim `namespace/name`; an error message for the kubelet otherwise.
    fn get(
        &self,
        namespace: &str,
        name: &str,
    ) -> impl Future<Output = Result<ResourceClaim, String>> + Send;
}

/// [`ClaimSource`] through a kube client (in-cluster credentials in production).
#[derive(Clone)]
pub struct KubeClaims(pub kube::Client);

impl ClaimSource for KubeClaims {
    async fn get(&self, namespace: &str, name: &str) -> Result<ResourceClaim, String> {
        kube::Api::<ResourceClaim>::namespaced(self.0.clone(), namespace)
            .get(name)
            .await
            .map_err(|e| format!("reading ResourceClaim {namespace}/{name}: {e}"))
    }
}

/// The per-VF work of preparing a device for a claim and undoing it. Both must be idempotent:
/// they are repeated after a crash or a kubelet retry.
pub trait DevicePreparer: Send + Sync + 'static {
    /// Make the VF at `pci` ready for `claim` (device-info file, driver check) and say what a
    /// container needs for it (its vfio nodes); the claim's CDI spec is written from that.
    fn prepare(&self, claim: &ClaimRef, pci: PciAddress) -> Result<ContainerEdits, String>;
    /// Undo [`DevicePreparer::prepare`]; a VF never prepared is fine.
    fn unprepare(&self, claim: &ClaimRef, pci: PciAddress) -> Result<(), String>;
}

/// The `DRAPlugin` gRPC service.
pub struct DraService<C, P> {
    target: SliceTarget,
    claims: C,
    preparer: Arc<P>,
    checkpoint: CheckpointFile,
    cdi_dir: PathBuf,
    state: Mutex<Checkpoint>,
}

impl<C: ClaimSource, P: DevicePreparer> DraService<C, P> {
    /// The service for `target`'s pool, with the checkpoint read from `checkpoint` and the
    /// claims' CDI specs written into `cdi_dir`.
    pub fn new(
        target: SliceTarget,
        claims: C,
        preparer: Arc<P>,
        checkpoint: CheckpointFile,
        cdi_dir: PathBuf,
    ) -> Result<Self, crate::checkpoint::CheckpointError> {
        let state = Mutex::new(checkpoint.load()?);
        Ok(DraService {
            target,
            claims,
            preparer,
            checkpoint,
            cdi_dir,
            state,
        })
    }

    /// Prepare one claim; its devices for the kubelet, or why not.
    pub async fn prepare_claim(&self, claim: &Claim) -> Result<Vec<Device>, String> {
        check_uid(&claim.uid).map_err(|e| e.to_string())?;
        let cref = ClaimRef {
            namespace: claim.namespace.clone(),
            name: claim.name.clone(),
            uid: claim.uid.clone(),
        };
        let mut state = self.state.lock().await;
        if let Some(rec) = state.claims.get(&claim.uid) {
            if rec.state == ClaimState::Prepared {
                tracing::debug!(claim = %claim.uid, "claim already prepared");
                return Ok(answer(rec));
            }
        }
        let devices = self.allocated(&cref).await?;
        // A half-prepared record of this claim from before a crash, whose allocation has since
        // changed (deallocated and allocated again): undo the devices it no longer has.
        if let Some(stale) = state.claims.get(&claim.uid) {
            for old in &stale.devices {
                if devices.iter().any(|d| d.device == old.device) {
                    continue;
                }
                let pci = old
                    .device
                    .parse::<DeviceName>()
                    .map_err(|e| e.to_string())?
                    .pci();
                self.preparer.unprepare(&cref, pci).map_err(|e| {
                    format!(
                        "undoing {pci}, no longer allocated to claim {}/{}: {e}",
                        cref.namespace, cref.name
                    )
                })?;
            }
        }
        for d in &devices {
            let holder = state.claims.iter().find(|(uid, r)| {
                **uid != claim.uid && r.devices.iter().any(|o| o.device == d.device)
            });
            if let Some((uid, r)) = holder {
                return Err(format!(
                    "device {} is still prepared for claim {}/{} (uid {uid}); it must be unprepared first",
                    d.device, r.namespace, r.name
                ));
            }
        }
        let mut record = ClaimRecord {
            namespace: cref.namespace.clone(),
            name: cref.name.clone(),
            state: ClaimState::Preparing,
            devices,
        };
        state.claims.insert(cref.uid.clone(), record.clone());
        self.store(&state)?;
        let mut done: Vec<(PciAddress, ContainerEdits)> = Vec::new();
        for d in &record.devices {
            let pci = d
                .device
                .parse::<DeviceName>()
                .map_err(|e| e.to_string())?
                .pci();
            match self.preparer.prepare(&cref, pci) {
                Ok(edits) => done.push((pci, edits)),
                Err(e) => {
                    self.undo(&cref, &done);
                    state.claims.remove(&cref.uid);
                    self.store(&state)?;
                    return Err(format!(
                        "preparing {pci} for claim {}/{}: {e}",
                        cref.namespace, cref.name
                    ));
                }
            }
        }
        match write_claim_spec(&self.cdi_dir, self.target.driver(), &cref.uid, &done) {
            Ok(ids) => {
                for (d, id) in record.devices.iter_mut().zip(ids) {
                    d.cdi_ids = vec![id];
                }
            }
            Err(e) => {
                self.undo(&cref, &done);
                state.claims.remove(&cref.uid);
                self.store(&state)?;
                return Err(e);
            }
        }
        record.state = ClaimState::Prepared;
        let out = answer(&record);
        state.claims.insert(cref.uid.clone(), record);
        self.store(&state)?;
        tracing::info!(claim = %cref.uid, namespace = cref.namespace, name = cref.name, devices = out.len(), "claim prepared");
        Ok(out)
    }

    /// Undo one claim.
    pub async fn unprepare_claim(&self, claim: &Claim) -> Result<(), String> {
        check_uid(&claim.uid).map_err(|e| e.to_string())?;
        let mut state = self.state.lock().await;
        let Some(record) = state.claims.get(&claim.uid).cloned() else {
            tracing::debug!(claim = %claim.uid, "claim not prepared here; nothing to undo");
            return Ok(());
        };
        let cref = ClaimRef {
            namespace: record.namespace.clone(),
            name: record.name.clone(),
            uid: claim.uid.clone(),
        };
        let mut errors = Vec::new();
        for d in &record.devices {
            let outcome = d
                .device
                .parse::<DeviceName>()
                .map_err(|e| e.to_string())
                .and_then(|n| self.preparer.unprepare(&cref, n.pci()));
            if let Err(e) = outcome {
                errors.push(format!("{}: {e}", d.device));
            }
        }
        if let Err(e) = remove_claim_spec(&self.cdi_dir, &claim.uid) {
            errors.push(e);
        }
        if !errors.is_empty() {
            return Err(format!(
                "unpreparing claim {}/{}: {}",
                cref.namespace,
                cref.name,
                errors.join("; ")
            ));
        }
        state.claims.remove(&claim.uid);
        self.store(&state)?;
        tracing::info!(claim = %cref.uid, namespace = cref.namespace, name = cref.name, "claim unprepared");
        Ok(())
    }

    /// The devices of `claim` allocated by this driver from this node's pool.
    async fn allocated(&self, claim: &ClaimRef) -> Result<Vec<PreparedDevice>, String> {
        let rc = self.claims.get(&claim.namespace, &claim.name).await?;
        let uid = rc.metadata.uid.as_deref().unwrap_or("");
        if uid != claim.uid {
            return Err(format!(
                "ResourceClaim {}/{} has uid {uid:?}, not {:?}: it was replaced; the kubelet will retry with the new one",
                claim.namespace, claim.name, claim.uid
            ));
        }
        let results = rc
            .status
            .and_then(|s| s.allocation)
            .and_then(|a| a.devices)
            .and_then(|d| d.results)
            .ok_or_else(|| {
                format!(
                    "ResourceClaim {}/{} is not allocated",
                    claim.namespace, claim.name
                )
            })?;
        let mut out: Vec<PreparedDevice> = Vec::new();
        for r in results {
            if r.driver != self.target.driver() || r.pool != self.target.node() {
                continue;
            }
            r.device.parse::<DeviceName>().map_err(|e| e.to_string())?;
            match out.iter_mut().find(|d| d.device == r.device) {
                Some(d) => d.requests.push(r.request),
                None => out.push(PreparedDevice {
                    requests: vec![r.request],
                    pool: r.pool,
                    device: r.device,
                    cdi_ids: Vec::new(),
                }),
            }
        }
        if out.is_empty() {
            return Err(format!(
                "ResourceClaim {}/{} has no device of driver {} in pool {}",
                claim.namespace,
                claim.name,
                self.target.driver(),
                self.target.node()
            ));
        }
        Ok(out)
    }

    /// Best-effort undo of the devices prepared so far, newest first.
    fn undo(&self, claim: &ClaimRef, done: &[(PciAddress, ContainerEdits)]) {
        for (p, _) in done.iter().rev() {
            if let Err(u) = self.preparer.unprepare(claim, *p) {
                tracing::warn!(claim = %claim.uid, pci = %p, error = u, "undoing a prepared device failed");
            }
        }
    }

    fn store(&self, state: &Checkpoint) -> Result<(), String> {
        self.checkpoint.store(state).map_err(|e| e.to_string())
    }
}

fn answer(rec: &ClaimRecord) -> Vec<Device> {
    rec.devices
        .iter()
        .map(|d| Device {
            request_names: d.requests.clone(),
            pool_name: d.pool.clone(),
            device_name: d.device.clone(),
            cdi_device_ids: d.cdi_ids.clone(),
            share_id: None,
        })
        .collect()
}

#[tonic::async_trait]
impl<C: ClaimSource, P: DevicePreparer> DraPlugin for DraService<C, P> {
    async fn node_prepare_resources(
        &self,
        req: Request<NodePrepareResourcesRequest>,
    ) -> Result<Response<NodePrepareResourcesResponse>, Status> {
        let mut out = NodePrepareResourcesResponse::default();
        for claim in req.into_inner().claims {
            let r = match self.prepare_claim(&claim).await {
                Ok(devices) => NodePrepareResourceResponse {
                    devices,
                    error: String::new(),
                },
                Err(error) => {
                    tracing::warn!(claim = %claim.uid, namespace = claim.namespace, name = claim.name, error, "preparing claim failed");
                    NodePrepareResourceResponse {
                        devices: Vec::new(),
                        error,
                    }
                }
            };
            out.claims.insert(claim.uid, r);
        }
        Ok(Response::new(out))
    }

    async fn node_unprepare_resources(
        &self,
        req: Request<NodeUnprepareResourcesRequest>,
    ) -> Result<Response<NodeUnprepareResourcesResponse>, Status> {
        let mut out = NodeUnprepareResourcesResponse::default();
        for claim in req.into_inner().claims {
            let error = self.unprepare_claim(&claim).await.err().unwrap_or_default();
            if !error.is_empty() {
                tracing::warn!(claim = %claim.uid, error, "unpreparing claim failed");
            }
            out.claims
                .insert(claim.uid, NodeUnprepareResourceResponse { error });
        }
        Ok(Response::new(out))
    }
}

#[cfg(test)]
#[path = "plugin_tests.rs"]
mod tests;
