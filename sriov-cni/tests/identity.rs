//! The VF netdev is found by what it is, never by its name alone: an interface name the pod
//! already uses, a pod that renames the VF and plants a look-alike before DEL, and a CNI_NETNS
//! that names the plugin's own network namespace. Real netdevs (veth stand-ins, which report no
//! parent device: matched by the ifindex and MAC recorded at ADD) in throwaway namespaces.

mod common;

use std::path::Path;

use common::*;
use serde_json::json;
use sriov_tests::netbed::ip;

fn ns(pod: &Path) -> &str {
    pod.file_name()
        .and_then(|n| n.to_str())
        .expect("netns name")
}

/// Addresses host-local holds in the bed (one file per address).
fn allocations(bed: &Bed) -> Vec<String> {
    let dir = bed.ipam_dir().join("sriov-test");
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
        .collect()
}

fn state_files(bed: &Bed) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(bed.state_dir()) else {
        return Vec::new();
    };
    rd.flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect()
}

#[test]
fn ifname_taken_by_the_pods_eth0_is_refused_and_eth0_stays() {
    let Some(bed) = Bed::new("eth0_taken") else {
        return;
    };
    let vf = bed.add_vf(1);
    let pod = bed.pod("p1");
    let n = ns(&pod);
    ip(&[
        "-n",
        n,
        "link",
        "add",
        "eth0",
        "address",
        "02:e0:00:00:00:01",
        "type",
        "veth",
        "peer",
        "name",
        "eth0p",
    ]);
    ip(&["-n", n, "addr", "add", "10.66.0.5/24", "dev", "eth0"]);
    ip(&["-n", n, "link", "set", "eth0", "up"]);
    let before = bed.links(Some(&pod));
    let c = conf(
        &vf.pci,
        json!({"mtu": 1400, "ipam": bed.host_local("10.77.21.0/24", "10.77.21.1")}),
    );
    let add = sriov(&bed, "ADD", &c, "c1", Some(&pod), "eth0");
    assert_eq!(add.code(), Some(4), "{}", add.stdout);
    assert!(
        add.msg().contains("CNI_IFNAME") && add.msg().contains("eth0"),
        "{}",
        add.msg()
    );
    assert_eq!(
        bed.links(Some(&pod)),
        before,
        "the pod's interfaces untouched"
    );
    assert_eq!(bed.addrs(Some(&pod), "eth0"), vec!["10.66.0.5/24"]);
    assert_restored(&bed, &vf);
    assert!(state_files(&bed).is_empty(), "{:?}", state_files(&bed));
    assert!(allocations(&bed).is_empty(), "{:?}", allocations(&bed));
}

#[test]
fn ifname_lo_is_refused_and_later_attachments_work() {
    let Some(bed) = Bed::new("ifname_lo") else {
        return;
    };
    let vf = bed.add_vf(1);
    let pod = bed.pod("p1");
    let before = bed.links(Some(&pod));
    let c = conf(&vf.pci, json!({"mtu": 1400}));
    let add = sriov(&bed, "ADD", &c, "c1", Some(&pod), "lo");
    assert_eq!(add.code(), Some(4), "{}", add.stdout);
    assert!(add.msg().contains("CNI_IFNAME lo"), "{}", add.msg());
    assert_eq!(bed.links(Some(&pod)), before, "lo untouched");
    assert_restored(&bed, &vf);
    assert!(state_files(&bed).is_empty());
    // DEL of the refused attachment, then a good one, work.
    ok(&sriov(&bed, "DEL", &c, "c1", Some(&pod), "lo"), "DEL lo");
    ok(&c1(&bed, "ADD", &c, &pod), "ADD net1");
    ok(&c1(&bed, "DEL", &c, &pod), "DEL net1");
    assert_restored(&bed, &vf);
    assert_eq!(bed.links(Some(&pod)), before);
}

