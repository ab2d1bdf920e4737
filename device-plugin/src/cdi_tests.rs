use std::fs;
use std::time::Duration;

use serde_json::json;
use sriov_host::discovery::discover;
use sriov_tests::fakesys::{ps225_two_pfs, FakeSysfs};
use sriov_tests::schema::{assert_valid_cdi, cdi_errors};

use super::*;
use crate::config::Config;
use crate::context::HostPaths;
use crate::pool::{assign, DeviceStatus, HostFacts};

struct Setup {
    _f: FakeSysfs,
    dir: tempfile::TempDir,
    paths: Arc<HostPaths>,
    cell: Arc<PoolCell>,
    pool: Arc<Pool>,
}

/// A PS225 node with the one pool `pool` (prefix arm.com), /dev/vfio nodes for the vfio VFs.
fn setup(pool: serde_json::Value) -> Setup {
    let f = ps225_two_pfs();
    let dir = tempfile::tempdir().unwrap();
    let sysfs = f.sysfs();
    let c = Config::from_value(&json!({ "resourceList": [pool] }), "arm.com").unwrap();
    let devs = discover(&sysfs).unwrap();
    let mut lists = assign(&sysfs, &devs, &c, &HostFacts::default());
    let paths = HostPaths {
        sysfs,
        dev_root: dir.path().join("dev"),
        devinfo_dir: dir.path().join("devinfo"),
        proc_root: dir.path().join("proc"),
    };
    for n in ["vfio/vfio", "vfio/106", "vfio/107", "vfio/114", "vfio/115"] {
        let p = paths.dev_root.join(n);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, "").unwrap();
    }
    let cell = PoolCell::new(Pool::new(c.pools[0].clone(), lists.remove(0)));
    Setup {
        _f: f,
        pool: cell.get(),
        cell,
        dir,
        paths: Arc::new(paths),
    }
}

fn dpdk() -> Setup {
    setup(json!({"resourceName": "ps225_dpdk", "selectors": {"drivers": ["vfio-pci"]}}))
}

fn addrs(ids: &[&str]) -> Vec<PciAddress> {
    ids.iter().map(|s| s.parse().unwrap()).collect()
}

#[test]
fn the_schema_rejects_what_cdi_rejects() {
    let good = json!({"cdiVersion": "0.6.0", "kind": "arm.com/ps225_dpdk",
        "devices": [{"name": "0000:03:10.6", "containerEdits": {"env": ["A=b"]}}]});
    assert_valid_cdi(&good);
    for (what, bad) in [
        (
            "no devices",
            json!({"cdiVersion": "0.6.0", "kind": "a.com/b", "devices": []}),
        ),
        (
            "bad kind",
            json!({"cdiVersion": "0.6.0", "kind": "a.com",
            "devices": [{"name": "x", "containerEdits": {"env": ["A=b"]}}]}),
        ),
        (
            "bad name",
            json!({"cdiVersion": "0.6.0", "kind": "a.com/b",
            "devices": [{"name": "a/b", "containerEdits": {"env": ["A=b"]}}]}),
        ),
        (
            "bad env",
            json!({"cdiVersion": "0.6.0", "kind": "a.com/b",
            "devices": [{"name": "x", "containerEdits": {"env": ["=b"]}}]}),
        ),
        (
            "bad permissions",
            json!({"cdiVersion": "0.6.0", "kind": "a.com/b",
            "devices": [{"name": "x", "containerEdits": {"deviceNodes": [{"path": "/dev/x", "permissions": "rwx"}]}}]}),
        ),
        (
            "unknown key",
            json!({"cdiVersion": "0.6.0", "kind": "a.com/b", "extra": 1,
            "devices": [{"name": "x", "containerEdits": {"env": ["A=b"]}}]}),
        ),
        (
            "no edits",
            json!({"cdiVersion": "0.6.0", "kind": "a.com/b", "devices": [{"name": "x"}]}),
        ),
    ] {
        assert!(!cdi_errors(&bad).is_empty(), "{what} passed");
    }
}

#[test]
fn kinds_follow_the_cdi_vendor_and_class_rules() {
    let r = |p: &str, n: &str| ResourceName::new(p, n).unwrap();
    assert_eq!(
        kind(&r("arm.com", "ps225_dpdk")).unwrap(),
        "arm.com/ps225_dpdk"
    );
    assert_eq!(kind(&r("intel.com", "a.b-c")).unwrap(), "intel.com/a.b-c");
    let e = kind(&r("1and1.com", "x")).unwrap_err().to_string();
    assert!(
        e.contains("vendor \"1and1.com\" must start with a letter"),
        "{e}"
    );
    let e = kind(&r("arm.com", "25g")).unwrap_err().to_string();
    assert!(e.contains("class \"25g\""), "{e}");
    assert_eq!(
        spec_file_name(&r("arm.com", "ps225_dpdk")),
        "sriov-dp-arm.com-ps225_dpdk.json"
    );
    assert_eq!(
        qualified_name("arm.com/ps225_dpdk", "0000:03:10.6".parse().unwrap()),
        "arm.com/ps225_dpdk=0000:03:10.6"
    );
}

