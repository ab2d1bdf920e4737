//! Flags, exit codes and the inventory subcommand.

mod common;

use common::*;

#[test]
fn invalid_config_exits_2_naming_the_field() {
    let bed = Bed::ps225();
    bed.write_config(&serde_json::json!({"resourceList": [
        {"resourceName": "ps225_dpdk", "resourcePrefix": "arm.com", "selectors": {"pfName": ["enp3s0f0np0"]}}
    ]}));
    let (st, _, err) = run(&bed
        .args("kubelet")
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>());
    assert_eq!(st.code(), Some(2), "{err}");
    assert!(
        err.contains(
            "pool \"ps225_dpdk\": selectors.pfName: unknown key (did you mean \"pfNames\"?)"
        ),
        "{err}"
    );

    bed.write_config(&serde_json::json!({"resourceList": [
        {"resourceName": "ps225 dpdk", "selectors": {}}
    ]}));
    let (st, _, err) = run(&bed
        .args("kubelet")
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>());
    assert_eq!(st.code(), Some(2), "{err}");
    assert!(
        err.contains("resourceName: invalid resource name \"ps225 dpdk\""),
        "{err}"
    );
}

#[test]
fn missing_config_and_bad_flags_exit_2() {
    let (st, _, err) = run(&[
        "--config",
        "/nonexistent/config.json",
        "--registration",
        "kubelet",
    ]);
    assert_eq!(st.code(), Some(2), "{err}");
    assert!(err.contains("/nonexistent/config.json"), "{err}");
    let (st, _, _) = run(&["--registration", "sometimes"]);
    assert_eq!(st.code(), Some(2));
    let (st, _, _) = run(&["--no-such-flag"]);
    assert_eq!(st.code(), Some(2));
    let (st, _, err) = run(&["--metrics-addr", "localhost"]);
    assert_eq!(st.code(), Some(2), "{err}");
    assert!(err.contains("--metrics-addr"), "{err}");
}

#[test]
fn inventory_lists_pfs_and_vfs_with_pools() {
    let bed = Bed::ps225();
    let mut args = vec!["inventory".to_string()];
    args.extend(bed.args("kubelet"));
    args.push("--json".into());
    let (st, out, err) = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(st.success(), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 18);
    let pf = &rows[0];
    assert_eq!(pf["address"], "0000:03:00.0");
    assert_eq!(pf["role"], "pf");
    assert_eq!(pf["pool"], serde_json::Value::Null);
    let vf = rows
        .iter()
        .find(|r| r["address"] == "0000:04:10.7")
        .unwrap();
    assert_eq!(vf["pool"], DPDK);
    assert_eq!(vf["driver"], "vfio-pci");
    assert_eq!(vf["iommu_group"], 115);
    assert_eq!(vf["numa_node"], 1);
    assert!(vf["device_name"].as_str().unwrap().contains("PS225"));
    let vf0 = rows
        .iter()
        .find(|r| r["address"] == "0000:03:10.0")
        .unwrap();
    assert_eq!(vf0["pool"], NETDEV);

    args.pop();
    let (st, out, _) = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(st.success());
    assert!(out.starts_with("ADDRESS"), "{out}");
    let line = out.lines().find(|l| l.starts_with("0000:03:10.6")).unwrap();
    assert!(
        line.contains("vfio-pci") && line.contains(DPDK) && line.contains("14e4:d800"),
        "{line}"
    );
}
