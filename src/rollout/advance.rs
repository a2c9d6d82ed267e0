//! `rollout advance`: the next step of the plan (10 → 50 → 100 %), only when every gate passes.
//! The gates read the audit (how long the current step has soaked) and the mirror: the
//! conversations with events in the window are split into the real-time and the polling cohort
//! by the same bucketing the app uses, and `sla report`'s library measures each cohort. Ably's
//! occupancy says whether the app follows the flag (`observed`); the plan's first production
//! step needs a staging soak report (`staging`). Only those two can be waived, with a reason
//! kept in the audit: the others are figures to fix or wait for, never to force.

use std::io::{self, Write};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};

use super::observe::ObserveRequest;
use super::ops::Planned;
use super::staging::StagingRequest;
use super::store::Db;
use super::switch::kill_switch;
use super::{Action, Change, Flag, RolloutError};
use crate::analytics::{ReportRequest, SlaReport, SourceChoice, Window};
use crate::config::Config;
use crate::exit::ProbeState;
use crate::output::{Render, Style, escape, table};

/// What `advance` was asked.
#[derive(Debug, Clone)]
pub struct AdvanceRequest {
    pub flag: String,
    pub steps: Vec<u8>,
    pub min_soak: Duration,
    pub window: Duration,
    pub slo: Duration,
    /// How much worse (a fraction, 0.01 = one point) the real-time cohort's breach rate may be.
    pub max_regression: f64,
    pub min_replies: u64,
    /// Also require three smoke chats on Ably (SSE) to pass against the configured target.
    pub smoke: bool,
    /// The `observed` gate's observation (its flag is this request's).
    pub observe: ObserveRequest,
    /// The `staging` gate's evidence, for the plan's first step.
    pub staging: StagingRequest,
    /// Gates waived, and why (kept in the audit).
    pub waive: Vec<Waivable>,
    pub waive_reason: Option<String>,
}

/// The gates that may be waived: evidence that can be missing for a reason a person can give.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Waivable {
    Staging,
    Observed,
}

impl Waivable {
    fn gate(self) -> &'static str {
        match self {
            Waivable::Staging => "staging",
            Waivable::Observed => "observed",
        }
    }
}

/// The product plan's steps.
pub const DEFAULT_STEPS: &str = "10,50,100";

/// One gate: its figure against its limit.
#[derive(Debug, Clone, Serialize)]
pub struct Gate {
    pub name: &'static str,
    pub pass: bool,
    pub value: Option<f64>,
    pub limit: Option<f64>,
    pub detail: String,
    /// Waived with this reason: it passes without its evidence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waived: Option<String>,
}

/// A cohort's figures over the window.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Cohort {
    pub conversations: usize,
    pub messages: u64,
    pub replies: u64,
    pub p95_ms: Option<f64>,
    pub over_slo: u64,
    pub unanswered: u64,
    /// (over the SLO + unanswered) / messages decided (answered or timed out).
    pub breach_rate: f64,
}

impl Cohort {
    fn of(n: usize, r: &SlaReport) -> Cohort {
        let decided = r.reply_ms.count + r.unanswered;
        let breaches = r.over_slo.count + r.unanswered;
        Cohort {
            conversations: n,
            messages: r.messages,
            replies: r.replies,
            p95_ms: r.reply_ms.p95,
            over_slo: r.over_slo.count,
            unanswered: r.unanswered,
            breach_rate: if decided == 0 { 0.0 } else { breaches as f64 / decided as f64 },
        }
    }
}

pub struct AdvanceReport {
    pub flag: Flag,
    pub next: Option<u8>,
    pub gates: Vec<Gate>,
    pub realtime: Cohort,
    pub polling: Cohort,
    pub window: (DateTime<Utc>, DateTime<Utc>),
    /// The change, when every gate passed (applied or, with `--dry-run`, not).
    planned: Option<Planned>,
    pub applied: Option<Flag>,
}

