//! Link notifications from the real kernel, in a throwaway network namespace (root only).
#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sched::{setns, CloneFlags};
use sriov_host::linkmon::{LinkMonitor, LinkState};

fn ip(args: &[&str]) {
    let st = Command::new("ip").args(args).status().unwrap();
    assert!(st.success(), "ip {args:?}");
}

struct Netns(String);
impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn reports_admin_state_and_carrier_changes() {
    if !sriov_tests::gate::need_root() {
        return;
    }
    let ns = Netns(format!("lm{}", std::process::id()));
    ip(&["netns", "add", &ns.0]);
    ip(&[
        "-n", &ns.0, "link", "add", "pf0", "type", "veth", "peer", "name", "peer0",
    ]);
    let (tx, rx) = mpsc::channel::<LinkState>();
    let path = format!("/run/netns/{}", ns.0);
    std::thread::spawn(move || {
        let f = std::fs::File::open(path).unwrap();
        setns(f, CloneFlags::CLONE_NEWNET).unwrap();
        let mut m = LinkMonitor::open().unwrap();
        m.request_dump().unwrap();
        while let Ok(states) = m.recv() {
            for s in states {
                if tx.send(s).is_err() {
                    return;
                }
            }
        }
    });
    let wait = |pred: &dyn Fn(&LinkState) -> bool| -> Duration {
        let t = Instant::now();
        loop {
            let s = rx.recv_timeout(Duration::from_secs(5)).expect("link event");
            if s.name == "pf0" && pred(&s) {
                return t.elapsed();
            }
        }
    };
    wait(&|s| !s.admin_up); // from the dump
    ip(&["-n", &ns.0, "link", "set", "peer0", "up"]);
    ip(&["-n", &ns.0, "link", "set", "pf0", "up"]);
    let up = wait(&|s| s.healthy());
    let t0 = std::time::Instant::now();
    ip(&["-n", &ns.0, "link", "set", "peer0", "down"]);
    let lost = wait(&|s| s.admin_up && !s.carrier) + t0.elapsed();
    ip(&["-n", &ns.0, "link", "set", "pf0", "down"]);
    wait(&|s| !s.admin_up);
    ip(&["-n", &ns.0, "link", "del", "pf0"]);
    wait(&|s| s.removed);
    let _ = up;
    eprintln!("carrier loss seen {lost:?} after `ip link set peer down` started");
}
