//! `broker-ops alert send | test | outbox | flush`: arguments to an alert and options, one
//! library call, the report.

use std::time::Duration;

use broker_ops::actor::Actor;
use broker_ops::alert::{self, Alert, AlertSource, Operation, Options, RetryPolicy, Severity};
use broker_ops::duration::parse_time;
use broker_ops::exit::{Outcome, UsageError};
use broker_ops::monitor::RuleSet;
use broker_ops::monitor::silences::SilenceAsk;

use crate::Ctx;
pub use crate::alert_args::*;

pub async fn run(cmd: AlertCommand, ctx: &Ctx) -> anyhow::Result<Outcome> {
    let c = &ctx.config;
    let report = match cmd {
        AlertCommand::Send(a) => {
            let opts = options(ctx, &a.delivery, a.repeat_interval)?;
            let mut alert = Alert::new(a.severity, a.summary, AlertSource::this_host(a.source_command), a.dedup_key);
            alert.details = a.details;
            alert.labels = a.labels.into_iter().collect();
            alert.links.runbook = a.runbook;
            if let Some(conv) = &a.conversation {
                alert = alert.with_conversation(conv, c).map_err(|e| anyhow::anyhow!("--conversation: {e}"))?;
            }
            let dir = a.state.state_dir.as_deref();
            if a.dry_run {
                ctx.render(&alert::on_state(c, dir, Operation::DryRun(alert, &opts)).await?)?;
                return Ok(Outcome::Done);
            }
            alert::on_state(c, dir, Operation::Send(alert, &opts)).await?
        }
        AlertCommand::Test(a) => {
            let opts = options(ctx, &a.delivery, DEFAULT_REPEAT)?;
            let source = AlertSource::this_host("broker-ops alert test");
            let mut alert = Alert::new(
                Severity::Info,
                "broker-ops test alert: this channel works",
                source,
                Some("broker-ops-test".into()),
            );
            alert.details = "A test sent by `broker-ops alert test`. No action is needed.".into();
            alert::test(alert, &opts).await?
        }
        AlertCommand::Outbox(s) => {
            ctx.render(&alert::on_state(c, s.state_dir.as_deref(), Operation::Outbox).await?)?;
            return Ok(Outcome::Done);
        }
        AlertCommand::Flush(a) => {
            let opts = options(ctx, &a.delivery, DEFAULT_REPEAT)?;
            let report = alert::on_state(c, a.state.state_dir.as_deref(), Operation::Flush(&opts)).await?;
            ctx.render(&report)?;
            return Ok(Outcome::passed(report.outbox.is_empty() && !report.undelivered()));
        }
        on_call_command => return on_call(on_call_command, ctx).await,
    };
    ctx.render(&report)?;
    Ok(Outcome::passed(!report.undelivered()))
}

/// Acks, silences and their history: one library call each.
async fn on_call(cmd: AlertCommand, ctx: &Ctx) -> anyhow::Result<Outcome> {
    let c = &ctx.config;
    let actor = |by: &ByArg| Actor::resolve(c, by.by.as_deref(), ctx.command_line());
    match cmd {
        AlertCommand::Ack(a) => {
            let opts = options(ctx, &a.delivery, DEFAULT_REPEAT)?;
            let dir = a.state.state_dir.as_deref();
            let report = alert::acknowledge(c, dir, &a.incident, &a.reason, &actor(&a.by), &opts).await?;
            ctx.render(&report)?;
            return Ok(Outcome::passed(!report.undelivered()));
        }
        AlertCommand::Silence(a) => {
            let base = c.runbook_base_url.as_ref().map(|s| &s.value);
            let rules = match &a.rules {
                Some(path) => RuleSet::load(path, base).map_err(UsageError)?,
                None => RuleSet::defaults_with(&c.sla, base),
            };
            let now = chrono::Utc::now();
            let ends_at = match (a.for_, &a.until) {
                (Some(d), _) => now + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX),
                (None, Some(t)) => parse_time(t, now).map_err(|e| UsageError(format!("--until: {e}")))?,
                (None, None) => return Err(UsageError("give --for or --until".into()).into()),
            };
            let ask = SilenceAsk {
                matchers: a.matchers,
                ends_at,
                reason: a.reason,
                rules: &rules,
                state_dir: a.state.state_dir.as_deref(),
            };
            ctx.render(&broker_ops::monitor::silences::silence(c, ask, &actor(&a.by)).await?)?;
        }
        AlertCommand::Silences(s) => ctx.render(&alert::silences(c, s.state_dir.as_deref()).await?)?,
        AlertCommand::Unsilence(a) => {
            ctx.render(&alert::unsilence(c, a.state.state_dir.as_deref(), &a.id, &actor(&a.by)).await?)?
        }
        AlertCommand::History(a) => {
            ctx.render(&alert::history(c, a.state.state_dir.as_deref(), a.limit as usize).await?)?
        }
        // `run` handles the delivery commands and hands only these here.
        AlertCommand::Send(_) | AlertCommand::Test(_) | AlertCommand::Outbox(_) | AlertCommand::Flush(_) => {
            unreachable!("dispatched in run")
        }
    }
    Ok(Outcome::Done)
}

const DEFAULT_REPEAT: Duration = Duration::from_secs(4 * 3600);

fn options(ctx: &Ctx, d: &DeliveryArgs, repeat_interval: Duration) -> anyhow::Result<Options> {
    let retry = RetryPolicy { budget: d.retry_for, attempts: d.attempts.get(), ..RetryPolicy::default() };
    Ok(Options::from_config(&ctx.config, repeat_interval, retry)?)
}