impl AdvanceReport {
    pub fn passed(&self) -> bool {
        self.gates.iter().all(|g| g.pass)
    }

    /// The change to make when every gate passed.
    pub fn take_planned(&mut self) -> Option<Planned> {
        self.planned.take()
    }
}

/// Evaluates the gates for the next step; plans the change when they all pass.
pub async fn evaluate(config: &Config, req: &AdvanceRequest) -> Result<AdvanceReport, RolloutError> {
    let db = Db::open(config).await?;
    let flag = db.flag(&req.flag).await?;
    let until = Utc::now();
    let since = until - chrono::Duration::from_std(req.window).unwrap_or(chrono::Duration::MAX);
    let next = next_step(&flag, &req.steps);
    let first = next.is_some() && next == first_step(&req.steps);
    check_waivers(req, first, next)?;
    let mut gates = vec![step_gate(&flag, next, kill_switch(config, &flag.name))];
    if first {
        gates.push(waivable(req, Waivable::Staging, || staging_gate(config, req, until)));
    }
    // Cohorts exist only while the flag serves someone: the first step from off is judged by
    // staging and observation alone.
    let (mut realtime, mut polling) = (Cohort::default(), Cohort::default());
    if flag.enabled && flag.percent > 0 {
        gates.push(soak_gate(db.step_started(&flag.name).await?, until, req.min_soak));
        let (on, off) = super::cohorts::split(config, &db, &flag, since, until).await?;
        realtime = measure(config, req, &on, since, until).await?;
        polling = measure(config, req, &off, since, until).await?;
        gates.extend(cohort_gates(req, &realtime, &polling));
    }
    let observed = match req.waive.contains(&Waivable::Observed) {
        true => waived(req, Waivable::Observed),
        false => observed_gate(config, req).await,
    };
    gates.push(observed);
    if req.smoke {
        gates.push(smoke_gate(config).await);
    }
    let planned = gates.iter().all(|g| g.pass).then(|| {
        Planned::new(
            db,
            Change {
                action: Action::Advance,
                enabled: true,
                percent: next.unwrap_or(flag.percent),
                before: flag.clone(),
                reason: audit_reason(req),
            },
        )
    });
    Ok(AdvanceReport { flag, next, gates, realtime, polling, window: (since, until), planned, applied: None })
}

/// The plan's first step that puts anybody on real-time.
fn first_step(steps: &[u8]) -> Option<u8> {
    steps.iter().copied().find(|s| *s > 0)
}

/// An off flag (never started, or rolled back) starts the plan again at its first step.
fn next_step(flag: &Flag, steps: &[u8]) -> Option<u8> {
    match flag.enabled {
        false => first_step(steps),
        true => steps.iter().copied().find(|s| *s > flag.percent),
    }
}

/// A waiver of a gate this step does not have is a mistake to point out, not to ignore.
fn check_waivers(req: &AdvanceRequest, first: bool, next: Option<u8>) -> Result<(), RolloutError> {
    if req.waive.contains(&Waivable::Staging) && !first {
        let step = next.map_or("none left".to_string(), |n| format!("{n} %"));
        return Err(RolloutError::Usage(format!(
            "--waive staging: the staging gate is the plan's first step's only (the next step is {step})"
        )));
    }
    if !req.waive.is_empty() && req.waive_reason.is_none() {
        return Err(RolloutError::Usage("--waive needs --reason TEXT: the audit keeps why".into()));
    }
    Ok(())
}

fn waivable(req: &AdvanceRequest, which: Waivable, judge: impl FnOnce() -> Gate) -> Gate {
    if req.waive.contains(&which) { waived(req, which) } else { judge() }
}

fn waived(req: &AdvanceRequest, which: Waivable) -> Gate {
    let reason = req.waive_reason.clone().unwrap_or_default();
    Gate {
        name: which.gate(),
        pass: true,
        value: None,
        limit: None,
        detail: format!("waived: {reason}"),
        waived: Some(reason),
    }
}

