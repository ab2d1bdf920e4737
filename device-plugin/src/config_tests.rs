use serde_json::json;

use super::*;

fn parse(v: Value) -> Result<Config, ConfigError> {
    Config::from_value(&v, "intel.com")
}

fn err(v: Value) -> String {
    parse(v).unwrap_err().to_string()
}

#[test]
fn parses_the_akraino_ps225_pool() {
    let c = parse(json!({"resourceList": [{
        "resourceName": "ps225_sriov_netdevice",
        "resourcePrefix": "arm.com",
        "selectors": {"vendors": ["14e4"], "devices": ["d800"], "drivers": ["bnxt_en"], "pfNames": ["enp8s0f0np0"]}
    }]}))
    .unwrap();
    let p = &c.pools[0];
    assert_eq!(p.resource.to_string(), "arm.com/ps225_sriov_netdevice");
    assert_eq!(p.device_type, DeviceType::NetDevice);
    assert_eq!(p.selectors.len(), 1);
    assert_eq!(p.selectors[0].drivers, vec!["bnxt_en"]);
    assert_eq!(p.allocation_policy, AllocationPolicy::Packed);
    assert!(c.provision.is_empty());
}

#[test]
fn default_prefix_and_selector_lists() {
    let c = parse(json!({"resourceList": [{
        "resourceName": "mixed",
        "deviceType": "accelerator",
        "excludeTopology": true,
        "allocationPolicy": "spread",
        "selectors": [{"vendors": ["8086"]}, {"pciAddresses": ["0000:03:00.1"]}],
        "additionalInfo": {"*": {"token": "t"}, "0000:03:00.1": {"token": "u", "x": "y"}}
    }]}))
    .unwrap();
    let p = &c.pools[0];
    assert_eq!(p.resource.to_string(), "intel.com/mixed");
    assert_eq!(p.device_type, DeviceType::Accelerator);
    assert!(p.exclude_topology);
    assert_eq!(p.allocation_policy, AllocationPolicy::Spread);
    assert_eq!(p.selectors.len(), 2);
    assert_eq!(p.extra_for("0000:03:00.1")["token"], "u");
    assert_eq!(p.extra_for("0000:03:00.1")["x"], "y");
    assert_eq!(p.extra_for("0000:03:00.2")["token"], "t");
}

#[test]
fn flat_additional_info_applies_to_every_device() {
    let c = parse(json!({"resourceList": [{"resourceName": "a", "selectors": {}, "additionalInfo": {"k": "v"}}]})).unwrap();
    assert_eq!(c.pools[0].extra_for("0000:00:00.0")["k"], "v");
}

#[test]
fn a_selector_that_is_not_an_object_is_named_by_its_position() {
    let e = err(json!({"resourceList": [{"resourceName": "p", "selectors": [{}, "x"]}]}));
    assert!(
        e.contains("selectors[1]: expected an object, got \"x\""),
        "{e}"
    );
    let e = err(json!({"resourceList": [{"resourceName": "p", "selectors": [{"isRdma": 1}]}]}));
    assert!(
        e.contains("selectors[0].isRdma: expected true or false"),
        "{e}"
    );
}

#[test]
fn unknown_keys_suggest_the_closest_known_one() {
    let e = err(json!({"resourceList": [{"resourceName": "p", "selectors": {"pfName": ["x"]}}]}));
    assert!(e.contains("pool \"p\""), "{e}");
    assert!(e.contains("selectors.pfName"), "{e}");
    assert!(e.contains("did you mean \"pfNames\""), "{e}");
    let e =
        err(json!({"resourceList": [{"resourceName": "p", "selectors": [{}, {"vendor": ["x"]}]}]}));
    assert!(
        e.contains("selectors[1].vendor") && e.contains("did you mean \"vendors\""),
        "{e}"
    );
    let e = err(json!({"resourceList": [{"resourceName": "p", "selector": {}}]}));
    assert!(e.contains("did you mean \"selectors\""), "{e}");
    let e = err(json!({"resourceLists": []}));
    assert!(e.contains("did you mean \"resourceList\""), "{e}");
    let e = err(json!({"resourceList": [{"resourceName": "p", "selectors": {"zzzzzzzzzzzz": 1}}]}));
    assert!(e.contains("known keys: vendors"), "{e}");
}

