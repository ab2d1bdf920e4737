//! What one ADD and one DEL cost the plugin process in the kinds of work that dominate its own
//! CPU time (docs/peers.md, "where the time goes"): threads spawned, state-file replacements.
//! Counted with strace on a real veth bed; skipped (failing in strict mode) without strace.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::*;
use serde_json::json;

/// A wrapper that runs the plugin under `strace -f`, tracing `calls`, logging to `log`.
fn traced(bed: &Bed, calls: &str, log: &Path) -> PathBuf {
    let w = bed.dir.path().join("traced.sh");
    std::fs::write(
        &w,
        format!(
            "#!/bin/sh\nexec strace -f -qq -o '{}' -e trace={calls} '{BIN}'\n",
            log.display()
        ),
    )
    .expect("write the strace wrapper");
    std::fs::set_permissions(&w, std::fs::Permissions::from_mode(0o755))
        .expect("make the strace wrapper executable");
    w
}

fn have_strace() -> bool {
    std::process::Command::new("strace")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Lines of the strace log `log` whose call matches `pred`.
fn count(log: &Path, pred: impl Fn(&str) -> bool) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| pred(l))
        .count()
}

#[test]
fn add_and_del_spawn_no_thread_and_add_replaces_its_state_three_times() {
    let Some(bed) = Bed::new("cost") else {
        return;
    };
    if !have_strace() {
        sriov_tests::gate::skip("needs strace");
        return;
    }
    let vf = bed.add_vf(1);
    let pod = bed.pod("p1");
    let c = conf(&vf.pci, json!({}));
    let calls = "clone,clone3,rename,renameat,renameat2";
    let (add_log, del_log) = (bed.dir.path().join("add.st"), bed.dir.path().join("del.st"));
    let att = Att {
        container_id: "c1",
        netns: Some(&pod),
        ifname: "net1",
    };
    let w = traced(&bed, calls, &add_log);
    let add = bed.run(w.to_str().unwrap(), "ADD", &c, &att, &[]);
    ok(&add, "ADD");
    let w = traced(&bed, calls, &del_log);
    let del = bed.run(
        w.to_str().unwrap(),
        "DEL",
        &with_prev(&c, &add.json),
        &att,
        &[],
    );
    ok(&del, "DEL");
    assert_restored(&bed, &vf);

    let threads = |l: &str| l.contains("clone") && l.contains("CLONE_THREAD");
    assert_eq!(
        count(&add_log, threads),
        0,
        "ADD spawned threads (each costs a stack, a malloc arena and their teardown)"
    );
    assert_eq!(count(&del_log, threads), 0, "DEL spawned threads");
    // One write before the first change, one with the netdev's ifindex in the pod, one with the
    // result: the crash-recovery record needs no more.
    let renames = |l: &str| l.contains("rename") && l.contains("c1-net1.json");
    assert_eq!(count(&add_log, renames), 3, "state replacements in ADD");
    assert_eq!(count(&del_log, renames), 0, "state replacements in DEL");
}
