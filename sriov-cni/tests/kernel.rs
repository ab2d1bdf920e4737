//! ADD/CHECK/DEL against real netdevs (veth ends standing in for VF netdevs) in throwaway
//! network namespaces, with Debian's host-local and tuning as real plugins.

mod common;

use common::*;
use serde_json::json;

#[test]
fn add_check_del_restores_everything() {
    let Some(bed) = Bed::new("add_check_del") else {
        return;
    };
    let vf = bed.add_vf(1);
    let pod = bed.pod("p1");
    let c = conf(
        &vf.pci,
        json!({"mtu": 1400, "ipam": bed.host_local("10.77.1.0/24", "10.77.1.1")}),
    );
    let add = sriov(&bed, "ADD", &c, "c1", Some(&pod), "net1");
    ok(&add, "ADD");
    let r = &add.json;
    assert_eq!(r["cniVersion"], "1.0.0");
    assert_eq!(r["interfaces"][0]["name"], "net1");
    assert_eq!(r["interfaces"][0]["pciID"], vf.pci.as_str());
    assert_eq!(
        r["interfaces"][0]["sandbox"],
        pod.to_string_lossy().as_ref()
    );
    assert_eq!(r["interfaces"][0]["mtu"], 1400);
    assert_eq!(r["ips"][0]["interface"], 0);
    let l = bed.link(Some(&pod), "net1").expect("net1 in pod");
    assert_eq!(l.mac, vf.mac, "no MAC requested: the VF keeps its own");
    assert_eq!(r["interfaces"][0]["mac"], vf.mac.as_str());
    assert_eq!(l.mtu, 1400);
    assert!(l.up);
    assert_eq!(
        bed.addrs(Some(&pod), "net1"),
        vec!["10.77.1.2/24".to_string()]
    );
    assert!(bed.link(None, &vf.netdev).is_none(), "gone from the host");
    let routes = sriov_tests::netbed::ip(&[
        "-n",
        pod.file_name().unwrap().to_str().unwrap(),
        "route",
        "show",
        "default",
    ]);
    assert!(routes.contains("via 10.77.1.1"), "{routes}");
    let state = bed.state_dir().join("c1-net1.json");
    assert!(state.exists());

    let chk = sriov(&bed, "CHECK", &with_prev(&c, r), "c1", Some(&pod), "net1");
    ok(&chk, "CHECK");

    let del = sriov(&bed, "DEL", &with_prev(&c, r), "c1", Some(&pod), "net1");
    ok(&del, "DEL");
    assert!(bed.link(Some(&pod), "net1").is_none());
    assert_restored(&bed, &vf);
    assert!(!state.exists(), "state removed");
    let del2 = sriov(&bed, "DEL", &c, "c1", Some(&pod), "net1");
    ok(&del2, "second DEL");
    assert_restored(&bed, &vf);
}
