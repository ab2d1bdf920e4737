//! Drop-in check: every netconf example in upstream sriov-cni v2.10.0's README.md and docs/ runs
//! unchanged against this plugin on the veth bed, handed over exactly as Multus v4.3.0 hands it
//! (`support/multus.rs`: `deviceID`/`pciBusID` injected, `runtimeConfig` by capabilities,
//! `CNI_ARGS`, no CHECK below 0.4.0), or is refused with an error naming a feature that
//! docs/migration.md lists as not supported.
//!
//! The examples are extracted from the pinned tarball at test time (the same tarball the
//! upstream binaries are built from; nothing of upstream's text is copied here); the outcome
//! per example is checked in (`upstream_examples.expected`), so a change shows up in review.
//! Three shapes are found: ```json blocks of `"type": "sriov"`, NetworkAttachmentDefinition YAML
//! (its `spec.config` and `resourceName` annotation), and Pod YAML whose
//! `k8s.v1.cni.cncf.io/networks` annotation carries runtime requests (`mac`): those are applied
//! to the first NAD example, the one network upstream's docs define.
//!
//! Outcomes: `ok` is ADD (result, pod interface, address, route and lease checked), CHECK (or,
//! below cniVersion 0.4.0, where the CNI library never sends it, the plugin's refusal of it and
//! a CHECK of the same attachment at 0.4.0), DEL (everything restored, lease and state gone)
//! and a repeated DEL. `kernel <settings>` is an example whose PF-side VF settings a veth
//! standing in for a PF cannot take: ADD must get past parsing and validation to the kernel
//! and stop there with code 101 naming exactly those settings and the PF, having changed
//! nothing; the example without those settings must then be `ok`.
#![allow(clippy::unwrap_used)]

mod common;
#[path = "support/multus.rs"]
mod multus;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use common::*;
use multus::{Multus, IFNAME};
use serde_json::{json, Value};

const TARBALL: &str = "sriov-cni-v2.10.0.tar.gz";
const EXPECTED: &str = include_str!("upstream_examples.expected");
/// PF-side settings: what a veth PF cannot take.
const PF_SIDE: &[&str] = &[
    "mac",
    "vlan",
    "vlanQoS",
    "vlanProto",
    "spoofchk",
    "trust",
    "link_state",
    "min_tx_rate",
    "max_tx_rate",
];

use sriov_tests::upstream::repo_root;

/// The unpacked README.md and docs/ of the tarball, or `None` (SKIPPED) when it is missing
/// outside CI.
fn unpack(into: &Path) -> Option<PathBuf> {
    sriov_tests::upstream::unpack_docs(TARBALL, "sriov-cni-v2.10.0", into)
}

/// One example: a netconf (with the NAD's resource, if it came as a NAD), or a pod's runtime
/// requests (`mac`, `ips`) for a network.
#[derive(Debug, Clone)]
enum Example {
    Netconf(Value),
    Requests(Value),
}

/// The text of a YAML single-quoted value that starts on `lines[i]` after `key: '`.
fn quoted(lines: &[&str], i: usize, key: &str) -> Option<String> {
    let start = lines[i].find(&format!("{key}: '"))? + key.len() + 3;
    let mut text = lines[i][start..].to_string();
    let mut j = i;
    while !text.trim_end().ends_with('\'') {
        j += 1;
        text.push('\n');
        text.push_str(lines.get(j)?);
    }
    let t = text.trim_end();
    Some(t[..t.len() - 1].to_string())
}

/// The examples in one file, with the line their block starts on.
fn examples_in(text: &str) -> Vec<(usize, Example)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if !lines[i].trim_start().starts_with("```") {
            i += 1;
            continue;
        }
        let end = (i + 1..lines.len())
            .find(|&j| lines[j].trim() == "```")
            .unwrap_or(lines.len());
        let body = &lines[i + 1..end];
        let joined = body.join("\n");
        let parse = |s: &str| serde_json::from_str::<Value>(s).unwrap_or(Value::Null);
        if lines[i].trim() == "```json" && joined.contains("\"sriov\"") {
            out.push((i + 2, Example::Netconf(parse(&joined))));
        }
        for (k, l) in body.iter().enumerate() {
            if l.trim_start().starts_with("config: '") {
                out.push((
                    i + 2 + k,
                    Example::Netconf(parse(&quoted(body, k, "config").unwrap_or_default())),
                ));
            }
            if l.contains("k8s.v1.cni.cncf.io/networks: '") {
                let q = quoted(body, k, "k8s.v1.cni.cncf.io/networks").unwrap_or_default();
                out.push((i + 2 + k, Example::Requests(parse(&q))));
            }
        }
        i = end + 1;
    }
    out
}

/// `(name, line, example)` for README.md and every file under docs/, names like `docs/x.md#2`.
fn upstream_examples(root: &Path) -> Vec<(String, usize, Example)> {
    let mut files = vec![root.join("README.md")];
    let mut docs: Vec<PathBuf> = fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    docs.sort();
    files.extend(docs);
    let mut out = Vec::new();
    for f in files {
        let Ok(text) = fs::read_to_string(&f) else {
            continue;
        };
        let rel = f.strip_prefix(root).unwrap().display().to_string();
        for (n, (line, ex)) in examples_in(&text).into_iter().enumerate() {
            out.push((format!("{rel}#{}", n + 1), line, ex));
        }
    }
    out
}

