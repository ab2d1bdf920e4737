//! Attachments that must be refused or cleaned up, DPDK mode, bad input and result versions,
//! against real netdevs in throwaway network namespaces.

mod common;

use common::*;
use serde_json::json;

#[test]
fn busy_vf_is_refused_and_stale_holder_is_cleaned_up() {
    let Some(bed) = Bed::new("busy") else { return };
    let vf = bed.add_vf(1);
    let (p1, p2) = (bed.pod("p1"), bed.pod("p2"));
    let c = conf(&vf.pci, json!({"mtu": 1450}));
    ok(
        &sriov(&bed, "ADD", &c, "holder1", Some(&p1), "net1"),
        "first ADD",
    );
    let busy = sriov(&bed, "ADD", &c, "second2", Some(&p2), "net1");
    assert_eq!(busy.code(), Some(100), "{}", busy.stdout);
    assert!(
        busy.msg().contains("holder1") && busy.msg().contains(p1.to_str().unwrap()),
        "{}",
        busy.msg()
    );
    assert!(
        bed.link(Some(&p1), "net1").is_some(),
        "the holder keeps its VF"
    );

    // The holder's pod dies without a DEL and the netdev comes back with the pod's MAC and MTU.
    // (A fake sysfs cannot follow a rename made during the run, so it comes back under its
    // original name here; the rename-back path is covered by the netns-gone DEL test.)
    bed.delete_pod(&p1);
    returned_from_pod(&bed, &vf.netdev, "02:ff:00:00:00:02", 1450);
    let add = sriov(&bed, "ADD", &c, "second2", Some(&p2), "net1");
    ok(&add, "ADD after the stale holder is cleaned up");
    let l = bed.link(Some(&p2), "net1").expect("in the new pod");
    assert_eq!(l.mac, vf.mac, "stale holder's MAC was restored first");
    assert_eq!(l.mtu, 1450);
    assert!(!bed.state_dir().join("holder1-net1.json").exists());
    ok(&sriov(&bed, "DEL", &c, "second2", Some(&p2), "net1"), "DEL");
    assert_restored(&bed, &vf);
}

#[test]
fn pf_side_setting_on_a_pf_without_vf_info_is_code_101() {
    let Some(bed) = Bed::new("pf101") else { return };
    let vf = bed.add_vf(1);
    let pod = bed.pod("p1");
    for (extra, field) in [
        (json!({"vlan": 10}), "vlan"),
        (json!({"mac": "02:aa:00:00:00:01"}), "mac"),
        (json!({"spoofchk": "off", "trust": "on"}), "spoofchk, trust"),
        (json!({"link_state": "enable"}), "link_state"),
        (json!({"max_tx_rate": 100}), "max_tx_rate"),
    ] {
        let add = c1(&bed, "ADD", &conf(&vf.pci, extra.clone()), &pod);
        assert_eq!(add.code(), Some(101), "{extra}: {}", add.stdout);
        assert!(
            add.msg().starts_with(field) && add.msg().contains("pf0"),
            "{}",
            add.msg()
        );
        assert_restored(&bed, &vf);
    }
    // Nothing requested: a PF without VF info is fine.
    ok(
        &c1(&bed, "ADD", &conf(&vf.pci, json!({})), &pod),
        "plain ADD",
    );
    ok(&c1(&bed, "DEL", &conf(&vf.pci, json!({})), &pod), "DEL");
}

#[test]
fn dpdk_mode_add_del() {
    let Some(bed) = Bed::new("dpdk") else { return };
    let pci = bed.add_dpdk_vf(3);
    let pod = bed.pod("p1");
    let devinfo = bed.dir.path().join("devinfo/cni/sriov-test-c1-net1.json");
    let mut c = conf(
        &pci,
        json!({"ipam": bed.host_local("10.77.6.0/24", "10.77.6.1")}),
    );
    c["runtimeConfig"] = json!({"CNIDeviceInfoFile": devinfo});
    let add = c1(&bed, "ADD", &c, &pod);
    ok(&add, "DPDK ADD");
    assert_eq!(add.json["interfaces"][0]["pciID"], pci.as_str());
    assert_eq!(add.json["ips"][0]["address"], "10.77.6.2/24");
    assert!(bed.link(Some(&pod), "net1").is_none(), "nothing moved");
    // Multus' file (see files.rs): never written here.
    assert!(!devinfo.exists(), "device-info file written");
    ok(&c1(&bed, "DEL", &c, &pod), "DPDK DEL");
    assert!(!bed.state_dir().join("c1-net1.json").exists());
    ok(&c1(&bed, "DEL", &c, &pod), "DPDK DEL again");
    let vlan = sriov(
        &bed,
        "ADD",
        &conf(&pci, json!({"vlan": 5})),
        "c2",
        Some(&pod),
        "net1",
    );
    assert_eq!(vlan.code(), Some(101), "{}", vlan.stdout);
}

