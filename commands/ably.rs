//! `broker-ops ably health`: one library call, rendered in the probe formats; the exit code is
//! the monitoring-plugins state.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};

use broker_ops::ably::AblyClient;
use broker_ops::ably::health::{self, Channels, HealthOptions};
use broker_ops::config::DEFAULT_ABLY_REST_URL;
use broker_ops::duration::parse_duration;
use broker_ops::output::Format;
use broker_ops::probe::{ProbeReport, Rule, Rules};

use crate::Ctx;

#[derive(Debug, Subcommand)]
pub enum AblyCommand {
    /// Ably reachability, latency, clock skew, app stats, channel occupancy, public status.
    Health(HealthArgs),
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
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Ably's status document (checked by default only for Ably's default endpoint).
    #[arg(long, value_name = "URL", conflicts_with = "no_status")]
    pub status_url: Option<url::Url>,
    /// Do not check Ably's public status.
    #[arg(long)]
    pub no_status: bool,
    #[command(flatten)]
    pub probe: ProbeArgs,
}

pub async fn run(cmd: AblyCommand, ctx: &Ctx) -> anyhow::Result<i32> {
    match cmd {
        AblyCommand::Health(a) => health_cmd(a, ctx).await,
    }
}

async fn health_cmd(a: HealthArgs, ctx: &Ctx) -> anyhow::Result<i32> {
    let c = &ctx.config;
    let key = c.require("ABLY_API_KEY", &c.ably_api_key)?;
    let client = AblyClient::new(c.ably_rest_url.value.clone(), Some(key.value.clone()), c.timeout.value)?;
    let default_endpoint = c.ably_rest_url.value.as_str().trim_end_matches('/') == DEFAULT_ABLY_REST_URL;
    let status_url = match (a.no_status, a.status_url) {
        (true, _) => None,
        (false, Some(u)) => Some(u),
        (false, None) if default_endpoint => Some(url::Url::parse(health::STATUS_URL)?),
        (false, None) => None,
    };
    let channels = match (a.prefix, a.channels.is_empty()) {
        (Some(prefix), _) => Channels::Prefix { prefix, limit: a.limit },
        (None, false) => Channels::Named(a.channels),
        (None, true) => Channels::None,
    };
    let opts = HealthOptions {
        window: a.window,
        channels,
        status_url,
        rules: Rules::new(health::DEFAULT_WARN, health::DEFAULT_CRIT, a.probe.warn.clone(), a.probe.crit.clone()),
        timeout: c.timeout.value,
    };
    // The whole probe finishes within the time-out, whatever hangs.
    let report = match tokio::time::timeout(
        c.timeout.value + Duration::from_millis(500),
        health::health(&client, &opts),
    )
    .await
    {
        Ok(r) => r,
        Err(_) => ProbeReport {
            kind: "ably_health",
            checks: vec![opts.rules.unknown(
                "latency",
                "latency",
                broker_ops::probe::Unit::Ms,
                "the probe did not finish within --timeout",
            )],
        },
    };
    finish(&report, &a.probe, ctx)
}

/// Renders a probe in the chosen format, writes the textfile, and returns the state's exit code.
pub fn finish(report: &ProbeReport, probe: &ProbeArgs, ctx: &Ctx) -> anyhow::Result<i32> {
    match ctx.format {
        Format::Nagios => println!("{}", report.nagios()),
        Format::Prometheus => {
            let mut out = std::io::stdout().lock();
            out.write_all(report.prometheus().as_bytes())?;
            out.flush()?;
        }
        _ => ctx.render(report)?,
    }
    if let Some(path) = &probe.textfile {
        broker_ops::probe::write_atomically(path, &report.prometheus())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(report.state().code())
}
