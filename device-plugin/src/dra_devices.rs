//! What the DRA mode publishes and prepares, from the same pools, health and device-info files
//! as the classic mode: the node's VFs as [`VfDevice`]s (one per pooled VF, its pool the first
//! that selects it, its health the pool's live verdict), and [`VfPreparer`], the per-VF part of
//! Allocate for a claim (driver check, device-info file, the vfio nodes for the CDI spec). The
//! device-info file is written twice: under the pool's name, as Allocate does, and under the
//! ResourceClaim's name, the `resourceName` a Multus attachment of a DRA device carries.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use sriov_dra::cdi::ContainerEdits;
use sriov_dra::plugin::{ClaimRef, DevicePreparer};
use sriov_dra::VfDevice;
use sriov_host::{PciAddress, PciDevice, Role, Sysfs};

use crate::allocate::allocate_checked;
use crate::context::HostPaths;
use crate::health::Health;
use crate::pool::{Pool, PoolCell};

/// ARPHRD numbers to the names a selector tests (`linkType`).
fn link_type_name(t: u32) -> Option<String> {
    match t {
        1 => Some("ether".into()),
        32 => Some("infiniband".into()),
        _ => None,
    }
}

/// The PCIe root complex of the device at `addr`, `pci<domain>:<bus>`: the first component of
/// its real sysfs directory under `devices/` (`devices/pci0000:00/0000:00:01.0/...`).
pub fn pcie_root(sysfs: &Sysfs, addr: PciAddress) -> Option<String> {
    let real = std::fs::canonicalize(sysfs.pci_dir(addr)).ok()?;
    let devices = std::fs::canonicalize(sysfs.root().join("devices")).ok()?;
    let first = real.strip_prefix(&devices).ok()?.components().next()?;
    let name = first.as_os_str().to_str()?;
    let ok = name.strip_prefix("pci").is_some_and(|rest| {
        rest.len() == 7
            && rest.as_bytes()[4] == b':'
            && rest
                .bytes()
                .enumerate()
                .all(|(i, c)| i == 4 || c.is_ascii_hexdigit())
    });
    ok.then(|| name.to_string())
}

/// The VFs of `pools` as DRA devices, ordered by PCI address. Devices that are not VFs (a plain
/// PCI function a pool selects) are left out: every DRA device names its PF.
pub fn vf_devices(sysfs: &Sysfs, pools: &[Arc<PoolCell>], devices: &[PciDevice]) -> Vec<VfDevice> {
    let by_addr: HashMap<PciAddress, &PciDevice> = devices.iter().map(|d| (d.address, d)).collect();
    let mut out = Vec::new();
    for cell in pools {
        let pool = cell.get();
        let health: HashMap<PciAddress, Health> = pool
            .current()
            .into_iter()
            .map(|s| (s.id, s.health))
            .collect();
        for d in pool.devices.values() {
            let Role::Vf { pf, index } = d.role else {
                tracing::debug!(pci = %d.address, pool = %pool.config.resource, "not a VF; not published as a DRA device");
                continue;
            };
            let pf_dev = by_addr.get(&pf).copied();
            out.push(VfDevice {
                pci: d.address,
                pf_name: pf_dev.and_then(|p| p.netdev()).map(str::to_string),
                pf_pci: pf,
                vendor: d.vendor,
                device: d.device,
                driver: d.driver.clone(),
                numa_node: d.numa_node,
                vf_index: index,
                link_type: pf_dev.and_then(|p| p.link_type).and_then(link_type_name),
                pool: pool.config.resource.to_string(),
                pcie_root: pcie_root(sysfs, d.address),
                healthy: health.get(&d.address) == Some(&Health::Healthy),
            });
        }
    }
    out.sort_by_key(|v| v.pci);
    out
}

/// The pools as they are now, shared by the node (which swaps them) and the preparer.
pub type SharedPools = Arc<RwLock<Vec<Arc<PoolCell>>>>;

/// The per-VF work of a claim: what Allocate does for one device in the classic mode.
pub struct VfPreparer {
    pools: SharedPools,
    paths: Arc<HostPaths>,
}

