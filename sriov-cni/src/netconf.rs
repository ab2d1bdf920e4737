//! The network configuration on stdin: parsed leniently (foreign keys are tolerated), then
//! validated field by field into [`NetConf`]. Every rejection is code 7 and names the field and
//! the allowed values.

use std::path::PathBuf;

use serde_json::{Map, Value};
use sriov_host::netlink::{VfLinkState, VlanProto};
use sriov_host::{MacAddr, PciAddress};

use crate::env::CniArgs;
use crate::error::{CniError, Result, DECODE, INCOMPATIBLE_VERSION};
use crate::version::Version;

/// Keys we read; anything else is tolerated and logged at debug.
const KNOWN: &[&str] = &[
    "cniVersion",
    "name",
    "type",
    "deviceID",
    "pciBusID",
    "vlan",
    "vlanQoS",
    "vlanProto",
    "mac",
    "spoofchk",
    "trust",
    "link_state",
    "min_tx_rate",
    "max_tx_rate",
    "mtu",
    "ipam",
    "runtimeConfig",
    "prevResult",
    "logLevel",
    "logFile",
    "args",
    "capabilities",
    "dns",
    "cni.dev/valid-attachments",
    "cni.dev/attachments",
];

/// PF-side settings the config asks for. `None` = leave untouched.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PfSettings {
    pub mac: Option<MacAddr>,
    pub vlan: Option<u16>,
    pub vlan_qos: Option<u8>,
    pub vlan_proto: Option<VlanProto>,
    pub spoofchk: Option<bool>,
    pub trust: Option<bool>,
    pub link_state: Option<VfLinkState>,
    pub min_tx_rate: Option<u32>,
    pub max_tx_rate: Option<u32>,
}

impl PfSettings {
    /// Names (config keys) of the settings requested, for messages.
    pub fn requested(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        let pairs: [(&'static str, bool); 9] = [
            ("mac", self.mac.is_some()),
            ("vlan", self.vlan.is_some()),
            ("vlanQoS", self.vlan_qos.is_some()),
            ("vlanProto", self.vlan_proto.is_some()),
            ("spoofchk", self.spoofchk.is_some()),
            ("trust", self.trust.is_some()),
            ("link_state", self.link_state.is_some()),
            ("min_tx_rate", self.min_tx_rate.is_some()),
            ("max_tx_rate", self.max_tx_rate.is_some()),
        ];
        for (n, set) in pairs {
            if set {
                v.push(n);
            }
        }
        v
    }
}

/// A validated network configuration.
#[derive(Debug, Clone)]
pub struct NetConf {
    pub cni_version: Version,
    pub name: String,
    /// From the top-level `deviceID` or `runtimeConfig.deviceID` (which must agree). Required by
    /// ADD and CHECK.
    pub device_id: Option<PciAddress>,
    pub pf: PfSettings,
    pub mtu: Option<u32>,
    /// The `ipam` object, when present; `ipam_type` is its validated `type`.
    pub ipam: Option<Value>,
    pub ipam_type: Option<String>,
    pub prev_result: Option<Value>,
    pub log_level: Option<String>,
    pub log_file: Option<PathBuf>,
    /// `cni.dev/valid-attachments` (GC): (containerID, ifname) pairs.
    pub valid_attachments: Option<Vec<(String, String)>>,
    /// The raw config, handed unchanged to the IPAM plugin.
    pub raw: Vec<u8>,
}

fn bad(field: &str, msg: impl std::fmt::Display) -> CniError {
    CniError::config(format!("{field}: {msg}"))
}

fn int(obj: &Map<String, Value>, field: &str, lo: i64, hi: i64) -> Result<Option<i64>> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_i64() {
            Some(n) if (lo..=hi).contains(&n) => Ok(Some(n)),
            _ => Err(bad(
                field,
                format!("{v} is out of range: expected an integer {lo}..{hi}"),
            )),
        },
    }
}

