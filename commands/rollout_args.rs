//! `broker-ops rollout`'s arguments.

use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};

use broker_ops::contracts::DEFAULT_FLAG;
use broker_ops::duration::{parse_duration, parse_positive_duration};
use broker_ops::rollout;
use broker_ops::rollout::advance;

#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// The flag: on/off, percentage, since when, active conversations on and off, last changes.
    Status(StatusArgs),
    /// Whether each conversation is on real-time, and why (kill switch, flag off, override, bucket).
    Which(WhichArgs),
    /// Switch the flag on at a percentage.
    Set(SetArgs),
    /// Force one conversation on or off (or clear its override), optionally for a while.
    Override(OverrideArgs),
    /// The audit: every change, who, when, from, to, why.
    History(HistoryArgs),
    /// Switch the flag off: every conversation back to polling. No gate; needs only Postgres.
    Rollback(RollbackArgs),
    /// Move to the next step of the plan, only when every gate passes (soak, replies, P95 within
    /// the SLO, no regression against polling); says which gate failed otherwise (exit 1).
    Advance(AdvanceArgs),
    /// The flag in Unleash's feature import format (percentage, group id, overrides), as JSON.
    Export(ExportArgs),
    /// Whether the app follows the flag: a sample of each cohort's active conversations, each
    /// channel's occupancy asked of Ably (a probe: CRITICAL when polling customers hold
    /// subscriptions, or real-time ones do not, past a tolerance).
    Observe(ObserveArgs),
}

#[derive(Debug, Args)]
pub struct ObserveArgs {
    #[command(flatten)]
    pub flag: FlagArg,
    #[command(flatten)]
    pub observe: ObserveOpts,
}

/// How `rollout observe` (and the `observed` gate of `advance`) looks at the cohorts.
#[derive(Debug, Args)]
pub struct ObserveOpts {
    /// Conversations looked at, at most, split between the cohorts.
    #[arg(long, default_value = "200", value_parser = clap::value_parser!(u16).range(1..=5000))]
    pub sample: u16,
    /// Conversations with an event this recent count as active.
    #[arg(long, default_value = "5m", value_parser = parse_positive_duration, value_name = "DUR")]
    pub active_window: Duration,
    /// Share of sampled polling conversations that may hold a subscriber.
    #[arg(long, default_value = "5%", value_parser = broker_ops::compare::share, value_name = "SHARE")]
    pub tolerance: f64,
    /// Share of sampled real-time conversations that may hold none (customers who closed the tab
    /// within the active window).
    #[arg(long, default_value = "50%", value_parser = broker_ops::compare::share, value_name = "SHARE")]
    pub realtime_tolerance: f64,
    /// A cohort with fewer sampled conversations is not judged (UNKNOWN).
    #[arg(long, default_value = "10", value_name = "N")]
    pub min_sample: usize,
    /// Occupancy requests a second, at most (Ably's HTTP request limit: 50/s on Free, 362/s on
    /// Standard).
    #[arg(long, default_value = "300", value_name = "N", value_parser = parse_rate_per_s)]
    pub max_rate: f64,
}

impl ObserveOpts {
    pub fn request(&self, flag: &str) -> rollout::observe::ObserveRequest {
        rollout::observe::ObserveRequest {
            flag: flag.to_string(),
            sample: self.sample.into(),
            active_window: self.active_window,
            polling_tolerance: self.tolerance,
            realtime_tolerance: self.realtime_tolerance,
            min_sample: self.min_sample,
            max_rate: self.max_rate,
            ..Default::default()
        }
    }
}

/// A gate `advance` may be told to pass without its evidence.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum WaiveArg {
    /// The staging soak report of the plan's first step.
    Staging,
    /// The observation of whether the app follows the flag.
    Observed,
}

impl From<WaiveArg> for advance::Waivable {
    fn from(w: WaiveArg) -> Self {
        match w {
            WaiveArg::Staging => advance::Waivable::Staging,
            WaiveArg::Observed => advance::Waivable::Observed,
        }
    }
}

fn parse_rate_per_s(s: &str) -> Result<f64, String> {
    match s.trim().trim_end_matches("/s").parse::<f64>() {
        Ok(r) if r > 0.0 && r.is_finite() && r <= 10_000.0 => Ok(r),
        _ => Err(format!("invalid rate {s:?}: requests a second, from 1 to 10000")),
    }
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub flag: FlagArg,
    /// Unleash's import format (the only one).
    #[arg(long, required = true)]
    pub unleash: bool,
    /// The Unleash project to import into.
    #[arg(long, default_value = "default")]
    pub project: String,
    /// The Unleash environment the flag's state goes to.
    #[arg(long, default_value = "production")]
    pub environment: String,
}

