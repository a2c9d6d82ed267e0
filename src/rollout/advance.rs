//! `rollout advance`: the next step of the plan (10 → 50 → 100 %), only when every gate passes.
//! The gates read the audit (how long the current step has soaked) and the mirror: the
//! conversations with events in the window are split into the real-time and the polling cohort
//! by the same bucketing the app uses, and `sla report`'s library measures each cohort.

use std::io::{self, Write};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};

use super::ops::Planned;
use super::store::Db;
use super::switch::kill_switch;
use super::{Action, Change, Flag, RolloutError};
use crate::analytics::{ReportRequest, SlaReport, SourceChoice, Window};
use crate::config::Config;
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
    let next = req.steps.iter().copied().find(|s| *s > flag.percent);
    let mut gates = vec![step_gate(&flag, next, kill_switch(config, &flag.name))];
    let step_since = db.step_started(&flag.name).await?;
    gates.push(soak_gate(step_since, until, req.min_soak));
    let (on, off) = super::cohorts::split(config, &db, &flag, since, until).await?;
    let realtime = measure(config, req, &on, since, until).await?;
    let polling = measure(config, req, &off, since, until).await?;
    gates.extend(cohort_gates(req, &realtime, &polling));
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
                reason: format!("advance: every gate passed over {}", crate::duration::format_duration(req.window)),
            },
        )
    });
    Ok(AdvanceReport { flag, next, gates, realtime, polling, window: (since, until), planned, applied: None })
}

fn step_gate(flag: &Flag, next: Option<u8>, kill: bool) -> Gate {
    let (pass, detail) = match (kill, flag.enabled, next) {
        (true, _, _) => (false, "ENABLE_ABLY_REALTIME=false in the environment (kill switch)".to_string()),
        (_, false, _) => (false, "the flag is off: start with `rollout set --percent N`".to_string()),
        (_, true, None) => (false, format!("already at the last step ({} %)", flag.percent)),
        (_, true, Some(n)) => (true, format!("{} % -> {n} %", flag.percent)),
    };
    Gate { name: "step", pass, value: Some(f64::from(flag.percent)), limit: next.map(f64::from), detail }
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
    Gate { name: "smoke", pass, value, limit: None, detail }
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
            let r = if g.pass { style.good("PASS") } else { style.bad("FAIL") };
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
        }
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
        assert!(!step_gate(&Flag::new("F"), Some(10), false).pass, "an off flag is not advanced");
    }
}