#[test]
fn bad_values_name_pool_key_and_expectation() {
    let e = err(
        json!({"resourceList": [{"resourceName": "p", "selectors": {"pfNames": ["ens1f0#3-1"]}}]}),
    );
    assert!(
        e.contains("pool \"p\": selectors.pfNames") && e.contains("reversed"),
        "{e}"
    );
    let e = err(
        json!({"resourceList": [{"resourceName": "p", "selectors": {"rootDevices": ["0000:03:00.0#a"]}}]}),
    );
    assert!(
        e.contains("selectors.rootDevices") && e.contains("not a number"),
        "{e}"
    );
    let e = err(
        json!({"resourceList": [{"resourceName": "p", "selectors": {"rootDevices": ["03:00.0"]}}]}),
    );
    assert!(e.contains("invalid PCI address"), "{e}");
    let e = err(json!({"resourceList": [{"resourceName": "p", "selectors": {"vendors": ["zz"]}}]}));
    assert!(
        e.contains("selectors.vendors") && e.contains("invalid PCI ID"),
        "{e}"
    );
    let e = err(json!({"resourceList": [{"resourceName": "p", "selectors": {"isRdma": "yes"}}]}));
    assert!(
        e.contains("selectors.isRdma: expected true or false"),
        "{e}"
    );
    let e = err(json!({"resourceList": [{"resourceName": "p", "selectors": {"drivers": 3}}]}));
    assert!(e.contains("expected a list of strings"), "{e}");
    let e = err(json!({"resourceList": [{"resourceName": "p", "selectors": "x"}]}));
    assert!(e.contains("expected an object or a list of objects"), "{e}");
    let e = err(
        json!({"resourceList": [{"resourceName": "p", "deviceType": "auxNetDevice", "selectors": {}}]}),
    );
    assert!(
        e.contains("deviceType") && e.contains("\"netDevice\" or \"accelerator\""),
        "{e}"
    );
    let e = err(
        json!({"resourceList": [{"resourceName": "p", "allocationPolicy": "random", "selectors": {}}]}),
    );
    assert!(
        e.contains("allocationPolicy") && e.contains("packed"),
        "{e}"
    );
    let e = err(
        json!({"resourceList": [{"resourceName": "p", "selectors": {"linkTypes": ["token-ring"]}}]}),
    );
    assert!(e.contains("unknown link type"), "{e}");
    let e = err(json!({"resourceList": [{"resourceName": "p"}]}));
    assert!(e.contains("selectors: missing"), "{e}");
}

#[test]
fn bad_resource_names_and_duplicates() {
    let e = err(json!({"resourceList": [{"resourceName": "bad/name", "selectors": {}}]}));
    assert!(
        e.contains("resourceName") && e.contains("invalid resource name"),
        "{e}"
    );
    let e = err(
        json!({"resourceList": [{"resourceName": "ok", "resourcePrefix": "Bad_Prefix", "selectors": {}}]}),
    );
    assert!(
        e.contains("resourcePrefix") && e.contains("DNS subdomain"),
        "{e}"
    );
    let e = err(json!({"resourceList": [{"selectors": {}}]}));
    assert!(
        e.contains("resourceList[0]") && e.contains("resourceName: missing"),
        "{e}"
    );
    let e = err(json!({"resourceList": [
        {"resourceName": "a", "resourcePrefix": "arm.com", "selectors": {}},
        {"resourceName": "a", "resourcePrefix": "arm.com", "selectors": {}}
    ]}));
    assert!(e.contains("\"arm.com/a\" is defined twice"), "{e}");
    // Same name, different prefixes: two pools.
    assert!(parse(json!({"resourceList": [
        {"resourceName": "a", "resourcePrefix": "arm.com", "selectors": {}},
        {"resourceName": "a", "selectors": {}}
    ]}))
    .is_ok());
}

#[test]
fn parses_provision() {
    let c = parse(json!({"resourceList": [], "provision": [{
        "pf": "enp3s0f0np0", "numVfs": 8, "linkUp": true,
        "vfDrivers": [{"vfs": "0-5", "driver": "bnxt_en"}, {"vfs": "6,7", "driver": "vfio-pci"}]
    }]}))
    .unwrap();
    let p = &c.provision[0];
    assert_eq!(p.num_vfs, 8);
    assert!(p.link_up);
    assert_eq!(p.vf_drivers[1].vfs.to_string(), "6-7");
    assert_eq!(p.vf_drivers[1].driver, "vfio-pci");
    let e = err(json!({"resourceList": [], "provision": [{"pf": "x", "numVfs": -1}]}));
    assert!(e.contains("provision[0].numVfs"), "{e}");
    let e = err(
        json!({"resourceList": [], "provision": [{"pf": "x", "numVfs": 1, "vfDrivers": [{"vfs": "9-1", "driver": "d"}]}]}),
    );
    assert!(
        e.contains("provision[0].vfDrivers[0].vfs") && e.contains("reversed"),
        "{e}"
    );
    let e = err(json!({"resourceList": [], "provision": [{"pf": "x", "numVF": 1}]}));
    assert!(e.contains("did you mean \"numVfs\""), "{e}");
}

