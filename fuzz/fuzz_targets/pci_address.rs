//! `PciAddress` and `PciId`, the gates every device ID from outside passes (config, kubelet,
//! CNI netconf): no panic, and what parses prints back to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sriov_host::{PciAddress, PciId};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(a) = s.parse::<PciAddress>() {
        let shown = a.to_string();
        // Canonical form: the input itself, in lowercase (the parser accepts uppercase hex).
        assert_eq!(shown, s.to_ascii_lowercase(), "{s:?}");
        assert_eq!(shown.parse::<PciAddress>(), Ok(a));
        assert!(a.device() <= 0x1f && a.function() <= 7, "{a}");
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<PciAddress>(&json).unwrap(), a);
    }
    if let Ok(id) = s.parse::<PciId>() {
        let shown = id.to_string();
        assert_eq!(shown.len(), 4, "{s:?}");
        assert_eq!(shown.parse::<PciId>().unwrap(), id);
        assert_eq!(format!("0x{shown}").parse::<PciId>().unwrap(), id);
    }
});
