//! `events replay`: the mirror as a timeline, re-published to Ably, or backfilled from one mirror
//! into the other. Events are read in pages, from the Redis streams (exclusive XRANGE cursors)
//! or from Postgres (streaming queries, keyset between them), so memory stays flat whatever the
//! window; malformed entries are reported with their position and skipped with a count, never a
//! crash. A checkpoint records progress after every acknowledged page (and, for Ably, every
//! request).

pub mod checkpoint;
pub mod events;
pub mod open;
pub mod pacer;
pub mod request;
pub mod source;
pub mod summary;
pub mod timeline;
pub mod to_ably;
pub mod to_store;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use checkpoint::{Checkpoint, CheckpointError};
pub use source::{Cursor, Order, Page, Source};
pub use summary::Summary;
pub use to_ably::{AblyOptions, AblyTarget};
pub use to_store::{PostgresTarget, RedisTarget};

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Store(#[from] crate::store::MirrorError),
    #[error(transparent)]
    Ably(#[from] crate::ably::AblyError),
    #[error("Ably batch publish: gave up after {attempts} attempt(s): {reason}")]
    AblyGaveUp { attempts: u32, reason: String },
    #[error("Ably batch publish: unexpected answer: {0}")]
    AblyAnswer(String),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
}

/// A replay that stopped part-way, naming where it was going and the checkpoint it kept.
#[derive(Debug, thiserror::Error)]
#[error("replay to {target} stopped{kept}")]
pub struct Stopped {
    pub target: &'static str,
    pub kept: String,
    #[source]
    pub source: ReplayError,
}

pub fn stopped(source: ReplayError, target: &'static str, checkpoint: Option<&std::path::Path>) -> Stopped {
    let kept = checkpoint
        .map(|p| {
            let p = crate::output::escape(&p.display().to_string());
            format!("; checkpoint {p} kept: run the same command again to resume")
        })
        .unwrap_or_default();
    Stopped { target, kept, source }
}

/// Where replayed events go (besides stdout, which the timeline printer handles).
pub enum Target {
    Ably(AblyTarget),
    Redis(Box<RedisTarget>),
    Postgres(PostgresTarget),
}

impl Target {
    pub fn name(&self) -> &'static str {
        match self {
            Target::Ably(_) => "ably",
            Target::Redis(_) => "redis",
            Target::Postgres(_) => "postgres",
        }
    }
}

/// Running totals of a replay.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Events read from the source (inside the window and matching `--name`).
    pub read: u64,
    /// Written to the target (published to Ably, new in the mirror).
    pub written: u64,
    /// Already in the target (same Ably message id).
    pub skipped: u64,
    /// Older than the Redis stream lifetime: Redis would already have dropped them.
    pub expired: u64,
    /// Refused by the target for good (an Ably error other than a rate limit).
    pub failed: u64,
    /// Mirror entries that are not events (bad JSON, missing field).
    pub malformed: u64,
    /// Ably 42913/42910 answers, each retried after a back-off.
    pub rate_limited: u64,
    pub pages: u64,
}

/// What to read.
#[derive(Debug, Clone)]
pub struct Selection {
    /// Conversations to read; empty means all (Redis: the active set; Postgres: every row).
    pub conversations: Vec<String>,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    /// Glob on event names (`message:*`).
    pub name: Option<glob::Pattern>,
    /// Event names left out whatever `name` says: the canary's unless its conversation is named;
    /// under `--to ably` also the typing and read events (an old typing indicator or read receipt
    /// re-sent would show customers and brokers something that is not happening).
    pub skip_events: Vec<String>,
    /// Only these event names (`--to ably`: the messages, unless `--events` widens it).
    pub only: Option<Vec<String>>,
    /// Leave out re-sent copies (`--to ably`: a copy is never re-sent, or each replay would
    /// re-send the last one's copies under new ids).
    pub skip_copies: bool,
    pub page_size: usize,
    /// Keep each event's `data` as the JSON text the store holds ([`RawEvent`]) instead of
    /// parsing it: for NDJSON and JSON output, which write it back unchanged.
    pub raw: bool,
}

/// An event whose `data` stays JSON text: serialises exactly as [`crate::mirror::MirroredEvent`]
/// does, without building and walking a JSON tree.
#[derive(Debug, Serialize)]
pub struct RawEvent {
    pub id: String,
    pub conversation_id: String,
    pub channel: String,
    pub name: String,
    pub data: Box<serde_json::value::RawValue>,
    pub client_id: Option<String>,
    pub timestamp_ms: i64,
}

impl RawEvent {
    /// The event with its `data` parsed.
    pub fn parsed(self) -> Result<crate::mirror::MirroredEvent, serde_json::Error> {
        Ok(crate::mirror::MirroredEvent {
            data: serde_json::from_str(self.data.get())?,
            id: self.id,
            conversation_id: self.conversation_id,
            channel: self.channel,
            name: self.name,
            client_id: self.client_id,
            timestamp_ms: self.timestamp_ms,
        })
    }
}

