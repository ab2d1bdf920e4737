//! Side by side with upstream sriov-cni: our `sriov`, upstream's Go `sriov` (v2.10.0, patched for
//! the veth bed: see bench/peers/) and Debian's `host-device`, each spawned the same way inside
//! a private mount namespace whose `/sys` is the bed's fake tree and whose `/var/lib` is a
//! private tmpfs (upstream reads both at hard-coded paths). The machine's `/sys` and `/var/lib`
//! are never touched: the namespace is a slave of the host's (pod netns mounts made later still
//! show up in it), and nothing mounted in it propagates back.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sched::CloneFlags;
use nix::sys::resource::{getrusage, Usage, UsageWho};
use nix::sys::time::TimeVal;
use serde_json::{json, Value};
use sriov_tests::netbed::{Att, Bed, CNI_PATH};

use crate::report::Section;
use crate::stats::{ms, Samples};
use crate::Settings;

/// A mount namespace with the fake sysfs over `/sys` and a private tmpfs over `/var/lib`
/// (with `/var/lib/cni/sriov` bound to `state`), held open by a process that lives as long as
/// the Stage (or this process).
pub struct Stage {
    holder: Child,
    _lifeline: std::process::ChildStdin,
    ns: File,
    /// Upstream's `/var/lib/cni/sriov`, seen from the host.
    _state: tempfile::TempDir,
}

impl Stage {
    pub fn new(sys: &Path) -> Result<Stage> {
        let state = tempfile::Builder::new().prefix("upstate").tempdir()?;
        let script =
            "set -e; mount --bind \"$1\" /sys; mount -t tmpfs -o mode=0755 peers /var/lib; \
                      mkdir -p /var/lib/cni/sriov; mount --bind \"$2\" /var/lib/cni/sriov; \
                      echo ready; read -r _ || true";
        let mut holder = Command::new("unshare")
            .args([
                "--mount",
                "--propagation",
                "slave",
                "sh",
                "-c",
                script,
                "sh",
            ])
            .arg(sys)
            .arg(state.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("unshare (util-linux)")?;
        // The holder waits on this pipe: if we die without dropping the Stage (a panic with
        // panic=abort), the pipe closes and the holder exits with us.
        let lifeline = holder.stdin.take().context("holder stdin")?;
        let mut line = String::new();
        let out = holder.stdout.take().context("holder stdout")?;
        BufReader::new(out).read_line(&mut line)?;
        if line.trim() != "ready" {
            let _ = holder.kill();
            let _ = holder.wait();
            bail!("could not set up the private mount namespace for upstream (unshare, mount)");
        }
        let ns = File::open(format!("/proc/{}/ns/mnt", holder.id()))?;
        Ok(Stage {
            holder,
            _lifeline: lifeline,
            ns,
            _state: state,
        })
    }
}

impl Stage {
    /// The namespace's root as seen from the host.
    pub fn root(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root", self.holder.id()))
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// Which plugin a column is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Ours,
    Upstream,
    HostDevice,
}

/// One plugin binary and how it is run.
pub struct Peer {
    pub label: String,
    pub kind: Kind,
    pub bin: PathBuf,
}

impl Peer {
    /// The netconf this plugin needs for VF `pci` / netdev `netdev`.
    pub fn conf(&self, pci: &str, netdev: &str, extra: &Value) -> Value {
        let mut c = match self.kind {
            Kind::HostDevice => {
                json!({"cniVersion": "1.0.0", "name": "peers", "type": "host-device", "device": netdev})
            }
            _ => json!({"cniVersion": "1.0.0", "name": "peers", "type": "sriov", "deviceID": pci}),
        };
        if let (Some(c), Some(e)) = (c.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                c.insert(k.clone(), v.clone());
            }
        }
        c
    }
}

/// One plugin run: its outcome, wall time (spawn to reaped) and own CPU time (user + system of
/// the child, the growth of RUSAGE_CHILDREN across its wait; includes any process it waited for, such as an IPAM plugin).
#[derive(Debug)]
pub struct Ran {
    pub ok: bool,
    pub killed: bool,
    pub stdout: String,
    pub stderr: String,
    pub json: Value,
    pub wall: Duration,
    pub cpu: Duration,
}

impl Ran {
    pub fn code(&self) -> Option<u64> {
        self.json.get("code").and_then(Value::as_u64)
    }
    /// `ok`, or `error <code>: <msg>` shortened for a table cell.
    pub fn summary(&self) -> String {
        if self.killed {
            return "killed".into();
        }
        if self.ok {
            return "ok".into();
        }
        let msg = self
            .json
            .get("msg")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| self.stderr.lines().last().unwrap_or("").to_string());
        let mut m: String = msg.chars().take(100).collect();
        if msg.chars().count() > 100 {
            m.push('…');
        }
        format!(
            "error {}: {}",
            self.code().map_or("?".into(), |c| c.to_string()),
            m.replace('|', "/")
        )
    }
}

