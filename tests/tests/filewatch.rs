//! The config watcher sees every way a config file changes on a node.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::symlink;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use sriov_host::filewatch::watch_file;

fn expect(rx: &mpsc::Receiver<Vec<u8>>, want: &str, t0: Instant) -> Duration {
    let got = rx
        .recv_timeout(Duration::from_secs(3))
        .expect("change reported");
    assert_eq!(String::from_utf8(got).unwrap(), want);
    t0.elapsed()
}

#[test]
fn in_place_write_and_rename_are_seen_once_each() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("config.json");
    fs::write(&p, "a").unwrap();
    let (tx, rx) = mpsc::channel();
    watch_file(&p, move |c| tx.send(c).is_ok()).unwrap();
    let t0 = Instant::now();
    fs::write(&p, "b").unwrap();
    let lat = expect(&rx, "b", t0);
    let tmp = d.path().join(".config.json.new");
    fs::write(&tmp, "c").unwrap();
    let t0 = Instant::now();
    fs::rename(&tmp, &p).unwrap();
    expect(&rx, "c", t0);
    // Same bytes again: nothing reported.
    fs::write(&p, "c").unwrap();
    assert!(rx.recv_timeout(Duration::from_millis(300)).is_err());
    eprintln!("in-place write reported after {lat:?}");
}

#[test]
fn configmap_data_symlink_swap_is_seen() {
    // The kubelet's atomic writer: ..<ts>/config.json, ..data -> ..<ts>, config.json -> ..data/config.json
    let d = tempfile::tempdir().unwrap();
    let v1 = d.path().join("..2026_11_25_10_00_00.1");
    fs::create_dir(&v1).unwrap();
    fs::write(v1.join("config.json"), "v1").unwrap();
    symlink("..2026_11_25_10_00_00.1", d.path().join("..data")).unwrap();
    symlink("..data/config.json", d.path().join("config.json")).unwrap();
    let (tx, rx) = mpsc::channel();
    watch_file(&d.path().join("config.json"), move |c| tx.send(c).is_ok()).unwrap();

    let v2 = d.path().join("..2026_11_25_10_05_00.2");
    fs::create_dir(&v2).unwrap();
    fs::write(v2.join("config.json"), "v2").unwrap();
    symlink("..2026_11_25_10_05_00.2", d.path().join("..data_tmp")).unwrap();
    let t0 = Instant::now();
    fs::rename(d.path().join("..data_tmp"), d.path().join("..data")).unwrap();
    fs::remove_dir_all(&v1).unwrap();
    let lat = expect(&rx, "v2", t0);
    eprintln!("ConfigMap swap reported after {lat:?}");
}

#[test]
fn a_deleted_file_is_not_reported_and_its_return_is() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("config.json");
    fs::write(&p, "a").unwrap();
    let (tx, rx) = mpsc::channel();
    watch_file(&p, move |c| tx.send(c).is_ok()).unwrap();
    fs::remove_file(&p).unwrap();
    assert!(rx.recv_timeout(Duration::from_millis(300)).is_err());
    fs::write(&p, "b").unwrap();
    expect(&rx, "b", Instant::now());
}
