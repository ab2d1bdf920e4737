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

#[test]
fn inventory_shows_the_provisioning_plan() {
    let bed = Bed::ps225();
    let mut config = ps225_config();
    config["provision"] = serde_json::json!([
        {"pf": "0000:03:00.0", "numVfs": 8},
        {"pf": "enp4s0f0np0", "numVfs": 20},
        {"pf": "enp99s0", "numVfs": 2}
    ]);
    bed.write_config(&config);
    let mut args = vec!["inventory".to_string()];
    args.extend(bed.args("kubelet"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();

    let (st, out, err) = run(&args);
    assert!(st.success(), "{err}");
    let plan: Vec<&str> = out
        .lines()
        .skip_while(|l| *l != "PROVISION")
        .skip(1)
        .collect();
    assert_eq!(plan.len(), 3, "{out}");
    assert_eq!(
        plan[0],
        "0000:03:00.0 (0000:03:00.0): numVfs 8 of 16, wanted 8: ok"
    );
    assert!(
        plan[1].starts_with("enp4s0f0np0 (0000:04:00.0): numVfs 8 of 16, wanted 20: numVfs 20 exceeds sriov_totalvfs 16; VF count differs"),
        "{}",
        plan[1]
    );
    assert!(
        plan[2].starts_with("enp99s0 (not found): numVfs ? of ?, wanted 2: no such PF"),
        "{}",
        plan[2]
    );

    let mut json_args = args.clone();
    json_args.push("--json");
    let (st, out, err) = run(&json_args);
    assert!(st.success(), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let row = |a: &str| {
        v.as_array()
            .unwrap()
            .iter()
            .find(|r| r["address"] == a)
            .unwrap()
            .clone()
    };
    let p0 = &row("0000:03:00.0")["provision"];
    assert_eq!(p0["wanted"], 8);
    assert_eq!(p0["num_vfs"], 8);
    assert_eq!(p0["problems"], serde_json::json!([]));
    let p1 = &row("0000:04:00.0")["provision"];
    assert_eq!(p1["pf"], "enp4s0f0np0");
    assert_eq!(p1["problems"][0], "numVfs 20 exceeds sriov_totalvfs 16");
    assert!(
        row("0000:03:10.0").get("provision").is_none(),
        "VFs carry none"
    );
    assert!(
        err.contains("provision: enp99s0 (not found)") && err.contains("no such PF"),
        "a plan row without a PF goes to stderr: {err}"
    );
}
