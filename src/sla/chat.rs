//! One smoke chat, exactly as a customer has it: contact, conversation, realtime subscription
//! before the first word, then each message and the AI's reply to it. Every duration is taken
//! with this process's monotonic clock.

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::extras::Dashboard;
use crate::ably::Message;
use crate::ably::realtime::{self, RtEvent, Subscription};
use crate::chatwoot::{ChatwootClient, ChatwootError, MESSAGE_OUTGOING};
use crate::config::AblyKey;
use crate::contracts::{Contracts, EventKind, Extra};

/// The measured steps of a chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Phase {
    Contact,
    Conversation,
    PostAck,
    Echo,
    Reply,
    /// A typing start or stop: publish → the dashboard (the chat's second subscriber).
    Typing,
    /// A read receipt: publish → the dashboard.
    Read,
}

impl Phase {
    pub const ALL: [Phase; 7] =
        [Phase::Contact, Phase::Conversation, Phase::PostAck, Phase::Echo, Phase::Reply, Phase::Typing, Phase::Read];

    pub fn name(self) -> &'static str {
        match self {
            Phase::Contact => "contact",
            Phase::Conversation => "conversation",
            Phase::PostAck => "post_ack",
            Phase::Echo => "echo",
            Phase::Reply => "reply",
            Phase::Typing => "typing",
            Phase::Read => "read",
        }
    }
}

/// How the reply is awaited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Ably SSE on the conversation's channel.
    Sse,
    /// Polling Chatwoot for the first outgoing message (the web app's fallback).
    Poll,
}

/// Everything a chat needs, shared by all chats of a run.
#[derive(Clone)]
pub struct ChatContext {
    pub chatwoot: ChatwootClient,
    pub ably: Option<(url::Url, AblyKey)>,
    pub sse_http: reqwest::Client,
    pub transport: Transport,
    pub contracts: Contracts,
    pub run_id: String,
    pub reply_timeout: Duration,
    pub poll_interval: Duration,
    pub timeout: Duration,
    pub cancel: CancellationToken,
    /// Publishes typing and read events, timed to a second subscriber (SSE only; `None`: off).
    /// One client for the run, its connections kept, as the app's server keeps its own.
    pub extras: Option<crate::ably::AblyClient>,
}

/// What went wrong in a chat; `kind` groups errors in the report.
#[derive(Debug, Clone)]
pub struct ChatFailure {
    pub kind: String,
    pub detail: String,
    /// It failed before its first message went in (the target could not be used at all).
    pub setup: bool,
}

#[derive(Debug, Clone, Default)]
pub struct ChatOutcome {
    pub index: usize,
    pub conversation_id: Option<u64>,
    pub phases: Vec<(Phase, Duration)>,
    /// Reply latency of the first turn measured from the chat's intended start (open loop).
    pub corrected_first_reply: Option<Duration>,
    pub warnings: u32,
    pub violations: u32,
    pub failure: Option<ChatFailure>,
    pub cancelled: bool,
    /// Presence events the dashboard saw (with extras).
    pub presence: super::extras::PresenceSeen,
    /// Each realtime reply's path time in ms: what the way to and from the service added, by
    /// Ably's stamps on the echo and the reply (see [`super::path`]), with the reply's measured
    /// time in ms.
    pub path_ms: Vec<(f64, f64)>,
}

fn fail(kind: impl Into<String>, detail: impl Into<String>) -> ChatFailure {
    ChatFailure { kind: kind.into(), detail: detail.into(), setup: false }
}

/// A failure before the first message went in.
fn setup(mut f: ChatFailure) -> ChatFailure {
    f.setup = true;
    f
}

fn chatwoot_failure(step: &str, e: &ChatwootError) -> ChatFailure {
    let kind = match e {
        ChatwootError::Http { status, .. } => format!("{step}: HTTP {status}"),
        ChatwootError::Transport { detail, .. } if detail.starts_with("timed out") => format!("{step}: timeout"),
        ChatwootError::Transport { .. } => format!("{step}: connection error"),
        ChatwootError::Protocol { .. } => format!("{step}: invalid response"),
        ChatwootError::NotConfigured { .. } => format!("{step}: not configured"),
    };
    fail(kind, e.to_string())
}

/// Runs chat `index` with `messages`; `intended_start` is when the schedule wanted it to begin.
pub async fn run(ctx: &ChatContext, index: usize, messages: &[String], intended_start: Instant) -> ChatOutcome {
    let mut out = ChatOutcome { index, ..Default::default() };
    let cancel = ctx.cancel.clone();
    tokio::select! {
        r = steps(ctx, index, messages, intended_start, &mut out) => {
            if let Err(f) = r {
                out.failure = Some(f);
            }
        }
        _ = cancel.cancelled() => out.cancelled = true,
    }
    out
}

