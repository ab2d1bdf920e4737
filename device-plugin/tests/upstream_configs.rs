//! Drop-in check: every complete config (one with a `resourceList`) in upstream
//! sriov-network-device-plugin v3.11.0's README.md and docs/ runs unchanged against this plugin
//! on a fake node, or is refused with an error naming a feature that docs/migration.md lists as
//! not supported. The configs are extracted from the pinned tarball at test time; the outcome per
//! config is checked in (`upstream_configs.expected`), so a change shows up in review.
//!
//! Four upstream examples are not valid JSON. Upstream's own decoder refuses them too: when the
//! upstream binary is in the node cache (`SRIOV_UPSTREAM_BIN`, default
//! `/var/cache/sriov-node/upstream/bin/sriovdp`), it is run on them and must log its
//! unmarshalling error (it stops before reading any device).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use sriov_tests::fakesys::{Dev, FakeSysfs};
use sriov_tests::kubelet::TestKubelet;

const TARBALL: &str = "sriov-network-device-plugin-v3.11.0.tar.gz";
const EXPECTED: &str = include_str!("upstream_configs.expected");

use sriov_tests::upstream::repo_root;

/// The unpacked README.md and docs/ of the tarball, or `None` (SKIPPED) when it is missing
/// outside CI.
fn unpack(into: &Path) -> Option<PathBuf> {
    sriov_tests::upstream::unpack_docs(TARBALL, "sriov-network-device-plugin-v3.11.0", into)
}

/// Every config in one file, in order: ```json blocks holding a `resourceList`, YAML
/// `config.json: |` block scalars, and single-quoted `'{"resourceList": ...}'` values.
fn configs_in(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i];
        let t = l.trim();
        if t == "```json" {
            let end = (i + 1..lines.len())
                .find(|&j| lines[j].trim() == "```")
                .unwrap_or(lines.len());
            let body = lines[i + 1..end].join("\n");
            if body.contains("\"resourceList\"") {
                out.push(body);
            }
            i = end + 1;
            continue;
        }
        if t == "config.json: |" {
            let base = indent(l);
            let end = (i + 1..lines.len())
                .find(|&j| !lines[j].trim().is_empty() && indent(lines[j]) <= base)
                .unwrap_or(lines.len());
            out.push(lines[i + 1..end].join("\n"));
            i = end;
            continue;
        }
        if let Some(start) = l.find("'{\"resourceList\"") {
            let v = &l[start + 1..];
            out.push(v[..v.rfind('\'').unwrap_or(v.len())].to_string());
        }
        i += 1;
    }
    out
}

/// `(name, config text)` for README.md and every file under docs/, names like `docs/x.md#2`.
fn upstream_configs(root: &Path) -> Vec<(String, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push(p);
            }
        }
    }
    let mut files = vec![root.join("README.md")];
    walk(&root.join("docs"), &mut files);
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let Ok(text) = fs::read_to_string(&f) else {
            continue;
        };
        let rel = f.strip_prefix(root).unwrap().display().to_string();
        for (n, c) in configs_in(&text).into_iter().enumerate() {
            out.push((format!("{rel}#{}", n + 1), c));
        }
    }
    out
}

/// A node with the devices upstream's examples select: Intel E810 (`ens785f0`, `ens785f1`, VFs
/// `8086:1889`, iavf, some vfio-pci, two with RDMA), X710 VFs (`8086:154c`, vfio-pci), ConnectX-5
/// VFs (`15b3:1018`, mlx5_core, RDMA), and four X710 VFs passed into a VM (`0000:00:07.0` ..
/// `0000:00:0a.0`, vfio-pci, no PF).
/// Returns the tree and the IOMMU groups of the vfio-pci devices.
fn upstream_node() -> (FakeSysfs, Vec<u32>) {
    let f = FakeSysfs::new();
    let mut groups = Vec::new();
    let mut vfio = || {
        groups.push(101 + groups.len() as u32);
        groups[groups.len() - 1]
    };
    let pfs = [
        (
            "0000:18:00.0",
            "ens785f0",
            0x8086,
            0x1592,
            "ice",
            0x1889,
            10,
        ),
        (
            "0000:19:00.0",
            "ens785f1",
            0x8086,
            0x1592,
            "ice",
            0x1889,
            10,
        ),
        (
            "0000:3b:00.0",
            "ens801f0",
            0x8086,
            0x1572,
            "i40e",
            0x154c,
            4,
        ),
        (
            "0000:5e:00.0",
            "ens1f0np0",
            0x15b3,
            0x1017,
            "mlx5_core",
            0x1018,
            4,
        ),
    ];
    for (p, (pf, netdev, vendor, pf_dev, pf_drv, vf_dev, n)) in pfs.into_iter().enumerate() {
        f.add_pf(
            &Dev::new(pf, vendor, pf_dev).driver(pf_drv).netdev(netdev),
            n,
        );
        let bus = u32::from_str_radix(&pf[5..7], 16).unwrap();
        for i in 0..n {
            let addr = format!("0000:{bus:02x}:{:02x}.{}", 1 + i / 8, i % 8);
            let vf_if = format!("{netdev}v{i}");
            let to_vfio = (p == 1 && i >= 8) || p == 2;
            let mut d = Dev::new(&addr, vendor, vf_dev);
            d = if to_vfio {
                d.driver("vfio-pci").iommu_group(vfio())
            } else {
                let drv = if vendor == 0x15b3 {
                    "mlx5_core"
                } else {
                    "iavf"
                };
                d.driver(drv).netdev(&vf_if)
            };
            f.add_vf(pf, i, &d);
            if (p == 0 && i < 2) || p == 3 {
                f.add_rdma(&addr, &format!("rdma_{p}_{i}"));
            }
        }
    }
    for dev in 7..=0xa {
        let addr = format!("0000:00:{dev:02x}.0");
        let g = vfio();
        f.add(
            &Dev::new(&addr, 0x8086, 0x154c)
                .driver("vfio-pci")
                .iommu_group(g),
        );
    }
    (f, groups)
}

