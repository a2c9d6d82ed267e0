//! One mirrored channel message: the record every writer and reader of the mirror shares (the
//! app's webhook route, the Redis stream, the Postgres table, replays), below all of them.

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
