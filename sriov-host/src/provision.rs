//! VF provisioning: create VFs on a PF and bind each to the driver its pool needs, idempotently,
//! refusing to disturb VFs in use, and leaving the PF as it was when the kernel does not comply.
//!
//! The order follows what the drivers need (docs/hardware.md): the PF link goes up before
//! `sriov_numvfs` is written (bnxt silently creates nothing while its PF is down; igb VFs never
//! get carrier); changing N to M VFs writes 0 first; every step is verified by reading sysfs back
//! after the kernel's uevents, with a bounded wait.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use crate::pci::PciAddress;
use crate::sysfs::Sysfs;
use crate::uevent::UeventListener;

mod bind;
mod driver;
mod error;
mod request;

pub use driver::{is_userspace_driver, valid_driver_name, USERSPACE_DRIVERS};
pub use error::ProvisionError;
pub use request::{PfLink, PfRef, ProvisionReport, ProvisionRequest, Timeouts, VfDriverRule};

/// Carries out provisioning requests against one sysfs tree.
pub struct Provisioner<'a> {
    /// The sysfs tree to read and write.
    pub sysfs: &'a Sysfs,
    /// The PF link operations (rtnetlink on a node, a fake in tests).
    pub link: &'a dyn PfLink,
    /// Directories whose files name VFs attached to pods (the CNI's device-info files).
    pub in_use_dirs: Vec<PathBuf>,
    /// How long to wait for the kernel.
    pub timeouts: Timeouts,
    events: Option<UeventListener>,
}

impl<'a> Provisioner<'a> {
    /// A provisioner with default timeouts and no in-use directories; it waits on uevents,
    /// or polls sysfs every 50 ms when no uevent socket can be opened.
    pub fn new(sysfs: &'a Sysfs, link: &'a dyn PfLink) -> Self {
        let events = match UeventListener::open() {
            Ok(l) => Some(l),
            Err(e) => {
                debug!(error = %e, "no uevent socket; provisioning re-reads sysfs every 50 ms instead");
                None
            }
        };
        Provisioner {
            sysfs,
            link,
            in_use_dirs: Vec::new(),
            timeouts: Timeouts::default(),
            events,
        }
    }

    /// Wait until `done` holds or `limit` passes, re-checking after every uevent (or every 50 ms
    /// without a uevent socket). Returns whether `done` held.
    fn wait_for(&self, limit: Duration, mut done: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if done() {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            // A uevent can race with our first check: never sleep longer than 250 ms blind.
            let slice = (deadline - now).min(Duration::from_millis(250));
            match &self.events {
                Some(l) => {
                    let _ = l.wait(slice);
                }
                None => std::thread::sleep(slice.min(Duration::from_millis(50))),
            }
        }
    }

    fn resolve(
        &self,
        req: &ProvisionRequest,
    ) -> Result<(PciAddress, Option<String>), ProvisionError> {
        let pci = match &req.pf {
            PfRef::Pci(a) if self.sysfs.exists(*a) => *a,
            PfRef::Netdev(n) => match self.sysfs.netdev_pci(n) {
                Ok(Some(a)) => a,
                Ok(None) => return Err(ProvisionError::NoPf { pf: req.pf.clone() }),
                Err(e) => return Err(ProvisionError::Sysfs(e, req.pf.clone())),
            },
            PfRef::Pci(_) => return Err(ProvisionError::NoPf { pf: req.pf.clone() }),
        };
        let ifname = self
            .sysfs
            .netdevs(pci)
            .map_err(|e| ProvisionError::Sysfs(e, req.pf.clone()))?
            .into_iter()
            .next();
        Ok((pci, ifname))
    }

    /// Validate a request against the hardware without changing anything.
    fn validate(
        &self,
        req: &ProvisionRequest,
        pci: PciAddress,
    ) -> Result<BTreeMap<u32, String>, ProvisionError> {
        let pf = || req.pf.clone();
        let total = self
            .sysfs
            .total_vfs(pci)
            .map_err(|e| ProvisionError::Sysfs(e, pf()))?
            .ok_or(ProvisionError::NotSriov { pf: pf(), pci })?;
        if req.num_vfs > total {
            return Err(ProvisionError::TooManyVfs {
                pf: pf(),
                pci,
                asked: req.num_vfs,
                total,
            });
        }
        let mut want: BTreeMap<u32, String> = BTreeMap::new();
        for rule in &req.vf_drivers {
            if !valid_driver_name(&rule.driver) {
                return Err(ProvisionError::BadDriver {
                    pf: pf(),
                    driver: rule.driver.clone(),
                });
            }
            for i in rule.vfs.iter() {
                if i >= req.num_vfs {
                    return Err(ProvisionError::RuleOutOfRange {
                        pf: pf(),
                        index: i,
                        num_vfs: req.num_vfs,
                    });
                }
                if let Some(prev) = want.insert(i, rule.driver.clone()) {
                    return Err(ProvisionError::RuleOverlap {
                        pf: pf(),
                        index: i,
                        a: prev,
                        b: rule.driver.clone(),
                    });
                }
            }
        }
        for driver in want.values() {
            let path = self.sysfs.driver_dir(driver);
            if !path.exists() {
                return Err(ProvisionError::DriverMissing {
                    pf: pf(),
                    driver: driver.clone(),
                    path,
                });
            }
        }
        Ok(want)
    }

