//! Health from real kernel link events: the plugin binary runs inside a throwaway network
//! namespace whose veth ends stand in for PF netdevs of a fake sysfs tree (root only).
#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;
use kubelet_proto::v1beta1::Device;
use sriov_tests::fakesys::{Dev, FakeSysfs, BRCM, PS225_VF};
use sriov_tests::kubelet::TestKubelet;
use sriov_tests::netbed;

const VFS: &str = "arm.com/vfs";

fn health_of<'a>(devs: &'a [Device], prefix: &str) -> Vec<&'a str> {
    devs.iter()
        .filter(|d| d.id.starts_with(prefix))
        .map(|d| d.health.as_str())
        .collect()
}

fn all(devs: &[Device], prefix: &str, h: &str) -> bool {
    let v = health_of(devs, prefix);
    !v.is_empty() && v.iter().all(|x| *x == h)
}

/// Two PFs (`pf0` at 0000:03:00.0, `pf1` at 0000:04:00.0, both veths with their peers up), four
/// bnxt_en VFs each; VF 0 of pf0 has a real veth netdev `vf0`.
fn node(nb: &netbed::Bed) -> Bed {
    nb.add_second_pf();
    nb.add_vf(0);
    for i in 1..4u32 {
        let (a, n) = (format!("0000:03:10.{i}"), format!("pf0v{i}"));
        nb.sys.add_vf(
            netbed::PF_PCI,
            i,
            &Dev::new(&a, BRCM, PS225_VF).driver("bnxt_en").netdev(&n),
        );
    }
    for i in 0..4u32 {
        let (a, n) = (format!("0000:04:10.{i}"), format!("pf1v{i}"));
        nb.sys.add_vf(
            "0000:04:00.0",
            i,
            &Dev::new(&a, BRCM, PS225_VF).driver("bnxt_en").netdev(&n),
        );
    }
    Bed::with_tree(
        FakeSysfs::attach(nb.sys.root()),
        &serde_json::json!({"resourceList": [{
            "resourceName": "vfs", "resourcePrefix": "arm.com",
            "selectors": {"vendors": ["14e4"], "devices": ["d800"], "drivers": ["bnxt_en"]}
        }]}),
    )
}

fn host_ns(nb: &netbed::Bed) -> PathBuf {
    PathBuf::from("/run/netns").join(&nb.host)
}

/// Run `ip` and wait until the device list satisfies `pred`; returns the list and the time from
/// just before the command to the update.
async fn change(
    nb: &netbed::Bed,
    k: &TestKubelet,
    args: &[&str],
    pred: impl FnMut(&[Device]) -> bool,
) -> (Vec<Device>, Duration) {
    let t = Instant::now();
    nb.ip_host(args);
    let devs = k.wait_for_devices(VFS, pred, T).await.unwrap();
    (devs, t.elapsed())
}

#[tokio::test]
async fn pf_link_down_or_without_carrier_marks_exactly_its_vfs_unhealthy() {
    let Some(nb) = netbed::Bed::new("link_health") else {
        return;
    };
    let bed = node(&nb);
    let kubelet = TestKubelet::start(&bed.dp_dir()).await;
    let plugin = bed.spawn_with("kubelet", &bed.config(), Some(&host_ns(&nb)));
    let pid = plugin.pid();
    let devs = kubelet
        .wait_for_devices(VFS, |d| d.len() == 8, T)
        .await
        .unwrap();
    assert!(all(&devs, "0000:0", "Healthy"), "{devs:?}");

    let (devs, down) = change(&nb, &kubelet, &["link", "set", "pf1", "down"], |d| {
        all(d, "0000:04", "Unhealthy")
    })
    .await;
    assert!(
        all(&devs, "0000:03", "Healthy"),
        "pf0's VFs stay Healthy: {devs:?}"
    );
    let (_, up) = change(&nb, &kubelet, &["link", "set", "pf1", "up"], |d| {
        all(d, "0000:0", "Healthy")
    })
    .await;
    let (devs, carrier) = change(&nb, &kubelet, &["link", "set", "pf0peer", "down"], |d| {
        all(d, "0000:03", "Unhealthy")
    })
    .await;
    assert!(all(&devs, "0000:04", "Healthy"), "{devs:?}");
    let (_, back) = change(&nb, &kubelet, &["link", "set", "pf0peer", "up"], |d| {
        all(d, "0000:0", "Healthy")
    })
    .await;
    println!(
        "health propagation (ip command to ListAndWatch update): admin down {down:?}, admin up {up:?}, carrier lost {carrier:?}, carrier back {back:?}"
    );
    for l in [down, up, carrier, back] {
        assert!(l < Duration::from_secs(1), "health update took {l:?}");
    }
    assert_eq!(plugin.pid(), pid);
    assert!(plugin.log().contains("device health changed"));
}

