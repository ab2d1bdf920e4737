//! The plugin driven by the reference runtime library (libcni, Go) with `tuning` chained after
//! it: AddNetworkList, CheckNetworkList, DelNetworkList, as containerd and CRI-O do.
//!
//! Builds `tests/libcni` with the Go toolchain (modules from the module proxy or the local
//! cache). A failing build fails this test; it is never skipped silently.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::json;

fn go() -> PathBuf {
    let in_path = Command::new("go")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if in_path {
        PathBuf::from("go")
    } else {
        PathBuf::from("/usr/local/go/bin/go")
    }
}

fn build_harness() -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/libcni");
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("libcni-harness");
    let r = Command::new(go())
        .args(["build", "-buildvcs=false", "-o"])
        .arg(&out)
        .arg(".")
        .current_dir(&src)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "running the Go toolchain ({}): {e}; install Go to run the libcni test",
                go().display()
            )
        });
    assert!(
        r.status.success(),
        "building the libcni harness in {} failed (needs the Go toolchain and github.com/containernetworking/cni from the module proxy or GOMODCACHE):\n{}",
        src.display(),
        String::from_utf8_lossy(&r.stderr)
    );
    out
}

#[test]
fn libcni_add_check_del_with_tuning_chained() {
    let harness = build_harness();
    let Some(bed) = Bed::new("libcni") else {
        return;
    };
    let vf = bed.add_vf(1);
    let pod = bed.pod("p1");
    let conflist = json!({
        "cniVersion": "1.0.0",
        "name": "sriov-libcni",
        "plugins": [
            {"type": "sriov", "capabilities": {"deviceID": true}, "mtu": 1400,
             "ipam": bed.host_local("10.77.9.0/24", "10.77.9.1")},
            {"type": "tuning", "mac": "02:cc:00:00:00:07"}
        ]
    });
    let file = bed.dir.path().join("net.conflist");
    std::fs::write(&file, conflist.to_string()).unwrap();
    let bindir = Path::new(BIN).parent().unwrap();
    let run = |cmd: &str| {
        let out = bed
            .command(&harness)
            .arg("-conflist")
            .arg(&file)
            .arg("-bin")
            .arg(format!(
                "{}:{}",
                bindir.display(),
                sriov_tests::netbed::CNI_PATH
            ))
            .arg("-cache")
            .arg(bed.dir.path().join("cache"))
            .args([
                "-id", "libcni1", "-ifname", "net1", "-device", &vf.pci, "-netns",
            ])
            .arg(&pod)
            .arg(cmd)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "libcni {cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };

    let res: serde_json::Value = serde_json::from_str(&run("add")).expect("ADD result JSON");
    assert_eq!(res["cniVersion"], "1.0.0");
    assert_eq!(res["interfaces"][0]["name"], "net1");
    assert_eq!(
        res["interfaces"][0]["mac"], "02:cc:00:00:00:07",
        "tuning's MAC in the final result"
    );
    assert_eq!(res["ips"][0]["address"], "10.77.9.2/24");
    let l = bed.link(Some(&pod), "net1").expect("net1 in the pod");
    assert_eq!(
        (l.mac.as_str(), l.mtu, l.up),
        ("02:cc:00:00:00:07", 1400, true)
    );

    run("check");
    run("del");
    assert!(bed.link(Some(&pod), "net1").is_none());
    assert_restored(&bed, &vf);
    run("del");
}
