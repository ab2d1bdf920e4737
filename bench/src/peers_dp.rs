//! Side by side with upstream sriov-network-device-plugin (section `peers-dp`): both plugins on
//! the same fake node, one after the other, measured at the same test kubelet the same way.
//!
//! Upstream reads `/sys`, `/var/lib/kubelet/device-plugins` and
//! `/var/run/k8s.cni.cncf.io/devinfo` at fixed paths, and asks netlink for every VF's netdev.
//! So the node is a throwaway network namespace holding a veth for every netdev of the tree,
//! and upstream runs in a private mount namespace (`unshare --mount`) where the fake tree is
//! bound over `/sys` and tmpfs hides the machine's `/var/lib` and `/run`; ours gets the same
//! tree through its flags. The machine's own files are never touched.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use sriov_tests::daemon::Plugin;
use sriov_tests::kubelet::TestKubelet;

use crate::dp::{
    allocate_load, resource, split_config, tree_for, wait_all_listed, DpBed, DpProcess,
};
use crate::report::Section;
use crate::stats::{ms, Samples};
use crate::Settings;

const POOLS: u32 = 4;
/// Where tests/node/build.sh (and bench/peers-dp.sh) build the upstream peers.
const UPSTREAM_DEFAULT: &str = "/var/cache/sriov-node/upstream/bin/sriovdp";

/// The upstream binary: `SRIOV_UPSTREAM_DP_BIN`, else the node cache.
fn upstream_bin() -> Result<String> {
    let p = std::env::var("SRIOV_UPSTREAM_DP_BIN").unwrap_or_else(|_| UPSTREAM_DEFAULT.into());
    if !Path::new(&p).is_file() {
        bail!("upstream sriovdp: {p} does not exist (bash bench/peers-dp.sh builds it)");
    }
    Ok(p)
}

/// The fake node: the tree, its netdevs as veths in a network namespace, and the bed dirs.
struct Node {
    bed: DpBed,
    netns: String,
    pfs: u32,
    per_pf: u32,
}

impl Node {
    fn new(vfs: u32) -> Result<Node> {
        let (tree, pfs, per_pf) = tree_for(vfs);
        add_modalias(tree.root())?;
        let bed = DpBed::new(tree, &split_config(pfs, per_pf, POOLS, 0))?;
        fs::create_dir_all(bed.0.tmp.path().join("devinfo"))?;
        let netns = format!("bench-peers-{}", std::process::id());
        run("ip", &["netns", "add", &netns])?;
        let node = Node {
            bed,
            netns,
            pfs,
            per_pf,
        };
        // One veth per netdev of the tree (this kernel may lack the dummy driver).
        let mut batch = String::from("link set lo up\n");
        for p in 0..pfs {
            batch += &format!("link add ens{p}f0 type veth peer name w{p}\n");
            batch += &format!("link set ens{p}f0 up\nlink set w{p} up\n");
            for i in 0..per_pf {
                batch += &format!("link add ens{p}f0v{i} type veth peer name w{p}v{i}\n");
            }
        }
        let mut child = Command::new("ip")
            .args(["-n", &node.netns, "-batch", "-"])
            .stdin(Stdio::piped())
            .spawn()?;
        std::io::Write::write_all(
            child.stdin.as_mut().context("ip -batch stdin")?,
            batch.as_bytes(),
        )?;
        drop(child.stdin.take());
        if !child.wait()?.success() {
            bail!("ip -batch: creating the node's netdevs failed");
        }
        Ok(node)
    }

