//! Kernel-shaped fake sysfs trees (see docs/CONTRACT.md, "The sysfs tree"): real directories,
//! files and relative symlinks laid out exactly as the kernel does, so code under test follows
//! links instead of guessing.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use sriov_host::{PciAddress, Sysfs};

/// A fake sysfs tree in a temporary directory (removed on drop).
pub struct FakeSysfs {
    root: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

/// One PCI device to lay out.
#[derive(Clone, Debug)]
pub struct Dev<'a> {
    pub addr: &'a str,
    pub vendor: u16,
    pub device: u16,
    pub class: u32,
    pub driver: Option<&'a str>,
    pub netdev: Option<&'a str>,
    pub numa: i32,
    pub iommu_group: Option<u32>,
}

impl<'a> Dev<'a> {
    pub fn new(addr: &'a str, vendor: u16, device: u16) -> Self {
        Dev {
            addr,
            vendor,
            device,
            class: 0x020000,
            driver: None,
            netdev: None,
            numa: -1,
            iommu_group: None,
        }
    }
    pub fn driver(mut self, d: &'a str) -> Self {
        self.driver = Some(d);
        self
    }
    pub fn netdev(mut self, n: &'a str) -> Self {
        self.netdev = Some(n);
        self
    }
    pub fn numa(mut self, n: i32) -> Self {
        self.numa = n;
        self
    }
    pub fn iommu_group(mut self, g: u32) -> Self {
        self.iommu_group = Some(g);
        self
    }
    pub fn class(mut self, c: u32) -> Self {
        self.class = c;
        self
    }
}