/// The PF-side settings `conf` (plus a runtime `mac`) asks for, in the plugin's order.
fn pf_side(conf: &Value, mac: bool) -> Vec<&'static str> {
    PF_SIDE
        .iter()
        .copied()
        .filter(|k| (*k == "mac" && mac) || !conf[*k].is_null())
        .collect()
}

/// Run one netconf on a fresh bed with `requests` from a pod, as Multus would, and describe
/// what happened in the `.expected` file's words.
fn outcome(conf: &Value, requests: Option<&Value>, vfio: bool, tag: &str) -> String {
    let Some(bed) = Bed::new(tag) else {
        return "skipped".into();
    };
    let pod = bed.pod("p");
    let (pci, vf) = if vfio {
        (bed.add_dpdk_vf(1), None)
    } else {
        let vf = bed.add_vf(1);
        (vf.pci.clone(), Some(vf))
    };
    let mut m = Multus::new(&bed, BIN, "sriov-net", conf, &pod, &pci);
    if let Some(r) = requests {
        m.mac = r["mac"].as_str().map(str::to_string);
        m.ips = r["ips"].as_array().map(|a| {
            a.iter()
                .filter_map(|v| Some(v.as_str()?.to_string()))
                .collect()
        });
    }
    let settings = pf_side(&m.conf, m.mac.is_some());
    let add = m.add();
    if add.ok {
        return match attached(&bed, &m, vf.as_ref(), &add) {
            Ok(()) => "ok".into(),
            Err(e) => format!("failed: {e}"),
        };
    }
    let list = settings.join(", ");
    let stopped_at_kernel = add.code() == Some(101)
        && add
            .msg()
            .starts_with(&format!("{list}: PF pf0 reports no VF info"));
    if settings.is_empty() || !stopped_at_kernel {
        return format!("refused {:?}: {}", add.code(), add.msg());
    }
    // Multus tears a failed delegate down at once (DEL, no cached result); so does the runtime.
    let del = m.del(None);
    if !del.ok {
        return format!("kernel {list}, but DEL after it failed: {}", del.stdout);
    }
    if let Err(e) = nothing_changed(&bed, &m, vf.as_ref()) {
        return format!("kernel {list}, but {e}");
    }
    if let Err(e) = log_file_refused(&m.conf, &add) {
        return format!("kernel {list}, but {e}");
    }
    // The rest of the example, without what the veth PF cannot take.
    let mut rest = conf.clone();
    for k in PF_SIDE {
        rest.as_object_mut().unwrap().remove(*k);
    }
    drop(m);
    drop(bed);
    match outcome(&rest, None, vfio, &format!("{tag}r")).as_str() {
        "ok" | "skipped" => format!("kernel {list}"),
        other => format!("kernel {list}, and without them: {other}"),
    }
}

/// A `logFile` outside the log directory (upstream's example names `/tmp/sriov.log`) is not
/// written: the plugin says so on stderr and logs there.
fn log_file_refused(conf: &Value, out: &CniOut) -> Result<(), String> {
    let Some(f) = conf["logFile"].as_str() else {
        return Ok(());
    };
    if !out.stderr.contains("not logging to logFile") || !out.stderr.contains(f) {
        return Err(format!(
            "no warning about logFile {f} on stderr: {}",
            out.stderr
        ));
    }
    Ok(())
}

/// Nothing of the attachment exists: the VF netdev home with its MAC, no state, no lease.
fn nothing_changed(bed: &Bed, m: &Multus, vf: Option<&BedVf>) -> Result<(), String> {
    if let Some(vf) = vf {
        let l = bed
            .link(None, &vf.netdev)
            .ok_or("the VF is not in the host")?;
        if l.mac != vf.mac {
            return Err(format!("the VF's MAC is {}", l.mac));
        }
    }
    if bed.link(Some(&m.pod), IFNAME).is_some() {
        return Err(format!("{IFNAME} is in the pod"));
    }
    let state: Vec<_> = fs::read_dir(bed.state_dir())
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    if state.iter().any(|n| n.to_string_lossy().ends_with(".json")) {
        return Err(format!("state left: {state:?}"));
    }
    let leases: Vec<_> = fs::read_dir(m.leases())
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    if leases
        .iter()
        .any(|n| n.to_string_lossy().parse::<std::net::IpAddr>().is_ok())
    {
        return Err(format!("leases left: {leases:?}"));
    }
    Ok(())
}

