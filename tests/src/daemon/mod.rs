//! The device-plugin daemon on a fake node, for the device plugin's integration tests, the
//! benchmarks and the lab: a [`Bed`] (fake sysfs tree, `/dev`, the plugin's directories and
//! config in a temp dir) and a running [`Plugin`] process (killed on drop, its log printed when
//! the test fails).
//!
//! The binary is `SRIOV_DP_BIN` when set (e.g. a release build), else `sriov-device-plugin`
//! next to the test executable's directory (`target/<profile>/`, where cargo builds it before
//! the device plugin's integration tests), else set per bed with [`Bed::with_bin`].

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::fakesys::{ps225_two_pfs, FakeSysfs};

mod stats;

/// The PS225 config's netdevice pool.
pub const NETDEV: &str = "arm.com/ps225_sriov_netdevice";
/// The PS225 config's vfio-pci pool.
pub const DPDK: &str = "arm.com/ps225_dpdk";
/// How long a test waits for the daemon to do something.
pub const T: Duration = Duration::from_secs(10);
/// `RUST_LOG` of a spawned daemon: debug for the plugin, quiet for the HTTP/2 stack.
pub const LOG_FILTER: &str = "debug,h2=info,tower=info,hyper=info";

/// The binary under test (see the module docs).
pub fn bin() -> PathBuf {
    if let Some(b) = std::env::var_os("SRIOV_DP_BIN") {
        return PathBuf::from(b);
    }
    let exe = std::env::current_exe().expect("the test executable's path");
    // target/<profile>/deps/<test>-<hash> -> target/<profile>/sriov-device-plugin
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    dir.join("sriov-device-plugin")
}

/// A fake node for the daemon: every path it takes lives in `tmp`.
pub struct Bed {
    pub sys: FakeSysfs,
    pub tmp: tempfile::TempDir,
    bin: PathBuf,
    log_filter: String,
}

/// Two PS225 pools: the netdev VFs of both PFs (selected by PF name) and the vfio-pci VFs.
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
    /// Two PS225 PFs with 8 VFs each, /dev/vfio nodes for the vfio-pci VFs, [`ps225_config`].
    pub fn ps225() -> Bed {
        let bed = Bed::with_tree(ps225_two_pfs(), &ps225_config());
        for g in ["vfio", "106", "107", "114", "115"] {
            bed.touch_dev(&format!("vfio/{g}"));
        }
        bed
    }

    /// A bed for `sys` and `config`, in the system's temp dir.
    pub fn with_tree(sys: FakeSysfs, config: &serde_json::Value) -> Bed {
        let tmp = tempfile::Builder::new().prefix("dpbed").tempdir().unwrap();
        Bed::in_dir(sys, tmp, config)
    }

    /// A bed in `tmp` (e.g. on tmpfs, like /var/run on a node).
    pub fn in_dir(sys: FakeSysfs, tmp: tempfile::TempDir, config: &serde_json::Value) -> Bed {
        let bed = Bed {
            sys,
            tmp,
            bin: bin(),
            log_filter: LOG_FILTER.into(),
        };
        fs::create_dir_all(bed.dev_root()).unwrap();
        fs::create_dir_all(bed.dp_dir()).unwrap();
        bed.write_config(config);
        bed
    }

    /// Run `bin` instead of [`bin()`].
    pub fn with_bin(mut self, bin: impl Into<PathBuf>) -> Bed {
        self.bin = bin.into();
        self
    }

    /// Start the daemon with `RUST_LOG=filter` instead of [`LOG_FILTER`].
    pub fn with_log_filter(mut self, filter: &str) -> Bed {
        self.log_filter = filter.into();
        self
    }

    pub fn bin(&self) -> &Path {
        &self.bin
    }

    pub fn touch_dev(&self, rel: &str) {
        let p = self.dev_root().join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, "").unwrap();
    }

    /// Write the config in place.
    pub fn write_config(&self, v: &serde_json::Value) {
        fs::write(self.config(), serde_json::to_vec_pretty(v).unwrap()).unwrap();
    }

    /// Replace the config the way a ConfigMap update does: write aside, rename into place.
    pub fn replace_config(&self, v: &serde_json::Value) -> std::io::Result<()> {
        let tmp = self.tmp.path().join(".config.json.new");
        fs::write(&tmp, serde_json::to_vec_pretty(v)?)?;
        fs::rename(&tmp, self.config())
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

    /// The flags every run uses, for `mode` (`kubelet` or `watcher` registration).
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

    /// Start the daemon; its log goes to [`Bed::log`].
    pub fn spawn(&self, mode: &str) -> Plugin {
        self.spawn_args(mode, &[])
    }

    /// Start the daemon with extra flags.
    pub fn spawn_args(&self, mode: &str, extra: &[&str]) -> Plugin {
        self.spawn_wrapped(&[], mode, extra)
    }

    /// Start the daemon under `wrapper` (a command that execs the rest, e.g.
    /// `prlimit --nofile=256:256 --`), so the limits apply to the daemon process itself.
    pub fn spawn_wrapped(&self, wrapper: &[&str], mode: &str, extra: &[&str]) -> Plugin {
        let mut cmd = match wrapper.split_first() {
            Some((w, rest)) => {
                let mut c = Command::new(w);
                c.args(rest).arg(&self.bin);
                c
            }
            None => Command::new(&self.bin),
        };
        cmd.args(self.args(mode)).args(extra);
        self.start(cmd, None)
    }

    /// Start the daemon with `config` as `--config`, inside the network namespace at `netns`
    /// when given (spawned from a thread that entered it, so the child lives there).
    pub fn spawn_with(&self, mode: &str, config: &Path, netns: Option<&Path>) -> Plugin {
        let mut args = self.args(mode);
        args[1] = config.to_string_lossy().into_owned();
        let mut cmd = Command::new(&self.bin);
        cmd.args(args);
        self.start(cmd, netns)
    }

    /// `bin` with this bed's flags for `mode`.
    pub fn command(&self, bin: &Path, mode: &str) -> Command {
        let mut cmd = Command::new(bin);
        cmd.args(self.args(mode));
        cmd
    }

    /// Start `cmd` (a daemon command line) with `RUST_LOG` set and its log in [`Bed::log`],
    /// inside the network namespace at `netns` when given.
    pub fn try_start(&self, mut cmd: Command, netns: Option<&Path>) -> std::io::Result<Plugin> {
        let log = fs::File::create(self.log())?;
        cmd.env("RUST_LOG", &self.log_filter);
        Plugin::try_spawn(cmd, log, self.log(), netns)
    }

    fn start(&self, cmd: Command, netns: Option<&Path>) -> Plugin {
        self.try_start(cmd, netns).unwrap()
    }

    /// Run the binary to completion with `args`; returns status, stdout, stderr.
    pub fn run(&self, args: &[&str]) -> (ExitStatus, String, String) {
        run_bin(&self.bin, args)
    }
}

