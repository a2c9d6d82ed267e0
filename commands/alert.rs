//! `broker-ops alert send | test | outbox | flush`: arguments to an alert and options, one
//! library call, the report.

use std::time::Duration;

use broker_ops::alert::{self, Alert, AlertSource, Operation, Options, RetryPolicy, Severity};
use broker_ops::exit::Outcome;

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
    };
    ctx.render(&report)?;
    Ok(Outcome::passed(!report.undelivered()))
}

const DEFAULT_REPEAT: Duration = Duration::from_secs(4 * 3600);

fn options(ctx: &Ctx, d: &DeliveryArgs, repeat_interval: Duration) -> anyhow::Result<Options> {
    let retry = RetryPolicy { budget: d.retry_for, attempts: d.attempts.get(), ..RetryPolicy::default() };
    Ok(Options::from_config(&ctx.config, repeat_interval, retry)?)
}
