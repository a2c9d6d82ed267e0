//! `broker-ops ably health | backlog`: arguments in, one library call, the probe rendered in the
//! chosen format; the exit code is the monitoring-plugins state.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

use broker_ops::duration::parse_duration;
use broker_ops::probe::backlog::{self, BacklogRequest};
use broker_ops::probe::health::{self, Channels, HealthRequest, StatusCheck};
use broker_ops::probe::{ProbeReport, Rule};

use broker_ops::exit::Outcome;

use crate::Ctx;

#[derive(Debug, Subcommand)]
pub enum AblyCommand {
    /// Ably reachability, latency, clock skew, app stats, channel occupancy, public status.
    Health(HealthArgs),
    /// BullMQ queue depth and oldest waiting job; the mirror's lag behind Ably (Redis, Postgres).
    Backlog(BacklogArgs),
}

#[derive(Debug, Args)]
pub struct BacklogArgs {
    /// BullMQ queue (default BROKER_QUEUE, else `broker`).
    #[arg(long)]
    pub queue: Option<String>,
    /// Check the mirror for this conversation (repeatable); default: the most active ones.
    #[arg(long = "conversation", value_name = "ID")]
    pub conversations: Vec<String>,
    /// How many of the most active conversations to check.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..))]
    pub top: u16,
    /// How long Ably keeps channel history: about 2 minutes, longer with persisted history.
    /// A conversation last mirrored before that cannot show its lag (see `mirror canary`).
    #[arg(long, default_value = "2m", value_parser = parse_duration, value_name = "DUR")]
    pub history_window: Duration,
    /// Instead of the probe: list the N latest failed jobs (newest first) with BullMQ's
    /// failedReason and attempts, read-only (at most 1000).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub failed: Option<u16>,
    #[command(flatten)]
    pub probe: ProbeArgs,
}

#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// WARNING when this holds (repeatable), e.g. latency>300ms, skew>2s, refused>0.
    #[arg(long = "warn", value_name = "RULE", value_parser = str::parse::<Rule>)]
    pub warn: Vec<Rule>,
    /// CRITICAL when this holds (repeatable), e.g. latency>1s.
    #[arg(long = "crit", value_name = "RULE", value_parser = str::parse::<Rule>)]
    pub crit: Vec<Rule>,
    /// Also write the Prometheus text format to this file, atomically (node_exporter textfile collector).
    #[arg(long, value_name = "PATH")]
    pub textfile: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct HealthArgs {
    /// Window of the app statistics.
    #[arg(long, default_value = "15m", value_parser = parse_duration)]
    pub window: Duration,
    /// Report the occupancy of this channel (repeatable).
    #[arg(long = "channel", value_name = "NAME", conflicts_with = "prefix")]
    pub channels: Vec<String>,
    /// Report the occupancy of active channels with this prefix (e.g. conversation:).
    #[arg(long)]
    pub prefix: Option<String>,
    /// With --prefix: at most this many channels.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..))]
    pub limit: u16,
    /// Ably's status document (checked by default only for Ably's default endpoint).
    #[arg(long, value_name = "URL", conflicts_with = "no_status")]
    pub status_url: Option<url::Url>,
    /// Do not check Ably's public status.
    #[arg(long)]
    pub no_status: bool,
    #[command(flatten)]
    pub probe: ProbeArgs,
}

pub async fn run(cmd: AblyCommand, ctx: &Ctx) -> anyhow::Result<Outcome> {
    let (report, probe) = match cmd {
        AblyCommand::Health(a) => {
            let req = HealthRequest {
                window: a.window,
                channels: match (a.prefix, a.channels.is_empty()) {
                    (Some(prefix), _) => Channels::Prefix { prefix, limit: a.limit.into() },
                    (None, false) => Channels::Named(a.channels),
                    (None, true) => Channels::None,
                },
                status: match (a.no_status, a.status_url) {
                    (true, _) => StatusCheck::Off,
                    (false, Some(u)) => StatusCheck::At(u),
                    (false, None) => StatusCheck::Default,
                },
                warn: a.probe.warn.clone(),
                crit: a.probe.crit.clone(),
            };
            let waiting = crate::progress::Waiting::start("ably health", ctx.config.timeout.value);
            let report = health::run(&ctx.config, req).await?;
            drop(waiting);
            (report, a.probe)
        }
        AblyCommand::Backlog(a) if a.failed.is_some() => {
            let n = a.failed.map_or(0, usize::from);
            ctx.render(&backlog::failed(&ctx.config, a.queue, n).await?)?;
            return Ok(Outcome::Done);
        }
        AblyCommand::Backlog(a) => {
            let req = BacklogRequest {
                queue: a.queue,
                conversations: a.conversations,
                top: a.top.into(),
                history_window: a.history_window,
                warn: a.probe.warn.clone(),
                crit: a.probe.crit.clone(),
            };
            (backlog::run(&ctx.config, req).await?, a.probe)
        }
    };
    finish(&report, &probe, ctx)
}

/// Renders a probe in the chosen format, writes the textfile, and returns the state's exit code.
pub fn finish(report: &ProbeReport, probe: &ProbeArgs, ctx: &Ctx) -> anyhow::Result<Outcome> {
    ctx.render(report)?;
    if let Some(path) = &probe.textfile
        && let Err(e) = broker_ops::fsutil::write_shared(path, &report.prometheus())
    {
        return Ok(textfile_failed(path, &e, report.state()));
    }
    Ok(Outcome::Probe(report.state()))
}

/// The textfile was not written: both things are said, the checks' own state and that the
/// collector now reads a stale file, and the run exits UNKNOWN so the scheduler sees it.
pub fn textfile_failed(path: &std::path::Path, e: &std::io::Error, state: broker_ops::exit::ProbeState) -> Outcome {
    let shown = broker_ops::output::escape(&path.display().to_string());
    eprintln!(
        "error: textfile {shown} not written: {e}; the checks themselves are {} (above), but the collector keeps \
         reading the old file",
        state.label()
    );
    Outcome::Probe(broker_ops::exit::ProbeState::Unknown)
}
