//! Filesystem events of the device-plugins directory (inotify): how we notice a kubelet restart
//! (it deletes our socket and re-creates `kubelet.sock`) without polling.

use std::path::{Path, PathBuf};

use inotify::{EventMask, Inotify, WatchMask};
use tokio::sync::broadcast;
use tokio_stream::StreamExt;

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
    let err = |source| WatchError {
        path: dir.to_path_buf(),
        source,
    };
    let inotify = Inotify::init().map_err(err)?;
    inotify
        .watches()
        .add(
            dir,
            WatchMask::CREATE | WatchMask::DELETE | WatchMask::MOVED_FROM | WatchMask::MOVED_TO,
        )
        .map_err(err)?;
    let mut stream = inotify.into_event_stream([0u8; 4096]).map_err(err)?;
    let (tx, _) = broadcast::channel(256);
    let sender = tx.clone();
    let d = dir.to_path_buf();
    tokio::spawn(async move {
        while let Some(ev) = stream.next().await {
            let ev = match ev {
                Ok(ev) => ev,
                Err(e) => {
                    tracing::error!(dir = %d.display(), error = %e, "inotify failed; kubelet restarts will go unnoticed");
                    return;
                }
            };
            let name = ev.name.map(|n| n.to_string_lossy().into_owned());
            let out = if ev.mask.contains(EventMask::Q_OVERFLOW) {
                Some(DirEvent::Overflow)
            } else if ev.mask.intersects(EventMask::CREATE | EventMask::MOVED_TO) {
                name.map(DirEvent::Created)
            } else if ev
                .mask
                .intersects(EventMask::DELETE | EventMask::MOVED_FROM)
            {
                name.map(DirEvent::Removed)
            } else {
                None
            };
            if let Some(e) = out {
                tracing::debug!(dir = %d.display(), event = ?e, "directory event");
                // No receivers only means nobody listens right now.
                let _ = sender.send(e);
            }
        }
    });
    Ok(tx)
}
