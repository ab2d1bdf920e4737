//! Pools: which discovered devices each configured pool owns, and the live device list of a pool
//! (published through a `watch` channel that every ListAndWatch stream follows).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, RwLock};

use sriov_host::discovery::{CLASS_ACCELERATOR, CLASS_NETWORK};
use sriov_host::{PciAddress, PciDevice, Role, Sysfs};
use tokio::sync::watch;

use crate::config::{Config, DeviceType, PoolConfig};
use crate::health::Health;
use crate::route::netdev_pci_device;
use crate::selectors::Candidate;

/// Facts about the node that pool membership depends on besides sysfs.
#[derive(Debug, Clone, Default)]
pub struct HostFacts {
    /// Netdevs never pooled, with the reason (the ones carrying the host's default route).
    pub excluded_netdevs: HashSet<String>,
    /// Whether `/dev/vhost-net` exists (for `needVhostNet` selectors).
    pub vhost_net_available: bool,
}

/// One device as a pool reports it to the kubelet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceStatus {
    pub id: PciAddress,
    pub health: Health,
    /// NUMA node to report; `None` when unknown or when the pool excludes topology.
    pub numa: Option<u32>,
}

/// A pool with the devices it owns and the channel its device list is published on.
#[derive(Debug)]
pub struct Pool {
    pub config: PoolConfig,
    /// The devices as discovered, by address.
    pub devices: BTreeMap<PciAddress, PciDevice>,
    status: watch::Sender<Vec<DeviceStatus>>,
}

impl Pool {
    pub fn new(config: PoolConfig, devices: Vec<PciDevice>) -> Pool {
        let devices: BTreeMap<_, _> = devices.into_iter().map(|d| (d.address, d)).collect();
        let initial = devices
            .values()
            .map(|d| DeviceStatus {
                id: d.address,
                health: Health::Healthy,
                numa: if config.exclude_topology {
                    None
                } else {
                    d.numa_node
                },
            })
            .collect();
        let (status, _) = watch::channel(initial);
        Pool {
            config,
            devices,
            status,
        }
    }

    /// A receiver of the device list: the current list first, then every change.
    pub fn subscribe(&self) -> watch::Receiver<Vec<DeviceStatus>> {
        self.status.subscribe()
    }

    /// The current device list, sorted by address.
    pub fn current(&self) -> Vec<DeviceStatus> {
        self.status.borrow().clone()
    }

    /// Publish a new device list; streams are only woken when it differs from the current one.
    pub fn publish(&self, list: Vec<DeviceStatus>) -> bool {
        self.status.send_if_modified(|cur| {
            if *cur == list {
                false
            } else {
                *cur = list;
                true
            }
        })
    }

    /// The same pool (same ListAndWatch channel, so open streams follow it) with a new config
    /// and device set. Nothing is published until [`Pool::refresh`].
    pub fn successor(&self, config: PoolConfig, devices: Vec<PciDevice>) -> Pool {
        Pool {
            config,
            devices: devices.into_iter().map(|d| (d.address, d)).collect(),
            status: self.status.clone(),
        }
    }

    /// Build the device list from this pool's devices with `health` deciding each device's
    /// health, and publish it. Returns true when the list changed.
    pub fn refresh(&self, health: impl Fn(&PciDevice) -> Health) -> bool {
        let before: HashMap<PciAddress, Health> = self
            .status
            .borrow()
            .iter()
            .map(|s| (s.id, s.health))
            .collect();
        let list: Vec<DeviceStatus> = self
            .devices
            .values()
            .map(|d| {
                let h = health(d);
                if before.get(&d.address).is_some_and(|b| *b != h) {
                    tracing::info!(pool = %self.config.resource, pci = %d.address, health = %h, "device health changed");
                }
                DeviceStatus {
                    id: d.address,
                    health: h,
                    numa: if self.config.exclude_topology {
                        None
                    } else {
                        d.numa_node
                    },
                }
            })
            .collect();
        self.publish(list)
    }
}

/// The current snapshot of a pool. Reloads and device changes swap the snapshot; the pool's
/// server and its ListAndWatch streams keep running and follow the shared channel.
#[derive(Debug)]
pub struct PoolCell {
    current: RwLock<Arc<Pool>>,
}