fn string<'a>(obj: &'a Map<String, Value>, field: &str) -> Result<Option<&'a str>> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(v) => Err(bad(field, format!("{v} is not a string"))),
    }
}

fn on_off(obj: &Map<String, Value>, field: &str) -> Result<Option<bool>> {
    match string(obj, field)? {
        None => Ok(None),
        Some("on") => Ok(Some(true)),
        Some("off") => Ok(Some(false)),
        Some(s) => Err(bad(
            field,
            format!("{s:?} is not allowed: expected \"on\" or \"off\""),
        )),
    }
}

fn mac(field: &str, s: &str) -> Result<MacAddr> {
    let m: MacAddr = s.parse().map_err(|e| bad(field, e))?;
    if m.is_zero() || m.is_multicast() {
        return Err(bad(
            field,
            format!("{m} is not a unicast address: expected a non-zero unicast MAC"),
        ));
    }
    Ok(m)
}

fn device_id(field: &str, v: &Value) -> Result<PciAddress> {
    let s = v.as_str().ok_or_else(|| {
        bad(
            field,
            format!("{v} is not a string: expected a PCI address like 0000:03:02.0"),
        )
    })?;
    s.parse().map_err(|_| {
        bad(
            field,
            format!("{s:?} is not a PCI address: expected dddd:bb:dd.f, e.g. 0000:03:02.0"),
        )
    })
}

/// Just enough of the config to answer VERSION and set up logging, without failing.
pub fn peek(raw: &[u8]) -> (Option<String>, Option<String>, Option<PathBuf>) {
    let v: Value = serde_json::from_slice(raw).unwrap_or(Value::Null);
    let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    (
        s("cniVersion"),
        s("logLevel"),
        s("logFile").map(PathBuf::from),
    )
}

impl NetConf {
    /// Parse and validate. `args` supplies `CNI_ARGS MAC=`.
    pub fn parse(raw: &[u8], args: &CniArgs) -> Result<Self> {
        let obj = object(raw)?;
        let cni_version = version(&obj)?;
        let name = string(&obj, "name")?.unwrap_or_default().to_string();

        let empty = Map::new();
        let rc = match obj.get("runtimeConfig") {
            None | Some(Value::Null) => &empty,
            Some(Value::Object(m)) => m,
            Some(v) => return Err(bad("runtimeConfig", format!("{v} is not an object"))),
        };
        let device_id = device_id_of(&obj, rc)?;

        let (vlan, vlan_qos, vlan_proto) = vlan(&obj)?;

        let mac = mac_of(&obj, rc, args)?;
        let link_state = link_state(&obj)?;
        let (min, max) = tx_rates(&obj)?;
        let mtu = int(&obj, "mtu", 68, 65535)?.map(|n| n as u32);

        let (ipam, ipam_type) = ipam(&obj)?;

        // Multus' file: it copies the device plugin's device-info file there before ADD and
        // reads it after. Never read, written or deleted here.
        if let Some(v) = rc.get("CNIDeviceInfoFile") {
            tracing::debug!(value = %v, "runtimeConfig.CNIDeviceInfoFile belongs to Multus; leaving it alone");
        }
        let log_level = string(&obj, "logLevel")?.map(str::to_string);
        let log_file = string(&obj, "logFile")?.map(PathBuf::from);
        let prev_result = obj.get("prevResult").filter(|v| !v.is_null()).cloned();
        let valid_attachments = valid_attachments(&obj);

        Ok(NetConf {
            cni_version,
            name,
            device_id,
            pf: PfSettings {
                mac,
                vlan,
                vlan_qos,
                vlan_proto,
                spoofchk: on_off(&obj, "spoofchk")?,
                trust: on_off(&obj, "trust")?,
                link_state,
                min_tx_rate: min,
                max_tx_rate: max,
            },
            mtu,
            ipam,
            ipam_type,
            prev_result,
            log_level,
            log_file,
            valid_attachments,
            raw: raw.to_vec(),
        })
    }

