//! The `provision` section of the config: which VFs to create on which PF and which driver
//! each gets. Parsed here straight into the provisioning library's
//! [`ProvisionRequest`]; applied before pools are built.

use serde_json::Value;
use sriov_host::provision::{valid_driver_name, PfRef, ProvisionRequest, VfDriverRule};
use sriov_host::IndexSet;

use crate::json::{as_bool, as_str, check_keys, kind, KeyError};

const PROVISION_KEYS: &[&str] = &["pf", "numVfs", "vfDrivers", "linkUp"];
const VF_DRIVER_KEYS: &[&str] = &["vfs", "driver"];

/// Parse entry `i` of `provision`; errors name the key from `provision[i]` on.
pub(crate) fn parse_provision(i: usize, v: &Value) -> Result<ProvisionRequest, KeyError> {
    let at = |k: &str| format!("provision[{i}].{k}");
    let obj = v.as_object().ok_or_else(|| {
        KeyError::new(
            format!("provision[{i}]"),
            format!("expected an object, got {}", kind(v)),
        )
    })?;
    check_keys(obj, PROVISION_KEYS).map_err(|e| KeyError::new(at(&e.key), e.problem))?;
    let pf = match obj.get("pf") {
        None => {
            return Err(KeyError::new(
                at("pf"),
                "missing: expected a PF netdev name or PCI address",
            ))
        }
        Some(p) => PfRef::parse(as_str(p).map_err(|e| KeyError::new(at("pf"), e))?),
    };
    let num_vfs = match obj.get("numVfs") {
        None => return Err(KeyError::new(at("numVfs"), "missing: expected a VF count")),
        Some(n) => n
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| {
                KeyError::new(
                    at("numVfs"),
                    format!("expected a non-negative integer, got {n}"),
                )
            })?,
    };
    let link_up = match obj.get("linkUp") {
        None => false,
        Some(b) => as_bool(b).map_err(|e| KeyError::new(at("linkUp"), e))?,
    };
    let mut vf_drivers = Vec::new();
    if let Some(list) = obj.get("vfDrivers") {
        let list = list.as_array().ok_or_else(|| {
            KeyError::new(
                at("vfDrivers"),
                format!("expected a list of objects, got {}", kind(list)),
            )
        })?;
        for (j, d) in list.iter().enumerate() {
            let at = |k: &str| format!("provision[{i}].vfDrivers[{j}]{k}");
            let o = d.as_object().ok_or_else(|| {
                KeyError::new(at(""), format!("expected an object, got {}", kind(d)))
            })?;
            check_keys(o, VF_DRIVER_KEYS)
                .map_err(|e| KeyError::new(at(&format!(".{}", e.key)), e.problem))?;
            let vfs = o
                .get("vfs")
                .ok_or_else(|| {
                    KeyError::new(at(".vfs"), "missing: expected VF indexes like \"0-3\"")
                })
                .and_then(|s| as_str(s).map_err(|e| KeyError::new(at(".vfs"), e)))?;
            let vfs: IndexSet = vfs.parse().map_err(|e: sriov_host::range::IndexSetError| {
                KeyError::new(at(".vfs"), e.to_string())
            })?;
            let driver = o
                .get("driver")
                .ok_or_else(|| KeyError::new(at(".driver"), "missing: expected a driver name"))
                .and_then(|s| as_str(s).map_err(|e| KeyError::new(at(".driver"), e)))?;
            if !valid_driver_name(driver) {
                return Err(KeyError::new(
                    at(".driver"),
                    format!("invalid driver name {driver:?}: expected letters, digits, '_', '-' or '.', not starting with '.'"),
                ));
            }
            vf_drivers.push(VfDriverRule {
                vfs,
                driver: driver.to_string(),
            });
        }
    }
    Ok(ProvisionRequest {
        pf,
        num_vfs,
        vf_drivers,
        link_up,
    })
}
