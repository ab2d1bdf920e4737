//! Network namespaces: run a short piece of work inside one on a dedicated thread (the caller's
//! thread never changes namespace), tell a live namespace from a stale path, and the caller's own
//! namespace from another.

use std::fs::File;
use std::path::{Path, PathBuf};

use nix::sched::{setns, CloneFlags};

/// Why a network namespace could not be opened or entered; each carries the namespace path.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// The path could not be opened (absent: the pod sandbox is gone; or no permission).
    #[error("network namespace {path}: {source}")]
    Open {
        /// The namespace path as given.
        path: PathBuf,
        /// The open error.
        source: std::io::Error,
    },
    /// The path opens but is not on nsfs (a plain file, e.g. a mount point whose bind
    /// mount is gone).
    #[error("network namespace {path}: not a namespace file")]
    NotNetns {
        /// The namespace path as given.
        path: PathBuf,
    },
    /// `setns(CLONE_NEWNET)` on the worker thread failed.
    #[error("entering network namespace {path}: {source}")]
    Enter {
        /// The namespace path as given.
        path: PathBuf,
        /// The `setns` error (`EPERM` without `CAP_SYS_ADMIN`).
        source: nix::Error,
    },
    /// The work run inside the namespace panicked; a bug, the message is in the log.
    #[error("worker thread in network namespace {path} panicked")]
    Panicked {
        /// The namespace path as given.
        path: PathBuf,
    },
}

/// Open a network namespace file, checking that it is one.
pub fn open(path: &Path) -> Result<File, NetnsError> {
    let f = File::open(path).map_err(|source| NetnsError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    match nix::sys::statfs::fstatfs(&f) {
        Ok(st) if st.filesystem_type() == nix::sys::statfs::NSFS_MAGIC => Ok(f),
        Ok(_) => Err(NetnsError::NotNetns {
            path: path.to_path_buf(),
        }),
        Err(e) => Err(NetnsError::Open {
            path: path.to_path_buf(),
            source: e.into(),
        }),
    }
}

/// True when `path` names a live network namespace.
pub fn is_alive(path: &Path) -> bool {
    !path.as_os_str().is_empty() && open(path).is_ok()
}

/// True when `path` is the network namespace the calling thread is in (the same namespace
/// file: device and inode, as `stat` reports them for any path or bind mount of it).
pub fn is_current(path: &Path) -> Result<bool, NetnsError> {
    use std::os::unix::fs::MetadataExt;
    let stat = |f: &File, p: &Path| {
        f.metadata().map_err(|source| NetnsError::Open {
            path: p.to_path_buf(),
            source,
        })
    };
    let theirs = stat(&open(path)?, path)?;
    let own_path = Path::new("/proc/thread-self/ns/net");
    let ours = stat(&open(own_path)?, own_path)?;
    Ok((theirs.dev(), theirs.ino()) == (ours.dev(), ours.ino()))
}

/// Run `f` on a new thread that has entered the network namespace at `path`, and return its
/// result. Sockets created there stay bound to that namespace; `/proc/sys/net` reads and writes
/// act on it.
pub fn run_in<T: Send>(path: &Path, f: impl FnOnce() -> T + Send) -> Result<T, NetnsError> {
    let ns = open(path)?;
    std::thread::scope(|s| {
        let h = s.spawn(|| {
            setns(&ns, CloneFlags::CLONE_NEWNET).map_err(|source| NetnsError::Enter {
                path: path.to_path_buf(),
                source,
            })?;
            Ok(f())
        });
        h.join().map_err(|_| NetnsError::Panicked {
            path: path.to_path_buf(),
        })?
    })
}

/// Run `f` on the calling thread after moving it into the network namespace at `path`, then
/// move it back to the namespace it was in, and return `f`'s result. The same as [`run_in`]
/// without its thread: for a single-threaded, short-lived process such as the CNI plugin, where a
/// thread (its stack, its malloc arena, zapping them at exit) costs more than the work. While `f`
/// runs, sockets the thread creates and `/proc/sys/net` act on that namespace.
///
/// Not for a process with other threads that might act on this thread's namespace meanwhile (a
/// runtime's worker threads): use [`run_in`] there. If the thread cannot go back to its own
/// namespace, the process aborts: carrying on would act on the wrong one.
pub fn run_here<T>(path: &Path, f: impl FnOnce() -> T) -> Result<T, NetnsError> {
    let target = open(path)?;
    let own_path = Path::new("/proc/thread-self/ns/net");
    let own = open(own_path)?;
    setns(&target, CloneFlags::CLONE_NEWNET).map_err(|source| NetnsError::Enter {
        path: path.to_path_buf(),
        source,
    })?;
    // Returns on drop, so also when `f` unwinds.
    let _back = Return(own);
    Ok(f())
}

/// Moves the calling thread back into its own network namespace when dropped.
struct Return(File);

impl Drop for Return {
    fn drop(&mut self) {
        if let Err(e) = setns(&self.0, CloneFlags::CLONE_NEWNET) {
            tracing::error!(error = %e, "cannot return to the own network namespace; aborting");
            std::process::abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_namespace_is_told_from_another() {
        let own = Path::new("/proc/thread-self/ns/net");
        assert!(is_current(own).unwrap());
        assert!(matches!(
            is_current(Path::new("/proc/self/status")),
            Err(NetnsError::NotNetns { .. })
        ));
        // A namespace of its own needs root: tests/tests/netns.rs.
    }
}
