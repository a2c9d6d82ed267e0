//! Slack: the Block Kit message, and delivery through an incoming webhook or `chat.postMessage`.
//!
//! Incoming webhooks answer `ok` and nothing else, so a message sent through one cannot be
//! threaded onto later: reminders and resolved notices arrive as new messages that name the
//! incident. With a bot token (`SLACK_BOT_TOKEN` + `SLACK_CHANNEL`) Slack returns the message's
//! `ts`, which the incident keeps, and every later notice is a reply in that thread.

use std::ops::ControlFlow;
use std::time::Duration;

use serde_json::{Value, json};

use super::model::{Severity, truncate};
use super::{Kind, Notice};
use crate::retry::{Attempt, RetryPolicy, Retrying};

// Slack's documented limits (Block Kit reference): header text 150, section text 3000,
// at most 10 fields of 2000, button text 75, button url 3000; `text` is truncated by Slack
// after 40,000 characters, we keep the fallback short.
const HEADER_MAX: usize = 150;
const SECTION_MAX: usize = 3000;
const FIELD_MAX: usize = 2000;
const FIELDS_MAX: usize = 10;
const FALLBACK_MAX: usize = 3000;
const URL_MAX: usize = 3000;

/// Where Slack messages go.
#[derive(Clone)]
pub enum SlackTarget {
    /// An incoming webhook URL (a secret: its path is the credential).
    Webhook { url: String },
    /// `chat.postMessage` with a bot token, which returns the message `ts` for threading.
    Api { base: String, token: String, channel: String },
}

impl std::fmt::Debug for SlackTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.address())
    }
}

impl SlackTarget {
    /// The address as it may be shown: never the webhook path nor the token.
    pub fn address(&self) -> String {
        match self {
            SlackTarget::Webhook { url } => crate::redact::secret_path_url(url),
            SlackTarget::Api { base, channel, .. } => {
                format!("{}/chat.postMessage (channel {channel})", base.trim_end_matches('/'))
            }
        }
    }
}

