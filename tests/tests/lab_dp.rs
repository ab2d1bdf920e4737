//! The device plugin against the real igb, igbvf and vfio-pci drivers of the emulated lab.
//!
//! One test per lab scenario, each run inside the guest by its script:
//! `s10_provision_advertise` (tests/lab/scenarios/10-provision-advertise.sh), `s50_health`
//! (50-health.sh) and `s60_reload` (60-reload.sh). Each drives the real `sriov-device-plugin`
//! release binary (`$LAB_BIN/sriov-device-plugin`) with the test kubelet of this crate (real gRPC
//! over unix sockets) and reads the kernel's state back from sysfs. Built only with the `lab`
//! feature (scripts/lab.sh); outside the lab guest (no `SRIOV_LAB`, or no igb PF) every test
//! fails.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kubelet_proto::{HEALTHY, UNHEALTHY};
use sriov_tests::kubelet::TestKubelet;
use sriov_tests::lab::dp::*;
use sriov_tests::lab::*;

// --- scenario 10 ------------------------------------------------------------------------------

/// Scenario 10: provisioning from the shipped lab config (config-samples/igb-lab.json), two
/// pools advertised, Allocate of the vfio-pci VF, and a second run that changes nothing.
#[test]
fn s10_provision_advertise() {
    let mut lab = lab();
    let rt = runtime();

    lab.step("config: config-samples/igb-lab.json (provision 4 VFs, VF3 vfio-pci; two pools)");
    let repo = std::env::var("LAB_REPO").unwrap_or_else(|_| ".".into());
    let sample: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(Path::new(&repo).join("config-samples/igb-lab.json")).unwrap(),
    )
    .unwrap();
    lab.require(
        "the sample's PF address is this guest's igb PF",
        sample["provision"][0]["pf"] == lab.pf_pci.as_str(),
        &format!(
            "sample has {}, guest PF is {}",
            sample["provision"][0]["pf"], lab.pf_pci
        ),
    );
    let config = config_path();
    write_config(&lab, &config, &sample);
    lab.check(
        "before: PF is down and has no VFs",
        !lab.pf_up() && lab.num_vfs() == 0,
        &format!("up={} numvfs={}", lab.pf_up(), lab.num_vfs()),
    );

    lab.step("first run: the test kubelet, then the plugin");
    let k = start_kubelet(&rt);
    let (mut plugin, netdev, vfio) =
        rt.block_on(start_and_wait(&mut lab, &k, &config, "run 1", 3, 1));
    lab.print_vfs();
    let vfs = lab.vfs();
    lab.check("the plugin brought the PF up", lab.pf_up(), "PF still down");
    lab.check(
        "sriov_numvfs is 4",
        lab.num_vfs() == 4 && vfs.len() == 4,
        &format!("numvfs {} ({} virtfn links)", lab.num_vfs(), vfs.len()),
    );
    let on = |i: usize, d: &str| vfs.get(i).and_then(|v| v.driver.as_deref()) == Some(d);
    lab.check(
        "VF0-2 on igbvf with a netdev each",
        (0..3).all(|i| on(i, "igbvf") && vfs[i].netdev.is_some()),
        &format!("{vfs:?}"),
    );
    lab.require("VF3 on vfio-pci", on(3, "vfio-pci"), &format!("{vfs:?}"));
    let want_netdev: Vec<String> = vfs[..3].iter().map(|v| v.pci.clone()).collect();
    lab.check(
        &format!("{NETDEV} holds VF0-2"),
        ids(&netdev) == want_netdev,
        &format!("got {:?}, want {want_netdev:?}", ids(&netdev)),
    );
    lab.check(
        &format!("{VFIO} holds VF3"),
        ids(&vfio) == vec![vfs[3].pci.clone()],
        &format!("got {:?}", ids(&vfio)),
    );
    lab.check(
        "run 1 log: VFs created and VF3 bound to vfio-pci",
        !plugin.log_lines(&["vfs created"]).is_empty()
            && !plugin
                .log_lines(&["vf driver bound", "vfio-pci"])
                .is_empty(),
        &tail(&plugin.log(), 30),
    );

    lab.step("Allocate VF3 from the vfio pool");
    let vf3 = vfs[3].clone();
    let group = vf3.group.clone().unwrap_or_default();
    let dev_node = format!("/dev/vfio/{group}");
    match rt.block_on(k.allocate(VFIO, &[vf3.pci.as_str()])) {
        Ok(resp) => {
            let mut specs: Vec<String> = resp
                .devices
                .iter()
                .map(|d| {
                    format!(
                        "{} -> {} ({})",
                        d.host_path, d.container_path, d.permissions
                    )
                })
                .collect();
            specs.sort();
            lab.note(&format!("device specs: {}", specs.join(", ")));
            let mut envs: Vec<String> = resp.envs.iter().map(|(k, v)| format!("{k}={v}")).collect();
            envs.sort();
            for e in &envs {
                lab.note(&format!("env {e}"));
            }
            lab.check(
                &format!("Allocate returns the device spec {dev_node} (VF3's IOMMU group)"),
                !group.is_empty() && resp.devices.iter().any(|d| d.host_path == dev_node),
                &specs.join(", "),
            );
            lab.check(
                &format!("{dev_node} exists in this guest"),
                Path::new(&dev_node).exists(),
                "missing",
            );
            lab.check(
                "PCIDEVICE_LAB_SRIOV_IO_IGB_DPDK names VF3",
                resp.envs.get("PCIDEVICE_LAB_SRIOV_IO_IGB_DPDK") == Some(&vf3.pci),
                &envs.join(" "),
            );
            let info = resp
                .envs
                .get("PCIDEVICE_LAB_SRIOV_IO_IGB_DPDK_INFO")
                .cloned()
                .unwrap_or_default();
            lab.check(
                &format!("the _INFO env names {dev_node}"),
                info.contains(&format!("\"dev-mount\":\"{dev_node}\"")),
                &info,
            );
        }
        Err(e) => lab.check("Allocate of VF3", false, &e.to_string()),
    }

    lab.step("second run with the same config: nothing re-created");
    let before = lab.vfs();
    let vfio_ino = inode(&dev_node);
    let t = Instant::now();
    let clean = plugin.stop(STOP);
    lab.check(
        &format!(
            "run 1 stops cleanly on SIGTERM (exited after {})",
            secs(t.elapsed())
        ),
        clean,
        "non-zero exit",
    );
    drop(plugin);
    let (plugin2, netdev2, vfio2) =
        rt.block_on(start_and_wait(&mut lab, &k, &config, "run 2", 3, 1));
    lab.print_vfs();
    let after = lab.vfs();
    lab.check(
        "sriov_numvfs still 4; VF addresses, drivers, netdev names, ifindexes and MACs unchanged",
        before == after,
        &format!("before {before:?}\nafter  {after:?}"),
    );
    lab.check(
        &format!("{dev_node} is the same node (VF3 was not re-bound)"),
        vfio_ino.is_some() && inode(&dev_node) == vfio_ino,
        &format!("inode {vfio_ino:?} -> {:?}", inode(&dev_node)),
    );
    lab.check(
        "the same devices are advertised",
        ids(&netdev2) == ids(&netdev) && ids(&vfio2) == ids(&vfio),
        &format!("{:?} {:?}", ids(&netdev2), ids(&vfio2)),
    );
    let changes: Vec<String> = [
        "vfs created",
        "vfs removed",
        "vf driver bound",
        "link brought up",
    ]
    .iter()
    .flat_map(|w| plugin2.log_lines(&[w]))
    .collect();
    lab.check(
        "run 2 log: no VF created, removed or re-bound, PF link untouched",
        changes.is_empty(),
        &changes.join("\n"),
    );
    let said = plugin2.log_lines(&["already provisioned"]);
    for l in &said {
        lab.note(&format!("log: {l}"));
    }
    lab.check(
        "run 2 log says the PF was already provisioned",
        !said.is_empty(),
        &tail(&plugin2.log(), 30),
    );
    lab.finish();
}

