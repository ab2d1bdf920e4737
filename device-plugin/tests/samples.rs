//! Every device-plugin config sample loads through the plugin's own config loader, so a sample
//! can never rot.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use sriov_device_plugin::config::Config;

fn samples() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config-samples");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with("cni-"))
        .collect();
    v.sort();
    v
}

#[test]
fn every_config_sample_loads() {
    let files = samples();
    assert!(files.len() >= 6, "samples found: {files:?}");
    for f in files {
        let cfg = Config::load(&f, "intel.com").unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        assert!(!cfg.pools.is_empty(), "{}: no pools", f.display());
        eprintln!("{}: {} pools", f.display(), cfg.pools.len());
    }
}

#[test]
fn the_deployed_configmap_carries_the_ps225_sample() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let cm = std::fs::read_to_string(root.join("deploy/sriovdp-configmap.yaml")).unwrap();
    let sample: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("config-samples/ps225.json")).unwrap())
            .unwrap();
    // The ConfigMap embeds config.json as a literal block: find the JSON object in it.
    let start = cm.find('{').unwrap();
    let end = cm.rfind('}').unwrap();
    let embedded: serde_json::Value = serde_json::from_str(&cm[start..=end]).unwrap();
    assert_eq!(embedded, sample);
}
