//! Dynamic Resource Allocation for SR-IOV VFs: the same VFs the classic device-plugin mode
//! serves, published as ResourceSlices and prepared through the kubelet's DRA plugin API.
//!
//! - [`model`]: the plain per-VF input ([`VfDevice`]) and the device names derived from PCI
//!   addresses
//! - [`slice`]: the ResourceSlices of a node, a pure function of its VFs
//! - [`publish`]: the single writer that keeps those slices current in the API server
//! - [`plugin`]: the kubelet's `DRAPlugin` service (NodePrepareResources and
//!   NodeUnprepareResources) over a claim reader and a per-VF preparer
//! - [`cdi`]: the per-claim CDI spec behind the device IDs prepare answers
//! - [`checkpoint`]: the prepared claims on disk, for idempotency across restarts
//! - [`registration`]: plugin-watcher registration as a DRA driver
//! - [`health`]: the kubelet's DRA device-health stream

pub mod cdi;
pub mod checkpoint;
pub mod health;
pub mod model;
pub mod plugin;
pub mod publish;
pub mod registration;
pub mod slice;

/// The Kubernetes client and API types this crate is built with, for its callers.
pub use {k8s_openapi, kube};

pub use model::{DeviceName, VfDevice};
pub use slice::{build_slices, SliceTarget, DRIVER_NAME};
