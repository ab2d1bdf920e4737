//! Prometheus metrics and the `--metrics-addr` listener (`/metrics`, `/healthz`).
//!
//! The daemon builds one [`Metrics`] and hands it down in the node context
//! ([`crate::context::NodeContext`]); the pool servers count allocations and registrations on
//! it, the node counts reloads and provisioning runs. Nothing listens on TCP unless
//! `--metrics-addr` is given.
//!
//! | metric | type | labels | meaning |
//! |---|---|---|---|
//! | `sriov_dp_devices` | gauge | `resource`, `health` | devices of a pool by health (`Healthy`, `Unhealthy`) |
//! | `sriov_dp_allocations_total` | counter | `resource` | successful container allocations (one per container of an Allocate) |
//! | `sriov_dp_allocation_failures_total` | counter | `resource` | refused container allocations |
//! | `sriov_dp_pf_num_vfs` | gauge | `pf` | VFs a PF has now (`sriov_numvfs`) |
//! | `sriov_dp_pf_total_vfs` | gauge | `pf` | VFs a PF supports (`sriov_totalvfs`) |
//! | `sriov_dp_provision_runs_total` | counter | | provisioning runs |
//! | `sriov_dp_provision_failures_total` | counter | | provisioning runs that failed |
//! | `sriov_dp_config_reloads_total` | counter | | config reloads attempted |
//! | `sriov_dp_config_reload_failures_total` | counter | | reloads refused (invalid config; the old one keeps serving) |
//! | `sriov_dp_config_last_reload_successful` | gauge | | 1 when the last reload was applied (or none was tried yet), 0 when refused |
//! | `sriov_dp_kubelet_registrations_total` | counter | `resource`, `mode` | registrations with the kubelet (`mode`: `kubelet` or `watcher`) |

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use sriov_host::{PciDevice, Role};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::health::Health;
use crate::pool::Pool;

