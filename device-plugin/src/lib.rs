//! The SR-IOV device plugin library.
