//! Provisioning decisions against a fake tree with a fake kernel reacting to the writes.
#![allow(clippy::unwrap_used)]

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use sriov_host::netlink::NetlinkError;
use sriov_host::provision::{
    PfLink, PfRef, ProvisionError, ProvisionRequest, Provisioner, Timeouts, VfDriverRule,
};
use sriov_host::{PciAddress, Role};
use sriov_tests::fakekernel::{FakeKernel, FakePf};
use sriov_tests::fakesys::{Dev, FakeSysfs};

/// A PF link stand-in: state per ifname, every call recorded.
#[derive(Default)]
struct Links {
    up: RefCell<HashMap<String, bool>>,
    calls: RefCell<Vec<String>>,
    refuse: bool,
}

impl PfLink for Links {
    fn is_up(&self, ifname: &str) -> Result<bool, NetlinkError> {
        Ok(*self.up.borrow().get(ifname).unwrap_or(&false))
    }
    fn set_up(&self, ifname: &str) -> Result<(), NetlinkError> {
        self.calls.borrow_mut().push(format!("up {ifname}"));
        if self.refuse {
            return Err(NetlinkError::Kernel {
                op: "set link up",
                target: ifname.into(),
                source: std::io::Error::from_raw_os_error(nix::errno::Errno::EPERM as i32),
            });
        }
        self.up.borrow_mut().insert(ifname.into(), true);
        Ok(())
    }
}

const PF: &str = "0000:03:00.0";

fn tree() -> FakeSysfs {
    let f = FakeSysfs::new();
    f.add_pf(
        &Dev::new(PF, 0x14e4, 0xd802)
            .driver("bnxt_en")
            .netdev("enp3s0f0np0"),
        16,
    );
    for d in ["bnxt_en", "vfio-pci"] {
        std::fs::create_dir_all(f.root().join("bus/pci/drivers").join(d)).unwrap();
        for x in ["bind", "unbind"] {
            std::fs::write(f.root().join("bus/pci/drivers").join(d).join(x), "").unwrap();
        }
    }
    f
}

fn kernel(f: &FakeSysfs, limit: Option<u32>) -> FakeKernel {
    FakeKernel::start(
        f,
        vec![FakePf {
            addr: PF.into(),
            vf_vendor: 0x14e4,
            vf_device: 0xd800,
            vf_driver: Some("bnxt_en".into()),
            netdev_prefix: "enp3s0f0".into(),
            create_limit: limit,
        }],
    )
}

fn req(n: u32, rules: &[(&str, &str)]) -> ProvisionRequest {
    ProvisionRequest {
        pf: PfRef::parse("enp3s0f0np0"),
        num_vfs: n,
        vf_drivers: rules
            .iter()
            .map(|(v, d)| VfDriverRule {
                vfs: v.parse().unwrap(),
                driver: d.to_string(),
            })
            .collect(),
        link_up: true,
    }
}

fn prov<'a>(sys: &'a sriov_host::Sysfs, links: &'a Links) -> Provisioner<'a> {
    let mut p = Provisioner::new(sys, links);
    p.timeouts = Timeouts {
        create: Duration::from_secs(3),
        bind: Duration::from_secs(3),
    };
    p
}

fn drivers(f: &FakeSysfs) -> Vec<Option<String>> {
    let sys = f.sysfs();
    sys.virtfns(PF.parse().unwrap())
        .unwrap()
        .iter()
        .map(|(_, a)| sys.driver(*a).unwrap())
        .collect()
}

#[test]
fn creates_vfs_binds_ranges_and_is_idempotent() {
    let f = tree();
    let k = kernel(&f, None);
    let links = Links::default();
    let sys = f.sysfs();
    let p = prov(&sys, &links);
    let r = p
        .apply(&req(8, &[("0-5", "bnxt_en"), ("6-7", "vfio-pci")]))
        .unwrap();
    assert!(r.link_raised, "the PF is brought up before VFs are created");
    assert_eq!(links.calls.borrow().as_slice(), ["up enp3s0f0np0"]);
    assert_eq!((r.vfs_before, r.vfs_after), (0, 8));
    assert_eq!(r.rebound.len(), 2);
    let d = drivers(&f);
    assert_eq!(d.len(), 8);
    assert!(d[..6].iter().all(|x| x.as_deref() == Some("bnxt_en")));
    assert!(d[6..].iter().all(|x| x.as_deref() == Some("vfio-pci")));
    let writes = k.log().len();

    // Second run: nothing written.
    let r2 = p
        .apply(&req(8, &[("0-5", "bnxt_en"), ("6-7", "vfio-pci")]))
        .unwrap();
    assert!(!r2.changed(), "{r2:?}");
    k.settle();
    assert_eq!(
        k.log().len(),
        writes,
        "an idempotent run writes nothing: {:?}",
        k.log()
    );
}

#[test]
fn changing_the_count_writes_zero_first() {
    let f = tree();
    let k = kernel(&f, None);
    let links = Links::default();
    let sys = f.sysfs();
    let p = prov(&sys, &links);
    p.apply(&req(4, &[])).unwrap();
    p.apply(&req(6, &[])).unwrap();
    assert_eq!(drivers(&f).len(), 6);
    let log = k.log();
    let numvfs: Vec<_> = log
        .iter()
        .filter(|l| l.starts_with("numvfs"))
        .cloned()
        .collect();
    assert_eq!(
        numvfs,
        vec![
            "numvfs 0000:03:00.0 4",
            "numvfs 0000:03:00.0 0",
            "numvfs 0000:03:00.0 6"
        ]
    );
}

