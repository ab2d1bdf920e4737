//! CNI results, held in one version-independent shape and written in the config's version.
//! Results from any supported version (IPAM plugins, `prevResult`) are read into that shape.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sriov_host::netlink::IpNet;

use crate::error::{CniError, Result, DECODE};
use crate::version::Version;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    #[serde(rename = "pciID", default, skip_serializing_if = "Option::is_none")]
    pub pci_id: Option<String>,
    /// Fields of newer versions (e.g. `socketPath`), kept as they came.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IpConfig {
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

impl IpConfig {
    pub fn net(&self) -> Result<IpNet> {
        parse_cidr(&self.address)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Route {
    pub dst: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
    /// `mtu`, `advmss`, `priority`, `table`, `scope` (1.1.0) and anything else, kept as is.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct CniResult {
    pub interfaces: Vec<Interface>,
    pub ips: Vec<IpConfig>,
    pub routes: Vec<Route>,
    pub dns: Option<Value>,
}

/// `10.1.2.3/24` -> address and prefix.
pub fn parse_cidr(s: &str) -> Result<IpNet> {
    let bad = || {
        CniError::new(
            DECODE,
            format!("{s:?} is not an address with prefix length (e.g. 10.1.2.3/24)"),
        )
    };
    let (a, p) = s.split_once('/').ok_or_else(bad)?;
    let addr: IpAddr = a.parse().map_err(|_| bad())?;
    let prefix: u8 = p.parse().map_err(|_| bad())?;
    if prefix > if addr.is_ipv4() { 32 } else { 128 } {
        return Err(bad());
    }
    Ok(IpNet { addr, prefix })
}

impl CniResult {
    /// Read a result of any supported version (0.3.x/0.4.0 `version` fields are dropped).
    pub fn from_value(v: &Value) -> Result<Self> {
        let dec =
            |what: &str, e: serde_json::Error| CniError::new(DECODE, format!("result {what}: {e}"));
        let arr = |k: &str| {
            v.get(k)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        };
        let mut out = CniResult::default();
        for i in arr("interfaces") {
            out.interfaces
                .push(serde_json::from_value(i).map_err(|e| dec("interfaces", e))?);
        }
        for i in arr("ips") {
            let mut i = i;
            if let Some(m) = i.as_object_mut() {
                m.remove("version");
            }
            out.ips
                .push(serde_json::from_value(i).map_err(|e| dec("ips", e))?);
        }
        for r in arr("routes") {
            out.routes
                .push(serde_json::from_value(r).map_err(|e| dec("routes", e))?);
        }
        out.dns = v.get("dns").filter(|d| !d.is_null()).cloned();
        Ok(out)
    }

    /// Write the result in `version`'s shape.
    pub fn to_value(&self, version: Version) -> Value {
        let mut m = Map::new();
        m.insert("cniVersion".into(), version.to_string().into());
        let ifaces: Vec<Value> = self
            .interfaces
            .iter()
            .map(|i| {
                let mut i = i.clone();
                if !version.interface_mtu() {
                    i.mtu = None;
                }
                serde_json::to_value(i).unwrap_or(Value::Null)
            })
            .collect();
        if !ifaces.is_empty() {
            m.insert("interfaces".into(), ifaces.into());
        }
        let ips: Vec<Value> = self
            .ips
            .iter()
            .map(|ip| {
                let mut v = serde_json::to_value(ip).unwrap_or(Value::Null);
                if version.ip_version_field() {
                    let fam = match ip.net() {
                        Ok(n) if n.addr.is_ipv6() => "6",
                        _ => "4",
                    };
                    if let Some(o) = v.as_object_mut() {
                        o.insert("version".into(), fam.into());
                    }
                }
                v
            })
            .collect();
        if !ips.is_empty() {
            m.insert("ips".into(), ips.into());
        }
        if !self.routes.is_empty() {
            m.insert(
                "routes".into(),
                serde_json::to_value(&self.routes).unwrap_or(Value::Null),
            );
        }
        m.insert(
            "dns".into(),
            self.dns
                .clone()
                .unwrap_or_else(|| Value::Object(Map::new())),
        );
        Value::Object(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn converts_between_versions() {
        let old = json!({"cniVersion":"0.3.1","interfaces":[{"name":"net1","mac":"02:00:00:00:00:01","sandbox":"/run/netns/x"}],
            "ips":[{"version":"4","address":"10.1.0.5/24","gateway":"10.1.0.1","interface":0},{"version":"6","address":"fd00::5/64"}],
            "routes":[{"dst":"0.0.0.0/0","gw":"10.1.0.1"}],"dns":{}});
        let mut r = CniResult::from_value(&old).unwrap();
        r.interfaces[0].mtu = Some(1400);
        r.interfaces[0].pci_id = Some("0000:03:02.0".into());
        let new = r.to_value(Version::V1_0_0);
        assert_eq!(new["cniVersion"], "1.0.0");
        assert!(new["ips"][0].get("version").is_none());
        assert_eq!(new["interfaces"][0]["mtu"], 1400);
        assert_eq!(new["interfaces"][0]["pciID"], "0000:03:02.0");
        let back = r.to_value(Version::V0_4_0);
        assert_eq!(back["ips"][0]["version"], "4");
        assert_eq!(back["ips"][1]["version"], "6");
        assert!(back["interfaces"][0].get("mtu").is_none());
        assert_eq!(back["routes"][0]["gw"], "10.1.0.1");
        assert_eq!(CniResult::from_value(&back).unwrap().ips, r.ips);
    }

    #[test]
    fn keeps_1_1_route_fields() {
        let v =
            json!({"cniVersion":"1.1.0","routes":[{"dst":"10.0.0.0/8","mtu":1400,"table":100}]});
        let r = CniResult::from_value(&v).unwrap();
        assert_eq!(r.to_value(Version::V1_1_0)["routes"][0]["table"], 100);
    }

    #[test]
    fn cidrs() {
        assert_eq!(parse_cidr("10.0.0.1/8").unwrap().prefix, 8);
        for bad in ["10.0.0.1", "10.0.0.1/33", "fd00::1/129", "x/2"] {
            assert!(parse_cidr(bad).is_err(), "{bad}");
        }
    }
}
