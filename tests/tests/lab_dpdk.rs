//! The kubelet's side of the DPDK handoff in the emulated lab (scenarios 70-dpdk-handoff and
//! demo): a test kubelet (real gRPC) waits for the device plugin, started by the scenario with
//! `config-samples/igb-lab.json`, to advertise its two pools with every device Healthy, then
//! allocates the vfio-pci VF to a "DPDK pod" and igbvf VFs to "kernel pods", and writes what each
//! pod gets (env, device specs, mounts) to a JSON file the scenario starts the pods from.
//!
//! Built only with the `lab` feature (scripts/lab.sh); run anywhere but the lab guest (no
//! `SRIOV_LAB`) it fails. Environment:
//! - `LAB_KUBELET_DIR`: the device plugin's `--device-plugins-dir` (default
//!   `/run/lab-dp/device-plugins`)
//! - `LAB_ALLOC_OUT`: where to write the allocations (default `/tmp/lab-alloc.json`)
//! - `LAB_KERNEL_PODS`: how many kernel pods get one igbvf VF each (default 1)

use std::collections::BTreeMap;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kubelet_proto::v1beta1::{ContainerAllocateResponse, Device};
use serde_json::{json, Value};
use sriov_tests::kubelet::TestKubelet;

const NETDEV: &str = "lab.sriov.io/igb_netdevice";
const DPDK: &str = "lab.sriov.io/igb_dpdk";
const NETDEV_ENV: &str = "PCIDEVICE_LAB_SRIOV_IO_IGB_NETDEVICE";
const DPDK_ENV: &str = "PCIDEVICE_LAB_SRIOV_IO_IGB_DPDK";
/// Provisioning (4 VFs, one rebind) plus pool building, under software emulation.
const WAIT: Duration = Duration::from_secs(180);