/// After a successful ADD: the result and the pod as the example asks, then CHECK, DEL and a
/// second DEL.
fn attached(bed: &Bed, m: &Multus, vf: Option<&BedVf>, add: &CniOut) -> Result<(), String> {
    let r = &add.json;
    let want = |ok: bool, what: String| if ok { Ok(()) } else { Err(what) };
    want(
        r["cniVersion"] == m.conf["cniVersion"],
        format!("result version: {r}"),
    )?;
    let iface = &r["interfaces"][0];
    if let Some(vf) = vf {
        want(iface["name"] == IFNAME, format!("interface: {iface}"))?;
        want(
            iface["sandbox"] == m.pod.to_string_lossy().as_ref(),
            format!("sandbox: {iface}"),
        )?;
        let l = bed.link(Some(&m.pod), IFNAME).ok_or("no net1 in the pod")?;
        want(l.up && l.mac == vf.mac, format!("net1 in the pod: {l:?}"))?;
        want(
            bed.link(None, &vf.netdev).is_none(),
            "the VF netdev is still in the host".into(),
        )?;
    } else {
        want(
            iface["pciID"] == m.device_id.as_str(),
            format!("pciID: {iface}"),
        )?;
        want(
            bed.link(Some(&m.pod), IFNAME).is_none(),
            "a DPDK VF put a netdev in the pod".into(),
        )?;
    }
    if m.conf["ipam"].is_object() {
        let ip = r["ips"][0]["address"].as_str().ok_or("no address")?;
        let host = ip.split('/').next().unwrap_or_default();
        want(
            m.leases().join(host).exists(),
            format!("no host-local lease for {host}"),
        )?;
        if vf.is_some() {
            want(
                bed.addrs(Some(&m.pod), IFNAME) == vec![ip.to_string()],
                format!("net1 addresses: {:?}", bed.addrs(Some(&m.pod), IFNAME)),
            )?;
            if let Some(gw) = m.conf["ipam"]["gateway"].as_str() {
                let ns = m.pod.file_name().unwrap().to_str().unwrap();
                let routes = sriov_tests::netbed::ip(&["-n", ns, "route", "show", "default"]);
                want(
                    routes.contains(&format!("via {gw}")),
                    format!("default route: {routes}"),
                )?;
            }
        }
    }
    match m.check(r) {
        Some(c) => want(c.ok, format!("CHECK: {}", c.stdout))?,
        None => {
            // The CNI library never sends CHECK below 0.4.0; the plugin refuses it the same way.
            let c = m.raw("CHECK", &m.stdin(Some(r)));
            want(
                c.code() == Some(1) && c.msg().contains("cniVersion"),
                format!("CHECK at {}: {}", m.cni_version(), c.stdout),
            )?;
            let mut at_040 = m.stdin(Some(r));
            at_040["cniVersion"] = json!("0.4.0");
            let c = m.raw("CHECK", &at_040);
            want(c.ok, format!("CHECK at 0.4.0: {}", c.stdout))?;
        }
    }
    let del = m.del(Some(r));
    want(del.ok, format!("DEL: {}", del.stdout))?;
    nothing_changed(bed, m, vf).map_err(|e| format!("after DEL: {e}"))?;
    let del = m.del(Some(r));
    want(del.ok, format!("second DEL: {}", del.stdout))
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

#[test]
fn upstream_examples_run_unchanged_or_name_an_unsupported_feature() {
    if !sriov_tests::netbed::is_root() {
        // Bed::new reports the skip (or fails in strict mode).
        assert!(Bed::new("upstream_examples").is_none());
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let Some(root) = unpack(tmp.path()) else {
        return;
    };
    let examples = upstream_examples(&root);
    let expected: BTreeMap<&str, (&str, &str)> = EXPECTED
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (name, rest) = l.split_once(char::is_whitespace).unwrap();
            let (vf, outcome) = rest.trim().split_once(char::is_whitespace).unwrap();
            (name, (vf, outcome.trim()))
        })
        .collect();
    let names: Vec<&str> = examples.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(
        names,
        expected.keys().copied().collect::<Vec<_>>(),
        "the examples found in {TARBALL} differ from upstream_examples.expected"
    );
    let nad = examples
        .iter()
        .find_map(|(_, _, e)| match e {
            Example::Netconf(c) => Some(c.clone()),
            Example::Requests(_) => None,
        })
        .expect("a netconf example");
    let unsupported = unsupported_section();
    let (mut report, mut bad) = (Vec::new(), Vec::new());
    for (n, (name, line, ex)) in examples.iter().enumerate() {
        let (vf, want) = expected[name.as_str()];
        let tag = format!("up{n}");
        let got = match ex {
            Example::Netconf(Value::Null) | Example::Requests(Value::Null) => {
                "invalid-json".to_string()
            }
            Example::Netconf(c) => outcome(c, None, vf == "vfio", &tag),
            Example::Requests(r) => {
                let r = r.get(0).cloned().unwrap_or_default();
                outcome(&nad, Some(&r), vf == "vfio", &tag)
            }
        };
        report.push(format!("{name} (line {line}) {vf} {got}"));
        let fine = match want.strip_prefix("unsupported ") {
            Some(feature) => got.contains(feature) && unsupported.contains(feature),
            None => got == want,
        };
        if !fine {
            bad.push(format!(
                "{name} (line {line}): expected {want:?}, got {got:?}"
            ));
        }
    }
    eprintln!("{}", report.join("\n"));
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}
