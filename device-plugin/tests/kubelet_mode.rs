//! The real binary in kubelet-mode registration against the test kubelet, on a fake PS225 node.

mod common;

use std::time::{Duration, Instant};

use common::*;
use sriov_host::devinfo::DeviceInfo;
use sriov_tests::kubelet::TestKubelet;
use sriov_tests::schema::assert_valid_cdi;

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
async fn preferred_allocation_follows_each_pools_policy_over_grpc() {
    let mut config = ps225_config();
    config["resourceList"][1]["allocationPolicy"] = "spread".into();
    let bed = Bed::ps225();
    bed.write_config(&config);
    let kubelet = TestKubelet::start(&bed.dp_dir()).await;
    let _plugin = bed.spawn("kubelet");
    for res in [NETDEV, DPDK] {
        kubelet
            .wait_for_devices(res, |d| !d.is_empty(), T)
            .await
            .unwrap();
    }
    // Netdev pool (packed, the default): PF 03 has 4 VFs allocated, PF 04 has 3.
    let avail = [
        "0000:03:10.0",
        "0000:03:10.1",
        "0000:04:10.0",
        "0000:04:10.1",
        "0000:04:10.2",
    ];
    let p = kubelet.preferred(NETDEV, &avail, &[], 3).await.unwrap();
    assert_eq!(p, ["0000:03:10.0", "0000:03:10.1", "0000:04:10.0"]);
    let p = kubelet
        .preferred(NETDEV, &avail, &["0000:03:10.1"], 2)
        .await
        .unwrap();
    assert_eq!(p, ["0000:03:10.1", "0000:03:10.0"]);
    // A must-include on NUMA node 1 keeps the rest on node 1 (PF 04).
    let p = kubelet
        .preferred(NETDEV, &avail, &["0000:04:10.2"], 3)
        .await
        .unwrap();
    assert_eq!(p, ["0000:04:10.2", "0000:04:10.0", "0000:04:10.1"]);
    let e = kubelet.preferred(NETDEV, &avail, &[], 6).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(
        e.message().contains("larger than the 5 available devices"),
        "{e}"
    );
    let e = kubelet
        .preferred(NETDEV, &avail, &["0000:03:10.6"], 2)
        .await
        .unwrap_err();
    assert!(e.message().contains("not a device of this pool"), "{e}");

    // DPDK pool (spread): one VF per PF.
    let all = [
        "0000:03:10.6",
        "0000:03:10.7",
        "0000:04:10.6",
        "0000:04:10.7",
    ];
    let p = kubelet.preferred(DPDK, &all, &[], 2).await.unwrap();
    assert_eq!(p, ["0000:03:10.6", "0000:04:10.6"]);
    let p = kubelet.preferred(DPDK, &all, &[], 4).await.unwrap();
    assert_eq!(
        p,
        [
            "0000:03:10.6",
            "0000:04:10.6",
            "0000:03:10.7",
            "0000:04:10.7"
        ]
    );
    // NUMA first, then spread: with a node-1 must-include only node-1 devices are added.
    let p = kubelet
        .preferred(DPDK, &all, &["0000:04:10.7"], 2)
        .await
        .unwrap();
    assert_eq!(p, ["0000:04:10.7", "0000:04:10.6"]);
}