/// How long a client may take to send a request's headers (and an idle keep-alive connection
/// may wait for the next request).
pub const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The content type of the OpenMetrics text format `prometheus-client` writes.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResourceLabels {
    resource: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeviceLabels {
    resource: String,
    health: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PfLabels {
    pf: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RegistrationLabels {
    resource: String,
    mode: String,
}

/// Every metric of the daemon, and the registry that encodes them.
pub struct Metrics {
    registry: Registry,
    devices: Family<DeviceLabels, Gauge>,
    allocations: Family<ResourceLabels, Counter>,
    allocation_failures: Family<ResourceLabels, Counter>,
    pf_num_vfs: Family<PfLabels, Gauge>,
    pf_total_vfs: Family<PfLabels, Gauge>,
    provision_runs: Counter,
    provision_failures: Counter,
    config_reloads: Counter,
    config_reload_failures: Counter,
    config_last_ok: Gauge,
    registrations: Family<RegistrationLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let m = Metrics {
            devices: Family::default(),
            allocations: Family::default(),
            allocation_failures: Family::default(),
            pf_num_vfs: Family::default(),
            pf_total_vfs: Family::default(),
            provision_runs: Counter::default(),
            provision_failures: Counter::default(),
            config_reloads: Counter::default(),
            config_reload_failures: Counter::default(),
            config_last_ok: Gauge::default(),
            registrations: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "sriov_dp_devices",
            "Devices of a pool by health",
            m.devices.clone(),
        );
        registry.register(
            "sriov_dp_allocations",
            "Successful container allocations of a pool",
            m.allocations.clone(),
        );
        registry.register(
            "sriov_dp_allocation_failures",
            "Refused container allocations of a pool",
            m.allocation_failures.clone(),
        );
        registry.register(
            "sriov_dp_pf_num_vfs",
            "VFs a PF has now (sriov_numvfs)",
            m.pf_num_vfs.clone(),
        );
        registry.register(
            "sriov_dp_pf_total_vfs",
            "VFs a PF supports (sriov_totalvfs)",
            m.pf_total_vfs.clone(),
        );
        registry.register(
            "sriov_dp_provision_runs",
            "VF provisioning runs",
            m.provision_runs.clone(),
        );
        registry.register(
            "sriov_dp_provision_failures",
            "VF provisioning runs that failed",
            m.provision_failures.clone(),
        );
        registry.register(
            "sriov_dp_config_reloads",
            "Config reloads attempted",
            m.config_reloads.clone(),
        );
        registry.register(
            "sriov_dp_config_reload_failures",
            "Config reloads refused (the running config keeps serving)",
            m.config_reload_failures.clone(),
        );
        registry.register(
            "sriov_dp_config_last_reload_successful",
            "1 when the last config reload was applied, 0 when it was refused",
            m.config_last_ok.clone(),
        );
        registry.register(
            "sriov_dp_kubelet_registrations",
            "Registrations with the kubelet",
            m.registrations.clone(),
        );
        // The config the daemon started with was valid (else it would not run).
        m.config_last_ok.set(1);
        Metrics { registry, ..m }
    }

    /// The metrics in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }

    /// Set a pool's device counts by health.
    pub fn set_devices(&self, resource: &str, healthy: usize, unhealthy: usize) {
        for (h, n) in [(Health::Healthy, healthy), (Health::Unhealthy, unhealthy)] {
            self.devices
                .get_or_create(&DeviceLabels {
                    resource: resource.to_string(),
                    health: h.as_str().to_string(),
                })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// Forget a pool's device gauges (the pool is gone).
    pub fn remove_pool(&self, resource: &str) {
        for h in [Health::Healthy, Health::Unhealthy] {
            self.devices.remove(&DeviceLabels {
                resource: resource.to_string(),
                health: h.as_str().to_string(),
            });
        }
    }

    /// Count one container allocation of `resource` (`ok`: answered, else refused).
    pub fn allocation(&self, resource: &str, ok: bool) {
        let l = ResourceLabels {
            resource: resource.to_string(),
        };
        if ok {
            self.allocations.get_or_create(&l).inc();
        } else {
            self.allocation_failures.get_or_create(&l).inc();
        }
    }

    /// Set a PF's current and supported VF counts.
    pub fn set_pf_vfs(&self, pf: &str, num_vfs: u32, total_vfs: u32) {
        let l = PfLabels { pf: pf.to_string() };
        self.pf_num_vfs.get_or_create(&l).set(i64::from(num_vfs));
        self.pf_total_vfs
            .get_or_create(&l)
            .set(i64::from(total_vfs));
    }

    /// Count one provisioning run.
    pub fn provision_run(&self, ok: bool) {
        self.provision_runs.inc();
        if !ok {
            self.provision_failures.inc();
        }
    }

    /// Count one config reload (`ok`: applied, else refused).
    pub fn config_reload(&self, ok: bool) {
        self.config_reloads.inc();
        self.config_last_ok.set(i64::from(ok));
        if !ok {
            self.config_reload_failures.inc();
        }
    }

    /// Record the VF counts of every PF among `devices` (after discovery or provisioning).
    pub fn record_pfs(&self, devices: &[PciDevice]) {
        for d in devices {
            if let Role::Pf { total_vfs, num_vfs } = d.role {
                self.set_pf_vfs(&d.address.to_string(), num_vfs, total_vfs);
            }
        }
    }

    /// Count one registration of `resource` with the kubelet (`mode`: `kubelet` or `watcher`).
    pub fn registration(&self, resource: &str, mode: &str) {
        self.registrations
            .get_or_create(&RegistrationLabels {
                resource: resource.to_string(),
                mode: mode.to_string(),
            })
            .inc();
    }
}

/// Follow a pool's device list into `sriov_dp_devices` until `stop` or until the pool is
/// dropped; its gauges are removed then.
pub fn spawn_pool_watch(
    metrics: Arc<Metrics>,
    pool: &Arc<Pool>,
    stop: CancellationToken,
) -> JoinHandle<()> {
    let mut rx = pool.subscribe();
    let resource = pool.config.resource.to_string();
    tokio::spawn(async move {
        loop {
            let (healthy, unhealthy) = {
                let list = rx.borrow_and_update();
                let healthy = list.iter().filter(|s| s.health == Health::Healthy).count();
                (healthy, list.len() - healthy)
            };
            metrics.set_devices(&resource, healthy, unhealthy);
            tokio::select! {
                r = rx.changed() => if r.is_err() { break },
                _ = stop.cancelled() => break,
            }
        }
        metrics.remove_pool(&resource);
    })
}

/// Serve `/metrics` and `/healthz` on `addr` until `stop`. Returns the bound address (useful
/// with port 0) once listening.
///
/// At most [`MAX_CONNECTIONS`] connections are open at once: a new one closes the oldest, so
/// idle or slow clients can neither exhaust the process's descriptors (which the kubelet sockets
/// need) nor lock out a health probe. A client gets [`HEADER_TIMEOUT`] to send each request's
/// headers, an idle keep-alive connection as long.
pub async fn serve(
    metrics: Arc<Metrics>,
    addr: SocketAddr,
    stop: CancellationToken,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tracing::info!(addr = %local, max_connections = MAX_CONNECTIONS, "metrics listening");
    let open = Arc::new(Mutex::new(OpenConnections::default()));
    let task = tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                _ = stop.cancelled() => break,
                r = listener.accept() => match r {
                    Ok((s, _)) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "metrics listener: accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let (id, closed) = lock(&open).admit(&stop);
            let open = open.clone();
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let conn = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .serve_connection(
                        TokioIo::new(stream),
                        service_fn(move |req| {
                            let metrics = metrics.clone();
                            async move { Ok::<_, Infallible>(handle(&metrics, &req)) }
                        }),
                    );
                tokio::select! {
                    r = conn => if let Err(e) = r {
                        tracing::debug!(error = %e, "metrics connection");
                    },
                    // Evicted by a newer connection, or the daemon stops.
                    _ = closed.cancelled() => {}
                }
                lock(&open).remove(id);
            });
        }
        tracing::debug!("metrics listener stopped");
    });
    Ok((local, task))
}

