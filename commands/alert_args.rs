//! The arguments of `broker-ops alert`: the command tree and what each flag means.

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

use broker_ops::alert::{Severity, check_link};
use broker_ops::duration::{parse_duration, parse_positive_duration};

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
    /// Acknowledge an open incident (its dedup key or short id): no more reminders; said in its
    /// thread and by mail; an escalation, a new member or the resolution still notify.
    Ack(AckArgs),
    /// Silence rules for planned work: still judged and shown, not notified until it ends.
    Silence(SilenceArgs),
    /// The silences active now and those ended in the last 24 h: who, why, until when.
    Silences(StateArgs),
    /// End a silence now.
    Unsilence(UnsilenceArgs),
    /// Every acknowledgement and silence, newest first.
    History(HistoryArgs),
}

#[derive(Debug, Args)]
pub struct ByArg {
    /// Who does it, for the history [default: BROKER_OPS_ACTOR, else USER@host].
    #[arg(long, value_name = "NAME", value_parser = broker_ops::config::actor_name)]
    pub by: Option<String>,
}

#[derive(Debug, Args)]
pub struct AckArgs {
    /// The incident: its dedup key, or its short id as notices and `alert outbox` show it.
    #[arg(value_name = "INCIDENT")]
    pub incident: String,
    /// Why, or what is being done (shown in the thread and the mail).
    #[arg(long, value_name = "TEXT", default_value = "")]
    pub reason: String,
    #[command(flatten)]
    pub by: ByArg,
    #[command(flatten)]
    pub delivery: DeliveryArgs,
    #[command(flatten)]
    pub state: StateArgs,
}

#[derive(Debug, Args)]
pub struct SilenceArgs {
    /// What to silence: `rule=NAME`, `severity=critical`, `dedup_key=KEY` or any label
    /// (`team=chat`); several must all match.
    #[arg(long = "match", value_name = "KEY=VALUE", required = true)]
    pub matchers: Vec<broker_ops::alert::silence::Matcher>,
    /// How long, from now (at most ALERT_SILENCE_MAX, a week by default).
    #[arg(long = "for", value_name = "DUR", value_parser = parse_positive_duration, conflicts_with = "until")]
    pub for_: Option<Duration>,
    /// Until when (RFC 3339, or relative like `+2h`).
    #[arg(long, value_name = "TIME", required_unless_present = "for_")]
    pub until: Option<String>,
    /// Why (shown with every silenced rule): the planned work, the ticket.
    #[arg(long, value_name = "TEXT", required = true)]
    pub reason: String,
    /// The monitor's rules file the silence is checked against [default: the built-in rules].
    #[arg(long, value_name = "FILE")]
    pub rules: Option<PathBuf>,
    #[command(flatten)]
    pub by: ByArg,
    #[command(flatten)]
    pub state: StateArgs,
}

#[derive(Debug, Args)]
pub struct UnsilenceArgs {
    /// The silence's id, as `alert silences` shows it.
    #[arg(value_name = "ID")]
    pub id: String,
    #[command(flatten)]
    pub by: ByArg,
    #[command(flatten)]
    pub state: StateArgs,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// How many entries, newest first.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub limit: u32,
    #[command(flatten)]
    pub state: StateArgs,
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