/// Run [`bin()`] to completion with `args`; returns status, stdout, stderr.
pub fn run(args: &[&str]) -> (ExitStatus, String, String) {
    run_bin(&bin(), args)
}

fn run_bin(bin: &Path, args: &[&str]) -> (ExitStatus, String, String) {
    let out = Command::new(bin).args(args).output().unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The permission bits of the file at `p`.
pub fn mode_of(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// A running daemon; killed on drop, its log printed when the test fails.
pub struct Plugin {
    child: Option<Child>,
    log: PathBuf,
    /// Where this run's part of the log starts (the lab appends runs to one file).
    log_start: u64,
    /// On drop: SIGTERM and wait this long (SIGKILL at once when `None`).
    drop_grace: Option<Duration>,
    pub started: Instant,
}

impl Plugin {
    /// Spawn `cmd` (stdin closed, stdout and stderr to `log_file`, which is at `log`), inside
    /// the network namespace at `netns` when given. The log read back starts at the file's
    /// current length.
    pub fn try_spawn(
        mut cmd: Command,
        log_file: fs::File,
        log: PathBuf,
        netns: Option<&Path>,
    ) -> std::io::Result<Plugin> {
        let log_start = log_file.metadata()?.len();
        cmd.stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file);
        let started = Instant::now();
        let child = match netns {
            Some(ns) => sriov_host::netns::run_in(ns, move || cmd.spawn())
                .map_err(std::io::Error::other)??,
            None => cmd.spawn()?,
        };
        Ok(Plugin {
            child: Some(child),
            log,
            log_start,
            drop_grace: None,
            started,
        })
    }

    /// Spawn `cmd` with its output appended to `log` after a `===== label =====` line.
    pub fn spawn_appending(cmd: Command, log: &Path, label: &str) -> Plugin {
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        writeln!(f, "===== {label} =====").unwrap();
        Plugin::try_spawn(cmd, f, log.to_path_buf(), None).unwrap()
    }

    /// On drop, stop with SIGTERM and up to `grace` (like [`Plugin::stop`]) instead of SIGKILL.
    pub fn stop_on_drop(mut self, grace: Duration) -> Plugin {
        self.drop_grace = Some(grace);
        self
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    /// This run's log so far.
    pub fn log(&self) -> String {
        let all = fs::read(&self.log).unwrap_or_default();
        let from = (self.log_start as usize).min(all.len());
        String::from_utf8_lossy(&all[from..]).into_owned()
    }

    /// The last `n` lines of the log.
    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Lines of the log containing `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        self.log().lines().filter(|l| l.contains(needle)).count()
    }

    /// Lines of the log containing every one of `words` (case-insensitive).
    pub fn log_lines(&self, words: &[&str]) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| {
                let l = l.to_lowercase();
                words.iter().all(|w| l.contains(&w.to_lowercase()))
            })
            .map(str::to_string)
            .collect()
    }

    fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig).unwrap();
    }

    pub fn sigterm(&self) {
        self.signal(nix::sys::signal::Signal::SIGTERM);
    }

    /// SIGKILL: the process dies at once, leaving its sockets behind (what a crash or a
    /// container kill does).
    pub fn sigkill(&self) {
        self.signal(nix::sys::signal::Signal::SIGKILL);
    }

    /// The exit status, once the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        let st = self.child.as_mut()?.try_wait().ok().flatten()?;
        self.child = None;
        Some(st)
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
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

    /// SIGTERM, then wait up to `timeout` (SIGKILL after that); true for a clean exit.
    pub fn stop(&mut self, timeout: Duration) -> bool {
        let Some(child) = self.child.as_mut() else {
            return false;
        };
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                self.child = None;
                return st.success();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                self.child = None;
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

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
}

impl Drop for Plugin {
    fn drop(&mut self) {
        if let Some(grace) = self.drop_grace {
            self.stop(grace);
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("---- plugin log ----\n{}", self.log());
        }
    }
}
