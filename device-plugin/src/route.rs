//! The netdevs carrying the host's default route, read from `/proc/net/route` and
//! `/proc/net/ipv6_route`. Devices behind them are never pooled: handing the host's uplink to a
//! pod would cut the node off.

use std::collections::HashSet;
use std::path::Path;

use sriov_host::{PciAddress, Sysfs};

/// Netdevs with an IPv4 or IPv6 default route in the tables under `proc_net` (normally
/// `/proc/net`). Unreadable tables count as empty.
pub fn default_route_netdevs(proc_net: &Path) -> HashSet<String> {
    let mut out = HashSet::new();
    if let Ok(t) = std::fs::read_to_string(proc_net.join("route")) {
        out.extend(parse_ipv4(&t));
    }
    if let Ok(t) = std::fs::read_to_string(proc_net.join("ipv6_route")) {
        out.extend(parse_ipv6(&t));
    }
    out.remove("lo");
    out
}

/// The PCI device behind a netdev: the nearest PCI address on the path of its `class/net` link.
/// Unlike the device's `net/` directory this also finds netdevs one level down (virtio-net's
/// `virtio0/net/eth0`).
pub fn netdev_pci_device(sysfs: &Sysfs, ifname: &str) -> Option<PciAddress> {
    if ifname.is_empty() || ifname.contains('/') || ifname.starts_with('.') {
        return None;
    }
    let target = std::fs::read_link(sysfs.root().join("class/net").join(ifname)).ok()?;
    target
        .components()
        .rev()
        .find_map(|c| c.as_os_str().to_str()?.parse().ok())
}

/// `Iface Destination Gateway Flags RefCnt Use Metric Mask ...`: a default route has
/// destination and mask 0.
fn parse_ipv4(table: &str) -> Vec<String> {
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 8 && f[1] == "00000000" && f[7] == "00000000").then(|| f[0].to_string())
        })
        .collect()
}

/// `dest plen src splen next-hop metric refcnt use flags iface`: default is `::/0`.
fn parse_ipv6(table: &str) -> Vec<String> {
    table
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 10 && f[0].bytes().all(|c| c == b'0') && f[1] == "00")
                .then(|| f[9].to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_default_routes() {
        let v4 =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                  eth0\t00000000\t0102A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
                  eth1\t0002A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n";
        assert_eq!(parse_ipv4(v4), vec!["eth0"]);
        let v6 = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003 ens3\n\
                  fe800000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001 ens4\n\
                  00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200 lo\n";
        assert_eq!(parse_ipv6(v6), vec!["ens3", "lo"]);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("route"), v4).unwrap();
        std::fs::write(dir.path().join("ipv6_route"), v6).unwrap();
        let s = default_route_netdevs(dir.path());
        assert!(s.contains("eth0") && s.contains("ens3") && !s.contains("lo"));
    }

    #[test]
    fn resolves_netdevs_below_the_pci_device() {
        let dir = tempfile::tempdir().unwrap();
        let net = dir.path().join("class/net");
        std::fs::create_dir_all(&net).unwrap();
        std::os::unix::fs::symlink(
            "../../devices/pci0000:00/0000:00:03.0/virtio0/net/eth0",
            net.join("eth0"),
        )
        .unwrap();
        std::os::unix::fs::symlink("../../devices/virtual/net/lo", net.join("lo")).unwrap();
        let sys = Sysfs::new(dir.path());
        assert_eq!(
            netdev_pci_device(&sys, "eth0").unwrap().to_string(),
            "0000:00:03.0"
        );
        assert_eq!(netdev_pci_device(&sys, "lo"), None);
        assert_eq!(netdev_pci_device(&sys, "../x"), None);
    }
}
