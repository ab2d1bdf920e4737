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
    let add = c1(&bed, "ADD", &c, &pod);
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
    let ns = pod.file_name().unwrap().to_str().unwrap();
    let notify = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "cat",
            "/proc/sys/net/ipv4/conf/net1/arp_notify",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&notify.stdout).trim(),
        "1",
        "gratuitous ARP on link up"
    );
    let state = bed.state_dir().join("c1-net1.json");
    assert!(state.exists());

    let chk = c1(&bed, "CHECK", &with_prev(&c, r), &pod);
    ok(&chk, "CHECK");

    let del = c1(&bed, "DEL", &with_prev(&c, r), &pod);
    ok(&del, "DEL");
    assert!(bed.link(Some(&pod), "net1").is_none());
    assert_restored(&bed, &vf);
    assert!(!state.exists(), "state removed");
    let del2 = c1(&bed, "DEL", &c, &pod);
    ok(&del2, "second DEL");
    assert_restored(&bed, &vf);
}

#[test]
fn del_after_pod_netns_is_gone_finds_the_netdev_in_the_host() {
    let Some(bed) = Bed::new("del_netns_gone") else {
        return;
    };
    let vf = bed.add_vf(1);
    let pod = bed.pod("p1");
    let c = conf(
        &vf.pci,
        json!({"mtu": 1400, "ipam": bed.host_local("10.77.2.0/24", "10.77.2.1")}),
    );
    ok(&c1(&bed, "ADD", &c, &pod), "ADD");
    bed.delete_pod(&pod);
    // The kernel hands a real VF netdev back under its pod name; a veth dies with the netns, so
    // stand one in with that name and a changed MAC/MTU, and show it in the VF's net/ directory.
    returned_from_pod(&bed, "net1", "02:ff:00:00:00:01", 1400);
    bed.sys.set_netdev(&vf.pci, Some("net1"));
    let del = c1(&bed, "DEL", &c, &pod);
    ok(&del, "DEL with the netns gone");
    assert_restored(&bed, &vf);
    assert!(bed.link(None, "net1").is_none(), "renamed back");
    ok(
        &sriov(&bed, "DEL", &c, "c1", None, "net1"),
        "DEL again without CNI_NETNS",
    );
}

#[test]
fn ipam_failure_rolls_back_the_move() {
    let Some(bed) = Bed::new("ipam_rollback") else {
        return;
    };
    let vf = bed.add_vf(1);
    let pod = bed.pod("p1");
    // A range with one address, already taken by another attachment.
    let mut ipam = bed.host_local("10.77.3.0/24", "10.77.3.1");
    ipam["rangeStart"] = json!("10.77.3.9");
    ipam["rangeEnd"] = json!("10.77.3.9");
    let other = bed.add_vf(2);
    let pod2 = bed.pod("p2");
    ok(
        &sriov(
            &bed,
            "ADD",
            &conf(&other.pci, json!({"ipam": ipam})),
            "c2",
            Some(&pod2),
            "net1",
        ),
        "ADD taking the only address",
    );

    let c = conf(&vf.pci, json!({"mtu": 1300, "ipam": ipam}));
    let add = c1(&bed, "ADD", &c, &pod);
    assert!(!add.ok, "ADD should fail: {}", add.stdout);
    assert!(add.msg().contains("ipam host-local ADD"), "{}", add.msg());
    assert!(
        bed.link(Some(&pod), "net1").is_none(),
        "nothing left in the pod"
    );
    assert_restored(&bed, &vf);
    assert!(
        !bed.state_dir().join("c1-net1.json").exists(),
        "no state left"
    );

    // An IPAM plugin that does not exist is caught before anything changes.
    let c = conf(&vf.pci, json!({"ipam": {"type": "no-such-ipam"}}));
    let add = c1(&bed, "ADD", &c, &pod);
    assert_eq!(add.code(), Some(7), "{}", add.stdout);
    assert!(add.msg().contains("no-such-ipam"), "{}", add.msg());
    assert_restored(&bed, &vf);
}

