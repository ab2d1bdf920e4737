//! Hot reload of the config through the test kubelet: pools added, removed and changed, invalid
//! configs ignored, the ConfigMap `..data` swap; one process throughout.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use sriov_tests::kubelet::TestKubelet;

const EXTRA: &str = "arm.com/ps225_all_pf4";

fn ids(devs: &[kubelet_proto::v1beta1::Device]) -> Vec<String> {
    devs.iter().map(|d| d.id.clone()).collect()
}

fn with_extra_pool() -> serde_json::Value {
    let mut c = ps225_config();
    c["resourceList"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "resourceName": "ps225_all_pf4", "resourcePrefix": "arm.com",
            "selectors": {"rootDevices": ["0000:04:00.0"]}
        }));
    c
}

async fn started(bed: &Bed, kubelet: &TestKubelet) {
    kubelet
        .wait_for_devices(NETDEV, |d| d.len() == 12, T)
        .await
        .unwrap();
    kubelet
        .wait_for_devices(DPDK, |d| d.len() == 4, T)
        .await
        .unwrap();
    let _ = bed;
}

#[tokio::test]
async fn a_new_pool_registers_and_a_removed_pool_goes_away_in_the_same_process() {
    let bed = Bed::ps225();
    let kubelet = TestKubelet::start(&bed.dp_dir()).await;
    let plugin = bed.spawn("kubelet");
    let pid = plugin.pid();
    started(&bed, &kubelet).await;

    // Every VF of PF 4 is taken by an earlier pool (the first match wins): the new pool
    // registers with no devices.
    let netdev_updates = kubelet.resource(NETDEV).unwrap().updates;
    let t = Instant::now();
    bed.write_config(&with_extra_pool());
    kubelet.wait_for_registration(EXTRA, 1, T).await.unwrap();
    let added = t.elapsed();
    let devs = kubelet.wait_for_devices(EXTRA, |_| true, T).await.unwrap();
    assert!(devs.is_empty(), "{devs:?}");

    // Allocate a DPDK VF (a device-info file is written), then drop the DPDK pool.
    kubelet.allocate(DPDK, &["0000:03:10.6"]).await.unwrap();
    let devinfo = bed
        .devinfo_dir()
        .join("arm.com-ps225_dpdk-0000:03:10.6-device.json");
    assert!(devinfo.exists());
    let mut c = with_extra_pool();
    c["resourceList"].as_array_mut().unwrap().remove(1);
    let t = Instant::now();
    bed.write_config(&c);
    let sock = bed.dp_dir().join("arm.com_ps225_dpdk.sock");
    let deadline = Instant::now() + T;
    while sock.exists() {
        assert!(
            Instant::now() < deadline,
            "removed pool's socket still there"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let removed = t.elapsed();
    // Its VFs fall to the next pool that selects them: PF 4's dpdk VFs join the extra pool.
    let devs = kubelet
        .wait_for_devices(EXTRA, |d| d.len() == 2, T)
        .await
        .unwrap();
    assert_eq!(ids(&devs), ["0000:04:10.6", "0000:04:10.7"]);
    assert!(
        !devinfo.exists(),
        "device-info file of a device that left its pool"
    );
    println!("reload latency: new pool registered after {added:?}, removed pool's socket gone after {removed:?}");
    assert_eq!(plugin.pid(), pid);
    assert_eq!(
        kubelet
            .registrations()
            .iter()
            .filter(|r| r.request.resource_name == NETDEV)
            .count(),
        1,
        "unchanged pools are not re-registered"
    );
    assert_eq!(
        kubelet.resource(NETDEV).unwrap().updates,
        netdev_updates,
        "nor re-sent on their stream"
    );
}

#[tokio::test]
async fn an_invalid_config_is_logged_and_ignored_and_a_changed_pool_readvertises() {
    let bed = Bed::ps225();
    let kubelet = TestKubelet::start(&bed.dp_dir()).await;
    let mut plugin = bed.spawn("kubelet");
    started(&bed, &kubelet).await;
    let updates = kubelet.resource(NETDEV).unwrap().updates;

    let mut bad = ps225_config();
    bad["resourceList"][0]["selectorz"] = bad["resourceList"][0]["selectors"].clone();
    bed.write_config(&bad);
    plugin.wait_log("invalid config ignored", T).await;
    let log = plugin.log();
    let line = log
        .lines()
        .find(|l| l.contains("invalid config ignored"))
        .unwrap();
    assert!(
        line.contains("selectorz"),
        "the error names the key: {line}"
    );
    assert!(plugin.alive());
    let st = kubelet.resource(NETDEV).unwrap();
    assert_eq!(st.devices.unwrap().len(), 12, "same devices");
    assert_eq!(st.updates, updates, "nothing re-sent");
    std::fs::write(bed.config(), b"{ not json").unwrap();
    plugin.wait_log_count("invalid config ignored", 2, T).await;
    assert!(plugin.alive());
    assert_eq!(kubelet.resource(NETDEV).unwrap().updates, updates);

    // A device that leaves a pool loses its device-info file.
    kubelet.allocate(NETDEV, &["0000:04:10.0"]).await.unwrap();
    let devinfo = bed
        .devinfo_dir()
        .join("arm.com-ps225_sriov_netdevice-0000:04:10.0-device.json");
    assert!(devinfo.exists());

    // Narrow the netdev pool to PF 3: the open stream gets the new list, no re-registration.
    let mut c = ps225_config();
    c["resourceList"][0]["selectors"]["pfNames"] = serde_json::json!(["enp3s0f0np0"]);
    let t = Instant::now();
    bed.write_config(&c);
    let devs = kubelet
        .wait_for_devices(NETDEV, |d| d.len() == 6, T)
        .await
        .unwrap();
    println!(
        "reload latency: changed pool re-advertised after {:?}",
        t.elapsed()
    );
    assert!(devs.iter().all(|d| d.id.starts_with("0000:03")));
    assert_eq!(
        kubelet.registrations().len(),
        2,
        "one registration per pool"
    );
    assert!(!devinfo.exists());
    assert!(plugin.alive());
}

#[tokio::test]
async fn a_configmap_data_swap_is_picked_up() {
    let bed = Bed::ps225();
    // A ConfigMap volume: config.json -> ..data/config.json, ..data -> ..<timestamp>.
    let vol = bed.tmp.path().join("cm");
    let write_version = |name: &str, v: &serde_json::Value| {
        let d = vol.join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("config.json"), serde_json::to_vec(v).unwrap()).unwrap();
    };
    write_version("..2026_11_25_19_00_00.1", &ps225_config());
    std::os::unix::fs::symlink("..2026_11_25_19_00_00.1", vol.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/config.json", vol.join("config.json")).unwrap();
    let kubelet = TestKubelet::start(&bed.dp_dir()).await;
    let plugin = bed.spawn_with("kubelet", &vol.join("config.json"), None);
    let pid = plugin.pid();
    started(&bed, &kubelet).await;

    write_version("..2026_11_25_19_05_00.2", &with_extra_pool());
    let t = Instant::now();
    swap(&vol, "..2026_11_25_19_05_00.2");
    kubelet.wait_for_registration(EXTRA, 1, T).await.unwrap();
    println!("reload latency (ConfigMap swap): {:?}", t.elapsed());
    assert_eq!(plugin.pid(), pid);
}

/// What the kubelet does: a new `..data_tmp` symlink renamed over `..data`.
fn swap(vol: &Path, target: &str) {
    let tmp = vol.join("..data_tmp");
    std::os::unix::fs::symlink(target, &tmp).unwrap();
    std::fs::rename(&tmp, vol.join("..data")).unwrap();
}

#[tokio::test]
async fn watcher_mode_reload_adds_and_removes_registry_sockets() {
    use sriov_tests::kubelet::{first_list, WatcherClient};
    let bed = Bed::ps225();
    let plugin = bed.spawn("watcher");
    let pid = plugin.pid();
    let w = WatcherClient::new(&bed.reg_dir());
    let dpdk = w
        .wait_for_socket("arm.com_ps225_dpdk.sock", T)
        .await
        .unwrap();
    let mut dp = w.device_plugin(&dpdk).await.unwrap();
    assert_eq!(first_list(&mut dp).await.unwrap().len(), 4);

    let mut c = with_extra_pool();
    c["resourceList"].as_array_mut().unwrap().remove(1);
    bed.write_config(&c);
    let extra = w
        .wait_for_socket("arm.com_ps225_all_pf4.sock", T)
        .await
        .unwrap();
    assert_eq!(w.get_info(&extra).await.unwrap().name, EXTRA);
    let deadline = Instant::now() + T;
    while dpdk.exists() {
        assert!(Instant::now() < deadline, "removed pool's registry socket");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(w.sockets().len(), 2);
    assert_eq!(plugin.pid(), pid);
}
