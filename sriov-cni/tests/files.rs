//! Files on the node: the device-info file Multus hands us, the log file, the state directory
//! and state files (their modes, and whose attachment they describe), against real netdevs in
//! throwaway network namespaces.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::*;
use serde_json::{json, Value};
use sriov_host::devinfo::{write_device_info, DeviceInfo, PciInfo};

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).expect("stat").permissions().mode() & 0o7777
}

/// What the device plugin writes at Allocate for one device, then what Multus does with it
/// before ADD: copy it to the `CNIDeviceInfoFile` path it puts in runtimeConfig.
fn multus_copies_device_info(bed: &Bed, pci: &str, cid: &str) -> (std::path::PathBuf, String) {
    let dp = bed
        .dir
        .path()
        .join(format!("devinfo/dp/intel.com-pool-{pci}-device.json"));
    let info = DeviceInfo::pci(PciInfo {
        pci_address: pci.parse().expect("pci"),
        pf_pci_address: Some(sriov_tests::netbed::PF_PCI.parse().expect("pf pci")),
        rdma_device: Some("mlx5_3".into()),
        vhost_net: Some("/dev/vhost-net".into()),
    });
    write_device_info(&dp, &info).expect("device plugin's device-info file");
    let cni = bed
        .dir
        .path()
        .join(format!("devinfo/cni/sriov-test-{cid}_net1-device.json"));
    std::fs::create_dir_all(cni.parent().expect("dir")).expect("mkdir");
    std::fs::copy(&dp, &cni).expect("copy");
    let text = std::fs::read_to_string(&cni).expect("read");
    (cni, text)
}

fn with_runtime_config(c: &Value, rc: Value) -> Value {
    let mut c = c.clone();
    c["runtimeConfig"] = rc;
    c
}

#[test]
fn device_info_file_reaches_multus_as_the_device_plugin_wrote_it() {
    let Some(bed) = Bed::new("devinfo") else {
        return;
    };
    let vf = bed.add_vf(1);
    let dpdk = bed.add_dpdk_vf(3);
    let pod = bed.pod("p1");
    for (pci, cid) in [(vf.pci.as_str(), "kern1"), (dpdk.as_str(), "dpdk1")] {
        let (file, text) = multus_copies_device_info(&bed, pci, cid);
        let c = with_runtime_config(
            &conf(pci, json!({})),
            json!({"deviceID": pci, "CNIDeviceInfoFile": file}),
        );
        ok(&sriov(&bed, "ADD", &c, cid, Some(&pod), "net1"), "ADD");
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            text,
            "{cid}: after ADD"
        );
        let info: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(info["pci"]["vhost-net"], "/dev/vhost-net");
        assert_eq!(info["pci"]["rdma-device"], "mlx5_3");
        ok(&sriov(&bed, "DEL", &c, cid, Some(&pod), "net1"), "DEL");
        assert_eq!(
            std::fs::read_to_string(&file).expect("still there after DEL"),
            text,
            "{cid}: after DEL"
        );
    }
    assert_restored(&bed, &vf);

    // A path of the NAD author's choosing is neither created nor its directory made.
    let nowhere = bed.dir.path().join("nowhere/x.json");
    let c = with_runtime_config(
        &conf(&dpdk, json!({})),
        json!({"CNIDeviceInfoFile": nowhere}),
    );
    ok(
        &c1(&bed, "ADD", &c, &pod),
        "ADD with a made-up CNIDeviceInfoFile",
    );
    ok(&c1(&bed, "DEL", &c, &pod), "DEL");
    assert!(!nowhere.parent().unwrap().exists());
}