#[test]
fn a_vfio_pool_spec_has_its_device_nodes_and_is_valid() {
    let s = dpdk();
    let ids = addrs(&[
        "0000:03:10.6",
        "0000:03:10.7",
        "0000:04:10.6",
        "0000:04:10.7",
    ]);
    let spec = build_spec(&s.pool, &s.paths, &ids).unwrap().unwrap();
    assert_valid_cdi(&spec);
    assert_eq!(spec["cdiVersion"], CDI_VERSION);
    assert_eq!(spec["kind"], "arm.com/ps225_dpdk");
    assert_eq!(spec["devices"].as_array().unwrap().len(), 4);
    assert_eq!(
        spec["devices"][0],
        json!({"name": "0000:03:10.6", "containerEdits": {
            "env": ["PCIDEVICE_ARM_COM_PS225_DPDK_0000_03_10_6=0000:03:10.6"],
            "deviceNodes": [
                {"path": "/dev/vfio/vfio", "permissions": "rw"},
                {"path": "/dev/vfio/106", "permissions": "rw"}
            ]
        }})
    );
    assert_eq!(
        spec["devices"][3]["containerEdits"]["deviceNodes"][1]["path"],
        "/dev/vfio/115"
    );
}

#[test]
fn a_netdev_pool_spec_has_env_only_and_is_valid() {
    let s = setup(json!({"resourceName": "ps225_sriov_netdevice",
                        "selectors": {"drivers": ["bnxt_en"]}}));
    let ids: Vec<PciAddress> = s.pool.devices.keys().copied().collect();
    assert_eq!(ids.len(), 12);
    let spec = build_spec(&s.pool, &s.paths, &ids).unwrap().unwrap();
    assert_valid_cdi(&spec);
    for d in spec["devices"].as_array().unwrap() {
        assert!(d["containerEdits"].get("deviceNodes").is_none());
        assert_eq!(d["containerEdits"]["env"].as_array().unwrap().len(), 1);
    }
    assert!(build_spec(&s.pool, &s.paths, &[]).unwrap().is_none());
}

