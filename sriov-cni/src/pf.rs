//! PF-side VF settings: apply what the config asks for, restore what was recorded.

use nix::errno::Errno;
use sriov_host::netlink::{NetlinkError, VfInfo, VlanProto};
use sriov_host::MacAddr;

use crate::del::TeardownError;
use crate::error::{CniError, Result, PF_SETTING};
use crate::netconf::PfSettings;
use crate::vfops::VfOps;

fn refused(setting: &str, pf: &str, vf: u32, e: NetlinkError) -> CniError {
    let hint = if e.errno() == Some(Errno::EOPNOTSUPP) {
        ": the PF driver does not support this setting; remove it from the network config"
    } else {
        ""
    };
    CniError::new(
        PF_SETTING,
        format!("{setting}: PF {pf} refused the setting for VF {vf}: {e}{hint}"),
    )
}

/// Check that PF-side settings can be attempted at all: the PF has a netdev and reports VF info.
pub fn precheck(want: &PfSettings, pf: Option<&str>, orig: Option<&VfInfo>, vf: u32) -> Result<()> {
    let names = want.requested();
    if names.is_empty() {
        return Ok(());
    }
    let list = names.join(", ");
    let Some(pf) = pf else {
        return Err(CniError::new(
            PF_SETTING,
            format!("{list}: the VF's PF has no netdev in this network namespace, so PF-side VF settings cannot be applied"),
        ));
    };
    if orig.is_none() {
        return Err(CniError::new(
            PF_SETTING,
            format!("{list}: PF {pf} reports no VF info for VF {vf} (not an SR-IOV PF, or the driver does not expose VF settings)"),
        ));
    }
    Ok(())
}

/// Apply every requested setting except the MAC (see [`apply_mac`]), recording each one that
/// took effect in `applied` so that a failure part-way can be undone.
pub fn apply(
    nl: &mut impl VfOps,
    pf: &str,
    vf: u32,
    want: &PfSettings,
    orig: &VfInfo,
    applied: &mut PfSettings,
) -> Result<()> {
    if let Some(vlan) = want.vlan {
        let qos = want.vlan_qos.unwrap_or(0);
        let proto = want.vlan_proto.unwrap_or_default();
        // Recorded before the call: a driver may apply part of a VLAN change and then fail.
        applied.vlan = Some(vlan);
        applied.vlan_qos = Some(qos);
        applied.vlan_proto = Some(proto);
        nl.set_vf_vlan(pf, vf, vlan, qos, proto)
            .map_err(|e| refused("vlan", pf, vf, e))?;
    }
    if let Some(on) = want.spoofchk {
        nl.set_vf_spoofchk(pf, vf, on)
            .map_err(|e| refused("spoofchk", pf, vf, e))?;
        applied.spoofchk = Some(on);
    }
    if let Some(on) = want.trust {
        nl.set_vf_trust(pf, vf, on)
            .map_err(|e| refused("trust", pf, vf, e))?;
        applied.trust = Some(on);
    }
    if want.min_tx_rate.is_some() || want.max_tx_rate.is_some() {
        let min = want.min_tx_rate.unwrap_or(orig.min_tx_rate);
        let max = want.max_tx_rate.unwrap_or(orig.max_tx_rate);
        let name = if want.min_tx_rate.is_some() {
            "min_tx_rate"
        } else {
            "max_tx_rate"
        };
        nl.set_vf_rate(pf, vf, min, max)
            .map_err(|e| refused(name, pf, vf, e))?;
        applied.min_tx_rate = Some(min);
        applied.max_tx_rate = Some(max);
    }
    if let Some(st) = want.link_state {
        nl.set_vf_link_state(pf, vf, st)
            .map_err(|e| refused("link_state", pf, vf, e))?;
        applied.link_state = Some(st);
    }
    Ok(())
}

/// Set the VF's admin MAC on the PF. In kernel mode this comes after the VF netdev got the same
/// MAC: an untrusted VF cannot change its own MAC once the PF has set one.
pub fn apply_mac(
    nl: &mut impl VfOps,
    pf: &str,
    vf: u32,
    mac: MacAddr,
    applied: &mut PfSettings,
) -> Result<()> {
    nl.set_vf_mac(pf, vf, mac)
        .map_err(|e| refused("mac", pf, vf, e))?;
    applied.mac = Some(mac);
    Ok(())
}

