use serde_json::json;
use sriov_host::discovery::discover;
use sriov_tests::fakesys::{ps225_two_pfs, Dev};

use super::*;

fn cfg(v: serde_json::Value) -> Config {
    Config::from_value(&v, "arm.com").unwrap()
}

fn addrs(l: &[PciDevice]) -> Vec<String> {
    l.iter().map(|d| d.address.to_string()).collect()
}

#[test]
fn first_matching_pool_wins_and_pfs_with_vfs_are_never_pooled() {
    let f = ps225_two_pfs();
    let sys = f.sysfs();
    let devs = discover(&sys).unwrap();
    let c = cfg(json!({"resourceList": [
        {"resourceName": "first", "selectors": {"rootDevices": ["0000:03:00.0#0-1"]}},
        {"resourceName": "all", "selectors": {}}
    ]}));
    let out = assign(&sys, &devs, &c, &HostFacts::default());
    assert_eq!(addrs(&out[0]), ["0000:03:10.0", "0000:03:10.1"]);
    assert_eq!(out[1].len(), 14, "the other VFs; no PF (both have VFs)");
    assert!(out[1].iter().all(|d| d.is_vf()));
}

#[test]
fn a_pf_without_vfs_and_a_plain_nic_are_pooled_but_not_the_default_route() {
    let f = ps225_two_pfs();
    f.add_pf(
        &Dev::new("0000:05:00.0", 0x8086, 0x1592)
            .driver("ice")
            .netdev("ens5f0"),
        16,
    );
    f.add(
        &Dev::new("0000:06:00.0", 0x8086, 0x10d3)
            .driver("e1000e")
            .netdev("eth0"),
    );
    f.add(
        &Dev::new("0000:07:00.0", 0x8086, 0x0b25)
            .class(0x120000)
            .driver("qat"),
    );
    let sys = f.sysfs();
    let devs = discover(&sys).unwrap();
    let c = cfg(json!({"resourceList": [
        {"resourceName": "intel", "selectors": {"vendors": ["8086"]}},
        {"resourceName": "accel", "deviceType": "accelerator", "selectors": {"vendors": ["8086"]}}
    ]}));
    let facts = HostFacts {
        excluded_netdevs: ["eth0".to_string()].into(),
        vhost_net_available: false,
    };
    let out = assign(&sys, &devs, &c, &facts);
    assert_eq!(addrs(&out[0]), ["0000:05:00.0"]);
    assert_eq!(addrs(&out[1]), ["0000:07:00.0"]);
}

#[test]
fn publishes_only_changes_and_reports_a_rebound_vf_unhealthy() {
    let f = ps225_two_pfs();
    let sys = f.sysfs();
    let devs = discover(&sys).unwrap();
    let c = cfg(json!({"resourceList": [
        {"resourceName": "dpdk", "excludeTopology": true, "selectors": {"drivers": ["vfio-pci"]}}
    ]}));
    let mut lists = assign(&sys, &devs, &c, &HostFacts::default());
    let pool = Pool::new(c.pools[0].clone(), lists.remove(0));
    let mut rx = pool.subscribe();
    rx.borrow_and_update();
    assert!(
        pool.current().iter().all(|s| s.numa.is_none()),
        "excludeTopology"
    );
    assert!(!pool.refresh(|d| crate::health::check(&sys, d)));
    assert!(!rx.has_changed().unwrap());
    f.bind("0000:03:10.7", None);
    f.remove("0000:04:10.6");
    assert!(pool.refresh(|d| crate::health::check(&sys, d)));
    assert!(rx.has_changed().unwrap());
    let bad: Vec<String> = pool
        .current()
        .iter()
        .filter(|s| s.health == Health::Unhealthy)
        .map(|s| s.id.to_string())
        .collect();
    assert_eq!(bad, ["0000:03:10.7", "0000:04:10.6"]);
}
