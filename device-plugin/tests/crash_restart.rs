//! Restarting after SIGKILL, as a DaemonSet container restart does (the sockets stay in the
//! hostPath), and stray files at a socket path: each pool serves once and registers once, a
//! stray file or symlink is replaced once (its target untouched), only a kubelet restart or the
//! removal of our socket by someone else makes a pool serve and register again.
#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::FileTypeExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;
use sriov_device_plugin::socket::FileIdentity;
use sriov_tests::kubelet::{first_list, TestKubelet, WatcherClient};

const SOCKETS: [&str; 2] = [
    "arm.com_ps225_sriov_netdevice.sock",
    "arm.com_ps225_dpdk.sock",
];
/// An idle window after start-up: what the plugin may spend in it at most.
const WINDOW: Duration = Duration::from_secs(1);
const MAX_WINDOW_TICKS: u64 = 20;
const MAX_WINDOW_LINES: usize = 20;

fn is_socket(p: &std::path::Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_socket())
}

/// Both pools registered (for the `n`-th time) and listed their devices on the new stream.
async fn registered(kubelet: &TestKubelet, n: usize) {
    for res in [NETDEV, DPDK] {
        let r = kubelet.wait_for_registration(res, n, T).await.unwrap();
        let devs = kubelet.wait_for_fresh_list(res, r.at, T).await.unwrap();
        assert_eq!(devs.len(), if res == DPDK { 4 } else { 12 }, "{res}");
    }
}

/// After start-up has settled: nothing loops. Returns (CPU ticks, log lines) of the window.
async fn quiet(plugin: &Plugin, what: &str) -> (u64, usize) {
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (ticks, lines) = plugin.idle_cost(WINDOW).await;
    eprintln!(
        "{what}: {} log lines since start, {lines} in the next {WINDOW:?}, {ticks} CPU ticks (1/100 s) in it, \"serving again\" {} times",
        plugin.log().lines().count(),
        plugin.log_count("serving again")
    );
    assert_eq!(
        plugin.log_count("serving again"),
        0,
        "{what}: the plugin took its own unlink for a kubelet restart"
    );
    assert!(
        lines <= MAX_WINDOW_LINES,
        "{what}: {lines} log lines in {WINDOW:?} of idling"
    );
    assert!(
        ticks <= MAX_WINDOW_TICKS,
        "{what}: {ticks}/100 s of CPU in {WINDOW:?} of idling"
    );
    (ticks, lines)
}

async fn sigkill_restart_serves_and_registers_each_pool_once(mode: &str) {
    let bed = Bed::ps225();
    let kubelet = TestKubelet::start(&bed.dp_dir()).await;
    let mut first = bed.spawn(mode);
    registered(&kubelet, 1).await;
    let before: Vec<_> = SOCKETS
        .iter()
        .map(|s| identity(&bed.dp_dir().join(s)))
        .collect();

    first.sigkill();
    first.wait(T).await;
    for s in SOCKETS {
        assert!(
            is_socket(&bed.dp_dir().join(s)),
            "{s}: a killed plugin leaves its socket"
        );
    }
    let second = bed.spawn(mode);
    registered(&kubelet, 2).await;
    quiet(&second, &format!("--registration {mode}, after SIGKILL")).await;
    for res in [NETDEV, DPDK] {
        assert_eq!(
            kubelet.registration_count(res),
            2,
            "{res}: one registration per start"
        );
    }
    for (s, old) in SOCKETS.iter().zip(before) {
        let p = bed.dp_dir().join(s);
        assert!(is_socket(&p) && mode_of(&p) == 0o600, "{s}");
        assert_ne!(identity(&p), old, "{s}: a new socket");
    }
    kubelet.allocate(DPDK, &["0000:03:10.6"]).await.unwrap();

    // Our socket removed by someone else: that pool (only) serves and registers again.
    std::fs::remove_file(bed.dp_dir().join(SOCKETS[0])).unwrap();
    let r = kubelet.wait_for_registration(NETDEV, 3, T).await.unwrap();
    kubelet.wait_for_fresh_list(NETDEV, r.at, T).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(kubelet.registration_count(NETDEV), 3);
    assert_eq!(kubelet.registration_count(DPDK), 2);
    assert_eq!(second.log_count("serving again"), 1, "{}", second.log());
    assert!(is_socket(&bed.dp_dir().join(SOCKETS[0])));
}

