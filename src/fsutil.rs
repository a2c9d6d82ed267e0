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
pub fn write_shared(path: &Path, text: &str) -> io::Result<()> {
    write_file(path, text, Access::Shared)
}

/// Writes `text` to `path` readable by the owner only.
pub fn write_private(path: &Path, text: &str) -> io::Result<()> {
    write_file(path, text, Access::Private)
}

pub fn write_file(path: &Path, text: &str, access: Access) -> io::Result<()> {
    refuse_non_regular(path)?;
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

/// Only a regular file (or nothing) at `path` may be replaced: renaming over a device, a FIFO,
/// a socket, a directory or a symlink would turn the system's `/dev/null` (or whatever a link
/// points at) into one of our files.
pub fn refuse_non_regular(path: &Path) -> io::Result<()> {
    let kind = match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
        Ok(m) if m.file_type().is_file() => return Ok(()),
        Ok(m) => kind_of(&m.file_type()),
    };
    let shown = crate::output::escape(&path.display().to_string());
    Err(io::Error::other(format!("{shown} is {kind}, not a regular file: refusing to replace it")))
}

fn kind_of(t: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    if t.is_symlink() {
        "a symbolic link"
    } else if t.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_planted_temporary_symlink_is_never_followed_and_state_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "untouched").unwrap();
        let target = dir.path().join("state.json");
        // The old predictable temporary name points at the victim.
        std::os::unix::fs::symlink(&victim, dir.path().join(format!(".state.json.{}.tmp", std::process::id())))
            .unwrap();
        write_private(&target, "{}").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "{}");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&target).unwrap().permissions().mode() & 0o777, 0o600);
        write_shared(&target, "x").unwrap();
        assert_eq!(std::fs::metadata(&target).unwrap().permissions().mode() & 0o777, 0o644);
    }

    #[test]
    fn anything_but_a_regular_file_at_the_target_is_refused_and_left_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "untouched").unwrap();
        let link = dir.path().join("link.svg");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let fifo = dir.path().join("fifo.prom");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        for (path, kind) in [(&link, "a symbolic link"), (&fifo, "a FIFO"), (&sub, "a directory")] {
            let e = write_shared(path, "x").unwrap_err().to_string();
            assert!(e.contains(kind) && e.contains("refusing to replace it"), "{e}");
        }
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        use std::os::unix::fs::FileTypeExt;
        assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched");
        let e = write_shared(Path::new("/dev/null"), "x").unwrap_err().to_string();
        assert!(e.contains("a character device"), "{e}");
    }
}
