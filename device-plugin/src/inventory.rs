//! `sriov-device-plugin inventory`: every PF and VF with the pool it falls in.

use std::fmt::Write;

use serde::Serialize;
use sriov_host::discovery::discover;
use sriov_host::pci::{device_name, vendor_name};
use sriov_host::{PciDevice, Role, SysfsError};

use crate::config::Config;
use crate::context::HostPaths;
use crate::pool::{assign, pool_of};
use crate::provision_apply::PlanRow;

/// The config, everything discovered, and each pool's devices (in config order).
pub struct Discovered {
    /// The config the pools come from.
    pub config: Config,
    /// Every device found.
    pub devices: Vec<PciDevice>,
    /// Each pool's devices, in config order.
    pub pools: Vec<Vec<PciDevice>>,
}

/// Discover the devices under `paths` and assign them to the pools of `config`.
pub fn discover_pools(config: Config, paths: &HostPaths) -> Result<Discovered, SysfsError> {
    let devices = discover(&paths.sysfs)?;
    let pools = assign(&paths.sysfs, &devices, &config, &paths.facts());
    Ok(Discovered {
        config,
        devices,
        pools,
    })
}

/// One inventory row.
#[derive(Debug, Serialize)]
pub struct Entry<'a> {
    #[serde(flatten)]
    pub device: &'a PciDevice,
    pub vendor_name: Option<&'static str>,
    pub device_name: Option<&'static str>,
    pub pool: Option<String>,
    /// On a PF named by a `provision` entry: that entry against what sysfs shows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provision: Option<PlanRow>,
}

pub fn entries(found: &Discovered) -> Vec<Entry<'_>> {
    let pools = pool_of(&found.config, &found.pools);
    found
        .devices
        .iter()
        .map(|d| Entry {
            device: d,
            vendor_name: vendor_name(d.vendor),
            device_name: device_name(d.vendor, d.device),
            pool: pools.get(&d.address).cloned(),
            provision: None,
        })
        .collect()
}

/// The entries as a JSON array; each row of `plan` goes on its PF's entry. A row whose PF was
/// not found has no entry to go on and is returned.
pub fn to_json(
    found: &Discovered,
    plan: Vec<PlanRow>,
) -> serde_json::Result<(String, Vec<PlanRow>)> {
    let mut rows = entries(found);
    let mut unplaced = Vec::new();
    for p in plan {
        let at = p.pci.as_deref().and_then(|pci| {
            rows.iter()
                .position(|e| e.device.address.to_string() == pci)
        });
        match at {
            Some(i) => rows[i].provision = Some(p),
            None => unplaced.push(p),
        }
    }
    Ok((serde_json::to_string_pretty(&rows)?, unplaced))
}

/// A readable table: one line per device, VFs indented under their PF.
pub fn to_table(found: &Discovered) -> String {
    let rows: Vec<[String; 8]> = entries(found)
        .iter()
        .map(|e| {
            let d = e.device;
            let role = match d.role {
                Role::Pf { num_vfs, total_vfs } => format!("PF {num_vfs}/{total_vfs}"),
                Role::Vf { index, .. } => format!("  VF {index}"),
                Role::Plain => "-".into(),
            };
            let opt = |o: Option<String>| o.unwrap_or_else(|| "-".into());
            [
                d.address.to_string(),
                role,
                format!("{}:{} {}", d.vendor, d.device, e.device_name.unwrap_or("")),
                opt(d.driver.clone()),
                opt(d.netdev().map(str::to_string)),
                opt(d.numa_node.map(|n| n.to_string())),
                opt(d.iommu_group.map(|n| n.to_string())),
                opt(e.pool.clone()),
            ]
        })
        .collect();
    let header = [
        "ADDRESS",
        "ROLE",
        "ID / NAME",
        "DRIVER",
        "NETDEV",
        "NUMA",
        "IOMMU",
        "POOL",
    ];
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                l.push_str(c);
            } else {
                let _ = write!(l, "{c:<w$}  ");
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for r in &rows {
        line(r.iter().map(String::as_str).collect());
    }
    out
}
