//! The sandbox's Ably REST surface (docs/sandbox.md, "Ably REST"): `/time`, `/stats`,
//! `/channels`, `/channels/{id}`, history and publish, `POST /messages`, token requests and
//! the public status document; Basic and Bearer auth with Ably's error envelope and codes.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State as AxState};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::ably_auth::{Answer, Rejected, auth, denied, error_response, request_token, version};
use super::{State, lock};
use crate::ably::{ErrorInfo, Message};

pub fn routes() -> Router<Arc<State>> {
    Router::new()
        .route("/time", get(time))
        .route("/stats", get(stats))
        .route("/channels", get(enumerate))
        .route("/channels/{channel}", get(details))
        .route("/channels/{channel}/messages", get(history).post(publish))
        .route("/channels/{channel}/presence", get(presence))
        .route("/messages", post(batch_publish))
        .route("/keys/{key_name}/requestToken", post(request_token))
        .route("/status/up.json", get(|| async { axum::Json(json!({"status": true})) }))
}

/// Counts Ably API requests for `/stats` by outcome.
pub async fn count_requests(AxState(state): AxState<Arc<State>>, req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    lock(&state.stats).api_request(resp.status().as_u16());
    resp
}

// ---- time, stats, channels ---------------------------------------------------------------

async fn time() -> Response {
    axum::Json(json!([State::now_ms()])).into_response()
}

async fn stats(
    AxState(state): AxState<Arc<State>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Answer {
    auth(&state, &headers)?;
    let v = version(&headers, &q);
    let query = super::stats::StatsQuery::parse(&q, State::now_ms())?;
    let (items, next) = lock(&state.stats).query(&query, v);
    Ok(paginated(items, "./stats", &query.link_params(), next))
}

/// A JSON array with `Link` headers for `first`, `current` and (unless last) `next`.
fn paginated(items: Vec<Value>, path: &str, params: &str, next: Option<String>) -> Response {
    let mut resp = axum::Json(Value::Array(items)).into_response();
    let h = resp.headers_mut();
    let first = format!("<{path}?{params}>; rel=\"first\"");
    let current = format!("<{path}?{params}>; rel=\"current\"");
    for link in [first, current] {
        if let Ok(v) = HeaderValue::from_str(&link) {
            h.append("link", v);
        }
    }
    if let Some(n) = next
        && let Ok(v) = HeaderValue::from_str(&format!("<{path}?{n}>; rel=\"next\""))
    {
        h.append("link", v);
    }
    resp
}

fn q_limit(q: &HashMap<String, String>) -> Result<usize, ErrorInfo> {
    match q.get("limit") {
        None => Ok(100),
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=1000).contains(&n) => Ok(n),
            _ => Err(ErrorInfo::new(400, 40003, format!("Invalid limit {l:?}: must be between 1 and 1000"))),
        },
    }
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn channel_details(state: &State, name: &str) -> Value {
    let mut channels = lock(&state.channels);
    let ch = channels.channel(name);
    json!({
        "channelId": name,
        "status": {
            "isActive": true,
            "occupancy": { "metrics": {
                "connections": ch.subscribers.max(ch.present.len()), "publishers": 0, "subscribers": ch.subscribers,
                "presenceConnections": ch.present.len(), "presenceMembers": ch.present.len(),
                "presenceSubscribers": ch.subscribers,
                "objectPublishers": 0, "objectSubscribers": 0
            }}
        }
    })
}