fn tv(t: TimeVal) -> Duration {
    Duration::from_secs(t.tv_sec().max(0) as u64) + Duration::from_micros(t.tv_usec().max(0) as u64)
}

fn cpu(u: &Usage) -> Duration {
    tv(u.user_time()) + tv(u.system_time())
}

/// Make the child enter the mount namespace `ns_fd` between fork and exec.
#[allow(unsafe_code)]
fn enter_in_child(c: &mut Command, ns_fd: RawFd) {
    // SAFETY: the closure only calls setns(2), which is async-signal-safe and allocates
    // nothing; `ns_fd` stays open (the Stage owns it) until the child has exec'd.
    unsafe {
        c.pre_exec(move || {
            let fd = BorrowedFd::borrow_raw(ns_fd);
            nix::sched::setns(fd, CloneFlags::CLONE_NEWNS).map_err(std::io::Error::from)
        });
    }
}

/// Run `peer` for `cmd` in the bed's host netns and the stage's mount namespace.
/// `wrap` runs the plugin under another program (e.g. strace), whose own cost is then counted.
pub fn exec(
    bed: &Bed,
    stage: &Stage,
    peer: &Peer,
    cmd: &str,
    conf: &[u8],
    att: &Att,
    wrap: &[&str],
) -> Result<Ran> {
    let mut c = if wrap.is_empty() {
        Command::new(&peer.bin)
    } else {
        let mut c = Command::new(wrap[0]);
        c.args(&wrap[1..]).arg(&peer.bin);
        c
    };
    c.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CNI_COMMAND", cmd)
        .env("CNI_CONTAINERID", att.container_id)
        .env(
            "CNI_NETNS",
            att.netns
                .map(|p| p.as_os_str().to_owned())
                .unwrap_or_default(),
        )
        .env("CNI_IFNAME", att.ifname)
        .env("CNI_PATH", CNI_PATH)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if peer.kind == Kind::Ours {
        c.env("SRIOV_SYSFS_ROOT", bed.sys.root())
            .env("SRIOV_CNI_STATE_DIR", bed.state_dir())
            .env("SRIOV_CNI_LOG_DIR", bed.dir.path());
    }
    enter_in_child(&mut c, stage.ns.as_raw_fd());
    let host = PathBuf::from("/run/netns").join(&bed.host);
    sriov_host::netns::run_in(&host, || -> Result<Ran> {
        let t = Instant::now();
        let mut child = c
            .spawn()
            .with_context(|| format!("spawn {}", peer.bin.display()))?;
        let pid = child.id();
        let mut stdin = child.stdin.take().context("stdin")?;
        let mut so = child.stdout.take().context("stdout")?;
        let mut se = child.stderr.take().context("stderr")?;
        let (status, ru, stdout, stderr) = std::thread::scope(|s| {
            let a = s.spawn(move || {
                let mut b = String::new();
                let _ = so.read_to_string(&mut b);
                b
            });
            let e = s.spawn(move || {
                let mut b = String::new();
                let _ = se.read_to_string(&mut b);
                b
            });
            // A plugin may exit before reading all of stdin (oversize input): ignore EPIPE.
            let _ = stdin.write_all(conf);
            drop(stdin);
            let before = getrusage(UsageWho::RUSAGE_CHILDREN);
            let status = child.wait();
            let wall = t.elapsed();
            let after = getrusage(UsageWho::RUSAGE_CHILDREN);
            let out = a.join().unwrap_or_default();
            let err = e.join().unwrap_or_default();
            (
                status.map(|st| (st, wall)),
                before.and_then(|b| Ok((b, after?))),
                out,
                err,
            )
        });
        let (status, wall) = status.with_context(|| format!("wait for {pid}"))?;
        let (before, after) = ru.context("getrusage")?;
        let ok = status.success();
        let killed = status.signal().is_some();
        Ok(Ran {
            ok,
            killed,
            json: serde_json::from_str(&stdout).unwrap_or(Value::Null),
            stdout,
            stderr,
            wall,
            cpu: cpu(&after).saturating_sub(cpu(&before)),
        })
    })
    .context("enter the bed's host netns")?
}

