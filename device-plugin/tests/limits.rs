//! What one client cannot do to the others: an oversized or repetitive Allocate, a slow pool,
//! a flood of connections to /metrics or to a pool socket, an endless or oversized config file.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use kubelet_proto::v1beta1::device_plugin_client::DevicePluginClient;
use kubelet_proto::v1beta1::{AllocateRequest, ContainerAllocateRequest};
use sriov_tests::fakesys::scale_tree;
use sriov_tests::kubelet::TestKubelet;
use sriov_tests::promtext::http_get;

const DPDK_SOCK: &str = "arm.com_ps225_dpdk.sock";

async fn healthz(addr: SocketAddr) -> std::io::Result<(u16, String)> {
    tokio::task::spawn_blocking(move || http_get(addr, "/healthz"))
        .await
        .unwrap()
        .map(|(code, _, body)| (code, body))
}

/// Allocate on a new connection to a pool's socket (not the test kubelet's open one).
async fn allocate_fresh(sock: &std::path::Path, ids: &[&str]) -> Result<(), String> {
    let ch = kubelet_proto::connect_uds(sock)
        .await
        .map_err(|e| e.to_string())?;
    DevicePluginClient::new(ch)
        .allocate(AllocateRequest {
            container_requests: vec![ContainerAllocateRequest {
                devices_ids: ids.iter().map(|s| s.to_string()).collect(),
            }],
        })
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn allocate_refuses_duplicates_and_more_ids_than_the_pool_has() {
    let bed = Bed::ps225();
    let kubelet = TestKubelet::start(&bed.dp_dir()).await;
    let _plugin = bed.spawn("kubelet");
    kubelet
        .wait_for_devices(DPDK, |d| d.len() == 4, T)
        .await
        .unwrap();
    let check = |e: tonic::Status, want: &str| {
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
        assert!(e.message().contains(want), "{e}");
    };
    let e = kubelet
        .allocate(DPDK, &["0000:03:10.6", "0000:03:10.6"])
        .await
        .unwrap_err();
    check(e, "device 0000:03:10.6 is asked for more than once");
    // Across containers of one request too.
    let e = kubelet
        .allocate_many(
            DPDK,
            &[vec!["0000:03:10.6".into()], vec!["0000:03:10.6".into()]],
        )
        .await
        .unwrap_err();
    check(e, "asked for more than once");
    let five = [
        "0000:03:10.6",
        "0000:03:10.7",
        "0000:04:10.6",
        "0000:04:10.7",
        "0000:03:10.0",
    ];
    let e = kubelet.allocate(DPDK, &five).await.unwrap_err();
    check(
        e,
        "5 device IDs asked of pool arm.com/ps225_dpdk, which has 4 devices",
    );
    let e = kubelet
        .allocate_many(DPDK, &[vec!["0000:03:10.6".into()], vec![]])
        .await
        .unwrap_err();
    check(e, "container request 1 names no device");
    // 3,000 copies of one ID: refused at once, nothing written.
    let many = vec!["0000:03:10.6"; 3000];
    let t0 = Instant::now();
    let e = kubelet.allocate(DPDK, &many).await.unwrap_err();
    let took = t0.elapsed();
    eprintln!("Allocate with 3,000 copies of one ID refused in {took:?}");
    check(
        e,
        "3000 device IDs asked of pool arm.com/ps225_dpdk, which has 4 devices",
    );
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert!(
        !bed.devinfo_dir().exists() || std::fs::read_dir(bed.devinfo_dir()).unwrap().count() == 0,
        "a refused Allocate writes nothing"
    );
    // The pool still allocates.
    let r = kubelet
        .allocate(DPDK, &["0000:03:10.6", "0000:04:10.7"])
        .await
        .unwrap();
    assert_eq!(
        r.envs["PCIDEVICE_ARM_COM_PS225_DPDK"],
        "0000:03:10.6,0000:04:10.7"
    );
}

#[tokio::test]
async fn healthz_and_other_pools_answer_while_one_pool_allocates() {
    const BIG: &str = "intel.com/big";
    const SMALL: &str = "intel.com/small";
    // Big enough that one Allocate of the whole big pool takes several times the latency bound
    // (checked below): 7 PFs x 504 VFs in the big pool, 504 in the small one.
    let bed = Bed::with_tree(
        scale_tree(8, 504),
        &serde_json::json!({"resourceList": [
            {"resourceName": "big", "selectors": {"rootDevices": [
                "0000:20:00.0", "0000:21:00.0", "0000:22:00.0", "0000:23:00.0", "0000:24:00.0",
                "0000:25:00.0", "0000:26:00.0"]}},
            {"resourceName": "small", "selectors": {"rootDevices": ["0000:27:00.0"]}}
        ]}),
    );
    let kubelet = TestKubelet::start(&bed.dp_dir()).await;
    let plugin = bed.spawn_args("kubelet", &["--metrics-addr", "127.0.0.1:0"]);
    let big: Vec<String> = kubelet
        .wait_for_devices(BIG, |d| d.len() == 7 * 504, Duration::from_secs(60))
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    let small = kubelet
        .wait_for_devices(SMALL, |d| d.len() == 504, Duration::from_secs(60))
        .await
        .unwrap();
    let one = small[0].id.clone();
    let addr = plugin.metrics_addr(T).await;

    // The big pool: every device in one Allocate (3,528 device-info files), again and
    // again; meanwhile /healthz and the small pool are asked every 20 ms.
    let busy = std::sync::atomic::AtomicBool::new(true);
    let allocs = async {
        let mut took = Vec::new();
        while took.len() < 2 || busy.load(std::sync::atomic::Ordering::Relaxed) {
            let t = Instant::now();
            kubelet
                .allocate_many(BIG, std::slice::from_ref(&big))
                .await
                .unwrap();
            took.push(t.elapsed());
            if took.len() == 2 {
                busy.store(false, std::sync::atomic::Ordering::Relaxed);
            }
        }
        busy.store(false, std::sync::atomic::Ordering::Relaxed);
        took
    };
    let probes = async {
        // Let the first big Allocate get going.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (mut health, mut other) = (Vec::new(), Vec::new());
        while busy.load(std::sync::atomic::Ordering::Relaxed) {
            let t = Instant::now();
            assert_eq!(healthz(addr).await.unwrap(), (200, "ok\n".to_string()));
            health.push(t.elapsed());
            let t = Instant::now();
            kubelet.allocate(SMALL, &[one.as_str()]).await.unwrap();
            other.push(t.elapsed());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (health, other)
    };
    let (took, (health, other)) = tokio::join!(allocs, probes);
    let max = |v: &[Duration]| v.iter().max().copied().unwrap_or_default();
    eprintln!(
        "Allocate of 3,528 devices took {took:?}; meanwhile /healthz answered {} times, in at most {:?}, the other pool's Allocate {} times, in at most {:?}",
        health.len(),
        max(&health),
        other.len(),
        max(&other)
    );
    assert!(!health.is_empty() && !other.is_empty());
    // Otherwise a daemon that answers nothing while it allocates would pass too: a probe sent
    // while a blocking daemon allocates waits out the rest of that Allocate, so one at least
    // 1.5 times the bound below leaves room for probes that would have to wait past it.
    assert!(
        max(&took) > Duration::from_millis(150),
        "the busy pool's Allocate took only {took:?}: too quick to show anything"
    );
    assert!(
        max(&health) < Duration::from_millis(100),
        "/healthz waited {:?} for the busy pool",
        max(&health)
    );
    assert!(
        max(&other) < Duration::from_millis(100),
        "the other pool's Allocate waited {:?} for the busy pool",
        max(&other)
    );
}

#[tokio::test]
async fn idle_metrics_connections_are_capped_and_the_pool_sockets_keep_answering() {
    const LIMIT: usize = 256;
    // More than the descriptors the plugin has, fewer than those plus the listener's accept
    // queue (128), so every connect completes even when the plugin stops accepting.
    const CONNECTIONS: usize = LIMIT + 100;
    let bed = Bed::ps225();
    let kubelet = TestKubelet::start(&bed.dp_dir()).await;
    // A low descriptor limit, soft and hard, so there is nothing to raise.
    let nofile = format!("--nofile={LIMIT}:{LIMIT}");
    let plugin = bed.spawn_wrapped(
        &["prlimit", &nofile, "--"],
        "kubelet",
        &["--metrics-addr", "127.0.0.1:0"],
    );
    kubelet
        .wait_for_devices(DPDK, |d| d.len() == 4, T)
        .await
        .unwrap();
    let addr = plugin.metrics_addr(T).await;
    let fds_before = plugin.open_fds();

    // Connections that never send a byte, opened well within the plugin's header timeout.
    let t = Instant::now();
    let mut idle: Vec<TcpStream> = Vec::new();
    for _ in 0..CONNECTIONS {
        // (A full accept queue drops the SYN; the kernel sends it again after a second.)
        match TcpStream::connect_timeout(&addr, Duration::from_secs(3)) {
            Ok(s) => idle.push(s),
            Err(e) => eprintln!("connection #{} to /metrics: {e}", idle.len() + 1),
        }
    }
    eprintln!("{} connections opened in {:?}", idle.len(), t.elapsed());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let fds_flooded = plugin.open_fds();

    let t = Instant::now();
    let h = tokio::time::timeout(Duration::from_secs(3), healthz(addr)).await;
    let health_took = t.elapsed();
    let t = Instant::now();
    let sock = bed.dp_dir().join(DPDK_SOCK);
    let a = tokio::time::timeout(
        Duration::from_secs(3),
        allocate_fresh(&sock, &["0000:03:10.6"]),
    )
    .await;
    let alloc_took = t.elapsed();
    let closed = idle
        .iter()
        .filter(|s| {
            use std::io::Read;
            s.set_nonblocking(true).unwrap();
            match (&**s).read(&mut [0u8; 1]) {
                Ok(0) => true,
                Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
                Ok(_) => false,
            }
        })
        .count();
    eprintln!(
        "{} idle connections to /metrics (RLIMIT_NOFILE {LIMIT}): plugin fds {fds_before} before, {fds_flooded} with them, {closed} of them closed by the plugin; /healthz answered in {health_took:?}, a new connection's Allocate in {alloc_took:?}",
        idle.len()
    );
    assert!(idle.len() > LIMIT + 16, "only {} connections", idle.len());
    assert!(
        matches!(&h, Ok(Ok((200, _)))),
        "/healthz during the flood: {h:?}"
    );
    assert!(
        matches!(&a, Ok(Ok(()))),
        "Allocate on a new connection during the flood: {a:?}"
    );
    assert!(
        fds_flooded <= fds_before + 64 + 8,
        "{fds_flooded} fds with the flood ({fds_before} before)"
    );
}

#[tokio::test]
async fn the_pool_socket_accept_loop_pauses_rather_than_spins_when_out_of_descriptors() {
    const LIMIT: usize = 128;
    let bed = Bed::ps225();
    let kubelet = TestKubelet::start(&bed.dp_dir()).await;
    let nofile = format!("--nofile={LIMIT}:{LIMIT}");
    let mut plugin = bed.spawn_wrapped(&["prlimit", &nofile, "--"], "kubelet", &[]);
    kubelet
        .wait_for_devices(DPDK, |d| d.len() == 4, T)
        .await
        .unwrap();
    let sock = bed.dp_dir().join(DPDK_SOCK);
    // More connections than the plugin has descriptors for; those it cannot accept wait in the
    // kernel's queue (or are refused once that is full).
    let mut conns = Vec::new();
    for _ in 0..2 * LIMIT {
        if let Ok(Ok(c)) = tokio::time::timeout(
            Duration::from_millis(200),
            tokio::net::UnixStream::connect(&sock),
        )
        .await
        {
            conns.push(c);
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let fds = plugin.open_fds();
    let (ticks, lines) = plugin.idle_cost(Duration::from_secs(1)).await;
    eprintln!(
        "{} connections to a pool socket with RLIMIT_NOFILE {LIMIT}: plugin at {fds} fds; {ticks} CPU ticks (1/100 s) and {lines} log lines in the next second",
        conns.len()
    );
    assert!(
        fds >= LIMIT - 2,
        "the plugin ran out of descriptors ({fds})"
    );
    assert!(
        ticks <= 20,
        "{ticks}/100 s of CPU in 1 s while out of fds: spinning"
    );
    assert!(lines <= 20, "{lines} log lines in 1 s while out of fds");
    assert!(plugin.alive(), "the plugin died:\n{}", plugin.log());
    // Once the flood goes, the plugin drains its queue and answers a new client again (which
    // may find the queue still full for a moment, and retries).
    drop(conns);
    let t = Instant::now();
    let mut a = Err(String::new());
    while t.elapsed() < Duration::from_secs(3) {
        a = allocate_fresh(&sock, &["0000:03:10.6"]).await;
        if a.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "Allocate on a new connection {:?} after the flood ended",
        t.elapsed()
    );
    assert!(a.is_ok(), "Allocate after the flood: {a:?}");
    assert!(plugin.alive());
}

/// Start the plugin with `config` as `--config`; it must stop at once with exit code 2 and an
/// error naming the file and `want`. The address-space limit makes a regression that reads
/// without end fail fast instead of eating the machine's memory.
async fn refused_at_start(bed: &Bed, config: &std::path::Path, want: &str) {
    let mut args = bed.args("kubelet");
    args[1] = config.to_string_lossy().into_owned();
    let err_path = bed.tmp.path().join("start.err");
    let mut child = std::process::Command::new("prlimit")
        .arg("--as=2147483648")
        .arg("--")
        .arg(bin())
        .args(&args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if t0.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("--config {}: still running after 10 s", config.display());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let err = std::fs::read_to_string(&err_path).unwrap();
    eprintln!(
        "--config {}: exit {:?} after {:?}",
        config.display(),
        status.code(),
        t0.elapsed()
    );
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("config {} {want}", config.display())),
        "{err}"
    );
}

#[tokio::test]
async fn a_config_that_is_not_a_regular_file_or_too_large_is_refused_at_start() {
    let bed = Bed::ps225();
    refused_at_start(
        &bed,
        std::path::Path::new("/dev/zero"),
        "is a character device, not a regular file",
    )
    .await;
    let fifo = bed.tmp.path().join("fifo.json");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    refused_at_start(&bed, &fifo, "is a FIFO, not a regular file").await;
    // Valid JSON, padded past 4 MiB.
    let big = bed.tmp.path().join("big.json");
    let mut text = serde_json::to_vec(&ps225_config()).unwrap();
    text.resize(4 * 1024 * 1024 + 1, b' ');
    std::fs::write(&big, text).unwrap();
    refused_at_start(&bed, &big, "is larger than the 4 MiB limit").await;
}

#[tokio::test]
async fn an_oversized_or_fifo_config_is_refused_on_reload_and_the_pools_keep_serving() {
    let bed = Bed::ps225();
    let kubelet = TestKubelet::start(&bed.dp_dir()).await;
    let plugin = bed.spawn("kubelet");
    kubelet
        .wait_for_devices(DPDK, |d| d.len() == 4, T)
        .await
        .unwrap();
    let config = bed.config();

    let mut text = serde_json::to_vec(&ps225_config()).unwrap();
    text.resize(5 * 1024 * 1024, b' ');
    std::fs::write(&config, text).unwrap();
    plugin.wait_log("is larger than the 4 MiB limit", T).await;
    assert!(plugin
        .log()
        .contains("config refused; the running pools keep serving unchanged"));
    kubelet.allocate(DPDK, &["0000:03:10.6"]).await.unwrap();

    // A FIFO renamed over the config: refused without waiting for a writer.
    let fifo = bed.tmp.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    std::fs::rename(&fifo, &config).unwrap();
    plugin.wait_log("is a FIFO, not a regular file", T).await;
    kubelet.allocate(DPDK, &["0000:03:10.7"]).await.unwrap();

    // The watch still works: a valid config with one pool fewer is applied.
    std::fs::remove_file(&config).unwrap();
    let mut c = ps225_config();
    c["resourceList"].as_array_mut().unwrap().truncate(1);
    bed.write_config(&c);
    plugin.wait_log("config applied", T).await;
    kubelet
        .wait_for_devices(NETDEV, |d| d.len() == 12, T)
        .await
        .unwrap();
    assert!(
        !bed.dp_dir().join(DPDK_SOCK).exists(),
        "the removed pool's socket is gone"
    );
}
