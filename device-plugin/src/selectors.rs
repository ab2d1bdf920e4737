//! Pool selectors: which devices a pool takes. Keys inside one selector are ANDed; an absent or
//! empty key matches everything; a pool's selectors are ORed.

use serde_json::Value;
use sriov_host::{IndexSet, PciAddress, PciDevice, PciId};

use crate::json::{as_bool, kind, str_list, upstream_keys, KeyError};

const SELECTOR_KEYS: &[&str] = &[
    "vendors",
    "devices",
    "drivers",
    "pciAddresses",
    "pfNames",
    "rootDevices",
    "linkTypes",
    "isRdma",
    "needVhostNet",
    "acpiIndexes",
];

/// Upstream selector keys this plugin does not implement: refused by name rather than as unknown.
const UNSUPPORTED_UPSTREAM_KEYS: &[&str] = &["ddpProfiles", "vdpaType", "auxTypes", "pKeys"];

/// A PF reference with an optional VF index set: `ens1f0#0-3,6`, `0000:03:00.0#0-3`.
#[derive(Debug, Clone, PartialEq)]
pub struct PfRef<T> {
    /// The PF (netdev name or PCI address).
    pub pf: T,
    /// The VF indexes; `None` means every VF (and the PF itself when it has no VFs).
    pub vfs: Option<IndexSet>,
}

/// One selector object.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Selector {
    /// `vendors`: PCI vendor IDs (`"14e4"`).
    pub vendors: Vec<PciId>,
    /// `devices`: PCI device IDs (`"d800"`).
    pub devices: Vec<PciId>,
    /// `drivers`: bound kernel drivers (`"bnxt_en"`, `"vfio-pci"`).
    pub drivers: Vec<String>,
    /// `pciAddresses`: the devices' own PCI addresses.
    pub pci_addresses: Vec<PciAddress>,
    /// `pfNames`: PF netdev names, optionally with VF ranges (`"ens1f0#0-3,6"`).
    pub pf_names: Vec<PfRef<String>>,
    /// `rootDevices`: PF PCI addresses, optionally with VF ranges (`"0000:03:00.0#0-3"`).
    pub root_devices: Vec<PfRef<PciAddress>>,
    /// `linkTypes`: `"ether"`, `"infiniband"` (of the device's netdev, else of its PF's).
    pub link_types: Vec<String>,
    /// `isRdma`: only devices with an RDMA device; their char devices are handed out.
    pub is_rdma: bool,
    /// `needVhostNet`: hand out `/dev/vhost-net` and `/dev/net/tun`; matches only when the
    /// node has `/dev/vhost-net`.
    pub need_vhost_net: bool,
    /// `acpiIndexes`: the `acpi_index` of the device (of its PF for a VF).
    pub acpi_indexes: Vec<String>,
}

/// What a selector looks at for one device.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    pub dev: &'a PciDevice,
    /// The PF's netdev name (for a VF), or the device's own netdev (for a PF or plain NIC).
    pub pf_netdev: Option<&'a str>,
    /// The PF's ARPHRD link type, used when the device has no netdev of its own.
    pub pf_link_type: Option<u32>,
    /// `acpi_index` of the device, or of its PF.
    pub acpi_index: Option<&'a str>,
    /// Whether `/dev/vhost-net` exists on the node.
    pub vhost_net_available: bool,
}

