//! Writing files on the node without being steered by what is already there: replacing a file
//! through an unpredictable temporary created exclusively (`O_CREAT|O_EXCL|O_NOFOLLOW`) and a
//! rename, and opening an append-only file (a log, a lock) without following a symlink or
//! blocking on a FIFO.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;

/// How many temporary names [`replace_file`] tries before giving up: a name is 64 random bits,
/// so more than one try means someone is planting files in the directory.
const TEMP_ATTEMPTS: u32 = 16;

/// Write `content` to `path` atomically with mode 0644: see [`replace_file`].
pub fn write_atomic(path: &Path, content: &[u8]) -> io::Result<()> {
    replace_file(path, content, 0o644)
}

/// Replace `path` with `content`, file mode `mode`, through a temporary file in the same
/// directory and a rename: readers, and a writer that dies half-way, never see a partial file.
///
/// The temporary gets an unpredictable name (64 bits from the kernel's random source) and is
/// created with `O_CREAT|O_EXCL|O_NOFOLLOW`, so nothing planted in the directory (a symlink, a
/// file) is followed or written through; a taken name is retried with another. Its mode is set
/// with `fchmod` before the rename (the umask does not narrow it), and it is removed when any
/// step fails. The rename replaces whatever is at `path` (a symlink there is replaced, not
/// followed).
///
/// Nothing is fsynced: every file either program replaces describes state that a reboot makes
/// moot (device-info and CDI files under `/var/run`, rewritten by the next Allocate; the CNI's
/// record of a VF inside a pod netns), so a power loss may leave the old content or an empty
/// file, and readers of such a file must cope with that (the CNI's DEL does). An fsync costs a
/// disk flush per file, which on a VM's disk is tens of milliseconds on the Allocate and ADD
/// paths. Missing parent directories are created (mode 0755 before umask).
pub fn replace_file(path: &Path, content: &[u8], mode: u32) -> io::Result<()> {
    replace_file_with(path, content, mode, &mut || {
        getrandom::u64().map_err(io::Error::other)
    })
}

/// [`replace_file`] with the source of temporary-name suffixes given (tests force collisions).
fn replace_file_with(
    path: &Path,
    content: &[u8],
    mode: u32,
    suffix: &mut dyn FnMut() -> io::Result<u64>,
) -> io::Result<()> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: not a file path", path.display()),
        )
    })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    fs::create_dir_all(dir)?;
    let (tmp, mut file) = create_temp(dir, name, mode, suffix)?;
    let done = file
        .write_all(content)
        .and_then(|()| file.set_permissions(fs::Permissions::from_mode(mode)))
        .and_then(|()| {
            drop(file);
            fs::rename(&tmp, path)
        });
    if done.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    done
}

/// A new, empty file `.<name>.<random>.tmp` in `dir`, created exclusively.
fn create_temp(
    dir: &Path,
    name: &std::ffi::OsStr,
    mode: u32,
    suffix: &mut dyn FnMut() -> io::Result<u64>,
) -> io::Result<(PathBuf, File)> {
    for _ in 0..TEMP_ATTEMPTS {
        let mut tmp_name = OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".{:016x}.tmp", suffix()?));
        let tmp = dir.join(tmp_name);
        let opened = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(OFlag::O_NOFOLLOW.bits())
            .open(&tmp);
        match opened {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                tracing::warn!(path = %tmp.display(), "temporary file name already taken; trying another");
            }
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!(
            "{}: no free temporary file name after {TEMP_ATTEMPTS} tries; is something creating files there?",
            dir.display()
        ),
    ))
}

/// Open the regular file at `path` for appending, creating it with `mode` when absent. A
/// symlink as its last component is not followed, and anything but a regular file with a single
/// link (a FIFO, a device, a directory, a hard link to a file elsewhere) is refused before a byte
/// is written; opening never blocks. The descriptor is close-on-exec.
pub fn open_append_regular(path: &Path, mode: u32) -> io::Result<File> {
    let refuse = |what: String| io::Error::new(io::ErrorKind::InvalidInput, what);
    // Refused before opening, so that opening has no side effect on a device node.
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            return Err(refuse("is a symlink: refusing to follow it".into()))
        }
        Ok(m) if !m.file_type().is_file() => return Err(refuse("is not a regular file".into())),
        _ => {}
    }
    let f = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(mode)
        .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK).bits())
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(Errno::ELOOP as i32) {
                refuse("is a symlink: refusing to follow it".into())
            } else {
                e
            }
        })?;
    // Checked again on what was opened: the path may have changed in between.
    let m = f.metadata()?;
    if !m.file_type().is_file() {
        return Err(refuse("is not a regular file".into()));
    }
    if m.nlink() > 1 {
        return Err(refuse(format!(
            "has {} hard links: refusing to write to a file linked elsewhere",
            m.nlink()
        )));
    }
    Ok(f)
}

#[cfg(test)]
#[path = "fsio_tests.rs"]
mod tests;
