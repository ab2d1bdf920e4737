//! The sriov CNI plugin library.
