//! `--mode dra` end to end: the daemon binary on a fake sysfs tree, publishing to an in-memory
//! API server (`sriov_tests::fakeapi`, over HTTP through a kubeconfig), prepared and
//! unprepared through its real gRPC sockets.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use kubelet_proto::dra::dra_plugin_client::DraPluginClient;
use kubelet_proto::dra::{Claim, NodePrepareResourcesRequest, NodeUnprepareResourcesRequest};
use kubelet_proto::pluginregistration::registration_client::RegistrationClient;
use kubelet_proto::pluginregistration::{InfoRequest, RegistrationStatus};
use serde_json::{json, Value};
use sriov_tests::fakeapi::FakeApi;
use sriov_tests::fakesys::{Dev, FakeSysfs, BRCM, PS225_VF};
use sriov_tests::netbed;

const NODE: &str = "node-a";
const DRIVER: &str = "sriov.arm.com";

fn plugins_dir(bed: &Bed) -> PathBuf {
    bed.tmp.path().join("plugins")
}

fn dra_sock(bed: &Bed) -> PathBuf {
    plugins_dir(bed).join(DRIVER).join("dra.sock")
}

fn reg_sock(bed: &Bed) -> PathBuf {
    bed.reg_dir().join(format!("{DRIVER}-reg.sock"))
}

/// The daemon in dra mode for `bed`, talking to `api`.
fn dra_command(bed: &Bed, api: &FakeApi) -> Command {
    let mut cmd = bed.command(bed.bin(), "watcher");
    let p = |p: PathBuf| p.to_string_lossy().into_owned();
    cmd.args(["--mode", "dra", "--node-name", NODE])
        .args(["--dra-plugins-dir", &p(plugins_dir(bed))])
        .args(["--cdi-dir", &p(bed.cdi_dir())])
        .env("KUBECONFIG", api.kubeconfig(bed.tmp.path()))
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("NODE_NAME");
    cmd
}

fn attr<'a>(dev: &'a Value, name: &str) -> &'a Value {
    let a = &dev["attributes"][name];
    a.get("string")
        .or_else(|| a.get("int"))
        .unwrap_or(&Value::Null)
}

fn tainted(dev: &Value) -> bool {
    dev["taints"]
        .as_array()
        .is_some_and(|t| t.iter().any(|t| t["key"] == "sriov.arm.com/unhealthy"))
}

#[tokio::test]
async fn slices_are_published_from_the_fake_tree_and_deleted_at_sigterm() {
    let bed = Bed::ps225();
    let api = FakeApi::start(None);
    api.add_node(NODE, "node-uid-1");
    let mut plugin = bed.try_start(dra_command(&bed, &api), None).unwrap();
    let devs = api.wait_devices(T, |d| d.len() == 16).await;

    let vfio = &devs["0000-04-10-6"];
    assert_eq!(attr(vfio, "driver"), "vfio-pci");
    assert_eq!(attr(vfio, "pool"), "arm.com/ps225_dpdk");
    assert_eq!(attr(vfio, "pfName"), "enp4s0f0np0");
    assert_eq!(attr(vfio, "pfPciAddress"), "0000:04:00.0");
    assert_eq!(attr(vfio, "numaNode"), 1);
    assert_eq!(attr(vfio, "vfIndex"), 6);
    assert_eq!(attr(vfio, "resource.kubernetes.io/pcieRoot"), "pci0000:00");
    let net = &devs["0000-03-10-1"];
    assert_eq!(attr(net, "driver"), "bnxt_en");
    assert_eq!(attr(net, "pool"), "arm.com/ps225_sriov_netdevice");
    assert_eq!(attr(net, "numaNode"), 0);
    assert!(devs.values().all(|d| !tainted(d)), "{devs:?}");
    let slices = api.slices();
    let slice = slices.values().next().unwrap();
    assert_eq!(slice["spec"]["driver"], DRIVER);
    assert_eq!(slice["spec"]["nodeName"], NODE);
    assert_eq!(slice["metadata"]["ownerReferences"][0]["uid"], "node-uid-1");

    // Sockets 0600 in a 0700 driver directory.
    for s in [dra_sock(&bed), reg_sock(&bed)] {
        assert_eq!(mode_of(&s), 0o600, "{}", s.display());
    }
    assert_eq!(mode_of(&plugins_dir(&bed).join(DRIVER)), 0o700);

    assert!(plugin.stop(T), "clean exit:\n{}", plugin.log());
    assert!(api.slices().is_empty(), "slices left: {:?}", api.slices());
    assert!(!reg_sock(&bed).exists() && !dra_sock(&bed).exists());
}

