//! The running node: config, devices, pools and one server per pool, kept current by events.
//!
//! - Link changes (rtnetlink) re-evaluate health; nothing is re-discovered.
//! - PCI uevents (add/remove/bind/unbind) re-read sysfs: new devices join the first pool that
//!   selects them; pooled devices stay where they are and their health says what happened (a
//!   removed VF is Unhealthy, a rebound VF is Unhealthy rather than moving to another pool).
//! - A config change is parsed and validated; an invalid one is logged and ignored. A valid one
//!   is provisioned, then pools are rebuilt and diffed against the running ones: new pools get a
//!   server and registration, removed pools stop (socket removed), changed pools publish their
//!   new list on their open ListAndWatch streams, unchanged pools are not touched.
//! - Every minute a safety-net re-scan catches anything a lost event would have missed.
//!
//! A pool's own life (server, registration, in-place updates, stop) is [`crate::lifecycle`].

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use sriov_host::discovery::discover;
use sriov_host::{PciAddress, PciDevice, SysfsError};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ConfigError};
use crate::context::NodeContext;
use crate::events::Event;
use crate::health::{Checker, Links};
use crate::lifecycle::{Failure, RunningPool};
use crate::pool::{assign, Pool};
use crate::provision_apply;

/// How long after a first PCI uevent the node is re-read, so a burst (VF creation, a rebind)
/// is handled once.
pub const DEVICE_SETTLE: Duration = Duration::from_millis(20);
/// The safety-net re-scan interval: events drive everything, this only bounds the damage of a
/// lost one.
pub const SAFETY_NET: Duration = Duration::from_secs(60);
/// How long the start waits for the first link dump before building pools.
const FIRST_DUMP_WAIT: Duration = Duration::from_secs(1);

pub struct Node {
    ctx: NodeContext,
    stop: CancellationToken,
    fail: mpsc::UnboundedSender<Failure>,
    config: Config,
    devices: Vec<PciDevice>,
    /// In config order.
    pools: Vec<RunningPool>,
    links: Links,
}

/// Parse a config file's content, with errors naming the file like [`Config::load`].
pub fn parse_config(ctx: &NodeContext, content: &[u8]) -> Result<Config, ConfigError> {
    let path = ctx.config_path.clone();
    let value: serde_json::Value =
        serde_json::from_slice(content).map_err(|source| ConfigError::Json {
            path: path.clone(),
            source,
        })?;
    Config::from_value(&value, &ctx.resource_prefix).map_err(|e| ConfigError::Invalid {
        path,
        source: Box::new(e),
    })
}