#[tokio::test]
async fn a_vf_whose_netdev_leaves_the_host_stays_pooled_and_healthy() {
    let Some(nb) = netbed::Bed::new("vf_netdev_gone") else {
        return;
    };
    let bed = node(&nb);
    let kubelet = TestKubelet::start(&bed.dp_dir()).await;
    let plugin = bed.spawn_with("kubelet", &bed.config(), Some(&host_ns(&nb)));
    kubelet
        .wait_for_devices(VFS, |d| d.len() == 8, T)
        .await
        .unwrap();
    // What the CNI does at ADD: the VF's netdev moves into the pod; sysfs shows no netdev.
    let pod = nb.pod("p1");
    let pod_name = pod.file_name().unwrap().to_string_lossy().into_owned();
    nb.ip_host(&["link", "set", "vf0", "netns", &pod_name]);
    nb.sys.set_netdev("0000:03:10.0", None);
    // A re-scan happens on any config change: rebuild pools with the netdev gone.
    bed.write_config(&serde_json::json!({"resourceList": [
        {"resourceName": "vfs", "resourcePrefix": "arm.com",
         "selectors": {"vendors": ["14e4"], "devices": ["d800"], "drivers": ["bnxt_en"]}},
        {"resourceName": "dpdk", "resourcePrefix": "arm.com", "selectors": {"drivers": ["vfio-pci"]}}
    ]}));
    plugin.wait_log("config applied", T).await;
    let devs = kubelet.resource(VFS).unwrap().devices.unwrap();
    assert_eq!(devs.len(), 8, "{devs:?}");
    let vf0 = devs.iter().find(|d| d.id == "0000:03:10.0").unwrap();
    assert_eq!(vf0.health, "Healthy");
    // The pod's deletion (its veth ends go, a link event in the host namespace) changes
    // nothing either. The plugin handles link events in order: once pf1 going down (next in
    // the same stream) has reached the kubelet, the deletion was seen, and it must have sent
    // nothing of its own.
    let updates = kubelet.resource(VFS).unwrap().updates;
    nb.delete_pod(&pod);
    let (devs, _) = change(&nb, &kubelet, &["link", "set", "pf1", "down"], |d| {
        all(d, "0000:04", "Unhealthy")
    })
    .await;
    assert!(all(&devs, "0000:03", "Healthy"), "{devs:?}");
    assert_eq!(
        kubelet.resource(VFS).unwrap().updates,
        updates + 1,
        "one update, for pf1; none for the pod's links"
    );
    let regs = kubelet.registrations();
    assert_eq!(
        regs.iter()
            .filter(|r| r.request.resource_name == VFS)
            .count(),
        1,
        "no re-registration of the existing pool"
    );
}

/// Broadcast a kernel-format uevent (`action@devpath`, `SUBSYSTEM=pci`) for `addr` to the uevent
/// listeners of the network namespace at `ns`, as the PCI core does when the fake tree changes.
fn uevent(ns: &std::path::Path, action: &str, addr: &str, driver: Option<&str>) {
    use nix::sys::socket::{
        sendto, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType,
    };
    let devpath = format!("/devices/pci0000:00/{addr}");
    let mut msg =
        format!("{action}@{devpath}\0ACTION={action}\0DEVPATH={devpath}\0SUBSYSTEM=pci\0");
    if let Some(d) = driver {
        msg.push_str(&format!("DRIVER={d}\0"));
    }
    sriov_host::netns::run_in(ns, move || {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkKObjectUEvent,
        )
        .unwrap();
        // The kernel side ignores the message; the broadcast to group 1 reaches the listeners.
        let _ = sendto(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            msg.as_bytes(),
            &NetlinkAddr::new(0, 1),
            MsgFlags::empty(),
        );
    })
    .unwrap();
}

