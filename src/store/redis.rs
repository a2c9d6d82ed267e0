//! The Redis side of the mirror: a stream per conversation (fields `id`, `name`, `data`,
//! `clientId`, `timestamp`), expiring 24 h after its last write, and the sorted set of active
//! conversations scored by last event time. Key names come from the contracts.

use super::MirrorError;
use crate::contracts::Contracts;
use crate::event::MirroredEvent;
use crate::redis_handle::Redis;

/// Appends events to their conversations' streams in one pipeline, without looking for ids
/// already there: for a writer that knows every event is new (seeding a mirror for a drill, a
/// test or a benchmark). Whatever may see an event twice (the webhook receiver, a backfill)
/// writes through `replay::to_store::RedisTarget`, which skips ids the stream holds.
pub async fn append(redis: &mut Redis, contracts: &Contracts, events: &[MirroredEvent]) -> Result<(), MirrorError> {
    if events.is_empty() {
        return Ok(());
    }
    let mut pipe = redis::pipe();
    for e in events {
        let key = contracts.stream_key(&e.conversation_id);
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
        pipe.cmd("EXPIRE").arg(&key).arg(contracts.stream_ttl_secs).ignore();
        // GT keeps the score at the latest event even when events arrive out of order.
        pipe.cmd("ZADD").arg(contracts.active_key()).arg("GT").arg(e.timestamp_ms).arg(&e.conversation_id).ignore();
    }
    pipe.query_async::<()>(&mut redis.conn).await.map_err(redis.err("XADD pipeline"))?;
    Ok(())
}
