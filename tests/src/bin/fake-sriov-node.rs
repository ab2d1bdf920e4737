//! `fake-sriov-node --root DIR`: lays out the PS225-like fake sysfs tree of
//! [`sriov_tests::fakesys::ps225_two_pfs`] at DIR and creates its netdevs as veths in the
//! current network namespace, for the node harness (tests/node, docs/node.md).
//!
//! - PFs `enp3s0f0np0` and `enp4s0f0np0` (MAC `02:00:00:0P:00:00`), each a veth whose peer
//!   `wireP` plays the cable: `ip link set wire3 down` takes the PF's carrier away.
//! - VFs 0-5 of each PF: netdevs `enpPs0f0vI` (MAC `02:00:00:0P:10:0I`, down, as the kernel
//!   creates them), veths with peers `vfpeerP-I`. VFs 6-7 are bound to vfio-pci: no netdev.
//! - A third PS225 port without VFs, `0000:05:00.0` `enp5s0f0np0` (cable `wire5`): no pool of
//!   the node's config selects it, so a config change can add one that does.
//!
//! Refuses to run in the network namespace of PID 1 (the machine's own) and to write into a
//! non-empty DIR. Prints one line per device.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use sriov_tests::fakesys::{lay_out_ps225, Dev, FakeSysfs, BRCM, PS225_PF};

const PFS: [u32; 2] = [3, 4];
const NETDEV_VFS: u32 = 6;
const VFS: u32 = 8;
const SPARE_PF: &str = "0000:05:00.0";
const SPARE_PF_NETDEV: &str = "enp5s0f0np0";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fake-sriov-node: {e}");
            ExitCode::FAILURE
        }
    }
}

fn usage() -> String {
    "usage: fake-sriov-node --root DIR".to_string()
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let mut root: Option<PathBuf> = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--root" => root = Some(args.next().ok_or_else(usage)?.into()),
            "-h" | "--help" => {
                println!("{}", usage());
                return Ok(());
            }
            other => return Err(format!("unknown argument {other:?}; {}", usage())),
        }
    }
    let root = root.ok_or_else(usage)?;
    check_netns()?;
    check_root(&root)?;

    let tree = FakeSysfs::create_at(&root);
    lay_out_ps225(&tree);
    for p in PFS {
        let pf = format!("enp{p}s0f0np0");
        veth(&pf, &format!("02:00:00:{p:02x}:00:00"), &format!("wire{p}"))?;
        ip(&["link", "set", &pf, "up"])?;
        println!("PF 0000:{p:02x}:00.0 {pf} (cable: wire{p})");
        for i in 0..VFS {
            let pci = format!("0000:{p:02x}:10.{i}");
            if i < NETDEV_VFS {
                let vf = format!("enp{p}s0f0v{i}");
                veth(
                    &vf,
                    &format!("02:00:00:{p:02x}:10:{i:02x}"),
                    &format!("vfpeer{p}-{i}"),
                )?;
                println!("VF {pci} {vf} bnxt_en");
            } else {
                println!("VF {pci} vfio-pci iommu group {}", 100 + (p - 3) * 8 + i);
            }
        }
    }
    tree.add_pf(
        &Dev::new(SPARE_PF, BRCM, PS225_PF)
            .driver("bnxt_en")
            .netdev(SPARE_PF_NETDEV)
            .numa(0),
        16,
    );
    veth(SPARE_PF_NETDEV, "02:00:00:05:00:00", "wire5")?;
    ip(&["link", "set", SPARE_PF_NETDEV, "up"])?;
    println!("PF {SPARE_PF} {SPARE_PF_NETDEV} without VFs (cable: wire5)");
    println!("tree at {}", root.display());
    Ok(())
}

/// A veth `name` with MAC `mac` whose peer `peer` is up (so `name` has carrier once up).
fn veth(name: &str, mac: &str, peer: &str) -> Result<(), String> {
    ip(&[
        "link", "add", name, "address", mac, "type", "veth", "peer", "name", peer,
    ])?;
    ip(&["link", "set", peer, "up"])
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip (install iproute2): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The stand-in netdevs must never land in the machine's own network namespace: that of the
/// outermost ancestor process we can inspect (PID 1's may be unreadable, as in some VMs).
fn check_netns() -> Result<(), String> {
    let ino = |p: &str| std::fs::metadata(p).map(|m| m.ino()).ok();
    let own = ino("/proc/self/ns/net").ok_or("cannot read /proc/self/ns/net")?;
    let mut outer = own;
    let mut pid = std::process::id();
    while pid > 1 {
        let Some(ppid) = parent(pid) else { break };
        match ino(&format!("/proc/{ppid}/ns/net")) {
            Some(n) => outer = n,
            None => break,
        }
        pid = ppid;
    }
    if outer == own {
        return Err(
            "this is the machine's own network namespace; run inside the node's \
                    (scripts/node.sh sh, or nsenter --net=...)"
                .to_string(),
        );
    }
    Ok(())
}

fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

fn check_root(root: &Path) -> Result<(), String> {
    if !root.is_absolute() {
        return Err(format!("--root {}: give an absolute path", root.display()));
    }
    match std::fs::read_dir(root) {
        Ok(mut rd) => {
            if rd.next().is_some() {
                return Err(format!(
                    "--root {}: not empty; give a new or empty directory",
                    root.display()
                ));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("--root {}: {e}", root.display())),
    }
}
