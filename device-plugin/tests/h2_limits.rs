//! HTTP/2 abuse of one pool's socket, against the real daemon on a fake node: a CONTINUATION
//! flood, HPACK amplification (a block of references to one 4,000-byte table entry), and a
//! burst of small blocks within every limit that each decode to 16 KB. Each attack runs for a
//! few seconds, reconnecting whenever the daemon closes the connection, while the daemon's
//! memory is sampled and another pool's Allocate is timed. The daemon must stay under 50 MiB
//! and keep answering, and close each connection that breaks a limit with a GOAWAY.
//!
//! The attacks are bounded on our side too: each phase stops after [`PHASE`], or at once when
//! the daemon passes [`ABORT_KIB`]; and the daemon runs under a 1 GiB address-space limit, so
//! a regression fails this test instead of exhausting the machine.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use sriov_tests::kubelet::TestKubelet;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

const RSS_LIMIT_KIB: u64 = 50 * 1024;
const ABORT_KIB: u64 = 256 * 1024;
const ADDRESS_SPACE_LIMIT: u64 = 1 << 30;
const PHASE: Duration = Duration::from_secs(4);
/// The slowest Allocate on the other pool we accept while one pool is attacked (debug build,
/// shared CI machine; the unbounded decoder froze every pool for 14.5 s).
const ALLOCATE_BOUND: Duration = Duration::from_millis(1000);

const HEADERS: u8 = 0x1;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;
const END_HEADERS: u8 = 0x4;
const COMPRESSION_ERROR: u32 = 0x9;
const ENHANCE_YOUR_CALM: u32 = 0xb;

fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let l = payload.len();
    out.extend_from_slice(&[(l >> 16) as u8, (l >> 8) as u8, l as u8, kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

fn hpack_int(out: &mut Vec<u8>, mut v: usize, prefix: u8, first: u8) {
    let max = (1usize << prefix) - 1;
    if v < max {
        out.push(first | v as u8);
        return;
    }
    out.push(first | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128 + 128) as u8);
        v /= 128;
    }
    out.push(v as u8);
}

fn literal(out: &mut Vec<u8>, first: u8, n: &str, v: &str) {
    out.push(first);
    hpack_int(out, n.len(), 7, 0);
    out.extend_from_slice(n.as_bytes());
    hpack_int(out, v.len(), 7, 0);
    out.extend_from_slice(v.as_bytes());
}

fn preface() -> Vec<u8> {
    let mut v = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    frame(&mut v, 0x4, 0, 0, &[]);
    v
}

fn request_start() -> Vec<u8> {
    let mut b = Vec::new();
    literal(&mut b, 0, ":method", "POST");
    literal(&mut b, 0, ":scheme", "http");
    literal(
        &mut b,
        0,
        ":path",
        "/v1beta1.DevicePlugin/GetDevicePluginOptions",
    );
    literal(&mut b, 0, ":authority", "localhost");
    b
}

/// A request header block that references one 4,000-byte table entry `refs` times.
fn amplified_block(refs: usize) -> Vec<u8> {
    let mut b = request_start();
    literal(&mut b, 0x40, "x-big", &"a".repeat(4000));
    b.resize(b.len() + refs, 0x80 | 62);
    b
}

/// `block` as HEADERS + CONTINUATION frames of 16 KiB.
fn block_frames(block: &[u8]) -> Vec<u8> {
    let mut out = preface();
    let chunks: Vec<&[u8]> = block.chunks(16_384).collect();
    for (i, c) in chunks.iter().enumerate() {
        let kind = if i == 0 { HEADERS } else { CONTINUATION };
        let end = if i + 1 == chunks.len() {
            END_HEADERS
        } else {
            0
        };
        frame(&mut out, kind, end, 1, c);
    }
    out
}

/// What one attack phase did.
#[derive(Debug, Default)]
struct Attack {
    connections: u64,
    bytes: u64,
    /// The GOAWAY error codes received, in order (one per connection that got one).
    goaways: Vec<u32>,
    first_debug: Option<String>,
}

