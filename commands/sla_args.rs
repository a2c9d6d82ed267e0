//! The arguments of `broker-ops sla`: the command tree and what each flag means.

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};

use broker_ops::duration::parse_positive_duration;
use broker_ops::sla::Threshold;

use crate::sandbox::Behaviour;

#[derive(Debug, Subcommand)]
pub enum SlaCommand {
    /// Run smoke chats end to end and judge the AI's reply time against thresholds.
    Smoke(Box<SmokeArgs>),
    /// The SLA as customers had it, from the mirror: reply-time percentiles, unanswered
    /// messages, breaches and the worst conversations, per bucket and for the window.
    Report(Box<ReportArgs>),
    /// Combine the histogram logs of several runs (--histogram-out) into one exact result.
    Merge(MergeArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum TransportArg {
    /// Ably SSE on the conversation's channel.
    Sse,
    /// Poll Chatwoot's messages (the web app's fallback).
    Poll,
}

#[derive(Debug, Args)]
pub struct Outputs {
    /// Threshold (repeatable): p50|p90|p95|p99|max < DUR, error_rate < N%, violations==0.
    #[arg(long = "threshold", value_name = "EXPR", value_parser = str::parse::<Threshold>)]
    pub thresholds: Vec<Threshold>,
    /// Write a JUnit XML file (one test case per threshold).
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Directory for the Markdown and JSON report.
    #[arg(long, value_name = "DIR", default_value = "validation-reports")]
    pub report_dir: PathBuf,
    /// Write no report files.
    #[arg(long)]
    pub no_report: bool,
}

#[derive(Debug, Args)]
pub struct SmokeArgs {
    /// Start the built-in sandbox on a free port and run against it.
    #[arg(long)]
    pub sandbox: bool,
    /// How many chats.
    #[arg(long, default_value = "20", conflicts_with = "duration")]
    pub chats: NonZeroUsize,
    /// Soak: start chats at --rate for this long instead of --chats (e.g. 24h).
    #[arg(long, value_name = "DUR", value_parser = parse_positive_duration, requires = "rate")]
    pub duration: Option<Duration>,
    /// Soak: a summary line and an NDJSON record (in the report directory) per interval.
    #[arg(long, value_name = "DUR", default_value = "5m", value_parser = parse_positive_duration, requires = "duration")]
    pub interval: Duration,
    /// Soak: judge every interval against the thresholds too; one bad interval fails the run.
    #[arg(long, requires = "duration")]
    pub interval_thresholds: bool,
    /// Do not publish typing and read events or time them to a second subscriber (for a stack
    /// without them).
    #[arg(long)]
    pub no_extras: bool,
    /// Closed loop: at most N chats at once.
    #[arg(long, default_value = "10", conflicts_with = "rate")]
    pub concurrency: NonZeroUsize,
    /// Open loop: start R chats per second or minute (20/s, 60/min), counting latency from each
    /// intended start.
    #[arg(long, value_name = "R/s|R/min", value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// Open loop: the most chats in flight at once.
    #[arg(long, default_value = "10000", requires = "rate")]
    pub max_in_flight: NonZeroUsize,
    /// Customer messages per chat.
    #[arg(long, default_value = "1")]
    pub turns: NonZeroUsize,
    /// YAML or JSON file: a list of chats, each a list of customer messages.
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,
    /// How the reply is awaited.
    #[arg(long, value_enum, default_value = "sse")]
    pub transport: TransportArg,
    /// A chat without a reply after this long is a failure [default: the SLA's reply_timeout, 30s].
    #[arg(long, value_parser = parse_positive_duration)]
    pub reply_timeout: Option<Duration>,
    /// Interval of the poll transport.
    #[arg(long, default_value = "250ms", value_parser = parse_positive_duration)]
    pub poll_interval: Duration,
    /// Stop early once a threshold can no longer pass.
    #[arg(long)]
    pub abort_on_fail: bool,
    /// A tick of the driver's ticker later than this counts as late; 5 late in any 50 (about
    /// 100 ms) and the driver counts as saturated (its figures may read high).
    #[arg(long, default_value = "5ms", value_parser = broker_ops::duration::parse_duration, value_name = "DUR")]
    pub max_driver_lag: Duration,
    /// Figures in doubt are an error (exit 3) instead of a warning: a saturated driver, or a path
    /// to the service that queued past max(1 % of the reply P50, 2 ms).
    #[arg(long)]
    pub strict: bool,
    /// Write the raw HDR histograms (HdrHistogram log format) for `sla merge`.
    #[arg(long, value_name = "FILE")]
    pub histogram_out: Option<PathBuf>,
    /// Do not resolve and label the smoke conversations afterwards.
    #[arg(long)]
    pub no_cleanup: bool,
    #[command(flatten)]
    pub outputs: Outputs,
    #[command(flatten, next_help_heading = "Sandbox (with --sandbox)")]
    pub behaviour: Behaviour,
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Histogram logs written by `sla smoke --histogram-out`.
    #[arg(required = true, value_name = "FILES")]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub outputs: Outputs,
}

/// The most chats a second one driver is let start: past it the driver, not the target, is
/// what gets measured.
const MAX_RATE_PER_S: f64 = 1000.0;

/// A rate in chats per second, from `R`, `R/s`, `R/min` or `R/h`.
fn parse_rate(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let (n, per) = match t.split_once('/') {
        Some((n, "s")) | Some((n, "sec")) => (n, 1.0),
        Some((n, "min")) | Some((n, "m")) => (n, 60.0),
        Some((n, "h")) => (n, 3600.0),
        Some(_) => return Err(format!("invalid rate {s:?}: expected chats per second or minute, e.g. 20/s or 60/min")),
        None => (t, 1.0),
    };
    match n.trim().parse::<f64>() {
        Ok(r) if r > 0.0 && r.is_finite() && r / per <= MAX_RATE_PER_S => Ok(r / per),
        Ok(r) if r > 0.0 && r.is_finite() => Err(format!(
            "invalid rate {s:?}: over the limit of {MAX_RATE_PER_S:.0} chats/s one driver can start and still measure \
             honestly; split the run over several drivers and `sla merge`"
        )),
        _ => Err(format!(
            "invalid rate {s:?}: expected a positive number of chats per second or minute, e.g. 20/s or 60/min"
        )),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rates_per_second_minute_and_hour_and_their_limits() {
        assert_eq!(super::parse_rate("20/s"), Ok(20.0));
        assert_eq!(super::parse_rate("20"), Ok(20.0));
        assert_eq!(super::parse_rate("60/min"), Ok(1.0));
        assert_eq!(super::parse_rate("3600/h"), Ok(1.0));
        for bad in ["0/min", "-1/s", "NaN", "inf/s", "5/day", "fast"] {
            assert!(super::parse_rate(bad).is_err(), "{bad}");
        }
        assert!(super::parse_rate("100000/min").unwrap_err().contains("over the limit of 1000"));
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FromArg {
    /// Postgres when DATABASE_URL is set, else Redis.
    Auto,
    /// The Postgres mirror (any window).
    Postgres,
    /// The Redis mirror (windows within the last 24 h).
    Redis,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Start of the window: a duration before now (24h, or -24h), or an RFC 3339 time.
    #[arg(long, default_value = "24h", value_name = "WHEN", allow_hyphen_values = true)]
    pub since: String,
    /// End of the window: now, a duration before now, or an RFC 3339 time.
    #[arg(long, default_value = "now", value_name = "WHEN", allow_hyphen_values = true)]
    pub until: String,
    /// Bucket width (default 5m up to 2 h, 1h up to 48 h, else 1d).
    #[arg(long, value_name = "DUR", value_parser = parse_positive_duration)]
    pub by: Option<Duration>,
    /// Only this conversation (repeatable).
    #[arg(long = "conversation", value_name = "ID")]
    pub conversations: Vec<String>,
    /// The reply-time objective: replies slower than this count as over the SLO [default: the
    /// SLA's slo, 5s].
    #[arg(long, value_parser = parse_positive_duration)]
    pub slo: Option<Duration>,
    /// A message without a reply after this long is unanswered [default: the SLA's reply_timeout, 30s].
    #[arg(long, value_parser = parse_positive_duration)]
    pub reply_timeout: Option<Duration>,
    /// A conversation with an event this recently is active now.
    #[arg(long, default_value = "15m", value_parser = parse_positive_duration)]
    pub active_window: Duration,
    /// How many of the worst conversations to list.
    #[arg(long, default_value = "10")]
    pub top: usize,
    /// Which mirror to read.
    #[arg(long = "from", value_enum, default_value = "auto")]
    pub from: FromArg,
    /// Postgres: the statement runs in this many concurrent partitions of the conversations (1-4).
    #[arg(long, default_value = "2", value_parser = clap::value_parser!(u8).range(1..=4))]
    pub parallel: u8,
    /// Postgres: the longest the report's statements may take.
    #[arg(long, default_value = "2m", value_parser = parse_positive_duration)]
    pub query_timeout: Duration,
    /// Count test traffic (smoke chats, canaries: contracts.synthetic_prefix) like customers'.
    #[arg(long)]
    pub include_test_traffic: bool,
    /// Write the chart (P50/P95/P99 per bucket against the SLO) as SVG.
    #[arg(long, value_name = "FILE.svg")]
    pub chart: Option<PathBuf>,
    /// Write Markdown, JSON and the SVG chart into this directory.
    #[arg(long, value_name = "DIR", num_args = 0..=1, default_missing_value = "validation-reports")]
    pub report_dir: Option<PathBuf>,
    /// Two reports: the conversations this rollout flag puts on real-time, and those polling
    /// (the split `rollout advance` judges). Postgres mirror only.
    #[arg(long, value_name = "FLAG", conflicts_with_all = ["chart", "report_dir", "conversations"])]
    pub by_cohort: Option<String>,
}
