//! One sweep: every probe at once, each within its own time-out. A probe whose dependency is
//! not configured is skipped (and says which setting it needs); one that errs or hangs is
//! UNKNOWN with its reason; the others still count. The probes are the libraries of `ably
//! health`, `ably backlog`, `sla report`, `mirror canary`, `rollout observe` and `sla smoke`: nothing is
//! re-implemented here, only turned into checks.

use std::future::Future;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::rules::{Probe, SLA_METRICS, SMOKE_METRICS};
use crate::config::{Config, ConfigError};
use crate::exit::ProbeState;
use crate::probe::{Check, ProbeReport, Rules, Unit};
use crate::store::opened::Connections;

/// What a sweep checks.
#[derive(Debug, Clone)]
pub struct SweepRequest {
    /// The SLA is judged over this much of the recent past (and Ably's statistics too).
    pub sla_window: Duration,
    /// A short smoke of this many chats, when asked.
    pub smoke: Option<usize>,
    /// Each probe's own time-out: past it, the probe is CRITICAL (what it waits on does not
    /// answer) and the sweep goes on.
    pub probe_timeout: Duration,
    /// The command line, for the smoke's report.
    pub command: String,
    /// Publish the canary (a cron run does; the live view only reads unless asked).
    pub canary: bool,
}

/// How a probe's part of the sweep went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ran,
    /// Not configured here: not run, not counted.
    Skipped,
    /// It could not run (an error before any check): UNKNOWN.
    Failed,
    /// It did not finish within its time-out: CRITICAL, as a service that times out is.
    TimedOut,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProbeOutcome {
    pub probe: Probe,
    pub status: Status,
    pub state: ProbeState,
    pub elapsed_ms: f64,
    pub reason: Option<String>,
    pub checks: Vec<Check>,
}

impl ProbeOutcome {
    /// Whether it counts towards the sweep's state.
    pub fn counts(&self) -> bool {
        self.status != Status::Skipped
    }

    /// The checks as a probe report (for the probes' own renderings and gauges).
    pub fn report(&self) -> ProbeReport {
        ProbeReport { kind: self.probe.name(), checks: self.checks.clone() }
    }

    /// The rows every view shows: one per check, or, for a probe without checks (skipped,
    /// failed, hung), one row `-` with its reason.
    pub fn lines(&self) -> Vec<Line<'_>> {
        if self.checks.is_empty() {
            let (check, detail) = ("-", self.reason.as_deref().unwrap_or(""));
            let skipped = self.status == Status::Skipped;
            return vec![Line {
                check,
                target: None,
                state: self.state,
                skipped,
                value: None,
                unit: Unit::Count,
                detail,
            }];
        }
        self.checks
            .iter()
            .map(|c| Line {
                check: c.name.as_str(),
                target: c.target.as_deref(),
                state: c.state,
                skipped: false,
                value: c.value,
                unit: c.unit,
                detail: c.detail.as_str(),
            })
            .collect()
    }
}

/// One row of a sweep.
#[derive(Debug, Clone, Copy)]
pub struct Line<'a> {
    pub check: &'a str,
    /// What the check was measured on, when the probe measures it on several.
    pub target: Option<&'a str>,
    pub state: ProbeState,
    pub skipped: bool,
    pub value: Option<f64>,
    pub unit: Unit,
    pub detail: &'a str,
}

impl Line<'_> {
    /// The detail as a table shows it: the target first, when there is one.
    pub fn detail_text(&self) -> String {
        match self.target {
            Some(t) => format!("{t}: {}", self.detail),
            None => self.detail.to_string(),
        }
    }

    /// The state for a table: green OK, red otherwise, dim `skipped`.
    pub fn state_cell(&self, style: crate::output::Style) -> String {
        match (self.skipped, self.state) {
            (true, _) => style.dim("skipped"),
            (false, ProbeState::Ok) => style.good("OK"),
            (false, s) => style.bad(s.label()),
        }
    }

    pub fn value_text(&self) -> String {
        crate::probe::shown(self.value, self.unit)
    }
}

/// Why a probe did not produce checks.
pub enum NoReport {
    Skip(String),
    Fail(String),
}

impl From<ConfigError> for NoReport {
    fn from(e: ConfigError) -> Self {
        match e {
            ConfigError::Missing { .. } => NoReport::Skip(e.to_string()),
            other => NoReport::Fail(other.to_string()),
        }
    }
}

