//! Serving gRPC on a unix socket created 0600, and the directories that hold such sockets.
//!
//! A socket is known by its identity (device and inode, read right after `bind`), not by its
//! name: whatever stale file sits at the path when we start (the socket of a killed process, a
//! regular file, a symlink) is unlinked once, never followed, and later events for that name
//! are checked against the identity ([`Serving::is_in_place`]) so our own unlink is not taken
//! for someone else's.

use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use kubelet_proto::AuthorityFix;
use nix::sys::socket::{self, AddressFamily, Backlog, SockFlag, SockType, UnixAddr};
use nix::sys::stat::{fchmod, Mode};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic::transport::Server;

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("cannot create directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot listen on {path}: {source}")]
    Bind {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot listen on {path}: a directory is in the way; remove it (only a stale socket, file or symlink is replaced)")]
    DirectoryInTheWay { path: PathBuf },
    #[error("cannot replace {what} at {path}: {source}")]
    Replace {
        path: PathBuf,
        what: &'static str,
        source: std::io::Error,
    },
}

/// Create `dir` (and parents) 0700 when it does not exist; an existing directory (the
/// kubelet's) is left as it is.
pub fn ensure_dir(dir: &Path) -> Result<(), SocketError> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| SocketError::Dir {
            path: dir.to_path_buf(),
            source,
        })
}

/// Which file a path names: device and inode number, and the birth time where the filesystem
/// keeps one (an inode number freed by an unlink is handed to the next file created at once;
/// the birth time tells the two apart, and unlike ctime no chmod changes it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileIdentity {
    pub dev: u64,
    pub ino: u64,
    pub born: Option<std::time::SystemTime>,
}

impl FileIdentity {
    /// The identity of the file at `path` itself (a symlink is not followed); `None` when
    /// nothing is there (or it cannot be looked at).
    pub fn of(path: &Path) -> Option<FileIdentity> {
        std::fs::symlink_metadata(path).ok().map(|m| FileIdentity {
            dev: m.dev(),
            ino: m.ino(),
            born: birth_time(path),
        })
    }
}

/// The birth time of the file at `path` itself, from statx(2) directly: the standard library
/// asks statx only on glibc, so the static musl build (arm64) would otherwise never see one.
fn birth_time(path: &Path) -> Option<std::time::SystemTime> {
    use rustix::fs::{statx, AtFlags, StatxFlags, CWD};
    let st = statx(CWD, path, AtFlags::SYMLINK_NOFOLLOW, StatxFlags::BTIME).ok()?;
    if st.stx_mask & StatxFlags::BTIME.bits() == 0 {
        return None;
    }
    let secs = u64::try_from(st.stx_btime.tv_sec).ok()?;
    let since_epoch = Duration::new(secs, st.stx_btime.tv_nsec);
    std::time::UNIX_EPOCH.checked_add(since_epoch)
}

/// A server running on a socket; dropping it does not stop it, [`Serving::shutdown`] does.
pub struct Serving {
    pub path: PathBuf,
    /// The socket file we bound.
    pub identity: FileIdentity,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// How long a stopping server waits for its clients to hang up.
const DRAIN: Duration = Duration::from_millis(300);
/// How long the accept loop pauses when the process is out of file descriptors (or the kernel
/// out of memory), so the pending connection is retried rather than spun on.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// Pending connections the kernel queues for us.
const BACKLOG: i32 = 128;

impl Serving {
    /// Whether our socket file is still at its path (not removed, not replaced).
    pub fn is_in_place(&self) -> bool {
        FileIdentity::of(&self.path) == Some(self.identity)
    }

    /// Stop serving (ending open streams), wait for the server, and remove the socket file if
    /// it is still ours. A client that keeps its HTTP/2 connection open after the GOAWAY (every
    /// stream of ours has ended by then) is cut off after [`DRAIN`] rather than waited for.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        // Remove the file first: nobody should connect to a server that is going away.
        self.remove_if_ours();
        if tokio::time::timeout(DRAIN, &mut self.task).await.is_err() {
            tracing::debug!(path = %self.path.display(), "closing connections the client kept open");
            self.task.abort();
        }
    }

