//! A test bed: a fake PS225 node (sysfs, /dev, directories, config) and the real plugin binary
//! running against it.
#![allow(dead_code, clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use sriov_tests::fakesys::{ps225_two_pfs, FakeSysfs};

/// The binary under test: this build's, or `SRIOV_DP_BIN` (e.g. a release build).
pub fn bin() -> String {
    std::env::var("SRIOV_DP_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_sriov-device-plugin").to_string())
}
pub const NETDEV: &str = "arm.com/ps225_sriov_netdevice";
pub const DPDK: &str = "arm.com/ps225_dpdk";
pub const T: Duration = Duration::from_secs(10);

pub struct Bed {
    pub sys: FakeSysfs,
    pub tmp: tempfile::TempDir,
}

pub fn ps225_config() -> serde_json::Value {
    serde_json::json!({"resourceList": [
        {
            "resourceName": "ps225_sriov_netdevice",
            "resourcePrefix": "arm.com",
            "selectors": {"vendors": ["14e4"], "devices": ["d800"], "drivers": ["bnxt_en"],
                          "pfNames": ["enp3s0f0np0", "enp4s0f0np0"]},
            "additionalInfo": {"*": {"net": "sriov-net1"}}
        },
        {
            "resourceName": "ps225_dpdk",
            "resourcePrefix": "arm.com",
            "selectors": [{"drivers": ["vfio-pci"], "rootDevices": ["0000:03:00.0"]},
                          {"drivers": ["vfio-pci"], "rootDevices": ["0000:04:00.0#6-7"]}]
        }
    ]})
}

impl Bed {
    /// Two PS225 PFs with 8 VFs each, /dev/vfio nodes for the vfio-pci VFs, the config above.
    pub fn ps225() -> Bed {
        let bed = Bed::with_tree(ps225_two_pfs(), &ps225_config());
        for g in ["vfio", "106", "107", "114", "115"] {
            bed.touch_dev(&format!("vfio/{g}"));
        }
        bed
    }

    pub fn with_tree(sys: FakeSysfs, config: &serde_json::Value) -> Bed {
        let tmp = tempfile::Builder::new().prefix("dpbed").tempdir().unwrap();
        let bed = Bed { sys, tmp };
        fs::create_dir_all(bed.dev_root()).unwrap();
        fs::create_dir_all(bed.dp_dir()).unwrap();
        bed.write_config(config);
        bed
    }

    pub fn touch_dev(&self, rel: &str) {
        let p = self.dev_root().join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, "").unwrap();
    }

    pub fn write_config(&self, v: &serde_json::Value) {
        fs::write(self.config(), serde_json::to_vec_pretty(v).unwrap()).unwrap();
    }

    pub fn config(&self) -> PathBuf {
        self.tmp.path().join("config.json")
    }
    pub fn dev_root(&self) -> PathBuf {
        self.tmp.path().join("dev")
    }
    pub fn dp_dir(&self) -> PathBuf {
        self.tmp.path().join("device-plugins")
    }
    pub fn reg_dir(&self) -> PathBuf {
        self.tmp.path().join("plugins_registry")
    }
    pub fn devinfo_dir(&self) -> PathBuf {
        self.tmp.path().join("devinfo")
    }
    pub fn log(&self) -> PathBuf {
        self.tmp.path().join("plugin.log")
    }
    pub fn cdi_dir(&self) -> PathBuf {
        self.tmp.path().join("cdi")
    }

    /// The flags every run uses, for `mode`.
    pub fn args(&self, mode: &str) -> Vec<String> {
        let p = |p: PathBuf| p.to_string_lossy().into_owned();
        vec![
            "--config".into(),
            p(self.config()),
            "--sysfs-root".into(),
            p(self.sys.root().to_path_buf()),
            "--dev-root".into(),
            p(self.dev_root()),
            "--device-plugins-dir".into(),
            p(self.dp_dir()),
            "--plugins-registry-dir".into(),
            p(self.reg_dir()),
            "--devinfo-dir".into(),
            p(self.devinfo_dir()),
            "--registration".into(),
            mode.into(),
        ]
    }

    /// Start the plugin daemon; its log goes to [`Bed::log`].
    pub fn spawn(&self, mode: &str) -> Plugin {
        self.spawn_args(mode, &[])
    }

    /// Start the plugin daemon with extra flags.
    pub fn spawn_args(&self, mode: &str, extra: &[&str]) -> Plugin {
        self.spawn_wrapped(&[], mode, extra)
    }

    /// Run the binary to completion with extra arguments; returns status, stdout, stderr.
    pub fn run(&self, args: &[&str]) -> (ExitStatus, String, String) {
        run(args)
    }
}

