//! What a test does when it cannot run here (not root, no PCI bus): it never passes silently.
//!
//! - With `SRIOV_TEST_STRICT=1` (set by `scripts/test.sh`, so in CI) the test panics, naming
//!   what it needed: a run that cannot exercise a test must fail, not report `ok`.
//! - Otherwise it prints `SKIPPED: <test>: <reason>` and returns. The line is written to the
//!   process's stderr handle directly, not through `eprintln!`: libtest captures only the
//!   `print!`/`eprint!` macros, so the line shows in plain `cargo test` output.
//!   When `SRIOV_TEST_SKIP_LOG` names a file, the line is appended there too
//!   (`scripts/test.sh --quick` prints that file as a summary).
//!
//! Usage: `if !sriov_tests::gate::need_root() { return; }` at the top of a test.

use std::io::Write;

/// The variable that turns a skip into a failure.
pub const STRICT_ENV: &str = "SRIOV_TEST_STRICT";
/// The variable naming a file every skip is appended to.
pub const SKIP_LOG_ENV: &str = "SRIOV_TEST_SKIP_LOG";

/// Whether this run must fail instead of skipping (`SRIOV_TEST_STRICT=1`).
pub fn strict() -> bool {
    std::env::var(STRICT_ENV).is_ok_and(|v| v == "1")
}

/// Whether the test process runs as root.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// `true` when running as root; otherwise the test is reported skipped (or fails in strict
/// mode) and `false` tells the caller to return.
pub fn need_root() -> bool {
    if is_root() {
        return true;
    }
    skip("needs root (network namespaces, netlink)");
    false
}

/// Report the current test as not run because of `reason`: a panic in strict mode, a visible
/// `SKIPPED` line otherwise.
pub fn skip(reason: &str) {
    let line = format!("SKIPPED: {}: {reason}", test_name());
    assert!(
        !strict(),
        "{line}; {STRICT_ENV}=1 requires every test to run: run the tests as root, or unset \
         {STRICT_ENV} to skip"
    );
    let _ = writeln!(std::io::stderr(), "{line}");
    if let Some(path) = std::env::var_os(SKIP_LOG_ENV) {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{line}");
        }
    }
}

/// The running test's name: libtest names each test's thread after it; with one test thread
/// the test may run on `main`, then the binary's name stands in.
fn test_name() -> String {
    match std::thread::current().name() {
        Some(n) if n != "main" => n.to_string(),
        _ => std::env::current_exe()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "test".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_name_is_the_thread_name() {
        let name = std::thread::Builder::new()
            .name("edge::busy".into())
            .spawn(test_name)
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(name, "edge::busy");
    }
}
