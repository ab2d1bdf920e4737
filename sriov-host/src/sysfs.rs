//! The sysfs tree, rooted at a path: the real `/sys` in production, a kernel-shaped tree in a
//! temporary directory in tests. Nothing else in the project names `/sys`.
//!
//! Identity comes from PCI, never from netdevs: a VF whose netdev moved into a pod is still found
//! here through its `physfn`/`virtfnN` links.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::pci::{PciAddress, PciId};

/// Errors from reading or writing the tree. Each carries the path it concerns.
#[derive(Debug, thiserror::Error)]
pub enum SysfsError {
    /// Reading, writing or listing a path failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The kernel's error (`ENOENT` when the device went away, `EACCES` without root).
        source: io::Error,
    },
    /// A file held something other than the kernel format we expect.
    #[error("{path}: unexpected content {content:?}: {what}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What it held, trimmed.
        content: String,
        /// What was expected, e.g. `a VF count`.
        what: &'static str,
    },
    /// No `bus/pci/devices/<addr>` entry: the device is absent or was removed.
    #[error("PCI device {0} not found in sysfs")]
    NoDevice(PciAddress),
}

impl SysfsError {
    /// An [`SysfsError::Io`] for `path`.
    pub fn io(path: &Path, source: io::Error) -> Self {
        SysfsError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
    /// True when the error means "the file or device is not there".
    pub fn is_not_found(&self) -> bool {
        match self {
            SysfsError::Io { source, .. } => source.kind() == io::ErrorKind::NotFound,
            SysfsError::NoDevice(_) => true,
            SysfsError::Parse { .. } => false,
        }
    }
}

/// A result whose error defaults to [`SysfsError`].
pub type Result<T, E = SysfsError> = std::result::Result<T, E>;

/// A sysfs tree rooted at a path.
#[derive(Clone, Debug)]
pub struct Sysfs {
    root: PathBuf,
}

impl Default for Sysfs {
    fn default() -> Self {
        Sysfs::new("/sys")
    }
}

impl Sysfs {
    /// A tree rooted at `root` (`/sys` on a node, a tempdir in tests); nothing is checked yet.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Sysfs { root: root.into() }
    }

    /// The root path.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/bus/pci/devices/<addr>`; the address is a validated value, so this cannot escape.
    pub fn pci_dir(&self, addr: PciAddress) -> PathBuf {
        self.root.join("bus/pci/devices").join(addr.to_string())
    }

    /// `<root>/bus/pci/drivers/<driver>`; the caller must have validated `driver` as a module
    /// name, since it becomes a path component.
    pub fn driver_dir(&self, driver: &str) -> PathBuf {
        self.root.join("bus/pci/drivers").join(driver)
    }

    /// Whether the device is present now.
    pub fn exists(&self, addr: PciAddress) -> bool {
        self.pci_dir(addr).exists()
    }

    /// Every PCI device listed under `bus/pci/devices`, sorted by address. Names that are not PCI
    /// addresses are skipped.
    pub fn pci_devices(&self) -> Result<Vec<PciAddress>> {
        let dir = self.root.join("bus/pci/devices");
        let mut out: Vec<PciAddress> = read_dir_names(&dir)?
            .into_iter()
            .filter_map(|n| n.parse().ok())
            .collect();
        out.sort();
        Ok(out)
    }

    /// A device attribute, trimmed.
    pub fn attr(&self, addr: PciAddress, name: &str) -> Result<String> {
        let path = self.pci_dir(addr).join(name);
        match fs::read_to_string(&path) {
            Ok(s) => Ok(s.trim().to_string()),
            Err(e) if e.kind() == io::ErrorKind::NotFound && !self.exists(addr) => {
                Err(SysfsError::NoDevice(addr))
            }
            Err(e) => Err(SysfsError::io(&path, e)),
        }
    }