#[test]
fn del_leaves_the_device_info_file_an_old_state_file_names() {
    let Some(bed) = Bed::new("devinfo_old") else {
        return;
    };
    let pci = bed.add_dpdk_vf(3);
    let pod = bed.pod("p1");
    let c = conf(&pci, json!({}));
    ok(&c1(&bed, "ADD", &c, &pod), "ADD");
    let victim = bed.dir.path().join("victim");
    std::fs::write(&victim, "keep").unwrap();
    // A state file from an earlier version recorded a device-info file it had written.
    let st = bed.state_dir().join("c1-net1.json");
    let mut v: Value = serde_json::from_slice(&std::fs::read(&st).unwrap()).unwrap();
    v["device_info_file"] = json!(victim);
    std::fs::write(&st, v.to_string()).unwrap();
    ok(&c1(&bed, "DEL", &c, &pod), "DEL");
    assert!(!st.exists(), "state released");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
}

#[test]
fn log_file_is_never_followed_and_log_lines_cannot_be_forged() {
    let Some(bed) = Bed::new("logfile_sec") else {
        return;
    };
    let vf = bed.add_vf(1);
    let pod = bed.pod("p1");
    let victim = bed.dir.path().join("victim");
    std::fs::write(&victim, "victim\n").unwrap();
    let link = bed.dir.path().join("link.log");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let forged = "k\n2026-01-01T00:00:00.000000Z ERROR sriov: FORGED";
    let c = |log: &Path| {
        let mut c = conf(&vf.pci, json!({"logLevel": "debug", "logFile": log}));
        c[forged] = json!(1);
        c
    };
    let add = c1(&bed, "ADD", &c(&link), &pod);
    ok(&add, "ADD with a symlinked logFile");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "victim\n");
    assert!(add.stderr.contains("logFile"), "{}", add.stderr);
    ok(&c1(&bed, "DEL", &c(&link), &pod), "DEL");

    // Outside the log directory (SRIOV_CNI_LOG_DIR, the bed's directory here): never created.
    let outside = tempfile::tempdir().unwrap();
    let stray = outside.path().join("stray.log");
    let add = c1(&bed, "ADD", &c(&stray), &pod);
    ok(&add, "ADD with a logFile outside the log directory");
    assert!(add.stderr.contains("log directory"), "{}", add.stderr);
    assert!(
        !stray.exists(),
        "a logFile outside the log directory was created"
    );
    ok(&c1(&bed, "DEL", &c(&stray), &pod), "DEL");

    let log = bed.dir.path().join("logs/sriov.log");
    std::fs::create_dir_all(log.parent().unwrap()).unwrap();
    ok(&c1(&bed, "ADD", &c(&log), &pod), "ADD");
    assert_eq!(mode(&log), 0o600, "a new log file is private");
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines.iter().all(|l| !l.starts_with("2026-01-01T00:00:00")),
        "a forged line: {text}"
    );
    let key: Vec<&&str> = lines.iter().filter(|l| l.contains("FORGED")).collect();
    assert_eq!(key.len(), 1, "{text}");
    assert!(key[0].contains(r"k\n2026"), "{text}");
    ok(&c1(&bed, "DEL", &c(&log), &pod), "DEL");
}

#[test]
fn state_directory_and_files_are_private() {
    let Some(bed) = Bed::new("state_modes") else {
        return;
    };
    let vf = bed.add_vf(1);
    let pod = bed.pod("p1");
    let dir = bed.state_dir();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let c = conf(&vf.pci, json!({}));
    ok(&c1(&bed, "ADD", &c, &pod), "ADD");
    assert_eq!(
        mode(&dir),
        0o700,
        "an existing wider state dir is tightened"
    );
    assert_eq!(mode(&dir.join("c1-net1.json")), 0o600);
    let lock = dir.join(format!("vf-{}.lock", vf.pci));
    assert_eq!(mode(&lock), 0o600);
    ok(&c1(&bed, "DEL", &c, &pod), "DEL");
    assert_restored(&bed, &vf);
}

