//! What a running [`Plugin`] costs: memory, CPU, file descriptors, and its metrics address.

use std::fs;
use std::time::{Duration, Instant};

use super::Plugin;

impl Plugin {
    /// VmRSS of the process in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.try_rss_kib().unwrap()
    }

    /// VmRSS of the process in KiB; an error when the process is gone.
    pub fn try_rss_kib(&self) -> std::io::Result<u64> {
        let s = fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        s.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("no VmRSS for pid {}", self.pid())))
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
