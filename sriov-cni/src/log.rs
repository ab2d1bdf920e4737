//! Logging for the plugin binary: to stderr, or to the netconf's `logFile`, never stdout.
//!
//! Values logged come from input (netconf keys and values, CNI_* variables, kernel names): every
//! event is written as one line with its control characters escaped (`\n`, `\r`, `\t`, other
//! C0 and C1 controls, DEL, and the Unicode line separators), so no value can start a line of
//! its own. A `logFile` comes from the netconf, which a NAD author writes: it must be an absolute
//! path inside the log directory (`SRIOV_CNI_LOG_DIR`, default `/var/log`, set by whoever runs the
//! plugin, never by the netconf) with no `.`/`..` component and no symlink on the way; it is
//! opened with `O_NOFOLLOW|O_APPEND`, created 0600, and must be a regular file with one link.
//! Otherwise the plugin logs to stderr and says why.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;

use tracing_subscriber::fmt::MakeWriter;

/// Mode of a log file the plugin creates.
const LOG_MODE: u32 = 0o600;

/// Where a `logFile` may be, unless `SRIOV_CNI_LOG_DIR` says otherwise.
const DEFAULT_LOG_DIR: &str = "/var/log";

/// The directory a `logFile` must be inside: `SRIOV_CNI_LOG_DIR`, else `/var/log`.
pub fn log_dir() -> PathBuf {
    std::env::var_os("SRIOV_CNI_LOG_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_LOG_DIR))
}

/// Set up logging from the config on stdin: `logLevel` (else `SRIOV_CNI_LOG_LEVEL`, else warn)
/// and `logFile`.
pub fn init(stdin: &[u8]) {
    let (_, level, file) = crate::netconf::peek(stdin);
    let level = level
        .or_else(|| std::env::var("SRIOV_CNI_LOG_LEVEL").ok())
        .unwrap_or_else(|| "warn".into());
    // Upstream's level names: "warning" and "panic" are not tracing levels.
    let level = match level.to_ascii_lowercase().as_str() {
        "warning" => "warn".to_string(),
        "panic" | "fatal" => "error".to_string(),
        _ => level,
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false);
    let dir = log_dir();
    let (opened, refused) = match file.map(|p| (open_log_file(&p, &dir), p)) {
        None => (None, None),
        Some((Ok(f), _)) => (Some(f), None),
        Some((Err(e), p)) => (None, Some((p, e))),
    };
    match opened {
        Some(f) => builder.with_writer(Escaping::new(f)).init(),
        None => builder.with_writer(Escaping::new(io::stderr())).init(),
    }
    if let Some((p, e)) = refused {
        tracing::warn!(log_file = %p.display(), error = %e, "not logging to logFile; logging to stderr");
    }
}

/// Open `path` as the log file, which must lie inside `dir`: see the module documentation for
/// what is refused.
pub fn open_log_file(path: &Path, dir: &Path) -> io::Result<File> {
    let refuse = |what: String| io::Error::new(io::ErrorKind::InvalidInput, what);
    if !path.is_absolute() {
        return Err(refuse("not an absolute path".into()));
    }
    if path
        .components()
        .any(|c| matches!(c, Component::CurDir | Component::ParentDir))
    {
        return Err(refuse("has a . or .. component".into()));
    }
    let parent = path
        .parent()
        .filter(|p| p.starts_with(dir))
        .ok_or_else(|| {
            refuse(format!(
                "is not inside the log directory {} (SRIOV_CNI_LOG_DIR)",
                dir.display()
            ))
        })?;
    // No symlink on the way: the directory the file is created in is the one the path names.
    let real = parent.canonicalize()?;
    if real != parent {
        return Err(refuse(format!(
            "its directory {} resolves to {}: refusing a path through a symlink",
            parent.display(),
            real.display()
        )));
    }
    sriov_host::fsio::open_append_regular(path, LOG_MODE)
}

/// `text` with control characters escaped, except one trailing newline.
pub fn escape_line(text: &str) -> String {
    let (body, newline) = match text.strip_suffix('\n') {
        Some(b) => (b, true),
        None => (text, false),
    };
    let mut out = String::with_capacity(text.len());
    for c in body.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => {
                out.push_str(&format!("\\u{{{:x}}}", c as u32));
            }
            c => out.push(c),
        }
    }
    if newline {
        out.push('\n');
    }
    out
}

