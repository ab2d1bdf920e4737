//! Provisioning through the binary: a fake tree with the fake kernel reacting to sysfs writes,
//! the PF a veth in a throwaway network namespace so the PF link is real netlink (root only for
//! that one); failures at start keep the daemon serving.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;
use sriov_tests::fakekernel::{FakeKernel, FakePf};
use sriov_tests::fakesys::{FakeSysfs, BRCM, PS225_VF};
use sriov_tests::kubelet::TestKubelet;
use sriov_tests::netbed;

const NET: &str = "arm.com/net";
const DPDK_POOL: &str = "arm.com/dpdk";

fn ids(devs: &[kubelet_proto::v1beta1::Device]) -> Vec<String> {
    devs.iter().map(|d| d.id.clone()).collect()
}

fn config() -> serde_json::Value {
    serde_json::json!({
        "provision": [{"pf": "pf0", "numVfs": 4, "linkUp": true,
                       "vfDrivers": [{"vfs": "2-3", "driver": "vfio-pci"}]}],
        "resourceList": [
            {"resourceName": "net", "resourcePrefix": "arm.com",
             "selectors": {"devices": ["d800"], "drivers": ["bnxt_en"]}},
            {"resourceName": "dpdk", "resourcePrefix": "arm.com",
             "selectors": {"devices": ["d800"], "drivers": ["vfio-pci"]}}
        ]
    })
}

