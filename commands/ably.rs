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
    #[arg(long, default_value_t = 20)]
    pub top: usize,
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
        AblyCommand::Backlog(a) => backlog_cmd(a, ctx).await,
    }
}

async fn backlog_cmd(a: BacklogArgs, ctx: &Ctx) -> anyhow::Result<i32> {
    use broker_ops::backlog::{self, BacklogOptions, Stores};
    use secrecy::ExposeSecret;
    let c = &ctx.config;
    let t = c.timeout.value;
    let rules = Rules::new(backlog::DEFAULT_WARN, backlog::DEFAULT_CRIT, a.probe.warn.clone(), a.probe.crit.clone());
    let queue = a.queue.clone().unwrap_or_else(|| c.broker_queue.value.clone());
    let opts = BacklogOptions {
        keys: broker_ops::queue::QueueKeys::new(c.bull_prefix.value.clone(), queue),
        names: broker_ops::contracts::Names::with_redis_prefix(c.redis_key_prefix.value.clone()),
        conversations: a.conversations.clone(),
        top: a.top,
        rules: rules.clone(),
        timeout: t,
    };
    // Each store that cannot be reached becomes an UNKNOWN check; the others still report.
    let mut unknown = Vec::new();
    let mut redis = None;
    if let Some(u) = &c.redis_url {
        match broker_ops::mirror::redis::connect(u.value.expose_secret(), t).await {
            Ok(conn) => redis = Some((conn, broker_ops::redact::url(u.value.expose_secret()))),
            Err(e) => unknown.push(rules.unknown("waiting", "waiting", broker_ops::probe::Unit::Count, e.to_string())),
        }
    }
    let mut pg = None;
    if let Some(u) = &c.database_url {
        match broker_ops::mirror::postgres::connect(u.value.expose_secret(), t).await {
            Ok(pool) => pg = Some((pool, broker_ops::redact::url(u.value.expose_secret()))),
            Err(e) => unknown.push(rules.unknown(
                "mirror_lag postgres",
                "mirror_lag",
                broker_ops::probe::Unit::S,
                e.to_string(),
            )),
        }
    }
    let ably = match &c.ably_api_key {
        Some(k) => Some(AblyClient::new(c.ably_rest_url.value.clone(), Some(k.value.clone()), t)?),
        None => None,
    };
    // Without Redis nothing else can be read (the mirror check starts from its active set).
    if c.redis_url.is_some() && redis.is_none() {
        return finish(&ProbeReport { kind: "ably_backlog", checks: unknown }, &a.probe, ctx);
    }
    let stores = Stores {
        redis: redis.as_mut().map(|(conn, addr)| (conn, addr.clone())),
        postgres: pg.as_ref().map(|(p, a)| (p, a.clone())),
        ably: ably.as_ref(),
    };
    let probe = backlog::backlog(stores, &opts);
    let mut report = match tokio::time::timeout(t * 3, probe).await {
        Ok(r) => r,
        Err(_) => ProbeReport {
            kind: "ably_backlog",
            checks: vec![rules.unknown(
                "waiting",
                "waiting",
                broker_ops::probe::Unit::Count,
                "the probe did not finish within 3 x --timeout",
            )],
        },
    };
    report.checks.extend(unknown);
    finish(&report, &a.probe, ctx)
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
