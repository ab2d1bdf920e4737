//! Every CNI netconf sample parses and validates through the plugin's own netconf parser, with
//! the `deviceID` Multus would add.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use serde_json::Value;
use sriov_cni::env::CniArgs;
use sriov_cni::netconf::NetConf;

fn with_device(mut v: Value) -> Vec<u8> {
    v["deviceID"] = Value::String("0000:03:10.1".into());
    serde_json::to_vec(&v).unwrap()
}

#[test]
fn every_cni_sample_validates() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config-samples");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if !name.starts_with("cni-") {
            continue;
        }
        let v: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        let confs: Vec<Value> = if name.ends_with(".conflist") {
            let version = v["cniVersion"].clone();
            let net = v["name"].clone();
            v["plugins"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|c| c["type"] == "sriov")
                .map(|c| {
                    let mut c = c.clone();
                    c["cniVersion"] = version.clone();
                    c["name"] = net.clone();
                    c
                })
                .collect()
        } else {
            vec![v]
        };
        assert!(!confs.is_empty(), "{name}: no sriov plugin");
        for c in confs {
            NetConf::parse(&with_device(c), &CniArgs::default())
                .unwrap_or_else(|e| panic!("{name}: {e:?}"));
            n += 1;
        }
    }
    assert!(n >= 3, "{n} samples checked");
}