/// One attacking connection: write `start`, then `more` until the daemon stops taking it or
/// the phase ends; collect the GOAWAY it sends.
async fn attack_once(
    sock: &Path,
    start: &[u8],
    more: Option<&[u8]>,
    until: Instant,
    stop: &AtomicBool,
    a: &mut Attack,
) {
    let Ok(s) = UnixStream::connect(sock).await else {
        return;
    };
    a.connections += 1;
    let (mut rd, mut wr) = s.into_split();
    let reader = tokio::spawn(async move {
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(PHASE, rd.read_to_end(&mut buf)).await;
        buf
    });
    let mut sent = 0u64;
    if wr.write_all(start).await.is_ok() {
        sent += start.len() as u64;
        if let Some(more) = more {
            // At least once, so that every connection goes past a limit.
            loop {
                match tokio::time::timeout(Duration::from_secs(1), wr.write_all(more)).await {
                    Ok(Ok(())) => sent += more.len() as u64,
                    _ => break,
                }
                if Instant::now() >= until || stop.load(Ordering::Relaxed) {
                    break;
                }
            }
        }
    }
    drop(wr);
    a.bytes += sent;
    let buf = tokio::time::timeout(PHASE, reader)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let mut rest = &buf[..];
    while rest.len() >= 9 {
        let len = (usize::from(rest[0]) << 16) | (usize::from(rest[1]) << 8) | usize::from(rest[2]);
        if rest.len() < 9 + len {
            break;
        }
        if rest[3] == GOAWAY && len >= 8 {
            let p = &rest[9..9 + len];
            a.goaways.push(u32::from_be_bytes([p[4], p[5], p[6], p[7]]));
            a.first_debug
                .get_or_insert_with(|| String::from_utf8_lossy(&p[8..]).into_owned());
        }
        rest = &rest[9 + len..];
    }
}

/// Samples the daemon's VmRSS; sets `stop` when it passes [`ABORT_KIB`].
struct Sampler {
    max_kib: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
}

