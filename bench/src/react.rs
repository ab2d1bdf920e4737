//! Reaction times of the device plugin: kubelet restart to re-registration, PF carrier loss to
//! an `Unhealthy` ListAndWatch update, config change to a new pool's registration.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use serde_json::json;
use sriov_tests::fakesys::FakeSysfs;
use sriov_tests::kubelet::TestKubelet;
use sriov_tests::netbed::{Bed, PF_NETDEV};

use crate::dp::{resource, split_config, tree_for, wait_all_listed, DpBed, PREFIX};
use crate::report::Section;
use crate::stats::{ms, Samples};
use crate::Settings;

/// Section 3.
pub async fn reactions(s: &Settings) -> Result<Section> {
    let mut sec = Section::new(
        "Device plugin reaction times",
        &format!(
            "Measured at the test kubelet from the moment the change is made. Kubelet restart: every \
             socket in the device-plugins directory deleted and kubelet.sock served again, {} times \
             (64 VFs, 3 pools). PF carrier: the plugin runs inside a throwaway netns whose PF netdev \
             is a veth (the VFs are fake vfio-pci VFs under it); the carrier drops when its peer goes \
             down, admin state when the PF itself is set down. Config change: a 4th pool added by \
             write-and-rename of the config file. Anything not seen within {} s is reported as such.",
            s.restarts,
            s.timeout_react.as_secs()
        ),
        &["event", "reaction p50", "p95 / max", "n", "reference (upstream)"],
    );
    restarts_and_config(s, &mut sec).await?;
    carrier(s, &mut sec).await?;
    Ok(sec)
}

async fn restarts_and_config(s: &Settings, sec: &mut Section) -> Result<()> {
    const POOLS: u32 = 4;
    let (tree, pfs, per_pf) = tree_for(64);
    let bed = DpBed::new(tree, &split_config(pfs, per_pf, POOLS, 1))?;
    let per_pool = (64 / POOLS) as usize;
    let mut k = TestKubelet::start(&bed.dp_dir()).await;
    let mut plugin = bed.spawn(&s.dp_bin, None)?;
    wait_all_listed(&k, POOLS - 1, per_pool, s.timeout).await?;
    let (mut reg, mut listed) = (Samples::new(), Samples::new());
    for r in 0..s.restarts {
        k.restart().await;
        let t0 = k.started_at;
        let want = r as usize + 2;
        let last_reg = k
            .wait_for("re-registration of every pool", s.timeout, |k| {
                let regs = k.registrations();
                let mut last: Option<Instant> = None;
                for q in 0..POOLS - 1 {
                    let mine: Vec<_> = regs
                        .iter()
                        .filter(|x| x.request.resource_name == resource(q))
                        .collect();
                    let at = mine.get(want - 1)?.at;
                    last = Some(last.map_or(at, |l| l.max(at)));
                }
                last
            })
            .await
            .map_err(|e| anyhow!("{e}\n{}", plugin.log_tail()))?;
        reg.push(last_reg.saturating_duration_since(t0));
        let l = wait_all_listed(&k, POOLS - 1, per_pool, s.timeout).await?;
        listed.push(l.saturating_duration_since(t0));
        plugin.check_alive()?;
    }
    sec.row(vec![
        "kubelet restart -> every pool re-registered".into(),
        format!("{} ms", ms(reg.median())),
        format!("{} / {} ms", ms(reg.pct(95.0)), ms(reg.max())),
        reg.len().to_string(),
        "checks its socket every 5 s: up to 5 s".into(),
    ]);
    sec.row(vec![
        "kubelet restart -> every pool listed again".into(),
        format!("{} ms", ms(listed.median())),
        format!("{} / {} ms", ms(listed.pct(95.0)), ms(listed.max())),
        listed.len().to_string(),
        "checks its socket every 5 s: up to 5 s".into(),
    ]);

    // Config change: add the 4th pool.
    let t0 = Instant::now();
    bed.write_config(&split_config(pfs, per_pf, POOLS, 0))?;
    let new = resource(POOLS - 1);
    let got = k
        .wait_for_registration(&new, 1, s.timeout_react)
        .await
        .ok()
        .map(|r| r.at.saturating_duration_since(t0));
    let exited = plugin.check_alive().is_err();
    let cell = match (got, exited) {
        (Some(d), _) => format!("{} ms", ms(d)),
        (None, true) => "process exited on config change".into(),
        (None, false) => format!(
            "not supported by this build (no registration within {} s)",
            s.timeout_react.as_secs()
        ),
    };
    sec.row(vec![
        "config change -> new pool registered".into(),
        cell,
        "-".into(),
        "1".into(),
        "read at start only: restart the pod".into(),
    ]);
    Ok(())
}