fn assert_in_lab() {
    assert!(
        std::env::var_os("SRIOV_LAB").is_some(),
        "not in the emulated lab: run scripts/lab.sh 70-dpdk-handoff"
    );
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn all_healthy(d: &[Device], n: usize) -> bool {
    d.len() == n && d.iter().all(|d| d.health == "Healthy")
}

fn print_pool(name: &str, devices: &[Device]) {
    println!("pool {name}: {} device(s)", devices.len());
    for d in devices {
        let numa: Vec<String> = d
            .topology
            .iter()
            .flat_map(|t| t.nodes.iter().map(|n| n.id.to_string()))
            .collect();
        let numa = if numa.is_empty() {
            "none".to_string()
        } else {
            numa.join(",")
        };
        println!("  {}  {}  (NUMA node: {numa})", d.id, d.health);
    }
}

/// The IOMMU group of a PCI device, from the guest's sysfs.
fn iommu_group(addr: &str) -> String {
    let link = std::fs::read_link(format!("/sys/bus/pci/devices/{addr}/iommu_group"))
        .unwrap_or_else(|e| panic!("{addr}: no iommu_group: {e}"));
    link.file_name()
        .expect("iommu_group link has a name")
        .to_string_lossy()
        .into_owned()
}

fn is_char_dev(p: &Path) -> bool {
    std::fs::metadata(p)
        .map(|m| m.file_type().is_char_device())
        .unwrap_or(false)
}

fn to_json(resource: &str, ids: &[String], r: &ContainerAllocateResponse) -> Value {
    json!({
        "resource": resource,
        "ids": ids,
        "envs": r.envs.iter().collect::<BTreeMap<_, _>>(),
        "devices": r.devices.iter().map(|d| json!({
            "container_path": d.container_path,
            "host_path": d.host_path,
            "permissions": d.permissions,
        })).collect::<Vec<_>>(),
        "mounts": r.mounts.iter().map(|m| json!({
            "container_path": m.container_path,
            "host_path": m.host_path,
            "read_only": m.read_only,
        })).collect::<Vec<_>>(),
        "annotations": r.annotations.iter().collect::<BTreeMap<_, _>>(),
    })
}

fn print_pod(pod: &str, resource: &str, r: &ContainerAllocateResponse) {
    println!("Allocate {resource} for pod {pod}:");
    for (k, v) in r.envs.iter().collect::<BTreeMap<_, _>>() {
        println!("  env    {k}={v}");
    }
    for d in &r.devices {
        println!(
            "  device {} -> {} ({})",
            d.host_path, d.container_path, d.permissions
        );
    }
    for m in &r.mounts {
        println!("  mount  {} -> {}", m.host_path, m.container_path);
    }
}

#[tokio::test(flavor = "current_thread")]
async fn lab_pools_advertised_and_pods_allocated() {
    assert_in_lab();
    let dir = PathBuf::from(env_or("LAB_KUBELET_DIR", "/run/lab-dp/device-plugins"));
    let out = PathBuf::from(env_or("LAB_ALLOC_OUT", "/tmp/lab-alloc.json"));
    let kernel_pods: usize = env_or("LAB_KERNEL_PODS", "1").parse().unwrap();

    let kubelet = TestKubelet::start(&dir).await;
    let netdevs = kubelet
        .wait_for_devices(NETDEV, |d| all_healthy(d, 3), WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}; last list: {:?}", kubelet.resource(NETDEV)));
    let vfio = kubelet
        .wait_for_devices(DPDK, |d| all_healthy(d, 1), WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}; last list: {:?}", kubelet.resource(DPDK)));
    println!("test kubelet: both pools registered, every device Healthy (ListAndWatch)");
    print_pool(NETDEV, &netdevs);
    print_pool(DPDK, &vfio);
    println!();

    let mut pods = serde_json::Map::new();

    // The DPDK pod: the one vfio-pci VF.
    let id = vfio[0].id.clone();
    let r = kubelet.allocate(DPDK, &[&id]).await.expect("Allocate vfio");
    print_pod("dpdk", DPDK, &r);
    assert_eq!(r.envs.get(DPDK_ENV), Some(&id), "{DPDK_ENV}");
    let info: Value =
        serde_json::from_str(r.envs.get(&format!("{DPDK_ENV}_INFO")).expect("_INFO env"))
            .expect("_INFO is JSON");
    let group_node = format!("/dev/vfio/{}", iommu_group(&id));
    assert_eq!(info[&id]["vfio"]["dev-mount"], json!(group_node), "{info}");
    assert_eq!(
        info[&id]["vfio"]["mount"],
        json!("/dev/vfio/vfio"),
        "{info}"
    );
    let specs: Vec<&str> = r.devices.iter().map(|d| d.host_path.as_str()).collect();
    assert!(specs.contains(&"/dev/vfio/vfio"), "{specs:?}");
    assert!(specs.contains(&group_node.as_str()), "{specs:?}");
    for d in &r.devices {
        assert!(
            is_char_dev(Path::new(&d.host_path)),
            "{} exists",
            d.host_path
        );
        assert_eq!(d.container_path, d.host_path);
    }
    pods.insert("dpdk".into(), to_json(DPDK, &[id], &r));

    // Kernel pods: one igbvf VF each, lowest addresses first.
    assert!(kernel_pods <= netdevs.len(), "{kernel_pods} kernel pods");
    for (i, dev) in netdevs.iter().take(kernel_pods).enumerate() {
        let pod = if i == 0 {
            "kernel".to_string()
        } else {
            format!("kernel{}", i + 1)
        };
        let r = kubelet
            .allocate(NETDEV, &[&dev.id])
            .await
            .expect("Allocate netdev");
        println!();
        print_pod(&pod, NETDEV, &r);
        assert_eq!(r.envs.get(NETDEV_ENV), Some(&dev.id), "{NETDEV_ENV}");
        assert!(
            r.devices
                .iter()
                .all(|d| !d.host_path.starts_with("/dev/vfio")),
            "a kernel VF gets no vfio node: {:?}",
            r.devices
        );
        pods.insert(pod, to_json(NETDEV, std::slice::from_ref(&dev.id), &r));
    }

    let pools = json!({
        NETDEV: netdevs.iter().map(|d| json!({"id": d.id, "health": d.health})).collect::<Vec<_>>(),
        DPDK: vfio.iter().map(|d| json!({"id": d.id, "health": d.health})).collect::<Vec<_>>(),
    });
    let doc = json!({"pools": pools, "pods": pods});
    std::fs::write(&out, serde_json::to_vec_pretty(&doc).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", out.display()));
    println!("\nallocations written to {}", out.display());
}
