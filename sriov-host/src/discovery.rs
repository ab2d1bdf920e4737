//! Discovery: every PCI network device and accelerator in a sysfs tree, with its SR-IOV role.

use std::collections::HashMap;

use serde::Serialize;

use crate::pci::{PciAddress, PciId};
use crate::sysfs::{Result, Sysfs};

/// PCI base class 0x02, network controllers (Ethernet, InfiniBand): one of the two classes
/// discovery keeps.
pub const CLASS_NETWORK: u8 = 0x02;
/// PCI base class 0x12, processing accelerators (crypto, compression, FPGA offload).
pub const CLASS_ACCELERATOR: u8 = 0x12;

/// What a device is in SR-IOV terms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "role", rename_all = "lowercase")]
pub enum Role {
    /// A physical function able to host VFs.
    Pf {
        /// The most VFs the device offers (`sriov_totalvfs`).
        total_vfs: u32,
        /// The VFs enabled now (`sriov_numvfs`).
        num_vfs: u32,
    },
    /// A virtual function: its PF and its index there (`virtfnN`).
    Vf {
        /// The PF it belongs to (`physfn`).
        pf: PciAddress,
        /// Its index on the PF: N in the PF's `virtfnN` link.
        index: u32,
    },
    /// Neither (a plain NIC, or an SR-IOV-incapable device).
    Plain,
}

/// One PCI device as sysfs shows it now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PciDevice {
    /// Its PCI address (the sysfs directory name).
    pub address: PciAddress,
    /// The `vendor` ID.
    pub vendor: PciId,
    /// The `device` ID.
    pub device: PciId,
    /// The 24-bit `class` code: base class, subclass, programming interface.
    pub class: u32,
    /// The bound driver (the `driver` link's target name), `None` when unbound.
    pub driver: Option<String>,
    /// Netdevs in this network namespace (empty for a VF inside a pod or bound to vfio-pci).
    pub netdevs: Vec<String>,
    /// The NUMA node, `None` when the kernel reports -1 (no affinity) or no file.
    pub numa_node: Option<u32>,
    /// The IOMMU group number, `None` when the IOMMU is off.
    pub iommu_group: Option<u32>,
    /// RDMA devices on it (`infiniband/*`), e.g. `mlx5_0`.
    pub rdma_devices: Vec<String>,
    /// ARPHRD type of the first netdev (1 ether, 32 infiniband), when it has one here.
    pub link_type: Option<u32>,
    /// PF, VF or plain.
    #[serde(flatten)]
    pub role: Role,
}

impl PciDevice {
    /// The PCI base class (the top byte of `class`), e.g. [`CLASS_NETWORK`].
    pub fn base_class(&self) -> u8 {
        (self.class >> 16) as u8
    }
    /// Whether it is a VF.
    pub fn is_vf(&self) -> bool {
        matches!(self.role, Role::Vf { .. })
    }
    /// Whether it is an SR-IOV-capable PF.
    pub fn is_pf(&self) -> bool {
        matches!(self.role, Role::Pf { .. })
    }
    /// The PF of a VF; `None` for anything else.
    pub fn pf(&self) -> Option<PciAddress> {
        match self.role {
            Role::Vf { pf, .. } => Some(pf),
            _ => None,
        }
    }
    /// The index of a VF on its PF; `None` for anything else.
    pub fn vf_index(&self) -> Option<u32> {
        match self.role {
            Role::Vf { index, .. } => Some(index),
            _ => None,
        }
    }
    /// Its first netdev in this network namespace, if any.
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
