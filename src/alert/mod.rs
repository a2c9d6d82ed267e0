//! Alerts to Slack and email that are sent once per incident, remind after a repeat interval,
//! say when the incident is over, and are never lost: what cannot be delivered waits in a
//! durable outbox for the next run.
//!
//! - [`model`]: the alert itself;
//! - [`decide`]: open, remind, escalate, update, resolve or stay quiet, as a pure function of the state;
//! - [`slack`], [`email`]: rendering and delivery with retries ([`retry`]);
//! - [`state`]: incidents and the outbox in Redis or a state directory; [`named`]: documents and
//!   run locks of other capabilities kept beside them (the monitor's);
//! - `run` (send, send_all, flush, outbox, test, dry run) and `deliver` (one notice's rendering,
//!   delivery and report line);
//! - [`report`]: what a run did, for every output format.

pub mod ack;
pub mod decide;
pub mod email;
pub mod model;
pub mod named;
pub mod report;
pub mod silence;
pub mod silence_render;
pub mod slack;
pub mod state;

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use crate::retry::RetryPolicy;
pub use decide::{Decision, decide};
pub use email::EmailTarget;
pub use model::{Alert, AlertSource, Links, Severity, check_link};
pub use named::{NamedLock, TryLock};
pub use report::{AlertReport, DeliveryResult, Outcome, Preview};
pub use slack::SlackTarget;
pub use state::{Channel, Delivery, Incident, OutboxEntry, StateError, Store};

/// Which notice of an incident this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Opened,
    Reminder,
    Escalated,
    /// More is failing in a grouped alert that is already open.
    Updated,
    /// Someone acknowledged the incident (said in its thread and by mail).
    Acknowledged,
    Resolved,
    Test,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Opened => "opened",
            Kind::Reminder => "reminder",
            Kind::Escalated => "escalated",
            Kind::Updated => "updated",
            Kind::Acknowledged => "acknowledged",
            Kind::Resolved => "resolved",
            Kind::Test => "test",
        }
    }
}

/// One notice about one incident, before it is rendered for a channel.
#[derive(Debug, Clone)]
pub struct Notice {
    pub alert: Alert,
    pub kind: Kind,
    pub incident_id: String,
    pub opened_at: DateTime<Utc>,
    pub at: DateTime<Utc>,
    pub test: bool,
}

impl Notice {
    /// The words before the severity in a Slack header.
    pub fn prefix(&self) -> &'static str {
        match self.kind {
            Kind::Opened => "",
            Kind::Reminder => "Still open:",
            Kind::Escalated => "Escalated:",
            Kind::Updated => "Updated:",
            Kind::Acknowledged => "Acknowledged:",
            Kind::Resolved => "",
            Kind::Test => "[TEST]",
        }
    }

    /// The words after the dedup key in an email subject.
    pub fn subject_marker(&self) -> &'static str {
        match self.kind {
            Kind::Reminder => "still open: ",
            Kind::Escalated => "escalated: ",
            Kind::Updated => "updated: ",
            Kind::Acknowledged => "acknowledged: ",
            Kind::Test => "[TEST] ",
            Kind::Opened | Kind::Resolved => "",
        }
    }
}

/// A delivery that did not succeed, naming the dependency, the operation and the address.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{dependency} {operation}{}: {reason} (after {attempts} attempt(s))", at(address))]
pub struct DeliveryError {
    pub dependency: &'static str,
    pub operation: &'static str,
    pub address: String,
    pub reason: String,
    /// Whether it was worth keeping for a later run (transient) or not (rejected).
    pub queueable: bool,
    pub attempts: u32,
}

/// ` address`, or nothing when there is none (a channel not configured in this run).
fn at(address: &str) -> String {
    if address.is_empty() { String::new() } else { format!(" {address}") }
}

