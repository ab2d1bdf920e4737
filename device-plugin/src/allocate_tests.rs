use std::fs;

use serde_json::json;
use sriov_host::discovery::discover;
use sriov_tests::fakesys::ps225_two_pfs;

use super::*;
use crate::config::Config;
use crate::context::HostPaths;
use crate::pool::{assign, HostFacts};

struct Setup {
    _f: sriov_tests::fakesys::FakeSysfs,
    dir: tempfile::TempDir,
    paths: HostPaths,
    pool: Pool,
}

fn setup(pool: serde_json::Value, vhost: bool) -> Setup {
    setup_with(pool, vhost, |_| {})
}

/// A PS225 node, changed by `prepare` before discovery, with the one pool `pool`.
fn setup_with(
    pool: serde_json::Value,
    vhost: bool,
    prepare: impl FnOnce(&sriov_tests::fakesys::FakeSysfs),
) -> Setup {
    let f = ps225_two_pfs();
    prepare(&f);
    let dir = tempfile::tempdir().unwrap();
    let sysfs = f.sysfs();
    let c = Config::from_value(&json!({ "resourceList": [pool] }), "intel.com").unwrap();
    let devs = discover(&sysfs).unwrap();
    let facts = HostFacts {
        excluded_netdevs: Default::default(),
        vhost_net_available: vhost,
    };
    let mut lists = assign(&sysfs, &devs, &c, &facts);
    let paths = HostPaths {
        sysfs,
        dev_root: dir.path().join("dev"),
        devinfo_dir: dir.path().join("devinfo"),
        proc_root: dir.path().join("proc"),
    };
    Setup {
        _f: f,
        pool: Pool::new(c.pools[0].clone(), lists.remove(0)),
        dir,
        paths,
    }
}

fn touch(s: &Setup, rel: &str) {
    let p = s.paths.dev_root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, "").unwrap();
}

#[test]
fn rdma_and_vhost_pools_get_their_char_devices_and_info() {
    let pool = json!({"resourceName": "roce", "selectors": {"isRdma": true, "needVhostNet": true},
                      "additionalInfo": {"0000:03:10.0": {"k": "v"}}});
    // Only VFs with an RDMA device match isRdma.
    assert!(setup(pool.clone(), true).pool.devices.is_empty());
    let s = setup_with(pool, true, |f| {
        f.add_rdma("0000:03:10.0", "bnxt_re0");
        let vf = f.dev_dir("0000:03:10.0");
        for d in [
            "infiniband_verbs/uverbs3",
            "infiniband_mad/umad1",
            "infiniband_mad/issm1",
        ] {
            fs::create_dir_all(vf.join(d)).unwrap();
        }
    });
    assert_eq!(s.pool.devices.len(), 1);
    let (pool, paths) = (&s.pool, &s.paths);
    for n in [
        "infiniband/uverbs3",
        "infiniband/umad1",
        "infiniband/issm1",
        "infiniband/rdma_cm",
        "vhost-net",
        "net/tun",
    ] {
        touch(&s, n);
    }
    let r = allocate(pool, paths, &["0000:03:10.0".to_string()]).unwrap();
    let hosts: Vec<&str> = r.devices.iter().map(|d| d.host_path.as_str()).collect();
    assert_eq!(
        hosts,
        [
            "/dev/infiniband/uverbs3",
            "/dev/infiniband/umad1",
            "/dev/infiniband/issm1",
            "/dev/infiniband/rdma_cm",
            "/dev/vhost-net",
            "/dev/net/tun"
        ]
    );
    let info: serde_json::Value =
        serde_json::from_str(&r.envs["PCIDEVICE_INTEL_COM_ROCE_INFO"]).unwrap();
    assert_eq!(
        info,
        json!({"0000:03:10.0": {
            "generic": {"deviceID": "0000:03:10.0"},
            "rdma": {"rdma_cm": "/dev/infiniband/rdma_cm", "uverbs": "/dev/infiniband/uverbs3",
                     "umad": "/dev/infiniband/umad1", "issm": "/dev/infiniband/issm1"},
            "vhost": {"net-mount": "/dev/vhost-net", "tun-mount": "/dev/net/tun"},
            "extra": {"k": "v"}
        }})
    );
    let di: serde_json::Value = serde_json::from_slice(
        &fs::read(
            s.dir
                .path()
                .join("devinfo/intel.com-roce-0000:03:10.0-device.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(di["pci"]["rdma-device"], "bnxt_re0");
    assert_eq!(di["pci"]["vhost-net"], "/dev/vhost-net");
}

#[test]
fn uio_bound_vfs_get_their_uio_node() {
    let s = setup(
        json!({"resourceName": "uio", "selectors": {"pciAddresses": ["0000:04:10.1"]}}),
        false,
    );
    s._f.bind("0000:04:10.1", Some("uio_pci_generic"));
    fs::create_dir_all(s._f.dev_dir("0000:04:10.1").join("uio/uio4")).unwrap();
    touch(&s, "uio4");
    let r = allocate(&s.pool, &s.paths, &["0000:04:10.1".to_string()]).unwrap();
    assert_eq!(r.devices[0].host_path, "/dev/uio4");
    let info: serde_json::Value =
        serde_json::from_str(&r.envs["PCIDEVICE_INTEL_COM_UIO_INFO"]).unwrap();
    assert_eq!(info["0000:04:10.1"]["uio"]["dev-mount"], "/dev/uio4");
}

#[test]
fn ids_are_validated_before_anything_is_read() {
    let s = setup(
        json!({"resourceName": "dpdk", "selectors": {"drivers": ["vfio-pci"]}}),
        false,
    );
    let e = validate_ids(&s.pool, &["0000:03:10.6".into(), "0000:03:10.0".into()]).unwrap_err();
    assert!(e.is_invalid_argument());
    assert_eq!(
        e.to_string(),
        "device 0000:03:10.0 is not in pool intel.com/dpdk"
    );
    let e = validate_ids(&s.pool, &["0000:03:10.6/../x".into()]).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("invalid device ID \"0000:03:10.6/../x\""),
        "{e}"
    );
}

#[test]
fn a_request_is_checked_whole_duplicates_and_size_included() {
    let s = setup(
        json!({"resourceName": "dpdk", "selectors": {"drivers": ["vfio-pci"]}}),
        false,
    );
    let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let ok = validate_request(&s.pool, &[ids(&["0000:03:10.6"]), ids(&["0000:04:10.7"])]).unwrap();
    assert_eq!(ok.len(), 2);
    let e = validate_ids(&s.pool, &ids(&["0000:03:10.6", "0000:03:10.6"])).unwrap_err();
    assert!(e.is_invalid_argument());
    assert_eq!(
        e.to_string(),
        "device 0000:03:10.6 is asked for more than once in one Allocate; every device goes to one container once"
    );
    let e =
        validate_request(&s.pool, &[ids(&["0000:03:10.6"]), ids(&["0000:03:10.6"])]).unwrap_err();
    assert!(matches!(e, AllocateError::Duplicate { .. }), "{e}");
    let e = validate_request(&s.pool, &[ids(&["0000:03:10.6"]), ids(&[])]).unwrap_err();
    assert!(e.is_invalid_argument());
    assert_eq!(e.to_string(), "container request 1 names no device");
    // Too many IDs is found before any is parsed.
    let e = validate_ids(&s.pool, &vec!["bogus".to_string(); 5]).unwrap_err();
    assert!(e.is_invalid_argument());
    assert_eq!(
        e.to_string(),
        "5 device IDs asked of pool intel.com/dpdk, which has 4 devices"
    );
}