/// ADD, then the pod (CAP_NET_ADMIN) renames the VF to `hidden` and creates a veth called like
/// it, with its MAC.
fn attach_and_plant_a_look_alike(bed: &Bed, vf: &BedVf, pod: &Path) -> serde_json::Value {
    let c = conf(
        &vf.pci,
        json!({"mtu": 1400, "ipam": bed.host_local("10.77.22.0/24", "10.77.22.1")}),
    );
    let add = c1(bed, "ADD", &c, pod);
    ok(&add, "ADD");
    assert_eq!(allocations(bed).len(), 1);
    let n = ns(pod);
    ip(&["-n", n, "link", "set", "net1", "down"]);
    ip(&["-n", n, "link", "set", "net1", "name", "hidden"]);
    ip(&[
        "-n", n, "link", "add", "net1", "address", &vf.mac, "mtu", "1400", "type", "veth", "peer",
        "name", "imp",
    ]);
    ip(&["-n", n, "link", "set", "net1", "up"]);
    with_prev(&c, &add.json)
}

#[test]
fn del_takes_the_renamed_vf_home_and_leaves_a_look_alike_alone() {
    let Some(bed) = Bed::new("impostor") else {
        return;
    };
    let vf = bed.add_vf(1);
    let pod = bed.pod("p1");
    let c = attach_and_plant_a_look_alike(&bed, &vf, &pod);
    let impostor = bed.link(Some(&pod), "net1").expect("impostor");
    let chk = c1(&bed, "CHECK", &c, &pod);
    assert!(
        !chk.ok && chk.msg().contains("net1 is not VF") && chk.msg().contains("the VF is hidden"),
        "{}",
        chk.stdout
    );
    let del = c1(&bed, "DEL", &c, &pod);
    ok(&del, "DEL");
    assert_eq!(
        bed.link(Some(&pod), "net1"),
        Some(impostor),
        "the look-alike stays in the pod, untouched"
    );
    assert!(bed.link(Some(&pod), "hidden").is_none(), "the VF left");
    assert_restored(&bed, &vf);
    assert!(allocations(&bed).is_empty(), "IPAM released");
    assert!(state_files(&bed).is_empty());
}

#[test]
fn del_without_the_vf_in_sight_releases_the_rest_and_says_so() {
    let Some(bed) = Bed::new("vf_hidden") else {
        return;
    };
    let vf = bed.add_vf(1);
    let pod = bed.pod("p1");
    let c = attach_and_plant_a_look_alike(&bed, &vf, &pod);
    // The VF also gets another MAC: a netdev without a parent device can no longer be told
    // from any other.
    ip(&[
        "-n",
        ns(&pod),
        "link",
        "set",
        "hidden",
        "address",
        "02:66:00:00:00:01",
    ]);
    let before = bed.links(Some(&pod));
    let del = c1(&bed, "DEL", &c, &pod);
    ok(&del, "DEL");
    assert!(
        del.stderr.contains("not found") && del.stderr.contains(&vf.pci),
        "DEL says what it could not find: {}",
        del.stderr
    );
    assert_eq!(bed.links(Some(&pod)), before, "nothing in the pod touched");
    assert!(bed.link(None, &vf.netdev).is_none());
    assert!(allocations(&bed).is_empty(), "IPAM released");
    assert!(state_files(&bed).is_empty());
    ok(&c1(&bed, "DEL", &c, &pod), "DEL again");

    // When the pod netns goes, the kernel returns the VF to the host under the pod's name for
    // it; the next attachment takes it from there.
    bed.delete_pod(&pod);
    returned_from_pod(&bed, "hidden", "02:66:00:00:00:01", 1400);
    bed.sys.set_netdev(&vf.pci, Some("hidden"));
    let pod2 = bed.pod("p2");
    let c2 = conf(&vf.pci, json!({}));
    ok(
        &sriov(&bed, "ADD", &c2, "c2", Some(&pod2), "net1"),
        "next ADD",
    );
    ok(
        &sriov(&bed, "DEL", &c2, "c2", Some(&pod2), "net1"),
        "next DEL",
    );
    assert!(bed.link(None, "hidden").is_some());
}