/// Runs every probe concurrently on the mirror's stores opened once (`opened`); the sweep takes
/// as long as the slowest probe (at most the time-out).
pub async fn sweep(config: &Config, req: &SweepRequest, opened: &Connections) -> Vec<ProbeOutcome> {
    let t = req.probe_timeout;
    let (health, backlog, sla, canary, rollout, smoke) = tokio::join!(
        timed(Probe::AblyHealth, t, health(config, req)),
        timed(Probe::AblyBacklog, t, backlog(config, opened)),
        timed(Probe::Sla, t, sla(config, req, opened)),
        timed(Probe::MirrorCanary, t, canary(config, req, opened)),
        timed(Probe::Rollout, t, rollout(config, opened)),
        async {
            match req.smoke {
                Some(n) => Some(timed(Probe::Smoke, t, smoke(config, req, n)).await),
                None => None,
            }
        },
    );
    let mut out = vec![health, backlog, sla, canary, rollout];
    out.extend(smoke);
    out
}

/// A sweep on stores opened for it alone (the live view, which holds nothing between sweeps).
pub async fn sweep_alone(config: &Config, req: &SweepRequest) -> Vec<ProbeOutcome> {
    sweep(config, req, &Connections::open(config).await).await
}

/// One probe under its time-out.
pub async fn timed(
    probe: Probe,
    limit: Duration,
    work: impl Future<Output = Result<Vec<Check>, NoReport>>,
) -> ProbeOutcome {
    let started = Instant::now();
    let result = tokio::time::timeout(limit, work).await;
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    let (status, reason, checks) = match result {
        Ok(Ok(checks)) => (Status::Ran, None, checks),
        Ok(Err(NoReport::Skip(why))) => (Status::Skipped, Some(why), Vec::new()),
        Ok(Err(NoReport::Fail(why))) => (Status::Failed, Some(why), Vec::new()),
        Err(_) => {
            let why = format!("did not finish within {} (--probe-timeout)", crate::duration::format_duration(limit));
            (Status::TimedOut, Some(why), Vec::new())
        }
    };
    let state = match status {
        Status::Ran => checks.iter().map(|c| c.state).max().unwrap_or(ProbeState::Ok),
        Status::Skipped => ProbeState::Ok,
        Status::Failed => ProbeState::Unknown,
        Status::TimedOut => ProbeState::Critical,
    };
    ProbeOutcome { probe, status, state, elapsed_ms, reason, checks }
}

fn fail(e: impl std::fmt::Display) -> NoReport {
    NoReport::Fail(e.to_string())
}

async fn health(config: &Config, req: &SweepRequest) -> Result<Vec<Check>, NoReport> {
    use crate::probe::health::{self, Channels, HealthRequest, StatusCheck};
    config.require("ABLY_API_KEY", &config.ably_api_key)?;
    let r = HealthRequest {
        window: req.sla_window,
        channels: Channels::None,
        status: StatusCheck::Default,
        warn: Vec::new(),
        crit: Vec::new(),
    };
    Ok(health::run(config, r).await.map_err(fail)?.checks)
}

async fn backlog(config: &Config, opened: &Connections) -> Result<Vec<Check>, NoReport> {
    use crate::probe::backlog::{self, BacklogRequest, DEFAULT_HISTORY_WINDOW};
    config.require("REDIS_URL", &config.redis_url)?;
    let r = BacklogRequest { history_window: DEFAULT_HISTORY_WINDOW, ..BacklogRequest::default() };
    Ok(backlog::run_on(config, r, opened).await.map_err(fail)?.checks)
}

async fn canary(config: &Config, req: &SweepRequest, opened: &Connections) -> Result<Vec<Check>, NoReport> {
    use crate::mirror::canary::{self, CanaryRequest};
    if !req.canary {
        return Err(NoReport::Skip("the live view only reads: --canary publishes one each sweep".into()));
    }
    config.require("ABLY_API_KEY", &config.ably_api_key)?;
    if config.redis_url.is_none() && config.database_url.is_none() {
        return Err(NoReport::Skip("no mirror to watch: set REDIS_URL and/or DATABASE_URL".into()));
    }
    // The canary says CRITICAL (never mirrored) a little before the sweep would call it UNKNOWN.
    let wait = req.probe_timeout.mul_f64(0.8);
    let r = CanaryRequest { timeout: wait, warn: Vec::new(), crit: Vec::new() };
    Ok(canary::run_on(config, r, opened).await.map_err(fail)?.checks)
}