#[test]
fn bad_input_gives_the_right_code() {
    let Some(bed) = Bed::new("bad_input") else {
        return;
    };
    let vf = bed.add_vf(1);
    let pod = bed.pod("p1");
    let good = conf(&vf.pci, json!({}));
    let run = |c: &serde_json::Value, cid: &str, ns: Option<&std::path::Path>, ifname: &str| {
        sriov(&bed, "ADD", c, cid, ns, ifname)
    };
    let cases: Vec<(CniOut, u64, &str)> = vec![
        (run(&good, "c1", Some(&pod), ""), 4, "CNI_IFNAME"),
        (run(&good, "", Some(&pod), "net1"), 4, "CNI_CONTAINERID"),
        (run(&good, "c1", None, "net1"), 4, "CNI_NETNS"),
        (
            run(
                &good,
                "c1",
                Some(std::path::Path::new("/run/netns/does-not-exist-svt")),
                "net1",
            ),
            4,
            "CNI_NETNS",
        ),
        (
            run(&json!("not an object"), "c1", Some(&pod), "net1"),
            6,
            "JSON",
        ),
        (
            run(
                &conf("../../../etc/passwd", json!({})),
                "c1",
                Some(&pod),
                "net1",
            ),
            7,
            "deviceID",
        ),
        (
            run(
                &json!({"cniVersion": "1.0.0", "name": "n", "type": "sriov"}),
                "c1",
                Some(&pod),
                "net1",
            ),
            7,
            "deviceID",
        ),
        (
            run(&conf("0000:09:00.0", json!({})), "c1", Some(&pod), "net1"),
            7,
            "deviceID",
        ),
        (
            run(&conf(PF, json!({})), "c1", Some(&pod), "net1"),
            7,
            "not a VF",
        ),
        (
            run(
                &conf(&vf.pci, json!({"vlan": 5000})),
                "c1",
                Some(&pod),
                "net1",
            ),
            7,
            "vlan",
        ),
        (
            run(
                &conf(&vf.pci, json!({"trust": "yes"})),
                "c1",
                Some(&pod),
                "net1",
            ),
            7,
            "trust",
        ),
        (
            run(&with_version(&good, "0.2.0"), "c1", Some(&pod), "net1"),
            1,
            "cniVersion",
        ),
    ];
    for (out, code, word) in cases {
        assert_eq!(out.code(), Some(code), "{word}: {}", out.stdout);
        assert!(out.msg().contains(word), "{word}: {}", out.msg());
        assert!(
            out.stderr.contains("ERROR") || out.stderr.is_empty(),
            "logs on stderr only"
        );
    }
    assert_restored(&bed, &vf);
    let v = sriov(
        &bed,
        "VERSION",
        &json!({"cniVersion": "0.4.0"}),
        "",
        None,
        "",
    );
    ok(&v, "VERSION");
    assert_eq!(
        v.json["supportedVersions"],
        json!(["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
    );
}

const PF: &str = sriov_tests::netbed::PF_PCI;

fn with_version(c: &serde_json::Value, v: &str) -> serde_json::Value {
    let mut c = c.clone();
    c["cniVersion"] = json!(v);
    c
}

#[test]
fn results_follow_the_config_version() {
    let Some(bed) = Bed::new("versions") else {
        return;
    };
    let vf = bed.add_vf(1);
    let pod = bed.pod("p1");
    let c = conf(
        &vf.pci,
        json!({"cniVersion": "0.4.0", "mtu": 1400, "ipam": bed.host_local("10.77.7.0/24", "10.77.7.1")}),
    );
    let add = c1(&bed, "ADD", &c, &pod);
    ok(&add, "ADD 0.4.0");
    assert_eq!(add.json["cniVersion"], "0.4.0");
    assert_eq!(add.json["ips"][0]["version"], "4");
    assert!(
        add.json["interfaces"][0].get("mtu").is_none(),
        "no mtu before 1.0.0"
    );
    ok(
        &c1(&bed, "CHECK", &with_prev(&c, &add.json), &pod),
        "CHECK 0.4.0",
    );
    ok(&c1(&bed, "DEL", &with_prev(&c, &add.json), &pod), "DEL");
    assert_restored(&bed, &vf);
}

#[test]
fn gc_releases_attachments_of_dead_pods_only() {
    let Some(bed) = Bed::new("gc") else { return };
    let (v1, v2) = (bed.add_vf(1), bed.add_vf(2));
    let (p1, p2) = (bed.pod("p1"), bed.pod("p2"));
    let c = |vf: &BedVf| conf(&vf.pci, json!({"cniVersion": "1.1.0", "mtu": 1400}));
    ok(
        &sriov(&bed, "ADD", &c(&v1), "dead1", Some(&p1), "net1"),
        "ADD 1",
    );
    ok(
        &sriov(&bed, "ADD", &c(&v2), "live2", Some(&p2), "net1"),
        "ADD 2",
    );
    bed.delete_pod(&p1);
    // v1's netdev comes back to the host (under its original name in this fake tree).
    bed.ip_host(&[
        "link", "add", &v1.netdev, "mtu", "1400", "type", "veth", "peer", "name", "vp1b",
    ]);
    let mut gc = c(&v1);
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "live2", "ifname": "net1"}]);
    ok(&sriov(&bed, "GC", &gc, "", None, ""), "GC");
    assert!(!bed.state_dir().join("dead1-net1.json").exists());
    assert!(bed.state_dir().join("live2-net1.json").exists());
    assert_eq!(
        bed.link(None, &v1.netdev).unwrap().mtu,
        1500,
        "MTU restored"
    );
    assert!(
        bed.link(Some(&p2), "net1").is_some(),
        "live attachment untouched"
    );
    ok(&sriov(&bed, "STATUS", &c(&v1), "", None, ""), "STATUS");
    ok(
        &sriov(&bed, "DEL", &c(&v2), "live2", Some(&p2), "net1"),
        "DEL",
    );
    assert_restored(&bed, &v2);
}