fn status_kib(pid: i32, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

fn sample(pid: i32, stop: Arc<AtomicBool>) -> Sampler {
    let max_kib = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let (m, d) = (max_kib.clone(), done.clone());
    std::thread::spawn(move || {
        while !d.load(Ordering::Relaxed) {
            if let Some(kib) = status_kib(pid, "VmRSS:") {
                m.fetch_max(kib, Ordering::Relaxed);
                if kib > ABORT_KIB {
                    stop.store(true, Ordering::Relaxed);
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    Sampler { max_kib, done }
}

/// Allocate on the DPDK pool in a loop until `done`; returns every latency.
async fn probe_allocate(kubelet: Arc<TestKubelet>, done: Arc<AtomicBool>) -> Vec<Duration> {
    let mut lat = Vec::new();
    while !done.load(Ordering::Relaxed) {
        let t = Instant::now();
        let r = tokio::time::timeout(
            Duration::from_secs(20),
            kubelet.allocate(DPDK, &["0000:03:10.6"]),
        )
        .await;
        let el = t.elapsed();
        assert!(matches!(r, Ok(Ok(_))), "Allocate on the other pool: {r:?}");
        lat.push(el);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    lat
}

struct Phase {
    name: &'static str,
    took: Duration,
    attack: Attack,
    max_rss_kib: u64,
    allocate: Vec<Duration>,
}

impl Phase {
    fn report(&self) {
        let mut l = self.allocate.clone();
        l.sort();
        let pct = |p: usize| {
            l.get((l.len() * p / 100).min(l.len().saturating_sub(1)))
                .copied()
        };
        eprintln!(
            "{} ({:?}): {} connections, {} bytes written, GOAWAYs {} (first {:?}); daemon VmRSS max {} KiB; \
             other pool Allocate: {} calls, median {:?}, max {:?}",
            self.name,
            self.took,
            self.attack.connections,
            self.attack.bytes,
            self.attack.goaways.len(),
            self.attack.first_debug,
            self.max_rss_kib,
            l.len(),
            pct(50).unwrap_or_default(),
            l.last().copied().unwrap_or_default(),
        );
    }
}

/// Run `attack` against `sock` for [`PHASE`] while sampling memory and timing Allocate.
async fn phase<F, Fut>(
    name: &'static str,
    pid: i32,
    kubelet: &Arc<TestKubelet>,
    sock: &Path,
    attack: F,
) -> Phase
where
    F: FnOnce(std::path::PathBuf, Instant, Arc<AtomicBool>) -> Fut,
    Fut: std::future::Future<Output = Attack> + Send + 'static,
{
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample(pid, stop.clone());
    let probe_done = Arc::new(AtomicBool::new(false));
    let probe = tokio::spawn(probe_allocate(kubelet.clone(), probe_done.clone()));
    let t = Instant::now();
    let a = tokio::spawn(attack(
        sock.to_path_buf(),
        Instant::now() + PHASE,
        stop.clone(),
    ))
    .await
    .unwrap();
    probe_done.store(true, Ordering::Relaxed);
    let allocate = probe.await.unwrap();
    sampler.done.store(true, Ordering::Relaxed);
    let p = Phase {
        name,
        took: t.elapsed(),
        attack: a,
        max_rss_kib: sampler.max_kib.load(Ordering::Relaxed),
        allocate,
    };
    p.report();
    p
}

async fn continuation_flood(
    sock: std::path::PathBuf,
    until: Instant,
    stop: Arc<AtomicBool>,
) -> Attack {
    let mut start = preface();
    let mut b = request_start();
    // A literal whose value never ends, so that every CONTINUATION adds to the block.
    b.push(0);
    hpack_int(&mut b, 7, 7, 0);
    b.extend_from_slice(b"x-flood");
    hpack_int(&mut b, 1 << 24, 7, 0);
    frame(&mut start, HEADERS, 0, 1, &b);
    // Alternately: CONTINUATION frames of 16 KiB that grow the block, and empty ones that only
    // a count stops.
    let mut growing = Vec::new();
    for _ in 0..4 {
        frame(&mut growing, CONTINUATION, 0, 1, &[b'a'; 16_384]);
    }
    let mut empty = Vec::new();
    for _ in 0..1024 {
        frame(&mut empty, CONTINUATION, 0, 1, &[]);
    }
    let mut a = Attack::default();
    let mut i = 0;
    while Instant::now() < until && !stop.load(Ordering::Relaxed) {
        let more = if i % 2 == 0 { &growing } else { &empty };
        attack_once(&sock, &start, Some(more), until, &stop, &mut a).await;
        i += 1;
    }
    a
}

async fn hpack_amplification(
    sock: std::path::PathBuf,
    until: Instant,
    stop: Arc<AtomicBool>,
) -> Attack {
    // The reported attack: a 266 KB block, 262,144 references (1 GiB decoded); and one that
    // fits the encoded limit: 12,000 references (48 MB decoded).
    let big = block_frames(&amplified_block(262_144));
    let small = block_frames(&amplified_block(12_000));
    let mut a = Attack::default();
    let mut i = 0;
    while Instant::now() < until && !stop.load(Ordering::Relaxed) {
        let req = if i % 2 == 0 { &big } else { &small };
        attack_once(&sock, req, None, until, &stop, &mut a).await;
        i += 1;
    }
    a
}

/// Many small header blocks, each within every limit but decoding to 16 KB (four references
/// to the 4,000-byte entry in 13 bytes), from 4 connections at once.
async fn header_block_burst(
    sock: std::path::PathBuf,
    until: Instant,
    stop: Arc<AtomicBool>,
) -> Attack {
    let mut req = preface();
    let mut b = Vec::new();
    literal(&mut b, 0x40, "x-big", &"a".repeat(4000));
    frame(&mut req, HEADERS, END_HEADERS, 1, &b);
    for i in 1..1000u32 {
        frame(
            &mut req,
            HEADERS,
            END_HEADERS | 0x1,
            1 + 2 * i,
            &[0x80 | 62; 4],
        );
    }
    let req = Arc::new(req);
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (sock, stop, req) = (sock.clone(), stop.clone(), req.clone());
            tokio::spawn(async move {
                let mut a = Attack::default();
                while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                    attack_once(&sock, &req, None, until, &stop, &mut a).await;
                }
                a
            })
        })
        .collect();
    let mut all = Attack::default();
    for w in workers {
        let a = w.await.unwrap();
        all.connections += a.connections;
        all.bytes += a.bytes;
        all.goaways.extend(a.goaways);
        all.first_debug = all.first_debug.or(a.first_debug);
    }
    all
}

#[tokio::test]
async fn attacks_on_one_pool_leave_memory_bounded_and_other_pools_answering() {
    let bed = Bed::ps225();
    let kubelet = Arc::new(TestKubelet::start(&bed.dp_dir()).await);
    let mut plugin = bed.spawn("kubelet");
    let pid = plugin.pid();
    let limited = std::process::Command::new("prlimit")
        .arg(format!("--pid={pid}"))
        .arg(format!("--as={ADDRESS_SPACE_LIMIT}:{ADDRESS_SPACE_LIMIT}"))
        .status()
        .is_ok_and(|s| s.success());
    if !limited {
        eprintln!("NOTE: prlimit unavailable: the daemon runs without an address-space limit");
    }
    for pool in [NETDEV, DPDK] {
        kubelet
            .wait_for_devices(pool, |d| !d.is_empty(), T)
            .await
            .unwrap();
    }
    let sock = bed.dp_dir().join("arm.com_ps225_sriov_netdevice.sock");
    assert!(sock.exists());

    let idle = phase("idle", pid, &kubelet, &sock, |_, until, _| async move {
        tokio::time::sleep_until(until.into()).await;
        Attack::default()
    })
    .await;
    let flood = phase(
        "CONTINUATION flood",
        pid,
        &kubelet,
        &sock,
        continuation_flood,
    )
    .await;
    assert!(plugin.alive(), "the daemon died in the CONTINUATION flood");
    let amp = phase(
        "HPACK amplification",
        pid,
        &kubelet,
        &sock,
        hpack_amplification,
    )
    .await;
    assert!(plugin.alive(), "the daemon died in the HPACK amplification");
    let burst = phase(
        "header-block burst",
        pid,
        &kubelet,
        &sock,
        header_block_burst,
    )
    .await;
    assert!(plugin.alive(), "the daemon died in the header-block burst");
    let hwm = status_kib(pid, "VmHWM:").unwrap();
    eprintln!(
        "daemon VmHWM {hwm} KiB (idle VmRSS max {} KiB)",
        idle.max_rss_kib
    );

    for p in [&flood, &amp, &burst] {
        assert!(
            p.max_rss_kib < RSS_LIMIT_KIB,
            "{}: daemon RSS reached {} KiB",
            p.name,
            p.max_rss_kib
        );
        let worst = p.allocate.iter().max().copied().unwrap_or_default();
        assert!(
            worst < ALLOCATE_BOUND,
            "{}: Allocate on the other pool took {worst:?}",
            p.name
        );
        assert!(
            p.allocate.len() >= 10,
            "{}: {} Allocates",
            p.name,
            p.allocate.len()
        );
        assert!(p.attack.connections >= 2, "{}: {:?}", p.name, p.attack);
    }
    for p in [&flood, &amp] {
        assert_eq!(
            p.attack.goaways.len() as u64,
            p.attack.connections,
            "{}: every attacking connection is closed with a GOAWAY",
            p.name
        );
    }
    assert!(hwm < RSS_LIMIT_KIB, "daemon VmHWM {hwm} KiB");
    assert_eq!(
        flood.attack.goaways[0], COMPRESSION_ERROR,
        "a growing block: over the encoded limit"
    );
    assert_eq!(
        flood.attack.goaways[1], ENHANCE_YOUR_CALM,
        "empty CONTINUATION frames: over the count"
    );
    assert_eq!(
        amp.attack.goaways[0], COMPRESSION_ERROR,
        "266 KB block: over the encoded limit"
    );
    assert_eq!(
        amp.attack.goaways[1], ENHANCE_YOUR_CALM,
        "16 KB block: over the decoded limit"
    );

    // The attacked pool itself still serves the kubelet.
    let r = kubelet.allocate(NETDEV, &["0000:03:10.1"]).await.unwrap();
    assert!(r
        .envs
        .contains_key("PCIDEVICE_ARM_COM_PS225_SRIOV_NETDEVICE"));
}