pub fn run(args: &[&str]) -> (ExitStatus, String, String) {
    let out = Command::new(bin()).args(args).output().unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The running daemon; killed on drop, its log printed when the test fails.
pub struct Plugin {
    child: Option<Child>,
    log: PathBuf,
    pub started: Instant,
}

impl Plugin {
    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn sigterm(&self) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid()),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
    }

    /// Wait for the process to exit.
    pub async fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "plugin did not exit:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// VmRSS of the process in KiB.
    pub fn rss_kib(&self) -> u64 {
        let s = fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        s.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap()
    }
}

impl Drop for Plugin {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("---- plugin log ----\n{}", self.log());
        }
    }
}

pub fn mode_of(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

impl Bed {
    /// Start the plugin daemon with `config` as `--config`, inside the network namespace at
    /// `netns` when given (spawned from a thread that entered it, so the child lives there).
    pub fn spawn_with(&self, mode: &str, config: &Path, netns: Option<&Path>) -> Plugin {
        let log = fs::File::create(self.log()).unwrap();
        let mut args = self.args(mode);
        args[1] = config.to_string_lossy().into_owned();
        let mut cmd = Command::new(bin());
        cmd.args(args)
            .env("RUST_LOG", "debug,h2=info,tower=info,hyper=info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let child = match netns {
            Some(ns) => sriov_host::netns::run_in(ns, move || cmd.spawn().unwrap()).unwrap(),
            None => cmd.spawn().unwrap(),
        };
        Plugin {
            child: Some(child),
            log: self.log(),
            started: Instant::now(),
        }
    }
}

impl Plugin {
    /// Wait until the log contains `needle`.
    pub async fn wait_log(&self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.log().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in the log within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Wait until `needle` is on at least `n` lines of the log: the daemon has handled the
    /// `n`-th occurrence of what it logs (a check that nothing else happened needs no sleep).
    pub async fn wait_log_count(&self, needle: &str, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.log_count(needle) < n {
            assert!(
                Instant::now() < deadline,
                "{needle:?} on {} line(s) of the log, not {n}, within {timeout:?}:\n{}",
                self.log_count(needle),
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }
}

impl Bed {
    /// Start the plugin daemon under `wrapper` (a command that execs the rest, e.g.
    /// `prlimit --nofile=256:256 --`), so the limits apply to the plugin process itself.
    pub fn spawn_wrapped(&self, wrapper: &[&str], mode: &str, extra: &[&str]) -> Plugin {
        let log = fs::File::create(self.log()).unwrap();
        let mut cmd = match wrapper.split_first() {
            Some((w, rest)) => {
                let mut c = Command::new(w);
                c.args(rest).arg(bin());
                c
            }
            None => Command::new(bin()),
        };
        let child = cmd
            .args(self.args(mode))
            .args(extra)
            .env("RUST_LOG", "debug,h2=info,tower=info,hyper=info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Plugin {
            child: Some(child),
            log: self.log(),
            started: Instant::now(),
        }
    }
}

impl Plugin {
    /// SIGKILL: the process dies at once, leaving its sockets behind (what a crash or a
    /// container kill does).
    pub fn sigkill(&self) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid()),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
    }

    /// CPU time used so far (user + system), in clock ticks (1/100 s).
    pub fn cpu_ticks(&self) -> u64 {
        let s = fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        // The command name may hold spaces: fields count from after its closing parenthesis.
        let rest = &s[s.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
        f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
    }

    /// Open file descriptors of the process.
    pub fn open_fds(&self) -> usize {
        fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// Lines of the log containing `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        self.log().lines().filter(|l| l.contains(needle)).count()
    }

    /// CPU ticks and new log lines over `window` of otherwise idle running.
    pub async fn idle_cost(&self, window: Duration) -> (u64, usize) {
        let (t0, l0) = (self.cpu_ticks(), self.log().lines().count());
        tokio::time::sleep(window).await;
        (
            self.cpu_ticks() - t0,
            self.log().lines().count().saturating_sub(l0),
        )
    }

    /// The metrics listener's address, from the log (`--metrics-addr 127.0.0.1:0`).
    pub async fn metrics_addr(&self, timeout: Duration) -> std::net::SocketAddr {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.log();
            if let Some(a) = log
                .lines()
                .find(|l| l.contains("metrics listening"))
                .and_then(|l| l.split("addr=").nth(1))
                .and_then(|a| a.split_whitespace().next())
            {
                return a.parse().unwrap();
            }
            assert!(Instant::now() < deadline, "no metrics listener:\n{log}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
