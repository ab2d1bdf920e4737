//! Applying the config's `provision` section: VFs created and bound before pools are built, at
//! start and after every valid config change. The work itself is `sriov_host::provision`; this
//! module supplies the PF link over rtnetlink, the in-use evidence directory, and a per-PF
//! plan/state summary for the log and `inventory`.

use std::fmt;
use std::path::{Path, PathBuf};

use sriov_host::netlink::{Netlink, NetlinkError};
use sriov_host::provision::{
    PfLink, PfRef, ProvisionError, ProvisionReport, ProvisionRequest, Provisioner,
};
use sriov_host::Sysfs;

/// The PF link over rtnetlink, in the plugin's network namespace. A socket per call: these calls
/// are rare and a failed socket must not poison later ones.
pub struct NetlinkPfLink;

impl PfLink for NetlinkPfLink {
    fn is_up(&self, ifname: &str) -> Result<bool, NetlinkError> {
        Ok(Netlink::open()?.link_by_name(ifname)?.up)
    }

    fn set_up(&self, ifname: &str) -> Result<(), NetlinkError> {
        let mut nl = Netlink::open()?;
        let link = nl.link_by_name(ifname)?;
        nl.set_up(&link)
    }
}

/// Where the CNI's device-info files live: the `cni` sibling of the device plugin's device-info
/// directory (`/var/run/k8s.cni.cncf.io/devinfo/cni` for the default `--devinfo-dir`). A VF named
/// by a file there is attached to a pod, so provisioning never removes or rebinds it.
pub fn in_use_dir(devinfo_dir: &Path) -> Option<PathBuf> {
    devinfo_dir.parent().map(|p| p.join("cni"))
}

/// What applying one entry came to.
#[derive(Debug)]
pub struct Outcome {
    /// The entry's PF, as the config names it.
    pub pf: String,
    /// What the run did, or why it failed.
    pub result: Result<ProvisionReport, ProvisionError>,
}

fn provisioner<'a>(sysfs: &'a Sysfs, link: &'a dyn PfLink, devinfo_dir: &Path) -> Provisioner<'a> {
    let mut p = Provisioner::new(sysfs, link);
    p.in_use_dirs = in_use_dir(devinfo_dir).into_iter().collect();
    p
}

/// Apply every entry, in order. One entry failing does not stop the others; each failure is
/// logged with the library's precise message and returned. Blocking (waits for the kernel).
pub fn apply_all(sysfs: &Sysfs, devinfo_dir: &Path, entries: &[ProvisionRequest]) -> Vec<Outcome> {
    if entries.is_empty() {
        return Vec::new();
    }
    let link = NetlinkPfLink;
    let prov = provisioner(sysfs, &link, devinfo_dir);
    entries
        .iter()
        .map(|e| {
            let result = prov.apply(e);
            match &result {
                Ok(r) if r.changed() => tracing::info!(
                    pf = %e.pf,
                    vfs_before = r.vfs_before,
                    vfs_after = r.vfs_after,
                    rebound = r.rebound.len(),
                    link_raised = r.link_raised,
                    "PF provisioned"
                ),
                Ok(r) => tracing::info!(pf = %e.pf, num_vfs = r.vfs_after, "PF already provisioned as asked"),
                Err(err) => tracing::error!(
                    pf = %e.pf,
                    error = %err,
                    "provisioning failed; serving the devices that exist"
                ),
            }
            Outcome {
                pf: e.pf.to_string(),
                result,
            }
        })
        .collect()
}

/// The plan against the node's state, for one `provision` entry.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PlanRow {
    pub pf: String,
    pub pci: Option<String>,
    pub num_vfs: Option<u32>,
    pub total_vfs: Option<u32>,
    pub wanted: u32,
    /// What differs from the plan, and what stands in the way; empty when the PF matches.
    pub problems: Vec<String>,
}

impl fmt::Display for PlanRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let opt = |o: Option<u32>| o.map_or_else(|| "?".to_string(), |n| n.to_string());
        write!(
            f,
            "{} ({}): numVfs {} of {}, wanted {}: ",
            self.pf,
            self.pci.as_deref().unwrap_or("not found"),
            opt(self.num_vfs),
            opt(self.total_vfs),
            self.wanted
        )?;
        if self.problems.is_empty() {
            f.write_str("ok")
        } else {
            f.write_str(&self.problems.join("; "))
        }
    }
}

/// Compare each entry with what sysfs shows, without changing anything.
pub fn plan(sysfs: &Sysfs, devinfo_dir: &Path, entries: &[ProvisionRequest]) -> Vec<PlanRow> {
    let link = NetlinkPfLink;
    let prov = provisioner(sysfs, &link, devinfo_dir);
    entries
        .iter()
        .map(|e| plan_one(sysfs, &prov, &link, e))
        .collect()
}

fn plan_one(sysfs: &Sysfs, prov: &Provisioner, link: &dyn PfLink, e: &ProvisionRequest) -> PlanRow {
    let mut row = PlanRow {
        pf: e.pf.to_string(),
        pci: None,
        num_vfs: None,
        total_vfs: None,
        wanted: e.num_vfs,
        problems: Vec::new(),
    };
    let pci = match &e.pf {
        PfRef::Pci(a) if sysfs.exists(*a) => Some(*a),
        PfRef::Pci(_) => None,
        PfRef::Netdev(n) => sysfs.netdev_pci(n).ok().flatten(),
    };
    let Some(pci) = pci else {
        row.problems.push("no such PF".into());
        return row;
    };
    row.pci = Some(pci.to_string());
    row.num_vfs = sysfs.num_vfs(pci).ok().flatten();
    row.total_vfs = sysfs.total_vfs(pci).ok().flatten();
    match row.total_vfs {
        None => row.problems.push("not an SR-IOV PF".into()),
        Some(t) if e.num_vfs > t => row
            .problems
            .push(format!("numVfs {} exceeds sriov_totalvfs {t}", e.num_vfs)),
        _ => {}
    }
    let vfs = sysfs.virtfns(pci).unwrap_or_default();
    if row.num_vfs.unwrap_or(0) != e.num_vfs {
        row.problems.push("VF count differs".into());
        if let Some(ifname) = sysfs.netdevs(pci).ok().and_then(|v| v.into_iter().next()) {
            if !link.is_up(&ifname).unwrap_or(true) && !e.link_up {
                row.problems
                    .push(format!("PF {ifname} is down (set linkUp)"));
            }
        }
        if let Some((i, a, why)) = vfs
            .iter()
            .find_map(|(i, a)| prov.in_use(*a).map(|w| (*i, *a, w)))
        {
            row.problems.push(format!("VF {i} ({a}) is in use: {why}"));
        }
    }
    for rule in &e.vf_drivers {
        if !sysfs.driver_dir(&rule.driver).exists() {
            row.problems
                .push(format!("driver {} is not loaded", rule.driver));
        }
        for (i, a) in vfs.iter().filter(|(i, _)| rule.vfs.contains(*i)) {
            let cur = sysfs.driver(*a).ok().flatten();
            if cur.as_deref() != Some(rule.driver.as_str()) {
                row.problems.push(format!(
                    "VF {i} ({a}) bound to {}, wanted {}",
                    cur.as_deref().unwrap_or("no driver"),
                    rule.driver
                ));
            }
        }
    }
    row
}