#[test]
fn chained_tuning_then_check() {
    let Some(bed) = Bed::new("chain_tuning") else {
        return;
    };
    let vf = bed.add_vf(1);
    let pod = bed.pod("p1");
    let c = conf(
        &vf.pci,
        json!({"ipam": bed.host_local("10.77.4.0/24", "10.77.4.1")}),
    );
    let add = c1(&bed, "ADD", &c, &pod);
    ok(&add, "ADD");
    let tuning = json!({"cniVersion": "1.0.0", "name": "sriov-test", "type": "tuning", "mac": "02:bb:00:00:00:05", "prevResult": add.json});
    let att = Att {
        container_id: "c1",
        netns: Some(&pod),
        ifname: "net1",
    };
    let t = bed.run("/usr/lib/cni/tuning", "ADD", &tuning, &att, &[]);
    ok(&t, "tuning ADD");
    assert_eq!(
        bed.link(Some(&pod), "net1").unwrap().mac,
        "02:bb:00:00:00:05"
    );
    // CHECK compares with the chain's final result...
    ok(
        &c1(&bed, "CHECK", &with_prev(&c, &t.json), &pod),
        "CHECK with tuning's result",
    );
    // ...so the result before tuning no longer matches.
    let stale = c1(&bed, "CHECK", &with_prev(&c, &add.json), &pod);
    assert!(!stale.ok && stale.msg().contains("MAC"), "{}", stale.stdout);
    // An address removed behind our back is reported.
    sriov_tests::netbed::ip(&[
        "-n",
        pod.file_name().unwrap().to_str().unwrap(),
        "addr",
        "flush",
        "dev",
        "net1",
    ]);
    let gone = c1(&bed, "CHECK", &with_prev(&c, &t.json), &pod);
    assert!(
        !gone.ok && gone.msg().contains("lacks address"),
        "{}",
        gone.stdout
    );
    ok(&c1(&bed, "DEL", &with_prev(&c, &t.json), &pod), "DEL");
    assert_restored(&bed, &vf);
}

#[test]
fn parallel_adds_on_different_vfs() {
    let Some(bed) = Bed::new("parallel") else {
        return;
    };
    let vfs: Vec<BedVf> = (0..4).map(|i| bed.add_vf(i)).collect();
    let pods: Vec<_> = (0..4).map(|i| bed.pod(&format!("p{i}"))).collect();
    let ipam = bed.host_local("10.77.5.0/24", "10.77.5.1");
    let results: Vec<CniOut> = std::thread::scope(|s| {
        let hs: Vec<_> = vfs
            .iter()
            .zip(&pods)
            .enumerate()
            .map(|(i, (vf, pod))| {
                let (bed, ipam) = (&bed, &ipam);
                s.spawn(move || {
                    sriov(
                        bed,
                        "ADD",
                        &conf(&vf.pci, json!({"ipam": ipam})),
                        &format!("c{i}"),
                        Some(pod),
                        "net1",
                    )
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut ips = std::collections::HashSet::new();
    for r in &results {
        ok(r, "parallel ADD");
        ips.insert(r.json["ips"][0]["address"].as_str().unwrap().to_string());
    }
    assert_eq!(ips.len(), 4, "distinct addresses: {ips:?}");
    for (i, (vf, pod)) in vfs.iter().zip(&pods).enumerate() {
        assert!(bed.link(Some(pod), "net1").is_some());
        ok(
            &sriov(
                &bed,
                "DEL",
                &conf(&vf.pci, json!({"ipam": ipam})),
                &format!("c{i}"),
                Some(pod),
                "net1",
            ),
            "DEL",
        );
        assert_restored(&bed, vf);
    }
}

#[test]
fn dual_stack_addresses_and_routes() {
    let Some(bed) = Bed::new("dual_stack") else {
        return;
    };
    let vf = bed.add_vf(1);
    let pod = bed.pod("p1");
    let ipam = json!({
        "type": "host-local",
        "dataDir": bed.ipam_dir(),
        "ranges": [
            [{"subnet": "10.77.8.0/24", "gateway": "10.77.8.1"}],
            [{"subnet": "fd00:77:8::/64", "gateway": "fd00:77:8::1"}]
        ],
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]
    });
    let c = conf(&vf.pci, json!({"ipam": ipam}));
    let add = c1(&bed, "ADD", &c, &pod);
    ok(&add, "dual-stack ADD");
    let addrs = bed.addrs(Some(&pod), "net1");
    assert!(addrs.contains(&"10.77.8.2/24".to_string()), "{addrs:?}");
    assert!(addrs.contains(&"fd00:77:8::2/64".to_string()), "{addrs:?}");
    let ns = pod.file_name().unwrap().to_str().unwrap();
    let r6 = sriov_tests::netbed::ip(&["-6", "-n", ns, "route", "show", "default"]);
    assert!(r6.contains("via fd00:77:8::1"), "{r6}");
    ok(&c1(&bed, "CHECK", &with_prev(&c, &add.json), &pod), "CHECK");
    ok(&c1(&bed, "DEL", &with_prev(&c, &add.json), &pod), "DEL");
    assert_restored(&bed, &vf);
}
