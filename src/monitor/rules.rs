//! Monitor rules, from a TOML file (`[[rules]]` tables) or the built-in default set: which check
//! (`<probe>.<metric>`), what condition (`state >= CRITICAL`, `value > 5s`), how severe, how many
//! consecutive failing sweeps before it fires (`for`) and passing ones before it resolves
//! (`recover`). A rule that names an unknown check, a bad condition or duration, or `for = 0` is
//! refused with its line and column: a typo must never leave a rule silently off.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::exit::ProbeState;
use crate::probe::Cmp;

/// The probes a rule can name, with the metrics each reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Probe {
    AblyHealth,
    AblyBacklog,
    Sla,
    MirrorCanary,
    Smoke,
    Rollout,
}

/// What the SLA of the last window and a short smoke report, as checks.
pub const SLA_METRICS: &[&str] = &["p50", "p90", "p95", "p99", "error_rate", "replies", "violations", "warnings"];
pub const SMOKE_METRICS: &[&str] = &["p50", "p95", "p99", "error_rate"];

impl Probe {
    pub const ALL: [Probe; 6] =
        [Probe::AblyHealth, Probe::AblyBacklog, Probe::Sla, Probe::MirrorCanary, Probe::Smoke, Probe::Rollout];

    pub fn name(self) -> &'static str {
        match self {
            Probe::AblyHealth => "ably_health",
            Probe::AblyBacklog => "ably_backlog",
            Probe::Sla => "sla",
            Probe::MirrorCanary => "mirror_canary",
            Probe::Smoke => "smoke",
            Probe::Rollout => "rollout",
        }
    }

    pub fn metrics(self) -> &'static [&'static str] {
        match self {
            Probe::AblyHealth => crate::probe::health::METRICS,
            Probe::AblyBacklog => crate::probe::backlog::METRICS,
            Probe::Sla => SLA_METRICS,
            Probe::MirrorCanary => crate::mirror::canary::METRICS,
            Probe::Smoke => SMOKE_METRICS,
            Probe::Rollout => crate::rollout::observe::METRICS,
        }
    }

    fn parse(s: &str) -> Option<Probe> {
        Probe::ALL.into_iter().find(|p| p.name() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// What a condition compares with: the check's state, or its value (in the check's unit).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Limit {
    State(ProbeState),
    Value(f64),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub cmp: Cmp,
    pub limit: Limit,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub name: String,
    pub probe: Probe,
    pub metric: String,
    pub condition: Condition,
    pub severity: Severity,
    pub for_sweeps: u32,
    pub recover_sweeps: u32,
    pub labels: BTreeMap<String, String>,
    pub runbook: Option<String>,
}

/// One sweep's verdict on a rule: the condition holds, does not, or cannot be judged (the check
/// was UNKNOWN, or has no value), which counts neither way. Ordered by how much it says about
/// a problem: passing, unknown, failing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Eval {
    Passing,
    Unknown,
    Failing,
}

impl Condition {
    /// Parses `state >= CRITICAL` or `value > 5s` for `metric` (durations in the metric's unit,
    /// as the probes' own rules take them; `5%` is 0.05).
    pub fn parse(text: &str, metric: &str) -> Result<Condition, String> {
        let t = text.trim();
        let e = crate::compare::Expr::parse(t).ok_or_else(|| {
            format!("condition {t:?}: expected `state >= CRITICAL` or `value > 1000` (>, >=, <, <=, ==)")
        })?;
        let cmp = e.cmp;
        let limit = match e.left {
            "state" => Limit::State(
                crate::compare::state(e.right).map_err(|m| format!("condition {t:?}: {}", e.at(e.right, &m)))?,
            ),
            "value" => Limit::Value(
                e.limit(crate::compare::Kind::of_metric(metric), metric)
                    .map_err(|m| format!("condition {t:?}: {m}"))?,
            ),
            other => {
                return Err(format!(
                    "condition {t:?}: {}",
                    e.at(other, &format!("{other:?} is neither `state` nor `value`"))
                ));
            }
        };
        Ok(Condition { cmp, limit, text: t.to_string() })
    }

    /// The verdict on a check's state and value.
    pub fn eval(&self, state: ProbeState, value: Option<f64>) -> Eval {
        let (a, b) = match (self.limit, state, value) {
            // A condition that names UNKNOWN is about it: `state >= UNKNOWN` holds for UNKNOWN
            // and CRITICAL (the order of severity), so "could not reach it" can fire a rule.
            (Limit::State(limit @ ProbeState::Unknown), _, _) => (severity(state), severity(limit)),
            (_, ProbeState::Unknown, _) | (Limit::Value(_), _, None) => return Eval::Unknown,
            (Limit::State(limit), _, _) => (severity(state), severity(limit)),
            (Limit::Value(limit), _, Some(v)) => (v, limit),
        };
        if self.cmp.holds(a, b) { Eval::Failing } else { Eval::Passing }
    }
}