#[test]
fn refuses_to_touch_a_pf_whose_vf_is_in_a_pod() {
    let f = tree();
    let _k = kernel(&f, None);
    let links = Links::default();
    let sys = f.sysfs();
    let p = prov(&sys, &links);
    p.apply(&req(4, &[])).unwrap();
    // VF 2's netdev moved into a pod's network namespace.
    f.set_netdev("0000:03:10.2", None);
    let e = p.apply(&req(6, &[])).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, ProvisionError::InUse { index: 2, .. }), "{msg}");
    assert!(
        msg.contains("VF 2 (0000:03:10.2)") && msg.contains("in use by a pod"),
        "{msg}"
    );
    assert_eq!(drivers(&f).len(), 4, "nothing changed");
    // Rebinding that VF is refused too; rebinding another one is fine.
    let e = p.apply(&req(4, &[("2", "vfio-pci")])).unwrap_err();
    assert!(e.to_string().contains("binding it to vfio-pci"), "{e}");
    p.apply(&req(4, &[("3", "vfio-pci")])).unwrap();
    assert_eq!(drivers(&f)[3].as_deref(), Some("vfio-pci"));
}

#[test]
fn device_info_files_mark_a_vfio_vf_in_use() {
    let f = tree();
    let _k = kernel(&f, None);
    let links = Links::default();
    let sys = f.sysfs();
    let mut p = prov(&sys, &links);
    p.apply(&req(4, &[("3", "vfio-pci")])).unwrap();
    let devinfo = tempfile::tempdir().unwrap();
    std::fs::write(
        devinfo.path().join("pod-net1.json"),
        r#"{"type":"pci","pci":{"pci-address":"0000:03:10.3"}}"#,
    )
    .unwrap();
    p.in_use_dirs.push(devinfo.path().to_path_buf());
    let e = p.apply(&req(2, &[])).unwrap_err();
    assert!(e.to_string().contains("device-info file"), "{e}");
}

#[test]
fn fewer_vfs_than_asked_restores_the_pf_and_says_why() {
    let f = tree();
    let _k = kernel(&f, Some(2));
    let links = Links::default();
    let sys = f.sysfs();
    let p = prov(&sys, &links);
    let e = p.apply(&req(4, &[])).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("created 2 of 4 VFs") && msg.contains("restored to 0 VFs"),
        "{msg}"
    );
    assert!(drivers(&f).is_empty(), "PF back to 0 VFs");
}

#[test]
fn a_down_pf_without_link_up_is_refused_before_any_write() {
    let f = tree();
    let k = kernel(&f, None);
    let links = Links::default();
    let sys = f.sysfs();
    let p = prov(&sys, &links);
    let mut r = req(4, &[]);
    r.link_up = false;
    let e = p.apply(&r).unwrap_err().to_string();
    assert!(
        e.contains("PF enp3s0f0np0 is down") && e.contains("set linkUp"),
        "{e}"
    );
    assert!(k.log().is_empty());
}

#[test]
fn validation_errors_name_the_problem() {
    let f = tree();
    let links = Links::default();
    let sys = f.sysfs();
    let p = prov(&sys, &links);
    let cases: Vec<(ProvisionRequest, &str)> = vec![
        (req(17, &[]), "numVfs 17 exceeds sriov_totalvfs 16"),
        (
            req(4, &[("4", "vfio-pci")]),
            "names VF 4, but numVfs is 4 (valid: 0-3)",
        ),
        (
            req(4, &[("0-2", "bnxt_en"), ("2", "vfio-pci")]),
            "VF 2 is named by two vfDrivers entries",
        ),
        (req(4, &[("0", "../evil")]), "invalid driver name"),
        (
            req(4, &[("0", "mlx5_core")]),
            "driver mlx5_core is not loaded",
        ),
        (
            ProvisionRequest {
                pf: PfRef::parse("nope0"),
                ..req(1, &[])
            },
            "no such PF",
        ),
        (
            ProvisionRequest {
                pf: PfRef::Pci("0000:99:00.0".parse::<PciAddress>().unwrap()),
                ..req(1, &[])
            },
            "no such PF",
        ),
    ];
    for (r, want) in cases {
        let e = p.apply(&r).unwrap_err().to_string();
        assert!(e.contains(want), "want {want:?} in {e:?}");
    }
    assert!(
        links.calls.borrow().is_empty(),
        "validation happens before the link is touched"
    );
}

#[test]
fn vfio_needs_an_iommu_group() {
    let f = tree();
    let links = Links::default();
    let sys = f.sysfs();
    f.add_vf(
        PF,
        0,
        &Dev::new("0000:03:10.0", 0x14e4, 0xd800)
            .driver("bnxt_en")
            .netdev("enp3s0f0v0"),
    );
    let p = prov(&sys, &links);
    let e = p
        .apply(&req(1, &[("0", "vfio-pci")]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("has no IOMMU group"), "{e}");
    let devs = sriov_host::discovery::discover(&sys).unwrap();
    assert!(matches!(
        devs.iter().find(|d| d.is_vf()).unwrap().role,
        Role::Vf { index: 0, .. }
    ));
}
