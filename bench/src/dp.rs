//! Device-plugin benchmarks: start-up to the first complete ListAndWatch on every pool, idle
//! memory, and Allocate latency under concurrent callers, on fake trees of growing size.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use serde_json::{json, Value};
use sriov_tests::daemon::{Bed, Plugin};
use sriov_tests::fakesys::{fast_tmp, scale_tree, FakeSysfs};
use sriov_tests::kubelet::TestKubelet;

use crate::report::Section;
use crate::stats::{ms, us, Samples};
use crate::Settings;

pub const PREFIX: &str = "example.com";

/// A fake node for the daemon (the shared harness of `sriov_tests::daemon`), on tmpfs like
/// /var/run, with the daemon logging at info as in production.
pub struct DpBed(pub Bed);

impl DpBed {
    pub fn new(sys: FakeSysfs, config: &Value) -> Result<DpBed> {
        let tmp = tempfile::Builder::new()
            .prefix("dpbench")
            .tempdir_in(fast_tmp())?;
        Ok(DpBed(Bed::in_dir(sys, tmp, config).with_log_filter("info")))
    }

    pub fn dp_dir(&self) -> PathBuf {
        self.0.dp_dir()
    }

    /// Replace the config the way a ConfigMap update does: write aside, rename into place.
    pub fn write_config(&self, v: &Value) -> Result<()> {
        Ok(self.0.replace_config(v)?)
    }

    /// Start the daemon `bin` (`netns`: inside that network namespace) in kubelet registration
    /// mode. Logs go to `plugin.log`.
    pub fn spawn(&self, bin: &str, netns: Option<&Path>) -> Result<DpProcess> {
        let cmd = self.0.command(Path::new(bin), "kubelet");
        let plugin = self
            .0
            .try_start(cmd, netns)
            .with_context(|| format!("starting {bin}"))?;
        Ok(DpProcess(plugin))
    }
}

/// A running daemon, killed on drop.
pub struct DpProcess(Plugin);

impl DpProcess {
    /// When the process was spawned.
    pub fn started(&self) -> Instant {
        self.0.started
    }

    /// A daemon started some other way.
    pub fn new(plugin: Plugin) -> DpProcess {
        DpProcess(plugin)
    }

    pub fn pid(&self) -> u32 {
        self.0.pid().unsigned_abs()
    }

    /// VmRSS in KiB.
    pub fn rss_kib(&self) -> Result<u64> {
        Ok(self.0.try_rss_kib()?)
    }

    pub fn log_tail(&self) -> String {
        self.0.log_tail(20)
    }

    /// Fail with the log when the process has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(st) = self.0.exited() {
            return Err(anyhow!("device plugin exited ({st}):\n{}", self.log_tail()));
        }
        Ok(())
    }
}

/// The tree for `n` VFs: 256 VFs per PF (fewer when `n` < 256), `n / 256` PFs.
pub fn tree_for(n: u32) -> (FakeSysfs, u32, u32) {
    let per_pf = n.min(256);
    let pfs = n.div_ceil(per_pf);
    (scale_tree(pfs, per_pf), pfs, per_pf)
}

/// `pools` pools splitting every PF's VFs by index range (`ens0f0#0-63`, ...), so the pool count
/// stays the same at every size. The first `pools - skip_last` are configured.
pub fn split_config(pfs: u32, per_pf: u32, pools: u32, skip_last: u32) -> Value {
    let width = per_pf / pools;
    let list: Vec<Value> = (0..pools - skip_last)
        .map(|q| {
            let names: Vec<String> = (0..pfs)
                .map(|p| format!("ens{p}f0#{}-{}", q * width, (q + 1) * width - 1))
                .collect();
            json!({"resourceName": format!("pool{q}"), "resourcePrefix": PREFIX,
                   "selectors": {"drivers": ["iavf"], "pfNames": names}})
        })
        .collect();
    json!({ "resourceList": list })
}

pub fn resource(q: u32) -> String {
    format!("{PREFIX}/pool{q}")
}

/// Wait until every pool has delivered a complete first list; returns the latest first-list
/// instant.
pub async fn wait_all_listed(
    k: &TestKubelet,
    pools: u32,
    per_pool: usize,
    timeout: Duration,
) -> Result<Instant> {
    k.wait_for("first complete ListAndWatch on every pool", timeout, |k| {
        let mut last: Option<Instant> = None;
        for q in 0..pools {
            let r = k.resource(&resource(q))?;
            if r.devices.as_ref()?.len() != per_pool {
                return None;
            }
            let at = r.first_list_at?;
            last = Some(last.map_or(at, |l| l.max(at)));
        }
        last
    })
    .await
    .map_err(|e| anyhow!(e))
}

