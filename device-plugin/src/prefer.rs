//! GetPreferredAllocation: which of the free devices to give a container, per the pool's
//! `allocationPolicy`.
//!
//! - `packed` (default): fill the PF that already has the most allocated devices first, then the
//!   next, so whole PFs stay free for large requests.
//! - `spread`: round-robin over PFs (the least loaded first), so a container's devices sit
//!   behind as many different PFs as possible.
//!
//! Both prefer devices on the NUMA node(s) of the `must_include` devices, and break ties by the
//! lowest PCI address. "Allocated" means in the pool, healthy, and not in `available` (the
//! kubelet leaves both allocated and unhealthy devices out of `available`; unhealthy ones are
//! not counted). The devices of `must_include` count as allocated to their PF: they are about to
//! be.
//!
//! Everything here is a pure function over an [`Inventory`], so it is tested without sysfs.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use sriov_host::PciAddress;

use crate::config::AllocationPolicy;
use crate::health::Health;
use crate::pool::Pool;

/// What the policies need to know about one device of a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub id: PciAddress,
    /// The PF the device hangs off; a device without a PF is its own group.
    pub pf: PciAddress,
    pub numa: Option<u32>,
    pub healthy: bool,
}

/// The devices of a pool, by address.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    slots: BTreeMap<PciAddress, Slot>,
}

impl Inventory {
    pub fn new(slots: impl IntoIterator<Item = Slot>) -> Inventory {
        Inventory {
            slots: slots.into_iter().map(|s| (s.id, s)).collect(),
        }
    }

    /// The pool's devices with their current health.
    pub fn of_pool(pool: &Pool) -> Inventory {
        let health: HashMap<PciAddress, Health> = pool
            .current()
            .into_iter()
            .map(|s| (s.id, s.health))
            .collect();
        Inventory::new(pool.devices.values().map(|d| Slot {
            id: d.address,
            pf: d.pf().unwrap_or(d.address),
            numa: d.numa_node,
            healthy: health.get(&d.address).copied() != Some(Health::Unhealthy),
        }))
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

/// Why no answer can satisfy the request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PreferError {
    #[error("allocation_size {0} is negative")]
    NegativeSize(i32),
    #[error("must_include device {0:?} is not a device of this pool")]
    NotOurs(String),
    #[error("must_include device {0} is not among the available devices")]
    MustIncludeUnavailable(String),
    #[error("allocation_size {size} is smaller than the {must} must_include devices")]
    SizeBelowMustInclude { size: usize, must: usize },
    #[error(
        "allocation_size {size} is larger than the {available} available devices of this pool"
    )]
    TooFew { size: usize, available: usize },
}

/// The preferred IDs: every `must_include` (first, in the order given), then devices from
/// `available` chosen by `policy`, exactly `size` in all. Available IDs that are not devices of
/// the pool are never chosen.
pub fn preferred(
    inv: &Inventory,
    policy: AllocationPolicy,
    available: &[String],
    must_include: &[String],
    size: i32,
) -> Result<Vec<String>, PreferError> {
    let size = usize::try_from(size).map_err(|_| PreferError::NegativeSize(size))?;
    let avail: BTreeSet<PciAddress> = available
        .iter()
        .filter_map(|id| id.parse().ok())
        .filter(|a| inv.slots.contains_key(a))
        .collect();
    let mut must: Vec<PciAddress> = Vec::with_capacity(must_include.len());
    for id in must_include {
        let a: PciAddress = id
            .parse()
            .ok()
            .filter(|a| inv.slots.contains_key(a))
            .ok_or_else(|| PreferError::NotOurs(id.clone()))?;
        if !avail.contains(&a) {
            return Err(PreferError::MustIncludeUnavailable(id.clone()));
        }
        if !must.contains(&a) {
            must.push(a);
        }
    }
    if size < must.len() {
        return Err(PreferError::SizeBelowMustInclude {
            size,
            must: must.len(),
        });
    }
    if size > avail.len() {
        return Err(PreferError::TooFew {
            size,
            available: avail.len(),
        });
    }

    let numas: BTreeSet<u32> = must
        .iter()
        .filter_map(|a| inv.slots.get(a).and_then(|s| s.numa))
        .collect();
    // Off the preferred NUMA nodes (false sorts first). No preference without must_include NUMA.
    let far = |s: &Slot| !numas.is_empty() && !s.numa.is_some_and(|n| numas.contains(&n));
    let mut allocated: HashMap<PciAddress, usize> = HashMap::new();
    for s in inv.slots.values() {
        if s.healthy && !avail.contains(&s.id) {
            *allocated.entry(s.pf).or_default() += 1;
        }
    }
    for a in &must {
        if let Some(s) = inv.slots.get(a) {
            *allocated.entry(s.pf).or_default() += 1;
        }
    }
    let load = |pf: &PciAddress| allocated.get(pf).copied().unwrap_or(0);
    let mut candidates: Vec<&Slot> = avail
        .iter()
        .filter(|a| !must.contains(a))
        .filter_map(|a| inv.slots.get(a))
        .collect();
    let need = size - must.len();
    let chosen: Vec<PciAddress> = match policy {
        AllocationPolicy::Packed => {
            // Taking devices from the top PF only raises its count: one static order suffices.
            candidates.sort_by_key(|s| (far(s), Reverse(load(&s.pf)), s.pf, s.id));
            candidates.iter().take(need).map(|s| s.id).collect()
        }
        AllocationPolicy::Spread => {
            candidates.sort_by_key(|s| s.id);
            let mut taken_per_pf: HashMap<PciAddress, usize> = HashMap::new();
            for a in &must {
                if let Some(s) = inv.slots.get(a) {
                    *taken_per_pf.entry(s.pf).or_default() += 1;
                }
            }
            let mut out = Vec::with_capacity(need);
            let mut left = candidates;
            while out.len() < need {
                let key = |s: &Slot| {
                    (
                        far(s),
                        taken_per_pf.get(&s.pf).copied().unwrap_or(0),
                        load(&s.pf),
                        s.pf,
                        s.id,
                    )
                };
                let Some((i, _)) = left.iter().enumerate().min_by_key(|(_, s)| key(s)) else {
                    break;
                };
                let s = left.remove(i);
                *taken_per_pf.entry(s.pf).or_default() += 1;
                out.push(s.id);
            }
            out
        }
    };
    Ok(must
        .iter()
        .chain(chosen.iter())
        .map(PciAddress::to_string)
        .collect())
}

#[cfg(test)]
#[path = "prefer_tests.rs"]
mod tests;