#[test]
fn logs_go_to_the_log_file_never_stdout() {
    let Some(bed) = Bed::new("logfile") else {
        return;
    };
    let vf = bed.add_vf(1);
    let pod = bed.pod("p1");
    let log = bed.dir.path().join("sriov.log");
    let c = conf(
        &vf.pci,
        json!({"logLevel": "debug", "logFile": log, "someForeignKey": 1}),
    );
    let add = c1(&bed, "ADD", &c, &pod);
    ok(&add, "ADD");
    assert!(
        add.stdout.trim_start().starts_with('{') && add.json.is_object(),
        "stdout is only the result"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("attaching VF") && text.contains("someForeignKey"),
        "{text}"
    );
    ok(&c1(&bed, "DEL", &c, &pod), "DEL");
}

#[test]
fn cni_args_mac_and_check_without_add() {
    let Some(bed) = Bed::new("cni_args") else {
        return;
    };
    let vf = bed.add_vf(1);
    let pod = bed.pod("p1");
    let c = conf(&vf.pci, json!({}));
    let att = Att {
        container_id: "c1",
        netns: Some(&pod),
        ifname: "net1",
    };
    // CNI_ARGS MAC= is a PF-side setting too: on a PF without VF info it is refused by name.
    let mac = bed.run(
        BIN,
        "ADD",
        &c,
        &att,
        &[("CNI_ARGS", "IgnoreUnknown=1;MAC=02:00:00:00:00:33")],
    );
    assert_eq!(mac.code(), Some(101), "{}", mac.stdout);
    assert!(mac.msg().starts_with("mac"), "{}", mac.msg());
    let bad = bed.run(BIN, "ADD", &c, &att, &[("CNI_ARGS", "MAC=02:00")]);
    assert_eq!(bad.code(), Some(4), "{}", bad.stdout);
    assert!(bad.msg().contains("CNI_ARGS MAC"), "{}", bad.msg());
    let chk = c1(&bed, "CHECK", &c, &pod);
    assert_eq!(chk.code(), Some(3), "{}", chk.stdout);
    assert_restored(&bed, &vf);
}

