//! Paged readers of the two mirrors.

mod postgres;
mod redis;

pub use postgres::{Order, PostgresSource};
pub use redis::RedisSource;

use super::Malformed;
use crate::event::MirroredEvent;
use crate::store::MirrorError;

/// One page of events (in order) and the malformed entries met on the way.
#[derive(Debug, Default)]
pub struct Page {
    pub events: Vec<MirroredEvent>,
    /// The events, when the selection asked for raw `data` (then `events` is empty).
    pub raw: Vec<super::RawEvent>,
    pub malformed: Vec<Malformed>,
    /// False once the source is exhausted.
    pub more: bool,
}

/// A mirror to read from, with its cursor.
pub enum Source {
    Redis(Box<RedisSource>),
    Postgres(Box<PostgresSource>),
}

/// Where a source stands: what a checkpoint records after every acknowledged page.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Cursor {
    Start,
    /// The next conversation to read and the stream entry id to continue after.
    Redis {
        conversation: String,
        after: Option<String>,
    },
    /// The last row read, in time order.
    PgTime {
        at: chrono::DateTime<chrono::Utc>,
        id: String,
    },
    /// The last row read, in conversation order.
    PgConversation {
        conversation: String,
        at: chrono::DateTime<chrono::Utc>,
        id: String,
    },
    Done,
}

impl Source {
    /// Where the next page starts.
    pub fn position(&self) -> Cursor {
        match self {
            Source::Redis(r) => r.position(),
            Source::Postgres(p) => p.position(),
        }
    }

    /// How many events are left to read (Redis: an upper bound, from the stream lengths).
    pub async fn estimate(&mut self) -> Result<u64, MirrorError> {
        match self {
            Source::Redis(r) => r.estimate().await,
            Source::Postgres(p) => p.estimate().await,
        }
    }
}

pub(super) type PageSender = tokio::sync::mpsc::Sender<Result<(Page, Cursor), MirrorError>>;

/// Pages read ahead by a task of their own, so that reading the next page (the store's round
/// trip, decoding) overlaps with writing the current one. At most `depth` pages wait, so memory
/// stays bounded. Each page comes with the position after it, for the checkpoint.
pub struct Prefetch {
    rx: tokio::sync::mpsc::Receiver<Result<(Page, Cursor), MirrorError>>,
    task: tokio::task::JoinHandle<()>,
}

impl Prefetch {
    pub fn start(source: Source, depth: usize) -> Prefetch {
        let (tx, rx) = tokio::sync::mpsc::channel(depth.max(1));
        let task = match source {
            Source::Postgres(p) => tokio::spawn((*p).stream(tx)),
            Source::Redis(mut r) => tokio::spawn(async move {
                loop {
                    let read = r.next_page().await.map(|p| (p, r.position()));
                    let last = read.as_ref().map_or(true, |(p, _)| !p.more);
                    if tx.send(read).await.is_err() || last {
                        break;
                    }
                }
            }),
        };
        Prefetch { rx, task }
    }

    /// The next page; `None` once the last one was taken.
    pub async fn next(&mut self) -> Option<Result<(Page, Cursor), MirrorError>> {
        self.rx.recv().await
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        self.task.abort();
    }
}
