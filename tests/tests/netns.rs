//! `sriov_host::netns` against a namespace of its own (root only).
#![allow(clippy::unwrap_used)]

use std::path::Path;

use nix::sched::CloneFlags;
use sriov_host::netns::is_current;

/// A thread in a namespace of its own: the process's first thread is elsewhere.
#[test]
fn own_namespace_is_told_from_another() {
    if !sriov_tests::gate::need_root() {
        return;
    }
    std::thread::spawn(|| {
        nix::sched::unshare(CloneFlags::CLONE_NEWNET).expect("unshare");
        assert!(is_current(Path::new("/proc/thread-self/ns/net")).unwrap());
        assert!(!is_current(Path::new("/proc/self/ns/net")).unwrap());
    })
    .join()
    .unwrap();
}