/// How many connections the metrics listener keeps open at once.
pub const MAX_CONNECTIONS: usize = 64;

/// The open metrics connections, oldest first, each with the token that closes it.
#[derive(Default)]
struct OpenConnections {
    next_id: u64,
    open: std::collections::VecDeque<(u64, CancellationToken)>,
}

impl OpenConnections {
    /// Make room for a new connection (closing the oldest at the cap) and register it; its
    /// token is a child of `stop`.
    fn admit(&mut self, stop: &CancellationToken) -> (u64, CancellationToken) {
        while self.open.len() >= MAX_CONNECTIONS {
            if let Some((_, oldest)) = self.open.pop_front() {
                oldest.cancel();
                tracing::debug!(
                    max = MAX_CONNECTIONS,
                    "metrics connections at the cap: closed the oldest"
                );
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        let token = stop.child_token();
        self.open.push_back((id, token.clone()));
        (id, token)
    }

    fn remove(&mut self, id: u64) {
        self.open.retain(|(i, _)| *i != id);
    }
}

fn lock(m: &Mutex<OpenConnections>) -> std::sync::MutexGuard<'_, OpenConnections> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn handle(metrics: &Metrics, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let reply = |code: StatusCode, ctype: &str, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = code;
        if let Ok(v) = hyper::header::HeaderValue::from_str(ctype) {
            r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
        }
        r
    };
    const TEXT: &str = "text/plain; charset=utf-8";
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            TEXT,
            "only GET and HEAD\n".into(),
        );
    }
    match req.uri().path() {
        "/metrics" => reply(StatusCode::OK, CONTENT_TYPE, metrics.encode()),
        "/healthz" => reply(StatusCode::OK, TEXT, "ok\n".into()),
        p => reply(
            StatusCode::NOT_FOUND,
            TEXT,
            format!("{p}: not found (try /metrics or /healthz)\n"),
        ),
    }
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
