//! `sla report`: the SLA as customers had it, from the mirror. Reply times are paired and
//! bucketed where the events are (in Postgres, by SQL; from Redis, one conversation at a time),
//! added into HDR histograms per bucket ([`tally`]), and shaped into a [`model::SlaReport`]
//! that renders as a table, JSON, NDJSON, Prometheus, Markdown and an SVG chart.

pub mod chart;
pub mod files;
pub mod html;
pub mod model;
pub mod postgres;
pub mod redis;
pub mod render;
pub mod tally;
pub mod window;

use std::time::Duration;

pub use model::SlaReport;
pub use window::{Window, parse_when};

use crate::config::Config;
use crate::contracts::Contracts;
use crate::store::MirrorError;

/// Which mirror to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceChoice {
    /// Postgres when `DATABASE_URL` is set, else Redis.
    Auto,
    Postgres,
    Redis,
}

/// The mirror a report was computed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Postgres,
    Redis,
}

#[derive(Debug, Clone)]
pub struct ReportRequest {
    pub window: Window,
    pub source: SourceChoice,
    pub conversations: Vec<String>,
    pub slo: Duration,
    pub reply_timeout: Duration,
    pub active_window: Duration,
    pub top: usize,
    /// Concurrent partitions of the Postgres statement (1..=4).
    pub partitions: usize,
    pub query_timeout: Duration,
    /// Count test traffic (smoke chats, canaries) as customers' instead of leaving it out.
    pub include_test_traffic: bool,
}

impl ReportRequest {
    /// What marks test traffic in this report: the contract's prefix, or nothing when test
    /// traffic is included.
    pub fn test_prefix<'c>(&self, c: &'c Contracts) -> Option<&'c str> {
        (!self.include_test_traffic).then_some(c.synthetic_prefix.as_str())
    }
}

/// How long Redis keeps a conversation's stream after its last write.
pub const REDIS_HORIZON: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Mirror(#[from] MirrorError),
    #[error(transparent)]
    Redis(#[from] crate::redis_handle::RedisError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The mirror could not be opened (the reason names the store, the operation and the address).
    #[error("{0}")]
    Unavailable(String),
    #[error("sla report needs a mirror: set DATABASE_URL (the Postgres mirror) or REDIS_URL (the last 24 h)")]
    NoMirror,
    #[error(
        "the Redis mirror keeps 24 h (each stream expires 24 h after its last write), and the window starts {0} ago: \
         use the Postgres mirror (DATABASE_URL) for longer windows"
    )]
    BeyondRedis(String),
    #[error("Postgres at {addr}: sla report did not finish within {} (--query-timeout)", crate::duration::format_duration(*after))]
    QueryTimeout { addr: String, after: Duration },
    #[error("adding histograms: {0}")]
    Histogram(String),
}

impl crate::exit::Classified for ReportError {
    fn kind(&self) -> crate::exit::ErrorKind {
        match self {
            ReportError::BeyondRedis(_) => crate::exit::ErrorKind::Usage,
            _ => crate::exit::ErrorKind::CouldNotRun,
        }
    }
}

/// Which mirror the report reads.
fn use_postgres(config: &Config, req: &ReportRequest) -> bool {
    match req.source {
        SourceChoice::Postgres => true,
        SourceChoice::Redis => false,
        SourceChoice::Auto => config.database_url.is_some(),
    }
}

/// Runs the report against the configured mirror (opening only the store it reads).
/// The report of a selection that holds no conversation (an empty cohort): every figure zero,
/// read from nothing, rather than a query whose empty list would mean "every conversation".
pub fn empty(config: &Config, req: &ReportRequest, source: Source) -> Result<SlaReport, ReportError> {
    let tally = tally::Tally::new(req.window.buckets(), req.top).finish();
    let links = model::Links::from_config(config);
    SlaReport::build(req, &config.contracts, source, tally, (0, 0), &links, std::time::Duration::ZERO)
        .map_err(ReportError::Histogram)
}

pub async fn run(config: &Config, req: &ReportRequest) -> Result<SlaReport, ReportError> {
    let pg = use_postgres(config, req);
    let opened = crate::store::opened::Connections::open_only(config, !pg, pg).await;
    run_on(config, req, &opened).await
}

/// The report on stores already opened (a `monitor` sweep shares them).
pub async fn run_on(
    config: &Config,
    req: &ReportRequest,
    opened: &crate::store::opened::Connections,
) -> Result<SlaReport, ReportError> {
    let c = &config.contracts;
    let started = std::time::Instant::now();
    let (source, tally, active) = if use_postgres(config, req) {
        config.require("DATABASE_URL", &config.database_url)?;
        let crate::store::postgres::Pg { pool, addr } = opened
            .postgres
            .clone()
            .transpose()
            .map_err(|u| ReportError::Unavailable(u.reason))?
            .ok_or(ReportError::NoMirror)?;
        let tally = postgres::tally(&pool, &addr, c, req).await?;
        let active = tokio::time::timeout(req.query_timeout, postgres::active_now(&pool, &addr, c, req))
            .await
            .map_err(|_| ReportError::QueryTimeout { addr: addr.clone(), after: req.query_timeout })??;
        (Source::Postgres, tally, active)
    } else {
        let reach = chrono::Utc::now() - req.window.since;
        if reach.to_std().unwrap_or_default() > REDIS_HORIZON {
            return Err(ReportError::BeyondRedis(crate::duration::format_duration(reach.to_std().unwrap_or_default())));
        }
        if req.source == SourceChoice::Redis {
            config.require("REDIS_URL", &config.redis_url)?;
        }
        let mut r = opened
            .redis
            .clone()
            .transpose()
            .map_err(|u| ReportError::Unavailable(u.reason))?
            .ok_or(ReportError::NoMirror)?;
        let (tally, test) = redis::tally(&mut r, c, req).await?;
        let active = redis::active_now(&mut r, c, req, &test).await?;
        (Source::Redis, tally, active)
    };
    let links = model::Links::from_config(config);
    SlaReport::build(req, c, source, tally, active, &links, started.elapsed()).map_err(ReportError::Histogram)
}
