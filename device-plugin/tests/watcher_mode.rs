//! The real binary in plugin-watcher registration mode.

mod common;

use std::time::{Duration, Instant};

use common::*;
use sriov_tests::kubelet::{first_list, WatcherClient};

#[tokio::test]
async fn serves_registration_and_device_plugin_on_one_socket() {
    let bed = Bed::ps225();
    std::fs::create_dir_all(bed.reg_dir()).unwrap();
    let _plugin = bed.spawn("auto"); // the registry dir exists: watcher mode
    let w = WatcherClient::new(&bed.reg_dir());
    let sock = w
        .wait_for_socket("arm.com_ps225_dpdk.sock", T)
        .await
        .unwrap();
    assert_eq!(mode_of(&sock), 0o600);
    let info = w.get_info(&sock).await.unwrap();
    assert_eq!(info.r#type, "DevicePlugin");
    assert_eq!(info.name, DPDK);
    assert_eq!(info.endpoint, sock.to_string_lossy());
    assert_eq!(info.supported_versions, ["v1beta1"]);
    w.notify(&sock, true, "").await.unwrap();

    let mut dp = w.device_plugin(&sock).await.unwrap();
    let devs = first_list(&mut dp).await.unwrap();
    assert_eq!(devs.len(), 4);
    assert_eq!(devs[0].id, "0000:03:10.6");
    let r = dp
        .allocate(kubelet_proto::v1beta1::AllocateRequest {
            container_requests: vec![kubelet_proto::v1beta1::ContainerAllocateRequest {
                devices_ids: vec!["0000:04:10.6".into()],
            }],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.container_responses[0].envs["PCIDEVICE_ARM_COM_PS225_DPDK"],
        "0000:04:10.6"
    );
    assert_eq!(w.sockets().len(), 2);
    assert!(!bed.dp_dir().join("arm.com_ps225_dpdk.sock").exists());
}

#[tokio::test]
async fn recreates_the_socket_after_a_failed_registration() {
    let bed = Bed::ps225();
    let plugin = bed.spawn("watcher");
    let w = WatcherClient::new(&bed.reg_dir());
    let sock = w
        .wait_for_socket("arm.com_ps225_sriov_netdevice.sock", T)
        .await
        .unwrap();
    let ino = std::fs::metadata(&sock)
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .unwrap();
    let t0 = Instant::now();
    w.notify(&sock, false, "plugin name collision")
        .await
        .unwrap();
    // Gone, then back after the 1 s back-off as a new socket.
    let deadline = Instant::now() + T;
    loop {
        let now = std::fs::metadata(&sock).map(|m| std::os::unix::fs::MetadataExt::ino(&m));
        if matches!(now, Ok(i) if i != ino) {
            break;
        }
        assert!(Instant::now() < deadline, "{}", plugin.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let waited = t0.elapsed();
    eprintln!("registry socket re-created after {waited:?}");
    assert!(waited >= Duration::from_millis(900), "{waited:?}");
    w.wait_for_socket("arm.com_ps225_sriov_netdevice.sock", T)
        .await
        .unwrap();
    assert_eq!(w.get_info(&sock).await.unwrap().name, NETDEV);
    assert!(plugin.log().contains("plugin name collision"));
}