/// The upstream binaries, for the report's list.
pub fn binaries() -> Vec<(String, String)> {
    ["SRIOV_UPSTREAM_CNI_VETHBED_BIN", "SRIOV_UPSTREAM_CNI_BIN"]
        .into_iter()
        .filter_map(|v| std::env::var(v).ok().map(|b| (v, b)))
        .map(|(v, b)| {
            let what = if v.ends_with("VETHBED_BIN") {
                "upstream sriov-cni v2.10.0 + bench/peers/sriov-cni-v2.10.0-vethbed.patch"
            } else {
                "upstream sriov-cni v2.10.0, unpatched (igb lab)"
            };
            (format!("{what} ({v})"), format!("`{b}`"))
        })
        .collect()
}

/// The three columns: ours, upstream (veth-bed build), host-device.
pub fn peers(s: &Settings) -> Result<Vec<Peer>> {
    let up = std::env::var("SRIOV_UPSTREAM_CNI_VETHBED_BIN").context(
        "SRIOV_UPSTREAM_CNI_VETHBED_BIN is not set: run bench/peers.sh, which builds upstream",
    )?;
    let hd = crate::cni::host_device();
    for b in [Path::new(&up), hd.as_path()] {
        if !b.is_file() {
            bail!(
                "{}: not found (bench/peers.sh builds and installs the peers)",
                b.display()
            );
        }
    }
    Ok(vec![
        Peer {
            label: "sriov (ours)".into(),
            kind: Kind::Ours,
            bin: PathBuf::from(&s.cni_bin),
        },
        Peer {
            label: "upstream sriov v2.10.0 (patched*)".into(),
            kind: Kind::Upstream,
            bin: PathBuf::from(up),
        },
        Peer {
            label: "host-device".into(),
            kind: Kind::HostDevice,
            bin: hd,
        },
    ])
}

fn iters(s: &Settings) -> Result<u32> {
    Ok(crate::env_u32("BENCH_PEERS_ITERS", if s.quick { 5 } else { 100 })?.max(1))
}

