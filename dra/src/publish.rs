//! Keeping a node's ResourceSlices current: one writer task owns every write, fed through a
//! `watch` channel. Callers hand it the whole device list whenever anything changes (health,
//! provisioning, config); changes that arrive while a write is in flight coalesce into the
//! newest list, which is always the next one written, so no update is lost and no stale one
//! is written after a newer one.
//!
//! Each sync reads the pool's slices afresh, leaves them alone when they already say what the
//! devices say, and otherwise writes every slice at the next pool generation (replacing with
//! the read `resourceVersion`). A conflict (409: someone else wrote in between) or an
//! "already exists" on create starts the sync over from a fresh read; other errors are retried
//! with a back-off (doubling from 500 ms to 30 s) or until newer devices arrive. On shutdown
//! the pool's slices are deleted.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::resource::v1::{Device, ResourceSlice};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::model::VfDevice;
use crate::slice::{build_slices, SliceTarget};

/// How often one sync starts over after conflicts before it counts as failed (and backs off).
const CONFLICT_RETRIES: u32 = 5;
const BACKOFF_START: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// A failed sync or cleanup.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("resource slices of node {node}: {source}; check the API server and the RBAC rules for resourceslices (deploy/dra/rbac.yaml)")]
    Api {
        node: String,
        #[source]
        source: kube::Error,
    },
    #[error("resource slices of node {node}: still conflicting after {CONFLICT_RETRIES} fresh reads; is another writer publishing this node's pool?")]
    Conflicts { node: String },
}

/// The handle of the writer task.
pub struct Publisher {
    devices: watch::Sender<Option<Arc<Vec<VfDevice>>>>,
    published: watch::Receiver<Option<i64>>,
    failed: Arc<AtomicU64>,
    cancel: CancellationToken,
    task: JoinHandle<()>,
    api: Api<ResourceSlice>,
    target: SliceTarget,
}

impl Publisher {
    /// Start the writer for `target`'s slices. Nothing is written before the first
    /// [`Publisher::update`].
    pub fn spawn(api: Api<ResourceSlice>, target: SliceTarget) -> Publisher {
        let (devices, rx) = watch::channel(None);
        let (published_tx, published) = watch::channel(None);
        let cancel = CancellationToken::new();
        let failed = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(run(
            api.clone(),
            target.clone(),
            rx,
            published_tx,
            failed.clone(),
            cancel.clone(),
        ));
        Publisher {
            devices,
            published,
            failed,
            cancel,
            task,
            api,
            target,
        }
    }

    /// Publish `devices` (the node's complete list): replaces whatever was handed over before
    /// and not yet written.
    pub fn update(&self, devices: Vec<VfDevice>) {
        self.devices.send_replace(Some(Arc::new(devices)));
    }

    /// Sync again with the devices last handed over, even if unchanged: after the kubelet
    /// wiped the node's slices (it does at its start, and 30 s after our plugin went away),
    /// the next sync finds them missing and recreates them.
    pub fn resync(&self) {
        self.devices.send_modify(|_| {});
    }

    /// The pool generation of the last successful sync (`None` before the first).
    pub fn published(&self) -> watch::Receiver<Option<i64>> {
        self.published.clone()
    }

