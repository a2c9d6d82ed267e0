//! Ably realtime over SSE (the smoke chats and the canary): a subscription to one channel, opened before the
//! customer speaks, with events timestamped on arrival and a resume (`lastEvent`) when the
//! stream drops mid-chat.

use std::time::{Duration, Instant};

use eventsource_stream::Eventsource;
use futures::StreamExt;
use tokio::sync::mpsc;
use url::Url;

use crate::ably::{ErrorInfo, Message};
use crate::config::AblyKey;

/// An event and the instant it arrived.
#[derive(Debug)]
pub enum RtEvent {
    Message(Box<Message>, Instant),
    /// A presence event: its action (`enter`, `leave`, `update`, `present`) and client id.
    Presence(String, Option<String>, Instant),
    /// An `error` event, or a failed resume: the subscription is over.
    Error(String),
}

pub struct Subscription {
    pub rx: mpsc::Receiver<RtEvent>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How many resumes in a row may fail before the chat gives up on realtime.
const MAX_FAILED_RESUMES: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum RealtimeError {
    #[error("Ably SSE subscribe {url}: {detail}")]
    Connect { url: String, detail: String },
    #[error("Ably SSE subscribe {url}: HTTP {status}, code {code}: {message}")]
    Refused { url: String, status: u16, code: u32, message: String },
}

impl RealtimeError {
    /// Whose failure this is (see [`crate::exit::Fault`]).
    pub fn fault(&self) -> crate::exit::Fault {
        match self {
            RealtimeError::Connect { .. } => crate::exit::Fault::Service,
            RealtimeError::Refused { status, .. } => crate::exit::Fault::of_http_status(*status),
        }
    }
}

/// A presence message's action, numeric as Ably's protocol sends it (0 absent, 1 present,
/// 2 enter, 3 leave, 4 update) or already a name.
fn presence_action(v: &serde_json::Value) -> String {
    match (v.as_u64(), v.as_str()) {
        (Some(0), _) => "absent".into(),
        (Some(1), _) => "present".into(),
        (Some(2), _) => "enter".into(),
        (Some(3), _) => "leave".into(),
        (Some(4), _) => "update".into(),
        (_, Some(s)) => s.to_string(),
        _ => "unknown".into(),
    }
}

fn sse_url(base: &Url, channel: &str, last_event: Option<&str>) -> Url {
    let mut u = base.join("sse").unwrap_or_else(|_| base.clone());
    {
        let mut q = u.query_pairs_mut();
        q.append_pair("v", "1.2").append_pair("channels", channel);
        if let Some(id) = last_event {
            q.append_pair("lastEvent", id);
        }
    }
    u
}

async fn connect(
    http: &reqwest::Client,
    base: &Url,
    key: &AblyKey,
    channel: &str,
    last_event: Option<&str>,
    timeout: Duration,
) -> Result<reqwest::Response, RealtimeError> {
    let url = sse_url(base, channel, last_event);
    let shown = format!("{}sse?channels={}", crate::redact::url(base.as_str()), crate::output::escape(channel));
    let req = http
        .get(url)
        .basic_auth(&key.name, Some(key.secret()))
        .header("Accept", "text/event-stream")
        .header("Ably-Agent", concat!("broker-ops/", env!("CARGO_PKG_VERSION")));
    let resp = tokio::time::timeout(timeout, req.send())
        .await
        .map_err(|_| RealtimeError::Connect { url: shown.clone(), detail: "timed out".into() })?
        .map_err(|e| RealtimeError::Connect { url: shown.clone(), detail: crate::http::describe(&e) })?;
    if !resp.status().is_success() {
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap_or_default();
        let info = serde_json::from_str::<crate::ably::types::ErrorEnvelope>(&body).map(|e| e.error).ok();
        return Err(RealtimeError::Refused {
            url: shown,
            status,
            code: info.as_ref().map_or(0, |i| i.code),
            message: info.map_or(body, |i| i.message),
        });
    }
    Ok(resp)
}

/// Subscribes to `channel`; returns once the server has answered, so that nothing published
/// afterwards can be missed.
pub async fn subscribe(
    http: reqwest::Client,
    base: Url,
    key: AblyKey,
    channel: String,
    timeout: Duration,
) -> Result<Subscription, RealtimeError> {
    let first = connect(&http, &base, &key, &channel, None, timeout).await?;
    let (tx, rx) = mpsc::channel(64);
    let task = tokio::spawn(async move {
        let mut resp = first;
        let mut last_id: Option<String> = None;
        let mut failures = 0;
        loop {
            let mut events = resp.bytes_stream().eventsource();
            while let Some(item) = events.next().await {
                let Ok(ev) = item else { break };
                let now = Instant::now();
                if !ev.id.is_empty() {
                    last_id = Some(ev.id.clone());
                }
                let out = match ev.event.as_str() {
                    "message" => match serde_json::from_str::<Message>(&ev.data) {
                        Ok(m) => RtEvent::Message(Box::new(m), now),
                        Err(_) => continue,
                    },
                    "presence" => {
                        let p: serde_json::Value = serde_json::from_str(&ev.data).unwrap_or_default();
                        let client = p.get("clientId").and_then(|c| c.as_str()).map(str::to_string);
                        RtEvent::Presence(presence_action(&p["action"]), client, now)
                    }
                    "error" => {
                        let info = serde_json::from_str::<ErrorInfo>(&ev.data).ok();
                        let msg = info.map_or(ev.data.clone(), |i| format!("code {}: {}", i.code, i.message));
                        let _ = tx.send(RtEvent::Error(format!("Ably SSE error event: {msg}"))).await;
                        return;
                    }
                    _ => continue,
                };
                if tx.send(out).await.is_err() {
                    return;
                }
            }
            // The stream ended or broke: resume where it stopped, at once the first time, then
            // backing off while resumes keep failing.
            loop {
                if tx.is_closed() {
                    return;
                }
                if failures > 0 {
                    tokio::time::sleep(Duration::from_millis(50 << failures.min(6))).await;
                }
                match connect(&http, &base, &key, &channel, last_id.as_deref(), timeout).await {
                    Ok(r) => {
                        failures = 0;
                        resp = r;
                        break;
                    }
                    Err(e) => {
                        failures += 1;
                        if failures == MAX_FAILED_RESUMES {
                            let _ = tx.send(RtEvent::Error(format!("resuming failed {failures} times: {e}"))).await;
                            return;
                        }
                    }
                }
            }
        }
    });
    Ok(Subscription { rx, task })
}