impl VfPreparer {
    /// The preparer over `pools`, with host state under `paths`.
    pub fn new(pools: SharedPools, paths: Arc<HostPaths>) -> VfPreparer {
        VfPreparer { pools, paths }
    }

    /// The pool holding `pci` now.
    fn pool_of(&self, pci: PciAddress) -> Option<Arc<Pool>> {
        let pools = self.pools.read().unwrap_or_else(|e| e.into_inner());
        pools
            .iter()
            .map(|c| c.get())
            .find(|p| p.devices.contains_key(&pci))
    }

    fn devinfo_path(&self, pool: &Pool, pci: PciAddress) -> PathBuf {
        self.paths
            .devinfo_dir
            .join(pool.config.resource.devinfo_file(&pci.to_string()))
    }

    /// The device-info file Multus looks up for an attachment whose NAD names the claim:
    /// `<devinfo-dir>/<claim name>-<PCI>-device.json` (Multus keys DRA devices by the
    /// ResourceClaim's name). `None` for a name that is not a DNS subdomain (it never becomes
    /// part of a path then).
    fn claim_devinfo_path(&self, claim: &ClaimRef, pci: PciAddress) -> Option<PathBuf> {
        let n = &claim.name;
        let ok = !n.is_empty()
            && n.len() <= 253
            && n.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.')
            && !n.starts_with(['-', '.']);
        ok.then(|| {
            self.paths
                .devinfo_dir
                .join(format!("{n}-{pci}-device.json"))
        })
    }
}

fn remove_if_there(path: &Path) -> Result<(), String> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("removing {}: {e}", path.display())),
    }
}

impl DevicePreparer for VfPreparer {
    fn prepare(&self, claim: &ClaimRef, pci: PciAddress) -> Result<ContainerEdits, String> {
        let pool = self.pool_of(pci).ok_or_else(|| {
            format!("VF {pci} is in no pool of this node's config any more; the claim must be allocated again")
        })?;
        let pooled = pool
            .devices
            .get(&pci)
            .map(|d| d.driver.clone())
            .unwrap_or_default();
        let now = self
            .paths
            .sysfs
            .driver(pci)
            .map_err(|e| format!("VF {pci}: {e}"))?;
        if now != pooled {
            return Err(format!(
                "VF {pci} is bound to {} now, not {} as when it was pooled; rebind it or let the config's provisioning do it",
                now.as_deref().unwrap_or("no driver"),
                pooled.as_deref().unwrap_or("no driver"),
            ));
        }
        let resp = allocate_checked(&pool, &self.paths, &[pci]).map_err(|e| e.to_string())?;
        // The same record under the claim's name, for Multus.
        if let Some(by_claim) = self.claim_devinfo_path(claim, pci) {
            let from = self.devinfo_path(&pool, pci);
            let copied = std::fs::read(&from)
                .and_then(|b| sriov_host::fsio::replace_file(&by_claim, &b, 0o644));
            if let Err(e) = copied {
                let _ = remove_if_there(&from);
                return Err(format!(
                    "writing device-info file {}: {e}",
                    by_claim.display()
                ));
            }
        }
        tracing::info!(claim = %claim.uid, pci = %pci, pool = %pool.config.resource, nodes = resp.devices.len(), "VF prepared");
        Ok(ContainerEdits {
            device_nodes: resp.devices.into_iter().map(|d| d.host_path).collect(),
            env: Vec::new(),
        })
    }

    fn unprepare(&self, claim: &ClaimRef, pci: PciAddress) -> Result<(), String> {
        if let Some(by_claim) = self.claim_devinfo_path(claim, pci) {
            remove_if_there(&by_claim)?;
        }
        // A VF that left every pool had its pool's device-info file removed when it left.
        if let Some(pool) = self.pool_of(pci) {
            remove_if_there(&self.devinfo_path(&pool, pci))?;
        }
        tracing::info!(claim = %claim.uid, pci = %pci, "VF unprepared");
        Ok(())
    }
}