impl Node {
    /// Provision, discover, build the pools and start their servers. Waits (briefly) for the
    /// first link dump on `events` so the first lists already carry link health; other events
    /// arriving meanwhile are returned to be handled afterwards.
    pub async fn start(
        ctx: NodeContext,
        stop: CancellationToken,
        config: Config,
        events: &mut mpsc::UnboundedReceiver<Event>,
        fail: mpsc::UnboundedSender<Failure>,
    ) -> Result<(Node, Vec<Event>), SysfsError> {
        let mut node = Node {
            ctx,
            stop,
            fail,
            config: Config {
                pools: Vec::new(),
                provision: Vec::new(),
            },
            devices: Vec::new(),
            pools: Vec::new(),
            links: Links::default(),
        };
        let mut pending = Vec::new();
        let deadline = tokio::time::Instant::now() + FIRST_DUMP_WAIT;
        loop {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Some(Event::Links { states, full })) => {
                    node.links.apply(states);
                    if full {
                        break;
                    }
                }
                Ok(Some(ev)) => pending.push(ev),
                Ok(None) | Err(_) => {
                    tracing::warn!("no link dump yet; PF link health follows when it arrives");
                    break;
                }
            }
        }
        node.provision(&config).await;
        let devices = node.discover()?;
        node.apply(config, devices).await;
        Ok((node, pending))
    }

    /// Handle events until the event sources are gone.
    pub async fn run(&mut self, events: &mut mpsc::UnboundedReceiver<Event>, pending: Vec<Event>) {
        for ev in pending {
            self.handle(ev).await;
        }
        let mut net = tokio::time::interval(SAFETY_NET);
        net.tick().await;
        let mut rescan_at: Option<tokio::time::Instant> = None;
        loop {
            let settle = async {
                match rescan_at {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                ev = events.recv() => {
                    let Some(ev) = ev else { return };
                    if let Event::Devices(evs) = &ev {
                        for e in evs {
                            tracing::debug!(action = %e.action, devpath = %e.devpath, driver = ?e.driver, "PCI uevent");
                        }
                        rescan_at.get_or_insert_with(|| tokio::time::Instant::now() + DEVICE_SETTLE);
                    } else {
                        self.handle(ev).await;
                    }
                }
                _ = settle => {
                    rescan_at = None;
                    self.rescan();
                }
                _ = net.tick() => {
                    tracing::debug!("safety-net re-scan");
                    self.rescan();
                }
            }
        }
    }

    async fn handle(&mut self, ev: Event) {
        match ev {
            Event::Links { states, full } => {
                if full {
                    self.links.clear();
                }
                let changed = self.links.apply(states);
                if full {
                    self.refresh_health();
                    return;
                }
                // Only PF netdevs matter (a node's pod veths come and go all the time). Their
                // names are read from sysfs now: a PF may have been renamed.
                let pf_names: HashSet<String> = self
                    .devices
                    .iter()
                    .filter(|d| d.is_pf())
                    .flat_map(|d| self.ctx.paths.sysfs.netdevs(d.address).unwrap_or_default())
                    .collect();
                let mut relevant = false;
                for name in changed.iter().filter(|n| pf_names.contains(*n)) {
                    relevant = true;
                    match self.links.get(name) {
                        Some(l) => {
                            tracing::info!(netdev = %name, admin_up = l.admin_up, carrier = l.carrier, "PF link changed")
                        }
                        None => tracing::info!(netdev = %name, "PF link gone"),
                    }
                }
                if relevant {
                    self.refresh_health();
                }
            }
            Event::Devices(_) => self.rescan(),
            Event::Config(Ok(content)) => self.reload(&content).await,
            Event::Config(Err(e)) => self.refuse(e),
        }
    }

    /// The config file could not be read (too large, not a regular file): like an invalid
    /// config, logged and ignored.
    fn refuse(&mut self, e: String) {
        tracing::error!(config = %self.ctx.config_path.display(), error = %e, "config refused; the running pools keep serving unchanged");
        self.ctx.metrics.config_reload(false);
    }

    /// A new config file content: validate, provision, rebuild and diff the pools.
    pub async fn reload(&mut self, content: &[u8]) {
        let started = Instant::now();
        let config = match parse_config(&self.ctx, content) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(config = %self.ctx.config_path.display(), error = %e, "invalid config ignored; the running pools keep serving unchanged");
                self.ctx.metrics.config_reload(false);
                return;
            }
        };
        self.ctx.metrics.config_reload(true);
        tracing::info!(config = %self.ctx.config_path.display(), pools = config.pools.len(), provision = config.provision.len(), "config changed; applying");
        self.provision(&config).await;
        let devices = match self.discover() {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(root = %self.ctx.paths.sysfs.root().display(), error = %e, "discovery failed; the running pools keep serving unchanged");
                return;
            }
        };
        self.apply(config, devices).await;
        tracing::info!(ms = started.elapsed().as_millis() as u64, "config applied");
    }

    async fn provision(&mut self, config: &Config) {
        if config.provision.is_empty() {
            return;
        }
        let sysfs = self.ctx.paths.sysfs.clone();
        let devinfo = self.ctx.paths.devinfo_dir.clone();
        let entries = config.provision.clone();
        let out = tokio::task::spawn_blocking(move || {
            provision_apply::apply_all(&sysfs, &devinfo, &entries)
        })
        .await;
        match out {
            Ok(o) => {
                let failed = o.iter().filter(|o| o.result.is_err()).count();
                self.ctx.metrics.provision_run(failed == 0);
                if failed > 0 {
                    tracing::error!(
                        failed,
                        entries = o.len(),
                        "provisioning incomplete; see the errors above and `sriov-device-plugin inventory`"
                    );
                }
            }
            Err(e) => {
                self.ctx.metrics.provision_run(false);
                tracing::error!(error = %e, "provisioning task failed")
            }
        }
    }

    fn discover(&self) -> Result<Vec<PciDevice>, SysfsError> {
        discover(&self.ctx.paths.sysfs)
    }

    /// Build the pools of `config` from `devices` and make the running set match.
    async fn apply(&mut self, config: Config, devices: Vec<PciDevice>) {
        let assigned = assign(
            &self.ctx.paths.sysfs,
            &devices,
            &config,
            &self.ctx.paths.facts(),
        );
        let mut old: HashMap<String, RunningPool> = std::mem::take(&mut self.pools)
            .into_iter()
            .map(|r| (r.cell.get().config.resource.to_string(), r))
            .collect();
        for (pc, members) in config.pools.iter().zip(assigned) {
            match old.remove(&pc.resource.to_string()) {
                Some(run) => {
                    run.update(&self.ctx.paths, pc.clone(), members);
                    self.pools.push(run);
                }
                None => {
                    tracing::info!(pool = %pc.resource, devices = members.len(), "new pool");
                    let pool = Pool::new(pc.clone(), members);
                    // Its first list already carries health.
                    {
                        let checker = Checker::new(&self.ctx.paths.sysfs, &self.links);
                        pool.refresh(|d| checker.check(d));
                    }
                    let run = RunningPool::start(&self.ctx, pool, &self.stop, self.fail.clone());
                    self.pools.push(run);
                }
            }
        }
        self.config = config;
        self.ctx.metrics.record_pfs(&devices);
        self.devices = devices;
        self.refresh_health();
        for (name, run) in old {
            tracing::info!(pool = %name, "pool removed from the config: stopping");
            run.stop(&self.ctx.paths).await;
        }
    }

    /// Re-read sysfs after device events: new devices join the first pool that selects them;
    /// pooled ones stay where they are, present or not (a gone one is reported Unhealthy until
    /// the config is next applied, and is Healthy again if it comes back as it was).
    fn rescan(&mut self) {
        let devices = match self.discover() {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "re-scan failed; keeping the current pools");
                return;
            }
        };
        if devices != self.devices {
            let pooled: HashSet<PciAddress> = self
                .pools
                .iter()
                .flat_map(|r| r.cell.get().devices.keys().copied().collect::<Vec<_>>())
                .collect();
            let assigned = assign(
                &self.ctx.paths.sysfs,
                &devices,
                &self.config,
                &self.ctx.paths.facts(),
            );
            for (run, fresh) in self.pools.iter().zip(assigned) {
                let cur = run.cell.get();
                let mut members: Vec<PciDevice> = cur.devices.values().cloned().collect();
                members.extend(fresh.into_iter().filter(|d| !pooled.contains(&d.address)));
                run.update(&self.ctx.paths, cur.config.clone(), members);
            }
            self.ctx.metrics.record_pfs(&devices);
            self.devices = devices;
        }
        self.refresh_health();
    }

    /// Re-evaluate every pooled device's health; streams hear only about real changes. The
    /// observer (DRA mode) hears about the node as it is now.
    fn refresh_health(&self) {
        let checker = Checker::new(&self.ctx.paths.sysfs, &self.links);
        for run in &self.pools {
            let pool = run.cell.get();
            pool.refresh(|d| checker.check(d));
        }
        if let Some(o) = &self.ctx.observer {
            let cells: Vec<_> = self.pools.iter().map(|r| r.cell.clone()).collect();
            o.changed(&cells, &self.devices);
        }
    }

    /// Stop every pool server (sockets removed) and wait for them.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        for run in std::mem::take(&mut self.pools) {
            run.finish(self.ctx.cdi.as_deref()).await;
        }
    }
}