/// Run `config` on a fresh node and describe what happened, in the `.expected` file's words:
/// `ok <resource>=<devices> ...`, `invalid-json`, or `refused: <error>`.
async fn outcome(config: &str, want: &str) -> String {
    let (tree, groups) = upstream_node();
    let bed = Bed::with_tree(tree, &serde_json::json!({}));
    bed.touch_dev("vfio/vfio");
    for g in groups {
        bed.touch_dev(&format!("vfio/{g}"));
    }
    fs::write(bed.config(), config).unwrap();
    let k = TestKubelet::start(&bed.dp_dir()).await;
    let mut plugin = bed.spawn("kubelet");
    let listed = |k: &TestKubelet| {
        let mut regs: Vec<String> = k
            .registrations()
            .into_iter()
            .map(|r| r.request.resource_name)
            .collect();
        regs.sort();
        regs.dedup();
        let mut line = vec!["ok".to_string()];
        for r in regs {
            let n = k.resource(&r).and_then(|s| s.devices).map(|d| d.len());
            line.push(format!("{r}={}", n.map_or("?".into(), |n| n.to_string())));
        }
        line.join(" ")
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if !plugin.alive() {
            let log = plugin.log();
            let err = log
                .lines()
                .rev()
                .find(|l| l.contains("config"))
                .unwrap_or_default()
                .to_string();
            return if err.contains("is not valid JSON") {
                "invalid-json".into()
            } else {
                format!("refused: {err}")
            };
        }
        let got = listed(&k);
        if got == want || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The upstream binary, when the node cache has it.
fn upstream_bin() -> Option<PathBuf> {
    let p = std::env::var_os("SRIOV_UPSTREAM_BIN").map_or_else(
        || PathBuf::from("/var/cache/sriov-node/upstream/bin/sriovdp"),
        PathBuf::from,
    );
    p.is_file().then_some(p)
}

/// Upstream on a config it cannot decode: it logs the unmarshalling error and exits before
/// discovery. It runs in a private mount namespace with tmpfs over /sys, /var/lib and /run all
/// the same, so that even a config it accepted would find no device and write nothing of the
/// machine's; it is killed after 10 s.
fn upstream_refuses_json(bin: &Path, config: &str) -> bool {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("config.json");
    fs::write(&path, config).unwrap();
    let log = tmp.path().join("upstream.log");
    let script = "mount -t tmpfs none /sys && mount -t tmpfs none /var/lib && \
                  mount -t tmpfs none /run && exec \"$0\" -config-file \"$1\" -logtostderr";
    let mut child = Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            script,
        ])
        .arg(bin)
        .arg(&path)
        .env("TMPDIR", tmp.path())
        .stdout(std::process::Stdio::null())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("error unmarshalling raw bytes")
}

/// The "Not supported" section of docs/migration.md.
fn unsupported_section() -> String {
    let doc = fs::read_to_string(repo_root().join("docs/migration.md")).unwrap();
    let start = doc
        .find("## Not supported")
        .expect("docs/migration.md: ## Not supported");
    let rest = &doc[start + 3..];
    rest[..rest.find("\n## ").unwrap_or(rest.len())].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_configs_run_unchanged_or_name_an_unsupported_feature() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(root) = unpack(tmp.path()) else {
        return;
    };
    let configs = upstream_configs(&root);
    assert!(!configs.is_empty(), "no config found in {TARBALL}");
    let expected: BTreeMap<&str, &str> = EXPECTED
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| l.split_once(char::is_whitespace).unwrap())
        .map(|(k, v)| (k, v.trim()))
        .collect();
    let names: Vec<&str> = configs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        expected.keys().copied().collect::<Vec<_>>(),
        "the configs found in {TARBALL} differ from upstream_configs.expected"
    );
    let unsupported = unsupported_section();
    // Upstream's verdict needs root (a private mount namespace).
    let upstream = upstream_bin().filter(|_| nix::unistd::geteuid().is_root());
    let mut report = Vec::new();
    let mut bad = Vec::new();
    for (name, text) in &configs {
        let want = expected[name.as_str()];
        let got = outcome(text, want).await;
        report.push(format!("{name} {got}"));
        let fine = match want.strip_prefix("unsupported ") {
            // The error names the feature, and the migration guide lists it.
            Some(feature) => {
                got.starts_with("refused: ")
                    && got.contains(feature)
                    && unsupported.contains(feature)
            }
            None => got == want,
        };
        if !fine {
            bad.push(format!("{name}: expected {want:?}, got {got:?}"));
        }
        if want == "invalid-json" {
            if let Some(bin) = &upstream {
                if !upstream_refuses_json(bin, text) {
                    bad.push(format!("{name}: upstream sriovdp accepted it"));
                }
            }
        }
    }
    eprintln!("{}", report.join("\n"));
    if upstream.is_none() {
        eprintln!("upstream sriovdp not in the node cache: its JSON verdicts were not checked");
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}
