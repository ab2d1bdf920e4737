//! Generated kubelet APIs (filled in with the device plugin).
