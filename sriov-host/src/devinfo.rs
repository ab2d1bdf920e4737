//! NPWG device-info files (spec 1.1.0): how the device plugin and the CNI tell Multus and the
//! pod which device an attachment uses.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::pci::PciAddress;

pub const DEVINFO_VERSION: &str = "1.1.0";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceInfo {
    #[serde(rename = "type")]
    pub kind: String,
    pub version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pci: Option<PciInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PciInfo {
    #[serde(rename = "pci-address")]
    pub pci_address: PciAddress,
    #[serde(rename = "pf-pci-address", skip_serializing_if = "Option::is_none")]
    pub pf_pci_address: Option<PciAddress>,
    #[serde(rename = "rdma-device", skip_serializing_if = "Option::is_none")]
    pub rdma_device: Option<String>,
    #[serde(rename = "vhost-net", skip_serializing_if = "Option::is_none")]
    pub vhost_net: Option<String>,
}

impl DeviceInfo {
    pub fn pci(pci: PciInfo) -> Self {
        DeviceInfo {
            kind: "pci".into(),
            version: DEVINFO_VERSION.into(),
            pci: Some(pci),
        }
    }
}

/// Write `content` to `path` atomically and durably: a temporary file in the same directory,
/// fsync, rename.
pub fn write_atomic(path: &Path, content: &[u8]) -> std::io::Result<()> {
    replace_file(path, content, true)
}

/// Replace `path` with `content` through a temporary file in the same directory and a rename:
/// readers, and a writer that dies half-way, never see a partial file. With `durable` the data is
/// fsynced before the rename, so it also survives a power loss; without, a power loss may leave
/// the old content or an empty file (for state that a reboot makes moot anyway).
pub fn replace_file(path: &Path, content: &[u8], durable: bool) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    fs::create_dir_all(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp: PathBuf = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let written = fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(content)?;
        if durable {
            f.sync_all()?;
        }
        Ok(())
    });
    written
        .and_then(|()| fs::rename(&tmp, path))
        .inspect_err(|_| {
            let _ = fs::remove_file(&tmp);
        })
}

/// Write a device-info file atomically.
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
        let back: DeviceInfo = serde_json::from_slice(&fs::read(&p).unwrap()).unwrap();
        assert_eq!(back, info);
    }

    #[test]
    fn replace_file_swaps_the_whole_content_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.json");
        replace_file(&p, b"a longer first content", false).unwrap();
        replace_file(&p, b"second", false).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"second");
        write_atomic(&p, b"third").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"third");
        // The rename fails (the target is a non-empty directory): the temporary goes too.
        let d = dir.path().join("d");
        fs::create_dir_all(d.join("x")).unwrap();
        assert!(replace_file(&d, b"x", true).is_err());
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }
}