impl Selection {
    pub fn wants(&self, id: &str, name: &str, ts_ms: i64) -> bool {
        ts_ms >= self.since.timestamp_millis() && ts_ms < self.until.timestamp_millis() && self.wants_event(id, name)
    }

    /// Whether an event of this id and name is selected (the time aside).
    pub fn wants_event(&self, id: &str, name: &str) -> bool {
        self.wants_name(name) && !(self.skip_copies && crate::contracts::is_replay_copy(id))
    }

    /// Whether an event of this name is selected (`--name`, less the skipped event).
    pub fn wants_name(&self, name: &str) -> bool {
        self.name.as_ref().is_none_or(|p| p.matches(name))
            && !self.skip_events.iter().any(|s| s == name)
            && self.only.as_ref().is_none_or(|o| o.iter().any(|n| n == name))
    }
}

/// A mirror entry that could not be read as an event.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Malformed {
    /// Stream key and entry id, or the row id.
    pub position: String,
    pub reason: String,
}

/// Reads every page from `source` and writes it to `target`, recording progress in `cp` after
/// every acknowledgement. Resuming from a checkpoint re-reads the page that was in progress and
/// skips what the target already acknowledged (and the stores skip ids they hold anyway).
pub async fn run(
    source: Source,
    target: &mut Target,
    cp: &mut Checkpoint,
    progress: &mut (dyn FnMut(&Counts) + Send),
) -> Result<Summary, ReplayError> {
    let started = std::time::Instant::now();
    let mut summary = Summary::new(target.name());
    summary.already_done = cp.finished;
    let before = cp.counts.clone();
    let mut counts = cp.counts.clone();
    let mut pages = source::Prefetch::start(source, 1);
    while !cp.finished {
        let Some(read) = pages.next().await else { break };
        let (page, after) = read?;
        counts.pages += 1;
        counts.malformed += page.malformed.len() as u64;
        summary.note_malformed(page.malformed);
        counts.read += (page.events.len() + page.raw.len()) as u64;
        let acked_before: std::collections::HashSet<String> = cp.page_acked.iter().cloned().collect();
        let (already, pending): (Vec<_>, Vec<_>) = page.events.into_iter().partition(|e| acked_before.contains(&e.id));
        counts.written += already.len() as u64;
        match target {
            // A Redis backfill reads raw events (data kept as text): written as they are.
            Target::Redis(t) if !page.raw.is_empty() => add(&mut counts, t.write(&page.raw).await?),
            Target::Redis(t) => add(&mut counts, t.write(&pending).await?),
            Target::Postgres(t) => add(&mut counts, t.write(&pending).await?),
            Target::Ably(t) => {
                let base = counts.clone();
                // Saved at most every 250 ms within a page (always at its end): a message acknowledged
                // since the last save is re-sent after a crash, and Ably drops it as a repeated id
                // (its idempotency window is 2 minutes).
                let mut saved = std::time::Instant::now();
                let mut on_ack = |ids: &[String]| -> Result<(), ReplayError> {
                    cp.page_acked.extend(ids.iter().cloned());
                    if saved.elapsed() >= std::time::Duration::from_millis(250) {
                        cp.save()?;
                        saved = std::time::Instant::now();
                    }
                    Ok(())
                };
                let published = t.publish(pending, &mut on_ack).await?;
                counts = Counts {
                    written: base.written + published.written,
                    failed: base.failed + published.failed,
                    rate_limited: base.rate_limited + published.rate_limited,
                    ..base
                };
                summary.failures.extend(published.failures);
            }
        }
        cp.cursor = after;
        cp.page_acked.clear();
        cp.finished = !page.more;
        cp.counts = counts.clone();
        cp.save()?;
        progress(&counts);
    }
    summary.finish(counts, &before, started.elapsed());
    Ok(summary)
}

/// [`run`] as `events replay` runs it: the summary says whether it was a dry run, whether it
/// resumed, and where its checkpoint is; a replay stopped by a store or Ably says where the
/// checkpoint is kept for the next run.
pub async fn run_replay(
    source: Source,
    target: &mut Target,
    cp: &mut Checkpoint,
    ran: Ran,
    progress: &mut (dyn FnMut(&Counts) + Send),
) -> Result<Summary, Stopped> {
    let mut summary = run(source, target, cp, progress).await.map_err(|e| stopped(e, target.name(), cp.path()))?;
    summary.dry_run = ran.dry_run;
    summary.resumed = ran.resumed;
    summary.checkpoint = cp.path().map(|p| p.display().to_string());
    Ok(summary)
}

/// How a replay was run, for its summary.
#[derive(Debug, Clone, Copy)]
pub struct Ran {
    pub dry_run: bool,
    /// It went on from a checkpoint left by an earlier run.
    pub resumed: bool,
}

fn add(c: &mut Counts, w: to_store::Written) {
    c.written += w.written;
    c.skipped += w.skipped;
    c.expired += w.expired;
}
