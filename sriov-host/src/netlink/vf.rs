//! A VF's admin state as its PF reports it, in our own serializable types.

use netlink_packet_route::link::{
    LinkVfInfo, VfInfo as NlVfInfo, VfLinkState as NlState, VfVlan, VlanProtocol,
};
use serde::{Deserialize, Serialize};

use crate::mac::MacAddr;

/// VLAN tag protocol of a VF's port VLAN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum VlanProto {
    /// 802.1Q (TPID 0x8100), the default.
    #[default]
    #[serde(rename = "802.1q")]
    Dot1Q,
    /// 802.1ad (TPID 0x88a8), a service tag for QinQ.
    #[serde(rename = "802.1ad")]
    Dot1Ad,
}

impl std::fmt::Display for VlanProto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            VlanProto::Dot1Q => "802.1q",
            VlanProto::Dot1Ad => "802.1ad",
        })
    }
}

/// The PF-side link state of a VF.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VfLinkState {
    /// Follow the PF's link.
    Auto,
    /// Always up, whatever the PF's link.
    Enable,
    /// Always down.
    Disable,
}

impl std::fmt::Display for VfLinkState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            VfLinkState::Auto => "auto",
            VfLinkState::Enable => "enable",
            VfLinkState::Disable => "disable",
        })
    }
}

/// One VF's admin state. Fields the driver does not report are `None`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct VfInfo {
    /// The VF index on the PF.
    pub index: u32,
    /// The administrative MAC ([`MacAddr::ZERO`] when unset).
    pub mac: MacAddr,
    /// The port VLAN ID, 0 for none.
    pub vlan: u16,
    /// The 802.1p priority (0-7) of the port VLAN.
    pub qos: u8,
    /// The port VLAN's tag protocol.
    pub proto: VlanProto,
    /// Whether source-MAC spoof checking is on.
    pub spoofchk: Option<bool>,
    /// Whether the VF is trusted.
    pub trust: Option<bool>,
    /// Minimum TX rate in Mbps, 0 for none.
    pub min_tx_rate: u32,
    /// Maximum TX rate in Mbps, 0 for no limit.
    pub max_tx_rate: u32,
    /// The PF-side link state.
    pub link_state: Option<VfLinkState>,
}

pub(super) fn from_netlink(info: &LinkVfInfo) -> VfInfo {
    let mut out = VfInfo::default();
    for a in &info.0 {
        match a {
            NlVfInfo::Mac(m) => {
                out.index = m.vf_id;
                let mut mac = [0u8; 6];
                mac.copy_from_slice(&m.mac[..6]);
                out.mac = MacAddr(mac);
            }
            NlVfInfo::Vlan(v) => {
                out.vlan = u16::try_from(v.vlan_id).unwrap_or(0);
                out.qos = u8::try_from(v.qos).unwrap_or(0);
            }
            NlVfInfo::VlanList(list) => {
                if let Some(v) = list.iter().find_map(|v| match v {
                    VfVlan::Info(i) => Some(i),
                    _ => None,
                }) {
                    out.proto = if v.protocol == VlanProtocol::Ieee8021Ad {
                        VlanProto::Dot1Ad
                    } else {
                        VlanProto::Dot1Q
                    };
                }
            }
            NlVfInfo::Rate(r) => {
                out.min_tx_rate = r.min_tx_rate;
                out.max_tx_rate = r.max_tx_rate;
            }
            NlVfInfo::SpoofCheck(s) => out.spoofchk = Some(s.enabled),
            NlVfInfo::Trust(t) => out.trust = Some(t.enabled),
            NlVfInfo::LinkState(l) => {
                out.link_state = match l.state {
                    NlState::Auto => Some(VfLinkState::Auto),
                    NlState::Enable => Some(VfLinkState::Enable),
                    NlState::Disable => Some(VfLinkState::Disable),
                    _ => None,
                }
            }
            _ => {}
        }
    }
    out
}
