//! A CNI_NETNS that names the plugin's own network namespace, against real netdevs (veth
//! stand-ins) in throwaway namespaces.

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
