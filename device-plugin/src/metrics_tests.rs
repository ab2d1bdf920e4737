use std::time::Duration;

use serde_json::json;
use sriov_tests::fakesys::ps225_two_pfs;
use sriov_tests::promtext::{http_get, parse, Exposition};

use super::*;
use crate::config::Config;
use crate::pool::DeviceStatus;

fn shared() -> Arc<Metrics> {
    Arc::new(Metrics::new())
}

async fn get(addr: SocketAddr, path: &'static str) -> (u16, String, String) {
    tokio::task::spawn_blocking(move || http_get(addr, path))
        .await
        .unwrap()
        .unwrap()
}

async fn scrape(addr: SocketAddr) -> Exposition {
    let (code, ctype, body) = get(addr, "/metrics").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(ctype, CONTENT_TYPE);
    parse(&body).unwrap_or_else(|e| panic!("{e}\n{body}"))
}

fn pool(name: &str) -> Arc<Pool> {
    let f = ps225_two_pfs();
    let sysfs = f.sysfs();
    let devs = sriov_host::discovery::discover(&sysfs).unwrap();
    let c = Config::from_value(
        &json!({"resourceList": [{"resourceName": name, "selectors": {"drivers": ["vfio-pci"]}}]}),
        "arm.com",
    )
    .unwrap();
    let mut lists = crate::pool::assign(&sysfs, &devs, &c, &Default::default());
    Arc::new(Pool::new(c.pools[0].clone(), lists.remove(0)))
}

