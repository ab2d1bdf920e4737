//! The device plugin's config file (`resourceList` with selectors, `provision`): no panic on any
//! JSON, validation is deterministic, and what it accepts is safe to use: names that become
//! file names stay inside their directory, VF indexes are in range.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sriov_device_plugin::config::Config;
use sriov_host::range::MAX_INDEX;

fn plain_file_name(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains('/') && !s.contains('\0')
}

fuzz_target!(|data: &[u8]| {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let Ok(cfg) = Config::from_value(&v, "intel.com") else {
        return;
    };
    assert_eq!(Config::from_value(&v, "intel.com").ok(), Some(cfg.clone()));
    let mut seen = std::collections::HashSet::new();
    for p in &cfg.pools {
        assert!(
            seen.insert(p.resource.to_string()),
            "duplicate {}",
            p.resource
        );
        assert!(plain_file_name(&p.resource.socket_name()), "{}", p.resource);
        assert!(
            plain_file_name(&p.resource.devinfo_file("0000:03:00.1")),
            "{}",
            p.resource
        );
        let env = p.resource.env_name();
        assert!(
            env.bytes()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_'),
            "{env}"
        );
        for s in &p.selectors {
            let sets = s
                .pf_names
                .iter()
                .filter_map(|r| r.vfs.as_ref())
                .chain(s.root_devices.iter().filter_map(|r| r.vfs.as_ref()));
            for set in sets {
                assert!(set.max().is_some_and(|m| m <= MAX_INDEX));
            }
        }
    }
    for p in &cfg.provision {
        for d in &p.vf_drivers {
            assert!(d.vfs.max().is_some_and(|m| m <= MAX_INDEX));
        }
    }
});