#[test]
fn cni_netns_naming_the_plugins_own_netns_is_refused() {
    let Some(bed) = Bed::new("own_netns") else {
        return;
    };
    let vf = bed.add_vf(1);
    let before = bed.links(None);
    let routes = ip(&["-n", &bed.host, "route", "show"]);
    let c = conf(
        &vf.pci,
        json!({"mtu": 1400, "ipam": bed.host_local("10.77.23.0/24", "10.77.23.1")}),
    );
    let own = std::path::PathBuf::from("/run/netns").join(&bed.host);
    for path in [own.as_path(), Path::new("/proc/self/ns/net")] {
        for cmd in ["ADD", "CHECK", "DEL"] {
            let out = sriov(&bed, cmd, &c, "c1", Some(path), "net1");
            assert_eq!(
                out.code(),
                Some(4),
                "{cmd} {}: {}",
                path.display(),
                out.stdout
            );
            assert!(
                out.msg().contains("CNI_NETNS") && out.msg().contains(&*path.to_string_lossy()),
                "{}",
                out.msg()
            );
        }
    }
    assert_eq!(bed.links(None), before, "no host link changed");
    assert!(bed.addrs(None, &vf.netdev).is_empty());
    assert_eq!(ip(&["-n", &bed.host, "route", "show"]), routes);
    assert!(allocations(&bed).is_empty());
    assert!(state_files(&bed).is_empty());
}

#[test]
fn del_releases_an_attachment_recorded_by_the_previous_version() {
    let Some(bed) = Bed::new("prev_version") else {
        return;
    };
    let vf = bed.add_vf(1);
    let pod = bed.pod("p1");
    let c = conf(&vf.pci, json!({"mtu": 1400}));
    ok(&c1(&bed, "ADD", &c, &pod), "ADD");
    // The record as the previous version wrote it: no identity, so the netdev goes by its name.
    let file = bed.state_dir().join("c1-net1.json");
    let mut st: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert!(
        st["netdev"]["ifindex"].is_u64() && st["pod_ifindex"].is_u64(),
        "{st}"
    );
    st.as_object_mut().unwrap().remove("pod_ifindex");
    let netdev = st["netdev"].as_object_mut().unwrap();
    netdev.remove("ifindex");
    netdev.remove("parent");
    std::fs::write(&file, st.to_string()).unwrap();
    ok(&c1(&bed, "DEL", &c, &pod), "DEL");
    assert!(bed.link(Some(&pod), "net1").is_none());
    assert_restored(&bed, &vf);
    assert!(state_files(&bed).is_empty());
}

#[test]
fn a_record_whose_netns_is_the_hosts_is_released_in_the_host() {
    let Some(bed) = Bed::new("host_record") else {
        return;
    };
    let vf = bed.add_vf(1);
    let pod = bed.pod("p1");
    let c = conf(&vf.pci, json!({"mtu": 1400}));
    ok(&c1(&bed, "ADD", &c, &pod), "ADD");
    // What an earlier version left after an ADD with CNI_NETNS naming the host netns: the VF
    // renamed to net1 in the host, the host recorded as the pod.
    let n = ns(&pod);
    ip(&["-n", n, "link", "set", "net1", "netns", &bed.host]);
    bed.sys.set_netdev(&vf.pci, Some("net1"));
    let file = bed.state_dir().join("c1-net1.json");
    let mut st: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    st["netns"] = json!(format!("/run/netns/{}", bed.host));
    std::fs::write(&file, st.to_string()).unwrap();
    // DEL with that CNI_NETNS, as the runtime passes it, releases it (the record says where
    // to look); any other DEL with it is refused.
    let own = std::path::PathBuf::from("/run/netns").join(&bed.host);
    let other = sriov(&bed, "DEL", &c, "c2", Some(&own), "net1");
    assert_eq!(other.code(), Some(4), "{}", other.stdout);
    ok(&sriov(&bed, "DEL", &c, "c1", Some(&own), "net1"), "DEL");
    assert_restored(&bed, &vf);
    assert!(bed.link(None, "net1").is_none(), "renamed back");
    assert!(state_files(&bed).is_empty());
}
