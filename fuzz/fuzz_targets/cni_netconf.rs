//! The CNI network config on stdin (and `CNI_ARGS`): no panic on any input, validation is
//! deterministic, and what it accepts satisfies the documented rules. Input: `CNI_ARGS`, a NUL
//! byte, the netconf (without a NUL byte, all of it is the netconf).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sriov_cni::env::CniArgs;
use sriov_cni::netconf::{peek, NetConf};
use sriov_host::{MacAddr, PciAddress};

fuzz_target!(|data: &[u8]| {
    let (args, raw) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&b""[..], data),
    };
    let args = match std::str::from_utf8(args).map(CniArgs::parse) {
        Ok(Ok(a)) => a,
        _ => CniArgs::default(),
    };
    // What every command does first, before validating: must never fail or panic.
    let _ = peek(raw);
    let v = sriov_cni::error_version(raw);
    assert!(v.parse::<sriov_cni::version::Version>().is_ok(), "{v}");

    let Ok(nc) = NetConf::parse(raw, &args) else {
        return;
    };
    let again = NetConf::parse(raw, &args).expect("validation is deterministic");
    assert_eq!(format!("{nc:?}"), format!("{again:?}"));

    let shown = nc.cni_version.to_string();
    assert_eq!(
        shown.parse::<sriov_cni::version::Version>().ok(),
        Some(nc.cni_version)
    );
    if let Some(d) = nc.device_id {
        assert_eq!(d.to_string().parse::<PciAddress>(), Ok(d));
    }
    let pf = &nc.pf;
    if let Some(m) = pf.mac {
        assert!(!m.is_zero() && !m.is_multicast(), "{m}");
        assert_eq!(m.to_string().parse::<MacAddr>().ok(), Some(m));
    }
    assert!(pf.vlan.is_none_or(|v| v <= 4094));
    if let Some(q) = pf.vlan_qos {
        assert!(q <= 7 && pf.vlan.is_some());
    }
    if let (Some(lo), Some(hi)) = (pf.min_tx_rate, pf.max_tx_rate) {
        assert!(hi == 0 || lo <= hi);
    }
    assert!(nc.mtu.is_none_or(|m| (68..=65535).contains(&m)));
    if let Some(t) = &nc.ipam_type {
        assert!(sriov_cni::env::valid_plugin_name(t), "{t:?}");
    }
    // The PF settings survive the state file's JSON round trip.
    let json = serde_json::to_string(pf).unwrap();
    assert_eq!(
        &serde_json::from_str::<sriov_cni::netconf::PfSettings>(&json).unwrap(),
        pf
    );
});
