//! The claims this node has prepared, on disk, so NodePrepareResources and
//! NodeUnprepareResources stay idempotent across plugin restarts and crashes.
//!
//! One JSON file (`checkpoint.json` in the plugin's data directory), replaced atomically
//! (`O_CREAT|O_EXCL|O_NOFOLLOW` temporary + rename, mode 0600) after every change. A claim is
//! recorded as `preparing`, with its devices, before any device is touched, and as `prepared`
//! once all are: a crash in between leaves a record that a retried prepare completes and an
//! unprepare undoes. Read back, the file must be a regular file (a symlink is refused) of at
//! most [`MAX_CHECKPOINT_BYTES`]; one that does not parse is moved aside as `.corrupt` and
//! the driver starts from an empty record (logged), rather than refusing every claim forever.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The largest checkpoint read back: a claim's record is well under 1 KiB, and a node has at
/// most a few thousand VFs.
pub const MAX_CHECKPOINT_BYTES: u64 = 4 * 1024 * 1024;

/// The checkpoint's file name in the plugin's data directory.
pub const CHECKPOINT_FILE: &str = "checkpoint.json";

/// Where a claim is in its preparation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClaimState {
    /// Recorded, devices not (all) prepared yet.
    Preparing,
    /// Every device prepared; the answer below is final.
    Prepared,
}

/// One allocated device of a claim, and what preparing it answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreparedDevice {
    /// The claim's requests this device satisfies.
    pub requests: Vec<String>,
    /// The pool (the node name).
    pub pool: String,
    /// The device name in the slice (the PCI address, dashed).
    pub device: String,
    /// The CDI device IDs handed to the kubelet; empty until prepared.
    pub cdi_ids: Vec<String>,
}

/// One claim's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimRecord {
    pub namespace: String,
    pub name: String,
    pub state: ClaimState,
    pub devices: Vec<PreparedDevice>,
}

/// The whole checkpoint: claim records keyed by claim UID.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Format version, 1.
    pub version: u32,
    pub claims: BTreeMap<String, ClaimRecord>,
}

/// Reading or writing the checkpoint failed.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("checkpoint {path} is not a regular file of at most {MAX_CHECKPOINT_BYTES} bytes; remove it (prepared claims are then forgotten)")]
    NotRegular { path: PathBuf },
}

/// The checkpoint file of the plugin data directory `dir`.
#[derive(Debug, Clone)]
pub struct CheckpointFile {
    path: PathBuf,
}

impl CheckpointFile {
    /// The checkpoint in `dir` ([`CHECKPOINT_FILE`]).
    pub fn in_dir(dir: &Path) -> CheckpointFile {
        CheckpointFile {
            path: dir.join(CHECKPOINT_FILE),
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The recorded claims: empty when there is no file yet, or when it does not parse (then it
    /// is moved aside to `checkpoint.json.corrupt`).
    pub fn load(&self) -> Result<Checkpoint, CheckpointError> {
        let io_err = |source| CheckpointError::Io {
            path: self.path.clone(),
            source,
        };
        let file = match OpenOptions::new()
            .read(true)
            .custom_flags(libc_flags())
            .open(&self.path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(empty()),
            Err(e) if e.raw_os_error() == Some(nix::errno::Errno::ELOOP as i32) => {
                return Err(CheckpointError::NotRegular {
                    path: self.path.clone(),
                })
            }
            Err(e) => return Err(io_err(e)),
        };
        let meta = file.metadata().map_err(io_err)?;
        if !meta.is_file() || meta.len() > MAX_CHECKPOINT_BYTES {
            return Err(CheckpointError::NotRegular {
                path: self.path.clone(),
            });
        }
        let mut bytes = Vec::new();
        file.take(MAX_CHECKPOINT_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(io_err)?;
        if bytes.len() as u64 > MAX_CHECKPOINT_BYTES {
            return Err(CheckpointError::NotRegular {
                path: self.path.clone(),
            });
        }
        match serde_json::from_slice::<Checkpoint>(&bytes) {
            Ok(c) if c.version == 1 => Ok(c),
            outcome => {
                let aside = self.path.with_extension("json.corrupt");
                let why = match outcome {
                    Ok(c) => format!("unknown version {}", c.version),
                    Err(e) => e.to_string(),
                };
                tracing::warn!(path = %self.path.display(), moved_to = %aside.display(), error = why,
                    "checkpoint unreadable; starting with no prepared claims");
                fs::rename(&self.path, &aside).map_err(io_err)?;
                Ok(empty())
            }
        }
    }

    /// Replace the file with `checkpoint` (mode 0600, atomically).
    pub fn store(&self, checkpoint: &Checkpoint) -> Result<(), CheckpointError> {
        let bytes = serde_json::to_vec_pretty(checkpoint).map_err(|e| CheckpointError::Io {
            path: self.path.clone(),
            source: io::Error::other(e),
        })?;
        sriov_host::fsio::replace_file(&self.path, &bytes, 0o600).map_err(|source| {
            CheckpointError::Io {
                path: self.path.clone(),
                source,
            }
        })
    }
}

fn empty() -> Checkpoint {
    Checkpoint {
        version: 1,
        claims: BTreeMap::new(),
    }
}

/// `O_NOFOLLOW | O_NONBLOCK`: a symlink is refused and a FIFO does not block the open.
fn libc_flags() -> i32 {
    (nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_NONBLOCK).bits()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> ClaimRecord {
        ClaimRecord {
            namespace: "default".into(),
            name: "net1".into(),
            state: ClaimState::Prepared,
            devices: vec![PreparedDevice {
                requests: vec!["vf".into()],
                pool: "node-a".into(),
                device: "0000-03-01-0".into(),
                cdi_ids: vec!["sriov.arm.com/vf=0000:03:01.0".into()],
            }],
        }
    }

    #[test]
    fn round_trip_mode_0600_and_absent_is_empty() {
        let dir = tempfile::tempdir().expect("tmp");
        let f = CheckpointFile::in_dir(dir.path());
        assert_eq!(f.load().expect("absent").claims.len(), 0);
        let mut c = f.load().expect("empty");
        c.claims.insert("uid-1".into(), record());
        f.store(&c).expect("store");
        assert_eq!(f.load().expect("load"), c);
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(f.path()).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn a_symlink_or_an_oversized_file_is_refused() {
        let dir = tempfile::tempdir().expect("tmp");
        let f = CheckpointFile::in_dir(dir.path());
        let target = dir.path().join("elsewhere");
        fs::write(&target, b"{}").expect("write");
        std::os::unix::fs::symlink(&target, f.path()).expect("symlink");
        let err = f.load().expect_err("symlink");
        assert!(err.to_string().contains("not a regular file"), "{err}");
        fs::remove_file(f.path()).expect("rm");
        let big = fs::File::create(f.path()).expect("create");
        big.set_len(MAX_CHECKPOINT_BYTES + 1).expect("grow");
        assert!(matches!(f.load(), Err(CheckpointError::NotRegular { .. })));
    }

    #[test]
    fn a_torn_file_is_moved_aside_and_starts_empty() {
        let dir = tempfile::tempdir().expect("tmp");
        let f = CheckpointFile::in_dir(dir.path());
        fs::write(f.path(), b"{\"version\":1,\"claims\":{\"uid").expect("write");
        assert_eq!(f.load().expect("recovered").claims.len(), 0);
        assert!(dir.path().join("checkpoint.json.corrupt").exists());
        assert!(!f.path().exists());
    }
}