async fn steps(
    ctx: &ChatContext,
    index: usize,
    messages: &[String],
    intended_start: Instant,
    out: &mut ChatOutcome,
) -> Result<(), ChatFailure> {
    let cw = &ctx.chatwoot;
    let t = Instant::now();
    // A fresh contact per chat: an inbox with lock_to_single_conversation would otherwise merge chats.
    let identifier = format!("broker-ops-smoke-{}-{index}", ctx.run_id);
    let contact = cw
        .create_contact(&identifier, &format!("Smoke test {index}"))
        .await
        .map_err(|e| setup(chatwoot_failure("contact", &e)))?;
    out.phases.push((Phase::Contact, t.elapsed()));
    let t = Instant::now();
    let conv =
        cw.create_conversation(&contact.source_id).await.map_err(|e| setup(chatwoot_failure("conversation", &e)))?;
    out.phases.push((Phase::Conversation, t.elapsed()));
    out.conversation_id = Some(conv.id);
    let mut sub = match (ctx.transport, &ctx.ably) {
        (Transport::Sse, Some((base, key))) => {
            let channel = ctx.contracts.channel_of(&conv.id.to_string());
            let s = realtime::subscribe(ctx.sse_http.clone(), base.clone(), key.clone(), channel, ctx.timeout)
                .await
                .map_err(|e| {
                    setup(match &e {
                        realtime::RealtimeError::Refused { status, code, .. } => {
                            fail(format!("realtime: HTTP {status} ({code})"), e.to_string())
                        }
                        realtime::RealtimeError::Connect { .. } => fail("realtime: connection error", e.to_string()),
                    })
                })?;
            Some(s)
        }
        _ => None,
    };
    let mut dash = match (&sub, &ctx.ably, &ctx.extras) {
        (Some(_), Some((base, key)), Some(ably)) => Some(dashboard(ctx, base, key, ably, conv.id, index).await?),
        _ => None,
    };
    for (turn, text) in messages.iter().enumerate() {
        if let Some(d) = &mut dash {
            for e in [Extra::TypingStart, Extra::TypingStop] {
                extra(d, ctx, e, turn, None, out).await?;
            }
        }
        let sent = Instant::now();
        // The echo id marks the message as test traffic for `sla report` (contracts.synthetic_prefix).
        let echo = format!("{}smoke-{}-{index}-{turn}", ctx.contracts.synthetic_prefix, ctx.run_id);
        let msg = cw.post_message(&contact.source_id, conv.id, text, Some(&echo)).await.map_err(|e| {
            let f = chatwoot_failure("post", &e);
            if turn == 0 { setup(f) } else { f }
        })?;
        out.phases.push((Phase::PostAck, sent.elapsed()));
        let (replied_at, reply_id) = match &mut sub {
            Some(s) => await_realtime(s, &ctx.contracts, msg.id, sent, ctx.reply_timeout, out).await?,
            None => (await_poll(ctx, &contact.source_id, conv.id, msg.id, sent).await?, None),
        };
        out.phases.push((Phase::Reply, replied_at.duration_since(sent)));
        if turn == 0 {
            out.corrected_first_reply = Some(replied_at.duration_since(intended_start));
        }
        if let Some(d) = &mut dash {
            extra(d, ctx, Extra::Read, turn, reply_id, out).await?;
        }
    }
    if let Some(d) = &mut dash {
        d.drain_presence(&mut out.presence);
    }
    Ok(())
}

/// One typing or read event through the dashboard, its delivery time recorded.
async fn extra(
    d: &mut Dashboard,
    ctx: &ChatContext,
    e: Extra,
    turn: usize,
    about: Option<u64>,
    out: &mut ChatOutcome,
) -> Result<(), ChatFailure> {
    let took =
        d.deliver(&ctx.contracts, e, turn, about, &mut out.presence).await.map_err(|(k, detail)| fail(k, detail))?;
    out.phases.push((if e == Extra::Read { Phase::Read } else { Phase::Typing }, took));
    Ok(())
}

