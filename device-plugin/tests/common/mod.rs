//! The device plugin's integration tests share the fake-node harness of `sriov_tests::daemon`
//! with the benchmarks and the lab.
#![allow(dead_code)]

pub use sriov_tests::daemon::*;