fn inode(p: &str) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(p).ok().map(|m| m.ino())
}

// --- scenario 50 ------------------------------------------------------------------------------

/// After the PF went down (`pf_up` false) or up, wait for both pools (3 netdev VFs, 1 vfio VF)
/// to be all Unhealthy or all Healthy in the updates since `since`, noting each pool's devices and
/// the time since `t`, and checking each.
fn every_device_follows_pf(
    lab: &mut Lab,
    rt: &tokio::runtime::Runtime,
    k: &TestKubelet,
    pf_up: bool,
    since: Instant,
    t: Instant,
) {
    let (health, timeout, after, expect) = if pf_up {
        (HEALTHY, 60, "PF up", "Healthy again after PF up")
    } else {
        (UNHEALTHY, 30, "PF down", "Unhealthy after PF down")
    };
    for (res, n) in [(NETDEV, 3), (VFIO, 1)] {
        let timeout = Duration::from_secs(timeout);
        let r = rt.block_on(wait_pool(k, res, n, health, since, timeout));
        match &r {
            Ok(d) => lab.note(&format!(
                "{res}: [{}] {} after {after}",
                show(d),
                secs(t.elapsed())
            )),
            Err(e) => lab.note(e),
        }
        lab.check(
            &format!("every device of {res} {expect}"),
            r.is_ok(),
            r.as_ref().err().map(String::as_str).unwrap_or(""),
        );
    }
}

