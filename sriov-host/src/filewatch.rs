//! Watching a config file the ways it really changes on a node: an in-place write, a
//! write-then-rename, and the Kubernetes ConfigMap volume update (a new timestamped directory, then
//! the `..data` symlink swapped by rename). Driven by inotify on the directories involved; the file
//! is re-read after each burst of events and reported only when its bytes changed.
//!
//! [`watch_dir`] follows names appearing in and leaving one directory (the device plugin's
//! kubelet-restart detection). Both are the one inotify implementation of the project.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use std::os::fd::AsFd;

/// Events settle for this long before the file is re-read, so a writer's truncate + write
/// sequence is seen once, whole.
pub const SETTLE: Duration = Duration::from_millis(50);

/// Watch `path`; call `on_change` with the new content whenever it differs from the last content
/// seen (the content at start counts as seen). Runs until `on_change` returns false.
/// Returns an error only when the watch cannot be set up.
pub fn watch_file(
    path: &Path,
    on_change: impl FnMut(Vec<u8>) -> bool + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    watch_file_with(path, |p| std::fs::read(p).ok(), on_change)
}

/// [`watch_file`] with the file read by `read`, which decides what a read gives (say, a size
/// limit, or an error to report): `None` means "nothing there", which is not a change to act on.
pub fn watch_file_with<T, R, F>(
    path: &Path,
    mut read: R,
    mut on_change: F,
) -> std::io::Result<std::thread::JoinHandle<()>>
where
    T: PartialEq + Clone + Send + 'static,
    R: FnMut(&Path) -> Option<T> + Send + 'static,
    F: FnMut(T) -> bool + Send + 'static,
{
    let path = path.to_path_buf();
    let ino = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)?;
    let flags = AddWatchFlags::IN_CLOSE_WRITE
        | AddWatchFlags::IN_MOVED_TO
        | AddWatchFlags::IN_CREATE
        | AddWatchFlags::IN_DELETE
        | AddWatchFlags::IN_MOVED_FROM
        | AddWatchFlags::IN_ATTRIB;
    for dir in dirs_to_watch(&path) {
        ino.add_watch(&dir, flags)?;
    }
    let mut last = read(&path);
    std::thread::Builder::new()
        .name("config-watch".into())
        .spawn(move || loop {
            // Block for the first event, then let the burst settle.
            let mut fds = [PollFd::new(ino.as_fd(), PollFlags::POLLIN)];
            if poll(&mut fds, PollTimeout::NONE).is_err() {
                continue;
            }
            loop {
                let _ = ino.read_events();
                let mut fds = [PollFd::new(ino.as_fd(), PollFlags::POLLIN)];
                let ms = SETTLE.as_millis() as u16;
                if !matches!(poll(&mut fds, PollTimeout::from(ms)), Ok(n) if n > 0) {
                    break;
                }
            }
            let now = read(&path);
            if now != last {
                last = now.clone();
                // A deleted file is not a change to act on: keep serving what we have.
                if let Some(content) = now {
                    if !on_change(content) {
                        return;
                    }
                }
            }
        })
}

/// The file's directory, and the directory its symlink chain ends in when that differs (a
/// ConfigMap's `config.json -> ..data/config.json` is covered by the first: the swap is a rename
/// of `..data` in that directory).
fn dirs_to_watch(path: &Path) -> Vec<PathBuf> {
    let parent = |p: &Path| {
        p.parent()
            .map(Path::to_path_buf)
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."))
    };
    let mut dirs = vec![parent(path)];
    if let Ok(real) = std::fs::canonicalize(path) {
        let rd = parent(&real);
        let first = std::fs::canonicalize(&dirs[0]).unwrap_or_else(|_| dirs[0].clone());
        if !rd.starts_with(&first) || rd.components().count() > first.components().count() + 1 {
            dirs.push(rd);
        }
    }
    dirs
}

/// A change of the names in a watched directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirChange {
    /// A name appeared (created or moved in).
    Created(OsString),
    /// A name disappeared (deleted or moved out).
    Removed(OsString),
    /// The kernel's queue overflowed: events were lost, re-check everything.
    Overflow,
}

/// Watch `dir` for names appearing and disappearing; `on_change` runs on a thread of its own
/// for each change until it returns false or reading events fails (logged). The watch is in
/// place when this returns, so nothing that happens afterwards is missed.
pub fn watch_dir(
    dir: &Path,
    mut on_change: impl FnMut(DirChange) -> bool + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let ino = Inotify::init(InitFlags::IN_CLOEXEC)?;
    ino.add_watch(
        dir,
        AddWatchFlags::IN_CREATE
            | AddWatchFlags::IN_DELETE
            | AddWatchFlags::IN_MOVED_FROM
            | AddWatchFlags::IN_MOVED_TO,
    )?;
    let shown = dir.display().to_string();
    std::thread::Builder::new()
        .name("dir-watch".into())
        .spawn(move || loop {
            let events = match ino.read_events() {
                Ok(evs) => evs,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    tracing::error!(dir = %shown, error = %e, "inotify failed; directory changes go unnoticed");
                    return;
                }
            };
            for ev in events {
                let change = if ev.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
                    Some(DirChange::Overflow)
                } else if ev
                    .mask
                    .intersects(AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO)
                {
                    ev.name.map(DirChange::Created)
                } else if ev
                    .mask
                    .intersects(AddWatchFlags::IN_DELETE | AddWatchFlags::IN_MOVED_FROM)
                {
                    ev.name.map(DirChange::Removed)
                } else {
                    None
                };
                if let Some(c) = change {
                    if !on_change(c) {
                        return;
                    }
                }
            }
        })
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    #[test]
    fn watch_dir_reports_names_created_moved_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, rx) = mpsc::channel();
        watch_dir(dir.path(), move |c| tx.send(c).is_ok()).unwrap();
        let a = dir.path().join("kubelet.sock");
        std::fs::write(&a, "").unwrap();
        std::fs::rename(&a, dir.path().join("b")).unwrap();
        std::fs::remove_file(dir.path().join("b")).unwrap();
        let got: Vec<DirChange> = (0..4)
            .map(|_| rx.recv_timeout(Duration::from_secs(5)).unwrap())
            .collect();
        assert_eq!(
            got,
            [
                DirChange::Created("kubelet.sock".into()),
                DirChange::Removed("kubelet.sock".into()),
                DirChange::Created("b".into()),
                DirChange::Removed("b".into()),
            ]
        );
    }
}