impl PoolCell {
    pub fn new(pool: Pool) -> Arc<PoolCell> {
        Arc::new(PoolCell {
            current: RwLock::new(Arc::new(pool)),
        })
    }

    /// The pool as it is now.
    pub fn get(&self) -> Arc<Pool> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replace the snapshot.
    pub fn set(&self, pool: Pool) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(pool);
    }
}

/// Whether a device may be pooled at all by a pool of `kind`: the right PCI class, a VF or a
/// device without VFs (a PF whose VFs exist is never handed out).
fn poolable(d: &PciDevice, kind: DeviceType) -> bool {
    let class_ok = match kind {
        DeviceType::NetDevice => d.base_class() == CLASS_NETWORK,
        DeviceType::Accelerator => d.base_class() == CLASS_ACCELERATOR,
    };
    let role_ok = match d.role {
        Role::Pf { num_vfs, .. } => num_vfs == 0,
        Role::Vf { .. } | Role::Plain => true,
    };
    class_ok && role_ok
}

/// Assign discovered devices to the configured pools: first match wins, devices carrying the
/// default route are skipped. Returns one device list per pool, in config order.
pub fn assign(
    sysfs: &Sysfs,
    devs: &[PciDevice],
    config: &Config,
    facts: &HostFacts,
) -> Vec<Vec<PciDevice>> {
    let by_addr: HashMap<PciAddress, &PciDevice> = devs.iter().map(|d| (d.address, d)).collect();
    let mut out: Vec<Vec<PciDevice>> = vec![Vec::new(); config.pools.len()];
    let excluded: HashMap<PciAddress, &str> = facts
        .excluded_netdevs
        .iter()
        .filter_map(|n| netdev_pci_device(sysfs, n).map(|a| (a, n.as_str())))
        .collect();
    for d in devs {
        let hit = d
            .netdevs
            .iter()
            .map(String::as_str)
            .find(|n| facts.excluded_netdevs.contains(*n))
            .or_else(|| excluded.get(&d.address).copied());
        if let Some(n) = hit {
            tracing::info!(pci = %d.address, netdev = %n, "not pooled: the netdev carries the host's default route");
            continue;
        }
        let pf = d.pf().and_then(|a| by_addr.get(&a).copied());
        let pf_netdev = match pf {
            Some(p) => p.netdev(),
            None if d.is_vf() => None,
            None => d.netdev(),
        };
        let acpi =
            acpi_index(sysfs, d.address).or_else(|| d.pf().and_then(|p| acpi_index(sysfs, p)));
        let c = Candidate {
            dev: d,
            pf_netdev,
            pf_link_type: pf.and_then(|p| p.link_type),
            acpi_index: acpi.as_deref(),
            vhost_net_available: facts.vhost_net_available,
        };
        let mut owner: Option<usize> = None;
        for (i, pool) in config.pools.iter().enumerate() {
            if !poolable(d, pool.device_type) || !pool.selectors.iter().any(|s| s.matches(&c)) {
                continue;
            }
            match owner {
                None => owner = Some(i),
                Some(o) => tracing::info!(
                    pci = %d.address,
                    pool = %pool.resource,
                    owner = %config.pools[o].resource,
                    "device also matches a later pool; the first match keeps it"
                ),
            }
        }
        if let Some(i) = owner {
            tracing::debug!(pci = %d.address, pool = %config.pools[i].resource, "device pooled");
            out[i].push(d.clone());
        }
    }
    for (pool, list) in config.pools.iter().zip(&out) {
        if list.is_empty() {
            tracing::warn!(pool = %pool.resource, "pool matches no device");
        } else {
            tracing::info!(pool = %pool.resource, devices = list.len(), "pool built");
        }
    }
    out
}

fn acpi_index(sysfs: &Sysfs, addr: PciAddress) -> Option<String> {
    sysfs.attr_opt(addr, "acpi_index").ok().flatten()
}

/// The pool each device address falls in (for the inventory).
pub fn pool_of(config: &Config, assigned: &[Vec<PciDevice>]) -> HashMap<PciAddress, String> {
    let mut m = HashMap::new();
    for (pool, list) in config.pools.iter().zip(assigned) {
        for d in list {
            m.insert(d.address, pool.resource.to_string());
        }
    }
    m
}

#[cfg(test)]
#[path = "pool_tests.rs"]
mod tests;