/// Scenario 50: device health follows the PF link, for both pools.
#[test]
fn s50_health() {
    let mut lab = lab();
    let rt = runtime();

    lab.step("plugin: provision 4 VFs (VF3 vfio-pci), two pools");
    let config = config_path();
    write_config(&lab, &config, &provision_config(&lab, 4));
    let k = start_kubelet(&rt);
    let (mut plugin, _, _) = rt.block_on(start_and_wait(&mut lab, &k, &config, "health", 3, 1));
    lab.print_vfs();
    let vf_netdevs: Vec<String> = lab.vfs().iter().filter_map(|v| v.netdev.clone()).collect();
    for n in &vf_netdevs {
        let _ = Command::new("ip").args(["link", "set", n, "up"]).status();
    }

    for round in 1..=2 {
        lab.step(&format!("round {round}: ip link set {} down", lab.pf_if));
        let before = (updates(&k, NETDEV), updates(&k, VFIO));
        let t = Instant::now();
        sh("ip", &["link", "set", &lab.pf_if, "down"]);
        lab.note(&format!(
            "ip link set down returned after {}",
            secs(t.elapsed())
        ));
        let since = k.started_at.min(t);
        every_device_follows_pf(&mut lab, &rt, &k, false, since, t);
        lab.note(&format!(
            "ListAndWatch updates: {NETDEV} +{}, {VFIO} +{}",
            updates(&k, NETDEV) - before.0,
            updates(&k, VFIO) - before.1
        ));

        lab.step(&format!("round {round}: ip link set {} up", lab.pf_if));
        let t = Instant::now();
        sh("ip", &["link", "set", &lab.pf_if, "up"]);
        lab.note(&format!(
            "ip link set up returned after {}",
            secs(t.elapsed())
        ));
        every_device_follows_pf(&mut lab, &rt, &k, true, since, t);
        lab.note(&format!(
            "PF carrier {}, VF netdev carriers {:?} (igbvf regains carrier ~11 s after PF up)",
            read(format!("/sys/class/net/{}/carrier", lab.pf_if)),
            vf_netdevs
                .iter()
                .map(|n| read(format!("/sys/class/net/{n}/carrier")))
                .collect::<Vec<_>>()
        ));
    }

    lab.step("the plugin kept running and registered once per pool");
    let pid = plugin.pid();
    lab.check(
        &format!("pid {pid} still running"),
        plugin.alive(),
        "exited",
    );
    lab.check(
        "one registration per pool",
        registrations(&k, NETDEV) == 1 && registrations(&k, VFIO) == 1,
        &format!(
            "{} and {}",
            registrations(&k, NETDEV),
            registrations(&k, VFIO)
        ),
    );
    let health_lines = plugin.log_lines(&["health"]);
    for l in health_lines.iter().take(24) {
        lab.note(&format!("log: {l}"));
    }
    lab.finish();
}

// --- scenario 60 ------------------------------------------------------------------------------

const POD: &str = "pod60";
const POD_IP: &str = "10.56.217.";