/// Whether the app follows the real-time flag, by `rollout observe` on the sweep's Postgres
/// handle. A database without the rollout's tables has no flag to watch: skipped, saying so.
async fn rollout(config: &Config, opened: &Connections) -> Result<Vec<Check>, NoReport> {
    use crate::rollout::observe::{self, ObserveRequest};
    use crate::rollout::{RolloutError, store::Db};
    config.require("DATABASE_URL", &config.database_url)?;
    config.require("ABLY_API_KEY", &config.ably_api_key)?;
    let pg = match opened.postgres.clone() {
        Some(Ok(pg)) => pg,
        Some(Err(why)) => return Err(fail(why)),
        None => return Err(NoReport::Skip("DATABASE_URL is not set: no flag to watch".into())),
    };
    let db = match Db::of(pg, config.contracts.flags.clone()).await {
        Ok(db) => db,
        Err(e @ RolloutError::NoTables { .. }) => return Err(NoReport::Skip(e.to_string())),
        Err(e) => return Err(fail(e)),
    };
    let req = ObserveRequest { thin: ProbeState::Ok, ..ObserveRequest::default() };
    Ok(observe::observe_on(config, &req, &db).await.map_err(fail)?.checks)
}

/// The SLA's states, from the configured SLA (`[sla]`): P95 over the SLO is CRITICAL, over four
/// fifths of it a warning; the error budget spent is CRITICAL, half of it a warning; any
/// `sla:violation` CRITICAL, any `sla:warning` a warning.
pub fn sla_rules(sla: &crate::config::sla::Sla) -> Rules {
    let (slo, budget) = (sla.slo.value.as_millis() as u64, sla.error_budget.value);
    let warn = [format!("p95>{}ms", slo * 4 / 5), format!("error_rate>={}", budget / 2.0), "warnings>0".into()];
    let crit = [format!("p95>{slo}ms"), format!("error_rate>={budget}"), "violations>0".into()];
    let parse = |v: &[String]| v.iter().map(|r| r.parse::<crate::probe::Rule>()).collect::<Result<Vec<_>, _>>();
    // Built from a positive duration and a share from 0 to 1: they parse (a unit test builds them).
    Rules::new(&[], &[], parse(&warn).expect("SLA rules"), parse(&crit).expect("SLA rules"), SLA_METRICS)
        .expect("SLA metrics")
}

async fn sla(config: &Config, req: &SweepRequest, opened: &Connections) -> Result<Vec<Check>, NoReport> {
    use crate::analytics::{self, ReportRequest, SourceChoice, Window};
    if config.redis_url.is_none() && config.database_url.is_none() {
        return Err(NoReport::Skip("no mirror to read: set DATABASE_URL or REDIS_URL".into()));
    }
    let now = chrono::Utc::now();
    let since = now - chrono::Duration::from_std(req.sla_window).map_err(fail)?;
    let r = ReportRequest {
        window: Window::new(since, now, None).map_err(fail)?,
        source: SourceChoice::Auto,
        conversations: Vec::new(),
        slo: config.sla.slo.value,
        reply_timeout: config.sla.reply_timeout.value,
        active_window: Duration::from_secs(15 * 60),
        // The worst few name who was hurt in an SLA notice.
        top: 5,
        // A 15-minute window is small: one statement beats two partitions and their connections.
        partitions: 1,
        query_timeout: req.probe_timeout,
        include_test_traffic: false,
    };
    let report = analytics::run_on(config, &r, opened).await.map_err(fail)?;
    Ok(sla_checks(&report, &sla_rules(&config.sla)))
}

/// The SLA report as checks: reply percentiles in ms, the unanswered share, the counts.
pub fn sla_checks(r: &crate::analytics::SlaReport, rules: &Rules) -> Vec<Check> {
    let judged = r.messages.saturating_sub(r.pending);
    let error_rate = (judged > 0).then(|| r.unanswered as f64 / judged as f64);
    let stats = &r.reply_ms;
    let values = [
        ("p50", stats.p50, Unit::Ms),
        ("p90", stats.p90, Unit::Ms),
        ("p95", stats.p95, Unit::Ms),
        ("p99", stats.p99, Unit::Ms),
        ("error_rate", error_rate, Unit::Ratio),
        ("replies", Some(r.replies as f64), Unit::Count),
        ("violations", Some(r.sla_events.violations as f64), Unit::Count),
        ("warnings", Some(r.sla_events.warnings as f64), Unit::Count),
    ];
    let summary = format!("{} replies, {} unanswered", r.replies, r.unanswered);
    values
        .into_iter()
        .map(|(metric, v, unit)| match v {
            Some(v) if metric == "violations" && v > 0.0 => {
                rules.check(metric, v, unit, format!("{summary}; {}", worst_named(r)))
            }
            Some(v) => rules.check(metric, v, unit, summary.clone()),
            None => quiet(rules, metric, unit, "no replies in the window"),
        })
        .collect()
}

