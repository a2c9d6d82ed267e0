//! `broker-ops alert send | test | outbox | flush`: arguments to an alert and options, one
//! library call, the report.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use secrecy::ExposeSecret;

use broker_ops::alert::{self, Alert, AlertSource, Options, RetryPolicy, Severity, Store};
use broker_ops::duration::parse_duration;
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
    #[arg(long, value_name = "DUR", default_value = "30s")]
    pub retry_for: String,
    /// Attempts per delivery, the first included.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub attempts: u32,
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
    /// Runbook URL (a button in Slack, a link in the mail).
    #[arg(long, value_name = "URL")]
    pub runbook: Option<String>,
    /// The conversation concerned: an id (linked to Chatwoot when CHATWOOT_BASE_URL and
    /// CHATWOOT_ACCOUNT_ID are set) or a URL.
    #[arg(long, value_name = "ID|URL")]
    pub conversation: Option<String>,
    /// The command that raised the alert, shown as its source.
    #[arg(long, value_name = "TEXT", default_value = "broker-ops alert send")]
    pub source_command: String,
    /// An open incident is notified again after this long.
    #[arg(long, value_name = "DUR", default_value = "4h")]
    pub repeat_interval: String,
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
    let report = match cmd {
        AlertCommand::Send(a) => {
            let opts = options(ctx, &a.delivery, Some(&a.repeat_interval))?;
            let alert = alert_of(&a, ctx)?;
            if a.dry_run {
                let mut store = open_store(ctx, &a.state).await.ok();
                let report = alert::dry_run(store.as_mut().map(|(s, _)| s), alert, &opts).await?;
                ctx.render(&report)?;
                return Ok(Exit::Ok.code());
            }
            let (mut store, warning) = open_store(ctx, &a.state).await?;
            let mut report = alert::send(&mut store, alert, &opts).await?;
            report.warnings.extend(warning);
            report
        }
        AlertCommand::Test(a) => {
            let opts = options(ctx, &a.delivery, None)?;
            let host = hostname();
            let mut alert = Alert::new(
                Severity::Info,
                "broker-ops test alert: this channel works",
                AlertSource { host, command: "broker-ops alert test".into() },
                Some("broker-ops-test".into()),
            );
            alert.details = "A test sent by `broker-ops alert test`. No action is needed.".into();
            alert::test(alert, &opts).await?
        }
        AlertCommand::Outbox(s) => {
            let (mut store, warning) = open_store(ctx, &s).await?;
            let mut report = alert::outbox(&mut store).await?;
            report.warnings.extend(warning);
            ctx.render(&report)?;
            return Ok(Exit::Ok.code());
        }
        AlertCommand::Flush(a) => {
            let opts = options(ctx, &a.delivery, None)?;
            let (mut store, warning) = open_store(ctx, &a.state).await?;
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

fn options(ctx: &Ctx, d: &DeliveryArgs, repeat: Option<&str>) -> anyhow::Result<Options> {
    let c = &ctx.config;
    let channels = alert::channels(c)?;
    let parse = |flag: &str, v: &str| parse_duration(v).map_err(|e| anyhow::anyhow!("{flag} {v:?}: {e}"));
    let repeat_interval = match repeat {
        Some(r) => parse("--repeat-interval", r)?,
        None => std::time::Duration::from_secs(4 * 3600),
    };
    let retry =
        RetryPolicy { budget: parse("--retry-for", &d.retry_for)?, attempts: d.attempts, ..RetryPolicy::default() };
    Ok(Options { channels, repeat_interval, retry, timeout: c.timeout.value })
}

fn hostname() -> String {
    hostname::get().ok().and_then(|h| h.into_string().ok()).unwrap_or_else(|| "unknown-host".into())
}

fn alert_of(a: &SendArgs, ctx: &Ctx) -> anyhow::Result<Alert> {
    let source = AlertSource { host: hostname(), command: a.source_command.clone() };
    let mut alert = Alert::new(a.severity, a.summary.clone(), source, a.dedup_key.clone());
    alert.details = a.details.clone();
    alert.labels = a.labels.iter().cloned().collect();
    alert.links.runbook = a.runbook.clone();
    if let Some(conv) = &a.conversation {
        let c = &ctx.config;
        if conv.starts_with("http://") || conv.starts_with("https://") {
            alert.links.conversation = Some(conv.clone());
        } else if let (Some(base), Some(account)) = (&c.chatwoot_base_url, &c.chatwoot_account_id) {
            let base = base.value.as_str().trim_end_matches('/');
            alert.links.conversation = Some(format!("{base}/app/accounts/{}/conversations/{conv}", account.value));
        }
        alert.labels.insert("conversation".into(), conv.clone());
    }
    Ok(alert)
}

/// Redis when REDIS_URL is set (falling back to the directory, with a warning, when Redis does
/// not answer); otherwise the state directory.
async fn open_store(ctx: &Ctx, s: &StateArgs) -> anyhow::Result<(Store, Option<String>)> {
    let c = &ctx.config;
    let layers = c.layers();
    let dir = match &s.state_dir {
        Some(d) => d.clone(),
        None => default_state_dir(layers)?,
    };
    let url = c.redis_url.as_ref().map(|u| u.value.expose_secret().to_string());
    let (store, warning) = Store::open(url.as_deref(), &c.redis_key_prefix.value, &dir, c.timeout.value)
        .await
        .with_context(|| format!("opening the alert state in {}", dir.display()))?;
    if let Some(w) = &warning {
        tracing::warn!("{w}");
    }
    Ok((store, warning))
}

fn default_state_dir(layers: &broker_ops::config::Layers) -> anyhow::Result<PathBuf> {
    if let Some(d) = layers.plain("BROKER_OPS_STATE_DIR")? {
        return Ok(PathBuf::from(d.value));
    }
    if let Some(x) = layers.plain("XDG_STATE_HOME")? {
        return Ok(PathBuf::from(x.value).join("broker-ops"));
    }
    match layers.plain("HOME")? {
        Some(h) => Ok(PathBuf::from(h.value).join(".local/state/broker-ops")),
        None => anyhow::bail!("no state directory: set --state-dir, BROKER_OPS_STATE_DIR or HOME"),
    }
}
