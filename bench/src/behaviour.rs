//! The behaviour table: one row per edge case, ours and upstream sriov-cni (veth-bed build) each
//! run it on a fresh bed. Ours is asserted (a row where ours misbehaves fails the run); upstream's
//! column is recorded as it came out.

use std::path::Path;

use anyhow::{bail, Result};
use serde_json::{json, Value};
use sriov_tests::netbed::{ip, Att, Bed, BedVf};

use crate::peers_cni::{exec, peers, Kind, Peer, Ran, Stage};
use crate::report::Section;
use crate::Settings;

/// One bed, its stage and VF 0, for one case and one plugin.
struct Case<'a> {
    bed: Bed,
    stage: Stage,
    vf: BedVf,
    peer: &'a Peer,
}

impl Case<'_> {
    fn conf(&self, extra: Value) -> Value {
        self.peer.conf(&self.vf.pci, &self.vf.netdev, &extra)
    }
    fn run(&self, cmd: &str, conf: &Value, id: &str, netns: Option<&Path>, ifname: &str) -> Ran {
        self.run_raw(cmd, conf.to_string().as_bytes(), id, netns, ifname, &[])
    }
    fn run_raw(
        &self,
        cmd: &str,
        body: &[u8],
        id: &str,
        netns: Option<&Path>,
        ifname: &str,
        wrap: &[&str],
    ) -> Ran {
        let att = Att {
            container_id: id,
            netns,
            ifname,
        };
        exec(&self.bed, &self.stage, self.peer, cmd, body, &att, wrap).unwrap_or_else(|e| Ran {
            ok: false,
            killed: false,
            stdout: String::new(),
            stderr: format!("driver: {e:#}"),
            json: Value::Null,
            wall: Default::default(),
            cpu: Default::default(),
        })
    }
    /// The VF netdev is back in the host netns under its own name and MAC.
    fn vf_home(&self) -> bool {
        self.bed
            .link(None, &self.vf.netdev)
            .is_some_and(|l| l.mac == self.vf.mac)
    }
    fn home(&self) -> &'static str {
        if self.vf_home() {
            "VF home"
        } else {
            "VF NOT home"
        }
    }
    /// Links in `pod` besides `lo`.
    fn in_pod(&self, pod: &Path) -> Vec<String> {
        self.bed
            .links(Some(pod))
            .into_iter()
            .map(|l| l.name)
            .filter(|n| n != "lo")
            .collect()
    }
}

type Outcome = (String, bool);
type CaseFn = fn(&Case) -> Outcome;

fn with_prev(conf: &Value, add: &Ran) -> Value {
    let mut c = conf.clone();
    if add.ok {
        c["prevResult"] = add.json.clone();
    }
    c
}

fn del_twice(c: &Case) -> Outcome {
    let pod = c.bed.pod("p");
    let conf = c.conf(json!({}));
    let add = c.run("ADD", &conf, "c1", Some(&pod), "net1");
    let conf = with_prev(&conf, &add);
    let d1 = c.run("DEL", &conf, "c1", Some(&pod), "net1");
    let d2 = c.run("DEL", &conf, "c1", Some(&pod), "net1");
    let good = add.ok && d1.ok && d2.ok && c.vf_home();
    (
        format!(
            "DEL: {}; DEL again: {}; {}",
            d1.summary(),
            d2.summary(),
            c.home()
        ),
        good,
    )
}

fn del_netns_gone(c: &Case) -> Outcome {
    let pod = c.bed.pod("p");
    let conf = c.conf(json!({}));
    let add = c.run("ADD", &conf, "c1", Some(&pod), "net1");
    c.bed.delete_pod(&pod);
    let conf = with_prev(&conf, &add);
    let d = c.run("DEL", &conf, "c1", Some(&pod), "net1");
    let again = c.run("DEL", &conf, "c1", Some(&pod), "net1");
    (
        format!("DEL: {}; DEL again: {}", d.summary(), again.summary()),
        add.ok && d.ok && again.ok,
    )
}

fn dpdk_del(c: &Case) -> Outcome {
    // VF 1: upstream counts VFs up to sriov_numvfs, so indexes must be contiguous.
    let pci = c.bed.add_dpdk_vf(1);
    let pod = c.bed.pod("p");
    let conf = c.peer.conf(&pci, "", &json!({}));
    let add = c.run("ADD", &conf, "c1", Some(&pod), "net1");
    let conf = with_prev(&conf, &add);
    let d = c.run("DEL", &conf, "c1", Some(&pod), "net1");
    let d2 = c.run("DEL", &conf, "c1", Some(&pod), "net1");
    (
        format!(
            "ADD: {}; DEL: {}; DEL again: {}",
            add.summary(),
            d.summary(),
            d2.summary()
        ),
        add.ok && d.ok && d2.ok,
    )
}

