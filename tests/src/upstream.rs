//! The pinned upstream source tarballs (`../shared/upstream/`, or `SRIOV_UPSTREAM_DIR`): their
//! README.md and docs/ unpacked for the tests that run upstream's own examples against ours.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace's root directory.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The directory holding the tarballs: `SRIOV_UPSTREAM_DIR`, else `../shared/upstream` beside
/// the checkout (or one level further up, from a git worktree under the checkout's parent).
fn upstream_dir(tarball: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("SRIOV_UPSTREAM_DIR") {
        return PathBuf::from(dir);
    }
    ["../shared/upstream", "../../shared/upstream"]
        .map(|d| repo_root().join(d))
        .into_iter()
        .find(|d| d.join(tarball).is_file())
        .unwrap_or_else(|| repo_root().join("../shared/upstream"))
}

/// Unpacks README.md and docs/ of `tarball` into `into` and returns `into/<top>`, the
/// tarball's top directory; `None` (SKIPPED) when the tarball is missing, a panic instead in
/// CI or under `SRIOV_TEST_STRICT=1`.
pub fn unpack_docs(tarball: &str, top: &str, into: &Path) -> Option<PathBuf> {
    let path = upstream_dir(tarball).join(tarball);
    if !path.is_file() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{} is missing (set SRIOV_UPSTREAM_DIR)",
            path.display()
        );
        // Fails under SRIOV_TEST_STRICT=1 (scripts/test.sh) too; prints SKIPPED otherwise.
        crate::gate::skip(&format!(
            "{} is missing (set SRIOV_UPSTREAM_DIR)",
            path.display()
        ));
        return None;
    }
    let st = Command::new("tar")
        .arg("-xzf")
        .arg(&path)
        .arg("-C")
        .arg(into)
        .args(["--wildcards", "*/README.md", "*/docs/*"])
        .status()
        .expect("run tar");
    assert!(st.success(), "tar -xzf {}", path.display());
    Some(into.join(top))
}
