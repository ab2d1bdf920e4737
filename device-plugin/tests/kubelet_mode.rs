//! The real binary in kubelet-mode registration against the test kubelet, on a fake PS225 node.

mod common;

use std::time::{Duration, Instant};

use common::*;
use sriov_host::devinfo::DeviceInfo;
use sriov_tests::kubelet::TestKubelet;

fn ids(devs: &[kubelet_proto::v1beta1::Device]) -> Vec<String> {
    devs.iter().map(|d| d.id.clone()).collect()
}

#[tokio::test]
async fn registers_both_pools_and_lists_sorted_devices_with_numa() {
    let bed = Bed::ps225();
    let kubelet = TestKubelet::start(&bed.dp_dir()).await;
    let plugin = bed.spawn("kubelet");

    let r = kubelet.wait_for_registration(NETDEV, 1, T).await.unwrap();
    assert_eq!(r.request.version, "v1beta1");
    assert_eq!(r.request.endpoint, "arm.com_ps225_sriov_netdevice.sock");
    assert!(
        r.request
            .options
            .unwrap()
            .get_preferred_allocation_available
    );
    let r = kubelet.wait_for_registration(DPDK, 1, T).await.unwrap();
    assert_eq!(r.request.endpoint, "arm.com_ps225_dpdk.sock");

    let devs = kubelet
        .wait_for_devices(NETDEV, |d| !d.is_empty(), T)
        .await
        .unwrap();
    let want: Vec<String> = (3..=4)
        .flat_map(|b| (0..6).map(move |i| format!("0000:{b:02x}:10.{i}")))
        .collect();
    assert_eq!(ids(&devs), want, "netdev pool: bnxt_en VFs, sorted");
    for d in &devs {
        assert_eq!(d.health, "Healthy");
        let numa = d.topology.as_ref().unwrap().nodes[0].id;
        assert_eq!(numa, if d.id.starts_with("0000:03") { 0 } else { 1 });
    }
    let devs = kubelet
        .wait_for_devices(DPDK, |d| !d.is_empty(), T)
        .await
        .unwrap();
    assert_eq!(
        ids(&devs),
        [
            "0000:03:10.6",
            "0000:03:10.7",
            "0000:04:10.6",
            "0000:04:10.7"
        ]
    );
    let st = kubelet.resource(DPDK).unwrap();
    assert!(st.options.unwrap().get_preferred_allocation_available);

    let sock = bed.dp_dir().join("arm.com_ps225_dpdk.sock");
    assert_eq!(mode_of(&sock), 0o600, "plugin sockets are 0600");
    assert!(plugin.log().contains("registered with the kubelet"));
}

#[tokio::test]
async fn allocates_netdev_vfs_with_env_and_device_info() {
    let bed = Bed::ps225();
    let kubelet = TestKubelet::start(&bed.dp_dir()).await;
    let _plugin = bed.spawn("kubelet");
    kubelet
        .wait_for_devices(NETDEV, |d| !d.is_empty(), T)
        .await
        .unwrap();

    let r = kubelet
        .allocate(NETDEV, &["0000:03:10.1", "0000:04:10.0"])
        .await
        .unwrap();
    assert_eq!(
        r.envs["PCIDEVICE_ARM_COM_PS225_SRIOV_NETDEVICE"],
        "0000:03:10.1,0000:04:10.0"
    );
    let info: serde_json::Value =
        serde_json::from_str(&r.envs["PCIDEVICE_ARM_COM_PS225_SRIOV_NETDEVICE_INFO"]).unwrap();
    assert_eq!(
        info["0000:03:10.1"],
        serde_json::json!({"generic": {"deviceID": "0000:03:10.1"}, "extra": {"net": "sriov-net1"}})
    );
    assert!(r.devices.is_empty(), "netdev VFs need no device nodes");
    let f = bed
        .devinfo_dir()
        .join("arm.com-ps225_sriov_netdevice-0000:04:10.0-device.json");
    let di: DeviceInfo = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
    assert_eq!(di.version, "1.1.0");
    let pci = di.pci.unwrap();
    assert_eq!(pci.pci_address.to_string(), "0000:04:10.0");
    assert_eq!(pci.pf_pci_address.unwrap().to_string(), "0000:04:00.0");
}

