//! The real device plugin in the lab guest and the test kubelet's view of it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kubelet_proto::v1beta1::Device;
use kubelet_proto::HEALTHY;

use super::{secs, utc_now, Lab};
use crate::daemon::Plugin;
use crate::kubelet::TestKubelet;

pub const NETDEV: &str = "lab.sriov.io/igb_netdevice";
pub const VFIO: &str = "lab.sriov.io/igb_dpdk";
pub const DP_ROOT: &str = "/run/lab-dp";
/// Provisioning 4-6 VFs on the emulated NIC takes 3-8 s; the guest shares 2 busy host cores.
pub const READY: Duration = Duration::from_secs(120);
/// How long a SIGTERM'd plugin gets to exit.
pub const STOP: Duration = Duration::from_secs(15);

/// Start the real device plugin, every path under /run/lab-dp, its log appended to
/// `$LAB_OUT/device-plugin.log` after a `===== label: started at <UTC time> =====` line; stopped
/// with SIGTERM (up to [`STOP`]) when dropped.
fn start_plugin(lab: &Lab, config: &Path, label: &str) -> Plugin {
    for d in ["device-plugins", "devinfo", "cdi"] {
        fs::create_dir_all(Path::new(DP_ROOT).join(d)).unwrap();
    }
    let log = lab.log_path();
    let mut cmd = Command::new(lab.dp_bin());
    cmd.arg("--config")
        .arg(config)
        .args([
            "--device-plugins-dir",
            &format!("{DP_ROOT}/device-plugins"),
            "--plugins-registry-dir",
            &format!("{DP_ROOT}/plugins_registry"),
            "--registration",
            "kubelet",
            "--devinfo-dir",
            &format!("{DP_ROOT}/devinfo"),
            "--cdi-dir",
            &format!("{DP_ROOT}/cdi"),
        ])
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "debug".into()),
        );
    let plugin = Plugin::spawn_appending(cmd, &log, &format!("{label}: started at {}", utc_now()))
        .stop_on_drop(STOP);
    lab.note(&format!(
        "{label}: sriov-device-plugin pid {} (log {})",
        plugin.pid(),
        log.display()
    ));
    plugin
}

/// Write `value` to `path` the way config tools do: a new file renamed over the old one.
pub fn write_config(lab: &Lab, path: &Path, value: &serde_json::Value) {
    let tmp = path.with_extension("json.tmp");
    fs::write(&tmp, serde_json::to_vec_pretty(value).unwrap()).unwrap();
    fs::rename(&tmp, path).unwrap();
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let _ = fs::copy(path, lab.out.join(&name));
}

/// The config of scenarios 50 and 60: `numVfs` VFs on the PF (named by netdev), VF3 on
/// vfio-pci, the two lab pools selecting by driver.
pub fn provision_config(lab: &Lab, num_vfs: u32) -> serde_json::Value {
    serde_json::json!({
        "provision": [{"pf": lab.pf_if, "numVfs": num_vfs, "linkUp": true,
                       "vfDrivers": [{"vfs": "3", "driver": "vfio-pci"}]}],
        "resourceList": [
            {"resourceName": "igb_netdevice", "resourcePrefix": "lab.sriov.io",
             "selectors": {"vendors": ["8086"], "devices": ["10ca"], "drivers": ["igbvf"],
                           "rootDevices": [lab.pf_pci]}},
            {"resourceName": "igb_dpdk", "resourcePrefix": "lab.sriov.io",
             "selectors": {"vendors": ["8086"], "devices": ["10ca"], "drivers": ["vfio-pci"],
                           "rootDevices": [lab.pf_pci]}}
        ]
    })
}

/// The config file the lab plugin runs with (`/run/lab-dp/config/config.json`).
pub fn config_path() -> PathBuf {
    let dir = Path::new(DP_ROOT).join("config");
    fs::create_dir_all(&dir).unwrap();
    dir.join("config.json")
}

// --- the kubelet's view -----------------------------------------------------------------------

/// The devices' IDs, sorted.
pub fn ids(devs: &[Device]) -> Vec<String> {
    let mut v: Vec<String> = devs.iter().map(|d| d.id.clone()).collect();
    v.sort();
    v
}

