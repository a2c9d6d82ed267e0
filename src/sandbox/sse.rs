//! Ably's SSE subscribe endpoints (docs/sandbox.md, "Ably SSE"): `GET /sse` and
//! `GET /event-stream` with `channels`, `v`, `key`/`accessToken`, `rewind`, `lastEvent`,
//! `enveloped` and `heartbeats`; `id:`/`event:`/`data:` framing, `:keepalive` comments and
//! `error` events. Failures before the stream starts are ordinary `{"error":…}` answers.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State as AxState};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::StreamExt;
use rand::Rng;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::{BroadcastStream, ReceiverStream};

use super::ably_auth::error_response;
use super::ably_auth::{authenticate, denied};
use super::channels::Stored;
use super::{State, lock};
use crate::ably::ErrorInfo;

/// Rewind replays at most this far back.
const REWIND_WINDOW_MS: i64 = 120_000;

pub fn routes() -> Router<Arc<State>> {
    Router::new().route("/sse", get(sse)).route("/event-stream", get(event_stream))
}

async fn sse(state: AxState<Arc<State>>, headers: HeaderMap, q: Query<HashMap<String, String>>) -> Response {
    subscribe(state, headers, q, Framing::Sse).await
}

async fn event_stream(state: AxState<Arc<State>>, headers: HeaderMap, q: Query<HashMap<String, String>>) -> Response {
    let accepts_sse =
        headers.get("accept").and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/event-stream"));
    let framing = if accepts_sse { Framing::Sse } else { Framing::Lines };
    subscribe(state, headers, q, framing).await
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Framing {
    Sse,
    /// One JSON envelope per line (`/event-stream` without `Accept: text/event-stream`).
    Lines,
}

struct Params {
    channels: Vec<String>,
    rewind: Option<usize>,
    last_event: Option<u64>,
    enveloped: bool,
    heartbeats: bool,
}

fn params(q: &HashMap<String, String>) -> Result<Params, ErrorInfo> {
    let list = q.get("channels").or_else(|| q.get("channel")).filter(|c| !c.is_empty());
    let Some(list) = list else {
        return Err(ErrorInfo::new(400, 40000, "Invalid request: the channels parameter is mandatory"));
    };
    if q.get("v").is_none_or(|v| v.is_empty()) {
        return Err(ErrorInfo::new(400, 40000, "Invalid request: the v (protocol version) parameter is mandatory"));
    }
    let sep = q.get("separator").map(String::as_str).filter(|s| !s.is_empty()).unwrap_or(",");
    let channels: Vec<String> = list.split(sep).filter(|c| !c.is_empty()).map(str::to_string).collect();
    let flag = |k: &str, d: bool| q.get(k).map(|v| v == "true").unwrap_or(d);
    let rewind = match q.get("rewind") {
        None => None,
        Some(r) => Some(r.parse::<usize>().map_err(|_| ErrorInfo::new(400, 40003, format!("Invalid rewind {r:?}")))?),
    };
    Ok(Params {
        channels,
        rewind,
        last_event: q.get("lastEvent").and_then(|e| e.parse().ok()),
        enveloped: flag("enveloped", true),
        heartbeats: flag("heartbeats", false),
    })
}

async fn subscribe(
    AxState(state): AxState<Arc<State>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    framing: Framing,
) -> Response {
    let p = match params(&q) {
        Ok(p) => p,
        Err(e) => return error_response(&e),
    };
    let cred = match authenticate(
        &state,
        &headers,
        q.get("key").map(String::as_str),
        q.get("accessToken").map(String::as_str),
    ) {
        Ok(c) => c,
        Err(e) => return error_response(&e),
    };
    if let Some(ch) = p.channels.iter().find(|c| !cred.allows(c, "subscribe")) {
        return error_response(&denied("subscribe", ch));
    }
    // Subscribe before answering, so that nothing published after the response headers
    // arrive can be missed.
    let (receivers, backlog) = attach(&state, &p);
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let expires = cred.expires_ms();
    tokio::spawn(pump(state.clone(), p, receivers, backlog, tx, framing, expires));
    let content_type = match framing {
        Framing::Sse => "text/event-stream",
        Framing::Lines => "application/json",
    };
    let mut resp =
        (StatusCode::OK, Body::from_stream(ReceiverStream::new(rx).map(Ok::<_, std::io::Error>))).into_response();
    let h = resp.headers_mut();
    h.insert("content-type", HeaderValue::from_static(content_type));
    h.insert("cache-control", HeaderValue::from_static("no-cache"));
    resp
}

type Receivers = Vec<broadcast::Receiver<Arc<Stored>>>;

/// Subscribes to every channel and collects the backlog (`lastEvent` resume or `rewind`).
fn attach(state: &State, p: &Params) -> (Receivers, Vec<Arc<Stored>>) {
    let mut channels = lock(&state.channels);
    let now_ms = State::now_ms();
    let mut receivers = Vec::new();
    let mut backlog = Vec::new();
    for name in &p.channels {
        let ch = channels.channel(name);
        ch.subscribers += 1;
        ch.last_active = std::time::Instant::now();
        receivers.push(ch.tx.subscribe());
        if let Some(last) = p.last_event {
            backlog.extend(ch.after(last));
        } else if let Some(n) = p.rewind {
            let recent: Vec<_> = ch
                .history
                .iter()
                .rev()
                .take_while(|s| now_ms - s.message.timestamp.unwrap_or(0) <= REWIND_WINDOW_MS)
                .take(n)
                .cloned()
                .collect();
            backlog.extend(recent.into_iter().rev());
        }
    }
    backlog.sort_by_key(|s| s.seq);
    (receivers, backlog)
}

fn frame(s: &Stored, framing: Framing, enveloped: bool) -> Bytes {
    if let Some(action) = s.presence {
        let data = json!({"id": s.message.id, "clientId": s.message.client_id, "action": action,
                          "timestamp": s.message.timestamp, "channel": s.channel});
        return match framing {
            Framing::Sse => Bytes::from(format!("id: {}\nevent: presence\ndata: {data}\n\n", s.seq)),
            Framing::Lines => {
                Bytes::from(format!("{}\n", json!({"event": "presence", "data": data, "id": s.seq.to_string()})))
            }
        };
    }
    let data = if enveloped {
        let mut v = serde_json::to_value(&s.message).unwrap_or(Value::Null);
        v["channel"] = json!(s.channel);
        v.to_string()
    } else {
        match &s.message.data {
            Some(Value::String(t)) => t.clone(),
            Some(v) => v.to_string(),
            None => String::new(),
        }
    };
    match framing {
        Framing::Sse => Bytes::from(format!("id: {}\nevent: message\ndata: {data}\n\n", s.seq)),
        Framing::Lines => {
            let payload: Value = serde_json::from_str(&data).unwrap_or(Value::String(data));
            Bytes::from(format!("{}\n", json!({"event": "message", "data": payload, "id": s.seq.to_string()})))
        }
    }
}

fn error_frame(e: &ErrorInfo, framing: Framing) -> Bytes {
    let data = serde_json::to_string(e).unwrap_or_default();
    match framing {
        Framing::Sse => Bytes::from(format!("event: error\ndata: {data}\n\n")),
        Framing::Lines => Bytes::from(format!("{}\n", json!({"event": "error", "data": e}))),
    }
}

/// Feeds one subscriber until it goes away or its token expires. A subscriber that falls
/// behind the live broadcast is caught up from history, so it never misses a message.
async fn pump(
    state: Arc<State>,
    p: Params,
    receivers: Receivers,
    backlog: Vec<Arc<Stored>>,
    tx: mpsc::Sender<Bytes>,
    framing: Framing,
    expires_ms: Option<i64>,
) {
    let open = state.sse_connections.fetch_add(1, Ordering::SeqCst) + 1;
    lock(&state.stats).connection(open);
    let mut delivered: HashMap<String, u64> = HashMap::new();
    let mut sent = 0usize;
    let mut send = |s: &Arc<Stored>, delivered: &mut HashMap<String, u64>| -> Option<Bytes> {
        let last = delivered.entry(s.channel.clone()).or_insert(0);
        if s.seq <= *last {
            return None;
        }
        *last = s.seq;
        if state.chance(state.faults().deliver_drop_rate) {
            return None;
        }
        sent += 1;
        state.delivered_extra(s);
        Some(frame(s, framing, p.enveloped))
    };
    let mut alive = true;
    for s in &backlog {
        if let Some(b) = send(s, &mut delivered)
            && tx.send(b).await.is_err()
        {
            alive = false;
            break;
        }
    }
    let mut merged = futures::stream::select_all(
        receivers
            .into_iter()
            .zip(p.channels.iter().cloned())
            .map(|(r, name)| BroadcastStream::new(r).map(move |m| (name.clone(), m))),
    );
    let keepalive = state.opts.sse_keepalive;
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + keepalive, keepalive);
    let expiry = async {
        match expires_ms {
            Some(ms) => tokio::time::sleep(Duration::from_millis((ms - State::now_ms()).max(0) as u64)).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(expiry);
    let drop_after_now = state.faults().sse_drop_after;
    let drop_after = async {
        match drop_after_now {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(drop_after);
    while alive {
        let out: Vec<Bytes> = tokio::select! {
            item = merged.next() => match item {
                None => break,
                Some((_, Ok(s))) => send(&s, &mut delivered).into_iter().collect(),
                Some((name, Err(_lagged))) => {
                    let since = delivered.get(&name).copied().unwrap_or(0);
                    let missed = lock(&state.channels).channel(&name).after(since);
                    missed.iter().filter_map(|s| send(s, &mut delivered)).collect()
                }
            },
            _ = ticker.tick() => vec![match (framing, p.heartbeats) {
                (Framing::Sse, false) => Bytes::from_static(b":keepalive\n\n"),
                (Framing::Sse, true) => Bytes::from_static(b"event: heartbeat\ndata: \n\n"),
                (Framing::Lines, _) => Bytes::from_static(b"\n"),
            }],
            _ = &mut expiry => {
                let _ = tx.send(error_frame(&ErrorInfo::new(401, 40142, "Token expired"), framing)).await;
                break;
            }
            // The fault: the connection just ends, as a proxy or load balancer would end it.
            _ = &mut drop_after => break,
            _ = tx.closed() => break,
        };
        let jitter = state.faults().deliver_jitter;
        for b in out {
            if !jitter.is_zero() {
                let wait = lock(&state.rng).random_range(Duration::ZERO..=jitter);
                tokio::time::sleep(wait).await;
            }
            if tx.send(b).await.is_err() {
                alive = false;
                break;
            }
        }
    }
    lock(&state.stats).delivered(sent);
    state.sse_connections.fetch_sub(1, Ordering::SeqCst);
    let mut channels = lock(&state.channels);
    for name in &p.channels {
        let ch = channels.channel(name);
        ch.subscribers = ch.subscribers.saturating_sub(1);
        ch.last_active = std::time::Instant::now();
    }
}