fn audit_reason(req: &AdvanceRequest) -> String {
    let mut reason = format!("advance: every gate passed over {}", crate::duration::format_duration(req.window));
    if !req.waive.is_empty() {
        let names: Vec<&str> = req.waive.iter().map(|w| w.gate()).collect();
        reason.push_str(&format!("; waived {}: {}", names.join(", "), req.waive_reason.as_deref().unwrap_or("")));
    }
    reason
}

fn staging_gate(config: &Config, req: &AdvanceRequest, now: DateTime<Utc>) -> Gate {
    let v = super::staging::judge(config, &req.staging, now);
    Gate {
        name: "staging",
        pass: v.pass,
        value: v.soaked.map(|d| d.as_secs_f64()),
        limit: Some(req.staging.min_soak.as_secs_f64()),
        detail: v.detail,
        waived: None,
    }
}

/// Whether customers hold what the flag says, as `rollout observe` sees it: only an OK
/// observation passes (too few active conversations to judge is not a pass).
async fn observed_gate(config: &Config, req: &AdvanceRequest) -> Gate {
    let observe = ObserveRequest { flag: req.flag.clone(), ..req.observe.clone() };
    let (pass, value, detail) = match super::observe::observe(config, &observe).await {
        Ok(report) => {
            let pass = report.state() == ProbeState::Ok;
            let told: Vec<&str> = report
                .checks
                .iter()
                .filter(|c| if pass { c.name.ends_with("_subscribed") } else { c.state != ProbeState::Ok })
                .map(|c| c.detail.as_str())
                .collect();
            let polling = report.checks.iter().find(|c| c.name == "polling_subscribed").and_then(|c| c.value);
            (pass, polling, told.join("; "))
        }
        Err(e) => (false, None, format!("could not observe: {e} (or --waive observed --reason TEXT)")),
    };
    Gate { name: "observed", pass, value, limit: Some(observe.polling_tolerance), detail, waived: None }
}

fn step_gate(flag: &Flag, next: Option<u8>, kill: bool) -> Gate {
    let (pass, detail) = match (kill, flag.enabled, next) {
        (true, _, _) => (false, "ENABLE_ABLY_REALTIME=false in the environment (kill switch)".to_string()),
        (_, _, None) => (false, format!("already at the last step ({} %)", flag.percent)),
        (_, false, Some(n)) => (true, format!("off -> {n} %: the plan's first step")),
        (_, true, Some(n)) => (true, format!("{} % -> {n} %", flag.percent)),
    };
    let value = Some(if flag.enabled { f64::from(flag.percent) } else { 0.0 });
    Gate { name: "step", pass, value, limit: next.map(f64::from), detail, waived: None }
}

async fn smoke_gate(config: &Config) -> Gate {
    let cmd = "broker-ops rollout advance --smoke";
    let (pass, value, detail) = match super::aftermath::smoke(config, cmd, crate::sla::Transport::Sse).await {
        Ok(r) => {
            let p95 = r.reply_ms.as_ref().map(|p| p.p95);
            (r.passed, p95, format!("{} of {} smoke chats on real-time answered", r.aggregate.ok, r.aggregate.total))
        }
        Err(e) => (false, None, format!("the smoke could not run: {e}")),
    };
    Gate { name: "smoke", pass, value, limit: None, detail, waived: None }
}

fn soak_gate(since: Option<DateTime<Utc>>, now: DateTime<Utc>, min: Duration) -> Gate {
    let soaked = since.map(|s| (now - s).to_std().unwrap_or_default());
    let fmt = crate::duration::format_duration;
    let detail = match (since, soaked) {
        (Some(s), Some(d)) => format!(
            "at this step since {} ({}), at least {} asked",
            s.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            fmt(d),
            fmt(min)
        ),
        _ => "no record of when this step began".into(),
    };
    Gate {
        name: "soak",
        pass: soaked.is_some_and(|d| d >= min),
        value: soaked.map(|d| d.as_secs_f64()),
        limit: Some(min.as_secs_f64()),
        detail,
        waived: None,
    }
}

