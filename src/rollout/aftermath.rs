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
        extras: false,
        soak: None,
    };
    sla::smoke(opts, tokio_util::sync::CancellationToken::new(), None).await.map_err(|e| e.to_string())
}

/// How one step after the change went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepOutcome {
    Done,
    /// Not delivered now: the notice waits in the outbox.
    Queued,
    /// Nothing to do here (no alert channel configured; no `--verify`).
    Skipped,
    Failed,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Step {
    pub step: &'static str,
    pub outcome: StepOutcome,
    pub detail: String,
}

/// A rollback and every step that followed it: the change, the notice, the check of the
/// fallback. The change stands whatever follows; each step says what became of it.
pub struct RollbackReport {
    pub change: ChangeReport,
    pub steps: Vec<Step>,
}

impl RollbackReport {
    /// Whether every step that ran did what it was for (a queued notice will still go out).
    pub fn passed(&self) -> bool {
        self.steps.iter().all(|s| s.outcome != StepOutcome::Failed)
    }
}

/// The change, then its notice, then (when asked) the polling smoke.
pub async fn after_rollback(
    config: &Config,
    change: ChangeReport,
    command: &str,
    verify: Option<std::time::Duration>,
    watched: Option<Vec<String>>,
) -> RollbackReport {
    let notice = match notify(config, &change, command).await {
        Ok(Some(r)) if r.undelivered() => (StepOutcome::Queued, "not delivered now; it waits in the outbox".into()),
        Ok(Some(_)) => (StepOutcome::Done, "sent through the alert channels".into()),
        Ok(None) => (StepOutcome::Skipped, "no alert channel configured (SLACK_WEBHOOK_URL, SMTP_URL)".into()),
        Err(e) => (StepOutcome::Failed, format!("not sent: {e}")),
    };
    let mut steps = vec![Step { step: "notice", outcome: notice.0, detail: notice.1 }];
    let verified = if verify.is_none() {
        (StepOutcome::Skipped, "not asked (--verify)".to_string())
    } else {
        match verify_polling(config, command).await {
            Ok(r) if r.passed => (
                StepOutcome::Done,
                format!("{} of {} polling chats answered: the fallback works", r.aggregate.ok, r.aggregate.total),
            ),
            Ok(r) => {
                (StepOutcome::Failed, format!("{} of {} polling chats answered", r.aggregate.ok, r.aggregate.total))
            }
            Err(e) => (StepOutcome::Failed, format!("could not run: {e}")),
        }
    };
    steps.push(Step { step: "verify", outcome: verified.0, detail: verified.1 });
    if let Some(limit) = verify {
        steps.push(converge_step(config, watched, limit).await);
    }
    RollbackReport { change, steps }
}

/// The real-time customers seen before the rollback, watched until none holds a subscription.
async fn converge_step(config: &Config, watched: Option<Vec<String>>, limit: std::time::Duration) -> Step {
    use super::observe::Converged;
    let (outcome, detail) = match watched {
        None => (StepOutcome::Skipped, "ABLY_API_KEY not set: customers' subscriptions cannot be watched".into()),
        Some(w) if w.is_empty() => (StepOutcome::Skipped, "no active real-time conversation to watch".into()),
        Some(w) => match super::observe::converge(config, &w, limit).await {
            Ok(Converged::After(d)) => (
                StepOutcome::Done,
                format!(
                    "the {} real-time conversations seen before left real-time within {}",
                    w.len(),
                    crate::duration::format_duration(d)
                ),
            ),
            Ok(Converged::Not(still)) => (
                StepOutcome::Failed,
                format!(
                    "{} of {} conversations still hold a subscription after {}: the app does not follow the flag: {}",
                    still.len(),
                    w.len(),
                    crate::duration::format_duration(limit),
                    still.iter().take(10).cloned().collect::<Vec<_>>().join(", ")
                ),
            ),
            Err(e) => (StepOutcome::Failed, format!("could not watch: {e}")),
        },
    };
    Step { step: "converge", outcome, detail }
}

impl crate::output::Render for RollbackReport {
    fn table(&self, w: &mut dyn std::io::Write, style: crate::output::Style) -> std::io::Result<()> {
        self.change.table(w, style)?;
        for s in &self.steps {
            let outcome = format!("{:?}", s.outcome).to_lowercase();
            writeln!(w, "{}: {outcome}: {}", s.step, crate::output::escape(&s.detail))?;
        }
        Ok(())
    }

    fn json(&self) -> serde_json::Value {
        let mut doc = self.change.json();
        doc["steps"] = serde_json::json!(self.steps);
        doc
    }
}
