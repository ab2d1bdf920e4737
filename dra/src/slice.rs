//! The ResourceSlices of one node, built from its VFs: a pure function of the device list, so
//! what the cluster sees is testable without a cluster.
//!
//! One pool per node, named after the node; its devices are spread over slices of at most
//! [`MAX_DEVICES_PER_SLICE`] devices (the API's limit for slices whose devices carry taints),
//! ordered by PCI address. Every slice of the pool carries the same generation and the pool's
//! slice count, so a consumer can tell a complete pool from one half-way through an update.

use std::collections::BTreeMap;

use k8s_openapi::api::resource::v1::{
    Device, DeviceAttribute, DeviceTaint, ResourcePool, ResourceSlice, ResourceSliceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use crate::model::{DeviceName, VfDevice};

/// The DRA driver name: the domain of our device attributes and of the CDI kind, under the
/// project's resource prefix `arm.com`.
pub const DRIVER_NAME: &str = "sriov.arm.com";

/// The most devices in one slice when any of them carries a taint (the API allows 128 without
/// taints; one fixed limit keeps a device in the same slice whatever its health).
pub const MAX_DEVICES_PER_SLICE: usize = 64;

/// The taint an unhealthy VF carries: the scheduler allocates it to no claim that does not
/// tolerate it; pods already using it keep running, as with the classic mode's `Unhealthy`.
pub const UNHEALTHY_TAINT_KEY: &str = "sriov.arm.com/unhealthy";

/// The taint effect of [`UNHEALTHY_TAINT_KEY`].
pub const UNHEALTHY_TAINT_EFFECT: &str = "NoSchedule";

/// The longest string attribute value the API accepts.
const MAX_ATTRIBUTE_LEN: usize = 64;

/// Invalid input for the slices of a node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SliceError {
    #[error("node name {0:?} is not a DNS subdomain of at most 200 characters; pass the node's name from the downward API (spec.nodeName) or --node-name")]
    NodeName(String),
    #[error("driver name {0:?} is not a lowercase DNS subdomain of at most 63 characters")]
    Driver(String),
}

/// Whose slices: the driver, and the node they describe (also the pool's name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SliceTarget {
    driver: String,
    node: String,
    node_uid: Option<String>,
}

impl SliceTarget {
    /// The slices of `driver` on `node`, both validated.
    pub fn new(driver: &str, node: &str) -> Result<SliceTarget, SliceError> {
        if driver.len() > 63 || !is_dns_subdomain(driver) {
            return Err(SliceError::Driver(driver.to_string()));
        }
        // Room for "-<driver>-<index>" in a 253-character object name.
        if node.len() > 200 || !is_dns_subdomain(node) {
            return Err(SliceError::NodeName(node.to_string()));
        }
        Ok(SliceTarget {
            driver: driver.to_string(),
            node: node.to_string(),
            node_uid: None,
        })
    }

    /// Make the Node object (by its UID) the owner of the slices, so the garbage collector
    /// removes them with the node.
    pub fn owned_by_node(mut self, uid: &str) -> SliceTarget {
        self.node_uid = Some(uid.to_string());
        self
    }

    /// The driver name.
    pub fn driver(&self) -> &str {
        &self.driver
    }

    /// The node name, which is also the pool name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The object name of the slice at `index`: `<node>-<driver>-<index>`.
    pub fn slice_name(&self, index: usize) -> String {
        format!("{}-{}-{index}", self.node, self.driver)
    }

    /// The field selector that lists exactly this driver's slices on this node.
    pub fn field_selector(&self) -> String {
        format!("spec.driver={},spec.nodeName={}", self.driver, self.node)
    }
}

