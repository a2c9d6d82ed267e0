//! Files that must never be seen half-written: probe textfiles, alert state, replay checkpoints.

use std::io::{self, Write};
use std::path::Path;

/// Writes `text` to `path` through a temporary file in the same directory, flushed to disk, then
/// renamed over `path`: a reader (or a crash, even `kill -9`) sees the old file or the new one.
pub fn write_atomically(path: &Path, text: &str) -> io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "broker-ops".into());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}