#[test]
fn del_acts_only_on_a_state_file_of_its_own_attachment() {
    let Some(bed) = Bed::new("state_identity") else {
        return;
    };
    let (v1, v2) = (bed.add_vf(1), bed.add_vf(2));
    let pod = bed.pod("p1");
    let c = conf(&v1.pci, json!({}));
    ok(&c1(&bed, "ADD", &c, &pod), "ADD");
    let real = bed.state_dir().join("c1-net1.json");
    // c1's state under another attachment's name.
    let forged = bed.state_dir().join("evil-net1.json");
    std::fs::copy(&real, &forged).unwrap();
    let del = sriov(&bed, "DEL", &c, "evil", Some(&pod), "net1");
    ok(&del, "DEL of the forged attachment");
    assert!(
        bed.link(Some(&pod), "net1").is_some(),
        "c1's VF stays in its pod"
    );
    assert!(real.exists() && forged.exists(), "neither file acted on");

    // The call names another device than the state records.
    let other = conf(&v2.pci, json!({}));
    ok(
        &c1(&bed, "DEL", &other, &pod),
        "DEL naming another deviceID",
    );
    assert!(bed.link(Some(&pod), "net1").is_some());
    assert!(real.exists());

    ok(&c1(&bed, "DEL", &c, &pod), "DEL");
    assert_restored(&bed, &v1);
    assert!(!real.exists());
}

#[test]
fn gc_ignores_a_state_file_named_for_another_attachment() {
    let Some(bed) = Bed::new("gc_identity") else {
        return;
    };
    let vf = bed.add_vf(1);
    let pod = bed.pod("p1");
    let c = conf(&vf.pci, json!({"cniVersion": "1.1.0"}));
    ok(&c1(&bed, "ADD", &c, &pod), "ADD");
    let real = bed.state_dir().join("c1-net1.json");
    let mut v: Value = serde_json::from_slice(&std::fs::read(&real).unwrap()).unwrap();
    v["netns"] = json!("/run/netns/svt-gone-for-good");
    let ghost = bed.state_dir().join("ghost-net1.json");
    std::fs::write(&ghost, v.to_string()).unwrap();
    let mut gc = c.clone();
    gc["cni.dev/valid-attachments"] = json!([]);
    ok(&sriov(&bed, "GC", &gc, "", None, ""), "GC");
    assert!(real.exists(), "c1's state kept");
    assert!(bed.link(Some(&pod), "net1").is_some());
    ok(&c1(&bed, "DEL", &c, &pod), "DEL");
    assert_restored(&bed, &vf);
}

#[test]
fn del_leaves_a_go_plugin_cache_for_another_device() {
    let Some(bed) = Bed::new("legacy_identity") else {
        return;
    };
    let (vf, v2) = (bed.add_vf(1), bed.add_vf(2));
    let pod = bed.pod("p1");
    let ns = pod.file_name().unwrap().to_str().unwrap();
    bed.ip_host(&["link", "set", &vf.netdev, "netns", ns]);
    sriov_tests::netbed::ip(&["-n", ns, "link", "set", &vf.netdev, "name", "net1"]);
    std::fs::create_dir_all(bed.state_dir()).unwrap();
    let cache = json!({
        "cniVersion": "0.3.1", "name": "sriov-network", "type": "sriov", "deviceID": vf.pci,
        "Master": "pf0", "VFID": 1, "MAC": "", "MTU": 1500,
        "OrigVfState": {"HostIFName": vf.netdev, "EffectiveMAC": vf.mac, "AdminMAC": "00:00:00:00:00:00"},
    });
    let file = bed.state_dir().join("c9-net1");
    std::fs::write(&file, cache.to_string()).unwrap();
    let del = sriov(
        &bed,
        "DEL",
        &conf(&v2.pci, json!({})),
        "c9",
        Some(&pod),
        "net1",
    );
    ok(&del, "DEL naming another device than the cache");
    assert!(bed.link(Some(&pod), "net1").is_some(), "not acted on");
    assert!(file.exists());
    let del = sriov(
        &bed,
        "DEL",
        &conf(&vf.pci, json!({})),
        "c9",
        Some(&pod),
        "net1",
    );
    ok(&del, "DEL");
    assert_restored(&bed, &vf);
}