    /// Stop serving without touching the socket path (it was removed, or reused already).
    pub fn stop_without_removing(self) {
        self.stop.cancel();
    }

    /// Remove the socket file, unless another process has put its own file there since.
    fn remove_if_ours(&self) {
        if !self.is_in_place() {
            tracing::debug!(path = %self.path.display(), "socket no longer ours; left in place");
            return;
        }
        match std::fs::remove_file(&self.path) {
            Ok(()) => tracing::debug!(path = %self.path.display(), "socket removed"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot remove socket")
            }
        }
    }
}

/// Make `path` free for a bind: a stale socket, a regular file, a symlink (the link itself,
/// never its target) or any other non-directory is unlinked; a directory is an error.
fn clear_path(path: &Path) -> Result<(), SocketError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(SocketError::Bind {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let ft = meta.file_type();
    let what = if ft.is_dir() {
        return Err(SocketError::DirectoryInTheWay {
            path: path.to_path_buf(),
        });
    } else if ft.is_socket() {
        "a stale socket"
    } else if ft.is_symlink() {
        "a symlink"
    } else if ft.is_file() {
        "a regular file"
    } else {
        "a special file"
    };
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(SocketError::Replace {
                path: path.to_path_buf(),
                what,
                source,
            })
        }
    }
    if ft.is_socket() {
        tracing::debug!(path = %path.display(), "stale socket removed");
    } else {
        tracing::warn!(path = %path.display(), found = what, "replaced a file that was not a socket (a symlink is removed, its target left alone)");
    }
    Ok(())
}

/// A listening unix socket at `path`, 0600 from its creation. The mode is set on the socket
/// before `bind` (Linux creates the file with the socket's mode, less the umask), so no moment
/// exists where the file is more open, nothing follows a symlink, and the process umask stays
/// untouched.
fn listen_0600(path: &Path) -> Result<(UnixListener, FileIdentity), SocketError> {
    let err = |e: std::io::Error| SocketError::Bind {
        path: path.to_path_buf(),
        source: e,
    };
    let nix_err = |e: nix::Error| err(std::io::Error::from(e));
    let fd: OwnedFd = socket::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )
    .map_err(nix_err)?;
    fchmod(&fd, Mode::from_bits_truncate(0o600)).map_err(nix_err)?;
    let addr = UnixAddr::new(path).map_err(nix_err)?;
    socket::bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr).map_err(nix_err)?;
    let identity = FileIdentity::of(path).ok_or_else(|| {
        err(std::io::Error::other(
            "the socket file vanished right after bind",
        ))
    })?;
    socket::listen(&fd, Backlog::new(BACKLOG).map_err(nix_err)?).map_err(nix_err)?;
    let std_listener = std::os::unix::net::UnixListener::from(fd);
    let listener = UnixListener::from_std(std_listener).map_err(err)?;
    Ok((listener, identity))
}

/// Accept connections on a task of their own and hand them to the server. An accept error never
/// ends the loop nor spins it: running out of descriptors or memory pauses accepting for
/// [`ACCEPT_PAUSE`] (the connection waits in the kernel's queue meanwhile), anything else is
/// logged and the next connection accepted.
fn accept_loop(
    listener: UnixListener,
    path: PathBuf,
    stop: CancellationToken,
) -> ReceiverStream<std::io::Result<AuthorityFix<UnixStream>>> {
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(async move {
        let mut pausing = false;
        loop {
            let r = tokio::select! {
                _ = stop.cancelled() => break,
                _ = tx.closed() => break,
                r = listener.accept() => r,
            };
            match r {
                Ok((conn, _)) => {
                    if pausing {
                        tracing::info!(path = %path.display(), "accepting connections again");
                        pausing = false;
                    }
                    // grpc-go clients (the kubelet's plugin watcher) send the socket path as
                    // `:authority`, which the HTTP/2 server refuses: rewrite it on the way in.
                    if tx.send(Ok(AuthorityFix::new(conn))).await.is_err() {
                        break;
                    }
                }
                Err(e) if is_resource_shortage(&e) => {
                    if !pausing {
                        tracing::warn!(path = %path.display(), error = %e, pause = ?ACCEPT_PAUSE, "cannot accept a connection; pausing");
                        pausing = true;
                    }
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(ACCEPT_PAUSE) => {}
                    }
                }
                Err(e) => tracing::debug!(path = %path.display(), error = %e, "accept failed"),
            }
        }
    });
    ReceiverStream::new(rx)
}