/// `id health` of every device, sorted, comma-separated.
pub fn show(devs: &[Device]) -> String {
    let mut v: Vec<String> = devs
        .iter()
        .map(|d| format!("{} {}", d.id, d.health))
        .collect();
    v.sort();
    v.join(", ")
}

/// Whether every device has `health`.
pub fn all(devs: &[Device], health: &str) -> bool {
    devs.iter().all(|d| d.health == health)
}

/// A current-thread runtime for the test kubelet.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Wait for `n` devices in `resource`, all with `health`, from a ListAndWatch stream that
/// started after `since` (a registration newer than a previous plugin's).
pub async fn wait_pool(
    k: &TestKubelet,
    resource: &str,
    n: usize,
    health: &str,
    since: Instant,
    timeout: Duration,
) -> Result<Vec<Device>, String> {
    k.wait_for(
        &format!("{n} {health} devices in {resource}"),
        timeout,
        |k| {
            let r = k.resource(resource)?;
            if r.first_list_at? < since {
                return None;
            }
            r.devices.filter(|d| d.len() == n && all(d, health))
        },
    )
    .await
    .map_err(|e| {
        let now = k
            .resource(resource)
            .and_then(|r| r.devices)
            .map(|d| show(&d))
            .unwrap_or_else(|| "no list".into());
        format!("{e}; latest list: [{now}]")
    })
}

/// The latest device list of `resource` (empty before the first).
pub fn latest(k: &TestKubelet, resource: &str) -> Vec<Device> {
    k.resource(resource)
        .and_then(|r| r.devices)
        .unwrap_or_default()
}

/// ListAndWatch updates of `resource` so far.
pub fn updates(k: &TestKubelet, resource: &str) -> usize {
    k.resource(resource).map(|r| r.updates).unwrap_or(0)
}

/// Registrations of `resource` so far.
pub fn registrations(k: &TestKubelet, resource: &str) -> usize {
    k.registrations()
        .iter()
        .filter(|r| r.request.resource_name == resource)
        .count()
}

/// Start the plugin and wait until both pools are served with `n_netdev` + `n_vfio` Healthy
/// devices; returns the two lists.
pub async fn start_and_wait(
    lab: &mut Lab,
    k: &TestKubelet,
    config: &Path,
    label: &str,
    n_netdev: usize,
    n_vfio: usize,
) -> (Plugin, Vec<Device>, Vec<Device>) {
    let since = Instant::now();
    let plugin = start_plugin(lab, config, label);
    let mut lists = Vec::new();
    for (res, n) in [(NETDEV, n_netdev), (VFIO, n_vfio)] {
        let r = wait_pool(k, res, n, HEALTHY, since, READY).await;
        let ok = r.is_ok();
        let detail = r.as_ref().err().cloned().unwrap_or_default();
        if let Ok(d) = &r {
            lab.note(&format!(
                "{res}: [{}] {} after start",
                show(d),
                secs(since.elapsed())
            ));
        }
        lab.require(
            &format!("the test kubelet sees {n} Healthy device(s) in {res}"),
            ok,
            &format!("{detail}\n{}", tail(&plugin.log(), 30)),
        );
        lists.push(r.unwrap());
    }
    let vfio = lists.pop().unwrap();
    let netdev = lists.pop().unwrap();
    (plugin, netdev, vfio)
}

/// The last `n` lines of `s`, indented for a check's detail.
pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    let from = lines.len().saturating_sub(n);
    lines[from..]
        .iter()
        .map(|l| format!("          | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Sleep while the test kubelet keeps receiving (a plain sleep would stall its streams).
pub fn pause(rt: &tokio::runtime::Runtime, d: Duration) {
    rt.block_on(async { tokio::time::sleep(d).await });
}

/// The test kubelet on `/run/lab-dp/device-plugins`.
pub fn start_kubelet(rt: &tokio::runtime::Runtime) -> TestKubelet {
    let dir = Path::new(DP_ROOT).join("device-plugins");
    rt.block_on(TestKubelet::start(&dir))
}