/// The broker's dashboard for a chat: a second subscriber on its channel and a publisher.
async fn dashboard(
    ctx: &ChatContext,
    base: &url::Url,
    key: &AblyKey,
    ably: &crate::ably::AblyClient,
    conversation: u64,
    index: usize,
) -> Result<Dashboard, ChatFailure> {
    let channel = ctx.contracts.channel_of(&conversation.to_string());
    let sub = realtime::subscribe(ctx.sse_http.clone(), base.clone(), key.clone(), channel.clone(), ctx.timeout)
        .await
        .map_err(|e| setup(fail("dashboard: subscribe failed", e.to_string())))?;
    Ok(Dashboard {
        ably: ably.clone(),
        sub,
        channel,
        conversation,
        id_prefix: format!("{}smoke-{}-{index}", ctx.contracts.synthetic_prefix, ctx.run_id),
        wait: ctx.reply_timeout,
    })
}

fn data_u64(m: &Message, field: &str) -> Option<u64> {
    let d = m.decoded_data();
    match d.get(field) {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    }
}

/// Waits for the AI event that answers our message (its reply field names it; under
/// `first-after`, the first AI event after it), noting the echo of our own user event and the
/// SLA events on the way.
async fn await_realtime(
    sub: &mut Subscription,
    contracts: &Contracts,
    msg_id: u64,
    sent: Instant,
    reply_timeout: Duration,
    out: &mut ChatOutcome,
) -> Result<(Instant, Option<u64>), ChatFailure> {
    let deadline = tokio::time::Instant::from_std(sent + reply_timeout);
    // Sent → Ably's stamp on the echo of our message (the way there, plus any clock skew).
    let mut to_echo = None;
    loop {
        let ev = tokio::time::timeout_at(deadline, sub.rx.recv()).await.map_err(|_| {
            let within = crate::duration::format_duration(reply_timeout);
            fail("no reply", format!("no {} within {within}", contracts.event_ai))
        })?;
        match ev {
            None => return Err(fail("realtime: stream ended", "the Ably SSE stream ended before the reply")),
            Some(RtEvent::Error(e)) => return Err(fail("realtime: stream error", e)),
            Some(RtEvent::Presence(..)) => {}
            Some(RtEvent::Message(m, at)) => {
                let kind = contracts.event_kind(m.name.as_deref().unwrap_or_default());
                let about_ours = || data_u64(&m, "messageId") == Some(msg_id);
                match kind {
                    Some(EventKind::Ai) if answers(contracts, &m, msg_id) => {
                        if let (Some(stamp), Some(there)) = (m.timestamp, to_echo) {
                            let reply_ms = at.duration_since(sent).as_secs_f64() * 1000.0;
                            out.path_ms.push((there + unix_ms_at(at) - stamp as f64, reply_ms));
                        }
                        return Ok((at, data_u64(&m, "messageId")));
                    }
                    Some(EventKind::User) if about_ours() => {
                        if let Some(stamp) = m.timestamp {
                            to_echo = Some(stamp as f64 - unix_ms_at(sent));
                        }
                        out.phases.push((Phase::Echo, at.duration_since(sent)))
                    }
                    Some(EventKind::SlaWarning) if about_ours() => out.warnings += 1,
                    Some(EventKind::SlaViolation) if about_ours() => out.violations += 1,
                    _ => {}
                }
            }
        }
    }
}

/// The wall-clock time (ms since the epoch) of the monotonic instant `at`, read against both
/// clocks now: the arrival was stamped on the monotonic clock, Ably's `timestamp` is wall time.
fn unix_ms_at(at: Instant) -> f64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    (now.saturating_sub(at.elapsed())).as_secs_f64() * 1000.0
}

/// Whether an AI event answers message `msg_id`: by the reply field, or (first-after) any AI
/// event after the message was posted.
fn answers(contracts: &Contracts, m: &Message, msg_id: u64) -> bool {
    match contracts.reply.field() {
        Some(field) => data_u64(m, field) == Some(msg_id),
        None => true,
    }
}

/// Polls the public API for the first outgoing message newer than ours.
async fn await_poll(
    ctx: &ChatContext,
    contact: &str,
    conv: u64,
    msg_id: u64,
    sent: Instant,
) -> Result<Instant, ChatFailure> {
    let deadline = sent + ctx.reply_timeout;
    loop {
        let list = ctx.chatwoot.list_messages(contact, conv).await.map_err(|e| chatwoot_failure("poll", &e))?;
        let now = Instant::now();
        if list.iter().any(|m| m.message_type == MESSAGE_OUTGOING && m.id > msg_id) {
            return Ok(now);
        }
        if now + ctx.poll_interval > deadline {
            return Err(fail(
                "no reply",
                format!("no outgoing message within {}", crate::duration::format_duration(ctx.reply_timeout)),
            ));
        }
        tokio::time::sleep(ctx.poll_interval).await;
    }
}
