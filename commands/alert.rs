//! `broker-ops alert send | test | outbox | flush`: arguments to an alert and options, one
//! library call, the report.

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

use broker_ops::alert::{self, Alert, AlertSource, Options, RetryPolicy, Severity, check_link};
use broker_ops::duration::{parse_duration, parse_positive_duration};
use broker_ops::exit::Exit;

use crate::Ctx;

#[derive(Debug, Subcommand)]
pub enum AlertCommand {
    /// Send an alert: once per incident, a reminder after --repeat-interval, one resolved notice.
    Send(SendArgs),
    /// Send a clearly marked test alert through every configured channel and report each.
    Test(TestArgs),
    /// List the notices waiting in the outbox, oldest first.
    Outbox(StateArgs),
    /// Deliver the notices waiting in the outbox, oldest first.
    Flush(FlushArgs),
}

#[derive(Debug, Args)]
pub struct StateArgs {
    /// Where state lives when REDIS_URL is unset or Redis does not answer
    /// [default: $BROKER_OPS_STATE_DIR, else $XDG_STATE_HOME/broker-ops, else ~/.local/state/broker-ops].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DeliveryArgs {
    /// How long one delivery may keep retrying (backoff, Retry-After) before it is queued.
    #[arg(long, value_name = "DUR", default_value = "30s", value_parser = parse_positive_duration)]
    pub retry_for: Duration,
    /// Attempts per delivery, the first included.
    #[arg(long, value_name = "N", default_value = "4")]
    pub attempts: NonZeroU32,
}

#[derive(Debug, Args)]
pub struct SendArgs {
    /// info, warning, critical, or resolved (closes the incident of the same dedup key).
    #[arg(long, value_enum)]
    pub severity: Severity,
    /// One line saying what is wrong (Slack header; cut to Slack's limits, never rejected).
    #[arg(long)]
    pub summary: String,
    /// More text: what was measured, what to look at.
    #[arg(long, default_value = "")]
    pub details: String,
    /// Incident identity [default: a hash of host, source command and summary].
    #[arg(long, value_name = "KEY")]
    pub dedup_key: Option<String>,
    /// A label shown with the alert (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// Runbook URL, http or https (a button in Slack, a link in the mail).
    #[arg(long, value_name = "URL", value_parser = check_link)]
    pub runbook: Option<String>,
    /// The conversation concerned: an id (linked to Chatwoot when CHATWOOT_BASE_URL and
    /// CHATWOOT_ACCOUNT_ID are set) or a URL.
    #[arg(long, value_name = "ID|URL")]
    pub conversation: Option<String>,
    /// The command that raised the alert, shown as its source.
    #[arg(long, value_name = "TEXT", default_value = "broker-ops alert send")]
    pub source_command: String,
    /// An open incident is notified again after this long.
    #[arg(long, value_name = "DUR", default_value = "4h", value_parser = parse_duration)]
    pub repeat_interval: Duration,
    /// Show the decision, the Slack JSON and the email as they would be sent; send nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub delivery: DeliveryArgs,
    #[command(flatten)]
    pub state: StateArgs,
}

#[derive(Debug, Args)]
pub struct TestArgs {
    #[command(flatten)]
    pub delivery: DeliveryArgs,
}

#[derive(Debug, Args)]
pub struct FlushArgs {
    #[command(flatten)]
    pub delivery: DeliveryArgs,
    #[command(flatten)]
    pub state: StateArgs,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

pub async fn run(cmd: AlertCommand, ctx: &Ctx) -> anyhow::Result<i32> {
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
            if a.dry_run {
                // A dry run shows the decision from the state when it can be read, and still
                // shows the renderings when it cannot.
                let mut store = alert::open_store(c, a.state.state_dir.as_deref()).await.ok();
                ctx.render(&alert::dry_run(store.as_mut().map(|(s, _)| s), alert, &opts).await?)?;
                return Ok(Exit::Ok.code());
            }
            let (mut store, warning) = alert::open_store(c, a.state.state_dir.as_deref()).await?;
            let mut report = alert::send(&mut store, alert, &opts).await?;
            report.warnings.extend(warning);
            report
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
            let (mut store, warning) = alert::open_store(c, s.state_dir.as_deref()).await?;
            let mut report = alert::outbox(&mut store).await?;
            report.warnings.extend(warning);
            ctx.render(&report)?;
            return Ok(Exit::Ok.code());
        }
        AlertCommand::Flush(a) => {
            let opts = options(ctx, &a.delivery, DEFAULT_REPEAT)?;
            let (mut store, warning) = alert::open_store(c, a.state.state_dir.as_deref()).await?;
            let mut report = alert::flush(&mut store, &opts).await?;
            report.warnings.extend(warning);
            let waiting = !report.outbox.is_empty();
            ctx.render(&report)?;
            return Ok(if waiting || report.undelivered() { Exit::Failed } else { Exit::Ok }.code());
        }
    };
    ctx.render(&report)?;
    Ok(if report.undelivered() { Exit::Failed } else { Exit::Ok }.code())
}

const DEFAULT_REPEAT: Duration = Duration::from_secs(4 * 3600);

fn options(ctx: &Ctx, d: &DeliveryArgs, repeat_interval: Duration) -> anyhow::Result<Options> {
    let c = &ctx.config;
    let retry = RetryPolicy { budget: d.retry_for, attempts: d.attempts.get(), ..RetryPolicy::default() };
    Ok(Options { channels: alert::channels(c)?, repeat_interval, retry, timeout: c.timeout.value })
}