/// `GET /channels`: active channels, `prefix`, `limit`, `by=id|value`, paginated by name.
async fn enumerate(
    AxState(state): AxState<Arc<State>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Answer {
    let cred = auth(&state, &headers)?;
    if !cred.allows("*", "channel-metadata") {
        return Err(Rejected(ErrorInfo::new(401, 40160, "Listing channels requires the channel-metadata capability")));
    }
    let limit = q_limit(&q)?;
    let prefix = q.get("prefix").cloned().unwrap_or_default();
    let by_value = match q.get("by").map(String::as_str) {
        Some("value") => true,
        Some("id") => false,
        Some(other) => {
            return Err(ErrorInfo::new(400, 40003, format!("Invalid by={other:?}: expected id or value")).into());
        }
        None => version(&headers, &q) < 3,
    };
    let cursor = q.get("cursor").cloned().unwrap_or_default();
    let now = std::time::Instant::now();
    let names: Vec<String> = lock(&state.channels)
        .map
        .iter()
        .filter(|(n, c)| n.starts_with(&prefix) && n.as_str() > cursor.as_str() && c.is_active(now))
        .map(|(n, _)| n.clone())
        .take(limit + 1)
        .collect();
    let more = names.len() > limit;
    let page: Vec<String> = names.into_iter().take(limit).collect();
    let by = if by_value { "value" } else { "id" };
    let params = format!("limit={limit}&prefix={}&by={by}", enc(&prefix));
    let next = match (more, page.last()) {
        (true, Some(last)) => Some(format!("{params}&cursor={}", enc(last))),
        _ => None,
    };
    let items = page.iter().map(|n| if by_value { channel_details(&state, n) } else { json!(n) }).collect();
    Ok(paginated(items, "./channels", &params, next))
}

/// `GET /channels/{id}`: channel details with occupancy metrics (activates the channel).
async fn details(AxState(state): AxState<Arc<State>>, Path(channel): Path<String>, headers: HeaderMap) -> Answer {
    let cred = auth(&state, &headers)?;
    if !cred.allows(&channel, "channel-metadata") {
        return Err(denied("channel-metadata", &channel).into());
    }
    Ok(axum::Json(channel_details(&state, &channel)).into_response())
}

/// `GET /channels/{id}/presence`: the members present now (action 1, present), as Ably's REST
/// presence answers; reading presence needs the `subscribe` capability (or `presence`).
async fn presence(AxState(state): AxState<Arc<State>>, Path(channel): Path<String>, headers: HeaderMap) -> Answer {
    let cred = auth(&state, &headers)?;
    if !cred.allows(&channel, "subscribe") && !cred.allows(&channel, "presence") {
        return Err(denied("presence", &channel).into());
    }
    let members: Vec<Value> = lock(&state.channels)
        .channel(&channel)
        .present
        .iter()
        .map(|c| json!({"clientId": c, "action": 1, "connectionId": format!("sbx-{c}")}))
        .collect();
    Ok(axum::Json(members).into_response())
}

// ---- history and publish ----------------------------------------------------------------------

/// `GET /channels/{id}/messages`: `start`/`end` (ms, inclusive), `limit`, `direction`, with
/// relative `Link` pagination.
async fn history(
    AxState(state): AxState<Arc<State>>,
    Path(channel): Path<String>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Answer {
    let cred = auth(&state, &headers)?;
    if !cred.allows(&channel, "history") {
        return Err(denied("history", &channel).into());
    }
    let limit = q_limit(&q)?;
    let num = |k: &str, d: i64| q.get(k).and_then(|v| v.parse::<i64>().ok()).unwrap_or(d);
    let (start, end) = (num("start", 0), num("end", i64::MAX));
    if start > end {
        return Err(ErrorInfo::new(400, 40003, "Invalid time range: start is after end").into());
    }
    let forwards = match q.get("direction").map(String::as_str) {
        None | Some("backwards") => false,
        Some("forwards") => true,
        Some(d) => return Err(ErrorInfo::new(400, 40003, format!("Invalid direction {d:?}")).into()),
    };
    let cursor = q.get("cursor").and_then(|c| c.parse::<u64>().ok());
    let in_range = |s: &super::channels::Stored| {
        let ts = s.message.timestamp.unwrap_or(0);
        ts >= start && ts <= end && cursor.is_none_or(|c| if forwards { s.seq > c } else { s.seq < c })
    };
    let mut found: Vec<Value> = Vec::new();
    let mut last_seq = None;
    let mut more = false;
    {
        let channels = lock(&state.channels);
        if let Some(ch) = channels.map.get(&channel) {
            let iter: Box<dyn Iterator<Item = _>> =
                if forwards { Box::new(ch.history.iter()) } else { Box::new(ch.history.iter().rev()) };
            for s in iter.filter(|s| in_range(s)) {
                if found.len() == limit {
                    more = true;
                    break;
                }
                last_seq = Some(s.seq);
                found.push(serde_json::to_value(&s.message).unwrap_or(Value::Null));
            }
        }
    }
    let dir = if forwards { "forwards" } else { "backwards" };
    let end_param = if end == i64::MAX { String::new() } else { format!("&end={end}") };
    let params = format!("start={start}{end_param}&limit={limit}&direction={dir}");
    let next = match (more, last_seq) {
        (true, Some(seq)) => Some(format!("{params}&cursor={seq}")),
        _ => None,
    };
    Ok(paginated(found, "./messages", &params, next))
}

/// Parses a publish body: one message or an array.
fn messages_of(v: Value) -> Result<Vec<Message>, ErrorInfo> {
    let list = match v {
        Value::Array(a) => a,
        obj @ Value::Object(_) => vec![obj],
        _ => return Err(ErrorInfo::new(400, 40001, "Invalid message body: expected a message object or an array")),
    };
    list.into_iter()
        .map(|m| {
            serde_json::from_value::<Message>(m)
                .map_err(|e| ErrorInfo::new(400, 40001, format!("Invalid message: {e}")))
        })
        .collect()
}

fn json_body(headers: &HeaderMap, body: &Bytes) -> Result<Value, ErrorInfo> {
    let ct = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    if !ct.starts_with("application/json") {
        return Err(ErrorInfo::new(
            400,
            40001,
            format!("Unsupported content type {ct:?}: the sandbox accepts application/json bodies"),
        ));
    }
    serde_json::from_slice(body).map_err(|e| ErrorInfo::new(400, 40001, format!("Invalid JSON body: {e}")))
}

/// `POST /channels/{id}/messages`: 201 `{channel, messageId, serials}`.
async fn publish(
    AxState(state): AxState<Arc<State>>,
    Path(channel): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let cred = auth(&state, &headers)?;
    if !cred.allows(&channel, "publish") {
        return Err(denied("publish", &channel).into());
    }
    let messages = json_body(&headers, &body).and_then(messages_of)?;
    let n = messages.len();
    match state.publish(&channel, messages) {
        Ok(p) => Ok((StatusCode::CREATED, axum::Json(published_json(&channel, &p, n))).into_response()),
        Err(e) => Err(e.into()),
    }
}

fn published_json(channel: &str, p: &super::channels::Published, n: usize) -> Value {
    // A deduplicated publish delivers nothing; its serials are null, as for conflated messages.
    let serials: Vec<Value> = if p.delivered.is_empty() {
        vec![Value::Null; n]
    } else {
        p.delivered.iter().map(|s| json!(s.seq.to_string())).collect()
    };
    json!({"channel": channel, "messageId": p.message_id, "serials": serials})
}

/// `POST /messages`: batch publish. `BatchResult` objects at protocol 2 and above; the legacy
/// flat list (with the 40020 envelope on any failure) below.
async fn batch_publish(
    AxState(state): AxState<Arc<State>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Answer {
    let cred = auth(&state, &headers)?;
    let specs = match json_body(&headers, &body) {
        Ok(Value::Array(a)) => a,
        Ok(obj @ Value::Object(_)) => vec![obj],
        Ok(_) => return Err(ErrorInfo::new(400, 40001, "Invalid batch: expected a BatchSpec or an array").into()),
        Err(e) => return Err(e.into()),
    };
    let mut batch_results = Vec::new();
    let mut flat = Vec::new();
    let mut any_failed = false;
    for spec in specs {
        let channels: Vec<String> = match spec.get("channels") {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => a.iter().filter_map(|c| c.as_str().map(str::to_string)).collect(),
            _ => return Err(ErrorInfo::new(400, 40001, "Invalid BatchSpec: missing channels").into()),
        };
        if channels.len() > 100 {
            return Err(ErrorInfo::new(400, 40001, "Invalid BatchSpec: more than 100 channels").into());
        }
        let messages = match messages_of(spec.get("messages").cloned().unwrap_or(Value::Null)) {
            Ok(m) if m.len() <= 1000 => m,
            Ok(_) => return Err(ErrorInfo::new(400, 40001, "Invalid BatchSpec: more than 1000 messages").into()),
            Err(e) => return Err(e.into()),
        };
        let (mut ok, mut failed, mut results) = (0, 0, Vec::new());
        for ch in channels {
            let outcome = if cred.allows(&ch, "publish") {
                state.publish(&ch, messages.clone())
            } else {
                Err(denied("publish", &ch))
            };
            let item = match outcome {
                Ok(p) => {
                    ok += 1;
                    published_json(&ch, &p, messages.len())
                }
                Err(e) => {
                    failed += 1;
                    json!({"channel": ch, "error": e})
                }
            };
            flat.push(item.clone());
            results.push(item);
        }
        any_failed |= failed > 0;
        batch_results.push(json!({"successCount": ok, "failureCount": failed, "results": results}));
    }
    if version(&headers, &q) >= 2 {
        return Ok((StatusCode::CREATED, axum::Json(Value::Array(batch_results))).into_response());
    }
    if any_failed {
        let err = ErrorInfo::new(400, 40020, "Batched response includes errors");
        let mut resp = error_response(&err);
        *resp.body_mut() = axum::body::Body::from(json!({"error": err, "batchResponse": flat}).to_string());
        return Ok(resp);
    }
    Ok((StatusCode::CREATED, axum::Json(Value::Array(flat))).into_response())
}