#[tokio::test]
async fn pci_uevents_rebind_remove_and_add_vfs() {
    let Some(nb) = netbed::Bed::new("pci_uevents") else {
        return;
    };
    let bed = node(&nb);
    let ns = host_ns(&nb);
    let kubelet = TestKubelet::start(&bed.dp_dir()).await;
    let plugin = bed.spawn_with("kubelet", &bed.config(), Some(&ns));
    kubelet
        .wait_for_devices(VFS, |d| d.len() == 8, T)
        .await
        .unwrap();
    let health = |d: &[Device], id: &str| {
        d.iter()
            .find(|x| x.id == id)
            .map(|x| x.health.clone())
            .unwrap_or_default()
    };

    // Rebound to another driver: Unhealthy in its pool, the others untouched.
    let t = Instant::now();
    nb.sys.set_netdev("0000:04:10.3", None);
    nb.sys.bind("0000:04:10.3", Some("vfio-pci"));
    uevent(&ns, "unbind", "0000:04:10.3", None);
    uevent(&ns, "bind", "0000:04:10.3", Some("vfio-pci"));
    let devs = kubelet
        .wait_for_devices(VFS, |d| health(d, "0000:04:10.3") == "Unhealthy", T)
        .await
        .unwrap();
    let rebind = t.elapsed();
    assert_eq!(
        devs.iter().filter(|d| d.health == "Unhealthy").count(),
        1,
        "{devs:?}"
    );
    nb.sys.bind("0000:04:10.3", Some("bnxt_en"));
    uevent(&ns, "bind", "0000:04:10.3", Some("bnxt_en"));
    kubelet
        .wait_for_devices(VFS, |d| all(d, "0000:0", "Healthy"), T)
        .await
        .unwrap();

    // Removed: Unhealthy (the kubelet sees the capacity it lost), the others untouched.
    let t = Instant::now();
    nb.sys.remove("0000:04:10.2");
    let _ = std::fs::remove_file(nb.sys.dev_dir("0000:04:00.0").join("virtfn2"));
    uevent(&ns, "remove", "0000:04:10.2", None);
    let devs = kubelet
        .wait_for_devices(VFS, |d| health(d, "0000:04:10.2") == "Unhealthy", T)
        .await
        .unwrap();
    let removed = t.elapsed();
    assert_eq!(devs.len(), 8);
    assert_eq!(
        devs.iter().filter(|d| d.health == "Unhealthy").count(),
        1,
        "{devs:?}"
    );

    // Added outside the plugin: it joins the pool that selects it.
    let t = Instant::now();
    nb.sys.add_vf(
        "0000:04:00.0",
        4,
        &Dev::new("0000:04:10.4", BRCM, PS225_VF)
            .driver("bnxt_en")
            .netdev("pf1v4"),
    );
    uevent(&ns, "add", "0000:04:10.4", None);
    uevent(&ns, "bind", "0000:04:10.4", Some("bnxt_en"));
    let devs = kubelet
        .wait_for_devices(VFS, |d| d.iter().any(|x| x.id == "0000:04:10.4"), T)
        .await
        .unwrap();
    let added = t.elapsed();
    assert_eq!(devs.len(), 9);
    assert_eq!(health(&devs, "0000:04:10.4"), "Healthy");
    // The removed VF coming back as it was is Healthy again.
    nb.sys.add_vf(
        "0000:04:00.0",
        2,
        &Dev::new("0000:04:10.2", BRCM, PS225_VF)
            .driver("bnxt_en")
            .netdev("pf1v2"),
    );
    uevent(&ns, "add", "0000:04:10.2", None);
    let devs = kubelet
        .wait_for_devices(VFS, |d| all(d, "0000:0", "Healthy"), T)
        .await
        .unwrap();
    assert_eq!(devs.len(), 9);
    // The next config apply rebuilds pools from what exists.
    nb.sys.remove("0000:04:10.4");
    let _ = std::fs::remove_file(nb.sys.dev_dir("0000:04:00.0").join("virtfn4"));
    uevent(&ns, "remove", "0000:04:10.4", None);
    kubelet
        .wait_for_devices(VFS, |d| health(d, "0000:04:10.4") == "Unhealthy", T)
        .await
        .unwrap();
    let mut c: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bed.config()).unwrap()).unwrap();
    c["resourceList"][0]["excludeTopology"] = serde_json::json!(true);
    bed.write_config(&c);
    let devs = kubelet
        .wait_for_devices(VFS, |d| d.len() == 8, T)
        .await
        .unwrap();
    assert!(all(&devs, "0000:0", "Healthy"), "{devs:?}");
    println!("device events to ListAndWatch update: rebind {rebind:?}, remove {removed:?}, add {added:?}");
    for l in [rebind, removed, added] {
        assert!(l < Duration::from_secs(1), "{l:?}");
    }
    assert_eq!(kubelet.registrations().len(), 1);
    drop(plugin);
}