    /// Why `vf` counts as in use by a pod, if it does.
    pub fn in_use(&self, vf: PciAddress) -> Option<String> {
        let driver = self.sysfs.driver(vf).ok().flatten();
        if let Some(d) = &driver {
            if !is_userspace_driver(d)
                && self
                    .sysfs
                    .netdevs(vf)
                    .map(|n| n.is_empty())
                    .unwrap_or(false)
            {
                return Some(format!(
                    "bound to {d} but its netdev is not in the host network namespace"
                ));
            }
        }
        let needle = vf.to_string();
        for dir in &self.in_use_dirs {
            let Ok(rd) = std::fs::read_dir(dir) else {
                continue;
            };
            for ent in rd.flatten() {
                let path = ent.path();
                let named = ent.file_name().to_string_lossy().contains(&needle);
                let mentions = || {
                    std::fs::read_to_string(&path)
                        .map(|s| s.contains(&needle))
                        .unwrap_or(false)
                };
                if named || mentions() {
                    return Some(format!("device-info file {}", path.display()));
                }
            }
        }
        None
    }

    /// Provision one PF. Idempotent: when the PF already matches, nothing is written.
    pub fn apply(&self, req: &ProvisionRequest) -> Result<ProvisionReport, ProvisionError> {
        let pf = || req.pf.clone();
        let (pci, ifname) = self.resolve(req)?;
        let want = self.validate(req, pci)?;
        let current = self
            .sysfs
            .num_vfs(pci)
            .map_err(|e| ProvisionError::Sysfs(e, pf()))?
            .unwrap_or(0);
        let vfs = self
            .sysfs
            .virtfns(pci)
            .map_err(|e| ProvisionError::Sysfs(e, pf()))?;
        let mut report = ProvisionReport {
            pf: Some(pci),
            vfs_before: current,
            vfs_after: current,
            ..Default::default()
        };

        // The link first: a down PF makes VF creation silently fail on bnxt and igb.
        if let Some(ifname) = &ifname {
            let up = self
                .link
                .is_up(ifname)
                .map_err(|source| ProvisionError::LinkUp {
                    pf: pf(),
                    ifname: ifname.clone(),
                    source,
                })?;
            if !up {
                if req.link_up {
                    self.link
                        .set_up(ifname)
                        .map_err(|source| ProvisionError::LinkUp {
                            pf: pf(),
                            ifname: ifname.clone(),
                            source,
                        })?;
                    info!(pf = %pci, ifname, "PF link brought up");
                    report.link_raised = true;
                } else if current != req.num_vfs {
                    return Err(ProvisionError::PfDown {
                        pf: pf(),
                        ifname: ifname.clone(),
                    });
                }
            }
        }

        if current != req.num_vfs {
            if let Some((index, vf, evidence)) = vfs
                .iter()
                .find_map(|(i, a)| self.in_use(*a).map(|e| (*i, *a, e)))
            {
                return Err(ProvisionError::InUse {
                    pf: pf(),
                    what: format!("changing the VF count from {current} to {}", req.num_vfs),
                    index,
                    vf,
                    evidence,
                });
            }
            let before: BTreeMap<u32, Option<String>> = vfs
                .iter()
                .map(|(i, a)| (*i, self.sysfs.driver(*a).ok().flatten()))
                .collect();
            self.set_num_vfs(req, pci, current, req.num_vfs)
                .inspect_err(|_| {
                    self.restore(req, pci, current, &before);
                })?;
            report.vfs_after = req.num_vfs;
        }

        // VFs created just now cannot be in a pod yet.
        let fresh = report.vfs_after != report.vfs_before;
        let vfs = self
            .sysfs
            .virtfns(pci)
            .map_err(|e| ProvisionError::Sysfs(e, pf()))?;
        for (index, vf) in vfs {
            let Some(driver) = want.get(&index) else {
                continue;
            };
            let cur = self
                .sysfs
                .driver(vf)
                .map_err(|e| ProvisionError::Sysfs(e, pf()))?;
            if cur.as_deref() == Some(driver.as_str()) {
                continue;
            }
            if let Some(evidence) = self.in_use(vf).filter(|_| !fresh) {
                return Err(ProvisionError::InUse {
                    pf: pf(),
                    what: format!("binding it to {driver}"),
                    index,
                    vf,
                    evidence,
                });
            }
            self.bind(req, index, vf, driver)?;
            info!(pf = %pci, vf = %vf, index, driver, from = ?cur, "VF driver bound");
            report.rebound.push((index, vf, driver.clone()));
        }
        if !report.changed() {
            debug!(pf = %pci, num_vfs = current, "PF already provisioned as asked");
        }
        Ok(report)
    }

