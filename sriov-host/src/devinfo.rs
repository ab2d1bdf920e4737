//! NPWG device-info files (spec 1.1.0): how the device plugin tells Multus (which copies the file
//! to the attachment's `CNIDeviceInfoFile`) and the pod which device an attachment uses.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::fsio::write_atomic;
use crate::pci::PciAddress;

/// The NPWG device-info spec version written in every file.
pub const DEVINFO_VERSION: &str = "1.1.0";

/// One device-info file: which device an attachment got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// The device type (`"pci"`; the spec also has `vhost-user`, `memif`, `vdpa`).
    #[serde(rename = "type")]
    pub kind: String,
    /// The spec version the file follows ([`DEVINFO_VERSION`] when we write it).
    pub version: String,
    /// The PCI details, present when `kind` is `"pci"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pci: Option<PciInfo>,
}

/// The `pci` section of a device-info file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PciInfo {
    /// The VF handed to the pod.
    #[serde(rename = "pci-address")]
    pub pci_address: PciAddress,
    /// The PF the VF belongs to, when known.
    #[serde(rename = "pf-pci-address", skip_serializing_if = "Option::is_none")]
    pub pf_pci_address: Option<PciAddress>,
    /// The VF's RDMA device name (e.g. `mlx5_3`), when it has one.
    #[serde(rename = "rdma-device", skip_serializing_if = "Option::is_none")]
    pub rdma_device: Option<String>,
    /// The vhost-net character device path, when one was made for the VF.
    #[serde(rename = "vhost-net", skip_serializing_if = "Option::is_none")]
    pub vhost_net: Option<String>,
}

impl DeviceInfo {
    /// A `pci` device-info record of the current spec version.
    pub fn pci(pci: PciInfo) -> Self {
        DeviceInfo {
            kind: "pci".into(),
            version: DEVINFO_VERSION.into(),
            pci: Some(pci),
        }
    }
}

/// Write a device-info file atomically (mode 0644), as [`crate::fsio::write_atomic`] does: a
/// rename of a complete temporary, not fsynced (see [`crate::fsio::replace_file`] for why).
pub fn write_device_info(path: &Path, info: &DeviceInfo) -> std::io::Result<()> {
    let json = serde_json::to_vec(info).map_err(std::io::Error::other)?;
    write_atomic(path, &json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_the_npwg_shape() {
        let info = DeviceInfo::pci(PciInfo {
            pci_address: "0000:03:02.1".parse().unwrap(),
            pf_pci_address: Some("0000:03:00.0".parse().unwrap()),
            rdma_device: None,
            vhost_net: None,
        });
        let v: serde_json::Value = serde_json::to_value(&info).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"pci","version":"1.1.0","pci":{"pci-address":"0000:03:02.1","pf-pci-address":"0000:03:00.0"}})
        );
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a/b.json");
        write_device_info(&p, &info).unwrap();
        let back: DeviceInfo = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        assert_eq!(back, info);
    }
}