/// EMFILE, ENFILE, ENOBUFS, ENOMEM: accepting again at once would fail the same way.
fn is_resource_shortage(e: &std::io::Error) -> bool {
    use nix::errno::Errno;
    matches!(
        e.raw_os_error().map(Errno::from_raw),
        Some(Errno::EMFILE | Errno::ENFILE | Errno::ENOBUFS | Errno::ENOMEM)
    )
}

/// Bind `path` (replacing a stale file) with mode 0600 and serve `routes` on it until `stop`.
pub fn serve(path: &Path, routes: Routes, stop: CancellationToken) -> Result<Serving, SocketError> {
    clear_path(path)?;
    let (listener, identity) = listen_0600(path)?;
    let incoming = accept_loop(listener, path.to_path_buf(), stop.clone());
    let shutdown = stop.clone().cancelled_owned();
    let p = path.to_path_buf();
    let task = tokio::spawn(async move {
        if let Err(e) = Server::builder()
            .add_routes(routes)
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await
        {
            tracing::error!(path = %p.display(), error = %e, "gRPC server failed");
        }
    });
    tracing::debug!(path = %path.display(), dev = identity.dev, ino = identity.ino, "serving");
    Ok(Serving {
        path: path.to_path_buf(),
        identity,
        stop,
        task,
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn the_birth_time_is_the_one_the_standard_library_sees_where_it_sees_one() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, b"").unwrap();
        let ours = FileIdentity::of(&f).unwrap().born;
        // On glibc the standard library reads statx too; on musl it never sees a birth time.
        if let Ok(std_born) = std::fs::symlink_metadata(&f).unwrap().created() {
            assert_eq!(ours, Some(std_born));
        }
        // A symlink is looked at itself, not followed.
        let l = dir.path().join("l");
        std::os::unix::fs::symlink("/nonexistent", &l).unwrap();
        assert!(FileIdentity::of(&l).is_some());
    }

    #[tokio::test]
    async fn the_socket_is_0600_and_shutdown_removes_it_only_while_it_is_ours() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.sock");
        let s = serve(&p, Routes::default(), CancellationToken::new()).unwrap();
        let m = std::fs::symlink_metadata(&p).unwrap();
        assert!(m.file_type().is_socket());
        assert_eq!(m.permissions().mode() & 0o777, 0o600);
        assert!(s.is_in_place());
        s.shutdown().await;
        assert!(!p.exists());

        // Someone else's file took the path (another instance starting): left alone.
        let s = serve(&p, Routes::default(), CancellationToken::new()).unwrap();
        std::fs::remove_file(&p).unwrap();
        let other = serve(&p, Routes::default(), CancellationToken::new()).unwrap();
        assert!(!s.is_in_place(), "a new socket at the path is not ours");
        assert!(other.is_in_place());
        s.shutdown().await;
        assert!(
            other.is_in_place(),
            "the other socket survives our shutdown"
        );
        other.shutdown().await;
    }

    #[tokio::test]
    async fn a_directory_in_the_way_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.sock");
        std::fs::create_dir(&p).unwrap();
        let e = serve(&p, Routes::default(), CancellationToken::new())
            .err()
            .unwrap();
        assert!(matches!(e, SocketError::DirectoryInTheWay { .. }));
        assert!(e.to_string().contains(&p.display().to_string()), "{e}");
        assert!(p.is_dir());
    }
}
