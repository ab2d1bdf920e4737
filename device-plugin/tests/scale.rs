//! Start-up time and idle memory on a 1,024-VF node (4 PFs x 256 VFs). Prints its numbers; the
//! bounds asserted are loose (debug builds on a busy CI machine).

mod common;

use std::time::{Duration, Instant};

use common::*;
use sriov_tests::fakesys::scale_tree;
use sriov_tests::kubelet::TestKubelet;

#[tokio::test]
async fn start_to_first_list_and_idle_rss_with_1024_vfs() {
    let t = Instant::now();
    let tree = scale_tree(4, 256);
    eprintln!("fake tree with 1024 VFs built in {:?}", t.elapsed());
    let bed = Bed::with_tree(
        tree,
        &serde_json::json!({"resourceList": [
            {"resourceName": "iavf", "selectors": {"vendors": ["8086"], "drivers": ["iavf"]}}
        ]}),
    );
    let kubelet = TestKubelet::start(&bed.dp_dir()).await;
    let plugin = bed.spawn("kubelet");
    let devs = kubelet
        .wait_for_devices(
            "intel.com/iavf",
            |d| d.len() == 1024,
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    let first = kubelet
        .resource("intel.com/iavf")
        .and_then(|r| r.first_list_at)
        .unwrap();
    let start_to_list = first.duration_since(plugin.started);
    assert!(devs.windows(2).all(|w| w[0].id < w[1].id), "sorted");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss = plugin.rss_kib();
    eprintln!(
        "1024 VFs: process start -> first complete ListAndWatch {start_to_list:?}; idle RSS {rss} KiB"
    );
    assert!(start_to_list < Duration::from_secs(30));
    assert!(rss < 100 * 1024, "{rss} KiB");
}
