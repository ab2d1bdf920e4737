//! IPAM delegation: exec `$CNI_PATH/<ipam.type>` with our environment and the full config on
//! stdin, and read its result or error.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::error::{CniError, Result, INVALID_CONFIG, IO};

/// Find an IPAM plugin in `CNI_PATH`; checked before anything is changed.
pub fn find(path: &[PathBuf], ty: &str) -> Result<PathBuf> {
    // Also what a state file records: only a plain file name is looked up.
    if !crate::env::valid_plugin_name(ty) {
        return Err(CniError::new(
            INVALID_CONFIG,
            format!("ipam.type: {ty:?} is not a plugin name: expected a file name in CNI_PATH"),
        ));
    }
    path.iter()
        .map(|d| d.join(ty))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            let dirs: Vec<String> = path.iter().map(|p| p.display().to_string()).collect();
            CniError::new(
                INVALID_CONFIG,
                format!(
                    "ipam.type: plugin {ty:?} not found in CNI_PATH ({})",
                    dirs.join(":")
                ),
            )
        })
}

/// Run the IPAM plugin's `command`. `overrides` replaces CNI_* variables (e.g. when cleaning up
/// another attachment). Returns the parsed stdout, `None` when it is empty.
pub fn exec(
    plugin: &Path,
    command: &str,
    raw_conf: &[u8],
    overrides: &[(&str, &str)],
) -> Result<Option<Value>> {
    let name = plugin
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    tracing::debug!(plugin = %plugin.display(), command, "delegating to IPAM");
    let mut cmd = Command::new(plugin);
    cmd.env("CNI_COMMAND", command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in overrides {
        cmd.env(k, v);
    }
    let io_err = |e: std::io::Error| CniError::new(IO, format!("ipam {name} {command}: {e}"));
    let mut child = cmd.spawn().map_err(io_err)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(raw_conf).map_err(io_err)?;
    }
    let out = child.wait_with_output().map_err(io_err)?;
    let parsed: Option<Value> = if out.stdout.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        serde_json::from_slice(&out.stdout).ok()
    };
    if out.status.success() {
        return Ok(parsed);
    }
    let (code, msg, details) = match &parsed {
        Some(v) => (
            v.get("code")
                .and_then(Value::as_u64)
                .unwrap_or(u64::from(crate::error::OPERATION_FAILED)) as u32,
            v.get("msg")
                .and_then(Value::as_str)
                .unwrap_or("failed")
                .to_string(),
            v.get("details")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        ),
        None => (
            crate::error::OPERATION_FAILED,
            format!(
                "exited with {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stdout).trim()
            ),
            String::new(),
        ),
    };
    Err(CniError::new(code, format!("ipam {name} {command}: {msg}")).with_details(details))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_plain_file_name_is_looked_up() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("host-local"), "").unwrap();
        let path = vec![dir.path().to_path_buf()];
        assert!(find(&path, "host-local").is_ok());
        // What a state file could name: a path outside CNI_PATH.
        for bad in ["/bin/sh", "../host-local", ".", ""] {
            let e = find(&path, bad).unwrap_err();
            assert_eq!(e.code, INVALID_CONFIG, "{bad}");
            assert!(e.msg.starts_with("ipam.type"), "{}", e.msg);
        }
    }
}