/// Scenario 60: numVfs changed live with nothing allocated; refused while a VF is in a pod.
#[test]
fn s60_reload() {
    let mut lab = lab();
    let rt = runtime();

    lab.step("plugin: provision 4 VFs (VF3 vfio-pci), two pools");
    let config = config_path();
    write_config(&lab, &config, &provision_config(&lab, 4));
    let k = start_kubelet(&rt);
    let (mut plugin, _, _) = rt.block_on(start_and_wait(&mut lab, &k, &config, "reload", 3, 1));
    let pid = plugin.pid();
    lab.print_vfs();

    lab.step("config rewritten: numVfs 4 -> 6, nothing allocated");
    let t = Instant::now();
    write_config(&lab, &config, &provision_config(&lab, 6));
    let mut lists = Vec::new();
    for (res, n) in [(NETDEV, 5), (VFIO, 1)] {
        let r = rt.block_on(wait_pool(&k, res, n, HEALTHY, k.started_at, READY));
        if let Ok(d) = &r {
            lab.note(&format!(
                "{res}: [{}] {} after the write",
                show(d),
                secs(t.elapsed())
            ));
        }
        lab.require(
            &format!("{n} Healthy device(s) in {res} without a restart"),
            r.is_ok(),
            &format!(
                "{}\n{}",
                r.as_ref().err().cloned().unwrap_or_default(),
                tail(&plugin.log(), 30)
            ),
        );
        lists.push(r.unwrap());
    }
    lab.print_vfs();
    for l in plugin.log_lines(&["provisioned"]) {
        lab.note(&format!("log: {l}"));
    }
    for l in plugin.log_lines(&["config applied"]) {
        lab.note(&format!("log: {l}"));
    }
    let vfs = lab.vfs();
    lab.check(
        &format!("same process (pid {pid}), no re-registration"),
        plugin.alive()
            && plugin.pid() == pid
            && registrations(&k, NETDEV) == 1
            && registrations(&k, VFIO) == 1,
        &format!(
            "running={} registrations {} {}",
            plugin.alive(),
            registrations(&k, NETDEV),
            registrations(&k, VFIO)
        ),
    );
    lab.check(
        "sriov_numvfs is 6; VF3 on vfio-pci, the others on igbvf",
        lab.num_vfs() == 6
            && vfs.len() == 6
            && vfs.iter().all(|v| {
                v.driver.as_deref() == Some(if v.index == 3 { "vfio-pci" } else { "igbvf" })
            }),
        &format!("{vfs:?}"),
    );
    let want: Vec<String> = vfs
        .iter()
        .filter(|v| v.index != 3)
        .map(|v| v.pci.clone())
        .collect();
    lab.check(
        &format!("{NETDEV} holds VF0-2 and VF4-5"),
        ids(&lists[0]) == want,
        &format!("got {:?}, want {want:?}", ids(&lists[0])),
    );

    lab.step("VF0 into a pod: Allocate, then the sriov CNI ADD (vlan 100, host-local IP)");
    let vf0 = vfs[0].clone();
    if let Err(e) = rt.block_on(k.allocate(NETDEV, &[vf0.pci.as_str()])) {
        lab.check("Allocate of VF0", false, &e.to_string());
    }
    let _ = Command::new("ip")
        .args(["netns", "del", POD])
        .stderr(Stdio::null())
        .status();
    sh("ip", &["netns", "add", POD]);
    sh("ip", &["-n", POD, "link", "set", "lo", "up"]);
    let add = cni_add(&lab, &vf0.pci);
    lab.require(
        "CNI ADD of VF0 into the pod",
        add.is_ok(),
        add.as_ref().err().map(String::as_str).unwrap_or(""),
    );
    let pod_addr = || sh("ip", &["-n", POD, "-br", "addr", "show", "net1"]);
    let addr_before = pod_addr();
    let vf0_line = lab.vf_line(0);
    lab.note(&format!("pod {POD}: {}", addr_before.trim()));
    lab.note(&format!("PF view: {vf0_line}"));
    lab.check(
        "VF0 is net1 in the pod with its IP, vlan 100 on the PF",
        addr_before.contains(POD_IP) && vf0_line.contains("vlan 100"),
        &format!("{addr_before} / {vf0_line}"),
    );
    lab.check(
        "VF0's netdev is gone from the host namespace",
        lab.vfs()[0].netdev.is_none(),
        "still in the host",
    );
    let lists_before = (latest(&k, NETDEV), latest(&k, VFIO));
    let updates_before = (updates(&k, NETDEV), updates(&k, VFIO));

    lab.step("config rewritten: numVfs 6 -> 4 while VF0 is in the pod");
    let t = Instant::now();
    write_config(&lab, &config, &provision_config(&lab, 4));
    let refused = {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let l = plugin.log_lines(&["refused", &vf0.pci]);
            if !l.is_empty() || Instant::now() > deadline {
                break l;
            }
            pause(&rt, Duration::from_millis(100));
        }
    };
    for l in &refused {
        lab.note(&format!("log: {l}"));
    }
    lab.check(
        &format!(
            "the plugin log refuses the change naming VF0 ({}) {}",
            vf0.pci,
            if refused.is_empty() {
                String::new()
            } else {
                format!("({} after the write)", secs(t.elapsed()))
            }
        ),
        !refused.is_empty(),
        &tail(&plugin.log(), 30),
    );
    let names_pod = refused.iter().any(|l| {
        l.contains(POD)
            || l.contains("network namespace")
            || l.contains("netns")
            || l.contains("pod")
    });
    lab.check(
        "the refusal says the VF is in a pod / network namespace",
        names_pod,
        &refused.join("\n"),
    );
    // Give a wrongly applied change time to show (VF re-creation takes seconds here).
    pause(&rt, Duration::from_secs(5));
    lab.check(
        "sriov_numvfs stays 6",
        lab.num_vfs() == 6,
        &format!("numvfs {}", lab.num_vfs()),
    );
    let addr_after = pod_addr();
    lab.check(
        "the pod's VF keeps its netdev and IP",
        addr_after == addr_before,
        &format!("{addr_before} -> {addr_after}"),
    );
    lab.check(
        "the pod's VF keeps its PF-side settings",
        lab.vf_line(0) == vf0_line,
        &format!("{vf0_line} -> {}", lab.vf_line(0)),
    );
    let lists_after = (latest(&k, NETDEV), latest(&k, VFIO));
    lab.check(
        "the advertised devices do not change",
        ids(&lists_after.0) == ids(&lists_before.0)
            && ids(&lists_after.1) == ids(&lists_before.1)
            && all(&lists_after.0, HEALTHY)
            && all(&lists_after.1, HEALTHY),
        &format!("{} / {}", show(&lists_after.0), show(&lists_after.1)),
    );
    let vf1 = vfs[1].pci.clone();
    let served = rt.block_on(k.allocate(NETDEV, &[vf1.as_str()]));
    lab.check(
        &format!("the running pool still serves: Allocate of VF1 ({vf1}) succeeds"),
        served
            .as_ref()
            .is_ok_and(|r| r.envs.values().any(|v| v.contains(&vf1))),
        &format!("{served:?}"),
    );
    lab.note(&format!(
        "ListAndWatch updates since the write: {NETDEV} +{}, {VFIO} +{}",
        updates(&k, NETDEV) - updates_before.0,
        updates(&k, VFIO) - updates_before.1
    ));
    lab.check(
        &format!("same process (pid {pid}), still registered once"),
        plugin.alive() && registrations(&k, NETDEV) == 1,
        "restarted or re-registered",
    );

    lab.step("without the plugin, the kernel does not protect the pod");
    let t = Instant::now();
    let clean = plugin.stop(STOP);
    lab.check(
        &format!(
            "plugin stops cleanly on SIGTERM (exited after {})",
            secs(t.elapsed())
        ),
        clean,
        "non-zero exit",
    );
    let wrote = fs::write(lab.pf_sys.join("sriov_numvfs"), "0");
    lab.note(&format!(
        "echo 0 > sriov_numvfs with VF0 in the pod: {}",
        match &wrote {
            Ok(()) => "accepted".to_string(),
            Err(e) => format!("refused: {e}"),
        }
    ));
    let gone = Command::new("ip")
        .args(["-n", POD, "link", "show", "net1"])
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(false);
    lab.check(
        "the kernel accepted it and the pod lost net1 (so the refusal above was the plugin's)",
        wrote.is_ok() && gone,
        &format!("write {wrote:?}, net1 gone: {gone}"),
    );
    let _ = Command::new("ip").args(["netns", "del", POD]).status();
    lab.finish();
}

