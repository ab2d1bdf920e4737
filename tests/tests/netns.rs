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

/// `run_here` runs on the calling thread inside the other namespace and brings the thread back.
#[test]
fn run_here_enters_and_comes_back_on_the_same_thread() {
    if !sriov_tests::gate::need_root() {
        return;
    }
    std::thread::spawn(|| {
        let own = Path::new("/proc/thread-self/ns/net");
        // The process's first thread stays in the original namespace; this one gets its own.
        nix::sched::unshare(CloneFlags::CLONE_NEWNET).expect("unshare");
        let other = format!(
            "/proc/{}/task/{}/ns/net",
            std::process::id(),
            std::process::id()
        );
        let me = std::thread::current().id();
        let inside = sriov_host::netns::run_here(Path::new(&other), || {
            (
                std::thread::current().id(),
                is_current(Path::new(&other)).unwrap(),
            )
        })
        .unwrap();
        assert_eq!(
            inside,
            (me, true),
            "ran on this thread, in the other namespace"
        );
        assert!(is_current(own).unwrap(), "back in its own namespace");
        assert!(!is_current(Path::new(&other)).unwrap());
    })
    .join()
    .unwrap();
}