/// The figures of the cohorts against the SLO, the polling cohort and the minimum of replies.
pub fn cohort_gates(req: &AdvanceRequest, rt: &Cohort, polling: &Cohort) -> Vec<Gate> {
    let slo_ms = req.slo.as_secs_f64() * 1000.0;
    let replies = Gate {
        name: "replies",
        pass: rt.replies >= req.min_replies,
        value: Some(rt.replies as f64),
        limit: Some(req.min_replies as f64),
        detail: if rt.replies == 0 {
            "no replies in the window in the real-time cohort: never promoted on missing data".into()
        } else {
            format!("{} replies in {} real-time conversations", rt.replies, rt.conversations)
        },
        waived: None,
    };
    let p95 = Gate {
        name: "p95",
        pass: rt.p95_ms.is_some_and(|p| p <= slo_ms),
        value: rt.p95_ms,
        limit: Some(slo_ms),
        detail: match rt.p95_ms {
            Some(p) => format!("real-time reply P95 {p:.0} ms against the SLO {slo_ms:.0} ms"),
            None => "no real-time reply to measure".into(),
        },
        waived: None,
    };
    let diff = rt.breach_rate - polling.breach_rate;
    let regression = Gate {
        name: "regression",
        pass: diff <= req.max_regression + 1e-12,
        value: Some(diff),
        limit: Some(req.max_regression),
        detail: format!(
            "breach rate real-time {:.2} % vs polling {:.2} %{}",
            rt.breach_rate * 100.0,
            polling.breach_rate * 100.0,
            if polling.messages == 0 { " (no polling traffic: judged against 0)" } else { "" }
        ),
        waived: None,
    };
    vec![replies, p95, regression]
}

