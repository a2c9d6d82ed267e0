//! What follows a rollback: a notice through the alert capability (severity info, its own
//! dedup key per flag version, so every rollback is told once and an undelivered notice waits
//! in the outbox), and on request a short smoke on the polling transport proving that the
//! fallback conversations now depend on answers.

use std::time::Duration;

use super::ChangeReport;
use crate::alert::{self, Alert, AlertReport, AlertSource, Options, RetryPolicy, Severity};
use crate::config::Config;
use crate::sla::{self, Schedule, SmokeReport, Target, Transport};

/// The notice of a change; `Ok(None)` when no alert channel is configured.
pub async fn notify(config: &Config, change: &ChangeReport, command: &str) -> Result<Option<AlertReport>, String> {
    let opts = Options::from_config(config, Duration::from_secs(4 * 3600), RetryPolicy::default())
        .map_err(|e| e.to_string())?;
    if opts.channels.is_empty() {
        return Ok(None);
    }
    let (a, b) = (&change.after, &change.before);
    let summary = format!(
        "{} {}: {} -> {} by {}",
        a.name,
        change.action.as_str(),
        if b.enabled { format!("on at {} %", b.percent) } else { "off".into() },
        if a.enabled { format!("on at {} %", a.percent) } else { "off: every conversation polls".into() },
        a.updated_by
    );
    let key = format!("broker-ops-rollout-{}-v{}", a.name, a.version);
    let mut notice = Alert::new(Severity::Info, summary, AlertSource::this_host(command.to_string()), Some(key));
    notice.details = format!("Reason: {}. Version {} -> {}.", a.reason, b.version, a.version);
    let (mut store, _) = alert::open_store(config, None).await.map_err(|e| e.to_string())?;
    alert::send(&mut store, notice, &opts).await.map(Some).map_err(|e| e.to_string())
}

/// Three chats on the polling transport against the configured Chatwoot: does the fallback
/// answer?
pub async fn verify_polling(config: &Config, command: &str) -> Result<SmokeReport, String> {
    smoke(config, command, Transport::Poll).await
}

/// Three smoke chats on `transport` against the configured target, the default thresholds.
pub async fn smoke(config: &Config, command: &str, transport: Transport) -> Result<SmokeReport, String> {
    let target = Target::from_config(config).map_err(|e| e.to_string())?;
    let opts = sla::SmokeOptions {
        cleanup_allowed: true,
        target,
        chats: 3,
        schedule: Schedule::Closed { concurrency: 3 },
        turns: 1,
        scenario: Default::default(),
        transport,
        reply_timeout: Duration::from_secs(30),
        poll_interval: Duration::from_millis(500),
        thresholds: sla::threshold::defaults(),
        abort_on_fail: false,
        timeout: config.timeout.value,
        contracts: config.contracts.clone(),
        max_driver_lag: Duration::from_millis(5),
        command: command.to_string(),
    };
    sla::smoke(opts, tokio_util::sync::CancellationToken::new(), None).await.map_err(|e| e.to_string())
}
