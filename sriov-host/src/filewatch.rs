//! Watching a config file the ways it really changes on a node: an in-place write, a
//! write-then-rename, and the Kubernetes ConfigMap volume update (a new timestamped directory, then
//! the `..data` symlink swapped by rename). Driven by inotify on the directories involved; the file
//! is re-read after each burst of events and reported only when its bytes changed.

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