/// Section 2.
pub async fn scale(s: &Settings) -> Result<Section> {
    const POOLS: u32 = 4;
    let callers = s.alloc_callers;
    let mut sec = Section::new(
        "Device plugin scale",
        &format!(
            "Fake trees with 256 VFs per PF (the 64-VF tree: one PF with 64), split into {POOLS} pools by VF \
             index range on every PF. \"start\" is process spawn to the last of the {POOLS} pools' first \
             complete ListAndWatch at the test kubelet (real gRPC over unix sockets; median of {} starts). \
             RSS is VmRSS {} ms after that. Allocate: {callers} concurrent callers, {} calls each, one device \
             per call, spread over the pools, on the kubelet's connections; latency is per call at the caller.",
            s.dp_starts,
            s.settle.as_millis(),
            s.alloc_calls
        ),
        &[
            "VFs",
            "PFs",
            "tree build ms",
            "start ms",
            "start us/VF",
            "idle RSS KiB",
            "RSS KiB/VF vs smallest",
            "Allocate p50 ms",
            "p99 ms",
            "calls/s",
        ],
    );
    let mut first_rss: Option<(u32, u64)> = None;
    for &n in &s.dp_sizes {
        let t = Instant::now();
        let (tree, pfs, per_pf) = tree_for(n);
        let tree_ms = t.elapsed();
        let bed = DpBed::new(tree, &split_config(pfs, per_pf, POOLS, 0))?;
        let per_pool = (n / POOLS) as usize;
        let mut starts = Samples::new();
        let mut rss = 0;
        let mut alloc = Samples::new();
        let mut alloc_wall = Duration::ZERO;
        for i in 0..s.dp_starts {
            let _ = fs::remove_dir_all(bed.dp_dir());
            let kubelet = TestKubelet::start(&bed.dp_dir()).await;
            let mut plugin = bed.spawn(&s.dp_bin, None)?;
            let last = wait_all_listed(&kubelet, POOLS, per_pool, s.timeout)
                .await
                .map_err(|e| e.context(plugin.log_tail()))?;
            starts.push(last.duration_since(plugin.started()));
            plugin.check_alive()?;
            if i + 1 == s.dp_starts {
                tokio::time::sleep(s.settle).await;
                rss = plugin.rss_kib()?;
                let kubelet = Arc::new(kubelet);
                let (lat, wall) = allocate_load(&kubelet, POOLS, per_pool, callers, s.alloc_calls)
                    .await
                    .context("allocate")?;
                alloc = lat;
                alloc_wall = wall;
                plugin.check_alive()?;
            }
        }
        let per_vf = if let Some((n0, r0)) = first_rss {
            if n > n0 {
                format!("{:.2}", (rss as f64 - r0 as f64) / f64::from(n - n0))
            } else {
                "-".into()
            }
        } else {
            first_rss = Some((n, rss));
            "-".into()
        };
        let rate = if alloc.is_empty() || alloc_wall.is_zero() {
            "-".into()
        } else {
            format!("{:.0}", alloc.len() as f64 / alloc_wall.as_secs_f64())
        };
        sec.row(vec![
            n.to_string(),
            pfs.to_string(),
            ms(tree_ms),
            ms(starts.median()),
            us(starts.median() / n),
            rss.to_string(),
            per_vf,
            ms(alloc.median()),
            ms(alloc.pct(99.0)),
            rate,
        ]);
    }
    sec.note(
        "Reference: upstream sriov-network-device-plugin is measured side by side with this plugin \
         by `bench/peers-dp.sh` (docs/peers.md).",
    );
    sec.note(
        "Allocate writes the NPWG device-info file for the device (on tmpfs here, as /var/run is on a \
         node), so its latency includes one file create+write+rename.",
    );
    Ok(sec)
}

/// `callers` tasks each making `calls` Allocate calls; returns per-call latencies and wall time.
pub async fn allocate_load(
    k: &Arc<TestKubelet>,
    pools: u32,
    per_pool: usize,
    callers: u32,
    calls: u32,
) -> Result<(Samples, Duration)> {
    // Device IDs of every pool, as the kubelet knows them.
    let mut ids: Vec<Vec<String>> = Vec::new();
    for q in 0..pools {
        let devs = k
            .resource(&resource(q))
            .and_then(|r| r.devices)
            .ok_or_else(|| anyhow!("no devices for {}", resource(q)))?;
        ids.push(devs.into_iter().map(|d| d.id).collect());
    }
    let barrier = Arc::new(tokio::sync::Barrier::new(callers as usize));
    let mut set = tokio::task::JoinSet::new();
    let t = Instant::now();
    for c in 0..callers {
        let q = c % pools;
        let res = resource(q);
        let id = ids[q as usize][(c / pools) as usize % per_pool].clone();
        let (k, barrier) = (k.clone(), barrier.clone());
        set.spawn(async move {
            barrier.wait().await;
            let mut lat = Vec::new();
            for _ in 0..calls {
                let t = Instant::now();
                k.allocate(&res, &[id.as_str()])
                    .await
                    .map_err(|e| anyhow!("allocate {id} in {res}: {e}"))?;
                lat.push(t.elapsed());
            }
            Ok::<_, anyhow::Error>(lat)
        });
    }
    let mut all = Samples::new();
    while let Some(r) = set.join_next().await {
        for d in r?? {
            all.push(d);
        }
    }
    Ok((all, t.elapsed()))
}