/// A state's place in the order of severity (OK, WARNING, UNKNOWN, CRITICAL: `ProbeState`
/// is declared in that order).
fn severity(s: ProbeState) -> f64 {
    f64::from(s as u8)
}

/// A refused rules file: where and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{origin}:{line}:{column}: {message}")]
pub struct RulesError {
    pub origin: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// A rule as written in the file, every value with its place.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: toml::Spanned<String>,
    check: toml::Spanned<String>,
    condition: toml::Spanned<String>,
    severity: toml::Spanned<String>,
    #[serde(rename = "for", default)]
    for_sweeps: Option<toml::Spanned<i64>>,
    #[serde(default)]
    recover: Option<toml::Spanned<i64>>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    runbook: Option<toml::Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    rules: Vec<RawRule>,
}

/// The rules in force.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleSet {
    pub rules: Vec<Rule>,
    /// Where they came from: a file's path, or `built-in`.
    pub origin: String,
}

/// The default set (each threshold explained next to it in the file).
pub const DEFAULT_RULES: &str = include_str!("default_rules.toml");

impl RuleSet {
    /// The built-in set under the product's default SLA.
    pub fn defaults() -> RuleSet {
        Self::defaults_with(&crate::config::sla::Sla::default(), None)
    }

    /// The built-in set under the configured SLA (`[sla]`): its `{slo}` and `{error_budget}`
    /// are the SLA's, so cron judges customers by the numbers CI and the rollout use; its
    /// runbook paths made links under `base` (`RUNBOOK_BASE_URL`) when there is one.
    pub fn defaults_with(sla: &crate::config::sla::Sla, base: Option<&url::Url>) -> RuleSet {
        let text = DEFAULT_RULES
            .replace("{slo}", &format!("{}ms", sla.slo.value.as_millis()))
            .replace("{error_budget}", &crate::config::sla::percent(sla.error_budget.value));
        // A duration and a share already checked fill a set parsed in a unit test.
        let paths = base.map_or(Runbooks::Keep, Runbooks::Under);
        RuleSet::parse_in(&text, "built-in", &paths).expect("the built-in rules parse")
    }

    /// The rules of the file at `path` (its path, as given, is their origin in messages); a
    /// runbook given as a path is made a link under `base`, and refused without one (a path in
    /// a notice opens nothing on a phone).
    pub fn load(path: &std::path::Path, base: Option<&url::Url>) -> Result<RuleSet, String> {
        let shown = crate::output::escape(&path.display().to_string());
        let text = std::fs::read_to_string(path).map_err(|e| format!("rules file {shown}: {e}"))?;
        let paths = base.map_or(Runbooks::Refuse, Runbooks::Under);
        RuleSet::parse_in(&text, &shown, &paths).map_err(|e| e.to_string())
    }

    /// Parses rules keeping runbook paths as written.
    pub fn parse(text: &str, origin: &str) -> Result<RuleSet, RulesError> {
        Self::parse_in(text, origin, &Runbooks::Keep)
    }

    fn parse_in(text: &str, origin: &str, paths: &Runbooks) -> Result<RuleSet, RulesError> {
        let at = |span: std::ops::Range<usize>, message: String| {
            let (line, column) = line_col(text, span.start);
            RulesError { origin: origin.to_string(), line, column, message }
        };
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            let message = e.message().to_string();
            at(e.span().unwrap_or(0..0), message)
        })?;
        let mut rules = Vec::with_capacity(raw.rules.len());
        let mut names = std::collections::HashSet::new();
        for r in raw.rules {
            if r.name.get_ref().trim().is_empty() || !names.insert(r.name.get_ref().clone()) {
                return Err(at(r.name.span(), format!("rule name {:?} is empty or used twice", r.name.get_ref())));
            }
            let (probe, metric) = check(r.check.get_ref()).map_err(|m| at(r.check.span(), m))?;
            let condition = Condition::parse(r.condition.get_ref(), &metric).map_err(|m| at(r.condition.span(), m))?;
            let severity = match r.severity.get_ref().as_str() {
                "warning" => Severity::Warning,
                "critical" => Severity::Critical,
                other => {
                    return Err(at(r.severity.span(), format!("severity {other:?}: expected warning or critical")));
                }
            };
            let sweeps = |v: &Option<toml::Spanned<i64>>, key: &str| -> Result<u32, RulesError> {
                match v {
                    None => Ok(1),
                    Some(s) => u32::try_from(*s.get_ref()).ok().filter(|n| *n >= 1).ok_or_else(|| {
                        at(s.span(), format!("{key} = {}: must be a whole number of sweeps, 1 or more", s.get_ref()))
                    }),
                }
            };
            rules.push(Rule {
                name: r.name.into_inner(),
                probe,
                metric,
                condition,
                severity,
                for_sweeps: sweeps(&r.for_sweeps, "for")?,
                recover_sweeps: sweeps(&r.recover, "recover")?,
                labels: r.labels,
                runbook: r.runbook.map(|l| runbook(l.get_ref(), paths).map_err(|m| at(l.span(), m))).transpose()?,
            });
        }
        if rules.is_empty() {
            return Err(at(0..0, "no [[rules]] in the file: a monitor without rules pages nobody".into()));
        }
        Ok(RuleSet { rules, origin: origin.to_string() })
    }
}