impl crate::retry::Failure {
    pub fn into_error(self, dependency: &'static str, operation: &'static str, address: &str) -> DeliveryError {
        DeliveryError {
            dependency,
            operation,
            address: address.to_string(),
            reason: self.reason,
            queueable: self.queueable,
            attempts: self.attempts,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error(
        "no alert channel is configured: set SLACK_WEBHOOK_URL (or SLACK_BOT_TOKEN and SLACK_CHANNEL), \
         and/or SMTP_URL with ALERT_EMAIL_FROM and ALERT_EMAIL_TO"
    )]
    NoChannel,
    #[error("no state directory: set --state-dir, BROKER_OPS_STATE_DIR or HOME")]
    NoStateDir,
    #[error(transparent)]
    State(#[from] StateError),
    /// Redis is configured and did not answer: a change the other hosts must see is refused
    /// rather than kept on this host alone.
    #[error("{0}; refused: nothing was changed")]
    NotShared(String),
    #[error(transparent)]
    Silence(#[from] silence::SilenceError),
}

impl crate::exit::Classified for AlertError {
    fn kind(&self) -> crate::exit::ErrorKind {
        match self {
            AlertError::Silence(e) => e.kind(),
            _ => crate::exit::ErrorKind::CouldNotRun,
        }
    }
}

/// The alert state for a change every host must see (an ack, a silence): refused when Redis is
/// configured but does not answer, rather than kept in this host's directory.
pub async fn open_shared_store(
    config: &crate::config::Config,
    dir: Option<&std::path::Path>,
) -> Result<Store, AlertError> {
    match open_store(config, dir).await? {
        (store, None) => Ok(store),
        (_, Some(why)) => Err(AlertError::NotShared(why)),
    }
}

/// `alert ack`: the open incident `which` stops reminding, said in its thread and by mail.
pub async fn acknowledge(
    config: &crate::config::Config,
    dir: Option<&std::path::Path>,
    which: &str,
    reason: &str,
    actor: &crate::actor::Actor,
    opts: &Options,
) -> Result<AlertReport, AlertError> {
    let mut store = open_shared_store(config, dir).await?;
    Ok(ack::acknowledge(&mut store, which, reason, actor, opts).await?)
}

/// `alert unsilence`: the silence ends now.
pub async fn unsilence(
    config: &crate::config::Config,
    dir: Option<&std::path::Path>,
    id: &str,
    actor: &crate::actor::Actor,
) -> Result<silence_render::SilenceChanged, AlertError> {
    let mut store = open_shared_store(config, dir).await?;
    let silence = silence::end(&mut store, id, actor).await?;
    Ok(silence_render::SilenceChanged { silence, action: "ended" })
}

/// `alert silences`: active ones and those ended in the last 24 h.
pub async fn silences(
    config: &crate::config::Config,
    dir: Option<&std::path::Path>,
) -> Result<silence_render::SilenceList, AlertError> {
    let (mut store, _) = open_store(config, dir).await?;
    let now = Utc::now();
    let keep = chrono::Duration::from_std(silence::KEPT_AFTER_END).unwrap_or(chrono::Duration::MAX);
    let mut list = silence::silences(&mut store).await?;
    list.retain(|s| s.until() + keep > now);
    Ok(silence_render::SilenceList { silences: list, now })
}

/// `alert history`: the newest `limit` acks and silences first.
pub async fn history(
    config: &crate::config::Config,
    dir: Option<&std::path::Path>,
    limit: usize,
) -> Result<silence_render::History, AlertError> {
    let (mut store, _) = open_store(config, dir).await?;
    let mut h = silence::history(&mut store).await?;
    h.reverse();
    h.truncate(limit);
    Ok(silence_render::History(h))
}

/// The channels alerts go to.
#[derive(Debug, Clone, Default)]
pub struct Channels {
    pub slack: Option<SlackTarget>,
    pub email: Option<EmailTarget>,
}

impl Channels {
    pub fn is_empty(&self) -> bool {
        self.slack.is_none() && self.email.is_none()
    }
}

/// Everything a run needs besides the state store.
#[derive(Debug, Clone)]
pub struct Options {
    pub channels: Channels,
    pub repeat_interval: Duration,
    pub retry: RetryPolicy,
    /// Time-out of each network call.
    pub timeout: Duration,
}

impl Options {
    /// The configured channels and time-out, with this repeat interval and retry policy.
    pub fn from_config(
        config: &crate::config::Config,
        repeat_interval: Duration,
        retry: RetryPolicy,
    ) -> Result<Options, crate::config::ConfigError> {
        Ok(Options { channels: channels(config)?, repeat_interval, retry, timeout: config.timeout.value })
    }

    fn http(&self) -> reqwest::Client {
        crate::http::client(self.timeout)
    }
}

mod deliver;
mod error;
mod lock;
pub(crate) mod run;
pub use run::{dry_run, flush, outbox, send, send_all, test};

/// What an `alert` command does with the alert state.
pub enum Operation<'a> {
    Send(Alert, &'a Options),
    /// The decision and the renderings, nothing sent or written (shown even when the state
    /// cannot be read).
    DryRun(Alert, &'a Options),
    Outbox,
    Flush(&'a Options),
}

/// One operation on the configured alert state (`dir` over the configured directory): the store
/// opened, the operation run, and why the directory was used although Redis was configured
/// carried in the report's warnings.
pub async fn on_state(
    config: &crate::config::Config,
    dir: Option<&std::path::Path>,
    op: Operation<'_>,
) -> Result<AlertReport, AlertError> {
    if let Operation::DryRun(alert, opts) = op {
        let mut store = open_store(config, dir).await.ok();
        return dry_run(store.as_mut().map(|(s, _)| s), alert, opts).await;
    }
    let (mut store, warning) = open_store(config, dir).await?;
    let mut report = match op {
        Operation::Send(alert, opts) => send(&mut store, alert, opts).await?,
        Operation::Flush(opts) => flush(&mut store, opts).await?,
        // (A dry run was answered above.)
        Operation::Outbox | Operation::DryRun(..) => outbox(&mut store).await?,
    };
    report.warnings.extend(warning);
    Ok(report)
}

/// The alert state: Redis when `REDIS_URL` is set (falling back to the state directory, with a
/// warning, when Redis does not answer); otherwise the state directory (`dir`, else the
/// configured one).
pub async fn open_store(
    config: &crate::config::Config,
    dir: Option<&std::path::Path>,
) -> Result<(Store, Option<String>), AlertError> {
    let redis = crate::redis_handle::Redis::from_config(config).await.map_err(|e| e.to_string()).transpose();
    open_store_on(config, dir, redis).await
}

/// The alert state on a Redis connection already opened, or the reason it could not be (a
/// `monitor` run shares its connection with the probes).
pub async fn open_store_on(
    config: &crate::config::Config,
    dir: Option<&std::path::Path>,
    redis: Option<Result<crate::redis_handle::Redis, String>>,
) -> Result<(Store, Option<String>), AlertError> {
    let dir = match dir {
        Some(d) => d.to_path_buf(),
        None => config.state_dir.as_ref().map(|d| d.value.clone()).ok_or(AlertError::NoStateDir)?,
    };
    Ok(Store::open(redis, &dir, config.alert_lock_ttl.value).await?)
}

/// The channels the configuration describes. A half-configured channel (SMTP_URL without its
/// addresses, a bot token without a channel) is an error naming what is missing.
pub fn channels(config: &crate::config::Config) -> Result<Channels, crate::config::ConfigError> {
    use secrecy::ExposeSecret;
    let slack = match (&config.slack_webhook_url, &config.slack_bot_token) {
        (_, Some(token)) => {
            let channel = config.require("SLACK_CHANNEL", &config.slack_channel)?.value.clone();
            let base = config.slack_api_url.value.as_str().trim_end_matches('/').to_string();
            Some(SlackTarget::Api { base, token: token.value.expose_secret().to_string(), channel })
        }
        (Some(url), None) => Some(SlackTarget::Webhook { url: url.value.expose_secret().to_string() }),
        (None, None) => None,
    };
    let invalid = |reason| crate::config::ConfigError::Invalid {
        name: "SMTP_URL",
        source_: config.smtp_url.as_ref().map_or(crate::config::Source::Default, |u| u.source.clone()),
        reason,
    };
    let email = match crate::smtp::Smtp::from_config(config).map_err(invalid)? {
        Some(smtp) => {
            let from = config.require("ALERT_EMAIL_FROM", &config.alert_email_from)?;
            let to = config.require("ALERT_EMAIL_TO", &config.alert_email_to)?;
            Some(EmailTarget::new(smtp, &from.value, &to.value).map_err(invalid)?)
        }
        None => None,
    };
    Ok(Channels { slack, email })
}
