//! The event mirror: every Ably message of a conversation, in a Redis stream (24 h) and a
//! Postgres table (for good). Writes are idempotent on the Ably message id.

pub mod canary;
pub mod migrate;
pub mod postgres;
pub mod redis;
pub mod stores;
pub mod watch;
pub mod webhook_test;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One mirrored channel message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MirroredEvent {
    /// The Ably message id.
    pub id: String,
    pub conversation_id: String,
    pub channel: String,
    pub name: String,
    /// The decoded payload (JSON).
    pub data: Value,
    pub client_id: Option<String>,
    /// Ably timestamp, ms since the epoch.
    pub timestamp_ms: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error(transparent)]
    Redis(#[from] crate::redis_handle::RedisError),
    #[error("Postgres {op} at {addr}: {source}")]
    Postgres {
        op: String,
        addr: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("replay checkpoint: {0}")]
    Cursor(String),
    #[error(
        "Postgres at {addr}: the mirror table {table} does not exist (create it with `broker-ops db migrate`, \
         or set contracts.table to the table the webhook writes)"
    )]
    NoTable { addr: String, table: String },
}

impl MirrorError {
    /// A Postgres error of operation `op` at `addr`, for `map_err`.
    pub fn pg<O: Into<String>>(op: O, addr: &str) -> impl FnOnce(sqlx::Error) -> MirrorError + use<O> {
        let (op, addr) = (op.into(), addr.to_string());
        move |source| MirrorError::Postgres { op, addr, source }
    }
}