fn rollback(c: &Case) -> Outcome {
    // The route's gateway is not on the address's subnet: the route fails after the VF moved
    // and got its address, i.e. half way through ADD.
    let pod = c.bed.pod("p");
    let ipam = json!({"type": "static", "addresses": [{"address": "10.9.9.2/24"}],
                      "routes": [{"dst": "10.50.0.0/16", "gw": "192.168.77.1"}]});
    let bad = c.conf(json!({"ipam": ipam}));
    let add = c.run("ADD", &bad, "c1", Some(&pod), "net1");
    let left = c.in_pod(&pod);
    let home = c.home();
    let back = c.vf_home();
    let good_conf = c.conf(json!({}));
    let again = c.run("ADD", &good_conf, "c2", Some(&pod), "net1");
    let d = c.run(
        "DEL",
        &with_prev(&good_conf, &again),
        "c2",
        Some(&pod),
        "net1",
    );
    (
        format!(
            "ADD: {}; {home}, pod has {left:?}; next ADD: {}",
            add.summary(),
            again.summary()
        ),
        !add.ok && back && left.is_empty() && again.ok && d.ok,
    )
}

fn in_use(c: &Case) -> Outcome {
    let (p1, p2) = (c.bed.pod("p1"), c.bed.pod("p2"));
    let conf = c.conf(json!({}));
    let a1 = c.run("ADD", &conf, "c1", Some(&p1), "net1");
    let a2 = c.run("ADD", &conf, "c2", Some(&p2), "net1");
    let still = c.in_pod(&p1) == ["net1"];
    // The loser's DEL (the runtime cleans up a failed ADD) must not release the winner's VF.
    let d2 = c.run("DEL", &conf, "c2", Some(&p2), "net1");
    let still_after = c.in_pod(&p1) == ["net1"];
    let d1 = c.run("DEL", &with_prev(&conf, &a1), "c1", Some(&p1), "net1");
    (
        format!(
            "2nd ADD: {}; loser's DEL: {}; 1st pod keeps it: {}",
            a2.summary(),
            d2.summary(),
            if still && still_after { "yes" } else { "NO" }
        ),
        a1.ok && !a2.ok && still && still_after && d1.ok && c.vf_home(),
    )
}

/// A refused ADD: it fails and the VF has not moved.
fn refused(c: &Case, add: &Ran) -> Outcome {
    let home = c.vf_home();
    (
        format!("{}; {}", add.summary(), c.home()),
        !add.ok && !add.killed && home,
    )
}

fn bad_container_id(c: &Case) -> Outcome {
    let pod = c.bed.pod("p");
    let add = c.run("ADD", &c.conf(json!({})), "../../x", Some(&pod), "net1");
    refused(c, &add)
}

fn bad_ifname(c: &Case) -> Outcome {
    let pod = c.bed.pod("p");
    let add = c.run("ADD", &c.conf(json!({})), "c1", Some(&pod), "../x");
    refused(c, &add)
}

fn log_outside(c: &Case) -> Outcome {
    // /var/lib is the stage's tmpfs: whatever the plugin writes there stays private.
    let pod = c.bed.pod("p");
    let conf = c.conf(json!({"logFile": "/var/lib/outside.log", "logLevel": "debug"}));
    let add = c.run("ADD", &conf, "c1", Some(&pod), "net1");
    let written = c.stage.root().join("var/lib/outside.log").exists();
    let d = c.run("DEL", &with_prev(&conf, &add), "c1", Some(&pod), "net1");
    (
        format!(
            "ADD: {}; file written: {}; DEL: {}",
            add.summary(),
            if written { "yes" } else { "no" },
            d.summary()
        ),
        !written && c.vf_home(),
    )
}

fn ifname_taken(c: &Case) -> Outcome {
    let pod = c.bed.pod("p");
    let add = c.run("ADD", &c.conf(json!({})), "c1", Some(&pod), "lo");
    refused(c, &add)
}