#[test]
fn provision_parses_into_the_library_request_and_driver_names_follow_its_one_rule() {
    use sriov_host::provision::{PfRef, ProvisionRequest};
    let c = parse(json!({"resourceList": [], "provision": [
        {"pf": "0000:03:00.0", "numVfs": 2, "vfDrivers": [{"vfs": "0-1", "driver": "vfio-pci"}]}
    ]}))
    .unwrap();
    let want: &ProvisionRequest = &c.provision[0];
    assert_eq!(want.pf, PfRef::Pci("0000:03:00.0".parse().unwrap()));
    // Names the library would refuse at apply time are refused when the config is parsed.
    for bad in ["vfio pci", "a/b", ".hidden", "..", "", "drv\n"] {
        let e = err(json!({"resourceList": [], "provision": [
            {"pf": "x", "numVfs": 1, "vfDrivers": [{"vfs": "0", "driver": bad}]}
        ]}));
        assert!(
            e.contains("provision[0].vfDrivers[0].driver") && e.contains("invalid driver name"),
            "{bad:?}: {e}"
        );
    }
}

#[test]
fn load_reports_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.json");
    std::fs::write(&p, "{not json").unwrap();
    let e = Config::load(&p, "intel.com").unwrap_err().to_string();
    assert!(e.contains("c.json") && e.contains("not valid JSON"), "{e}");
    std::fs::write(
        &p,
        r#"{"resourceList":[{"resourceName":"p","selectors":{"pfName":[]}}]}"#,
    )
    .unwrap();
    let e = Config::load(&p, "intel.com").unwrap_err().to_string();
    assert!(
        e.starts_with("config ") && e.contains("did you mean"),
        "{e}"
    );
}

#[test]
fn read_config_takes_regular_files_up_to_the_limit_only() {
    let dir = tempfile::tempdir().unwrap();
    let ok = dir.path().join("ok.json");
    std::fs::write(&ok, "{}").unwrap();
    assert_eq!(read_config(&ok).unwrap(), b"{}");
    // A symlink is followed (a ConfigMap volume is symlinks).
    let link = dir.path().join("link.json");
    std::os::unix::fs::symlink(&ok, &link).unwrap();
    assert_eq!(read_config(&link).unwrap(), b"{}");

    let at_limit = dir.path().join("at.json");
    std::fs::File::create(&at_limit)
        .unwrap()
        .set_len(MAX_CONFIG_BYTES)
        .unwrap();
    assert_eq!(
        read_config(&at_limit).unwrap().len() as u64,
        MAX_CONFIG_BYTES
    );
    let over = dir.path().join("over.json");
    std::fs::File::create(&over)
        .unwrap()
        .set_len(MAX_CONFIG_BYTES + 1)
        .unwrap();
    let e = read_config(&over).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "config {} is larger than the 4 MiB limit; a pool config is a few KiB",
            over.display()
        )
    );

    // A FIFO without a writer: refused at once, not waited on.
    let fifo = dir.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let e = read_config(&fifo).unwrap_err();
    assert!(
        e.to_string()
            .ends_with("is a FIFO, not a regular file; point --config at a JSON file"),
        "{e}"
    );
    let e = read_config(Path::new("/dev/zero")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "config /dev/zero is a character device, not a regular file; point --config at a JSON file"
    );
    let e = read_config(dir.path()).unwrap_err();
    assert!(e.to_string().contains("is a directory"), "{e}");
    assert!(matches!(
        Config::load(&fifo, "intel.com"),
        Err(ConfigError::NotRegular { .. })
    ));
}

