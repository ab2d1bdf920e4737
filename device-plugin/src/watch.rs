//! Filesystem events of the device-plugins directory (inotify): how we notice a kubelet restart
//! (it deletes our socket and re-creates `kubelet.sock`) without polling.

use std::path::{Path, PathBuf};

use sriov_host::filewatch::{self, DirChange};
use tokio::sync::broadcast;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirEvent {
    /// A file appeared (created or moved in).
    Created(String),
    /// A file disappeared (deleted or moved out).
    Removed(String),
    /// Events were lost: re-check everything.
    Overflow,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot watch {path}: {source}")]
pub struct WatchError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// Start watching `dir`; subscribe to the returned sender for events. The watch is in place when
/// this returns, so nothing that happens afterwards is missed.
pub fn watch_dir(dir: &Path) -> Result<broadcast::Sender<DirEvent>, WatchError> {
    let (tx, _) = broadcast::channel(256);
    let sender = tx.clone();
    let d = dir.to_path_buf();
    filewatch::watch_dir(dir, move |change| {
        let e = match change {
            DirChange::Created(n) => DirEvent::Created(n.to_string_lossy().into_owned()),
            DirChange::Removed(n) => DirEvent::Removed(n.to_string_lossy().into_owned()),
            DirChange::Overflow => DirEvent::Overflow,
        };
        tracing::debug!(dir = %d.display(), event = ?e, "directory event");
        // No receivers only means nobody listens right now.
        let _ = sender.send(e);
        true
    })
    .map_err(|source| WatchError {
        path: dir.to_path_buf(),
        source,
    })?;
    Ok(tx)
}