/// Where fake trees go: `$SRIOV_TEST_TMPDIR`, else `/dev/shm` (tmpfs, like sysfs: a 1,024-VF tree
/// is thousands of symlinks), else the system temporary directory.
pub fn fast_tmp() -> PathBuf {
    if let Some(d) = std::env::var_os("SRIOV_TEST_TMPDIR") {
        return PathBuf::from(d);
    }
    let shm = Path::new("/dev/shm");
    let writable = fs::metadata(shm)
        .map(|m| m.is_dir() && !m.permissions().readonly())
        .unwrap_or(false);
    if writable {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

fn pa(s: &str) -> PciAddress {
    s.parse().unwrap_or_else(|e| panic!("test tree: {e}"))
}

impl Default for FakeSysfs {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeSysfs {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("fakesys")
            .tempdir_in(fast_tmp())
            .expect("tempdir");
        let f = FakeSysfs {
            root: dir.path().to_path_buf(),
            _dir: Some(dir),
        };
        f.init();
        f
    }

    /// A tree at `root` (created if missing) that outlives this handle: for trees used by
    /// other processes after the builder exits (`fake-sriov-node`).
    pub fn create_at(root: &Path) -> Self {
        let f = FakeSysfs::attach(root);
        f.init();
        f
    }

    fn init(&self) {
        let f = self;
        for d in [
            "bus/pci/devices",
            "bus/pci/drivers",
            "devices/pci0000:00",
            "class/net",
            "kernel/iommu_groups",
        ] {
            fs::create_dir_all(f.root().join(d)).expect("mkdir");
        }
        fs::write(f.root().join("bus/pci/drivers_probe"), "").expect("drivers_probe");
    }

    /// A second handle on an existing tree (not removed when dropped).
    pub fn attach(root: &Path) -> Self {
        FakeSysfs {
            root: root.to_path_buf(),
            _dir: None,
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn sysfs(&self) -> Sysfs {
        Sysfs::new(self.root())
    }

    /// `devices/pci0000:00/<addr>`: the real directory of a device.
    pub fn dev_dir(&self, addr: &str) -> PathBuf {
        self.root().join("devices/pci0000:00").join(addr)
    }

    fn write(&self, path: PathBuf, content: &str) {
        fs::write(&path, content).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }

    fn link(&self, target: &str, at: PathBuf) {
        let _ = fs::remove_file(&at);
        symlink(target, &at).unwrap_or_else(|e| panic!("{}: {e}", at.display()));
    }

    /// Lay out one device (no SR-IOV role).
    pub fn add(&self, d: &Dev) -> &Self {
        let a = pa(d.addr).to_string();
        let dir = self.dev_dir(&a);
        fs::create_dir_all(&dir).expect("mkdir device");
        self.write(dir.join("vendor"), &format!("0x{:04x}\n", d.vendor));
        self.write(dir.join("device"), &format!("0x{:04x}\n", d.device));
        self.write(dir.join("class"), &format!("0x{:06x}\n", d.class));
        self.write(dir.join("numa_node"), &format!("{}\n", d.numa));
        self.write(dir.join("driver_override"), "(null)\n");
        self.link(
            &format!("../../../devices/pci0000:00/{a}"),
            self.root().join("bus/pci/devices").join(&a),
        );
        if let Some(g) = d.iommu_group {
            let gdir = self.root().join(format!("kernel/iommu_groups/{g}/devices"));
            fs::create_dir_all(&gdir).expect("mkdir group");
            self.link(
                &format!("../../../../devices/pci0000:00/{a}"),
                gdir.join(&a),
            );
            self.link(
                &format!("../../../kernel/iommu_groups/{g}"),
                dir.join("iommu_group"),
            );
        }
        self.bind(d.addr, d.driver);
        self.set_netdev(d.addr, d.netdev);
        self
    }

    /// Lay out a PF with `total` possible VFs and none created.
    pub fn add_pf(&self, d: &Dev, total: u32) -> &Self {
        self.add(d);
        let dir = self.dev_dir(&pa(d.addr).to_string());
        self.write(dir.join("sriov_totalvfs"), &format!("{total}\n"));
        self.write(dir.join("sriov_numvfs"), "0\n");
        self
    }

    /// Lay out VF number `index` of `pf` (which must exist) and update `sriov_numvfs`.
    pub fn add_vf(&self, pf: &str, index: u32, d: &Dev) -> &Self {
        self.add(d);
        let (pf, vf) = (pa(pf).to_string(), pa(d.addr).to_string());
        let pdir = self.dev_dir(&pf);
        let link = pdir.join(format!("virtfn{index}"));
        let is_new = fs::symlink_metadata(&link).is_err();
        self.link(&format!("../{vf}"), link);
        self.link(&format!("../{pf}"), self.dev_dir(&vf).join("physfn"));
        if is_new {
            let n: u32 = fs::read_to_string(pdir.join("sriov_numvfs"))
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0);
            self.write(pdir.join("sriov_numvfs"), &format!("{}\n", n + 1));
        }
        self
    }

    /// Bind `addr` to `driver` (or unbind it with `None`): the `driver` link and the driver's
    /// directory with its `bind`/`unbind` files.
    pub fn bind(&self, addr: &str, driver: Option<&str>) -> &Self {
        let a = pa(addr).to_string();
        let link = self.dev_dir(&a).join("driver");
        let _ = fs::remove_file(&link);
        if let Some(drv) = driver {
            let ddir = self.root().join("bus/pci/drivers").join(drv);
            fs::create_dir_all(&ddir).expect("mkdir driver");
            for f in ["bind", "unbind", "new_id"] {
                if !ddir.join(f).exists() {
                    self.write(ddir.join(f), "");
                }
            }
            self.link(&format!("../../../bus/pci/drivers/{drv}"), link);
        }
        self
    }

    /// Give `addr` the netdev `name` in this namespace (or none): its `net/<name>` directory and
    /// the `class/net/<name>` link, and `net/<name>/device` back to the device. An existing netdev of the device is removed first.
    pub fn set_netdev(&self, addr: &str, name: Option<&str>) -> &Self {
        let a = pa(addr).to_string();
        let net = self.dev_dir(&a).join("net");
        if let Ok(rd) = fs::read_dir(&net) {
            for e in rd.flatten() {
                let _ = fs::remove_file(self.root().join("class/net").join(e.file_name()));
            }
        }
        let _ = fs::remove_dir_all(&net);
        if let Some(n) = name {
            fs::create_dir_all(net.join(n)).expect("mkdir net");
            self.write(net.join(n).join("type"), "1\n");
            // As in sysfs: net/<name>/device leads back to the device (upstream sriov-cni
            // reads class/net/<pf>/device/...).
            self.link(&format!("../../../{a}"), net.join(n).join("device"));
            self.link(
                &format!("../../devices/pci0000:00/{a}/net/{n}"),
                self.root().join("class/net").join(n),
            );
        }
        self
    }

    /// Remove a device as hot-unplug or VF destruction would.
    pub fn remove(&self, addr: &str) -> &Self {
        let a = pa(addr).to_string();
        self.set_netdev(&a, None);
        let _ = fs::remove_file(self.root().join("bus/pci/devices").join(&a));
        let _ = fs::remove_dir_all(self.dev_dir(&a));
        self
    }

    /// Add an RDMA device (`infiniband/<name>`) to a device.
    pub fn add_rdma(&self, addr: &str, name: &str) -> &Self {
        let a = pa(addr).to_string();
        fs::create_dir_all(self.dev_dir(&a).join("infiniband").join(name)).expect("mkdir rdma");
        self
    }
}

/// Broadcom Stingray PS225 IDs.
pub const BRCM: u16 = 0x14e4;
pub const PS225_PF: u16 = 0xd802;
pub const PS225_VF: u16 = 0xd800;

/// Two PS225 PFs (`0000:03:00.0` `enp3s0f0np0` on NUMA 0, `0000:04:00.0` `enp4s0f0np0` on NUMA 1),
/// each with 8 VFs at `0000:0b:0i.f` style addresses: VFs 0-5 bound to `bnxt_en` with netdevs,
/// VFs 6-7 bound to `vfio-pci` with their own IOMMU groups.
///
/// VF `i` of PF `p` (0 or 1) is at `0000:0{3+p}:{0x10 + i / 8:02x}.{i % 8}` → `0000:03:10.0` ..
/// `0000:03:10.7`, `0000:04:10.0` .. `0000:04:10.7`; its netdev is `enp{3+p}s0f0v{i}`.
pub fn ps225_two_pfs() -> FakeSysfs {
    let f = FakeSysfs::new();
    lay_out_ps225(&f);
    f
}

/// Lay out the devices of [`ps225_two_pfs`] in `f`.
pub fn lay_out_ps225(f: &FakeSysfs) {
    for p in 0..2u32 {
        let bus = 3 + p;
        let pf = format!("0000:{bus:02x}:00.0");
        let pf_if = format!("enp{bus}s0f0np0");
        f.add_pf(
            &Dev::new(&pf, BRCM, PS225_PF)
                .driver("bnxt_en")
                .netdev(&pf_if)
                .numa(p as i32),
            16,
        );
        for i in 0..8u32 {
            let vf = format!("0000:{bus:02x}:10.{i}");
            let vf_if = format!("enp{bus}s0f0v{i}");
            let mut d = Dev::new(&vf, BRCM, PS225_VF)
                .numa(p as i32)
                .iommu_group(100 + p * 8 + i);
            if i < 6 {
                d = d.driver("bnxt_en").netdev(&vf_if);
            } else {
                d = d.driver("vfio-pci");
            }
            f.add_vf(&pf, i, &d);
        }
    }
}

/// `pfs` PFs with `vfs_per_pf` VFs each (all bound to a netdev driver), for scale tests: PF `p` at
/// `0000:{0x20 + p}:00.0`, VF `i < 248` at bus `0x20 + p`, device `1 + i / 8`, function `i % 8`;
/// VFs from 248 on continue on bus `0xa0 + p` from device 0 (up to 504 VFs per PF).
pub fn scale_tree(pfs: u32, vfs_per_pf: u32) -> FakeSysfs {
    assert!(
        vfs_per_pf <= 31 * 8 + 32 * 8,
        "at most 504 VFs per PF in this layout"
    );
    let f = FakeSysfs::new();
    for p in 0..pfs {
        let bus = 0x20 + p;
        let pf = format!("0000:{bus:02x}:00.0");
        let pf_if = format!("ens{p}f0");
        f.add_pf(
            &Dev::new(&pf, 0x8086, 0x1592)
                .driver("ice")
                .netdev(&pf_if)
                .numa((p % 2) as i32),
            vfs_per_pf,
        );
        for i in 0..vfs_per_pf {
            let vf = if i < 248 {
                format!("0000:{bus:02x}:{:02x}.{}", 1 + i / 8, i % 8)
            } else {
                let j = i - 248;
                format!("0000:{:02x}:{:02x}.{}", 0xa0 + p, j / 8, j % 8)
            };
            let vf_if = format!("ens{p}f0v{i}");
            f.add_vf(
                &pf,
                i,
                &Dev::new(&vf, 0x8086, 0x1889)
                    .driver("iavf")
                    .netdev(&vf_if)
                    .numa((p % 2) as i32)
                    .iommu_group(1000 + p * 512 + i),
            );
        }
    }
    f
}