/// Upstream's docs/config-file example, as upstream's Go structs marshal it: `IsRdma` and
/// `NeedVhostNet` capitalised, `SelectorObj: null`. Go's decoder matches keys in any case.
#[test]
fn upstream_marshalled_spellings_load() {
    let c = parse(json!({"resourceList": [{"resourceName": "sriovnics",
        "selectors": {"pfNames": ["ens785f0#0-4", "ens785f1#0-9"], "IsRdma": true,
                      "NeedVhostNet": false},
        "SelectorObj": null}]}))
    .unwrap();
    let s = &c.pools[0].selectors[0];
    assert!(s.is_rdma);
    assert_eq!(s.pf_names.len(), 2);
    let c = parse(
        json!({"ResourceList": [{"ResourceName": "p", "RESOURCEPREFIX": "x.io",
        "Selectors": [{"Drivers": ["iavf"]}], "SelectorObjs": [{"drivers": ["ice"]}]}]}),
    )
    .unwrap();
    assert_eq!(c.pools[0].resource.to_string(), "x.io/p");
    assert_eq!(c.pools[0].selectors[0].drivers, vec!["iavf"]);
}

#[test]
fn one_key_in_two_cases_is_refused() {
    let e = err(json!({"resourceList": [{"resourceName": "p",
        "selectors": {"isRdma": true, "IsRdma": false}}]}));
    assert!(e.contains("given twice") && e.contains("\"isRdma\""), "{e}");
    let e = err(
        json!({"resourceList": [{"resourceName": "p", "ResourceName": "q",
        "selectors": {}}]}),
    );
    assert!(e.contains("given twice"), "{e}");
}

#[test]
fn a_pool_with_many_mistakes_reports_them_in_key_order() {
    let mut pool = json!({
        "bogus": 1,
        "resourceName": 7,
        "resourcePrefix": 7,
        "deviceType": "gpu",
        "excludeTopology": "yes",
        "selectors": 3,
        "additionalInfo": 4,
        "allocationPolicy": "dense"
    });
    // Each step fixes the mistake reported, and the next one in the fixed order shows.
    let steps: &[(&str, &str, Option<Value>)] = &[
        ("resourceList[0]", "bogus", None),
        ("resourceList[0]", "resourceName", Some(json!("a"))),
        ("a", "resourcePrefix", Some(json!("x.com"))),
        ("a", "deviceType", None),
        ("a", "excludeTopology", None),
        ("a", "selectors", Some(json!({}))),
        ("a", "additionalInfo", None),
        ("a", "allocationPolicy", None),
    ];
    for (label, key, fix) in steps {
        let e = err(json!({"resourceList": [pool.clone()]}));
        let want = format!("pool {label:?}: {key}: ");
        assert!(e.starts_with(&want), "expected {want:?}..., got {e:?}");
        let obj = pool.as_object_mut().unwrap();
        match fix {
            Some(v) => obj.insert(key.to_string(), v.clone()),
            None => obj.remove(*key),
        };
    }
    parse(json!({"resourceList": [pool]})).unwrap();
}

#[test]
fn key_errors_keep_their_exact_text() {
    let sel = json!({"vendors": ["8086"]});
    let cases = [
        json!({"resourceList": [], "bogus": 1}),
        json!({"resourceList": [], "provision": [3]}),
        json!({"resourceList": [], "provision": [{"pf": "x", "numVfs": -1}]}),
        json!({"resourceList": [], "provision": [{"pf": "x", "numVfs": 1, "vfDrivers": [{"vfs": "0", "drivr": "x"}]}]}),
        json!({"resourceList": [{"resourceName": "a", "selectors": sel, "additionalInfo": {"*": {"k": 1}}}]}),
        json!({"resourceList": [{"resourceName": "a", "selectors": sel, "additionalInfo": 3}]}),
        json!({"resourceList": [{"resourceName": "a", "ResourceName": "b", "selectors": sel}]}),
    ];
    let got: Vec<String> = cases.into_iter().map(err).collect();
    assert_eq!(
        got,
        [
            "bogus: unknown key (known keys: resourceList, provision)",
            "provision[0]: expected an object, got 3",
            "provision[0].numVfs: expected a non-negative integer, got -1",
            "provision[0].vfDrivers[0].drivr: unknown key (did you mean \"driver\"?)",
            "pool \"a\": additionalInfo.*.k: expected a string, got 1",
            "pool \"a\": additionalInfo: expected an object, got 3",
            "pool \"a\": resourceName: given twice, as \"resourceName\" in another case: keep one",
        ]
    );
}
