//! One notice's way out: rendered for every configured channel, delivered with its retries,
//! and the report line of each delivery.

use super::report::{DeliveryResult, Outcome};
use super::state::Delivery;
use super::{DeliveryError, Kind, Notice, Options, email, slack};

/// The notice rendered for every configured channel.
pub(super) fn render_all(notice: &Notice, n: u32, thread_ts: Option<String>, opts: &Options) -> Vec<Delivery> {
    let mut out = Vec::new();
    if opts.channels.slack.is_some() {
        let broadcast = slack::broadcast(notice.kind, notice.alert.severity);
        out.push(Delivery::Slack { payload: slack::render(notice), thread_ts, broadcast });
    }
    if let Some(target) = &opts.channels.email {
        out.push(Delivery::Email { mail: email::render(notice, target, n) });
    }
    out
}

/// One delivery with its retries: the attempts it took and, for Slack's API, the message ts.
pub(super) async fn attempt(delivery: &Delivery, opts: &Options) -> Result<(u32, Option<String>), DeliveryError> {
    let unconfigured = |dependency: &'static str| DeliveryError {
        dependency,
        operation: "deliver",
        address: String::new(),
        reason: format!("{dependency} is not configured in this run"),
        queueable: true,
        attempts: 0,
    };
    match delivery {
        Delivery::Slack { payload, thread_ts, broadcast } => {
            let target = opts.channels.slack.as_ref().ok_or_else(|| unconfigured("slack"))?;
            let posted =
                slack::post(&opts.http(), target, payload, thread_ts.as_deref(), *broadcast, &opts.retry).await?;
            Ok((posted.attempts, posted.ts))
        }
        Delivery::Email { mail } => {
            let target = opts.channels.email.as_ref().ok_or_else(|| unconfigured("email"))?;
            let attempts = email::send(target, mail, &opts.retry).await?;
            Ok((attempts, None))
        }
        // Decided by `flush_locked`, never delivered as such.
        Delivery::Alert { .. } => Err(unconfigured("alert")),
    }
}

pub(super) fn address_of(delivery: &Delivery, opts: &Options) -> String {
    match delivery {
        Delivery::Slack { .. } => {
            opts.channels.slack.as_ref().map_or("(not configured in this run)".into(), |t| t.address())
        }
        Delivery::Email { .. } => {
            opts.channels.email.as_ref().map_or("(not configured in this run)".into(), |t| t.address())
        }
        Delivery::Alert { .. } => "the alert state".to_string(),
    }
}

/// The report line for one delivery; `on_failure` says what a failure counts as.
pub(super) fn line(
    delivery: &Delivery,
    opts: &Options,
    (kind, dedup_key, from_outbox): (Kind, &str, bool),
    result: &Result<(u32, Option<String>), DeliveryError>,
    on_failure: fn(&DeliveryError) -> Outcome,
) -> DeliveryResult {
    let (outcome, attempts, detail) = match result {
        Ok((attempts, _)) => (Outcome::Delivered, *attempts, String::new()),
        Err(e) => (on_failure(e), e.attempts, e.to_string()),
    };
    DeliveryResult {
        channel: delivery.channel(),
        address: address_of(delivery, opts),
        kind,
        dedup_key: dedup_key.to_string(),
        outcome,
        attempts,
        detail,
        from_outbox,
    }
}

pub(super) fn queued_or_rejected(e: &DeliveryError) -> Outcome {
    if e.queueable { Outcome::Queued } else { Outcome::Rejected }
}
