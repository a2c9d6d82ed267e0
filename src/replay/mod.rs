//! `events replay` (first part): the mirror as a timeline. Events are read in pages, from the
//! Redis streams (exclusive XRANGE cursors) or from Postgres (keyset pagination on
//! `(occurred_at, id)`), so memory stays flat whatever the window; malformed entries are reported
//! with their position and skipped with a count, never a crash.

pub mod source;
pub mod timeline;

use chrono::{DateTime, Utc};

pub use source::{Page, Source};

/// What to read.
#[derive(Debug, Clone)]
pub struct Selection {
    /// Conversations to read; empty means all (Redis: the active set; Postgres: every row).
    pub conversations: Vec<String>,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    /// Glob on event names (`message:*`).
    pub name: Option<glob::Pattern>,
    pub page_size: usize,
}

impl Selection {
    pub fn wants(&self, name: &str, ts_ms: i64) -> bool {
        ts_ms >= self.since.timestamp_millis()
            && ts_ms < self.until.timestamp_millis()
            && self.name.as_ref().is_none_or(|p| p.matches(name))
    }
}

/// A mirror entry that could not be read as an event.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Malformed {
    /// Stream key and entry id, or the row id.
    pub position: String,
    pub reason: String,
}