#[test]
fn del_releases_an_attachment_made_by_the_go_plugin() {
    let Some(bed) = Bed::new("legacy") else {
        return;
    };
    let vf = bed.add_vf(1);
    let pod = bed.pod("p1");
    let ns = pod.file_name().unwrap().to_str().unwrap();
    // What the Go plugin leaves: the netdev in the pod as net1, and its cache file.
    bed.ip_host(&["link", "set", &vf.netdev, "netns", ns]);
    sriov_tests::netbed::ip(&[
        "-n",
        ns,
        "link",
        "set",
        &vf.netdev,
        "name",
        "net1",
        "mtu",
        "1400",
        "address",
        "02:99:00:00:00:01",
        "up",
    ]);
    std::fs::create_dir_all(bed.state_dir()).unwrap();
    let cache = json!({
        "cniVersion": "0.3.1", "name": "sriov-network", "type": "sriov", "deviceID": vf.pci,
        "Master": "pf0", "VFID": 1, "MAC": "", "MTU": 1500, "ContIFNames": "net1",
        "OrigVfState": {"HostIFName": vf.netdev, "EffectiveMAC": vf.mac, "AdminMAC": "00:00:00:00:00:00",
            "SpoofChk": false, "Trust": false, "LinkState": 0, "MinTxRate": 0, "MaxTxRate": 0,
            "Vlan": 0, "VlanQoS": 0, "VlanProto": 0},
        "vlan": null, "vlanQoS": null, "vlanProto": null, "min_tx_rate": null, "max_tx_rate": null,
        "runtimeConfig": {}
    });
    let file = bed.state_dir().join("c9-net1");
    std::fs::write(&file, cache.to_string()).unwrap();
    let del = sriov(
        &bed,
        "DEL",
        &conf(&vf.pci, json!({})),
        "c9",
        Some(&pod),
        "net1",
    );
    ok(&del, "DEL of a Go-plugin attachment");
    assert!(bed.link(Some(&pod), "net1").is_none());
    assert_restored(&bed, &vf);
    assert!(!file.exists(), "cache removed");
}

#[test]
fn del_with_a_torn_state_file_releases_and_keeps_it_aside() {
    let Some(bed) = Bed::new("torn") else { return };
    let vf = bed.add_vf(1);
    let pod = bed.pod("p1");
    let c = conf(&vf.pci, json!({}));
    ok(&sriov(&bed, "ADD", &c, "torn1", Some(&pod), "net1"), "ADD");
    // What a power loss can leave of a file that was renamed into place without an fsync.
    let st = bed.state_dir().join("torn1-net1.json");
    std::fs::write(&st, b"").unwrap();
    let del = sriov(&bed, "DEL", &c, "torn1", Some(&pod), "net1");
    ok(&del, "DEL with an empty state file");
    assert!(!st.exists());
    assert!(bed.state_dir().join("torn1-net1.json.corrupt").exists());
    // DEL again (the runtime retries): nothing left to do.
    ok(
        &sriov(&bed, "DEL", &c, "torn1", Some(&pod), "net1"),
        "second DEL",
    );
}

/// Run the plugin binary with `cmd` and `stdin`, outside any bed (no root needed): the write
/// may be cut short when the plugin stops reading.
fn bare(cmd: &str, stdin: Vec<u8>) -> (bool, serde_json::Value) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(BIN)
        .env("CNI_COMMAND", cmd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn plugin");
    let mut w = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || {
        let _ = w.write_all(&stdin);
    });
    let out = child.wait_with_output().expect("wait plugin");
    let _ = writer.join();
    let json = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.status.success(), json)
}

#[test]
fn netconf_larger_than_1_mib_is_refused_before_parsing() {
    let limit = sriov_cni::MAX_STDIN;
    assert_eq!(limit, 1 << 20);
    // A valid config padded with spaces to `len` bytes: valid JSON at any size.
    let padded = |len: usize| {
        let mut v = br#"{"cniVersion": "1.0.0", "name": "n", "type": "sriov"}"#.to_vec();
        v.resize(len, b' ');
        v
    };
    let (ok_at_limit, v) = bare("VERSION", padded(limit));
    assert!(ok_at_limit, "exactly 1 MiB is accepted: {v}");
    assert_eq!(v["cniVersion"], "1.0.0");
    for len in [limit + 1, 4 * limit] {
        let (ok, e) = bare("VERSION", padded(len));
        assert!(!ok, "{len} bytes accepted: {e}");
        assert_eq!(e["code"], 7, "{e}");
        let msg = e["msg"].as_str().unwrap_or_default();
        assert!(msg.contains("larger than 1048576 bytes"), "{msg}");
    }
    // Not JSON beyond the limit: the size is what is reported, not a parse error.
    let (_, e) = bare("ADD", vec![b'{'; limit + 1]);
    assert_eq!(e["code"], 7, "{e}");
}