#[tokio::test]
async fn creates_and_binds_vfs_then_a_second_start_changes_nothing() {
    let Some(nb) = netbed::Bed::new("provisioning") else {
        return;
    };
    // The PF is down: linkUp brings it up before VFs are created. Its peer is up, so once up
    // the PF has carrier and the VFs are Healthy.
    nb.ip_host(&["link", "set", "pf0", "down"]);
    nb.ip_host(&["link", "set", "pf0peer", "up"]);
    let vfio = nb.sys.root().join("bus/pci/drivers/vfio-pci");
    std::fs::create_dir_all(&vfio).unwrap();
    for f in ["bind", "unbind"] {
        std::fs::write(vfio.join(f), "").unwrap();
    }
    let kernel = FakeKernel::start(
        &nb.sys,
        vec![FakePf {
            addr: netbed::PF_PCI.into(),
            vf_vendor: BRCM,
            vf_device: PS225_VF,
            vf_driver: Some("bnxt_en".into()),
            netdev_prefix: "pf0".into(),
            create_limit: None,
        }],
    );
    let bed = Bed::with_tree(FakeSysfs::attach(nb.sys.root()), &config());
    let ns = PathBuf::from("/run/netns").join(&nb.host);
    let kubelet = TestKubelet::start(&bed.dp_dir()).await;
    let mut plugin = bed.spawn_with("kubelet", &bed.config(), Some(&ns));

    let net = kubelet
        .wait_for_devices(NET, |d| d.len() == 2, T)
        .await
        .unwrap();
    assert_eq!(ids(&net), ["0000:03:10.0", "0000:03:10.1"]);
    let dpdk = kubelet
        .wait_for_devices(DPDK_POOL, |d| d.len() == 2, T)
        .await
        .unwrap();
    assert_eq!(ids(&dpdk), ["0000:03:10.2", "0000:03:10.3"]);
    let healthy = kubelet
        .wait_for_devices(NET, |d| d.iter().all(|x| x.health == "Healthy"), T)
        .await;
    assert!(healthy.is_ok(), "VFs of an up PF with carrier are Healthy");
    assert!(nb.link(None, "pf0").unwrap().up, "linkUp raised the PF");
    let log = kernel.log();
    assert!(
        log.contains(&format!("numvfs {} 4", netbed::PF_PCI)),
        "{log:?}"
    );
    assert!(log.contains(&"bind 0000:03:10.2 vfio-pci".to_string()));
    assert!(log.contains(&"bind 0000:03:10.3 vfio-pci".to_string()));
    assert!(plugin.log().contains("PF provisioned"));

    plugin.sigterm();
    plugin.wait(T).await;
    let before = kernel.log().len();
    let plugin = bed.spawn_with("kubelet", &bed.config(), Some(&ns));
    plugin.wait_log("PF already provisioned as asked", T).await;
    kubelet
        .wait_for_registration(NET, 2, T)
        .await
        .expect("registers again");
    let net = kubelet
        .wait_for_devices(NET, |d| d.len() == 2, T)
        .await
        .unwrap();
    assert_eq!(ids(&net), ["0000:03:10.0", "0000:03:10.1"]);
    kernel.settle();
    assert_eq!(
        kernel.log()[before..],
        [] as [String; 0],
        "the second start writes nothing"
    );

    // A config change re-provisions (0 first, then 6), then the pools follow, on their streams.
    let mut c = config();
    c["provision"][0]["numVfs"] = serde_json::json!(6);
    let before = kernel.log().len();
    bed.write_config(&c);
    let net = kubelet
        .wait_for_devices(NET, |d| d.len() == 4, T)
        .await
        .unwrap();
    assert_eq!(
        ids(&net),
        [
            "0000:03:10.0",
            "0000:03:10.1",
            "0000:03:10.4",
            "0000:03:10.5"
        ]
    );
    let log = kernel.log()[before..].to_vec();
    let pf = netbed::PF_PCI;
    assert_eq!(
        log.iter()
            .filter(|l| l.starts_with("numvfs"))
            .collect::<Vec<_>>(),
        [&format!("numvfs {pf} 0"), &format!("numvfs {pf} 6")],
        "{log:?}"
    );
    assert!(kubelet
        .wait_for_registration(NET, 3, Duration::from_millis(200))
        .await
        .is_err());

    // A VF named by a CNI device-info file is in use: the count is not changed under it.
    let cni = bed.tmp.path().join("cni");
    std::fs::create_dir_all(&cni).unwrap();
    std::fs::write(
        cni.join("pod1-net1.json"),
        r#"{"type":"pci","version":"1.1.0","pci":{"pci-address":"0000:03:10.1"}}"#,
    )
    .unwrap();
    let before = kernel.log().len();
    bed.write_config(&config());
    plugin.wait_log("is in use by a pod", T).await;
    let line = plugin
        .log()
        .lines()
        .find(|l| l.contains("is in use by a pod"))
        .unwrap()
        .to_string();
    assert!(
        line.contains("0000:03:10.1") && line.contains("pod1-net1.json"),
        "{line}"
    );
    let deadline = std::time::Instant::now() + T;
    while plugin.log().matches("config applied").count() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "second reload not applied"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    kernel.settle();
    assert!(
        !kernel.log()[before..]
            .iter()
            .any(|l| l.starts_with("numvfs")),
        "no VF count change while a VF is in use"
    );
    assert_eq!(kubelet.resource(NET).unwrap().devices.unwrap().len(), 4);
}

#[tokio::test]
async fn a_provisioning_failure_at_start_is_logged_and_the_existing_devices_are_served() {
    let bed = Bed::ps225();
    let mut cfg = ps225_config();
    cfg["provision"] = serde_json::json!([{"pf": "0000:03:00.0", "numVfs": 20}]);
    bed.write_config(&cfg);
    let kubelet = TestKubelet::start(&bed.dp_dir()).await;
    let mut plugin = bed.spawn("kubelet");
    let devs = kubelet
        .wait_for_devices(NETDEV, |d| d.len() == 12, T)
        .await
        .unwrap();
    assert!(devs.iter().all(|d| d.health == "Healthy"));
    plugin
        .wait_log(
            "numVfs 20 exceeds sriov_totalvfs 16",
            Duration::from_secs(2),
        )
        .await;
    assert!(plugin.alive(), "a provisioning failure is not fatal");

    let mut args: Vec<String> = vec!["inventory".into()];
    args.extend(bed.args("kubelet"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (st, out, err) = bed.run(&args);
    assert!(st.success(), "{err}");
    assert!(
        out.contains(
            "0000:03:00.0 (0000:03:00.0): numVfs 8 of 16, wanted 20: numVfs 20 exceeds sriov_totalvfs 16"
        ),
        "{out}"
    );
}