fn host_netns(c: &Case) -> Outcome {
    let host = Path::new("/run/netns").join(&c.bed.host);
    let add = c.run("ADD", &c.conf(json!({})), "c1", Some(&host), "net1");
    let home = c.vf_home();
    let d = c.run("DEL", &c.conf(json!({})), "c1", Some(&host), "net1");
    (
        format!("{}; {}; DEL: {}", add.summary(), c.home(), d.summary()),
        !add.ok && home && c.vf_home(),
    )
}

fn bad_mac(c: &Case) -> Outcome {
    let pod = c.bed.pod("p");
    let add = c.run(
        "ADD",
        &c.conf(json!({"mac": "02:00:zz"})),
        "c1",
        Some(&pod),
        "net1",
    );
    refused(c, &add)
}

fn bad_vlan(c: &Case) -> Outcome {
    let pod = c.bed.pod("p");
    let add = c.run(
        "ADD",
        &c.conf(json!({"vlan": 5000})),
        "c1",
        Some(&pod),
        "net1",
    );
    refused(c, &add)
}

fn oversize(c: &Case) -> Outcome {
    // Bounded either way: refused up front with a config error (code 7), nothing changed, or
    // handled and undone by DEL; no crash, no hang.
    let pod = c.bed.pod("p");
    let conf = c.conf(json!({"pad": "x".repeat(4 << 20)}));
    let add = c.run("ADD", &conf, "c1", Some(&pod), "net1");
    let d = c.run("DEL", &conf, "c1", Some(&pod), "net1");
    (
        format!(
            "ADD: {} (CPU {:.0} ms); DEL: {}; {}",
            add.summary(),
            add.cpu.as_secs_f64() * 1e3,
            d.summary(),
            c.home()
        ),
        !add.killed && (d.ok || (!add.ok && add.code() == Some(7))) && c.vf_home(),
    )
}

fn check_drift(c: &Case) -> Outcome {
    let pod = c.bed.pod("p");
    let conf = c.conf(json!({}));
    let add = c.run("ADD", &conf, "c1", Some(&pod), "net1");
    let conf = with_prev(&conf, &add);
    let before = c.run("CHECK", &conf, "c1", Some(&pod), "net1");
    let ns = pod.file_name().map(|n| n.to_string_lossy().into_owned());
    let ns = ns.as_deref().unwrap_or("");
    ip(&["-n", ns, "link", "set", "net1", "down"]);
    ip(&["-n", ns, "link", "set", "net1", "name", "net9"]);
    let after = c.run("CHECK", &conf, "c1", Some(&pod), "net1");
    let d = c.run("DEL", &conf, "c1", Some(&pod), "net1");
    (
        format!(
            "CHECK: {}; after the pod renamed net1 to net9: {}; DEL: {}, {}",
            before.summary(),
            after.summary(),
            d.summary(),
            c.home()
        ),
        add.ok && before.ok && !after.ok && d.ok && c.vf_home(),
    )
}

fn gc_status(c: &Case) -> Outcome {
    let pod = c.bed.pod("p");
    let mut conf = c.conf(json!({}));
    conf["cniVersion"] = "1.1.0".into();
    let add = c.run("ADD", &conf, "c1", Some(&pod), "net1");
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "c1", "ifname": "net1"}]);
    let g = c.run("GC", &gc, "", None, "");
    let kept = c.in_pod(&pod) == ["net1"];
    let st = c.run("STATUS", &conf, "", None, "");
    let d = c.run("DEL", &with_prev(&conf, &add), "c1", Some(&pod), "net1");
    (
        format!(
            "GC: {} (valid attachment kept: {}); STATUS: {}",
            g.summary(),
            if kept { "yes" } else { "NO" },
            st.summary()
        ),
        add.ok && g.ok && kept && st.ok && d.ok && c.vf_home(),
    )
}

