//! Benchmark driver: runs the sections named in `BENCH_SECTIONS` (default all) against the
//! binaries in `SRIOV_CNI_BIN` / `SRIOV_DP_BIN` (default: next to this executable), prints a table
//! per section and writes the markdown report (`--out FILE`; `docs/benchmarks.md` unless
//! `--quick`). Needs root for everything that uses network namespaces.
//!
//! Iteration counts come from the environment, so CI can run a smoke version (`--quick` picks
//! small defaults): `BENCH_CNI_ITERS`, `BENCH_CONC_VFS`, `BENCH_CONC_ROUNDS`, `BENCH_DP_SIZES`
//! (comma-separated VF counts), `BENCH_DP_STARTS`, `BENCH_ALLOC_CALLERS`, `BENCH_ALLOC_CALLS`,
//! `BENCH_RESTARTS`, `BENCH_REACT_TIMEOUT_S`.

mod behaviour;
mod cni;
mod dp;
mod peers_cni;
mod peers_dp;
mod react;
mod report;
mod stats;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// What to run and how much.
#[derive(Debug, Clone)]
pub struct Settings {
    pub quick: bool,
    pub cni_bin: String,
    pub dp_bin: String,
    pub cni_iters: u32,
    pub conc_vfs: u32,
    pub conc_rounds: u32,
    pub dp_sizes: Vec<u32>,
    pub dp_starts: u32,
    pub alloc_callers: u32,
    pub alloc_calls: u32,
    pub restarts: u32,
    /// How long to wait for things that must happen (start-up, re-listing).
    pub timeout: Duration,
    /// How long to wait for a reaction before calling it "not seen".
    pub timeout_react: Duration,
    pub settle: Duration,
    pub sections: Vec<String>,
}

fn env_u32(name: &str, default: u32) -> Result<u32> {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .with_context(|| format!("{name}={v:?}: not a number")),
        Err(_) => Ok(default),
    }
}

/// The number of CPUs this process may run on.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl Settings {
    fn from_env(quick: bool) -> Result<Settings> {
        let exe_dir = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(PathBuf::from))
            .unwrap_or_default();
        let bin = |var: &str, name: &str| {
            std::env::var(var).unwrap_or_else(|_| exe_dir.join(name).display().to_string())
        };
        let q = |quick_v: u32, full_v: u32| if quick { quick_v } else { full_v };
        let sizes = std::env::var("BENCH_DP_SIZES")
            .unwrap_or_else(|_| if quick { "64" } else { "64,256,1024,4096" }.into());
        let dp_sizes = sizes
            .split(',')
            .map(|s| {
                let n: u32 = s
                    .trim()
                    .parse()
                    .with_context(|| format!("BENCH_DP_SIZES: {s:?}"))?;
                if n < 4
                    || (n > 256 && !n.is_multiple_of(256))
                    || (n <= 256 && !n.is_multiple_of(4))
                {
                    bail!("BENCH_DP_SIZES: {n}: use a multiple of 4 up to 256, or of 256 above");
                }
                Ok(n)
            })
            .collect::<Result<Vec<_>>>()?;
        let sections = std::env::var("BENCH_SECTIONS")
            .unwrap_or_else(|_| "cni,dp,react,conc".into())
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        Ok(Settings {
            quick,
            cni_bin: bin("SRIOV_CNI_BIN", "sriov"),
            dp_bin: bin("SRIOV_DP_BIN", "sriov-device-plugin"),
            cni_iters: env_u32("BENCH_CNI_ITERS", q(3, 30))?.max(1),
            conc_vfs: env_u32("BENCH_CONC_VFS", 16)?.clamp(1, 64),
            conc_rounds: env_u32("BENCH_CONC_ROUNDS", q(1, 5))?.max(1),
            dp_sizes,
            dp_starts: env_u32("BENCH_DP_STARTS", q(1, 3))?.max(1),
            alloc_callers: env_u32("BENCH_ALLOC_CALLERS", 32)?.max(1),
            alloc_calls: env_u32("BENCH_ALLOC_CALLS", q(2, 100))?.max(1),
            restarts: env_u32("BENCH_RESTARTS", q(2, 10))?.max(1),
            timeout: Duration::from_secs(60),
            timeout_react: Duration::from_secs(u64::from(env_u32(
                "BENCH_REACT_TIMEOUT_S",
                q(3, 12),
            )?)),
            settle: Duration::from_millis(if quick { 200 } else { 1000 }),
            sections,
        })
    }
}