    /// Write `sriov_numvfs` (0 first when changing a non-zero count) and wait for the VFs.
    fn set_num_vfs(
        &self,
        req: &ProvisionRequest,
        pci: PciAddress,
        current: u32,
        n: u32,
    ) -> Result<(), ProvisionError> {
        let pf = || req.pf.clone();
        let count = || self.sysfs.virtfns(pci).map(|v| v.len() as u32).unwrap_or(0);
        if current != 0 {
            self.sysfs
                .write_attr(pci, "sriov_numvfs", "0")
                .map_err(|source| ProvisionError::WriteNumVfs {
                    pf: pf(),
                    pci,
                    value: 0,
                    source,
                })?;
            self.wait_for(self.timeouts.create, || count() == 0);
        }
        if n == 0 {
            info!(pf = %pci, "VFs removed");
            return Ok(());
        }
        let started = Instant::now();
        self.sysfs
            .write_attr(pci, "sriov_numvfs", &n.to_string())
            .map_err(|source| ProvisionError::WriteNumVfs {
                pf: pf(),
                pci,
                value: n,
                source,
            })?;
        let created = self.wait_for(self.timeouts.create, || count() >= n);
        let got = count();
        if !created || got < n {
            let hint = match self
                .sysfs
                .netdevs(pci)
                .ok()
                .and_then(|v| v.into_iter().next())
            {
                Some(ifname) if !self.link.is_up(&ifname).unwrap_or(true) => {
                    format!(" (PF {ifname} is down: bring it up or set linkUp)")
                }
                _ => " (see the kernel log for the driver's reason)".into(),
            };
            return Err(ProvisionError::Created {
                pf: pf(),
                pci,
                got,
                asked: n,
                before: current,
                hint,
            });
        }
        // Let the kernel's default drivers finish probing so later rebinds see a stable state.
        let vfs = self.sysfs.virtfns(pci).unwrap_or_default();
        let autoprobe = self
            .sysfs
            .attr_opt(pci, "sriov_drivers_autoprobe")
            .ok()
            .flatten()
            .as_deref()
            != Some("0");
        if autoprobe {
            // Bound, and for kernel netdev drivers registered: a netdev-less VF looks "in a pod".
            let bound = self.wait_for(self.timeouts.bind, || {
                vfs.iter()
                    .all(|(_, a)| match self.sysfs.driver(*a).ok().flatten() {
                        None => false,
                        Some(d) if is_userspace_driver(&d) => true,
                        Some(_) => !self.sysfs.netdevs(*a).unwrap_or_default().is_empty(),
                    })
            });
            if !bound {
                warn!(pf = %pci, "not every new VF got a driver from the kernel; continuing");
            }
        }
        info!(pf = %pci, num_vfs = n, ms = started.elapsed().as_millis() as u64, "VFs created");
        Ok(())
    }

    /// Put a PF back to `count` VFs with their previous drivers, best-effort, after a failure.
    fn restore(
        &self,
        req: &ProvisionRequest,
        pci: PciAddress,
        count: u32,
        drivers: &BTreeMap<u32, Option<String>>,
    ) {
        let now = self.sysfs.virtfns(pci).map(|v| v.len() as u32).unwrap_or(0);
        if now != count {
            if let Err(e) = self.set_num_vfs(req, pci, now, count) {
                warn!(pf = %pci, error = %e, "restoring the previous VF count failed");
            }
        }
        for (index, vf) in self.sysfs.virtfns(pci).unwrap_or_default() {
            if let Some(Some(d)) = drivers.get(&index) {
                if self.sysfs.driver(vf).ok().flatten().as_deref() != Some(d.as_str()) {
                    if let Err(e) = self.bind(req, index, vf, d) {
                        warn!(pf = %pci, vf = %vf, error = %e, "restoring a VF's driver failed");
                    }
                }
            }
        }
    }
}