    fn netns_path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.netns)
    }

    fn ip(&self, args: &[&str]) -> Result<()> {
        let mut a = vec!["-n", self.netns.as_str()];
        a.extend_from_slice(args);
        run("ip", &a)
    }

    fn per_pool(&self) -> usize {
        (self.pfs * self.per_pf / POOLS) as usize
    }

    /// Ours, with the bed's flags, in the node's network namespace.
    fn spawn_ours(&self, bin: &str) -> Result<DpProcess> {
        self.bed.spawn(bin, Some(&self.netns_path()))
    }

    /// Upstream, in a private mount namespace inside the node's network namespace, with the
    /// flags its DaemonSet uses (logs to stderr instead of files).
    fn spawn_upstream(&self, bin: &str) -> Result<DpProcess> {
        let t = self.bed.0.tmp.path();
        let script = r#"set -e
mount --bind "$1" /sys
mount -t tmpfs -o mode=0755 none /var/lib
mkdir -p /var/lib/kubelet/device-plugins
mount --bind "$2" /var/lib/kubelet/device-plugins
mount -t tmpfs -o mode=0755 none /run
mkdir -p /run/k8s.cni.cncf.io/devinfo
mount --bind "$3" /run/k8s.cni.cncf.io/devinfo
exec "$4" -config-file "$5" -resource-prefix intel.com -logtostderr"#;
        let log = t.join("plugin.log");
        let mut cmd = Command::new("unshare");
        cmd.args([
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            script,
            "sh",
        ])
        .arg(self.bed.0.sys.root())
        .arg(self.bed.dp_dir())
        .arg(t.join("devinfo"))
        .arg(bin)
        .arg(self.bed.0.config())
        .env("TMPDIR", t);
        let file = fs::File::create(&log)?;
        let plugin = Plugin::try_spawn(cmd, file, log, Some(&self.netns_path()))?;
        Ok(DpProcess::new(plugin))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = run("ip", &["netns", "del", &self.netns]);
    }
}

