//! The CDI spec behind the device IDs NodePrepareResources answers: one transient spec per
//! prepared claim, `<cdi-dir>/sriov-dra-<claim UID>.json`, kind `<driver>/vf`, one device per
//! VF named by its PCI address (so an ID reads `sriov.arm.com/vf=0000:03:10.6` and Multus hands
//! the CNI the PCI address). Written when every device of the claim is prepared, removed when
//! the claim is unprepared.
//!
//! A device's `containerEdits` are the device nodes its preparer named (the vfio group and
//! `/dev/vfio/vfio` for a vfio-pci VF) plus one variable naming it,
//! `PCIDEVICE_<DRIVER>_VF_<ADDRESS>=<address>` (every character outside `[A-Za-z0-9_]` as `_`,
//! upper case): CDI refuses a device without edits, and a kernel-netdev VF has no node.
//!
//! The claim UID comes from the kubelet and becomes part of a file name: it must be a
//! Kubernetes UID (1 to 64 characters of `[a-z0-9-]`), or nothing is written.

use std::io;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use sriov_host::PciAddress;

use crate::plugin::{cdi_device_id, CDI_CLASS};

/// The CDI spec version written (device names starting with a digit need 0.5.0, dots in the
/// vendor 0.6.0).
pub const CDI_VERSION: &str = "0.6.0";

/// What a container needs for one prepared VF.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerEdits {
    /// Host device nodes to create in the container at the same path (`/dev/vfio/42`).
    pub device_nodes: Vec<String>,
    /// Extra environment, `NAME=value`.
    pub env: Vec<String>,
}

/// A claim UID that cannot be part of a file name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("claim uid {0:?} is not a Kubernetes UID (1 to 64 characters of a-z, 0-9 and -)")]
pub struct UidError(pub String);

/// `uid` if it is a Kubernetes object UID.
pub fn check_uid(uid: &str) -> Result<&str, UidError> {
    let ok = !uid.is_empty()
        && uid.len() <= 64
        && uid
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-');
    if ok {
        Ok(uid)
    } else {
        Err(UidError(uid.to_string()))
    }
}

/// The spec file of claim `uid` in `dir`.
pub fn spec_path(dir: &Path, uid: &str) -> Result<PathBuf, UidError> {
    Ok(dir.join(format!("sriov-dra-{}.json", check_uid(uid)?)))
}

/// The per-device variable: `PCIDEVICE_SRIOV_ARM_COM_VF_0000_03_10_6=0000:03:10.6`.
pub fn device_env(driver: &str, pci: &PciAddress) -> String {
    let name: String = format!("PCIDEVICE_{driver}_{CDI_CLASS}_{pci}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("{name}={pci}")
}

/// The spec of one claim's devices.
pub fn claim_spec(driver: &str, devices: &[(PciAddress, ContainerEdits)]) -> Value {
    let devices: Vec<Value> = devices
        .iter()
        .map(|(pci, edits)| {
            let mut env = vec![device_env(driver, pci)];
            env.extend(edits.env.iter().cloned());
            let nodes: Vec<Value> = edits
                .device_nodes
                .iter()
                .map(|p| json!({"path": p, "hostPath": p, "permissions": "rw"}))
                .collect();
            let mut ce = json!({"env": env});
            if !nodes.is_empty() {
                ce["deviceNodes"] = Value::Array(nodes);
            }
            json!({"name": pci.to_string(), "containerEdits": ce})
        })
        .collect();
    json!({"cdiVersion": CDI_VERSION, "kind": format!("{driver}/{CDI_CLASS}"), "devices": devices})
}

/// Write claim `uid`'s spec into `dir` (atomically, mode 0644: the runtime reads it); the
/// devices' CDI IDs.
pub fn write_claim_spec(
    dir: &Path,
    driver: &str,
    uid: &str,
    devices: &[(PciAddress, ContainerEdits)],
) -> Result<Vec<String>, String> {
    let path = spec_path(dir, uid).map_err(|e| e.to_string())?;
    let spec = claim_spec(driver, devices);
    let bytes = serde_json::to_vec_pretty(&spec).map_err(|e| e.to_string())?;
    sriov_host::fsio::replace_file(&path, &bytes, 0o644)
        .map_err(|e| format!("writing CDI spec {}: {e}", path.display()))?;
    Ok(devices
        .iter()
        .map(|(pci, _)| cdi_device_id(driver, pci))
        .collect())
}

/// Remove claim `uid`'s spec from `dir`; one already gone is fine.
pub fn remove_claim_spec(dir: &Path, uid: &str) -> Result<(), String> {
    let path = spec_path(dir, uid).map_err(|e| e.to_string())?;
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("removing CDI spec {}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pci(s: &str) -> PciAddress {
        s.parse().expect("pci")
    }

    #[test]
    fn a_vfio_vf_gets_its_nodes_and_every_vf_a_variable() {
        let vfio = ContainerEdits {
            device_nodes: vec!["/dev/vfio/vfio".into(), "/dev/vfio/42".into()],
            env: vec![],
        };
        let spec = claim_spec(
            "sriov.arm.com",
            &[
                (pci("0000:03:10.6"), vfio),
                (pci("0000:03:10.7"), ContainerEdits::default()),
            ],
        );
        assert_eq!(spec["cdiVersion"], "0.6.0");
        assert_eq!(spec["kind"], "sriov.arm.com/vf");
        assert_eq!(spec["devices"][0]["name"], "0000:03:10.6");
        let ce = &spec["devices"][0]["containerEdits"];
        assert_eq!(
            ce["deviceNodes"][1],
            json!({"path": "/dev/vfio/42", "hostPath": "/dev/vfio/42", "permissions": "rw"})
        );
        assert_eq!(
            ce["env"],
            json!(["PCIDEVICE_SRIOV_ARM_COM_VF_0000_03_10_6=0000:03:10.6"])
        );
        let kernel = &spec["devices"][1]["containerEdits"];
        assert!(kernel.get("deviceNodes").is_none());
        assert_eq!(
            kernel["env"],
            json!(["PCIDEVICE_SRIOV_ARM_COM_VF_0000_03_10_7=0000:03:10.7"])
        );
    }

    #[test]
    fn written_then_removed_and_a_uid_never_escapes_the_directory() {
        let dir = tempfile::tempdir().expect("tmp");
        let ids = write_claim_spec(
            dir.path(),
            "sriov.arm.com",
            "0b6f-uid",
            &[(pci("0000:03:10.6"), ContainerEdits::default())],
        )
        .expect("written");
        assert_eq!(ids, ["sriov.arm.com/vf=0000:03:10.6"]);
        let path = dir.path().join("sriov-dra-0b6f-uid.json");
        let spec: Value =
            serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
        assert_eq!(spec["devices"][0]["name"], "0000:03:10.6");
        remove_claim_spec(dir.path(), "0b6f-uid").expect("removed");
        assert!(!path.exists());
        remove_claim_spec(dir.path(), "0b6f-uid").expect("already gone");
        for bad in ["../x", "a/b", "", "UID", &"a".repeat(65)] {
            let err = write_claim_spec(dir.path(), "sriov.arm.com", bad, &[]).expect_err(bad);
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
        assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 0);
    }
}
