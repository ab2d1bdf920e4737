//! Serving gRPC on a unix socket created 0600, and the directories that hold such sockets.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use kubelet_proto::AuthorityFix;
use nix::sys::stat::{umask, Mode};
use tokio::net::UnixListener;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::UnixListenerStream;
use tokio_stream::StreamExt;
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

/// A server running on a socket; dropping it does not stop it, [`Serving::shutdown`] does.
pub struct Serving {
    pub path: PathBuf,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Serving {
    /// Stop serving (ending open streams), wait for the server, and remove the socket file.
    /// A client that keeps its HTTP/2 connection open after the GOAWAY (every stream of ours
    /// has ended by then) is cut off after [`DRAIN`] rather than waited for.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        // Remove the file first: nobody should connect to a server that is going away.
        remove_socket(&self.path);
        if tokio::time::timeout(DRAIN, &mut self.task).await.is_err() {
            tracing::debug!(path = %self.path.display(), "closing connections the client kept open");
            self.task.abort();
        }
    }
}

/// How long a stopping server waits for its clients to hang up.
const DRAIN: std::time::Duration = std::time::Duration::from_millis(300);

impl Serving {
    /// Stop serving without touching the socket path (it was removed, or reused already).
    pub fn stop_without_removing(self) {
        self.stop.cancel();
    }
}

/// Remove a socket file, ignoring its absence.
pub fn remove_socket(path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => tracing::debug!(path = %path.display(), "socket removed"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot remove socket"),
    }
}

/// Bind `path` (replacing a stale file) with mode 0600 and serve `routes` on it until `stop`.
pub fn serve(path: &Path, routes: Routes, stop: CancellationToken) -> Result<Serving, SocketError> {
    remove_socket(path);
    let bind_err = |source| SocketError::Bind {
        path: path.to_path_buf(),
        source,
    };
    // The umask makes the socket 0600 from its creation; the chmod makes sure of it.
    let old = umask(Mode::from_bits_truncate(0o177));
    let listener = UnixListener::bind(path);
    umask(old);
    let listener = listener.map_err(bind_err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(bind_err)?;
    // grpc-go clients (the kubelet's plugin watcher) send the socket path as `:authority`,
    // which the HTTP/2 server refuses: rewrite it on the way in.
    let incoming = UnixListenerStream::new(listener).map(|c| c.map(AuthorityFix::new));
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
    tracing::debug!(path = %path.display(), "serving");
    Ok(Serving {
        path: path.to_path_buf(),
        stop,
        task,
    })
}