#[test]
fn sync_writes_follows_changes_and_removes_an_empty_pools_spec() {
    let s = dpdk();
    let cdi = Cdi::new(&s.dir.path().join("cdi"));
    let path = cdi.spec_path(&s.pool.config.resource);
    assert!(path.ends_with("cdi/sriov-dp-arm.com-ps225_dpdk.json"));
    cdi.sync(&s.pool, &s.paths).unwrap();
    let read =
        || -> serde_json::Value { serde_json::from_slice(&fs::read(&path).unwrap()).unwrap() };
    assert_valid_cdi(&read());
    assert_eq!(read()["devices"].as_array().unwrap().len(), 4);
    // Unchanged: not rewritten (a write replaces the file: a new inode).
    let i0 = inode(&path);
    cdi.sync(&s.pool, &s.paths).unwrap();
    assert_eq!(inode(&path), i0);
    // The pool's list shrinks: the spec follows.
    let mut list = s.pool.current();
    list.retain(|d| d.id.to_string() != "0000:03:10.7");
    s.pool.publish(list);
    cdi.sync(&s.pool, &s.paths).unwrap();
    let names: Vec<String> = read()["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["0000:03:10.6", "0000:04:10.6", "0000:04:10.7"]);
    // Removed by hand: written again.
    fs::remove_file(&path).unwrap();
    cdi.sync(&s.pool, &s.paths).unwrap();
    assert!(path.exists());
    // Empty: removed (CDI refuses a spec without devices).
    s.pool.publish(Vec::new());
    cdi.sync(&s.pool, &s.paths).unwrap();
    assert!(!path.exists());
    let leftovers: Vec<_> = fs::read_dir(cdi.dir()).unwrap().flatten().collect();
    assert!(leftovers.is_empty(), "no temporary files: {leftovers:?}");
}

#[test]
fn apply_answers_with_qualified_names_and_keeps_envs() {
    let s = dpdk();
    let cdi = Cdi::new(&s.dir.path().join("cdi"));
    let ids = vec!["0000:04:10.7".to_string(), "0000:03:10.6".to_string()];
    let mut r = crate::allocate::allocate(&s.pool, &s.paths, &ids).unwrap();
    assert!(!r.devices.is_empty());
    cdi.apply(
        &s.pool,
        &s.paths,
        &addrs(&["0000:04:10.7", "0000:03:10.6"]),
        &mut r,
    );
    let names: Vec<&str> = r.cdi_devices.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(
        names,
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
    assert!(r.envs.contains_key("PCIDEVICE_ARM_COM_PS225_DPDK_INFO"));
    assert!(cdi.spec_path(&s.pool.config.resource).exists());
}

#[test]
fn apply_rewrites_the_spec_only_when_an_allocated_devices_nodes_changed() {
    let s = dpdk();
    let cdi = Cdi::new(&s.dir.path().join("cdi"));
    cdi.sync(&s.pool, &s.paths).unwrap();
    let path = cdi.spec_path(&s.pool.config.resource);
    let i0 = inode(&path);
    let id = "0000:03:10.6";
    let alloc = |cdi: &Cdi| {
        let mut r = crate::allocate::allocate(&s.pool, &s.paths, &[id.into()]).unwrap();
        cdi.apply(&s.pool, &s.paths, &addrs(&[id]), &mut r);
        assert_eq!(r.cdi_devices.len(), 1);
    };
    alloc(&cdi);
    assert_eq!(inode(&path), i0, "up to date: not rewritten by Allocate");

    // The VF is now in IOMMU group 200 (e.g. rebound after a hot-plug): Allocate rewrites.
    let link = s._f.dev_dir(id).join("iommu_group");
    fs::remove_file(&link).unwrap();
    fs::create_dir_all(s._f.root().join("kernel/iommu_groups/200/devices")).unwrap();
    std::os::unix::fs::symlink("../../../kernel/iommu_groups/200", &link).unwrap();
    fs::write(s.paths.dev_root.join("vfio/200"), "").unwrap();
    alloc(&cdi);
    assert_ne!(inode(&path), i0, "rewritten: a new file in place");
    let spec: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    assert_eq!(
        spec["devices"][0]["containerEdits"]["deviceNodes"][1]["path"],
        "/dev/vfio/200"
    );
    assert_valid_cdi(&spec);
}

#[test]
fn apply_keeps_device_specs_for_a_pool_that_cannot_be_a_cdi_kind() {
    let s = setup(json!({"resourceName": "25g", "selectors": {"drivers": ["vfio-pci"]}}));
    let cdi = Cdi::new(&s.dir.path().join("cdi"));
    let mut r = crate::allocate::allocate(&s.pool, &s.paths, &["0000:03:10.6".into()]).unwrap();
    cdi.apply(&s.pool, &s.paths, &addrs(&["0000:03:10.6"]), &mut r);
    assert!(r.cdi_devices.is_empty());
    assert_eq!(r.devices.len(), 2);
    let task = spawn_sync(
        Arc::new(cdi),
        &s.cell,
        s.paths.clone(),
        CancellationToken::new(),
    );
    assert!(task.is_none());
}

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..500 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn the_sync_task_follows_the_pool_and_cleans_up_on_stop_and_on_drop() {
    let s = dpdk();
    let cdi = Arc::new(Cdi::new(&s.dir.path().join("cdi")));
    let path = cdi.spec_path(&s.pool.config.resource);
    let stop = CancellationToken::new();
    let task = spawn_sync(cdi.clone(), &s.cell, s.paths.clone(), stop.clone()).unwrap();
    wait_until("the spec", || path.exists()).await;
    let count = || -> usize {
        fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v["devices"].as_array().map(Vec::len))
            .unwrap_or(0)
    };
    assert_eq!(count(), 4);
    let first: Vec<DeviceStatus> = s.pool.current().into_iter().take(1).collect();
    s.pool.publish(first);
    wait_until("the spec to shrink", || count() == 1).await;
    stop.cancel();
    task.await.unwrap();
    assert!(!path.exists(), "removed on stop");

    // A pool that goes away (every snapshot dropped): its spec goes too.
    let task = spawn_sync(
        cdi.clone(),
        &s.cell,
        s.paths.clone(),
        CancellationToken::new(),
    )
    .unwrap();
    wait_until("the spec", || path.exists()).await;
    let Setup {
        pool,
        cell,
        _f,
        dir,
        ..
    } = s;
    drop((pool, cell));
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
    assert!(!path.exists(), "removed when the pool is dropped");
    drop((_f, dir));
}

#[tokio::test]
async fn the_sync_task_follows_a_snapshot_swapped_by_a_reload() {
    let s = dpdk();
    let cdi = Arc::new(Cdi::new(&s.dir.path().join("cdi")));
    let path = cdi.spec_path(&s.pool.config.resource);
    let stop = CancellationToken::new();
    let task = spawn_sync(cdi.clone(), &s.cell, s.paths.clone(), stop.clone()).unwrap();
    wait_until("the spec", || path.exists()).await;
    let cur = s.cell.get();
    let members: Vec<sriov_host::PciDevice> = cur.devices.values().take(2).cloned().collect();
    s.cell.set(cur.successor(cur.config.clone(), members));
    s.cell.get().refresh(|_| crate::health::Health::Healthy);
    let names = || -> Vec<String> {
        fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| {
                v["devices"].as_array().map(|a| {
                    a.iter()
                        .filter_map(|d| d["name"].as_str().map(str::to_string))
                        .collect()
                })
            })
            .unwrap_or_default()
    };
    wait_until("the spec to follow the new snapshot", || {
        names() == ["0000:03:10.6", "0000:03:10.7"]
    })
    .await;
    stop.cancel();
    task.await.unwrap();
    assert!(!path.exists());
}

/// The file's inode: specs are written aside and renamed into place, so a rewrite, even within
/// the same clock tick, gives the path a new inode (the old one is still held by the path while
/// the new file is created).
fn inode(p: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(p).unwrap().ino()
}