fn run(prog: &str, args: &[&str]) -> Result<()> {
    let out = Command::new(prog).args(args).output()?;
    if !out.status.success() {
        bail!(
            "{prog} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The `modalias` file the kernel has for every PCI device, which upstream's PCI discovery (ghw)
/// parses for vendor, device and class; the shared fake tree leaves it out.
fn add_modalias(root: &Path) -> Result<()> {
    let hex = |dir: &Path, f: &str| -> Result<u32> {
        let s = fs::read_to_string(dir.join(f))?;
        Ok(u32::from_str_radix(s.trim().trim_start_matches("0x"), 16)?)
    };
    for e in fs::read_dir(root.join("devices/pci0000:00"))? {
        let dir = e?.path();
        let (v, d, c) = (
            hex(&dir, "vendor")?,
            hex(&dir, "device")?,
            hex(&dir, "class")?,
        );
        let alias = format!(
            "pci:v{v:08X}d{d:08X}sv{v:08X}sd00000000bc{:02X}sc{:02X}i{:02X}\n",
            c >> 16,
            (c >> 8) & 0xff,
            c & 0xff
        );
        fs::write(dir.join("modalias"), alias)?;
    }
    Ok(())
}

/// User + system CPU time of `pid`.
fn cpu_time(pid: u32) -> Result<Duration> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = &s[s.rfind(')').context("/proc/pid/stat")? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>()? + f[12].parse::<u64>()?;
    Ok(Duration::from_millis(ticks * 10))
}

/// `VmHWM` (peak RSS) of `pid` in KiB.
fn peak_rss_kib(pid: u32) -> Result<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status"))?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| anyhow!("no VmHWM for pid {pid}"))
}

/// One plugin's figures. Reactions are `None` when not seen within the timeout.
#[derive(Default)]
struct Figures {
    start: Samples,
    idle_rss: u64,
    alloc: Samples,
    alloc_wall: Duration,
    load_cpu: Duration,
    load_rss: u64,
    peak_rss: u64,
    rereg: Samples,
    rereg_missed: u32,
    unhealthy: Option<Duration>,
    config: Option<Duration>,
}

#[derive(Clone, Copy, PartialEq)]
enum Which {
    Ours,
    Upstream,
}

async fn measure(s: &Settings, node: &Node, which: Which, bin: &str) -> Result<Figures> {
    let mut f = Figures::default();
    let spawn = || match which {
        Which::Ours => node.spawn_ours(bin),
        Which::Upstream => node.spawn_upstream(bin),
    };
    node.bed
        .write_config(&split_config(node.pfs, node.per_pf, POOLS, 0))?;
    let per_pool = node.per_pool();
    let mut last = None;
    for _ in 0..s.dp_starts {
        // The previous run's plugin and kubelet go first.
        drop(last.take());
        let _ = fs::remove_dir_all(node.bed.dp_dir());
        fs::create_dir_all(node.bed.dp_dir())?;
        let k = TestKubelet::start(&node.bed.dp_dir()).await;
        let mut p = spawn()?;
        let at = wait_all_listed(&k, POOLS, per_pool, s.timeout)
            .await
            .map_err(|e| e.context(p.log_tail()))?;
        f.start.push(at.duration_since(p.started()));
        p.check_alive()?;
        last = Some((k, p));
    }
    let (k, mut p) = last.context("no start")?;
    tokio::time::sleep(s.settle).await;
    f.idle_rss = p.rss_kib()?;

    let cpu0 = cpu_time(p.pid())?;
    let k = Arc::new(k);
    let (lat, wall) = allocate_load(&k, POOLS, per_pool, s.alloc_callers, s.alloc_calls)
        .await
        .map_err(|e| e.context(p.log_tail()))?;
    f.load_cpu = cpu_time(p.pid())?.saturating_sub(cpu0);
    f.alloc = lat;
    f.alloc_wall = wall;
    f.load_rss = p.rss_kib()?;
    f.peak_rss = peak_rss_kib(p.pid())?;
    p.check_alive()?;
    let mut k = Arc::into_inner(k).context("kubelet still shared")?;

    // Kubelet restarts: every pool registers again.
    for r in 0..s.restarts {
        k.restart().await;
        let t0 = k.started_at;
        let want = r as usize + 2;
        let got = k
            .wait_for("re-registration of every pool", s.timeout, |k| {
                let regs = k.registrations();
                let mut last: Option<Instant> = None;
                for q in 0..POOLS {
                    let at = regs
                        .iter()
                        .filter(|x| x.request.resource_name == resource(q))
                        .nth(want - 1)?
                        .at;
                    last = Some(last.map_or(at, |l| l.max(at)));
                }
                last
            })
            .await;
        match got {
            Ok(at) => f.rereg.push(at.saturating_duration_since(t0)),
            Err(_) => f.rereg_missed += 1,
        }
        wait_all_listed(&k, POOLS, per_pool, s.timeout)
            .await
            .map_err(|e| e.context(p.log_tail()))?;
    }

    // PF 0 set down: its VFs in pool 0 (a quarter of the pool) turn Unhealthy.
    let per_pf_in_pool = (node.per_pf / POOLS) as usize;
    let t0 = Instant::now();
    node.ip(&["link", "set", "ens0f0", "down"])?;
    let seen = k
        .wait_for_devices(
            &resource(0),
            |d| {
                d.iter()
                    .filter(|x| x.health == kubelet_proto::UNHEALTHY)
                    .count()
                    == per_pf_in_pool
            },
            s.timeout_react,
        )
        .await;
    f.unhealthy = seen.ok().map(|_| t0.elapsed());
    node.ip(&["link", "set", "ens0f0", "up"])?;
    if f.unhealthy.is_some() {
        k.wait_for_devices(
            &resource(0),
            |d| d.iter().all(|x| x.health == kubelet_proto::HEALTHY),
            s.timeout,
        )
        .await
        .map_err(|e| anyhow!("PF 0 came back up but its VFs stayed Unhealthy: {e}"))?;
    }

    // Config change: one more pool, written the way a ConfigMap update lands.
    let mut cfg = split_config(node.pfs, node.per_pf, POOLS, 0);
    added_pool(&mut cfg);
    let t0 = Instant::now();
    node.bed.write_config(&cfg)?;
    f.config = k
        .wait_for_registration(&format!("{}/added", crate::dp::PREFIX), 1, s.timeout_react)
        .await
        .ok()
        .map(|_| t0.elapsed());
    p.check_alive()?;
    Ok(f)
}

fn added_pool(cfg: &mut Value) {
    if let Some(list) = cfg["resourceList"].as_array_mut() {
        list.push(
            json!({"resourceName": "added", "resourcePrefix": crate::dp::PREFIX,
            "selectors": {"drivers": ["iavf"], "pfNames": ["ens0f0"]}}),
        );
    }
}

fn ratio(ours: f64, up: f64) -> String {
    if up > 0.0 && ours > 0.0 {
        let r = ours / up;
        if r < 0.1 {
            format!("{r:.4}")
        } else {
            format!("{r:.2}")
        }
    } else {
        "-".into()
    }
}

fn ms_f(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn reaction(d: Option<Duration>, s: &Settings) -> String {
    d.map_or_else(
        || format!("not seen in {} s", s.timeout_react.as_secs()),
        |d| format!("{} ms", ms(d)),
    )
}

/// Section `peers-dp`.
pub async fn side_by_side(s: &Settings) -> Result<Section> {
    let vfs: u32 = match std::env::var("BENCH_PEERS_VFS") {
        Ok(v) => v
            .trim()
            .parse()
            .with_context(|| format!("BENCH_PEERS_VFS={v:?}"))?,
        Err(_) => 1024,
    };
    let up_bin = upstream_bin()?;
    let uptime = Command::new("uptime")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let node = Node::new(vfs)?;
    let ours = measure(s, &node, Which::Ours, &s.dp_bin)
        .await
        .context("ours")?;
    let up = measure(s, &node, Which::Upstream, &up_bin)
        .await
        .context("upstream sriovdp")?;
    // What must hold for ours, whatever upstream does.
    if ours.rereg.len() != s.restarts as usize {
        bail!(
            "ours: {} of {} kubelet restarts without re-registration",
            ours.rereg_missed,
            s.restarts
        );
    }
    if ours.unhealthy.is_none() {
        bail!("ours: PF 0 down, its VFs never reported Unhealthy");
    }
    if ours.config.is_none() {
        bail!("ours: the added pool never registered after the config change");
    }
    let mut sec = Section::new(
        "Side by side with upstream: device plugin",
        &format!(
            "Both plugins on one fake node: {vfs} VFs (`iavf`, 256 per PF), {POOLS} pools by VF index \
             range (`pfNames` `ens0f0#0-63`, ...), every netdev a veth in a throwaway network \
             namespace; upstream sriov-network-device-plugin v3.11.0 (`sriovdp`, built by \
             ../shared/upstream/build.sh) in a private mount namespace with the tree over /sys. One \
             plugin at a time, each measured at the test kubelet the same way: start = spawn to the \
             last pool's first complete ListAndWatch (median of {}); RSS {} ms later; Allocate: {} \
             callers x {} calls, one device each; CPU = user+system time during that load; {} kubelet \
             restarts; PF `ens0f0` set down; a 5th pool added to the config file.",
            s.dp_starts,
            s.settle.as_millis(),
            s.alloc_callers,
            s.alloc_calls,
            s.restarts
        ),
        &["", "ours", "upstream", "ours / upstream"],
    );
    let rate = |f: &Figures| f.alloc.len() as f64 / f.alloc_wall.as_secs_f64().max(1e-9);
    let row = |sec: &mut Section, what: &str, o: String, u: String, r: String| {
        sec.row(vec![what.into(), o, u, r]);
    };
    row(
        &mut sec,
        "start -> every pool listed (ms)",
        ms(ours.start.median()),
        ms(up.start.median()),
        ratio(ms_f(ours.start.median()), ms_f(up.start.median())),
    );
    row(
        &mut sec,
        "idle RSS (KiB)",
        ours.idle_rss.to_string(),
        up.idle_rss.to_string(),
        ratio(ours.idle_rss as f64, up.idle_rss as f64),
    );
    row(
        &mut sec,
        "Allocate p50 (ms)",
        ms(ours.alloc.median()),
        ms(up.alloc.median()),
        ratio(ms_f(ours.alloc.median()), ms_f(up.alloc.median())),
    );
    row(
        &mut sec,
        "Allocate p99 (ms)",
        ms(ours.alloc.pct(99.0)),
        ms(up.alloc.pct(99.0)),
        ratio(ms_f(ours.alloc.pct(99.0)), ms_f(up.alloc.pct(99.0))),
    );
    row(
        &mut sec,
        "Allocate calls/s",
        format!("{:.0}", rate(&ours)),
        format!("{:.0}", rate(&up)),
        ratio(rate(&ours), rate(&up)),
    );
    row(
        &mut sec,
        "CPU during the load (ms)",
        ms(ours.load_cpu),
        ms(up.load_cpu),
        ratio(ms_f(ours.load_cpu), ms_f(up.load_cpu)),
    );
    row(
        &mut sec,
        "RSS after the load (KiB)",
        ours.load_rss.to_string(),
        up.load_rss.to_string(),
        ratio(ours.load_rss as f64, up.load_rss as f64),
    );
    row(
        &mut sec,
        "peak RSS, VmHWM (KiB)",
        ours.peak_rss.to_string(),
        up.peak_rss.to_string(),
        ratio(ours.peak_rss as f64, up.peak_rss as f64),
    );
    let rereg = |f: &Figures| {
        if f.rereg.is_empty() {
            "not seen".to_string()
        } else {
            format!(
                "{} / {} ms{}",
                ms(f.rereg.median()),
                ms(f.rereg.max()),
                if f.rereg_missed > 0 {
                    format!(" ({} missed)", f.rereg_missed)
                } else {
                    String::new()
                }
            )
        }
    };
    row(
        &mut sec,
        "kubelet restart -> every pool re-registered (p50 / max)",
        rereg(&ours),
        rereg(&up),
        ratio(ms_f(ours.rereg.median()), ms_f(up.rereg.median())),
    );
    let r = |a: Option<Duration>, b: Option<Duration>| match (a, b) {
        (Some(a), Some(b)) => ratio(ms_f(a), ms_f(b)),
        _ => "-".into(),
    };
    row(
        &mut sec,
        "PF admin down -> its VFs Unhealthy",
        reaction(ours.unhealthy, s),
        reaction(up.unhealthy, s),
        r(ours.unhealthy, up.unhealthy),
    );
    row(
        &mut sec,
        "config change -> new pool registered",
        reaction(ours.config, s),
        reaction(up.config, s),
        r(ours.config, up.config),
    );
    sec.note(format!("`uptime` when the run started: `{uptime}`"));
    for (what, b) in [("ours", &s.dp_bin), ("upstream", &up_bin)] {
        let size = fs::metadata(b).map(|m| m.len() / 1024).unwrap_or(0);
        sec.note(format!(
            "{what}: `{}`, {size} KiB on disk",
            crate::relative(b)
        ));
    }
    Ok(sec)
}

/// Markers of the generated part of the device-plugin section in docs/peers.md.
pub const BEGIN: &str = "<!-- generated by bench/peers-dp.sh: rewritten up to the end marker -->";
pub const END: &str = "<!-- end of bench/peers-dp.sh results -->";

/// Write the section into `path` between [`BEGIN`] and [`END`] (appended with its heading when
/// the markers are missing), keeping the hand-written analysis around it.
pub fn write_report(path: &Path, machine: &crate::report::Machine, sec: &Section) -> Result<()> {
    let generated = format!(
        "{BEGIN}\n\n{}Machine: {} cores, {}, kernel {}; run {} at commit `{}`. Reproduce: \
         `bash bench/peers-dp.sh` (as root).\n\n{END}",
        sec.markdown(),
        machine.cores,
        machine.cpu,
        machine.kernel,
        machine.date,
        machine.commit,
    );
    let old = fs::read_to_string(path).unwrap_or_default();
    let new = match (old.find(BEGIN), old.find(END)) {
        (Some(b), Some(e)) if e > b => {
            format!("{}{}{}", &old[..b], generated, &old[e + END.len()..])
        }
        _ => format!("{}\n\n{generated}\n", old.trim_end()),
    };
    fs::write(path, new)?;
    Ok(())
}