/// The sriov CNI plugin's ADD of `vf` into the pod as net1, like a runtime runs it.
fn cni_add(lab: &Lab, vf: &str) -> Result<String, String> {
    let conf = serde_json::json!({
        "cniVersion": "1.0.0", "name": "lab-net", "type": "sriov", "deviceID": vf,
        "vlan": 100, "spoofchk": "on",
        "ipam": {"type": "host-local", "subnet": "10.56.217.0/24",
                 "dataDir": "/run/lab-cni/ipam"}
    });
    fs::create_dir_all("/run/lab-cni").unwrap();
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(lab.out.join("cni.log"))
        .unwrap();
    let mut child = Command::new(lab.bin.join("sriov"))
        .env("CNI_COMMAND", "ADD")
        .env("CNI_CONTAINERID", POD)
        .env("CNI_NETNS", format!("/run/netns/{POD}"))
        .env("CNI_IFNAME", "net1")
        .env("CNI_PATH", "/usr/lib/cni")
        .env("SRIOV_CNI_STATE_DIR", "/run/lab-cni")
        .env("RUST_LOG", "debug")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&serde_json::to_vec(&conf).unwrap())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let _ = fs::write(lab.out.join("cni-add.json"), &stdout);
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!("exit {}: {stdout} (stderr in cni.log)", out.status))
    }
}