#[tokio::test]
async fn allocates_vfio_vfs_with_device_nodes() {
    let bed = Bed::ps225();
    let kubelet = TestKubelet::start(&bed.dp_dir()).await;
    let _plugin = bed.spawn("kubelet");
    kubelet
        .wait_for_devices(DPDK, |d| !d.is_empty(), T)
        .await
        .unwrap();

    let r = kubelet
        .allocate_many(
            DPDK,
            &[
                vec!["0000:03:10.6".into()],
                vec!["0000:04:10.7".into(), "0000:03:10.7".into()],
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        r.container_responses.len(),
        2,
        "one response per container, in order"
    );
    let c0 = &r.container_responses[0];
    assert_eq!(c0.envs["PCIDEVICE_ARM_COM_PS225_DPDK"], "0000:03:10.6");
    let specs: Vec<(&str, &str, &str)> = c0
        .devices
        .iter()
        .map(|d| {
            (
                d.container_path.as_str(),
                d.host_path.as_str(),
                d.permissions.as_str(),
            )
        })
        .collect();
    assert_eq!(
        specs,
        [
            ("/dev/vfio/vfio", "/dev/vfio/vfio", "rw"),
            ("/dev/vfio/106", "/dev/vfio/106", "rw")
        ]
    );
    let info: serde_json::Value =
        serde_json::from_str(&c0.envs["PCIDEVICE_ARM_COM_PS225_DPDK_INFO"]).unwrap();
    assert_eq!(
        info,
        serde_json::json!({"0000:03:10.6": {"generic": {"deviceID": "0000:03:10.6"},
            "vfio": {"mount": "/dev/vfio/vfio", "dev-mount": "/dev/vfio/106"}}})
    );
    let c1 = &r.container_responses[1];
    assert_eq!(
        c1.envs["PCIDEVICE_ARM_COM_PS225_DPDK"],
        "0000:04:10.7,0000:03:10.7"
    );
    let hosts: Vec<&str> = c1.devices.iter().map(|d| d.host_path.as_str()).collect();
    assert_eq!(hosts, ["/dev/vfio/vfio", "/dev/vfio/115", "/dev/vfio/107"]);
    assert!(bed
        .devinfo_dir()
        .join("arm.com-ps225_dpdk-0000:04:10.7-device.json")
        .exists());

    // A missing group node is reported, not handed to the runtime.
    std::fs::remove_file(bed.dev_root().join("vfio/114")).unwrap();
    let e = kubelet.allocate(DPDK, &["0000:04:10.6"]).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert!(e.message().contains("vfio/114"), "{e}");
}

#[tokio::test]
async fn refuses_ids_the_pool_does_not_own() {
    let bed = Bed::ps225();
    let kubelet = TestKubelet::start(&bed.dp_dir()).await;
    let _plugin = bed.spawn("kubelet");
    kubelet
        .wait_for_devices(DPDK, |d| !d.is_empty(), T)
        .await
        .unwrap();

    // A netdev VF asked of the DPDK pool.
    let e = kubelet.allocate(DPDK, &["0000:03:10.0"]).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(
        e.message().contains("0000:03:10.0") && e.message().contains("arm.com/ps225_dpdk"),
        "{e}"
    );
    // Malformed IDs never reach a path.
    let e = kubelet
        .allocate(DPDK, &["../../etc/passwd"])
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(
        e.message()
            .contains("invalid device ID \"../../etc/passwd\""),
        "{e}"
    );
    assert!(
        !bed.devinfo_dir().exists() || std::fs::read_dir(bed.devinfo_dir()).unwrap().count() == 0
    );
}

#[tokio::test]
async fn prefers_packing_one_pf() {
    let bed = Bed::ps225();
    let kubelet = TestKubelet::start(&bed.dp_dir()).await;
    let _plugin = bed.spawn("kubelet");
    kubelet
        .wait_for_devices(NETDEV, |d| !d.is_empty(), T)
        .await
        .unwrap();
    let avail = [
        "0000:03:10.0",
        "0000:03:10.1",
        "0000:04:10.0",
        "0000:04:10.1",
        "0000:04:10.2",
    ];
    // PF 04 can hold all three: packed there, lowest addresses first.
    let p = kubelet.preferred(NETDEV, &avail, &[], 3).await.unwrap();
    assert_eq!(p, ["0000:04:10.0", "0000:04:10.1", "0000:04:10.2"]);
    // A must-include on PF 03 pulls the rest onto PF 03 first.
    let p = kubelet
        .preferred(NETDEV, &avail, &["0000:03:10.1"], 2)
        .await
        .unwrap();
    assert_eq!(p, ["0000:03:10.1", "0000:03:10.0"]);
    let p = kubelet
        .preferred(NETDEV, &avail, &["0000:03:10.1"], 4)
        .await
        .unwrap();
    assert_eq!(p.len(), 4);
    assert_eq!(p[0], "0000:03:10.1");
}

#[tokio::test]
async fn re_registers_after_a_kubelet_restart() {
    let bed = Bed::ps225();
    let mut kubelet = TestKubelet::start(&bed.dp_dir()).await;
    let plugin = bed.spawn("kubelet");
    kubelet.wait_for_registration(NETDEV, 1, T).await.unwrap();
    kubelet.wait_for_registration(DPDK, 1, T).await.unwrap();
    kubelet
        .wait_for_devices(DPDK, |d| !d.is_empty(), T)
        .await
        .unwrap();

    for round in 2..=3 {
        let t0 = Instant::now();
        kubelet.restart().await;
        let created = kubelet.started_at;
        for res in [NETDEV, DPDK] {
            let r = kubelet.wait_for_registration(res, round, T).await.unwrap();
            assert!(
                r.at >= created,
                "{res}: registration #{round} came before the restart"
            );
            let latency = r.at.duration_since(created);
            eprintln!(
                "re-registration of {res} (round {round}): {latency:?} after kubelet.sock came back ({:?} after the restart began)",
                r.at.duration_since(t0)
            );
            assert!(latency < Duration::from_secs(1), "{res}: {latency:?}");
        }
        let devs = kubelet
            .wait_for_devices(DPDK, |d| d.len() == 4, T)
            .await
            .unwrap();
        assert_eq!(devs[0].id, "0000:03:10.6");
        assert!(bed.dp_dir().join("arm.com_ps225_dpdk.sock").exists());
    }
    assert!(plugin.log().contains("serving again"));
    // One registration per kubelet start: the socket removal and the new kubelet.sock are one event
    // for the kubelet, not two.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for res in [NETDEV, DPDK] {
        let n = kubelet
            .registrations()
            .iter()
            .filter(|r| r.request.resource_name == res)
            .count();
        assert_eq!(n, 3, "{res}");
    }
}