/// `path` relative to the current directory when it lies under it (the report names
/// `target/release/...`, not one checkout's absolute path).
fn relative(path: &str) -> String {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| {
            std::path::Path::new(path)
                .strip_prefix(cwd)
                .ok()
                .map(|p| p.display().to_string())
        })
        .unwrap_or_else(|| path.to_string())
}

fn main() -> Result<()> {
    let mut quick = false;
    let mut out: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--out" => out = Some(args.next().context("--out needs a file")?.into()),
            "-h" | "--help" => {
                println!("usage: sriov-bench [--quick] [--out FILE]   (see bench/run.sh)");
                return Ok(());
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    let s = Settings::from_env(quick)?;
    for (what, b) in [("SRIOV_CNI_BIN", &s.cni_bin), ("SRIOV_DP_BIN", &s.dp_bin)] {
        if !std::path::Path::new(b).is_file() {
            bail!("{what}: {b} does not exist (cargo build --release, or set {what})");
        }
    }
    // The peers sections write docs/peers.md themselves.
    let ours_only = s
        .sections
        .iter()
        .any(|x| !x.starts_with("peers") && x != "behaviour");
    let out = out.or_else(|| (!quick && ours_only).then(|| PathBuf::from("docs/benchmarks.md")));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let machine = report::Machine::probe();
    println!(
        "sriov-bench: {} cores, {}, kernel {}, {}, load average {}",
        machine.cores, machine.cpu, machine.kernel, machine.date, machine.load
    );
    let mut sections = Vec::new();
    for name in s.sections.clone() {
        let sec = match name.as_str() {
            "cni" => cni::add_del(&s)?,
            "dp" => rt.block_on(dp::scale(&s))?,
            "react" => rt.block_on(react::reactions(&s))?,
            "conc" => cni::concurrency(&s)?,
            "peers-cni" => {
                let mut secs = peers_cni::timing(&s)?;
                let last = secs.pop().context("no section")?;
                for sec in secs {
                    print!("{}", sec.text());
                    sections.push(sec);
                }
                last
            }
            "behaviour" => behaviour::table(&s)?,
            "peers-dp" => rt.block_on(peers_dp::side_by_side(&s))?,
            other => bail!(
                "BENCH_SECTIONS: unknown section {other:?} \
                 (cni, dp, react, conc, peers-cni, behaviour, peers-dp)"
            ),
        };
        print!("{}", sec.text());
        if name == "peers-dp" && !quick {
            let path = std::path::Path::new("docs/peers.md");
            peers_dp::write_report(path, &machine, &sec)?;
            println!("\nreport written to {}", path.display());
        }
        sections.push(sec);
    }
    if let Some(path) = out {
        let peers = s
            .sections
            .iter()
            .any(|n| n == "peers-cni" || n == "behaviour");
        let command = match (peers, quick) {
            (true, true) => "bench/peers.sh --quick",
            (true, false) => "bench/peers.sh",
            (false, true) => "bench/run.sh --quick",
            (false, false) => "bench/run.sh",
        };
        let mut binaries = vec![
            (
                "CNI (SRIOV_CNI_BIN)".to_string(),
                format!("`{}`", relative(&s.cni_bin)),
            ),
            (
                "device plugin (SRIOV_DP_BIN)".to_string(),
                format!("`{}`", relative(&s.dp_bin)),
            ),
            (
                "reference".to_string(),
                format!(
                    "`{}` (Debian containernetworking-plugins)",
                    cni::host_device().display()
                ),
            ),
        ];
        if peers {
            binaries.extend(peers_cni::binaries());
        }
        let md = report::markdown(&machine, command, &binaries, &sections);
        report::write_into(&path, &md).with_context(|| format!("writing {}", path.display()))?;
        println!("\nreport written to {}", path.display());
    }
    Ok(())
}