    /// A device attribute, or `None` when the file does not exist.
    pub fn attr_opt(&self, addr: PciAddress, name: &str) -> Result<Option<String>> {
        match self.attr(addr, name) {
            Ok(v) => Ok(Some(v)),
            Err(SysfsError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn attr_parse<T>(
        &self,
        addr: PciAddress,
        name: &str,
        what: &'static str,
        f: impl Fn(&str) -> Option<T>,
    ) -> Result<Option<T>> {
        match self.attr_opt(addr, name)? {
            None => Ok(None),
            Some(s) => f(&s).map(Some).ok_or_else(|| SysfsError::Parse {
                path: self.pci_dir(addr).join(name),
                content: s,
                what,
            }),
        }
    }

    /// The `vendor` ID.
    pub fn vendor(&self, addr: PciAddress) -> Result<PciId> {
        self.id_attr(addr, "vendor")
    }

    /// The `device` ID.
    pub fn device_id(&self, addr: PciAddress) -> Result<PciId> {
        self.id_attr(addr, "device")
    }

    fn id_attr(&self, addr: PciAddress, name: &str) -> Result<PciId> {
        let s = self.attr(addr, name)?;
        s.parse().map_err(|_| SysfsError::Parse {
            path: self.pci_dir(addr).join(name),
            content: s,
            what: "a PCI ID like 0x14e4",
        })
    }

    /// The 24-bit class code (`0x020000` for Ethernet).
    pub fn class(&self, addr: PciAddress) -> Result<u32> {
        let s = self.attr(addr, "class")?;
        parse_hex(&s).ok_or_else(|| SysfsError::Parse {
            path: self.pci_dir(addr).join("class"),
            content: s,
            what: "a class code like 0x020000",
        })
    }

    /// `sriov_totalvfs`; `None` when the device is not SR-IOV capable.
    pub fn total_vfs(&self, addr: PciAddress) -> Result<Option<u32>> {
        self.attr_parse(addr, "sriov_totalvfs", "a VF count", |s| s.parse().ok())
    }

    /// `sriov_numvfs`, the VFs enabled now; `None` when the device is not SR-IOV capable.
    pub fn num_vfs(&self, addr: PciAddress) -> Result<Option<u32>> {
        self.attr_parse(addr, "sriov_numvfs", "a VF count", |s| s.parse().ok())
    }

    /// The NUMA node, or `None` when the platform reports none (`-1`) or the file is absent.
    pub fn numa_node(&self, addr: PciAddress) -> Result<Option<u32>> {
        let v = self.attr_parse(addr, "numa_node", "a NUMA node number", |s| {
            s.parse::<i64>().ok()
        })?;
        Ok(v.and_then(|n| u32::try_from(n).ok()))
    }

    /// The bound driver's name (the `driver` link's target name), `None` when unbound.
    pub fn driver(&self, addr: PciAddress) -> Result<Option<String>> {
        self.link_name(&self.pci_dir(addr).join("driver"))
    }

    /// The IOMMU group number, `None` when the device has no group (no IOMMU).
    pub fn iommu_group(&self, addr: PciAddress) -> Result<Option<u32>> {
        let path = self.pci_dir(addr).join("iommu_group");
        match self.link_name(&path)? {
            None => Ok(None),
            Some(n) => n.parse().map(Some).map_err(|_| SysfsError::Parse {
                path,
                content: n,
                what: "an IOMMU group number",
            }),
        }
    }

    /// For a VF, the PF's address (`physfn` link).
    pub fn physfn(&self, addr: PciAddress) -> Result<Option<PciAddress>> {
        self.link_addr(&self.pci_dir(addr).join("physfn"))
    }

    /// For a PF, its VFs as `(index, address)` from the `virtfnN` links, sorted by index.
    pub fn virtfns(&self, pf: PciAddress) -> Result<Vec<(u32, PciAddress)>> {
        let dir = self.pci_dir(pf);
        let mut out = Vec::new();
        for name in read_dir_names(&dir)? {
            let Some(idx) = name
                .strip_prefix("virtfn")
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(vf) = self.link_addr(&dir.join(&name))? {
                out.push((idx, vf));
            }
        }
        out.sort();
        Ok(out)
    }

    /// The VF index of `vf` on its PF: the `virtfnN` link of the PF that points at it.
    pub fn vf_index(&self, pf: PciAddress, vf: PciAddress) -> Result<Option<u32>> {
        Ok(self
            .virtfns(pf)?
            .into_iter()
            .find(|(_, a)| *a == vf)
            .map(|(i, _)| i))
    }

    /// Netdev names in the device's `net/` directory, as this network namespace sees them.
    pub fn netdevs(&self, addr: PciAddress) -> Result<Vec<String>> {
        let mut v = match read_dir_names(&self.pci_dir(addr).join("net")) {
            Ok(v) => v,
            Err(e) if e.is_not_found() => Vec::new(),
            Err(e) => return Err(e),
        };
        v.sort();
        Ok(v)
    }

    /// RDMA devices in the device's `infiniband/` directory.
    pub fn rdma_devices(&self, addr: PciAddress) -> Result<Vec<String>> {
        match read_dir_names(&self.pci_dir(addr).join("infiniband")) {
            Ok(mut v) => {
                v.sort();
                Ok(v)
            }
            Err(e) if e.is_not_found() => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// The ARPHRD link type of a netdev (`net/<if>/type`): 1 = ether, 32 = infiniband.
    pub fn netdev_type(&self, addr: PciAddress, ifname: &str) -> Result<Option<u32>> {
        let path = self.pci_dir(addr).join("net").join(ifname).join("type");
        match fs::read_to_string(&path) {
            Ok(s) => Ok(s.trim().parse().ok()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(SysfsError::io(&path, e)),
        }
    }

    /// The PCI device behind a netdev name (`class/net/<if>` -> `.../<addr>/net/<if>`), `None`
    /// for virtual netdevs.
    pub fn netdev_pci(&self, ifname: &str) -> Result<Option<PciAddress>> {
        if ifname.is_empty() || ifname.contains('/') || ifname == "." || ifname == ".." {
            return Ok(None);
        }
        let link = self.root.join("class/net").join(ifname);
        let target = match fs::read_link(&link) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) if e.raw_os_error() == Some(nix::errno::Errno::EINVAL as i32) => {
                return Ok(None)
            } // not a link
            Err(e) => return Err(SysfsError::io(&link, e)),
        };
        // .../devices/pci0000:00/0000:03:00.0/net/<if>: the component before "net".
        let comps: Vec<_> = target.components().collect();
        Ok(comps
            .iter()
            .rev()
            .skip_while(|c| c.as_os_str() != "net")
            .nth(1)
            .and_then(|c| c.as_os_str().to_str())
            .and_then(|s| s.parse().ok()))
    }

    /// Write an attribute of a device (`sriov_numvfs`, `driver_override`).
    pub fn write_attr(&self, addr: PciAddress, name: &str, value: &str) -> Result<()> {
        let path = self.pci_dir(addr).join(name);
        fs::write(&path, value).map_err(|e| SysfsError::io(&path, e))
    }

    /// Write to a file below the root (`bus/pci/drivers/<d>/unbind`, `bus/pci/drivers_probe`).
    pub fn write_rel(&self, rel: &str, value: &str) -> Result<()> {
        let path = self.root.join(rel);
        fs::write(&path, value).map_err(|e| SysfsError::io(&path, e))
    }

    fn link_name(&self, link: &Path) -> Result<Option<String>> {
        match fs::read_link(link) {
            Ok(t) => Ok(t.file_name().and_then(|n| n.to_str()).map(str::to_string)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(SysfsError::io(link, e)),
        }
    }

    fn link_addr(&self, link: &Path) -> Result<Option<PciAddress>> {
        match self.link_name(link)? {
            None => Ok(None),
            Some(n) => n.parse().map(Some).map_err(|_| SysfsError::Parse {
                path: link.to_path_buf(),
                content: n,
                what: "a link to a PCI device",
            }),
        }
    }
}

fn read_dir_names(dir: &Path) -> Result<Vec<String>> {
    let rd = fs::read_dir(dir).map_err(|e| SysfsError::io(dir, e))?;
    let mut out = Vec::new();
    for ent in rd {
        let ent = ent.map_err(|e| SysfsError::io(dir, e))?;
        if let Some(n) = ent.file_name().to_str() {
            out.push(n.to_string());
        }
    }
    Ok(out)
}

fn parse_hex(s: &str) -> Option<u32> {
    let t = s.strip_prefix("0x").unwrap_or(s);
    u32::from_str_radix(t, 16).ok()
}