    /// The device ID, required by ADD and CHECK.
    pub fn require_device_id(&self) -> Result<PciAddress> {
        self.device_id.ok_or_else(|| {
            bad("deviceID", "missing: expected the VF's PCI address (dddd:bb:dd.f) at top level or in runtimeConfig.deviceID")
        })
    }
}

/// The netconf as a JSON object; foreign keys are logged and tolerated.
fn object(raw: &[u8]) -> Result<Map<String, Value>> {
    let v: Value = serde_json::from_slice(raw).map_err(|e| {
        CniError::new(
            DECODE,
            format!("network config on stdin is not valid JSON: {e}"),
        )
    })?;
    let Value::Object(obj) = v else {
        return Err(CniError::new(
            DECODE,
            "network config on stdin is not a JSON object",
        ));
    };
    for k in obj.keys().filter(|k| !KNOWN.contains(&k.as_str())) {
        tracing::debug!(key = %k, "ignoring unknown netconf key");
    }
    Ok(obj)
}

/// `cniVersion`: required, one we speak.
fn version(obj: &Map<String, Value>) -> Result<Version> {
    let version_str = string(obj, "cniVersion")?.ok_or_else(|| {
        bad(
            "cniVersion",
            "missing: expected one of 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0",
        )
    })?;
    version_str.parse().map_err(|_| {
        CniError::new(
            INCOMPATIBLE_VERSION,
            format!("cniVersion: {version_str:?} is not supported: expected one of 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0"),
        )
    })
}

/// The device ID: the top-level `deviceID` or `runtimeConfig.deviceID`; when both are given they
/// must name the same device. Multus writes the VF the kubelet allocated at top level
/// (overwriting the NAD's), and into `runtimeConfig` only when the NAD declares the `deviceID`
/// capability, with the same value; a NAD that declares no capabilities reaches the plugin with
/// its own `runtimeConfig` verbatim. Preferring that one would let a NAD author pick a VF the
/// kubelet did not allocate to the pod.
fn device_id_of(obj: &Map<String, Value>, rc: &Map<String, Value>) -> Result<Option<PciAddress>> {
    let top = match obj.get("deviceID").filter(|v| !v.is_null()) {
        Some(v) => Some(device_id("deviceID", v)?),
        None => None,
    };
    let runtime = match rc.get("deviceID").filter(|v| !v.is_null()) {
        Some(v) => Some(device_id("runtimeConfig.deviceID", v)?),
        None => None,
    };
    match (top, runtime) {
        (Some(t), Some(r)) if t != r => Err(bad(
            "runtimeConfig.deviceID",
            format!("{r} differs from deviceID {t}: both name the VF allocated to the pod; remove runtimeConfig.deviceID from the network config"),
        )),
        (t, r) => Ok(t.or(r)),
    }
}

/// `vlan`, `vlanQoS` and `vlanProto`, checked together (QoS and 802.1ad need a non-zero VLAN).
fn vlan(obj: &Map<String, Value>) -> Result<(Option<u16>, Option<u8>, Option<VlanProto>)> {
    let vlan = int(obj, "vlan", 0, 4094)?.map(|n| n as u16);
    let vlan_qos = int(obj, "vlanQoS", 0, 7)?.map(|n| n as u8);
    if let Some(q) = vlan_qos {
        match vlan {
            None => return Err(bad("vlanQoS", "needs vlan: set vlan (1..4094) as well")),
            Some(0) if q != 0 => {
                return Err(bad(
                    "vlanQoS",
                    format!("{q} needs a non-zero vlan (1..4094)"),
                ))
            }
            _ => {}
        }
    }
    let vlan_proto = match string(obj, "vlanProto")? {
        None => None,
        Some(s) if s.eq_ignore_ascii_case("802.1q") => Some(VlanProto::Dot1Q),
        Some(s) if s.eq_ignore_ascii_case("802.1ad") => {
            if vlan.unwrap_or(0) == 0 {
                return Err(bad("vlanProto", "802.1ad needs a non-zero vlan (1..4094)"));
            }
            Some(VlanProto::Dot1Ad)
        }
        Some(s) => {
            return Err(bad(
                "vlanProto",
                format!("{s:?} is not allowed: expected \"802.1q\" or \"802.1ad\""),
            ))
        }
    };
    Ok((vlan, vlan_qos, vlan_proto))
}

