//! A test that cannot run never reports a silent `ok`: run as an unprivileged user, a root-only
//! test prints `SKIPPED` in the normal output, and fails under `SRIOV_TEST_STRICT=1`.
#![allow(clippy::unwrap_used)]

use std::os::unix::process::CommandExt;
use std::process::{Command, Output};

/// The root-only test the others run as `nobody`; ignored in normal runs.
#[test]
#[ignore = "run by the tests below as an unprivileged user"]
fn root_only_child() {
    if !sriov_tests::gate::need_root() {
        return;
    }
    println!("ran as root");
}

/// This test binary's `root_only_child`, as uid/gid 65534, with `env` added.
fn child_as_nobody(env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--ignored",
        "--exact",
        "root_only_child",
        "--test-threads",
        "1",
    ])
    .env_remove(sriov_tests::gate::STRICT_ENV)
    .env_remove(sriov_tests::gate::SKIP_LOG_ENV)
    .envs(env.iter().copied())
    .uid(65534)
    .gid(65534);
    cmd.output().unwrap()
}

#[test]
fn not_root_and_strict_fails_naming_the_need() {
    if !sriov_tests::gate::need_root() {
        return;
    }
    let out = child_as_nobody(&[(sriov_tests::gate::STRICT_ENV, "1")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "strict run passed:\n{stdout}");
    assert!(
        stdout.contains("SKIPPED: root_only_child: needs root")
            && stdout.contains("SRIOV_TEST_STRICT=1 requires every test to run"),
        "{stdout}"
    );
    assert!(stdout.contains("1 failed"), "{stdout}");
}

#[test]
fn not_root_prints_skipped_where_libtest_shows_it() {
    if !sriov_tests::gate::need_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("skipped.txt");
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let out = child_as_nobody(&[(sriov_tests::gate::SKIP_LOG_ENV, log.to_str().unwrap())]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(!stdout.contains("ran as root"), "{stdout}");
    // Outside libtest's capture: on the terminal of a plain `cargo test`.
    assert!(
        stderr.contains("SKIPPED: root_only_child: needs root"),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.starts_with("SKIPPED: root_only_child: needs root"),
        "{logged}"
    );
}
