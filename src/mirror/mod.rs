//! The event mirror: every Ably message of a conversation, in a Redis stream (24 h) and a
//! Postgres table (for good). Writes are idempotent on the Ably message id.

pub mod postgres;
pub mod redis;

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
    #[error("Redis {op} at {addr}: {source}")]
    Redis {
        op: &'static str,
        addr: String,
        #[source]
        source: ::redis::RedisError,
    },
    #[error("Postgres {op} at {addr}: {source}")]
    Postgres {
        op: &'static str,
        addr: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("replay checkpoint: {0}")]
    Cursor(String),
    #[error("Postgres migration at {addr}: {source}")]
    Migrate {
        addr: String,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
}
