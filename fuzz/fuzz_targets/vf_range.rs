//! VF index lists (`"0-3,6"`), alone and in the selector syntax that carries them
//! (`pfNames: ["ens1f0#0-3,6"]`, `rootDevices: ["0000:03:00.0#0-3"]`): no panic, what parses
//! prints back to the same set, and every index is within range.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sriov_device_plugin::selectors::Selector;
use sriov_host::range::MAX_INDEX;
use sriov_host::IndexSet;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(set) = s.parse::<IndexSet>() {
        assert!(!set.is_empty(), "{s:?}");
        assert!(set.max().is_some_and(|m| m <= MAX_INDEX), "{s:?}");
        let shown = set.to_string();
        assert_eq!(
            shown.parse::<IndexSet>().unwrap(),
            set,
            "{s:?} -> {shown:?}"
        );
        assert_eq!(set.iter().count(), set.len());
    }
    for key in ["pfNames", "rootDevices"] {
        let v = serde_json::json!({ key: [s] });
        let Ok(sel) = Selector::parse(&v) else {
            continue;
        };
        let (pf, vfs) = match key {
            "pfNames" => {
                let r = &sel.pf_names[0];
                (r.pf.clone(), r.vfs.clone())
            }
            _ => {
                let r = &sel.root_devices[0];
                (r.pf.to_string(), r.vfs.clone())
            }
        };
        // The part before '#' is the PF, the rest its VF range; printed back, it parses the same.
        match s.split_once('#') {
            Some((p, _)) => {
                assert!(vfs.is_some(), "{s:?}");
                if key == "pfNames" {
                    assert_eq!(pf, p, "{s:?}");
                }
            }
            None => assert!(vfs.is_none(), "{s:?}"),
        }
        let again = match &vfs {
            Some(set) => format!("{pf}#{set}"),
            None => pf,
        };
        let sel2 = Selector::parse(&serde_json::json!({ key: [again] }))
            .unwrap_or_else(|e| panic!("{s:?} printed back as {again:?}: {e:?}"));
        assert_eq!(sel2, sel, "{s:?}");
    }
});
