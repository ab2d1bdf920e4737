//! CNI spec versions we speak, and what each one's result looks like.

use std::fmt;
use std::str::FromStr;

pub const SUPPORTED: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    V0_3_0,
    V0_3_1,
    V0_4_0,
    V1_0_0,
    V1_1_0,
}

impl FromStr for Version {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Ok(match s {
            "0.3.0" => Version::V0_3_0,
            "0.3.1" => Version::V0_3_1,
            "0.4.0" => Version::V0_4_0,
            "1.0.0" => Version::V1_0_0,
            "1.1.0" => Version::V1_1_0,
            _ => return Err(()),
        })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Version::V0_3_0 => "0.3.0",
            Version::V0_3_1 => "0.3.1",
            Version::V0_4_0 => "0.4.0",
            Version::V1_0_0 => "1.0.0",
            Version::V1_1_0 => "1.1.0",
        })
    }
}

impl Version {
    /// Before 1.0.0 each IP config carries `"version": "4" | "6"`.
    pub fn ip_version_field(self) -> bool {
        self < Version::V1_0_0
    }
    /// Interface `mtu` exists from 1.0.0.
    pub fn interface_mtu(self) -> bool {
        self >= Version::V1_0_0
    }
    /// CHECK exists from 0.4.0.
    pub fn has_check(self) -> bool {
        self >= Version::V0_4_0
    }
    /// STATUS and GC exist from 1.1.0.
    pub fn has_status_gc(self) -> bool {
        self >= Version::V1_1_0
    }
}

/// The VERSION command's answer.
pub fn version_json(cni_version: &str) -> String {
    serde_json::json!({"cniVersion": cni_version, "supportedVersions": SUPPORTED}).to_string()
}