/// What becomes of a runbook written as a path.
enum Runbooks<'a> {
    /// Kept as written (the built-in set with no base: shown as a path in broker-ops' docs).
    Keep,
    /// Made a link under the base (`RUNBOOK_BASE_URL`).
    Under(&'a url::Url),
    /// Refused: a rules file's path with no base would open nothing.
    Refuse,
}

/// A runbook is an http(s) link (it becomes a clickable link in Slack and the mail; a
/// `javascript:` or `data:` one would be a trap) or a path, made a link under the base.
fn runbook(text: &str, paths: &Runbooks) -> Result<String, String> {
    let t = text.trim();
    let scheme = t.split_once(':').filter(|(s, _)| !s.contains('/') && !s.contains('#'));
    match (scheme, paths) {
        (Some(_), _) => crate::alert::check_link(t).map_err(|e| format!("runbook {t:?}: {e}")),
        (None, _) if t.is_empty() || t.chars().any(char::is_control) => {
            Err(format!("runbook {t:?}: not a link or a path"))
        }
        (None, Runbooks::Keep) => Ok(t.to_string()),
        (None, Runbooks::Under(base)) => {
            let link = format!("{}/{}", base.as_str().trim_end_matches('/'), t.trim_start_matches('/'));
            crate::alert::check_link(&link).map_err(|e| format!("runbook {t:?} under RUNBOOK_BASE_URL: {e}"))
        }
        (None, Runbooks::Refuse) => Err(format!(
            "runbook {t:?} is a path, and RUNBOOK_BASE_URL is not set: a notice could not link it \
             (set RUNBOOK_BASE_URL to where your docs are served, or write an https:// link)"
        )),
    }
}

