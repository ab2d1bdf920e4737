//! `sriov_host::netlink` against this machine's kernel, read-only.
#![allow(clippy::unwrap_used)]

use sriov_host::netlink::Netlink;

/// Read-only, in whatever netns the test runs in: every link the kernel reports with a parent
/// device names the device that sysfs shows for it. Needs a netdev that has a parent device
/// (a NIC); skipped otherwise.
#[test]
fn kernel_reports_parent_devices_as_sysfs_shows_them() {
    let Ok(links) = Netlink::open().and_then(|mut nl| nl.links()) else {
        sriov_tests::gate::skip("no rtnetlink socket here");
        return;
    };
    let base = |p: std::path::PathBuf| {
        std::fs::read_link(p)
            .ok()
            .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()))
    };
    let mut seen = 0;
    for l in links.iter() {
        let Some(p) = &l.parent else { continue };
        let dir = std::path::Path::new("/sys/class/net").join(&l.name);
        let (Some(dev), Some(bus)) = (base(dir.join("device")), base(dir.join("device/subsystem")))
        else {
            continue;
        };
        assert_eq!(
            (p.bus.as_str(), p.name.as_str()),
            (bus.as_str(), dev.as_str()),
            "{}",
            l.name
        );
        seen += 1;
    }
    assert!(
        links.iter().any(|l| l.name == "lo" && l.parent.is_none()),
        "lo has no parent device"
    );
    if seen == 0 {
        sriov_tests::gate::skip("no netdev with a parent device (a NIC) here");
    }
}
