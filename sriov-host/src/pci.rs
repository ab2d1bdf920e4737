//! PCI addresses and IDs: the values that name a device everywhere else.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A PCI address in the kernel's canonical form `dddd:bb:dd.f` (lowercase hex).
///
/// Parsing is strict: it is the gate every device ID from outside (config, kubelet, CNI netconf)
/// passes before it is ever joined to a path. The fields are private so that parsing is the
/// only way to make one:
///
/// ```compile_fail
/// let a = sriov_host::PciAddress { domain: 0, bus: 0, device: 0x20, function: 9 };
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PciAddress {
    domain: u16,
    bus: u8,
    device: u8,
    function: u8,
}

impl PciAddress {
    /// The PCI domain (segment).
    pub fn domain(self) -> u16 {
        self.domain
    }

    /// The bus number.
    pub fn bus(self) -> u8 {
        self.bus
    }

    /// The device number (0 to 0x1f).
    pub fn device(self) -> u8 {
        self.device
    }

    /// The function number (0 to 7).
    pub fn function(self) -> u8 {
        self.function
    }
}

/// A PCI address that did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid PCI address {input:?}: {reason} (expected dddd:bb:dd.f, e.g. 0000:03:00.1)")]
pub struct PciAddressError {
    /// The text as given.
    pub input: String,
    /// Which part was wrong.
    pub reason: &'static str,
}

impl FromStr for PciAddress {
    type Err = PciAddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| PciAddressError {
            input: s.to_string(),
            reason,
        };
        let b = s.as_bytes();
        if b.len() != 12 {
            return Err(err("wrong length"));
        }
        if b[4] != b':' || b[7] != b':' || b[10] != b'.' {
            return Err(err("wrong separators"));
        }
        let hex = |r: std::ops::Range<usize>| -> Result<u32, PciAddressError> {
            let part = &s[r];
            if !part.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(err("not hexadecimal"));
            }
            u32::from_str_radix(part, 16).map_err(|_| err("not hexadecimal"))
        };
        let domain = hex(0..4)? as u16;
        let bus = hex(5..7)? as u8;
        let device = hex(8..10)?;
        let function = hex(11..12)?;
        if device > 0x1f {
            return Err(err("device number above 1f"));
        }
        if function > 7 {
            return Err(err("function number above 7"));
        }
        Ok(PciAddress {
            domain,
            bus,
            device: device as u8,
            function: function as u8,
        })
    }
}

impl fmt::Display for PciAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.domain, self.bus, self.device, self.function
        )
    }
}

impl fmt::Debug for PciAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for PciAddress {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PciAddress {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A 16-bit PCI vendor or device ID as sysfs prints it (`0x14e4`), also accepted bare (`14e4`).
/// A 16-bit PCI vendor or device ID, shown as four lowercase hex digits (`15b3`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct PciId(pub u16);

/// A PCI ID that did not parse; holds the text as given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid PCI ID {0:?}: expected 4 hex digits, e.g. 14e4 or 0x14e4")]
pub struct PciIdError(pub String);

impl FromStr for PciId {
    type Err = PciIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let t = t
            .strip_prefix("0x")
            .or_else(|| t.strip_prefix("0X"))
            .unwrap_or(t);
        if t.is_empty() || t.len() > 4 || !t.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(PciIdError(s.to_string()));
        }
        u16::from_str_radix(t, 16)
            .map(PciId)
            .map_err(|_| PciIdError(s.to_string()))
    }
}

impl Serialize for PciId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl fmt::Display for PciId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04x}", self.0)
    }
}

/// The vendor's name from the `pci-ids` database, if it lists the ID.
pub fn vendor_name(vendor: PciId) -> Option<&'static str> {
    pci_ids::Vendors::iter()
        .find(|v| v.id() == vendor.0)
        .map(|v| v.name())
}

/// IDs missing from pci.ids that the targeted NICs present (see docs/hardware).
const EXTRA_DEVICE_NAMES: &[(u16, u16, &str)] = &[
    (
        0x14e4,
        0xd800,
        "Stingray PS225 Virtual Function (NetXtreme-S VF)",
    ),
    (0x14e4, 0xd802, "BCM58802 Stingray 50Gb Ethernet SoC"),
    (0x14e4, 0xd804, "BCM58804 Stingray 100Gb Ethernet SoC"),
];

/// The device's name: the `pci-ids` database, plus the IDs it lacks that our NICs use.
pub fn device_name(vendor: PciId, device: PciId) -> Option<&'static str> {
    if let Some((_, _, name)) = EXTRA_DEVICE_NAMES
        .iter()
        .find(|(v, d, _)| *v == vendor.0 && *d == device.0)
    {
        return Some(name);
    }
    pci_ids::Device::from_vid_pid(vendor.0, device.0).map(|d| d.name())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_canonical_addresses() {
        let a: PciAddress = "0000:03:00.1".parse().unwrap();
        assert_eq!(
            a,
            PciAddress {
                domain: 0,
                bus: 3,
                device: 0,
                function: 1
            }
        );
        assert_eq!(a.to_string(), "0000:03:00.1");
        let b: PciAddress = "ABCD:Ff:1f.7".parse().unwrap();
        assert_eq!(b.to_string(), "abcd:ff:1f.7");
    }

    #[test]
    fn rejects_anything_that_could_escape_a_path() {
        for bad in [
            "",
            "03:00.1",
            "0000:03:00.1/..",
            "../../../etc",
            "0000:03:00.8",
            "0000:03:20.0",
            "0000:03:00:1",
            "0000:0g:00.1",
            " 0000:03:00.1",
            "0000:03:00.1\n",
            "+000:03:00.1",
        ] {
            let e = bad.parse::<PciAddress>().unwrap_err();
            assert!(e.to_string().contains("invalid PCI address"), "{bad}: {e}");
        }
    }

    #[test]
    fn orders_by_number() {
        let mut v: Vec<PciAddress> = ["0000:03:10.0", "0000:03:02.0", "0000:02:00.0"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        v.sort();
        assert_eq!(v[0].to_string(), "0000:02:00.0");
        assert_eq!(v[2].to_string(), "0000:03:10.0");
    }

    #[test]
    fn parses_ids_and_names_devices() {
        assert_eq!("0x14e4\n".parse::<PciId>().unwrap(), PciId(0x14e4));
        assert_eq!("d800".parse::<PciId>().unwrap(), PciId(0xd800));
        assert!("14e45".parse::<PciId>().is_err());
        assert!("zz".parse::<PciId>().is_err());
        assert!(device_name(PciId(0x14e4), PciId(0xd800))
            .unwrap()
            .contains("PS225"));
        assert!(device_name(PciId(0x8086), PciId(0x10ca)).is_some());
        assert!(vendor_name(PciId(0x14e4)).unwrap().contains("Broadcom"));
    }
}
