//! Attachments made by the Go sriov-cni before a node switched to this plugin: its cache file
//! `<state dir>/<containerID>-<ifname>` (no extension; the same default directory) holds the
//! config it ran with plus the VF's original state. DEL reads it into a [`State`] so that
//! pods attached before the switch are released and restored like our own.

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;
use sriov_host::netlink::{VfInfo, VfLinkState, VlanProto};
use sriov_host::{MacAddr, PciAddress};

use crate::netconf::PfSettings;
use crate::state::{Mode, NetdevState, State};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct OrigVfState {
    #[serde(rename = "HostIFName", default)]
    host_if_name: String,
    #[serde(default)]
    spoof_chk: bool,
    #[serde(default)]
    trust: bool,
    #[serde(rename = "AdminMAC", default)]
    admin_mac: String,
    #[serde(rename = "EffectiveMAC", default)]
    effective_mac: String,
    #[serde(default)]
    min_tx_rate: u32,
    #[serde(default)]
    max_tx_rate: u32,
    #[serde(default)]
    link_state: u32,
    #[serde(default)]
    vlan: u16,
    #[serde(rename = "VlanQoS", default)]
    vlan_qos: u8,
    #[serde(default)]
    vlan_proto: u16,
}

#[derive(Debug, Deserialize)]
struct Cache {
    #[serde(rename = "deviceID")]
    device_id: PciAddress,
    #[serde(rename = "Master", default)]
    master: Option<String>,
    #[serde(rename = "VFID", default)]
    vf_id: u32,
    #[serde(rename = "OrigVfState")]
    orig: OrigVfState,
    #[serde(rename = "MAC", default)]
    mac: Option<String>,
    #[serde(rename = "MTU", default)]
    mtu: Option<u32>,
}

fn on_off(v: &Value, key: &str) -> Option<bool> {
    match v.get(key).and_then(Value::as_str) {
        Some("on") => Some(true),
        Some("off") => Some(false),
        _ => None,
    }
}

fn num(v: &Value, key: &str) -> Option<u64> {
    v.get(key).and_then(Value::as_u64)
}

/// Read the Go plugin's cache for this attachment, `None` when there is none, it cannot be
/// understood, or it records another device than `device` (the call's deviceID, when it names
/// one): such a cache is logged and left as it is. The cache holds no container ID or ifname:
/// its file name is what ties it to the attachment.
pub fn load(
    dir: &Path,
    container_id: &str,
    ifname: &str,
    netns: Option<&Path>,
    device: Option<PciAddress>,
) -> Option<(State, std::path::PathBuf)> {
    let path = dir.join(format!("{container_id}-{ifname}"));
    let bytes = std::fs::read(&path).ok()?;
    let parsed = serde_json::from_slice::<Value>(&bytes)
        .and_then(|raw| Ok((serde_json::from_value::<Cache>(raw.clone())?, raw)));
    let (c, raw) = match parsed {
        Ok(x) => x,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the previous plugin's cache; not restoring from it");
            return None;
        }
    };
    if let Some(d) = device.filter(|d| *d != c.device_id) {
        tracing::warn!(path = %path.display(), cache_device = %c.device_id, device = %d, "the previous plugin's cache records another device than the call's deviceID; not acting on it");
        return None;
    }
    let mac = |s: &str| s.parse::<MacAddr>().ok();
    let o = &c.orig;
    let vf_orig = VfInfo {
        index: c.vf_id,
        mac: mac(&o.admin_mac).unwrap_or_default(),
        vlan: o.vlan,
        qos: o.vlan_qos,
        proto: if o.vlan_proto == 0x88a8 {
            VlanProto::Dot1Ad
        } else {
            VlanProto::Dot1Q
        },
        spoofchk: Some(o.spoof_chk),
        trust: Some(o.trust),
        min_tx_rate: o.min_tx_rate,
        max_tx_rate: o.max_tx_rate,
        link_state: match o.link_state {
            1 => Some(VfLinkState::Enable),
            2 => Some(VfLinkState::Disable),
            _ => Some(VfLinkState::Auto),
        },
    };
    // What the Go plugin applied is what its config asked for.
    let applied = PfSettings {
        mac: c.mac.as_deref().and_then(mac),
        vlan: num(&raw, "vlan").map(|v| v as u16),
        vlan_qos: num(&raw, "vlanQoS").map(|v| v as u8),
        vlan_proto: raw
            .get("vlanProto")
            .and_then(Value::as_str)
            .map(|_| vf_orig.proto),
        spoofchk: on_off(&raw, "spoofchk"),
        trust: on_off(&raw, "trust"),
        link_state: match raw.get("link_state").and_then(Value::as_str) {
            Some("enable") => Some(VfLinkState::Enable),
            Some("disable") => Some(VfLinkState::Disable),
            Some("auto") => Some(VfLinkState::Auto),
            _ => None,
        },
        min_tx_rate: num(&raw, "min_tx_rate").map(|v| v as u32),
        max_tx_rate: num(&raw, "max_tx_rate").map(|v| v as u32),
    };
    let kernel = !o.host_if_name.is_empty();
    let state = State {
        container_id: container_id.to_string(),
        ifname: ifname.to_string(),
        netns: netns.map(Path::to_path_buf),
        mode: if kernel { Mode::Kernel } else { Mode::Dpdk },
        device_id: c.device_id,
        pf: None,
        pf_netdev: c.master.filter(|m| !m.is_empty()),
        vf_index: c.vf_id,
        vf_orig: Some(vf_orig),
        applied,
        netdev: kernel.then(|| NetdevState {
            name: o.host_if_name.clone(),
            mac: mac(&o.effective_mac),
            mtu: c.mtu.unwrap_or(0),
            up: false,
            ifindex: None,
            parent: None,
        }),
        temp_name: None,
        moved: kernel,
        pod_ifindex: None,
        pod_mac: None,
        pod_mtu: None,
        ipam_type: raw
            .get("ipam")
            .and_then(|i| i.get("type"))
            .and_then(Value::as_str)
            .map(str::to_string),
        ipam_done: true,
        conf: raw,
        result: None,
    };
    Some((state, path))
}