async fn wait_for(addr: SocketAddr, what: &str, mut f: impl FnMut(&Exposition) -> bool) {
    for _ in 0..200 {
        if f(&scrape(addr).await) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn serves_every_metric_with_names_labels_and_values_over_tcp() {
    let m = shared();
    let stop = CancellationToken::new();
    let (addr, task) = serve(m.clone(), "127.0.0.1:0".parse().unwrap(), stop.clone())
        .await
        .unwrap();
    assert!(addr.port() != 0);

    let p = pool("ps225_dpdk");
    let watch = spawn_pool_watch(m.clone(), &p, stop.clone());
    m.allocation("arm.com/ps225_dpdk", true);
    m.allocation("arm.com/ps225_dpdk", true);
    m.allocation("arm.com/ps225_dpdk", false);
    m.set_pf_vfs("0000:03:00.0", 8, 16);
    m.provision_run(true);
    m.provision_run(false);
    m.registration("arm.com/ps225_dpdk", "kubelet");
    m.registration("arm.com/ps225_dpdk", "kubelet");
    m.registration("arm.com/ps225_dpdk", "watcher");
    m.config_reload(true);
    m.config_reload(false);

    let res = "arm.com/ps225_dpdk";
    wait_for(addr, "device gauges", |e| {
        e.value(
            "sriov_dp_devices",
            &[("resource", res), ("health", "Healthy")],
        ) == Some(4.0)
    })
    .await;
    let e = scrape(addr).await;
    assert!(e.eof, "OpenMetrics text ends with # EOF");
    assert_eq!(
        e.value(
            "sriov_dp_devices",
            &[("resource", res), ("health", "Unhealthy")]
        ),
        Some(0.0)
    );
    assert_eq!(e.types["sriov_dp_devices"], "gauge");
    assert_eq!(
        e.value("sriov_dp_allocations_total", &[("resource", res)]),
        Some(2.0)
    );
    assert_eq!(e.types["sriov_dp_allocations"], "counter");
    assert_eq!(
        e.value("sriov_dp_allocation_failures_total", &[("resource", res)]),
        Some(1.0)
    );
    assert_eq!(
        e.value("sriov_dp_pf_num_vfs", &[("pf", "0000:03:00.0")]),
        Some(8.0)
    );
    assert_eq!(
        e.value("sriov_dp_pf_total_vfs", &[("pf", "0000:03:00.0")]),
        Some(16.0)
    );
    assert_eq!(e.value("sriov_dp_provision_runs_total", &[]), Some(2.0));
    assert_eq!(e.value("sriov_dp_provision_failures_total", &[]), Some(1.0));
    assert_eq!(e.value("sriov_dp_config_reloads_total", &[]), Some(2.0));
    assert_eq!(
        e.value("sriov_dp_config_reload_failures_total", &[]),
        Some(1.0)
    );
    assert_eq!(
        e.value("sriov_dp_config_last_reload_successful", &[]),
        Some(0.0)
    );
    assert_eq!(
        e.value(
            "sriov_dp_kubelet_registrations_total",
            &[("resource", res), ("mode", "kubelet")]
        ),
        Some(2.0)
    );
    assert_eq!(
        e.value(
            "sriov_dp_kubelet_registrations_total",
            &[("resource", res), ("mode", "watcher")]
        ),
        Some(1.0)
    );
    for name in e.types.keys() {
        assert!(name.starts_with("sriov_dp_"), "{name}");
        assert!(!e.help[name].is_empty(), "{name} has help");
    }

    // Health changes show up; a dropped pool's gauges go away.
    let mut list: Vec<DeviceStatus> = p.current();
    list[0].health = Health::Unhealthy;
    p.publish(list);
    wait_for(addr, "one unhealthy", |e| {
        e.value(
            "sriov_dp_devices",
            &[("resource", res), ("health", "Unhealthy")],
        ) == Some(1.0)
            && e.value(
                "sriov_dp_devices",
                &[("resource", res), ("health", "Healthy")],
            ) == Some(3.0)
    })
    .await;
    drop(p);
    tokio::time::timeout(Duration::from_secs(5), watch)
        .await
        .unwrap()
        .unwrap();
    assert!(scrape(addr).await.all("sriov_dp_devices").is_empty());

    let (code, _, body) = get(addr, "/healthz").await;
    assert_eq!((code, body.as_str()), (200, "ok\n"));
    let (code, _, _) = get(addr, "/nope").await;
    assert_eq!(code, 404);

    m.config_reload(true);
    let e = scrape(addr).await;
    assert_eq!(
        e.value("sriov_dp_config_last_reload_successful", &[]),
        Some(1.0)
    );

    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
    let refused = tokio::task::spawn_blocking(move || http_get(addr, "/healthz"))
        .await
        .unwrap();
    assert!(refused.is_err(), "no listener after stop");
}

#[tokio::test]
async fn a_busy_address_is_an_error() {
    let m = shared();
    let stop = CancellationToken::new();
    let (addr, _task) = serve(m.clone(), "127.0.0.1:0".parse().unwrap(), stop.clone())
        .await
        .unwrap();
    assert!(serve(m.clone(), addr, stop.clone()).await.is_err());
    stop.cancel();
}

#[test]
fn pf_counts_come_from_discovery() {
    let f = ps225_two_pfs();
    let devs = sriov_host::discovery::discover(&f.sysfs()).unwrap();
    let m = Metrics::new();
    m.record_pfs(&devs);
    let e = parse(&m.encode()).unwrap();
    assert_eq!(
        e.value("sriov_dp_pf_num_vfs", &[("pf", "0000:04:00.0")]),
        Some(8.0)
    );
    assert!(
        e.value("sriov_dp_pf_total_vfs", &[("pf", "0000:04:00.0")])
            .unwrap()
            >= 8.0
    );
}

#[test]
fn a_fresh_daemon_reports_its_config_as_good_and_no_error() {
    let m = shared();
    let e = parse(&m.encode()).unwrap();
    assert_eq!(
        e.value("sriov_dp_config_last_reload_successful", &[]),
        Some(1.0)
    );
    assert_eq!(e.value("sriov_dp_config_reloads_total", &[]), Some(0.0));
}

#[test]
fn a_connection_past_the_cap_closes_the_oldest() {
    let stop = CancellationToken::new();
    let mut open = OpenConnections::default();
    let tokens: Vec<(u64, CancellationToken)> =
        (0..MAX_CONNECTIONS).map(|_| open.admit(&stop)).collect();
    assert!(tokens.iter().all(|(_, t)| !t.is_cancelled()));
    let (newest, t) = open.admit(&stop);
    assert!(tokens[0].1.is_cancelled(), "the oldest is closed");
    assert!(tokens[1..].iter().all(|(_, t)| !t.is_cancelled()));
    assert_eq!(open.open.len(), MAX_CONNECTIONS);
    // A connection that ends on its own frees its place.
    open.remove(tokens[5].0);
    open.admit(&stop);
    assert!(!tokens[1].1.is_cancelled());
    open.remove(newest);
    assert!(!t.is_cancelled());
    stop.cancel();
    assert!(
        tokens[2].1.is_cancelled(),
        "stopping closes every connection"
    );
}