/// Device, inode and birth time of the file at a path (not followed): inode numbers are
/// reused at once. The plugin's own reading (statx), so a build whose standard library sees no
/// birth time (musl) is tested the same way.
fn identity(p: &std::path::Path) -> FileIdentity {
    let id = FileIdentity::of(p).unwrap();
    assert!(
        id.born.is_some(),
        "{}: no birth time on this filesystem",
        p.display()
    );
    id
}

#[tokio::test]
async fn sigkill_restart_in_kubelet_mode_registers_once() {
    sigkill_restart_serves_and_registers_each_pool_once("kubelet").await;
}

#[tokio::test]
async fn sigkill_restart_in_auto_mode_without_plugins_registry_registers_once() {
    sigkill_restart_serves_and_registers_each_pool_once("auto").await;
}

#[tokio::test]
async fn sigkill_restart_in_watcher_mode_serves_once() {
    let bed = Bed::ps225();
    let watcher = WatcherClient::new(&bed.reg_dir());
    let mut first = bed.spawn("watcher");
    for s in SOCKETS {
        watcher.wait_for_socket(s, T).await.unwrap();
    }
    first.sigkill();
    first.wait(T).await;
    let second = bed.spawn("watcher");
    second.wait_log("serving for the plugin watcher", T).await;
    let mut socks: Vec<PathBuf> = Vec::new();
    for s in SOCKETS {
        let p = watcher.wait_for_socket(s, T).await.unwrap();
        let info = watcher.get_info(&p).await.unwrap();
        assert_eq!(info.endpoint, p.to_string_lossy());
        watcher.notify(&p, true, "").await.unwrap();
        socks.push(p);
    }
    let mut dp = watcher.device_plugin(&socks[1]).await.unwrap();
    assert_eq!(first_list(&mut dp).await.unwrap().len(), 4);
    quiet(&second, "--registration watcher, after SIGKILL").await;
    assert_eq!(second.log_count("serving for the plugin watcher"), 2);
    assert_eq!(second.log_count("registered through the plugin watcher"), 2);
}

#[tokio::test]
async fn a_stray_file_or_symlink_at_the_socket_path_is_replaced_once_and_not_followed() {
    let bed = Bed::ps225();
    let victim = bed.tmp.path().join("victim");
    std::fs::write(&victim, "not yours\n").unwrap();
    let victim_mode = mode_of(&victim);
    // A regular file where the netdev pool's socket goes, a symlink where the DPDK pool's does.
    std::fs::write(bed.dp_dir().join(SOCKETS[0]), "stray\n").unwrap();
    std::os::unix::fs::symlink(&victim, bed.dp_dir().join(SOCKETS[1])).unwrap();

    let kubelet = TestKubelet::start(&bed.dp_dir()).await;
    let plugin = bed.spawn("kubelet");
    registered(&kubelet, 1).await;
    quiet(&plugin, "stray file and symlink at the socket paths").await;
    for res in [NETDEV, DPDK] {
        assert_eq!(kubelet.registration_count(res), 1, "{res}");
    }
    for s in SOCKETS {
        let p = bed.dp_dir().join(s);
        assert!(is_socket(&p), "{s} is a socket now");
        assert_eq!(mode_of(&p), 0o600, "{s}");
    }
    assert_eq!(
        plugin.log_count("replaced a file that was not a socket"),
        2,
        "{}",
        plugin.log()
    );
    let m = std::fs::symlink_metadata(&victim).unwrap();
    assert!(m.file_type().is_file(), "the symlink's target stays a file");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "not yours\n");
    assert_eq!(mode_of(&victim), victim_mode, "target's mode untouched");
    kubelet.allocate(DPDK, &["0000:04:10.7"]).await.unwrap();
}

#[tokio::test]
async fn a_directory_at_the_socket_path_stops_the_plugin_with_a_clear_error() {
    let bed = Bed::ps225();
    let dir = bed.dp_dir().join(SOCKETS[1]);
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("keep"), "x").unwrap();
    let _kubelet = TestKubelet::start(&bed.dp_dir()).await;
    let t0 = Instant::now();
    let mut plugin = bed.spawn("kubelet");
    let st = plugin.wait(T).await;
    let log = plugin.log();
    eprintln!("exit {st:?} after {:?}", t0.elapsed());
    assert_eq!(st.code(), Some(1), "{log}");
    assert!(
        log.contains(&format!(
            "cannot listen on {}: a directory is in the way",
            dir.display()
        )),
        "{log}"
    );
    assert!(dir.join("keep").exists(), "the directory is left alone");
}