impl Selector {
    /// Parse one selector object. The error's key is the selector key at fault (empty when
    /// `v` is not an object).
    pub fn parse(v: &Value) -> Result<Selector, KeyError> {
        let obj = v
            .as_object()
            .ok_or_else(|| KeyError::new("", format!("expected an object, got {}", kind(v))))?;
        if let Some(k) = obj.keys().find(|k| {
            UNSUPPORTED_UPSTREAM_KEYS
                .iter()
                .any(|u| u.eq_ignore_ascii_case(k))
        }) {
            return Err(KeyError::new(
                k.clone(),
                "upstream selector not supported here; remove it (ignoring it would widen the pool)",
            ));
        }
        let obj = &upstream_keys(obj, SELECTOR_KEYS, &[])?;
        let mut s = Selector::default();
        for (key, val) in obj {
            let e = |p: String| KeyError::new(key.clone(), p);
            match key.as_str() {
                "vendors" | "devices" => {
                    let ids = str_list(val)
                        .map_err(e)?
                        .into_iter()
                        .map(|x| x.parse::<PciId>().map_err(|err| e(err.to_string())))
                        .collect::<Result<Vec<_>, _>>()?;
                    if key == "vendors" {
                        s.vendors = ids;
                    } else {
                        s.devices = ids;
                    }
                }
                "drivers" => s.drivers = strings(val).map_err(e)?,
                "pciAddresses" => {
                    s.pci_addresses = str_list(val)
                        .map_err(e)?
                        .into_iter()
                        .map(|x| {
                            x.parse()
                                .map_err(|err: sriov_host::pci::PciAddressError| e(err.to_string()))
                        })
                        .collect::<Result<_, _>>()?
                }
                "pfNames" => {
                    s.pf_names = str_list(val)
                        .map_err(e)?
                        .into_iter()
                        .map(|x| {
                            let (pf, vfs) = split_range(x).map_err(e)?;
                            if pf.is_empty() || pf.contains('/') {
                                return Err(e(format!("invalid PF name in {x:?}")));
                            }
                            Ok(PfRef {
                                pf: pf.to_string(),
                                vfs,
                            })
                        })
                        .collect::<Result<_, _>>()?
                }
                "rootDevices" => {
                    s.root_devices =
                        str_list(val)
                            .map_err(e)?
                            .into_iter()
                            .map(|x| {
                                let (pf, vfs) = split_range(x).map_err(e)?;
                                let pf = pf.parse().map_err(
                                    |err: sriov_host::pci::PciAddressError| e(err.to_string()),
                                )?;
                                Ok::<_, KeyError>(PfRef { pf, vfs })
                            })
                            .collect::<Result<_, _>>()?
                }
                "linkTypes" => {
                    s.link_types = strings(val).map_err(e)?;
                    for t in &s.link_types {
                        if link_type_code(t).is_none() {
                            return Err(e(format!(
                                "unknown link type {t:?}: expected \"ether\" or \"infiniband\""
                            )));
                        }
                    }
                }
                "isRdma" => s.is_rdma = as_bool(val).map_err(e)?,
                "needVhostNet" => s.need_vhost_net = as_bool(val).map_err(e)?,
                "acpiIndexes" => s.acpi_indexes = strings(val).map_err(e)?,
                _ => {}
            }
        }
        Ok(s)
    }

    /// Whether the device satisfies every key of this selector.
    pub fn matches(&self, c: &Candidate<'_>) -> bool {
        let d = c.dev;
        let any_or = |empty: bool, f: &dyn Fn() -> bool| empty || f();
        any_or(self.vendors.is_empty(), &|| {
            self.vendors.contains(&d.vendor)
        }) && any_or(self.devices.is_empty(), &|| {
            self.devices.contains(&d.device)
        }) && any_or(self.drivers.is_empty(), &|| {
            d.driver
                .as_ref()
                .is_some_and(|dr| self.drivers.contains(dr))
        }) && any_or(self.pci_addresses.is_empty(), &|| {
            self.pci_addresses.contains(&d.address)
        }) && any_or(self.pf_names.is_empty(), &|| {
            self.pf_names
                .iter()
                .any(|r| c.pf_netdev == Some(r.pf.as_str()) && in_range(&r.vfs, d.vf_index()))
        }) && any_or(self.root_devices.is_empty(), &|| {
            let root = d.pf().unwrap_or(d.address);
            self.root_devices
                .iter()
                .any(|r| r.pf == root && in_range(&r.vfs, d.vf_index()))
        }) && any_or(self.link_types.is_empty(), &|| {
            let lt = d.link_type.or(c.pf_link_type);
            self.link_types
                .iter()
                .any(|t| lt.is_some() && link_type_code(t) == lt)
        }) && (!self.is_rdma || !d.rdma_devices.is_empty())
            && (!self.need_vhost_net || c.vhost_net_available)
            && any_or(self.acpi_indexes.is_empty(), &|| {
                c.acpi_index
                    .is_some_and(|a| self.acpi_indexes.iter().any(|x| x == a))
            })
    }
}

/// A VF range only admits VFs with an index in it; without a range everything passes.
fn in_range(vfs: &Option<IndexSet>, index: Option<u32>) -> bool {
    match (vfs, index) {
        (None, _) => true,
        (Some(set), Some(i)) => set.contains(i),
        (Some(_), None) => false,
    }
}

fn split_range(x: &str) -> Result<(&str, Option<IndexSet>), String> {
    match x.split_once('#') {
        None => Ok((x, None)),
        Some((pf, r)) => {
            let set: IndexSet = r
                .parse()
                .map_err(|e: sriov_host::range::IndexSetError| e.to_string())?;
            Ok((pf, Some(set)))
        }
    }
}

fn strings(v: &Value) -> Result<Vec<String>, String> {
    Ok(str_list(v)?.into_iter().map(str::to_string).collect())
}

/// ARPHRD code of a link type name.
fn link_type_code(name: &str) -> Option<u32> {
    match name.to_ascii_lowercase().as_str() {
        "ether" | "ethernet" => Some(1),
        "infiniband" => Some(32),
        _ => None,
    }
}

#[cfg(test)]
#[path = "selectors_tests.rs"]
mod tests;
