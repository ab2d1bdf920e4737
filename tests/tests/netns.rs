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
        let mine = ns_id(own);
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
        assert_eq!(ns_id(own), mine, "back in its own namespace");
        assert!(!is_current(Path::new(&other)).unwrap());
    })
    .join()
    .unwrap();
}

/// A panic inside `run_here` still brings the thread back to its own namespace.
#[test]
fn run_here_comes_back_when_the_work_panics() {
    if !sriov_tests::gate::need_root() {
        return;
    }
    std::thread::spawn(|| {
        let own = Path::new("/proc/thread-self/ns/net");
        nix::sched::unshare(CloneFlags::CLONE_NEWNET).expect("unshare");
        let mine = ns_id(own);
        let other = format!(
            "/proc/{}/task/{}/ns/net",
            std::process::id(),
            std::process::id()
        );
        let r = std::panic::catch_unwind(|| {
            sriov_host::netns::run_here(Path::new(&other), || panic!("work failed"))
        });
        assert!(r.is_err(), "the panic reaches the caller");
        assert_eq!(ns_id(own), mine, "back in its own namespace");
    })
    .join()
    .unwrap();
}

/// The identity (device, inode) of the namespace file at `p`.
fn ns_id(p: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(p).unwrap();
    (m.dev(), m.ino())
}