async fn measure(
    config: &Config,
    req: &AdvanceRequest,
    ids: &[String],
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Cohort, RolloutError> {
    if ids.is_empty() {
        return Ok(Cohort::default());
    }
    let window = Window::new(since, until, None).map_err(RolloutError::Usage)?;
    let report_req = ReportRequest {
        window,
        source: SourceChoice::Postgres,
        conversations: Vec::new(),
        slo: req.slo,
        reply_timeout: Duration::from_secs(60),
        active_window: Duration::from_secs(300),
        top: 0,
        partitions: 2,
        query_timeout: Duration::from_secs(300),
        include_test_traffic: false,
    };
    let r = super::cohorts::report(config, &report_req, ids).await?;
    Ok(Cohort::of(ids.len(), &r))
}

impl Render for AdvanceReport {
    fn table(&self, w: &mut dyn Write, style: Style) -> io::Result<()> {
        let mut t = table(&["gate", "value", "limit", "result", "detail"]);
        let num = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{}", (v * 1000.0).round() / 1000.0));
        for g in &self.gates {
            let r = match (g.pass, &g.waived) {
                (true, Some(_)) => style.bad("WAIVED"),
                (true, None) => style.good("PASS"),
                (false, _) => style.bad("FAIL"),
            };
            t.add_row(vec![g.name.to_string(), num(g.value), num(g.limit), r, escape(&g.detail)]);
        }
        writeln!(w, "{t}")?;
        let f = &self.flag;
        match (&self.applied, self.passed(), self.next) {
            (Some(a), _, _) => {
                writeln!(w, "{}: advanced {} % -> {} % (version {})", escape(&f.name), f.percent, a.percent, a.version)
            }
            (None, true, Some(n)) => writeln!(
                w,
                "{}: every gate passes: {} % -> {n} % (dry run: nothing changed)",
                escape(&f.name),
                f.percent
            ),
            _ => {
                let failed: Vec<&str> = self.gates.iter().filter(|g| !g.pass).map(|g| g.name).collect();
                writeln!(w, "{}: not advanced: {} failed; nothing changed", escape(&f.name), failed.join(", "))
            }
        }
    }

    fn json(&self) -> Value {
        json!({"schema_version": 1, "kind": "rollout_advance", "flag": self.flag.name, "percent": self.flag.percent,
               "next": self.next, "pass": self.passed(), "applied": self.applied.as_ref().map(Flag::state),
               "window": {"since": self.window.0, "until": self.window.1}, "gates": self.gates,
               "cohorts": {"realtime": self.realtime, "polling": self.polling}})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> AdvanceRequest {
        AdvanceRequest {
            flag: "F".into(),
            steps: vec![10, 50, 100],
            min_soak: Duration::from_secs(86_400),
            window: Duration::from_secs(3600),
            slo: Duration::from_secs(5),
            max_regression: 0.01,
            min_replies: 100,
            smoke: false,
            observe: ObserveRequest::default(),
            staging: StagingRequest::default(),
            waive: Vec::new(),
            waive_reason: None,
        }
    }

    #[test]
    fn waivers_are_for_the_gates_a_step_has_and_need_a_reason() {
        let mut r = AdvanceRequest { waive: vec![Waivable::Staging], ..req() };
        assert!(check_waivers(&r, false, Some(50)).unwrap_err().to_string().contains("first step"));
        assert!(check_waivers(&r, true, Some(10)).unwrap_err().to_string().contains("--reason"));
        r.waive_reason = Some("staging is down for a week; 10 % is our staging".into());
        assert!(check_waivers(&r, true, Some(10)).is_ok());
        assert!(audit_reason(&r).ends_with("; waived staging: staging is down for a week; 10 % is our staging"));
        let g = waivable(&r, Waivable::Staging, || unreachable!("a waived gate is not judged"));
        assert!(g.pass && g.waived.is_some());
    }

    #[test]
    fn gates_judge_the_figures() {
        let healthy =
            Cohort { replies: 500, p95_ms: Some(2100.0), breach_rate: 0.01, messages: 500, ..Cohort::default() };
        let polling =
            Cohort { replies: 4000, p95_ms: Some(2500.0), breach_rate: 0.012, messages: 4000, ..Cohort::default() };
        assert!(cohort_gates(&req(), &healthy, &polling).iter().all(|g| g.pass));
        let slow = Cohort { p95_ms: Some(6200.0), breach_rate: 0.09, ..healthy.clone() };
        let g = cohort_gates(&req(), &slow, &polling);
        assert_eq!(g.iter().filter(|g| !g.pass).map(|g| g.name).collect::<Vec<_>>(), ["p95", "regression"]);
        let none = Cohort::default();
        let g = cohort_gates(&req(), &none, &polling);
        assert!(!g[0].pass && g[0].detail.contains("no replies in the window"));
        let now = Utc::now();
        assert!(!soak_gate(Some(now - chrono::Duration::hours(3)), now, req().min_soak).pass);
        assert!(soak_gate(Some(now - chrono::Duration::hours(25)), now, req().min_soak).pass);
        assert!(!soak_gate(None, now, req().min_soak).pass);
        let at_100 = Flag { enabled: true, percent: 100, ..Flag::new("F") };
        assert!(step_gate(&at_100, None, false).detail.contains("last step"));
        let off = Flag::new("F");
        assert_eq!(next_step(&off, &req().steps), Some(10), "an off flag starts the plan again at its first step");
        assert!(step_gate(&off, Some(10), false).pass);
        assert!(!step_gate(&off, Some(10), true).pass, "never past the kill switch");
        let at_10 = Flag { enabled: true, percent: 10, ..Flag::new("F") };
        assert_eq!(next_step(&at_10, &req().steps), Some(50));
        assert_eq!(first_step(&[0, 10, 50]), Some(10), "a 0 % step puts nobody on real-time");
    }
}
