//! Discovery: every PCI network device and accelerator in a sysfs tree, with its SR-IOV role.

use std::collections::HashMap;

use serde::Serialize;

use crate::pci::{PciAddress, PciId};
use crate::sysfs::{Result, Sysfs};

/// PCI base classes we care about: 0x02 network controllers, 0x12 processing accelerators.
pub const CLASS_NETWORK: u8 = 0x02;
pub const CLASS_ACCELERATOR: u8 = 0x12;

/// What a device is in SR-IOV terms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "role", rename_all = "lowercase")]
pub enum Role {
    /// A physical function able to host VFs.
    Pf { total_vfs: u32, num_vfs: u32 },
    /// A virtual function: its PF and its index there (`virtfnN`).
    Vf { pf: PciAddress, index: u32 },
    /// Neither (a plain NIC, or an SR-IOV-incapable device).
    Plain,
}

/// One PCI device as sysfs shows it now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PciDevice {
    pub address: PciAddress,
    pub vendor: PciId,
    pub device: PciId,
    pub class: u32,
    pub driver: Option<String>,
    /// Netdevs in this network namespace (empty for a VF inside a pod or bound to vfio-pci).
    pub netdevs: Vec<String>,
    pub numa_node: Option<u32>,
    pub iommu_group: Option<u32>,
    pub rdma_devices: Vec<String>,
    /// ARPHRD type of the first netdev (1 ether, 32 infiniband), when it has one here.
    pub link_type: Option<u32>,
    #[serde(flatten)]
    pub role: Role,
}

impl PciDevice {
    pub fn base_class(&self) -> u8 {
        (self.class >> 16) as u8
    }
    pub fn is_vf(&self) -> bool {
        matches!(self.role, Role::Vf { .. })
    }
    pub fn is_pf(&self) -> bool {
        matches!(self.role, Role::Pf { .. })
    }
    pub fn pf(&self) -> Option<PciAddress> {
        match self.role {
            Role::Vf { pf, .. } => Some(pf),
            _ => None,
        }
    }
    pub fn vf_index(&self) -> Option<u32> {
        match self.role {
            Role::Vf { index, .. } => Some(index),
            _ => None,
        }
    }
    pub fn netdev(&self) -> Option<&str> {
        self.netdevs.first().map(String::as_str)
    }
}

/// Read one device. `role` must be known by the caller (see [`discover`]) or is derived here.
pub fn read_device(sysfs: &Sysfs, addr: PciAddress, role: Option<Role>) -> Result<PciDevice> {
    let role = match role {
        Some(r) => r,
        None => derive_role(sysfs, addr)?,
    };
    let netdevs = sysfs.netdevs(addr)?;
    let link_type = match netdevs.first() {
        Some(n) => sysfs.netdev_type(addr, n)?,
        None => None,
    };
    Ok(PciDevice {
        address: addr,
        vendor: sysfs.vendor(addr)?,
        device: sysfs.device_id(addr)?,
        class: sysfs.class(addr)?,
        driver: sysfs.driver(addr)?,
        netdevs,
        numa_node: sysfs.numa_node(addr)?,
        iommu_group: sysfs.iommu_group(addr)?,
        rdma_devices: sysfs.rdma_devices(addr)?,
        link_type,
        role,
    })
}

fn derive_role(sysfs: &Sysfs, addr: PciAddress) -> Result<Role> {
    if let Some(pf) = sysfs.physfn(addr)? {
        if let Some(index) = sysfs.vf_index(pf, addr)? {
            return Ok(Role::Vf { pf, index });
        }
    }
    if let Some(total_vfs) = sysfs.total_vfs(addr)? {
        if total_vfs > 0 {
            let num_vfs = sysfs.num_vfs(addr)?.unwrap_or(0);
            return Ok(Role::Pf { total_vfs, num_vfs });
        }
    }
    Ok(Role::Plain)
}

/// Every network (0x02) and accelerator (0x12) device, sorted by address. A device that vanishes
/// while it is read (a VF being destroyed) is skipped, not an error.
pub fn discover(sysfs: &Sysfs) -> Result<Vec<PciDevice>> {
    let addrs = sysfs.pci_devices()?;
    // First pass: classes and PF -> VF links, so each VF's index costs one readdir of its PF.
    let mut wanted = Vec::new();
    let mut vf_of: HashMap<PciAddress, (PciAddress, u32)> = HashMap::new();
    for addr in addrs {
        let class = match sysfs.class(addr) {
            Ok(c) => c,
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e),
        };
        let base = (class >> 16) as u8;
        if base != CLASS_NETWORK && base != CLASS_ACCELERATOR {
            continue;
        }
        if sysfs.total_vfs(addr)?.unwrap_or(0) > 0 {
            for (idx, vf) in sysfs.virtfns(addr)? {
                vf_of.insert(vf, (addr, idx));
            }
        }
        wanted.push(addr);
    }
    let mut out = Vec::with_capacity(wanted.len());
    for addr in wanted {
        let role = match vf_of.get(&addr) {
            Some(&(pf, index)) => Role::Vf { pf, index },
            None => match sysfs.total_vfs(addr)? {
                Some(t) if t > 0 => Role::Pf {
                    total_vfs: t,
                    num_vfs: sysfs.num_vfs(addr)?.unwrap_or(0),
                },
                _ => Role::Plain,
            },
        };
        match read_device(sysfs, addr, Some(role)) {
            Ok(d) => out.push(d),
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}
