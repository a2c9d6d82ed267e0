//! The Redis side of the mirror: stream `chat:events:{id}` (fields `id`, `name`, `data`,
//! `clientId`, `timestamp`), expiring 24 h after its last write, and the sorted set of active
//! conversations scored by last event time.

use redis::aio::ConnectionLike;

use super::{MirrorError, MirroredEvent};
use crate::contracts::Names;

/// Connects to `url` with a reconnecting manager; every command then has `timeout`.
pub async fn connect(url: &str, timeout: std::time::Duration) -> Result<redis::aio::ConnectionManager, MirrorError> {
    crate::http::ensure_crypto_provider();
    let addr = crate::redact::url(url);
    let client =
        redis::Client::open(url).map_err(|source| MirrorError::Redis { op: "open", addr: addr.clone(), source })?;
    let cfg = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(1);
    client.get_connection_manager_with_config(cfg).await.map_err(|source| MirrorError::Redis {
        op: "connect",
        addr,
        source,
    })
}

/// Appends events to their conversations' streams in one pipeline. The caller makes sure an
/// event is written once (the sandbox mirrors only messages Ably accepted as new; backfill
/// skips ids already present).
pub async fn append<C: ConnectionLike>(
    conn: &mut C,
    addr: &str,
    names: &Names,
    events: &[MirroredEvent],
) -> Result<(), MirrorError> {
    if events.is_empty() {
        return Ok(());
    }
    let mut pipe = redis::pipe();
    for e in events {
        let key = names.stream_key(&e.conversation_id);
        let data = e.data.to_string();
        let ts = e.timestamp_ms.to_string();
        pipe.cmd("XADD")
            .arg(&key)
            .arg("*")
            .arg("id")
            .arg(&e.id)
            .arg("name")
            .arg(&e.name)
            .arg("data")
            .arg(&data)
            .arg("clientId")
            .arg(e.client_id.as_deref().unwrap_or(""))
            .arg("timestamp")
            .arg(&ts)
            .ignore();
        pipe.cmd("EXPIRE").arg(&key).arg(names.stream_ttl_secs).ignore();
        // GT keeps the score at the latest event even when events arrive out of order.
        pipe.cmd("ZADD").arg(names.active_key()).arg("GT").arg(e.timestamp_ms).arg(&e.conversation_id).ignore();
    }
    pipe.query_async::<()>(conn).await.map_err(|source| MirrorError::Redis {
        op: "XADD pipeline",
        addr: addr.to_string(),
        source,
    })
}