/// ADD, CHECK, DEL wall and CPU per plugin, interleaved (ours, upstream, host-device, ours, ...).
pub fn timing(s: &Settings) -> Result<Vec<Section>> {
    let n = iters(s)?;
    let about = format!(
        "Each plugin moves its own VF stand-in (a veth end named by a fake sysfs tree) from a \
         throwaway host netns into a pod netns and back: ADD, CHECK (with ADD's result as \
         prevResult), DEL, no IPAM. The three run interleaved in one process, one ADD/CHECK/DEL \
         of each in turn, {n} rounds after one untimed round, all spawned the same way (into the \
         same private mount namespace; see the notes). Wall is spawn to reaped; CPU is the \
         child's own user+system time (RUSAGE_CHILDREN across its wait)."
    );
    let mut wall = Section::new(
        "Side by side with upstream: CNI wall time (veth bed)",
        &about,
        &[
            "plugin",
            "ADD p50 ms",
            "p95",
            "CHECK p50",
            "p95",
            "DEL p50",
            "p95",
            "ADD+DEL p50",
            "p95",
            "ADD+DEL vs host-device",
        ],
    );
    let mut cpu = Section::new(
        "Side by side with upstream: CNI CPU time (veth bed)",
        "Same runs as the table above: the plugin process's own CPU time (user + system, RUSAGE_CHILDREN across its wait), in ms.",
        &[
            "plugin",
            "ADD p50 ms",
            "p95",
            "CHECK p50",
            "DEL p50",
            "ADD+DEL p50",
            "p95",
            "ours / this (ADD+DEL p50)",
        ],
    );
    let Some(bed) = Bed::new("peers-cni") else {
        wall.note("skipped: needs root (network namespaces)");
        return Ok(vec![wall, cpu]);
    };
    let stage = Stage::new(bed.sys.root())?;
    let peers = peers(s)?;
    let vfs: Vec<_> = (0..peers.len() as u32).map(|i| bed.add_vf(i)).collect();
    let pod = bed.pod("p");
    let confs: Vec<Value> = peers
        .iter()
        .zip(&vfs)
        .map(|(p, v)| p.conf(&v.pci, &v.netdev, &json!({})))
        .collect();
    let k = peers.len();
    // Per plugin: ADD, CHECK, DEL, ADD+DEL.
    let four = || std::array::from_fn::<Samples, 4, _>(|_| Samples::new());
    let mut w: Vec<[Samples; 4]> = (0..k).map(|_| four()).collect();
    let mut c: Vec<[Samples; 4]> = (0..k).map(|_| four()).collect();
    for round in 0..=n {
        for (i, p) in peers.iter().enumerate() {
            let id = format!("peers-{i}");
            let att = Att {
                container_id: &id,
                netns: Some(&pod),
                ifname: "net1",
            };
            let add = exec(
                &bed,
                &stage,
                p,
                "ADD",
                confs[i].to_string().as_bytes(),
                &att,
                &[],
            )?;
            if !add.ok {
                bail!("{} ADD: {} {}", p.label, add.stdout, add.stderr);
            }
            let mut with_prev = confs[i].clone();
            with_prev["prevResult"] = add.json.clone();
            let body = with_prev.to_string();
            let check = exec(&bed, &stage, p, "CHECK", body.as_bytes(), &att, &[])?;
            if !check.ok {
                bail!("{} CHECK: {} {}", p.label, check.stdout, check.stderr);
            }
            let del = exec(&bed, &stage, p, "DEL", body.as_bytes(), &att, &[])?;
            if !del.ok {
                bail!("{} DEL: {} {}", p.label, del.stdout, del.stderr);
            }
            if round > 0 {
                for (j, r) in [&add, &check, &del].into_iter().enumerate() {
                    w[i][j].push(r.wall);
                    c[i][j].push(r.cpu);
                }
                w[i][3].push(add.wall + del.wall);
                c[i][3].push(add.cpu + del.cpu);
            }
        }
    }
    for v in &vfs {
        let l = bed
            .link(None, &v.netdev)
            .with_context(|| format!("{} not back in the host netns", v.netdev))?;
        if l.mac != v.mac {
            bail!("{}: MAC {} not restored to {}", v.netdev, l.mac, v.mac);
        }
    }
    let hd = k - 1;
    let ratio = |a: Duration, b: Duration| {
        if b.is_zero() {
            "-".to_string()
        } else {
            format!("{:.2}x", a.as_secs_f64() / b.as_secs_f64())
        }
    };
    for (i, p) in peers.iter().enumerate() {
        wall.row(vec![
            p.label.clone(),
            ms(w[i][0].median()),
            ms(w[i][0].pct(95.0)),
            ms(w[i][1].median()),
            ms(w[i][1].pct(95.0)),
            ms(w[i][2].median()),
            ms(w[i][2].pct(95.0)),
            ms(w[i][3].median()),
            ms(w[i][3].pct(95.0)),
            ratio(w[i][3].median(), w[hd][3].median()),
        ]);
        cpu.row(vec![
            p.label.clone(),
            ms(c[i][0].median()),
            ms(c[i][0].pct(95.0)),
            ms(c[i][1].median()),
            ms(c[i][2].median()),
            ms(c[i][3].median()),
            ms(c[i][3].pct(95.0)),
            ratio(c[0][3].median(), c[i][3].median()),
        ]);
    }
    // What a process that does nothing costs when spawned the same way: the floor under every
    // row (fork, setns, exec, exit, reaping).
    let t = Peer {
        label: "(floor: /bin/true, spawned the same way)".into(),
        kind: Kind::HostDevice,
        bin: PathBuf::from("/bin/true"),
    };
    let mut floor = Samples::new();
    let att = Att {
        container_id: "floor",
        netns: Some(&pod),
        ifname: "net1",
    };
    for _ in 0..n {
        floor.push(exec(&bed, &stage, &t, "VERSION", b"{}", &att, &[])?.cpu);
    }
    cpu.row(vec![
        t.label.clone(),
        ms(floor.median()),
        ms(floor.pct(95.0)),
        "-".into(),
        "-".into(),
        format!("{} (x2)", ms(floor.median() * 2)),
        "-".into(),
        "-".into(),
    ]);
    let note = "* upstream here is v2.10.0 with one lookup patched \
                (bench/peers/sriov-cni-v2.10.0-vethbed.patch): it reads the VF's original state \
                from the PF's netlink VF list, which a veth PF does not have; the patch takes an \
                all-default entry instead of failing. Its unpatched numbers on real igb VFs come \
                from the lab (tests/lab/scenarios/80-peers-cni.sh).";
    wall.note(note);
    cpu.note(note);
    wall.note(
        "Every child enters the same mount namespace (setns in the forked child before exec, \
         a few microseconds, counted for all three): upstream reads /sys and /var/lib/cni/sriov \
         at fixed paths, so that namespace has the bed's fake sysfs over /sys and a tmpfs over \
         /var/lib. Ours reads the same fake tree through SRIOV_SYSFS_ROOT and keeps its state \
         in the bed's directory on disk (the default /var/lib/cni/sriov is on the same disk).",
    );
    cpu.note(
        "Target: ours at most half of each peer's CPU per ADD+DEL, i.e. the last column at \
         0.50x or below for both peers.",
    );
    Ok(vec![wall, cpu])
}