/// `ably_health.latency` into its probe and metric.
fn check(s: &str) -> Result<(Probe, String), String> {
    let probes = || Probe::ALL.map(Probe::name).join(", ");
    let (p, m) =
        s.split_once('.').ok_or_else(|| format!("check {s:?}: expected <probe>.<check>, probes {}", probes()))?;
    let probe = Probe::parse(p).ok_or_else(|| format!("check {s:?}: unknown probe {p:?} (probes: {})", probes()))?;
    if !probe.metrics().contains(&m) {
        return Err(format!("check {s:?}: {p} has no check {m:?} (it has {})", probe.metrics().join(", ")));
    }
    Ok((probe, m.to_string()))
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_rules_parse_and_name_real_checks() {
        let d = RuleSet::defaults();
        let p95 = d.rules.iter().find(|r| r.name == "sla-p95-over-budget").unwrap();
        assert_eq!(p95.condition.text, "value > 5000ms", "the SLA's slo filled in");
        assert!(d.rules.len() >= 5, "{d:?}");
        for r in &d.rules {
            assert!(r.probe.metrics().contains(&r.metric.as_str()), "{r:?}");
            let anchor = format!("docs/monitor.md#{}", r.name);
            assert_eq!(r.runbook.as_deref(), Some(anchor.as_str()), "{r:?}");
            let heading = format!("\n### {}\n", r.name);
            assert!(
                include_str!("../../docs/monitor.md").contains(&heading),
                "docs/monitor.md has no runbook entry {heading:?}"
            );
        }
    }

    #[test]
    fn what_other_commands_refuse_the_rules_refuse_too() {
        let rule = |extra: &str| {
            format!("[[rules]]\nname = \"r\"\ncheck = \"ably_backlog.waiting\"\n{extra}\nseverity = \"warning\"\n")
        };
        let e = RuleSet::parse(&rule("condition = \"value > 5\"\nrunbook = \"javascript:alert(1)\""), "t").unwrap_err();
        assert!(e.message.contains("not javascript:") && e.line == 5, "{e}");
        assert!(RuleSet::parse(&rule("condition = \"value > 5\"\nrunbook = \"https://wiki.example/q\""), "t").is_ok());
        let e = RuleSet::parse(&rule("condition = \"value > 5s\""), "t").unwrap_err();
        assert!(e.message.contains("is a duration, but waiting is not"), "{e}");
        assert!(Condition::parse("value > 5%", "p95").unwrap_err().contains("is a percentage, but p95 is not a share"));
        assert!(Condition::parse("value > 5%", "memory_used").is_ok());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("r.toml");
        std::fs::write(&file, rule("condition = \"value > 5\"\nrunbook = \"docs/q.md#x\"")).unwrap();
        let e = RuleSet::load(&file, None).unwrap_err();
        assert!(e.contains("RUNBOOK_BASE_URL is not set"), "{e}");
        let base = url::Url::parse("https://git.example/ops/broker-ops/blob/main/").unwrap();
        let set = RuleSet::load(&file, Some(&base)).unwrap();
        assert_eq!(set.rules[0].runbook.as_deref(), Some("https://git.example/ops/broker-ops/blob/main/docs/q.md#x"));
        let built_in = RuleSet::defaults_with(&Default::default(), Some(&base));
        assert!(built_in.rules.iter().all(|r| r.runbook.as_deref().unwrap().starts_with("https://git.example/")));
        let e = RuleSet::parse("", "t").unwrap_err();
        assert!(e.message.contains("a monitor without rules pages nobody"), "{e}");
    }

    #[test]
    fn conditions_on_state_and_value_with_units() {
        let c = Condition::parse("value > 5s", "p95").unwrap();
        assert_eq!(c.limit, Limit::Value(5000.0), "percentiles are in ms");
        assert_eq!(Condition::parse("value > 2s", "skew").unwrap().limit, Limit::Value(2.0), "skews in s");
        assert_eq!(Condition::parse("value >= 5%", "error_rate").unwrap().limit, Limit::Value(0.05));
        assert_eq!(c.eval(ProbeState::Ok, Some(5200.0)), Eval::Failing);
        assert_eq!(c.eval(ProbeState::Ok, Some(4800.0)), Eval::Passing);
        assert_eq!(c.eval(ProbeState::Ok, None), Eval::Unknown);
        let s = Condition::parse("state >= CRITICAL", "latency").unwrap();
        assert_eq!(s.eval(ProbeState::Critical, None), Eval::Failing);
        assert_eq!(s.eval(ProbeState::Warning, Some(1.0)), Eval::Passing);
        assert_eq!(s.eval(ProbeState::Unknown, Some(1.0)), Eval::Unknown, "a hung check is no verdict");
        let u = Condition::parse("state >= UNKNOWN", "latency").unwrap();
        assert_eq!(u.eval(ProbeState::Unknown, None), Eval::Failing, "a condition naming UNKNOWN judges it");
        assert_eq!(u.eval(ProbeState::Critical, Some(2000.0)), Eval::Failing);
        assert_eq!(u.eval(ProbeState::Warning, Some(400.0)), Eval::Passing);
        let only = Condition::parse("state == UNKNOWN", "messages").unwrap();
        assert_eq!(only.eval(ProbeState::Unknown, None), Eval::Failing, "refused: we could not check");
        assert_eq!(only.eval(ProbeState::Critical, None), Eval::Passing, "down is another rule's");
        for bad in ["value = 3", "state >= BROKEN", "p95 > 5s", "value > soon", "value > inf"] {
            assert!(Condition::parse(bad, "p95").is_err(), "{bad}");
        }
    }

    #[test]
    fn a_bad_rules_file_is_refused_with_line_and_column() {
        let err = |text: &str| RuleSet::parse(text, "rules.toml").unwrap_err();
        let base =
            "[[rules]]\nname = \"x\"\ncheck = \"sla.p95\"\ncondition = \"value > 5s\"\nseverity = \"critical\"\n";
        assert!(RuleSet::parse(base, "rules.toml").is_ok());
        let e = err(&base.replace("sla.p95", "sla.p96"));
        assert_eq!((e.line, e.column), (3, 9), "{e}");
        assert!(e.to_string().starts_with("rules.toml:3:9: check \"sla.p96\": sla has no check \"p96\""), "{e}");
        let e = err(&base.replace("value > 5s", "value > 5 fortnights"));
        assert_eq!((e.line, e.column), (4, 13), "{e}");
        let e = err(&format!("{base}for = 0\n"));
        assert_eq!(e.line, 6, "{e}");
        assert!(e.message.contains("for = 0"), "{e}");
        let e = err(&format!("{base}colour = \"red\"\n"));
        assert_eq!(e.line, 6, "{e}");
        assert!(err(&base.replace("critical", "page")).message.contains("warning or critical"));
        assert!(err(&format!("{base}{base}")).message.contains("used twice"));
        assert_eq!(err("[[rules]\n").line, 1);
    }
}