/// The window's worst conversations, so an SLA notice names who waited.
fn worst_named(r: &crate::analytics::SlaReport) -> String {
    let named: Vec<String> = r
        .worst
        .iter()
        .map(|w| {
            let slowest = w.slowest_ms.map(|ms| format!("slowest {:.1}s", ms / 1000.0));
            let unanswered = (w.unanswered > 0).then(|| format!("{} unanswered", w.unanswered));
            let what: Vec<String> = slowest.into_iter().chain(unanswered).collect();
            match &w.link {
                Some(l) => format!("{} ({}) {l}", w.conversation, what.join(", ")),
                None => format!("{} ({})", w.conversation, what.join(", ")),
            }
        })
        .collect();
    if named.is_empty() {
        "the conversations are not in the window's messages".to_string()
    } else {
        format!("worst conversations: {}", named.join("; "))
    }
}

/// A check with nothing to measure (no traffic): OK, without a value, so no rule can judge it.
fn quiet(rules: &Rules, metric: &str, unit: Unit, why: &str) -> Check {
    Check { state: ProbeState::Ok, ..rules.unknown(metric, unit, why) }
}

pub const SMOKE_WARN: &[&str] = &[];
pub const SMOKE_CRIT: &[&str] = &["p95>5s", "error_rate>=0.01"];

async fn smoke(config: &Config, req: &SweepRequest, chats: usize) -> Result<Vec<Check>, NoReport> {
    use crate::sla::{self, Schedule, Target, Transport};
    let target = Target::from_config(config)?;
    let opts = sla::SmokeOptions {
        target,
        chats,
        schedule: Schedule::Closed { concurrency: chats.clamp(1, 10) },
        turns: 1,
        scenario: Default::default(),
        transport: Transport::Sse,
        reply_timeout: req.probe_timeout.mul_f64(0.8),
        poll_interval: Duration::from_millis(250),
        thresholds: sla::threshold::defaults(),
        abort_on_fail: false,
        cleanup_allowed: true,
        timeout: config.timeout.value,
        contracts: config.contracts.clone(),
        max_driver_lag: Duration::from_millis(5),
        command: req.command.clone(),
        extras: false,
        soak: None,
    };
    let report = sla::smoke(opts, tokio_util::sync::CancellationToken::new(), None).await.map_err(fail)?;
    if let sla::Verdict::CouldNotRun(why) = report.verdict() {
        return Err(NoReport::Fail(why));
    }
    Ok(smoke_checks(&report))
}

/// A smoke report as checks.
pub fn smoke_checks(r: &crate::sla::SmokeReport) -> Vec<Check> {
    // Constant rules on this probe's metrics, parsed in a unit test.
    let rules = Rules::new(SMOKE_WARN, SMOKE_CRIT, Vec::new(), Vec::new(), SMOKE_METRICS).expect("constant rules");
    let detail = format!("{} chats, {} failed", r.chats.total, r.chats.failed);
    let mut out: Vec<Check> = match &r.reply_ms {
        Some(p) => [("p50", p.p50), ("p95", p.p95), ("p99", p.p99)]
            .into_iter()
            .map(|(m, v)| rules.check(m, v, Unit::Ms, detail.clone()))
            .collect(),
        None => ["p50", "p95", "p99"].into_iter().map(|m| rules.critical(m, Unit::Ms, "no reply arrived")).collect(),
    };
    out.push(rules.check("error_rate", r.error_rate, Unit::Ratio, detail));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_constant_rules_parse() {
        let rules = sla_rules(&crate::config::sla::Sla::default());
        assert_eq!(
            rules.crit.iter().map(|r| r.text.as_str()).collect::<Vec<_>>(),
            ["p95>5000ms", "error_rate>=0.01", "violations>0"]
        );
        assert!(Rules::new(SMOKE_WARN, SMOKE_CRIT, Vec::new(), Vec::new(), SMOKE_METRICS).is_ok());
    }

    #[tokio::test]
    async fn a_hanging_probe_is_critical_at_its_time_out_and_a_missing_setting_skips() {
        let hang = timed(Probe::AblyHealth, Duration::from_millis(50), async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(Vec::new())
        })
        .await;
        assert_eq!((hang.status, hang.state), (Status::TimedOut, ProbeState::Critical));
        assert!(hang.reason.unwrap().contains("50ms"));
        let skipped =
            timed(Probe::Sla, Duration::from_secs(1), async { Err(NoReport::Skip("no mirror".into())) }).await;
        assert_eq!((skipped.status, skipped.counts()), (Status::Skipped, false));
    }
}