/// The MAC: `runtimeConfig.mac`, then `CNI_ARGS MAC=`, then the top-level `mac`.
fn mac_of(
    obj: &Map<String, Value>,
    rc: &Map<String, Value>,
    args: &CniArgs,
) -> Result<Option<MacAddr>> {
    let mac_rc = match rc.get("mac").filter(|v| !v.is_null()) {
        Some(Value::String(s)) => Some(mac("runtimeConfig.mac", s)?),
        Some(v) => return Err(bad("runtimeConfig.mac", format!("{v} is not a string"))),
        None => None,
    };
    let mac_conf = match string(obj, "mac")? {
        Some(s) => Some(mac("mac", s)?),
        None => None,
    };
    Ok(mac_rc.or(args.mac).or(mac_conf))
}

/// `link_state`: `auto`, `enable` or `disable`.
fn link_state(obj: &Map<String, Value>) -> Result<Option<VfLinkState>> {
    Ok(match string(obj, "link_state")? {
        None => None,
        Some("auto") => Some(VfLinkState::Auto),
        Some("enable") => Some(VfLinkState::Enable),
        Some("disable") => Some(VfLinkState::Disable),
        Some(s) => {
            return Err(bad(
                "link_state",
                format!("{s:?} is not allowed: expected \"auto\", \"enable\" or \"disable\""),
            ))
        }
    })
}

/// `min_tx_rate` and `max_tx_rate` (Mbps); min may not exceed a non-zero max.
fn tx_rates(obj: &Map<String, Value>) -> Result<(Option<u32>, Option<u32>)> {
    let min = int(obj, "min_tx_rate", 0, u32::MAX.into())?.map(|n| n as u32);
    let max = int(obj, "max_tx_rate", 0, u32::MAX.into())?.map(|n| n as u32);
    if let (Some(lo), Some(hi)) = (min, max) {
        if hi > 0 && lo > hi {
            return Err(bad("min_tx_rate", format!("{lo} is above max_tx_rate {hi}: min_tx_rate must be <= max_tx_rate when max_tx_rate > 0")));
        }
    }
    Ok((min, max))
}

/// `ipam`: absent or empty means none; otherwise its `type` must be a plugin file name.
fn ipam(obj: &Map<String, Value>) -> Result<(Option<Value>, Option<String>)> {
    Ok(match obj.get("ipam") {
        None | Some(Value::Null) => (None, None),
        Some(Value::Object(m)) if m.is_empty() => (None, None),
        Some(Value::Object(m)) => {
            let t = match m.get("type") {
                Some(Value::String(t)) if crate::env::valid_plugin_name(t) => t.clone(),
                Some(t) => return Err(bad("ipam.type", format!("{t} is not a plugin name: expected a file name in CNI_PATH, e.g. \"host-local\""))),
                None => return Err(bad("ipam.type", "missing: expected the IPAM plugin's name, e.g. \"host-local\"")),
            };
            (Some(Value::Object(m.clone())), Some(t))
        }
        Some(v) => return Err(bad("ipam", format!("{v} is not an object"))),
    })
}

/// `cni.dev/valid-attachments` (GC): the attachments the runtime still knows.
fn valid_attachments(obj: &Map<String, Value>) -> Option<Vec<(String, String)>> {
    obj.get("cni.dev/valid-attachments")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| {
                    Some((
                        x.get("containerID")?.as_str()?.to_string(),
                        x.get("ifname")?.as_str()?.to_string(),
                    ))
                })
                .collect()
        })
}

#[cfg(test)]
#[path = "netconf_tests.rs"]
mod tests;