/// A lowercase RFC 1123 subdomain: dot-separated labels of `[a-z0-9-]`, alphanumeric at both
/// ends, at most 253 characters.
fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// The slices of `target`'s pool at `generation` for `devices`. Devices are ordered by PCI
/// address and a PCI address named twice is published once (the first entry); no devices
/// still gives one, empty, slice, so the pool exists and says "nothing here".
pub fn build_slices(
    target: &SliceTarget,
    devices: &[VfDevice],
    generation: i64,
) -> Vec<ResourceSlice> {
    let mut by_pci: BTreeMap<_, &VfDevice> = BTreeMap::new();
    for d in devices {
        match by_pci.entry(d.pci) {
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(d);
            }
            std::collections::btree_map::Entry::Occupied(_) => {
                tracing::warn!(pci = %d.pci, "VF listed twice; publishing its first entry");
            }
        }
    }
    let devices: Vec<Device> = by_pci.values().map(|d| device(d)).collect();
    let chunks: Vec<Vec<Device>> = if devices.is_empty() {
        vec![Vec::new()]
    } else {
        devices
            .chunks(MAX_DEVICES_PER_SLICE)
            .map(<[Device]>::to_vec)
            .collect()
    };
    let count = chunks.len() as i64;
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, devices)| ResourceSlice {
            metadata: ObjectMeta {
                name: Some(target.slice_name(i)),
                owner_references: target.node_uid.as_ref().map(|uid| {
                    vec![OwnerReference {
                        api_version: "v1".to_string(),
                        kind: "Node".to_string(),
                        name: target.node.clone(),
                        uid: uid.clone(),
                        controller: Some(true),
                        ..OwnerReference::default()
                    }]
                }),
                ..ObjectMeta::default()
            },
            spec: ResourceSliceSpec {
                driver: target.driver.clone(),
                node_name: Some(target.node.clone()),
                pool: ResourcePool {
                    name: target.node.clone(),
                    generation,
                    resource_slice_count: count,
                },
                devices: Some(devices),
                ..ResourceSliceSpec::default()
            },
        })
        .collect()
}

/// The slice entry of one VF: its attributes, and the unhealthy taint while it is unhealthy.
pub fn device(vf: &VfDevice) -> Device {
    let mut attrs = BTreeMap::new();
    let mut string = |key: &str, value: String| {
        if value.len() > MAX_ATTRIBUTE_LEN {
            tracing::warn!(pci = %vf.pci, attribute = key, value, "attribute value longer than 64 characters; left out");
            return;
        }
        attrs.insert(
            key.to_string(),
            DeviceAttribute {
                string: Some(value),
                ..Default::default()
            },
        );
    };
    string("pciAddress", vf.pci.to_string());
    string("resource.kubernetes.io/pciBusID", vf.pci.to_string());
    string("pfPciAddress", vf.pf_pci.to_string());
    string("vendor", vf.vendor.to_string());
    string("device", vf.device.to_string());
    string("pool", vf.pool.clone());
    if let Some(v) = &vf.pf_name {
        string("pfName", v.clone());
    }
    if let Some(v) = &vf.driver {
        string("driver", v.clone());
    }
    if let Some(v) = &vf.link_type {
        string("linkType", v.clone());
    }
    if let Some(v) = &vf.pcie_root {
        string("resource.kubernetes.io/pcieRoot", v.clone());
    }
    let int = |v: i64| DeviceAttribute {
        int: Some(v),
        ..Default::default()
    };
    attrs.insert("vfIndex".to_string(), int(vf.vf_index.into()));
    if let Some(n) = vf.numa_node {
        attrs.insert("numaNode".to_string(), int(n.into()));
        attrs.insert("resource.kubernetes.io/numaNode".to_string(), int(n.into()));
    }
    let taints = (!vf.healthy).then(|| {
        vec![DeviceTaint {
            key: UNHEALTHY_TAINT_KEY.to_string(),
            effect: UNHEALTHY_TAINT_EFFECT.to_string(),
            ..DeviceTaint::default()
        }]
    });
    Device {
        name: DeviceName::of(&vf.pci).to_string(),
        attributes: Some(attrs),
        taints,
        ..Device::default()
    }
}

#[cfg(test)]
#[path = "slice_tests.rs"]
pub(crate) mod tests;
