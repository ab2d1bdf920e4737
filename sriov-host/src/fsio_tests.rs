use std::os::unix::fs::symlink;

use super::*;

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn replace_file_swaps_the_whole_content_and_leaves_no_temporary() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("s.json");
    replace_file(&p, b"a longer first content", 0o600).unwrap();
    replace_file(&p, b"second", 0o600).unwrap();
    assert_eq!(fs::read(&p).unwrap(), b"second");
    write_atomic(&p, b"third").unwrap();
    assert_eq!(fs::read(&p).unwrap(), b"third");
    // The rename fails (the target is a non-empty directory): the temporary goes too.
    let d = dir.path().join("d");
    fs::create_dir_all(d.join("x")).unwrap();
    assert!(replace_file(&d, b"x", 0o644).is_err());
    assert_eq!(names(dir.path()), ["d", "s.json"]);
}

#[test]
fn replace_file_sets_the_mode_whatever_the_umask() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f");
    // 0666 is narrowed by any umask at creation: only the fchmod gives it.
    replace_file(&p, b"x", 0o666).unwrap();
    assert_eq!(mode(&p), 0o666);
    replace_file(&p, b"x", 0o600).unwrap();
    assert_eq!(mode(&p), 0o600);
    write_atomic(&p, b"y").unwrap();
    assert_eq!(mode(&p), 0o644);
}

#[test]
fn a_symlink_planted_at_a_temporary_name_is_never_written_through() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    let p = dir.path().join("s.json");
    // The name a pid-based scheme would pick, and the ones the forced suffixes give.
    let planted = [
        format!(".s.json.tmp{}", std::process::id()),
        format!(".s.json.{:016x}.tmp", 1),
        format!(".s.json.{:016x}.tmp", 2),
    ];
    for n in &planted {
        symlink(&victim, dir.path().join(n)).unwrap();
    }
    replace_file(&p, b"real", 0o600).unwrap();
    let mut next = [1u64, 2, 3].into_iter();
    replace_file_with(&p, b"again", 0o600, &mut || Ok(next.next().unwrap())).unwrap();
    assert!(!victim.exists(), "written through a planted symlink");
    assert_eq!(fs::read(&p).unwrap(), b"again");
    assert!(planted
        .iter()
        .all(|n| fs::symlink_metadata(dir.path().join(n)).is_ok()));

    // Every name taken: a clear error, nothing written anywhere.
    let err = replace_file_with(&p, b"x", 0o600, &mut || Ok(1)).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
    assert!(err.to_string().contains("temporary"), "{err}");
    assert!(!victim.exists());
    assert_eq!(fs::read(&p).unwrap(), b"again");
}

#[test]
fn replace_file_replaces_a_symlink_at_the_path_itself() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    fs::write(&victim, "keep").unwrap();
    let p = dir.path().join("s.json");
    symlink(&victim, &p).unwrap();
    replace_file(&p, b"new", 0o600).unwrap();
    assert_eq!(fs::read_to_string(&victim).unwrap(), "keep");
    assert!(fs::symlink_metadata(&p).unwrap().file_type().is_file());
}

#[test]
fn open_append_regular_refuses_what_is_not_a_plain_file() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    fs::write(&victim, "v").unwrap();

    let link = dir.path().join("link");
    symlink(&victim, &link).unwrap();
    let e = open_append_regular(&link, 0o600).unwrap_err();
    assert!(e.to_string().contains("symlink"), "{e}");
    let dangling = dir.path().join("dangling");
    symlink(dir.path().join("nothing"), &dangling).unwrap();
    assert!(open_append_regular(&dangling, 0o600).is_err());
    assert!(!dir.path().join("nothing").exists(), "target created");

    let fifo = dir.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let e = open_append_regular(&fifo, 0o600).unwrap_err();
    assert!(e.to_string().contains("regular"), "{e}");
    assert!(open_append_regular(dir.path(), 0o600).is_err());

    let hard = dir.path().join("hard");
    fs::hard_link(&victim, &hard).unwrap();
    let e = open_append_regular(&hard, 0o600).unwrap_err();
    assert!(e.to_string().contains("hard links"), "{e}");
    assert_eq!(fs::read_to_string(&victim).unwrap(), "v");

    let log = dir.path().join("new.log");
    open_append_regular(&log, 0o600)
        .unwrap()
        .write_all(b"a\n")
        .unwrap();
    open_append_regular(&log, 0o600)
        .unwrap()
        .write_all(b"b\n")
        .unwrap();
    assert_eq!(fs::read_to_string(&log).unwrap(), "a\nb\n");
    assert_eq!(mode(&log), 0o600);
}