#[tokio::test]
async fn starts_before_the_kubelet() {
    let bed = Bed::ps225();
    let plugin = bed.spawn("kubelet");
    // Give it time to find no kubelet.
    let deadline = Instant::now() + T;
    while !plugin.log().contains("waiting for the kubelet") {
        assert!(Instant::now() < deadline, "{}", plugin.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let kubelet = TestKubelet::start(&bed.dp_dir()).await;
    let r = kubelet.wait_for_registration(NETDEV, 1, T).await.unwrap();
    eprintln!(
        "registration {:?} after kubelet.sock appeared",
        r.at.duration_since(kubelet.started_at)
    );
    kubelet
        .wait_for_devices(NETDEV, |d| d.len() == 12, T)
        .await
        .unwrap();
}

#[tokio::test]
async fn sigterm_removes_sockets_and_exits_0() {
    let bed = Bed::ps225();
    let kubelet = TestKubelet::start(&bed.dp_dir()).await;
    let mut plugin = bed.spawn("kubelet");
    kubelet
        .wait_for_devices(NETDEV, |d| !d.is_empty(), T)
        .await
        .unwrap();
    kubelet
        .wait_for_devices(DPDK, |d| !d.is_empty(), T)
        .await
        .unwrap();
    assert!(bed
        .dp_dir()
        .join("arm.com_ps225_sriov_netdevice.sock")
        .exists());
    plugin.sigterm();
    let st = plugin.wait(T).await;
    assert_eq!(st.code(), Some(0), "{}", plugin.log());
    assert!(!bed
        .dp_dir()
        .join("arm.com_ps225_sriov_netdevice.sock")
        .exists());
    assert!(!bed.dp_dir().join("arm.com_ps225_dpdk.sock").exists());
    assert!(
        bed.dp_dir().join("kubelet.sock").exists(),
        "the kubelet's socket is not ours"
    );
}
