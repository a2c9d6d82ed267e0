//! Files that must never be seen half-written: probe textfiles, alert state, replay checkpoints,
//! reports. The temporary file is created exclusively (`O_EXCL`) under an unpredictable name in
//! the target's directory, so a symlink planted there cannot redirect the write; it is flushed
//! to disk, then renamed over the target: a reader (or a crash, even `kill -9`) sees the old file
//! or the new one.

use std::io::{self, Write};
use std::path::Path;

/// Who may read the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// 0600: state, checkpoints, notice bodies (they can hold what an alert said).
    Private,
    /// 0644: textfiles a collector running as another user must read, reports.
    Shared,
}

/// Writes `text` to `path` readable by others (textfiles, reports).
pub fn write_atomically(path: &Path, text: &str) -> io::Result<()> {
    write_file(path, text, Access::Shared)
}

/// Writes `text` to `path` readable by the owner only.
pub fn write_private(path: &Path, text: &str) -> io::Result<()> {
    write_file(path, text, Access::Private)
}

pub fn write_file(path: &Path, text: &str, access: Access) -> io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "broker-ops".into());
    let prefix = format!(".{name}.");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = match access {
            Access::Private => 0o600,
            Access::Shared => 0o644,
        };
        builder.permissions(std::fs::Permissions::from_mode(mode));
    }
    let mut tmp = builder.tempfile_in(dir)?;
    tmp.write_all(text.as_bytes())?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_planted_symlink_is_replaced_not_followed_and_state_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "untouched").unwrap();
        let target = dir.path().join("state.json");
        // The old predictable temporary name, and the target itself, both point at the victim.
        std::os::unix::fs::symlink(&victim, dir.path().join(format!(".state.json.{}.tmp", std::process::id())))
            .unwrap();
        std::os::unix::fs::symlink(&victim, &target).unwrap();
        write_private(&target, "{}").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "{}");
        assert!(!std::fs::symlink_metadata(&target).unwrap().file_type().is_symlink());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&target).unwrap().permissions().mode() & 0o777, 0o600);
        write_atomically(&target, "x").unwrap();
        assert_eq!(std::fs::metadata(&target).unwrap().permissions().mode() & 0o777, 0o644);
    }
}