/// Put the admin MAC back (first step of a restore: the VF netdev's own MAC can be restored only
/// after the PF lets go of the one ADD set).
///
/// When the recorded admin MAC is the VF netdev's own original MAC (`netdev_mac`), it was the
/// VF's MAC rather than one an administrator set: clear the admin MAC (zeros) so the VF owns its
/// MAC again, as before ADD; the netdev's MAC is restored next. A driver that refuses zeros gets
/// the recorded value. Otherwise (DPDK mode, or a distinct admin MAC) the recorded value is set.
///
/// Returns true when the admin MAC was cleared: the PF then shows zeros for the VF until the VF
/// driver sets its MAC again, so the netdev's MAC restore must reach the driver even when the
/// netdev already has that MAC (see [`temporary_mac`]).
pub fn restore_mac(
    nl: &mut impl VfOps,
    pf: &str,
    orig: &VfInfo,
    applied: &PfSettings,
    netdev_mac: Option<MacAddr>,
    errors: &mut Vec<TeardownError>,
) -> bool {
    if applied.mac.is_none() {
        return false;
    }
    if netdev_mac == Some(orig.mac) && !orig.mac.is_zero() {
        match nl.set_vf_mac(pf, orig.index, MacAddr::ZERO) {
            Ok(()) => return true,
            Err(e) => {
                tracing::debug!(error = %e, "PF refuses a zero admin MAC; setting the recorded one")
            }
        }
    }
    if let Err(e) = nl.set_vf_mac(pf, orig.index, orig.mac) {
        errors.push(TeardownError::PfSetting {
            pf: pf.to_string(),
            vf: orig.index,
            what: format!("admin MAC {}", orig.mac),
            source: e,
        });
    }
    false
}

/// A unicast, locally administered MAC that differs from `mac`, to pass through when a VF
/// netdev must be set to the MAC it already has. The kernel does not call the driver for an
/// unchanged address, so without a real change the VF driver never tells the PF its MAC (igb
/// then keeps showing 00:00:00:00:00:00 after the admin MAC was cleared).
pub fn temporary_mac(mac: MacAddr) -> MacAddr {
    let mut b = mac.0;
    b[0] = (b[0] | 0x02) & !0x01;
    b[5] ^= 0x01;
    MacAddr(b)
}

/// Restore every other applied setting to its recorded value, reporting each failure.
pub fn restore(
    nl: &mut impl VfOps,
    pf: &str,
    orig: &VfInfo,
    applied: &PfSettings,
    errors: &mut Vec<TeardownError>,
) {
    let vf = orig.index;
    let mut note = |what: &str, r: Result<(), NetlinkError>| {
        if let Err(e) = r {
            errors.push(TeardownError::PfSetting {
                pf: pf.to_string(),
                vf,
                what: what.to_string(),
                source: e,
            });
        }
    };
    if applied.link_state.is_some() {
        if let Some(st) = orig.link_state {
            note("link_state", nl.set_vf_link_state(pf, vf, st));
        }
    }
    if applied.min_tx_rate.is_some() || applied.max_tx_rate.is_some() {
        note(
            "rates",
            nl.set_vf_rate(pf, vf, orig.min_tx_rate, orig.max_tx_rate),
        );
    }
    if applied.trust.is_some() {
        if let Some(on) = orig.trust {
            note("trust", nl.set_vf_trust(pf, vf, on));
        }
    }
    if applied.spoofchk.is_some() {
        if let Some(on) = orig.spoofchk {
            note("spoofchk", nl.set_vf_spoofchk(pf, vf, on));
        }
    }
    if applied.vlan.is_some() {
        let proto = if orig.vlan == 0 {
            VlanProto::Dot1Q
        } else {
            orig.proto
        };
        note("vlan", nl.set_vf_vlan(pf, vf, orig.vlan, orig.qos, proto));
    }
}

/// Differences between what ADD applied and what the PF reports now.
pub fn drift(applied: &PfSettings, now: &VfInfo) -> Vec<String> {
    let mut out = Vec::new();
    let mut cmp = |name: &str, want: Option<String>, have: String| {
        if let Some(w) = want {
            if w != have {
                out.push(format!("{name} is {have}, expected {w}"));
            }
        }
    };
    cmp(
        "mac",
        applied.mac.map(|m| m.to_string()),
        now.mac.to_string(),
    );
    cmp(
        "vlan",
        applied.vlan.map(|v| v.to_string()),
        now.vlan.to_string(),
    );
    cmp(
        "vlanQoS",
        applied.vlan_qos.map(|v| v.to_string()),
        now.qos.to_string(),
    );
    cmp(
        "spoofchk",
        applied.spoofchk.map(|v| v.to_string()),
        format!("{:?}", now.spoofchk.unwrap_or(false)),
    );
    cmp(
        "trust",
        applied.trust.map(|v| v.to_string()),
        format!("{:?}", now.trust.unwrap_or(false)),
    );
    cmp(
        "link_state",
        applied.link_state.map(|v| v.to_string()),
        now.link_state.map(|v| v.to_string()).unwrap_or_default(),
    );
    cmp(
        "min_tx_rate",
        applied.min_tx_rate.map(|v| v.to_string()),
        now.min_tx_rate.to_string(),
    );
    cmp(
        "max_tx_rate",
        applied.max_tx_rate.map(|v| v.to_string()),
        now.max_tx_rate.to_string(),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_mac_differs_and_is_a_valid_unicast() {
        for m in [
            "9a:29:63:1c:a2:2d",
            "02:00:00:00:00:0a",
            "01:00:5e:00:00:01",
            "ff:ff:ff:ff:ff:ff",
        ] {
            let mac: MacAddr = m.parse().unwrap();
            let t = temporary_mac(mac);
            assert_ne!(t, mac, "{m}");
            assert!(!t.is_multicast() && !t.is_zero(), "{m} -> {t}");
            assert_eq!(t.0[0] & 0x02, 0x02, "locally administered: {t}");
            assert_eq!(temporary_mac(mac), t, "stable");
        }
    }
}
