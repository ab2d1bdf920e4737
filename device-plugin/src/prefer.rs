//! GetPreferredAllocation: which of the free devices to give a container. Packed: fill the PF
//! the container already uses (through `must_include`) first, then a PF that can satisfy the
//! whole rest, then the PFs with the most free devices; lowest addresses first inside a PF.

use std::collections::{BTreeMap, BTreeSet};

use sriov_host::PciAddress;

use crate::pool::Pool;

/// The preferred IDs: every `must_include`, then up to `size` in total from `available`.
pub fn preferred(
    pool: &Pool,
    available: &[String],
    must_include: &[String],
    size: usize,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(size);
    for m in must_include {
        if !out.contains(m) {
            out.push(m.clone());
        }
    }
    if out.len() >= size {
        return out;
    }
    let taken: BTreeSet<&str> = out.iter().map(String::as_str).collect();
    let root = |a: PciAddress| pool.devices.get(&a).and_then(|d| d.pf()).unwrap_or(a);
    let used_pfs: BTreeSet<PciAddress> = must_include
        .iter()
        .filter_map(|m| m.parse().ok())
        .map(root)
        .collect();
    let mut by_pf: BTreeMap<PciAddress, Vec<PciAddress>> = BTreeMap::new();
    for id in available {
        if taken.contains(id.as_str()) {
            continue;
        }
        if let Ok(a) = id.parse::<PciAddress>() {
            if pool.devices.contains_key(&a) {
                by_pf.entry(root(a)).or_default().push(a);
            }
        }
    }
    let need = size - out.len();
    let mut pfs: Vec<(PciAddress, Vec<PciAddress>)> = by_pf.into_iter().collect();
    for (_, v) in &mut pfs {
        v.sort();
    }
    // Sort key: PFs already in use, then PFs that fit the whole rest, then the fullest, then address.
    pfs.sort_by_key(|(pf, v)| {
        (
            !used_pfs.contains(pf),
            v.len() < need,
            std::cmp::Reverse(v.len()),
            *pf,
        )
    });
    for (_, v) in pfs {
        for a in v {
            if out.len() == size {
                return out;
            }
            out.push(a.to_string());
        }
    }
    out
}