/// When every device of `res` was last seen with `health` (the waiter's wake-up, within
/// microseconds of the ListAndWatch message's arrival); `None` after `timeout`.
async fn wait_health(
    k: &TestKubelet,
    res: &str,
    health: &str,
    timeout: Duration,
) -> Option<Instant> {
    k.wait_for_devices(
        res,
        |d| !d.is_empty() && d.iter().all(|x| x.health == health),
        timeout,
    )
    .await
    .ok()?;
    Some(Instant::now())
}

async fn carrier(s: &Settings, sec: &mut Section) -> Result<()> {
    let reference = "device list sent once; health never re-sent";
    let Some(net) = Bed::new("bench-dp-health") else {
        sec.row(vec![
            "PF carrier down -> Unhealthy".into(),
            "skipped: needs root".into(),
            "-".into(),
            "0".into(),
            reference.into(),
        ]);
        return Ok(());
    };
    for i in 0..4 {
        net.add_dpdk_vf(i);
    }
    net.ip_host(&["link", "set", "pf0peer", "up"]);
    let res_name = "pfhealth";
    let res = format!("{PREFIX}/{res_name}");
    let config = json!({"resourceList": [{"resourceName": res_name, "resourcePrefix": PREFIX,
        "selectors": {"pfNames": [PF_NETDEV]}}]});
    let bed = DpBed::new(FakeSysfs::attach(net.sys.root()), &config)?;
    let k = TestKubelet::start(&bed.dp_dir()).await;
    let host = PathBuf::from("/run/netns").join(&net.host);
    let mut plugin = bed.spawn(&s.dp_bin, Some(&host))?;
    if wait_health(&k, &res, kubelet_proto::HEALTHY, s.timeout)
        .await
        .is_none()
    {
        bail!("{res}: never listed healthy\n{}", plugin.log_tail());
    }
    let cases: [(&str, [&str; 4], [&str; 4]); 2] = [
        (
            "PF carrier down (peer down) -> Unhealthy",
            ["link", "set", "pf0peer", "down"],
            ["link", "set", "pf0peer", "up"],
        ),
        (
            "PF admin down -> Unhealthy",
            ["link", "set", PF_NETDEV, "down"],
            ["link", "set", PF_NETDEV, "up"],
        ),
    ];
    let reps = s.restarts.clamp(1, 5);
    for (what, down, up) in cases {
        let (mut bad, mut good) = (Samples::new(), Samples::new());
        let mut missed = false;
        for _ in 0..reps {
            let t0 = Instant::now();
            net.ip_host(&down);
            let at = wait_health(&k, &res, kubelet_proto::UNHEALTHY, s.timeout_react).await;
            let t1 = Instant::now();
            net.ip_host(&up);
            let Some(at) = at else {
                missed = true;
                break;
            };
            bad.push(at - t0);
            match wait_health(&k, &res, kubelet_proto::HEALTHY, s.timeout_react).await {
                Some(at) => good.push(at - t1),
                None => bail!("{what}: devices stayed Unhealthy after the PF came back"),
            }
        }
        plugin.check_alive()?;
        if missed {
            sec.row(vec![
                what.into(),
                format!("not seen within {} s", s.timeout_react.as_secs()),
                "-".into(),
                "1".into(),
                reference.into(),
            ]);
            // Let the restored state settle before the next case.
            wait_health(&k, &res, kubelet_proto::HEALTHY, s.timeout).await;
            continue;
        }
        for (label, v) in [
            (what.to_string(), &bad),
            (
                what.replace("down", "up").replace("Unhealthy", "Healthy"),
                &good,
            ),
        ] {
            sec.row(vec![
                label,
                format!("{} ms", ms(v.median())),
                format!("{} / {} ms", ms(v.pct(95.0)), ms(v.max())),
                v.len().to_string(),
                reference.into(),
            ]);
        }
    }
    Ok(())
}