#[tokio::test]
async fn a_config_reload_changes_the_slices() {
    let bed = Bed::ps225();
    let api = FakeApi::start(None);
    let _plugin = bed.try_start(dra_command(&bed, &api), None).unwrap();
    api.wait_devices(T, |d| d.len() == 16).await;
    let mut only_dpdk = ps225_config();
    only_dpdk["resourceList"].as_array_mut().unwrap().remove(0);
    bed.replace_config(&only_dpdk).unwrap();
    let devs = api.wait_devices(T, |d| d.len() == 4).await;
    assert!(
        devs.values()
            .all(|d| attr(d, "pool") == "arm.com/ps225_dpdk" && attr(d, "driver") == "vfio-pci"),
        "{devs:?}"
    );
    // A pool back under another name: the attribute follows.
    let mut renamed = ps225_config();
    renamed["resourceList"][0]["resourceName"] = json!("uplink");
    bed.replace_config(&renamed).unwrap();
    let devs = api
        .wait_devices(T, |d| {
            d.len() == 16 && d.values().any(|v| attr(v, "pool") == "arm.com/uplink")
        })
        .await;
    assert_eq!(attr(&devs["0000-03-10-0"], "pool"), "arm.com/uplink");
}

#[tokio::test]
async fn the_kubelet_wiping_slices_then_registering_us_again_brings_them_back() {
    let bed = Bed::ps225();
    let api = FakeApi::start(None);
    let plugin = bed.try_start(dra_command(&bed, &api), None).unwrap();
    api.wait_devices(T, |d| d.len() == 16).await;
    wait_for(&reg_sock(&bed)).await;
    let ch = kubelet_proto::connect_uds(&reg_sock(&bed)).await.unwrap();
    let mut reg = RegistrationClient::new(ch);
    let info = reg.get_info(InfoRequest {}).await.unwrap().into_inner();
    assert_eq!(info.r#type, "DRAPlugin");
    assert_eq!(info.name, DRIVER);
    assert_eq!(PathBuf::from(&info.endpoint), dra_sock(&bed));
    assert_eq!(
        info.supported_versions,
        ["v1.DRAPlugin", "v1.DRAResourceHealth"]
    );
    // A kubelet starting deletes the node's slices, then its plugin watcher registers us.
    api.wipe_slices();
    reg.notify_registration_status(RegistrationStatus {
        plugin_registered: true,
        error: String::new(),
    })
    .await
    .unwrap();
    api.wait_devices(T, |d| d.len() == 16).await;
    drop(plugin);
}

async fn wait_for(p: &Path) {
    let deadline = std::time::Instant::now() + T;
    while !p.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "{} never appeared",
            p.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn claim_object(uid: &str, results: &[(&str, &str)]) -> Value {
    let results: Vec<Value> = results
        .iter()
        .map(|(req, dev)| json!({"request": req, "driver": DRIVER, "pool": NODE, "device": dev}))
        .collect();
    json!({"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
        "metadata": {"namespace": "default", "name": "pod-a-vfs", "uid": uid},
        "spec": {"devices": {"requests": []}},
        "status": {"allocation": {"devices": {"results": results}}}})
}

#[tokio::test]
async fn prepare_and_unprepare_through_the_socket_write_and_remove_cdi_and_device_info() {
    let bed = Bed::ps225();
    let api = FakeApi::start(None);
    let plugin = bed.try_start(dra_command(&bed, &api), None).unwrap();
    api.wait_devices(T, |d| d.len() == 16).await;
    wait_for(&dra_sock(&bed)).await;
    let uid = "5d1c-claim-uid";
    api.put_claim(claim_object(
        uid,
        &[("dpdk", "0000-04-10-6"), ("net", "0000-03-10-1")],
    ));
    let claim = Claim {
        namespace: "default".into(),
        name: "pod-a-vfs".into(),
        uid: uid.into(),
    };
    let ch = kubelet_proto::connect_uds(&dra_sock(&bed)).await.unwrap();
    let mut dra = DraPluginClient::new(ch);
    let resp = dra
        .node_prepare_resources(NodePrepareResourcesRequest {
            claims: vec![claim.clone()],
        })
        .await
        .unwrap()
        .into_inner();
    let r = &resp.claims[uid];
    assert_eq!(r.error, "", "{}", plugin.log());
    let ids: Vec<&str> = r
        .devices
        .iter()
        .flat_map(|d| d.cdi_device_ids.iter().map(String::as_str))
        .collect();
    assert_eq!(
        ids,
        [
            "sriov.arm.com/vf=0000:04:10.6",
            "sriov.arm.com/vf=0000:03:10.1"
        ]
    );
    let spec_path = bed.cdi_dir().join(format!("sriov-dra-{uid}.json"));
    let spec: Value = serde_json::from_slice(&std::fs::read(&spec_path).unwrap()).unwrap();
    assert_eq!(spec["kind"], "sriov.arm.com/vf");
    let nodes: Vec<&str> = spec["devices"][0]["containerEdits"]["deviceNodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["path"].as_str().unwrap())
        .collect();
    assert_eq!(nodes, ["/dev/vfio/vfio", "/dev/vfio/114"]);
    assert!(spec["devices"][1]["containerEdits"]
        .get("deviceNodes")
        .is_none());
    let dpdk_info = bed
        .devinfo_dir()
        .join("arm.com-ps225_dpdk-0000:04:10.6-device.json");
    let net_info = bed
        .devinfo_dir()
        .join("arm.com-ps225_sriov_netdevice-0000:03:10.1-device.json");
    let info: Value = serde_json::from_slice(&std::fs::read(&dpdk_info).unwrap()).unwrap();
    assert_eq!(info["pci"]["pci-address"], "0000:04:10.6", "{info}");
    assert!(net_info.exists());
    // Multus looks device-info up by the ResourceClaim's name for a DRA attachment.
    let by_claim = bed.devinfo_dir().join("pod-a-vfs-0000:03:10.1-device.json");
    let info: Value = serde_json::from_slice(&std::fs::read(&by_claim).unwrap()).unwrap();
    assert_eq!(info["pci"]["pci-address"], "0000:03:10.1", "{info}");

    let resp = dra
        .node_unprepare_resources(NodeUnprepareResourcesRequest {
            claims: vec![claim],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.claims[uid].error, "");
    assert!(!spec_path.exists());
    assert!(!dpdk_info.exists() && !net_info.exists() && !by_claim.exists());
    drop(plugin);
}

#[tokio::test]
async fn a_vf_rebound_since_it_was_pooled_is_refused_and_nothing_is_left() {
    let bed = Bed::ps225();
    let api = FakeApi::start(None);
    let plugin = bed.try_start(dra_command(&bed, &api), None).unwrap();
    api.wait_devices(T, |d| d.len() == 16).await;
    wait_for(&dra_sock(&bed)).await;
    let uid = "rebound-uid";
    api.put_claim(claim_object(
        uid,
        &[("net", "0000-03-10-2"), ("dpdk", "0000-03-10-7")],
    ));
    // 0000:03:10.7 moves to bnxt_en behind the daemon's back (no uevent in a fake tree).
    bed.sys.bind("0000:03:10.7", Some("bnxt_en"));
    let ch = kubelet_proto::connect_uds(&dra_sock(&bed)).await.unwrap();
    let resp = DraPluginClient::new(ch)
        .node_prepare_resources(NodePrepareResourcesRequest {
            claims: vec![Claim {
                namespace: "default".into(),
                name: "pod-a-vfs".into(),
                uid: uid.into(),
            }],
        })
        .await
        .unwrap()
        .into_inner();
    let err = &resp.claims[uid].error;
    assert!(
        err.contains("0000:03:10.7") && err.contains("bnxt_en"),
        "{err}"
    );
    assert!(!bed.cdi_dir().join(format!("sriov-dra-{uid}.json")).exists());
    let left: Vec<_> = std::fs::read_dir(bed.devinfo_dir())
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "device-info files left: {left:?}");
    drop(plugin);
}

#[test]
fn bad_dra_flags_are_refused_with_what_to_do() {
    let bed = Bed::ps225();
    let api = FakeApi::start(None);
    let cases: [(&[&str], &str); 3] = [
        (&["--mode", "dra"], "--node-name"),
        (&["--mode", "dra", "--node-name", "Node_A"], "\"Node_A\""),
        (&["--mode", "dra", "--node-name", NODE, "--cdi"], "--cdi"),
    ];
    for (args, want) in cases {
        let mut cmd = bed.command(bed.bin(), "watcher");
        cmd.args(args)
            .env("KUBECONFIG", api.kubeconfig(bed.tmp.path()))
            .env_remove("NODE_NAME");
        let out = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    assert!(
        api.log().is_empty(),
        "nothing reached the API: {:?}",
        api.log()
    );
}

/// Two PFs as veths in a throwaway netns (`pf0` at 0000:03:00.0, `pf1` at 0000:04:00.0), four
/// VFs each, one pool.
fn link_node(nb: &netbed::Bed) -> Bed {
    nb.add_second_pf();
    for (pf, bus) in [(netbed::PF_PCI, 3), ("0000:04:00.0", 4)] {
        for i in 0..4u32 {
            let a = format!("0000:{bus:02x}:10.{i}");
            nb.sys
                .add_vf(pf, i, &Dev::new(&a, BRCM, PS225_VF).driver("bnxt_en"));
        }
    }
    Bed::with_tree(
        FakeSysfs::attach(nb.sys.root()),
        &json!({"resourceList": [{
            "resourceName": "vfs", "resourcePrefix": "arm.com",
            "selectors": {"vendors": ["14e4"], "devices": ["d800"], "drivers": ["bnxt_en"]}
        }]}),
    )
}

#[tokio::test]
async fn a_pf_link_down_taints_exactly_its_vfs() {
    let Some(nb) = netbed::Bed::new("dra_link") else {
        return;
    };
    let bed = link_node(&nb);
    let ns = PathBuf::from("/run/netns").join(&nb.host);
    let api = FakeApi::start(Some(&ns));
    let _plugin = bed.try_start(dra_command(&bed, &api), Some(&ns)).unwrap();
    let on = |d: &std::collections::BTreeMap<String, Value>, pf: &str, t: bool| {
        let v: Vec<_> = d.iter().filter(|(n, _)| n.starts_with(pf)).collect();
        v.len() == 4 && v.iter().all(|(_, d)| tainted(d) == t)
    };
    api.wait_devices(T, |d| d.len() == 8 && d.values().all(|v| !tainted(v)))
        .await;
    nb.ip_host(&["link", "set", "pf1", "down"]);
    api.wait_devices(T, |d| on(d, "0000-04", true) && on(d, "0000-03", false))
        .await;
    nb.ip_host(&["link", "set", "pf1", "up"]);
    api.wait_devices(T, |d| on(d, "0000-04", false) && on(d, "0000-03", false))
        .await;
    nb.ip_host(&["link", "set", "pf0peer", "down"]);
    let devs = api
        .wait_devices(T, |d| on(d, "0000-03", true) && on(d, "0000-04", false))
        .await;
    let taint = &devs["0000-03-10-0"]["taints"][0];
    assert_eq!(taint["effect"], "NoSchedule");
}
