//! Extended resource names (`arm.com/ps225_dpdk`) and the names derived from them: the socket
//! file, the container environment variables, the device-info file prefix.

use std::fmt;

/// A validated Kubernetes extended resource name, `<prefix>/<name>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceName {
    prefix: String,
    name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResourceNameError {
    #[error("invalid resource name {0:?}: expected 1-63 characters of letters, digits, '-', '_' or '.', starting and ending with a letter or digit")]
    Name(String),
    #[error("invalid resource prefix {0:?}: expected a DNS subdomain such as example.com (lowercase letters, digits, '-' and '.', at most 253 characters)")]
    Prefix(String),
    #[error("invalid resource prefix {0:?}: the kubernetes.io and k8s.io domains are reserved for Kubernetes")]
    Reserved(String),
}

impl ResourceName {
    pub fn new(prefix: &str, name: &str) -> Result<Self, ResourceNameError> {
        validate_name(name)?;
        validate_prefix(prefix)?;
        Ok(ResourceName {
            prefix: prefix.to_string(),
            name: name.to_string(),
        })
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The plugin's socket file name: `<prefix>_<name>.sock`.
    pub fn socket_name(&self) -> String {
        format!("{}_{}.sock", self.prefix, self.name)
    }

    /// `PCIDEVICE_<PREFIX>_<NAME>`: upper-cased, every character outside `[A-Za-z0-9_]` as `_`.
    pub fn env_name(&self) -> String {
        let raw = format!("PCIDEVICE_{}_{}", self.prefix, self.name);
        raw.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect()
    }

    /// The device-info file of a device: `<prefix>-<name>-<deviceID>-device.json`.
    pub fn devinfo_file(&self, device_id: &str) -> String {
        format!("{}-{}-{}-device.json", self.prefix, self.name, device_id)
    }
}

impl fmt::Display for ResourceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.prefix, self.name)
    }
}

fn validate_name(name: &str) -> Result<(), ResourceNameError> {
    let b = name.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(ResourceNameError::Name(name.to_string()))
    }
}

fn validate_prefix(prefix: &str) -> Result<(), ResourceNameError> {
    let label_ok = |l: &str| {
        let b = l.as_bytes();
        !b.is_empty()
            && b.len() <= 63
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
    };
    if prefix.is_empty() || prefix.len() > 253 || !prefix.split('.').all(label_ok) {
        return Err(ResourceNameError::Prefix(prefix.to_string()));
    }
    let reserved = |d: &str| prefix == d || prefix.ends_with(&format!(".{d}"));
    if reserved("kubernetes.io") || reserved("k8s.io") {
        return Err(ResourceNameError::Reserved(prefix.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mangles_env_names() {
        let r = ResourceName::new("intel.com", "ps225_dpdk").unwrap();
        assert_eq!(r.env_name(), "PCIDEVICE_INTEL_COM_PS225_DPDK");
        let r = ResourceName::new("arm-x.com", "a.b-c").unwrap();
        assert_eq!(r.env_name(), "PCIDEVICE_ARM_X_COM_A_B_C");
        assert_eq!(r.to_string(), "arm-x.com/a.b-c");
        assert_eq!(r.socket_name(), "arm-x.com_a.b-c.sock");
    }

    #[test]
    fn rejects_bad_names_and_prefixes() {
        for bad in ["", "-a", "a-", "a/b", "a b", &"x".repeat(64)] {
            let e = ResourceName::new("arm.com", bad).unwrap_err();
            assert!(
                e.to_string().contains("invalid resource name"),
                "{bad}: {e}"
            );
        }
        for bad in ["", "Arm.com", "a..b", "a_b.com", "-a.com"] {
            let e = ResourceName::new(bad, "x").unwrap_err();
            assert!(
                e.to_string().contains("invalid resource prefix"),
                "{bad}: {e}"
            );
        }
        assert!(ResourceName::new("kubernetes.io", "x")
            .unwrap_err()
            .to_string()
            .contains("reserved"));
        assert!(ResourceName::new("arm.com", "ps225_sriov_netdevice").is_ok());
    }
}
