//! `broker-ops monitor`: the rules read, one library call (a cron run, or sweeps for the live
//! view), the report rendered, the textfile and the ping written; the exit code is the worst
//! state (monitoring-plugins convention).

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

use broker_ops::alert::{Options, RetryPolicy};
use broker_ops::duration::parse_positive_duration;
use broker_ops::exit::{Outcome, UsageError};
use broker_ops::monitor::ping::Pinger;
use broker_ops::monitor::sweep::SweepRequest;
use broker_ops::monitor::{MonitorRequest, Ran, RuleSet, once};
use broker_ops::output::escape;

use crate::Ctx;

#[derive(Debug, Args)]
pub struct MonitorArgs {
    #[command(subcommand)]
    pub command: Option<MonitorCommand>,
    /// Rules file (TOML, `[[rules]]`); the built-in set when not given (`monitor rules` prints it).
    #[arg(long, global = true, value_name = "FILE")]
    pub rules: Option<PathBuf>,
    /// The SLA (and Ably's statistics) are judged over this much of the recent past.
    #[arg(long, default_value = "15m", value_parser = parse_positive_duration, value_name = "DUR")]
    pub sla_window: Duration,
    /// Also run a short smoke of N chats against the configured Chatwoot.
    #[arg(long, value_name = "N")]
    pub smoke: Option<NonZeroUsize>,
    /// Each probe's own time-out: past it the probe is UNKNOWN and the others still count.
    #[arg(long, default_value = "30s", value_parser = parse_positive_duration, value_name = "DUR")]
    pub probe_timeout: Duration,
    /// Dead-man's switch (healthchecks.io protocol): /start, then success or /fail, with one run id.
    #[arg(long, value_name = "URL")]
    pub ping: Option<url::Url>,
    /// Also write the Prometheus text format to this file, atomically (node_exporter textfile collector).
    #[arg(long, value_name = "PATH")]
    pub textfile: Option<PathBuf>,
    /// Also write a self-contained HTML status page to this file after each run, atomically
    /// (every check, the open incidents, the rules; it refreshes itself and says when it is stale).
    #[arg(long, value_name = "FILE.html")]
    pub status_page: Option<PathBuf>,
    /// A live view for on-call: sweep every DUR (at least 5s) and redraw (no alerts, no lock, no
    /// state, and no canary published unless --canary).
    #[arg(long, value_name = "DUR", value_parser = parse_watch_interval, conflicts_with_all = ["ping", "textfile", "status_page"])]
    pub watch: Option<Duration>,
    /// With --watch: publish the canary through Ably and the mirror each sweep, as a cron run does.
    #[arg(long, requires = "watch")]
    pub canary: bool,
    /// Where rule and alert state live without Redis (default: BROKER_OPS_STATE_DIR, else $XDG_STATE_HOME or ~/.local/state).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// While a rule keeps firing, remind after this long.
    #[arg(long, default_value = "4h", value_parser = parse_positive_duration, value_name = "DUR")]
    pub repeat_interval: Duration,
    /// How long one delivery may keep retrying before it waits in the outbox (short, so that a
    /// run ends well inside a one-minute cron slot).
    #[arg(long, default_value = "10s", value_parser = parse_positive_duration, value_name = "DUR")]
    pub retry_for: Duration,
}

#[derive(Debug, Subcommand)]
pub enum MonitorCommand {
    /// Print the rules in force (the --rules file, or the built-in set).
    Rules,
}

/// The live view's shortest interval: each sweep runs every probe (and, with --canary, publishes
/// through Ably and the mirror); faster than this it is load, not a view.
const MIN_WATCH: Duration = Duration::from_secs(5);

fn parse_watch_interval(s: &str) -> Result<Duration, String> {
    let d = parse_positive_duration(s)?;
    if d < MIN_WATCH {
        return Err(format!("{s:?} is shorter than the live view's {}s floor", MIN_WATCH.as_secs()));
    }
    Ok(d)
}

pub async fn run(a: MonitorArgs, ctx: &Ctx) -> anyhow::Result<Outcome> {
    let base = ctx.config.runbook_base_url.as_ref().map(|s| &s.value);
    let rules = match a
        .rules
        .as_deref()
        .map_or_else(|| Ok(RuleSet::defaults_with(&ctx.config.sla, base)), |path| RuleSet::load(path, base))
    {
        Ok(r) => r,
        Err(m) => return Err(UsageError(m).into()),
    };
    if let Some(MonitorCommand::Rules) = a.command {
        ctx.render(&rules)?;
        return Ok(Outcome::Done);
    }
    let sweep = SweepRequest {
        sla_window: a.sla_window,
        smoke: a.smoke.map(NonZeroUsize::get),
        probe_timeout: a.probe_timeout,
        command: ctx.command_line(),
        // A cron run proves the pipeline; the live view only reads unless asked.
        canary: a.watch.is_none() || a.canary,
    };
    if let Some(every) = a.watch {
        return crate::monitor_watch::run(&sweep, every, ctx).await;
    }
    let retry = RetryPolicy { budget: a.retry_for, ..RetryPolicy::default() };
    let alerts = Options::from_config(&ctx.config, a.repeat_interval, retry)?;
    let ping = a.ping.as_ref().map(|u| Pinger::new(u, ctx.config.timeout.value));
    if let Some(path) = &a.status_page {
        broker_ops::monitor::status::check_path(path).map_err(UsageError)?;
    }
    let req =
        MonitorRequest { sweep, rules, alerts, state_dir: a.state_dir, ping, status_page: a.status_page.is_some() };
    once(&req, a.textfile.as_deref(), a.status_page.as_deref(), ctx).await
}

/// One cron run: its report and textfile, or who holds the lock.
async fn once(
    req: &MonitorRequest,
    textfile: Option<&std::path::Path>,
    status_page: Option<&std::path::Path>,
    ctx: &Ctx,
) -> anyhow::Result<Outcome> {
    match once::sweep_once(&ctx.config, req).await? {
        Ran::Swept(mut report) => {
            if let Some(path) = status_page
                && let Err(e) = broker_ops::monitor::status::write(path, &report, chrono::Utc::now())
            {
                report.notes.push(format!("the status page {} was not written: {e}", escape_path(path)));
            }
            ctx.render(&*report)?;
            if let Some(path) = textfile
                && let Err(e) = report.write_textfile(path)
            {
                return Ok(crate::ably::textfile_failed(path, &e, report.state));
            }
            Ok(Outcome::Probe(report.state))
        }
        Ran::LockedOut { holder, place } => {
            let locked = broker_ops::monitor::report::LockedOut { holder, place };
            // On stderr for people, and in the chosen format for whatever reads stdout.
            eprintln!("{}", escape(&locked.text()));
            if ctx.format != broker_ops::output::Format::Table {
                ctx.render(&locked)?;
            }
            Ok(Outcome::Done)
        }
    }
}

fn escape_path(p: &std::path::Path) -> String {
    broker_ops::output::escape(&p.display().to_string())
}