/// A [`MakeWriter`] that hands each event a buffer and writes it, escaped by [`escape_line`],
/// to `sink` in one write when the event is done.
pub struct Escaping<W> {
    sink: Mutex<W>,
}

impl<W: Write> Escaping<W> {
    pub fn new(sink: W) -> Self {
        Escaping {
            sink: Mutex::new(sink),
        }
    }
}

/// One event's bytes on their way to the sink.
pub struct EventLine<'a, W: Write> {
    buf: Vec<u8>,
    sink: &'a Mutex<W>,
}

impl<'a, W: Write + 'a> MakeWriter<'a> for Escaping<W> {
    type Writer = EventLine<'a, W>;

    fn make_writer(&'a self) -> Self::Writer {
        EventLine {
            buf: Vec::new(),
            sink: &self.sink,
        }
    }
}

impl<W: Write> Write for EventLine<'_, W> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W: Write> Drop for EventLine<'_, W> {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let line = escape_line(&String::from_utf8_lossy(&self.buf));
        let mut sink = self.sink.lock().unwrap_or_else(|p| p.into_inner());
        // Nowhere to report a failed log write.
        let _ = sink.write_all(line.as_bytes()).and_then(|()| sink.flush());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn escape_line_leaves_one_line() {
        assert_eq!(escape_line("a b\n"), "a b\n");
        assert_eq!(escape_line("a\nb\r\tc\n"), "a\\nb\\r\\tc\n");
        assert_eq!(
            escape_line("\u{1b}[31m\u{7f}\u{85}\u{2028}é"),
            "\\u{1b}[31m\\u{7f}\\u{85}\\u{2028}é"
        );
        assert_eq!(escape_line("x\n\n"), "x\\n\n");
    }

    #[test]
    fn every_field_and_message_of_an_event_stays_on_its_line() {
        let out = Shared::default();
        let sub = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(Escaping::new(out.clone()))
            .finish();
        tracing::subscriber::with_default(sub, || {
            let v = "x\nFORGED field";
            tracing::warn!(key = %v, other = v, "message\nFORGED message {}", "\r\nFORGED arg");
            tracing::warn!("second");
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines.iter().all(|l| !l.starts_with("FORGED")), "{text}");
        assert!(
            lines[0].contains("message\\nFORGED message \\r\\nFORGED arg"),
            "{text}"
        );
        assert!(lines[0].contains("key=x\\nFORGED field"), "{text}");
    }

    #[test]
    fn log_file_must_be_inside_the_log_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path().canonicalize().expect("canonical");
        let logs = base.join("logs");
        std::fs::create_dir(&logs).expect("mkdir");
        std::os::unix::fs::symlink(base.join("elsewhere"), logs.join("sub")).expect("symlink");
        std::fs::create_dir(base.join("elsewhere")).expect("mkdir");
        let refused = [
            (base.join("other.log"), "not inside the log directory"),
            (logs.join("../other.log"), ". or .."),
            (logs.join("sub/x.log"), "through a symlink"),
            (logs.clone(), "not inside the log directory"),
        ];
        for (p, why) in refused {
            let e = open_log_file(&p, &logs).expect_err("refused");
            assert!(e.to_string().contains(why), "{}: {e}", p.display());
        }
        assert!(!base.join("other.log").exists());
        assert!(!base.join("elsewhere/x.log").exists());
        open_log_file(&logs.join("sriov.log"), &logs).expect("inside the log directory");
    }

    #[test]
    fn log_file_must_be_absolute() {
        let e = open_log_file(Path::new("rel.log"), Path::new("/var/log")).unwrap_err();
        assert!(e.to_string().contains("absolute"), "{e}");
        assert!(!Path::new("rel.log").exists());
    }
}
