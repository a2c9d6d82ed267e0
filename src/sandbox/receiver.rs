//! The sandbox's stand-in for the app's webhook route, `POST /api/ably/events`: it verifies the
//! signature over the exact bytes (401 and nothing written when it is absent or wrong), then
//! writes Redis (stream entry, 24 h expiry, active set) and then Postgres, idempotent on the
//! Ably message id, and answers 2xx only when both are written, so that Ably retries the rest.
//! It also keeps, per message, when it was published and when each store had it: the record
//! `mirror canary` is compared with.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State as AxState;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{State, lock};
use crate::mirror::MirroredEvent;
use crate::replay::to_store::{PostgresTarget, RedisTarget};
use crate::webhook;

/// The path of the app's route.
pub const PATH: &str = "/api/ably/events";
/// Messages whose pipeline times are kept.
const LOG_CAP: usize = 10_000;

/// The stores the receiver writes.
pub struct Stores {
    pub redis: Option<RedisTarget>,
    pub postgres: Option<PostgresTarget>,
}

/// When each message was published, and when each store had it.
#[derive(Debug, Default)]
pub struct PipelineLog {
    order: VecDeque<String>,
    times: HashMap<String, Times>,
}

#[derive(Debug, Clone, Copy)]
struct Times {
    published: Instant,
    /// When each store's write began and when it answered: the entry became visible in
    /// between (a reader polling the store can see it before the writer hears back).
    redis: Option<(Instant, Instant)>,
    postgres: Option<(Instant, Instant)>,
}

impl PipelineLog {
    pub fn published(&mut self, id: &str, at: Instant) {
        if self.order.len() == LOG_CAP
            && let Some(old) = self.order.pop_front()
        {
            self.times.remove(&old);
        }
        self.order.push_back(id.to_string());
        self.times.insert(id.to_string(), Times { published: at, redis: None, postgres: None });
    }

    fn written(&mut self, events: &[MirroredEvent], redis: bool, began: Instant, done: Instant) {
        for e in events {
            if let Some(t) = self.times.get_mut(&e.id) {
                let slot = if redis { &mut t.redis } else { &mut t.postgres };
                slot.get_or_insert((began, done));
            }
        }
    }

    /// The record of one message: milliseconds from its publish to each store.
    pub fn record(&self, id: &str) -> Option<Value> {
        let t = self.times.get(id)?;
        let ms = |w: Option<Instant>| w.map(|w| w.duration_since(t.published).as_secs_f64() * 1000.0);
        Some(json!({
            "id": id,
            "redis_ms": ms(t.redis.map(|w| w.1)),
            "postgres_ms": ms(t.postgres.map(|w| w.1)),
            "redis_began_ms": ms(t.redis.map(|w| w.0)),
            "postgres_began_ms": ms(t.postgres.map(|w| w.0)),
        }))
    }
}

fn answer(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

pub(super) async fn receive(AxState(state): AxState<Arc<State>>, headers: HeaderMap, body: Bytes) -> Response {
    let faults = state.faults();
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if !faults.receiver_skip_signature
        && let Err(why) = webhook::verify(
            std::slice::from_ref(&state.key),
            header(webhook::HEADER_KEY),
            header(webhook::HEADER_SIGNATURE),
            &body,
        )
    {
        state.receiver.refused.fetch_add(1, Ordering::Relaxed);
        return answer(StatusCode::UNAUTHORIZED, json!({"error": why.to_string()}));
    }
    if state.chance(faults.receiver_error_rate) {
        return answer(StatusCode::INTERNAL_SERVER_ERROR, json!({"error": "receiver_error_rate fault"}));
    }
    let Some(stores) = &state.stores else {
        return answer(StatusCode::SERVICE_UNAVAILABLE, json!({"error": "the sandbox mirrors nowhere (no --mirror)"}));
    };
    let extracted = match webhook::extract(&body, &state.opts.contracts) {
        Ok(x) => x,
        Err(e) => return answer(StatusCode::BAD_REQUEST, json!({"error": e.to_string()})),
    };
    let events = extracted.events;
    // One request at a time writes, as one route instance handling Ably's single in-flight batch.
    let mut stores = stores.lock().await;
    if let Err(why) = write(&state, &mut stores, &events, &faults).await {
        tracing::warn!("sandbox receiver: {why}");
        state.sink_counters.errors.fetch_add(events.len(), Ordering::Relaxed);
        return answer(StatusCode::INTERNAL_SERVER_ERROR, json!({"error": why}));
    }
    state.sink_counters.mirrored.fetch_add(events.len(), Ordering::Relaxed);
    answer(StatusCode::OK, json!({"mirrored": events.len(), "ignored": extracted.ignored}))
}

/// Redis, then Postgres; the first failure stops the write (the route answers 500 and Ably
/// sends the batch again; both writes skip ids they already hold).
async fn write(
    state: &State,
    stores: &mut Stores,
    events: &[MirroredEvent],
    faults: &super::faults::Faults,
) -> Result<(), String> {
    if let Some(redis) = &mut stores.redis {
        if faults.redis_write_fail {
            return Err("Redis write failed (redis_write_fail fault)".into());
        }
        let began = Instant::now();
        redis.write(events).await.map_err(|e| e.to_string())?;
        lock(&state.pipeline).written(events, true, began, Instant::now());
    }
    if let Some(pg) = &mut stores.postgres {
        if faults.postgres_write_fail {
            return Err("Postgres write failed (postgres_write_fail fault)".into());
        }
        let began = Instant::now();
        pg.write(events).await.map_err(|e| e.to_string())?;
        lock(&state.pipeline).written(events, false, began, Instant::now());
    }
    Ok(())
}

/// `GET /_sandbox/mirror`: the emitter's and the receiver's counters; with `?id=`, that
/// message's times through the pipeline.
pub(super) async fn report(
    AxState(state): AxState<Arc<State>>,
    axum::extract::Query(q): axum::extract::Query<HashMap<String, String>>,
) -> Response {
    let record = q.get("id").map(|id| lock(&state.pipeline).record(id));
    let (mirrored, errors) =
        (state.sink_counters.mirrored.load(Ordering::Relaxed), state.sink_counters.errors.load(Ordering::Relaxed));
    axum::Json(json!({
        "schema_version": 1,
        "webhook": state.emitter.as_ref().map(|e| e.counters.json()),
        "receiver": {"mirrored": mirrored, "errors": errors, "refused": state.receiver.refused.load(Ordering::Relaxed)},
        "faults": state.faults().json(),
        "record": record.flatten(),
    }))
    .into_response()
}