#[derive(Debug, Args)]
pub struct AdvanceArgs {
    #[command(flatten)]
    pub flag: FlagArg,
    /// The plan's percentages, increasing.
    #[arg(long, default_value = advance::DEFAULT_STEPS)]
    pub steps: String,
    /// The current step must have lasted this long (from the audit).
    #[arg(long, default_value = "24h", value_parser = parse_duration, value_name = "DUR")]
    pub min_soak: Duration,
    /// The cohorts are measured over this window, ending now.
    #[arg(long, default_value = "1h", value_parser = parse_positive_duration, value_name = "DUR")]
    pub window: Duration,
    /// The reply-time objective the real-time cohort's P95 must meet [default: the SLA's slo, 5s].
    #[arg(long, value_parser = parse_positive_duration, value_name = "DUR")]
    pub slo: Option<Duration>,
    /// How much higher the real-time cohort's breach rate may be than polling's (e.g. 1%).
    #[arg(long, default_value = "1%", value_parser = broker_ops::compare::share)]
    pub max_regression: f64,
    /// The real-time cohort needs at least this many replies in the window [default: the SLA's
    /// min_replies, 100].
    #[arg(long)]
    pub min_replies: Option<u64>,
    /// Also require three smoke chats on Ably (SSE) against the configured Chatwoot to pass.
    #[arg(long)]
    pub smoke: bool,
    /// The staging soak (`sla smoke --duration 24h -o json` against staging) the plan's first
    /// step needs.
    #[arg(long, value_name = "FILE")]
    pub staging_report: Option<std::path::PathBuf>,
    /// The staging soak must have run at least this long.
    #[arg(long, default_value = "24h", value_parser = parse_positive_duration, value_name = "DUR")]
    pub min_staging_soak: Duration,
    /// And have ended at most this long ago (older evidence is of another build).
    #[arg(long, default_value = "14d", value_parser = parse_positive_duration, value_name = "DUR")]
    pub max_staging_age: Duration,
    /// Pass this gate without its evidence (repeatable); needs --reason, kept in the audit.
    #[arg(long, value_enum, value_name = "GATE", requires = "reason")]
    pub waive: Vec<WaiveArg>,
    /// Why the waived gates are waived.
    #[arg(long, value_name = "TEXT", value_parser = parse_reason, requires = "waive")]
    pub reason: Option<String>,
    /// The `observed` gate: how the cohorts' occupancy is sampled and judged.
    #[command(flatten)]
    pub observe: ObserveOpts,
    /// Show the gates and their figures; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask (needed without a terminal).
    #[arg(long)]
    pub yes: bool,
}

/// A reason for the audit: something a reader can act on, not empty, not a page long.
fn parse_reason(s: &str) -> Result<String, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("the reason must not be empty: say why, it is kept in the audit".into());
    }
    if t.chars().count() > 1000 {
        return Err("the reason is longer than 1,000 characters".into());
    }
    if t.chars().any(char::is_control) {
        return Err("the reason must be one line without control characters".into());
    }
    Ok(t.to_string())
}

#[derive(Debug, Args, Clone)]
pub struct FlagArg {
    /// The flag.
    #[arg(long, default_value = DEFAULT_FLAG, value_parser = rollout::flag_name)]
    pub flag: String,
}

#[derive(Debug, Args, Clone)]
pub struct ChangeArgs {
    /// Why (kept in the audit; not empty, at most 1,000 characters).
    #[arg(long, value_name = "TEXT", value_parser = parse_reason)]
    pub reason: String,
    /// Do not ask (needed without a terminal).
    #[arg(long)]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub flag: FlagArg,
    /// Conversations with an event this recent count as active.
    #[arg(long, default_value = "15m", value_parser = parse_positive_duration, value_name = "DUR")]
    pub active_window: Duration,
}

#[derive(Debug, Args)]
pub struct WhichArgs {
    #[command(flatten)]
    pub flag: FlagArg,
    /// Conversation ids; `-` reads more from stdin, one a line.
    #[arg(required = true, value_name = "CONVERSATION")]
    pub conversations: Vec<String>,
}

#[derive(Debug, Args)]
pub struct SetArgs {
    #[command(flatten)]
    pub flag: FlagArg,
    /// Percentage of conversations on real-time (0 to 100).
    #[arg(long, allow_negative_numbers = true)]
    pub percent: i64,
    /// Create the flag (off at 0 %) when it does not exist.
    #[arg(long)]
    pub create: bool,
    #[command(flatten)]
    pub change: ChangeArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OverrideValue {
    On,
    Off,
    Clear,
}

#[derive(Debug, Args)]
pub struct OverrideArgs {
    #[command(flatten)]
    pub flag: FlagArg,
    #[arg(value_parser = rollout::conversation_id)]
    pub conversation: String,
    #[arg(value_enum)]
    pub to: OverrideValue,
    /// The override ends after this long (default: until cleared).
    #[arg(long = "for", value_parser = parse_positive_duration, value_name = "DUR")]
    pub for_: Option<Duration>,
    #[command(flatten)]
    pub change: ChangeArgs,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    #[command(flatten)]
    pub flag: FlagArg,
    /// How many changes, newest first.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(i64).range(1..=10_000))]
    pub limit: i64,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    #[command(flatten)]
    pub flag: FlagArg,
    /// Then run three smoke chats on the polling transport against Chatwoot (does the fallback
    /// answer?), and watch the real-time customers seen before the rollback until none holds a
    /// subscription (with ABLY_API_KEY).
    #[arg(long)]
    pub verify: bool,
    /// With --verify: how long customers have to leave real-time (Ably keeps a connection's
    /// state for 2 minutes); past it the rollback is done but exits 1 naming who still holds one.
    #[arg(long, default_value = "2m", value_parser = parse_positive_duration, value_name = "DUR", requires = "verify")]
    pub converge: Duration,
    #[command(flatten)]
    pub change: ChangeArgs,
}

/// `--by NAME`: one line, not empty, at most 200 characters.
pub fn parse_actor(s: &str) -> Result<String, String> {
    broker_ops::config::actor_name(s)
}