fn crash_then_del(c: &Case) -> Outcome {
    // Kill the plugin (SIGKILL through strace's fault injection) at its k-th setns, else its
    // k-th netlink send, for the first k that leaves the VF in the pod: a crash after the move,
    // before ADD finished.

    let conf = c.conf(json!({}));
    let body = conf.to_string();
    for (ci, calls) in ["setns", "sendto,sendmsg"].into_iter().enumerate() {
        for k in 1..=24 {
            let pod = c.bed.pod(&format!("k{ci}-{k}"));
            let inject = format!("inject={calls}:signal=SIGKILL:when={k}");
            let w = ["strace", "-f", "-qq", "-o", "/dev/null", "-e", &inject];
            let add = c.run_raw("ADD", body.as_bytes(), "c1", Some(&pod), "net1", &w);
            if add.ok {
                // Fewer than k such calls: clean up, try the next kind.
                c.run("DEL", &with_prev(&conf, &add), "c1", Some(&pod), "net1");
                break;
            }
            let moved = !c.vf_home() && !c.in_pod(&pod).is_empty();
            let d = c.run("DEL", &conf, "c1", Some(&pod), "net1");
            if moved {
                let home = c.vf_home();
                let again = c.run("ADD", &conf, "c2", Some(&pod), "net1");
                let d2 = c.run("DEL", &with_prev(&conf, &again), "c2", Some(&pod), "net1");
                return (
                    format!(
                        "killed at {calls} #{k} with the VF in the pod; DEL: {}, {}; next ADD: {}",
                        d.summary(),
                        if home { "VF home" } else { "VF NOT home" },
                        again.summary()
                    ),
                    d.ok && home && again.ok && d2.ok,
                );
            }
            if !c.vf_home() {
                return (
                    format!("VF lost after a kill at {calls} #{k}; DEL: {}", d.summary()),
                    false,
                );
            }
        }
    }
    ("no kill point found".into(), false)
}

const CASES: &[(&str, CaseFn)] = &[
    ("DEL twice", del_twice),
    ("DEL with the netns gone", del_netns_gone),
    ("DPDK-mode VF (vfio-pci): ADD, DEL, DEL", dpdk_del),
    (
        "ADD fails half way (route after the move): rollback",
        rollback,
    ),
    ("VF already in use by another pod", in_use),
    ("bad input: CNI_CONTAINERID ../../x", bad_container_id),
    ("bad input: CNI_IFNAME ../x", bad_ifname),
    ("bad input: logFile outside the log dir", log_outside),
    ("bad input: ifname the pod has (lo)", ifname_taken),
    ("bad input: CNI_NETNS is the host netns", host_netns),
    ("bad input: mac \"02:00:zz\"", bad_mac),
    ("bad input: vlan 5000", bad_vlan),
    ("bad input: 4 MiB netconf", oversize),
    ("CHECK after drift (the pod renames the VF)", check_drift),
    ("GC and STATUS (cniVersion 1.1.0)", gc_status),
    ("crash between ADD's steps, then DEL", crash_then_del),
];

/// The table. In `--quick` and full runs alike, a row where ours misbehaves fails the run.
pub fn table(s: &Settings) -> Result<Section> {
    let mut sec = Section::new(
        "Side by side with upstream: CNI behaviour",
        "Each case runs on a fresh bed for each plugin (same veth bed, same private mount \
         namespace as the timing tables). \"VF home\": the VF netdev is back in the host netns \
         under its own name and MAC. ✔/✘: whether the outcome is what we require of ours (the \
         VF ends where it belongs, bad input is refused before anything changes); ours must \
         get ✔ on every row, upstream's column is recorded.",
        &["case", "ours", "upstream v2.10.0 (patched*)"],
    );
    let all = peers(s)?;
    let cols: Vec<&Peer> = all.iter().filter(|p| p.kind != Kind::HostDevice).collect();
    if !sriov_tests::netbed::is_root() {
        sec.note("skipped: needs root (network namespaces)");
        return Ok(sec);
    }
    let mut failures = Vec::new();
    for (name, f) in CASES {
        let mut cells = vec![name.to_string()];
        for p in &cols {
            let Some(bed) = Bed::new("peers-behaviour") else {
                bail!("needs root");
            };
            let stage = Stage::new(bed.sys.root())?;
            let vf = bed.add_vf(0);
            let case = Case {
                bed,
                stage,
                vf,
                peer: p,
            };
            let (text, good) = f(&case);
            if p.kind == Kind::Ours && !good {
                failures.push(format!("{name}: {text}"));
            }
            cells.push(format!("{} {text}", if good { "✔" } else { "✘" }));
        }
        println!("  {} | {} | {}", cells[0], cells[1], cells[2]);
        sec.row(cells);
    }
    sec.note(
        "* upstream here is v2.10.0 with one lookup patched \
         (bench/peers/sriov-cni-v2.10.0-vethbed.patch) so it runs on a veth PF; nothing in these \
         cases goes through the patched line except ADD's saving of the VF's original state.",
    );
    if !failures.is_empty() {
        print!("{}", sec.text());
        bail!(
            "ours misbehaves in the behaviour table:\n  {}",
            failures.join("\n  ")
        );
    }
    Ok(sec)
}