#[tokio::test]
async fn cdi_specs_per_pool_and_allocate_answers_with_cdi_names() {
    let bed = Bed::ps225();
    let kubelet = TestKubelet::start(&bed.dp_dir()).await;
    let cdi_dir = bed.cdi_dir();
    let mut plugin = bed.spawn_args(
        "kubelet",
        &["--cdi", "--cdi-dir", cdi_dir.to_str().unwrap()],
    );
    for res in [NETDEV, DPDK] {
        kubelet
            .wait_for_devices(res, |d| !d.is_empty(), T)
            .await
            .unwrap();
    }
    let dpdk_spec = cdi_dir.join("sriov-dp-arm.com-ps225_dpdk.json");
    let netdev_spec = cdi_dir.join("sriov-dp-arm.com-ps225_sriov_netdevice.json");
    let deadline = Instant::now() + T;
    while !(dpdk_spec.exists() && netdev_spec.exists()) {
        assert!(Instant::now() < deadline, "no CDI specs:\n{}", plugin.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let read = |p: &std::path::Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    };
    let spec = read(&dpdk_spec);
    assert_valid_cdi(&spec);
    assert_eq!(spec["kind"], DPDK);
    let names: Vec<&str> = spec["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "0000:03:10.6",
            "0000:03:10.7",
            "0000:04:10.6",
            "0000:04:10.7"
        ]
    );
    assert_eq!(
        spec["devices"][0]["containerEdits"]["deviceNodes"],
        serde_json::json!([{"path": "/dev/vfio/vfio", "permissions": "rw"},
                           {"path": "/dev/vfio/106", "permissions": "rw"}])
    );
    let spec = read(&netdev_spec);
    assert_valid_cdi(&spec);
    assert_eq!(spec["devices"].as_array().unwrap().len(), 12);

    let r = kubelet
        .allocate(DPDK, &["0000:04:10.7", "0000:03:10.6"])
        .await
        .unwrap();
    let cdi: Vec<&str> = r.cdi_devices.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(
        cdi,
        [
            "arm.com/ps225_dpdk=0000:04:10.7",
            "arm.com/ps225_dpdk=0000:03:10.6"
        ]
    );
    assert!(r.devices.is_empty(), "CDI names instead of device specs");
    assert_eq!(
        r.envs["PCIDEVICE_ARM_COM_PS225_DPDK"],
        "0000:04:10.7,0000:03:10.6"
    );

    // The DPDK pool leaves the config: its spec goes, the other stays.
    let mut c = ps225_config();
    c["resourceList"].as_array_mut().unwrap().truncate(1);
    bed.write_config(&c);
    let deadline = Instant::now() + T;
    while dpdk_spec.exists() {
        assert!(
            Instant::now() < deadline,
            "spec of a removed pool left:\n{}",
            plugin.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(netdev_spec.exists());

    plugin.sigterm();
    assert!(plugin.wait(T).await.success());
    assert!(
        !dpdk_spec.exists() && !netdev_spec.exists(),
        "specs removed on stop"
    );
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
    // for the kubelet, not two. Wait until every pool has handled kubelet.sock's creation of
    // both restarts and every registration it started has completed.
    for res in [NETDEV, DPDK] {
        let deadline = Instant::now() + T;
        while !registrations_settled(&plugin.log(), res, 2) {
            assert!(Instant::now() < deadline, "{res}:\n{}", plugin.log());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    for res in [NETDEV, DPDK] {
        let n = kubelet
            .registrations()
            .iter()
            .filter(|r| r.request.resource_name == res)
            .count();
        assert_eq!(n, 3, "{res}");
    }
}

/// Whether `pool`'s log shows `restarts` kubelet.sock creations handled ("already registered" or
/// "registering") and no registration started ("registering", "serving again") but not done.
fn registrations_settled(log: &str, pool: &str, restarts: usize) -> bool {
    let field = format!("pool={pool}");
    let mut handled = 0;
    let mut pending = false;
    for l in log
        .lines()
        .filter(|l| l.split_whitespace().any(|w| w == field))
    {
        if l.contains("already registered with this kubelet socket") {
            handled += 1;
        } else if l.contains("kubelet socket appeared: registering") {
            handled += 1;
            pending = true;
        } else if l.contains("serving again") {
            pending = true;
        } else if l.contains("registered with the kubelet") {
            pending = false;
        }
    }
    handled >= restarts && !pending
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
    // The test kubelet keeps its connections (and the ListAndWatch streams) open.
    let t0 = std::time::Instant::now();
    plugin.sigterm();
    let st = plugin.wait(T).await;
    let took = t0.elapsed();
    assert_eq!(st.code(), Some(0), "{}", plugin.log());
    println!("SIGTERM to exit with the kubelet connected: {took:?}");
    assert!(
        took < std::time::Duration::from_secs(1),
        "SIGTERM took {took:?}\n{}",
        plugin.log()
    );
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

/// Inodes of the TCP sockets the process listens on.
#[allow(clippy::unwrap_used)]
fn tcp_listeners(pid: i32) -> Vec<String> {
    let fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|l| {
            l.to_str()
                .and_then(|s| s.strip_prefix("socket:["))
                .map(|s| s.trim_end_matches(']').to_string())
        })
        .collect();
    let mut out = Vec::new();
    for f in ["tcp", "tcp6"] {
        let t = std::fs::read_to_string(format!("/proc/{pid}/net/{f}")).unwrap_or_default();
        for l in t.lines().skip(1) {
            let cols: Vec<&str> = l.split_whitespace().collect();
            if cols.len() > 9 && cols[3] == "0A" && fds.contains(&cols[9].to_string()) {
                out.push(cols[9].to_string());
            }
        }
    }
    out
}

#[tokio::test]
async fn metrics_endpoint_reports_pools_registrations_and_allocations() {
    use sriov_tests::promtext::{http_get, parse};
    let bed = Bed::ps225();
    let kubelet = TestKubelet::start(&bed.dp_dir()).await;
    let plugin = bed.spawn_args("kubelet", &["--metrics-addr", "127.0.0.1:0"]);
    for res in [NETDEV, DPDK] {
        kubelet
            .wait_for_devices(res, |d| !d.is_empty(), T)
            .await
            .unwrap();
    }
    let deadline = Instant::now() + T;
    let addr: std::net::SocketAddr = loop {
        let log = plugin.log();
        if let Some(a) = log
            .lines()
            .find(|l| l.contains("metrics listening"))
            .and_then(|l| l.split("addr=").nth(1))
            .and_then(|a| a.split_whitespace().next())
        {
            break a.parse().unwrap();
        }
        assert!(Instant::now() < deadline, "no metrics listener:\n{log}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(tcp_listeners(plugin.pid()).len(), 1);
    kubelet.allocate(DPDK, &["0000:03:10.6"]).await.unwrap();
    kubelet.allocate(DPDK, &["0000:03:10.0"]).await.unwrap_err();

    let (code, _, body) = tokio::task::spawn_blocking(move || http_get(addr, "/metrics"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(code, 200);
    let e = parse(&body).unwrap_or_else(|err| panic!("{err}\n{body}"));
    let healthy = |r: &str| {
        e.value(
            "sriov_dp_devices",
            &[("resource", r), ("health", "Healthy")],
        )
    };
    assert_eq!(healthy(NETDEV), Some(12.0));
    assert_eq!(healthy(DPDK), Some(4.0));
    for r in [NETDEV, DPDK] {
        assert_eq!(
            e.value(
                "sriov_dp_kubelet_registrations_total",
                &[("resource", r), ("mode", "kubelet")]
            ),
            Some(1.0),
            "{body}"
        );
    }
    assert_eq!(
        e.value("sriov_dp_allocations_total", &[("resource", DPDK)]),
        Some(1.0)
    );
    assert_eq!(
        e.value("sriov_dp_allocation_failures_total", &[("resource", DPDK)]),
        Some(1.0)
    );
    for pf in ["0000:03:00.0", "0000:04:00.0"] {
        assert_eq!(e.value("sriov_dp_pf_num_vfs", &[("pf", pf)]), Some(8.0));
    }
    assert_eq!(e.value("sriov_dp_provision_runs_total", &[]), Some(0.0));
    assert_eq!(
        e.value("sriov_dp_config_last_reload_successful", &[]),
        Some(1.0)
    );

    // An invalid config is counted as a refused reload; a valid one after it as applied.
    let scrape = || async move {
        let (_, _, body) = tokio::task::spawn_blocking(move || http_get(addr, "/metrics"))
            .await
            .unwrap()
            .unwrap();
        parse(&body).unwrap()
    };
    bed.write_config(&serde_json::json!({"resourceList": [{"resourceName": "x", "bogus": 1}]}));
    plugin.wait_log("invalid config ignored", T).await;
    let e = scrape().await;
    // (A write seen half-done may count as one more refused reload.)
    assert!(
        e.value("sriov_dp_config_reload_failures_total", &[])
            .unwrap()
            >= 1.0
    );
    assert_eq!(
        e.value("sriov_dp_config_last_reload_successful", &[]),
        Some(0.0)
    );
    bed.write_config(&ps225_config());
    plugin.wait_log("config applied", T).await;
    let e = scrape().await;
    assert_eq!(
        e.value("sriov_dp_config_last_reload_successful", &[]),
        Some(1.0)
    );
    assert!(e.value("sriov_dp_config_reloads_total", &[]).unwrap() >= 2.0);
    let (code, _, body) = tokio::task::spawn_blocking(move || http_get(addr, "/healthz"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((code, body.as_str()), (200, "ok\n"));
}

#[tokio::test]
async fn no_tcp_listener_without_metrics_addr() {
    let bed = Bed::ps225();
    let kubelet = TestKubelet::start(&bed.dp_dir()).await;
    let plugin = bed.spawn("kubelet");
    kubelet
        .wait_for_devices(DPDK, |d| !d.is_empty(), T)
        .await
        .unwrap();
    assert!(tcp_listeners(plugin.pid()).is_empty());
    assert!(!plugin.log().contains("metrics listening"));
}