    /// How many syncs failed (and were retried after a back-off) so far.
    pub fn failed_syncs(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// Stop the writer (a write in flight is abandoned) and delete the pool's slices.
    pub async fn shutdown(self) -> Result<(), PublishError> {
        self.cancel.cancel();
        let _ = self.task.await;
        delete_all(&self.api, &self.target).await
    }
}

async fn run(
    api: Api<ResourceSlice>,
    target: SliceTarget,
    mut rx: watch::Receiver<Option<Arc<Vec<VfDevice>>>>,
    published: watch::Sender<Option<i64>>,
    failed: Arc<AtomicU64>,
    cancel: CancellationToken,
) {
    let mut backoff = BACKOFF_START;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            changed = rx.changed() => if changed.is_err() { return },
        }
        loop {
            let Some(devices) = rx.borrow_and_update().clone() else {
                break;
            };
            let outcome = tokio::select! {
                _ = cancel.cancelled() => return,
                r = sync(&api, &target, &devices) => r,
            };
            match outcome {
                Ok(generation) => {
                    tracing::info!(
                        node = target.node(),
                        generation,
                        devices = devices.len(),
                        "resource slices published"
                    );
                    published.send_replace(Some(generation));
                    backoff = BACKOFF_START;
                    break;
                }
                Err(e) => {
                    failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, retry_in = ?backoff, "publishing resource slices failed");
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                        changed = rx.changed() => if changed.is_err() { return },
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }
}

/// Make the pool say `devices`; the generation it is at afterwards.
async fn sync(
    api: &Api<ResourceSlice>,
    target: &SliceTarget,
    devices: &[VfDevice],
) -> Result<i64, PublishError> {
    let err = |source| PublishError::Api {
        node: target.node().to_string(),
        source,
    };
    for _ in 0..CONFLICT_RETRIES {
        let lp = ListParams::default().fields(&target.field_selector());
        let existing: BTreeMap<String, ResourceSlice> = api
            .list(&lp)
            .await
            .map_err(err)?
            .items
            .into_iter()
            .filter_map(|s| Some((s.metadata.name.clone()?, s)))
            .collect();
        let current = existing.values().map(|s| s.spec.pool.generation).max();
        if let Some(g) = current {
            if same_content(&existing, &build_slices(target, devices, g)) {
                return Ok(g);
            }
        }
        let generation = current.map_or(1, |g| g + 1);
        match write(api, &existing, build_slices(target, devices, generation)).await {
            Ok(()) => return Ok(generation),
            Err(kube::Error::Api(s)) if s.is_conflict() || s.is_already_exists() => {
                tracing::debug!(node = target.node(), reason = %s.message, "resource slice changed under us; reading again");
            }
            Err(e) => return Err(err(e)),
        }
    }
    Err(PublishError::Conflicts {
        node: target.node().to_string(),
    })
}

/// Whether the slices in the API already are `desired` (same names, pool, devices; a taint's
/// server-set time ignored).
fn same_content(existing: &BTreeMap<String, ResourceSlice>, desired: &[ResourceSlice]) -> bool {
    existing.len() == desired.len()
        && desired.iter().all(|d| {
            let Some(e) = d.metadata.name.as_ref().and_then(|n| existing.get(n)) else {
                return false;
            };
            e.spec.pool == d.spec.pool
                && e.spec.driver == d.spec.driver
                && e.spec.node_name == d.spec.node_name
                && normalized(e.spec.devices.as_deref()) == normalized(d.spec.devices.as_deref())
        })
}

fn normalized(devices: Option<&[Device]>) -> Vec<Device> {
    let mut out = devices.unwrap_or_default().to_vec();
    for d in &mut out {
        for t in d.taints.iter_mut().flatten() {
            t.time_added = None;
        }
        if d.taints.as_ref().is_some_and(Vec::is_empty) {
            d.taints = None;
        }
    }
    out
}

/// Write `desired` over `existing`: replace what exists (keeping a taint's time), create what
/// does not, then delete slices no longer wanted.
async fn write(
    api: &Api<ResourceSlice>,
    existing: &BTreeMap<String, ResourceSlice>,
    desired: Vec<ResourceSlice>,
) -> Result<(), kube::Error> {
    let pp = PostParams::default();
    let mut wanted = Vec::new();
    for mut slice in desired {
        let name = slice.metadata.name.clone().unwrap_or_default();
        match existing.get(&name) {
            Some(old) => {
                slice.metadata.resource_version = old.metadata.resource_version.clone();
                keep_taint_times(&mut slice, old);
                api.replace(&name, &pp, &slice).await?;
            }
            None => {
                api.create(&pp, &slice).await?;
            }
        }
        wanted.push(name);
    }
    for (name, old) in existing {
        if !wanted.contains(name) {
            let dp = DeleteParams {
                preconditions: old.metadata.resource_version.clone().map(|rv| {
                    kube::api::Preconditions {
                        resource_version: Some(rv),
                        uid: None,
                    }
                }),
                ..DeleteParams::default()
            };
            match api.delete(name, &dp).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// A device tainted before and still tainted keeps the time the server gave the taint.
fn keep_taint_times(slice: &mut ResourceSlice, old: &ResourceSlice) {
    let old_taints: BTreeMap<&str, _> = old
        .spec
        .devices
        .iter()
        .flatten()
        .filter_map(|d| Some((d.name.as_str(), d.taints.as_ref()?)))
        .collect();
    for d in slice.spec.devices.iter_mut().flatten() {
        let Some(before) = old_taints.get(d.name.as_str()) else {
            continue;
        };
        for t in d.taints.iter_mut().flatten() {
            if let Some(b) = before
                .iter()
                .find(|b| b.key == t.key && b.effect == t.effect)
            {
                t.time_added = b.time_added.clone();
            }
        }
    }
}

/// Delete every slice of `target` (a slice already gone is fine).
async fn delete_all(api: &Api<ResourceSlice>, target: &SliceTarget) -> Result<(), PublishError> {
    let err = |source| PublishError::Api {
        node: target.node().to_string(),
        source,
    };
    let lp = ListParams::default().fields(&target.field_selector());
    for s in api.list(&lp).await.map_err(err)?.items {
        let Some(name) = s.metadata.name else {
            continue;
        };
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => tracing::info!(slice = name, "resource slice deleted"),
            Err(kube::Error::Api(s)) if s.is_not_found() => {}
            Err(e) => return Err(err(e)),
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "publish_tests.rs"]
mod tests;
