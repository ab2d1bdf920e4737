//! The emulated lab's guest, for the Rust tests run in it (`tests/tests/lab_*.rs`, built with
//! the `lab` feature): the igb PF and its VFs as sysfs shows them, checks that record and
//! report, and the real device plugin driven by the test kubelet ([`dp`]).
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub mod dp;

pub struct Lab {
    pub pf_pci: String,
    pub pf_if: String,
    pub pf_sys: PathBuf,
    pub bin: PathBuf,
    pub out: PathBuf,
    pub t0: Instant,
    pub failed: Vec<String>,
}

/// The lab; a panic outside the guest.
pub fn lab() -> Lab {
    assert!(
        std::env::var_os("SRIOV_LAB").is_some(),
        "not in the emulated lab: run scripts/lab.sh 10 50 60"
    );
    let mut pf = None;
    for e in fs::read_dir("/sys/bus/pci/devices").unwrap().flatten() {
        let d = e.path();
        let rd = |n: &str| fs::read_to_string(d.join(n)).unwrap_or_default();
        if rd("vendor").trim() == "0x8086" && rd("device").trim() == "0x10c9" {
            pf = Some(d);
            break;
        }
    }
    let pf_sys = pf.expect("an igb PF (8086:10c9) on the lab guest's PCI bus");
    let pf_if = first_entry(&pf_sys.join("net")).expect("the igb PF has a netdev");
    let bin = PathBuf::from(std::env::var("LAB_BIN").expect("LAB_BIN names target/release"));
    let out = PathBuf::from(std::env::var("LAB_OUT").unwrap_or_else(|_| "/tmp/lab-out".into()));
    fs::create_dir_all(&out).unwrap();
    let pf_pci = pf_sys.file_name().unwrap().to_string_lossy().into_owned();
    Lab {
        pf_pci,
        pf_if,
        pf_sys,
        bin,
        out,
        t0: Instant::now(),
        failed: Vec::new(),
    }
}

/// The first name in `dir`, in sorted order.
pub fn first_entry(dir: &Path) -> Option<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v.into_iter().next()
}

/// A sysfs file's content, trimmed; empty when unreadable.
pub fn read(p: impl AsRef<Path>) -> String {
    fs::read_to_string(p)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The wall-clock time of day, UTC, as the plugin's log prints it (`19:46:24.040215`).
pub fn utc_now() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let s = t.as_secs() % 86_400;
    format!(
        "{:02}:{:02}:{:02}.{:06}",
        s / 3600,
        s / 60 % 60,
        s % 60,
        t.subsec_micros()
    )
}

/// `d` as seconds with two decimals.
pub fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

impl Lab {
    pub fn step(&self, what: &str) {
        println!("\n[{:6.1}s] -- {what}", self.t0.elapsed().as_secs_f64());
    }

    pub fn note(&self, what: &str) {
        println!("[{:6.1}s]    {what}", self.t0.elapsed().as_secs_f64());
    }

    /// Record a check; the test fails at `finish` if any check failed.
    pub fn check(&mut self, what: &str, ok: bool, detail: &str) {
        if ok {
            println!("  OK    {what}");
        } else {
            println!("  FAIL  {what}: {detail}");
            self.failed.push(what.to_string());
        }
    }

    /// A check whose failure ends the test (later steps depend on it).
    pub fn require(&mut self, what: &str, ok: bool, detail: &str) {
        self.check(what, ok, detail);
        if !ok {
            self.finish();
        }
    }

    pub fn finish(&self) {
        if !self.failed.is_empty() {
            panic!(
                "{} check(s) failed: {}",
                self.failed.len(),
                self.failed.join("; ")
            );
        }
    }

    pub fn num_vfs(&self) -> u32 {
        read(self.pf_sys.join("sriov_numvfs")).parse().unwrap_or(0)
    }

    pub fn pf_up(&self) -> bool {
        let flags = read(format!("/sys/class/net/{}/flags", self.pf_if));
        u32::from_str_radix(flags.trim_start_matches("0x"), 16).unwrap_or(0) & 1 == 1
    }

    /// Every VF of the PF, by index.
    pub fn vfs(&self) -> Vec<Vf> {
        let mut v = Vec::new();
        for i in 0..self.num_vfs() {
            let link = self.pf_sys.join(format!("virtfn{i}"));
            let Ok(target) = fs::read_link(&link) else {
                continue;
            };
            let pci = target.file_name().unwrap().to_string_lossy().into_owned();
            let dev = PathBuf::from("/sys/bus/pci/devices").join(&pci);
            let driver = fs::read_link(dev.join("driver"))
                .ok()
                .map(|d| d.file_name().unwrap().to_string_lossy().into_owned());
            let group = fs::read_link(dev.join("iommu_group"))
                .ok()
                .map(|g| g.file_name().unwrap().to_string_lossy().into_owned());
            let netdev = first_entry(&dev.join("net"));
            let (ifindex, mac) = match &netdev {
                Some(n) => (
                    read(format!("/sys/class/net/{n}/ifindex")),
                    read(format!("/sys/class/net/{n}/address")),
                ),
                None => (String::new(), String::new()),
            };
            v.push(Vf {
                index: i,
                pci,
                driver,
                group,
                netdev,
                ifindex,
                mac,
            });
        }
        v
    }

    pub fn print_vfs(&self) {
        for vf in self.vfs() {
            self.note(&vf.to_string());
        }
    }

    /// The PF's view of VF `i` (`ip link show <pf>`), whitespace-normalised.
    pub fn vf_line(&self, i: u32) -> String {
        let out = sh("ip", &["link", "show", &self.pf_if]);
        let prefix = format!("vf {i} ");
        out.lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_default()
    }

    pub fn dp_bin(&self) -> PathBuf {
        self.bin.join("sriov-device-plugin")
    }

    pub fn log_path(&self) -> PathBuf {
        self.out.join("device-plugin.log")
    }
}

/// What sysfs says about one VF.
#[derive(Debug, Clone, PartialEq)]
pub struct Vf {
    pub index: u32,
    pub pci: String,
    pub driver: Option<String>,
    pub group: Option<String>,
    pub netdev: Option<String>,
    pub ifindex: String,
    pub mac: String,
}

impl std::fmt::Display for Vf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "VF{} {} driver={} group={} netdev={} ifindex={} mac={}",
            self.index,
            self.pci,
            self.driver.as_deref().unwrap_or("-"),
            self.group.as_deref().unwrap_or("-"),
            self.netdev.as_deref().unwrap_or("-"),
            if self.ifindex.is_empty() {
                "-"
            } else {
                &self.ifindex
            },
            if self.mac.is_empty() { "-" } else { &self.mac },
        )
    }
}

/// Run a command; its stdout, or a panic naming it and its stderr.
pub fn sh(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
