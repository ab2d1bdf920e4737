//! Test helpers shared by the workspace's integration tests.
#![allow(clippy::unwrap_used)]

pub mod daemon;
pub mod fakeapi;
pub mod fakekernel;
pub mod fakesys;
pub mod gate;
pub mod kubelet;
#[cfg(feature = "lab")]
pub mod lab;
pub mod netbed;
pub mod promtext;
pub mod schema;
pub mod upstream;
