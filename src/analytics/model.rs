//! The report's shape (JSON schema: docs/schemas/sla-report.schema.json).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::tally::{Acc, Tally};
use super::{ReportRequest, Source};
use crate::contracts::Contracts;
use crate::histogram::LatencyHistogram;
use crate::histogram::r3;

pub const SCHEMA_VERSION: u32 = 1;

/// Reply-time figures in milliseconds; the percentiles are `null` when nothing was answered.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReplyStats {
    pub count: u64,
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
}

impl ReplyStats {
    pub fn of(h: &LatencyHistogram) -> Self {
        let p = |q: f64| (!h.is_empty()).then(|| r3(h.percentile_ms(q)));
        let max = (!h.is_empty()).then(|| r3(h.max_ms()));
        ReplyStats { count: h.count(), p50: p(50.0), p90: p(90.0), p95: p(95.0), p99: p(99.0), max }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct OverSlo {
    pub count: u64,
    /// Of the answered messages; 0 when none were.
    pub rate: f64,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct SlaEvents {
    pub warnings: u64,
    pub violations: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Bucket {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub messages: u64,
    pub replies: u64,
    pub reply_ms: ReplyStats,
    pub unanswered: u64,
    pub pending: u64,
    pub over_slo: OverSlo,
    pub sla_events: SlaEvents,
}

impl Bucket {
    fn of(a: &Acc, (start, end): (DateTime<Utc>, DateTime<Utc>)) -> Self {
        let c = &a.counts;
        Bucket {
            start,
            end,
            messages: c.messages,
            replies: c.replies,
            reply_ms: ReplyStats::of(&a.latency),
            unanswered: c.unanswered,
            pending: c.pending,
            over_slo: over(c.over_slo, a.latency.count()),
            sla_events: SlaEvents { warnings: c.warnings, violations: c.violations },
        }
    }
}

fn over(count: u64, answered: u64) -> OverSlo {
    let rate = if answered == 0 { 0.0 } else { count as f64 / answered as f64 };
    OverSlo { count, rate: (rate * 1e6).round() / 1e6 }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WindowOut {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub by_seconds: f64,
    pub buckets: usize,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Conversations {
    pub active_now: u64,
    pub in_window: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Excluded {
    /// What marks test traffic (contracts.synthetic_prefix); `null` when it was included
    /// (`--include-test-traffic`).
    pub prefix: Option<String>,
    pub conversations: u64,
    pub active_now: u64,
    pub messages: u64,
    pub replies: u64,
    /// Re-sent copies (`events replay --to ably`) left out of every figure.
    pub replayed_copies: u64,
    /// Typing and read events of test traffic.
    pub extras: u64,
}

/// Typing indicators and read receipts of customers' conversations in the window: counted
/// apart, never as messages or replies.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Extras {
    pub typing_start: u64,
    pub typing_stop: u64,
    pub read: u64,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Malformed {
    pub messages_without_id: u64,
    pub replies_without_reply_field: u64,
    pub duplicate_message_ids: u64,
    pub unreadable_entries: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WorstOut {
    pub conversation: String,
    pub slowest_ms: Option<f64>,
    pub unanswered: u64,
    pub over_slo: u64,
    pub messages: u64,
    pub link: Option<String>,
}

/// Where a conversation is seen in Chatwoot, when its address and account are configured.
#[derive(Debug, Clone, Default)]
pub struct Links {
    base: Option<String>,
}

impl Links {
    pub fn from_config(c: &crate::config::Config) -> Self {
        let base = match (&c.chatwoot_base_url, &c.chatwoot_account_id) {
            (Some(u), Some(a)) => Some(format!(
                "{}/app/accounts/{}/conversations/",
                crate::redact::url(u.value.as_str()).trim_end_matches('/'),
                a.value
            )),
            _ => None,
        };
        Links { base }
    }

    fn of(&self, conversation: &str) -> Option<String> {
        let id_ok = !conversation.is_empty() && conversation.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        self.base.as_ref().filter(|_| id_ok).map(|b| format!("{b}{conversation}"))
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SlaReport {
    pub schema_version: u32,
    pub source: Source,
    pub window: WindowOut,
    pub slo_ms: f64,
    pub reply_timeout_ms: f64,
    pub active_window_ms: f64,
    /// The reply field, or `first-after` (weaker: docs/sla-report.md).
    pub reply_match: String,
    pub reply_ms: ReplyStats,
    pub messages: u64,
    pub replies: u64,
    pub unanswered: u64,
    pub pending: u64,
    pub unpaired_replies: u64,
    pub over_slo: OverSlo,
    pub sla_events: SlaEvents,
    pub extras: Extras,
    pub conversations: Conversations,
    pub excluded: Excluded,
    pub malformed: Malformed,
    pub worst: Vec<WorstOut>,
    pub buckets: Vec<Bucket>,
    /// Said when the window holds no events.
    pub note: Option<String>,
    pub elapsed_ms: f64,
    /// The merged histogram of the whole window (not serialized: for the chart and Markdown).
    #[serde(skip)]
    pub latency: LatencyHistogram,
}

impl SlaReport {
    pub fn build(
        req: &ReportRequest,
        c: &Contracts,
        source: Source,
        t: Tally,
        (active, active_test): (u64, u64),
        links: &Links,
        elapsed: Duration,
    ) -> Result<Self, String> {
        let w = &req.window;
        let total = t.total()?;
        let tc = &total.counts;
        let ex = &t.excluded.counts;
        let empty = tc.messages + tc.replies + tc.warnings + tc.violations + tc.keyless_messages + tc.keyless_replies
            == 0
            && ex.messages + ex.replies == 0;
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        Ok(SlaReport {
            schema_version: SCHEMA_VERSION,
            source,
            window: WindowOut { since: w.since, until: w.until, by_seconds: w.by.as_secs_f64(), buckets: w.buckets() },
            slo_ms: ms(req.slo),
            reply_timeout_ms: ms(req.reply_timeout),
            active_window_ms: ms(req.active_window),
            reply_match: c.reply.to_string(),
            reply_ms: ReplyStats::of(&total.latency),
            messages: tc.messages,
            replies: tc.replies,
            unanswered: tc.unanswered,
            pending: tc.pending,
            unpaired_replies: tc.unpaired,
            over_slo: over(tc.over_slo, total.latency.count()),
            sla_events: SlaEvents { warnings: tc.warnings, violations: tc.violations },
            extras: Extras { typing_start: t.extras[0], typing_stop: t.extras[1], read: t.extras[2] },
            conversations: Conversations { active_now: active, in_window: t.conversations },
            excluded: Excluded {
                prefix: req.test_prefix(c).map(str::to_string),
                conversations: t.excluded_conversations,
                active_now: active_test,
                messages: ex.messages,
                replies: ex.replies,
                replayed_copies: t.copies,
                extras: t.excluded_extras,
            },
            malformed: Malformed {
                messages_without_id: tc.keyless_messages + ex.keyless_messages,
                replies_without_reply_field: tc.keyless_replies + ex.keyless_replies,
                duplicate_message_ids: tc.duplicates + ex.duplicates,
                unreadable_entries: t.unreadable,
            },
            worst: t
                .worst
                .iter()
                .map(|x| WorstOut {
                    conversation: x.conversation.clone(),
                    slowest_ms: x.slowest_us.map(|us| r3(us as f64 / 1000.0)),
                    unanswered: x.unanswered,
                    over_slo: x.over_slo,
                    messages: x.messages,
                    link: links.of(&x.conversation),
                })
                .collect(),
            buckets: t.buckets.iter().enumerate().map(|(i, a)| Bucket::of(a, w.bounds(i))).collect(),
            note: empty.then(|| format!("no events between {} and {}", w.since.to_rfc3339(), w.until.to_rfc3339())),
            elapsed_ms: r3(ms(elapsed)),
            latency: total.latency,
        })
    }
}