/// Slack-escapes text for mrkdwn and plain_text (`&`, `<`, `>` are control characters).
fn esc(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn plain(text: &str, max: usize) -> Value {
    json!({"type": "plain_text", "text": truncate(text, max), "emoji": true})
}

fn field(title: &str, value: &str) -> Value {
    json!({"type": "mrkdwn", "text": truncate(&format!("*{title}*\n{}", esc(value)), FIELD_MAX)})
}

/// The message body for a notice: a plain `text` fallback (notifications, old clients) and
/// Block Kit blocks inside an attachment so that the severity colour shows.
pub fn render(notice: &Notice) -> Value {
    let a = &notice.alert;
    let title = format!("{} {}: {}", notice.prefix(), a.severity.upper(), a.summary).trim_start().to_string();
    let mut blocks = vec![json!({"type": "header", "text": plain(&title, HEADER_MAX)})];
    if !a.details.trim().is_empty() {
        blocks.push(
            json!({"type": "section", "text": {"type": "mrkdwn", "text": truncate(&esc(&a.details), SECTION_MAX)}}),
        );
    }
    let mut fields = vec![
        field("Source", &format!("{} · {}", a.source.host, a.source.command)),
        field("Dedup key", &a.dedup_key),
        field("Opened", &notice.opened_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
    ];
    if notice.kind == Kind::Resolved {
        let lasted = (notice.at - notice.opened_at).to_std().unwrap_or_default();
        fields.push(field("Lasted", &crate::duration::format_duration(lasted)));
    }
    for (k, v) in &a.labels {
        fields.push(field(k, v));
    }
    fields.truncate(FIELDS_MAX);
    blocks.push(json!({"type": "section", "fields": fields}));
    let buttons: Vec<Value> = [("Runbook", &a.links.runbook), ("Conversation", &a.links.conversation)]
        .into_iter()
        .filter_map(|(label, url)| url.as_ref().filter(|u| u.len() <= URL_MAX).map(|u| (label, u)))
        .map(|(label, url)| json!({"type": "button", "text": plain(label, 75), "url": url}))
        .collect();
    if !buttons.is_empty() {
        blocks.push(json!({"type": "actions", "elements": buttons}));
    }
    let context = format!("broker-ops {} · {} · incident {}", crate::VERSION, notice.kind.as_str(), notice.incident_id);
    blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": esc(&context)}]}));
    let fallback = format!("{} {}: {} ({})", notice.prefix(), a.severity.upper(), esc(&a.summary), a.dedup_key)
        .trim_start()
        .to_string();
    json!({
        "text": truncate(&fallback, FALLBACK_MAX),
        "attachments": [{"color": a.severity.colour(), "fallback": truncate(&fallback, FALLBACK_MAX), "blocks": blocks}],
    })
}

/// What Slack said to a successful post.
#[derive(Debug, Clone, Default)]
pub struct Posted {
    /// The message ts (`chat.postMessage` only).
    pub ts: Option<String>,
    pub attempts: u32,
}

/// Posts `payload`, adding the channel and thread for the API target. Retries 429 (after
/// `Retry-After`), 5xx, time-outs and connection failures; any other answer is final.
pub async fn post(
    client: &reqwest::Client,
    target: &SlackTarget,
    payload: &Value,
    thread_ts: Option<&str>,
    broadcast: bool,
    policy: &RetryPolicy,
) -> Result<Posted, super::DeliveryError> {
    let (url, body) = match target {
        SlackTarget::Webhook { url } => (url.clone(), payload.clone()),
        SlackTarget::Api { base, channel, .. } => {
            let mut body = payload.clone();
            body["channel"] = json!(channel);
            if let Some(ts) = thread_ts {
                body["thread_ts"] = json!(ts);
                body["reply_broadcast"] = json!(broadcast);
            }
            (format!("{}/chat.postMessage", base.trim_end_matches('/')), body)
        }
    };
    let address = target.address();
    let mut retrying = Retrying::new(policy);
    loop {
        let mut req = client.post(&url).json(&body);
        if let SlackTarget::Api { token, .. } = target {
            req = req.bearer_auth(token);
        }
        let outcome = match req.send().await {
            Ok(resp) => classify(resp, target).await,
            // describe() reads the error's causes, not reqwest's own text, which holds the URL (a secret).
            Err(e) => Attempt::Transient(crate::http::describe(&e)),
        };
        if let ControlFlow::Break(result) = retrying.settle(outcome).await {
            let attempts = retrying.attempts();
            return result
                .map(|ts| Posted { ts, attempts })
                .map_err(|f| f.into_error("slack", "POST message", &address));
        }
    }
}

async fn classify(resp: reqwest::Response, target: &SlackTarget) -> Attempt<Option<String>> {
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let body = resp.text().await.unwrap_or_default();
    let said = truncate(body.trim(), 200);
    if status.as_u16() == 429 {
        return Attempt::RetryAfter(retry_after.unwrap_or(Duration::from_secs(1)), format!("429 {said}"));
    }
    if status.is_server_error() {
        return Attempt::Transient(format!("{} {said}", status.as_u16()));
    }
    if !status.is_success() {
        return Attempt::Rejected(format!("{} {said}", status.as_u16()));
    }
    match target {
        SlackTarget::Webhook { .. } => Attempt::Done(None),
        SlackTarget::Api { .. } => {
            let doc: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            if doc["ok"].as_bool() == Some(true) {
                Attempt::Done(doc["ts"].as_str().map(str::to_string))
            } else if doc["error"].as_str() == Some("ratelimited") {
                Attempt::RetryAfter(retry_after.unwrap_or(Duration::from_secs(1)), "ratelimited".into())
            } else {
                Attempt::Rejected(format!("{} {}", status.as_u16(), doc["error"].as_str().unwrap_or(&said)))
            }
        }
    }
}

/// Whether a notice for this kind should ask Slack to broadcast the thread reply to the channel.
pub fn broadcast(kind: Kind, severity: Severity) -> bool {
    kind == Kind::Resolved || severity == Severity::Critical
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::model::{Alert, AlertSource};

    fn notice(summary: &str, details: &str) -> Notice {
        let mut a = Alert::new(
            Severity::Critical,
            summary,
            AlertSource { host: "h".into(), command: "c".into() },
            Some("k".into()),
        );
        a.details = details.into();
        a.links.runbook = Some("https://runbook.example/ably".into());
        let at = chrono::Utc::now();
        Notice { alert: a, kind: Kind::Opened, incident_id: "i-1".into(), opened_at: at, at, test: false }
    }

    #[test]
    fn long_texts_are_cut_to_slack_limits_with_an_ellipsis() {
        let p = render(&notice(&"s".repeat(500), &"d".repeat(5000)));
        let blocks = p["attachments"][0]["blocks"].as_array().unwrap();
        let header = blocks[0]["text"]["text"].as_str().unwrap();
        assert_eq!(header.chars().count(), HEADER_MAX);
        assert!(header.ends_with('…'));
        let details = blocks[1]["text"]["text"].as_str().unwrap();
        assert_eq!(details.chars().count(), SECTION_MAX);
        assert!(p["text"].as_str().unwrap().chars().count() <= FALLBACK_MAX);
    }

    #[test]
    fn control_characters_are_escaped_and_colour_follows_severity() {
        let p = render(&notice("a <b> & c", ""));
        assert!(p["text"].as_str().unwrap().contains("a &lt;b&gt; &amp; c"));
        assert_eq!(p["attachments"][0]["color"], "#d00000");
        let blocks = p["attachments"][0]["blocks"].as_array().unwrap();
        assert!(blocks.iter().any(|b| b["type"] == "actions"));
    }
}
