//! The replay checkpoint: where the source stood before the page in progress, which events of
//! that page the target already acknowledged, and the counts so far. Written atomically after
//! every acknowledgement, so a replay killed at any point (even `kill -9`) resumes where it
//! stopped; the window is stored resolved, so `--since -1h` means the same hour on resume.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Counts;
use super::source::Cursor;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint {path}: {op}: {source}")]
    Io { path: String, op: &'static str, source: std::io::Error },
    #[error("checkpoint {path} is not a replay checkpoint: {reason}")]
    Corrupt { path: String, reason: String },
    #[error(
        "checkpoint {path} belongs to another replay ({theirs}); use the same arguments, another file, or remove it"
    )]
    Mismatch { path: String, theirs: String },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Checkpoint {
    pub version: u32,
    /// The replay's arguments, as typed, so a different replay never resumes from this file.
    pub arguments: String,
    pub fingerprint: String,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    /// The source position before the page in progress.
    pub cursor: Cursor,
    /// Ids of that page's events the target already acknowledged.
    pub page_acked: Vec<String>,
    /// Counts up to the page in progress.
    pub counts: Counts,
    pub finished: bool,
    pub updated_at: DateTime<Utc>,
    #[serde(skip)]
    path: Option<PathBuf>,
}

pub fn fingerprint(arguments: &str) -> String {
    Sha256::digest(arguments.as_bytes())[..12].iter().map(|b| format!("{b:02x}")).collect()
}

impl Checkpoint {
    /// A checkpoint kept in memory only (no `--checkpoint`).
    pub fn ephemeral(arguments: &str, since: DateTime<Utc>, until: DateTime<Utc>) -> Checkpoint {
        Checkpoint {
            version: 1,
            arguments: arguments.to_string(),
            fingerprint: fingerprint(arguments),
            since,
            until,
            cursor: Cursor::Start,
            page_acked: Vec::new(),
            counts: Counts::default(),
            finished: false,
            updated_at: Utc::now(),
            path: None,
        }
    }

    /// The checkpoint at `path` when it exists and belongs to this replay, else a new one there.
    pub fn open(
        path: &Path,
        arguments: &str,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<(Checkpoint, bool), CheckpointError> {
        let shown = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let mut cp: Checkpoint = serde_json::from_str(&text)
                    .map_err(|e| CheckpointError::Corrupt { path: shown.clone(), reason: e.to_string() })?;
                if cp.fingerprint != fingerprint(arguments) {
                    return Err(CheckpointError::Mismatch { path: shown, theirs: cp.arguments });
                }
                cp.path = Some(path.to_path_buf());
                Ok((cp, true))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut cp = Checkpoint::ephemeral(arguments, since, until);
                cp.path = Some(path.to_path_buf());
                cp.save()?;
                Ok((cp, false))
            }
            Err(source) => Err(CheckpointError::Io { path: shown, op: "read", source }),
        }
    }

    /// Writes the checkpoint (when it has a file).
    pub fn save(&mut self) -> Result<(), CheckpointError> {
        let Some(path) = &self.path else { return Ok(()) };
        self.updated_at = Utc::now();
        // Plain data with string keys: serialising cannot fail.
        let text = serde_json::to_string(self).expect("checkpoint serialises");
        crate::fsutil::write_private(path, &text).map_err(|source| CheckpointError::Io {
            path: path.display().to_string(),
            op: "write",
            source,
        })
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }
}
