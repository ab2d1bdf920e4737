//! A stand-in for the kernel behind a fake sysfs tree: a thread that reacts to writes of
//! `sriov_numvfs`, `driver_override` + `unbind` + `drivers_probe` the way the PCI core does, so
//! provisioning code runs unchanged against a fake tree.

use std::fs;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::fakesys::{Dev, FakeSysfs};

/// How the fake kernel behaves for one PF.
#[derive(Clone, Debug)]
pub struct FakePf {
    pub addr: String,
    pub vf_vendor: u16,
    pub vf_device: u16,
    /// The driver the kernel binds new VFs to (`None`: autoprobe off).
    pub vf_driver: Option<String>,
    /// VF netdev name prefix: VF i gets `<prefix>v<i>`.
    pub netdev_prefix: String,
    /// Create at most this many VFs whatever is asked (a firmware limit, a PF that is down).
    pub create_limit: Option<u32>,
}

/// Shared knobs tests flip while the kernel runs.
#[derive(Default)]
pub struct Knobs {
    /// Writes to `sriov_numvfs` fail with EBUSY-like behaviour: the file is left unchanged and no
    /// VF is created.
    pub refuse_numvfs: AtomicBool,
    /// Log of writes the kernel saw, e.g. `numvfs 0000:03:00.0 4`, `bind 0000:03:10.3 vfio-pci`.
    pub log: Mutex<Vec<String>>,
    /// Completed passes over the tree.
    passes: AtomicU64,
}

pub struct FakeKernel {
    stop: Arc<AtomicBool>,
    pub knobs: Arc<Knobs>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for FakeKernel {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn vf_addr(pf: &str, i: u32) -> String {
    // VF i of a PF at dddd:bb:00.0 lives at dddd:bb:(0x10 + i/8).(i%8).
    let base = &pf[..8];
    format!("{base}{:02x}.{}", 0x10 + i / 8, i % 8)
}

impl FakeKernel {
    /// Start reacting to writes below `sys`'s root. `sys` must outlive the kernel.
    pub fn start(sys: &FakeSysfs, pfs: Vec<FakePf>) -> FakeKernel {
        let root = sys.root().to_path_buf();
        let stop = Arc::new(AtomicBool::new(false));
        let knobs = Arc::new(Knobs::default());
        let (stop2, knobs2) = (stop.clone(), knobs.clone());
        // FakeSysfs only holds a TempDir; re-open the same root for the thread.
        let thread = std::thread::spawn(move || {
            let sys = FakeSysfs::attach(&root);
            while !stop2.load(Ordering::SeqCst) {
                for pf in &pfs {
                    step_pf(&sys, pf, &knobs2);
                }
                step_probe(&sys, &knobs2);
                knobs2.passes.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        FakeKernel {
            stop,
            knobs,
            thread: Some(thread),
        }
    }

    /// Wait until the kernel has looked at every file written before this call: one whole pass
    /// that started after it. What it did is then in [`FakeKernel::log`]; a check that it did
    /// nothing needs no sleep.
    pub fn settle(&self) {
        let seen = self.knobs.passes.load(Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.knobs.passes.load(Ordering::SeqCst) < seen + 2 {
            assert!(Instant::now() < deadline, "the fake kernel stopped");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    pub fn log(&self) -> Vec<String> {
        self.knobs.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

fn read(path: &std::path::Path) -> String {
    fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn step_pf(sys: &FakeSysfs, pf: &FakePf, knobs: &Knobs) {
    let dir = sys.dev_dir(&pf.addr);
    let asked: u32 = match read(&dir.join("sriov_numvfs")).parse() {
        Ok(n) => n,
        Err(_) => return,
    };
    let have = fs::read_dir(&dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("virtfn"))
                .count() as u32
        })
        .unwrap_or(0);
    if asked == have {
        return;
    }
    if let Ok(mut l) = knobs.log.lock() {
        l.push(format!("numvfs {} {asked}", pf.addr));
    }
    if knobs.refuse_numvfs.load(Ordering::SeqCst) {
        let _ = fs::write(dir.join("sriov_numvfs"), format!("{have}\n"));
        return;
    }
    if asked == 0 {
        for i in 0..have {
            let vf = vf_addr(&pf.addr, i);
            sys.remove(&vf);
            let _ = fs::remove_file(dir.join(format!("virtfn{i}")));
        }
        let _ = fs::write(dir.join("sriov_numvfs"), "0\n");
        return;
    }
    let n = pf.create_limit.map_or(asked, |l| asked.min(l));
    for i in have..n {
        let vf = vf_addr(&pf.addr, i);
        let ifname = format!("{}v{i}", pf.netdev_prefix);
        let group = 500 + u32::from(u8::from_str_radix(&pf.addr[5..7], 16).unwrap_or(0)) * 32 + i;
        let mut d = Dev::new(&vf, pf.vf_vendor, pf.vf_device).iommu_group(group);
        if let Some(drv) = &pf.vf_driver {
            d = d.driver(drv);
            if !sriov_host::provision::is_userspace_driver(drv) {
                d = d.netdev(&ifname);
            }
        }
        sys.add_vf(&pf.addr, i, &d);
    }
    // The file keeps what was written (the kernel reads back the asked count even when the
    // driver created fewer); `add_vf` rewrote it with the count created, so put it back unless
    // a newer write replaced it meanwhile.
    // (`add_vf` counts each new VF into the file: only undo our own increments.)
    if read(&dir.join("sriov_numvfs")) == (asked + n.saturating_sub(have)).to_string() {
        let _ = fs::write(dir.join("sriov_numvfs"), format!("{asked}\n"));
    }
}

fn step_probe(sys: &FakeSysfs, knobs: &Knobs) {
    let root = sys.root();
    let drivers = root.join("bus/pci/drivers");
    // unbind files
    if let Ok(rd) = fs::read_dir(&drivers) {
        for e in rd.flatten() {
            let unbind = e.path().join("unbind");
            let addr = read(&unbind);
            if !addr.is_empty() {
                let _ = fs::write(&unbind, "");
                if addr.parse::<sriov_host::PciAddress>().is_ok() {
                    sys.set_netdev(&addr, None);
                    sys.bind(&addr, None);
                    if let Ok(mut l) = knobs.log.lock() {
                        l.push(format!("unbind {addr} {}", e.file_name().to_string_lossy()));
                    }
                }
            }
        }
    }
    let probe = root.join("bus/pci/drivers_probe");
    let addr = read(&probe);
    if addr.is_empty() {
        return;
    }
    let _ = fs::write(&probe, "");
    if addr.parse::<sriov_host::PciAddress>().is_err() {
        return;
    }
    let over = read(&sys.dev_dir(&addr).join("driver_override"));
    if over.is_empty() || over == "(null)" || !drivers.join(&over).exists() {
        return;
    }
    sys.bind(&addr, Some(&over));
    if !sriov_host::provision::is_userspace_driver(&over) {
        let idx = addr.rsplit('.').next().unwrap_or("0");
        sys.set_netdev(&addr, Some(&format!("vf{}_{idx}", &addr[5..7])));
    }
    if let Ok(mut l) = knobs.log.lock() {
        l.push(format!("bind {addr} {over}"));
    }
}
