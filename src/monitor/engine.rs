//! From a sweep to decisions, with no input or output: each rule's verdict on the checks it
//! names, its state stepped, and the firing rules grouped into one alert per severity.

use std::collections::BTreeMap;

use serde::Serialize;

use super::machine::{RuleState, Transition};
use super::rules::{Eval, Rule, RuleSet, Severity};
use super::sweep::ProbeOutcome;
use crate::alert::{Alert, AlertSource};
use crate::exit::ProbeState;
use crate::probe::Unit;

/// What a sweep made of one rule.
#[derive(Debug, Clone, Serialize)]
pub struct RuleResult {
    pub name: String,
    pub check: String,
    pub condition: String,
    pub severity: Severity,
    pub verdict: Eval,
    /// The check's state and value the verdict was taken on (the failing one, when several
    /// checks report the metric).
    pub check_state: Option<ProbeState>,
    pub value: Option<f64>,
    pub unit: Option<Unit>,
    /// What the check said (the error, the conversations): a notice carries it.
    pub detail: Option<String>,
    pub failing_sweeps: u32,
    pub passing_sweeps: u32,
    #[serde(rename = "for")]
    pub for_sweeps: u32,
    pub recover: u32,
    pub firing: bool,
    /// When the current run of failing sweeps began.
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    pub transition: Transition,
    pub runbook: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// A silence covers it: judged and shown, not notified, until then.
    pub silenced_until: Option<chrono::DateTime<chrono::Utc>>,
    /// The silence that covers it (its id, matchers and why), or the one that ended while it fired.
    pub silence: Option<String>,
}

impl RuleResult {
    /// What a silence matches this rule by.
    pub fn subject(&self) -> crate::alert::silence::Subject {
        subject(&self.name, self.severity, &self.labels)
    }
}

/// Marks the rules a silence covers now, and the firing ones whose silence ended while they
/// fired (their next notice says so).
pub fn apply_silences(
    results: &mut [RuleResult],
    silences: &[crate::alert::silence::Silence],
    now: chrono::DateTime<chrono::Utc>,
) {
    for r in results.iter_mut() {
        let subject = r.subject();
        if let Some(s) = crate::alert::silence::covering(silences, &subject, now) {
            r.silenced_until = Some(s.until());
            r.silence = Some(format!("{} ({})", s.describe(), s.reason));
        } else if r.firing
            && let Some(s) = silences
                .iter()
                .filter(|s| s.matches(&subject) && s.until() <= now && r.since.is_none_or(|t| t < s.until()))
                .max_by_key(|s| s.until())
        {
            r.silence = Some(format!(
                "silence {} ended {} UTC with the rule still firing",
                s.id,
                s.until().format("%Y-%m-%d %H:%M")
            ));
        }
    }
}

/// Every rule a silence could name (for `alert silence` to refuse one that names nothing).
pub fn subjects(rules: &RuleSet) -> Vec<crate::alert::silence::Subject> {
    rules.rules.iter().map(|r| subject(&r.name, r.severity, &r.labels)).collect()
}

/// Rule `name` as a silence sees it: its name, severity, its severity's incident and labels.
fn subject(name: &str, severity: Severity, labels: &BTreeMap<String, String>) -> crate::alert::silence::Subject {
    crate::alert::silence::Subject {
        dedup_key: dedup_key(severity),
        severity: severity.as_str().to_string(),
        rule: Some(name.to_string()),
        labels: labels.clone(),
    }
}

/// The verdict of `rule` on the sweep: failing when any check of its metric fails the
/// condition; else unknown when any cannot be judged (or none was reported: a skipped, failed
/// or hung probe); else passing.
pub fn verdict<'a>(rule: &Rule, sweep: &'a [ProbeOutcome]) -> (Eval, Option<&'a crate::probe::Check>) {
    let worst = sweep
        .iter()
        .filter(|p| p.probe == rule.probe)
        .flat_map(|p| p.checks.iter())
        .filter(|c| c.name == rule.metric)
        .map(|c| (rule.condition.eval(c.state, c.value), c))
        // The first of the worst verdicts, with the check it was taken on.
        .reduce(|a, b| if b.0 > a.0 { b } else { a });
    match worst {
        Some((e, c)) => (e, Some(c)),
        None => (Eval::Unknown, None),
    }
}

/// Every rule judged and stepped; `states` is updated in place and keeps only the rules in force.
pub fn evaluate(
    rules: &RuleSet,
    sweep: &[ProbeOutcome],
    states: &mut BTreeMap<String, RuleState>,
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<RuleResult> {
    states.retain(|name, _| rules.rules.iter().any(|r| &r.name == name));
    rules
        .rules
        .iter()
        .map(|rule| {
            let (eval, check) = verdict(rule, sweep);
            let state = states.entry(rule.name.clone()).or_default();
            let transition = state.step(rule, eval, now);
            RuleResult {
                name: rule.name.clone(),
                check: format!("{}.{}", rule.probe.name(), rule.metric),
                condition: rule.condition.text.clone(),
                severity: rule.severity,
                verdict: eval,
                check_state: check.map(|c| c.state),
                value: check.and_then(|c| c.value),
                unit: check.map(|c| c.unit),
                detail: check.map(|c| c.detail.clone()).filter(|d| !d.is_empty()),
                failing_sweeps: state.failing,
                passing_sweeps: state.passing,
                for_sweeps: rule.for_sweeps,
                recover: rule.recover_sweeps,
                firing: state.firing,
                since: state.since,
                transition,
                runbook: rule.runbook.clone(),
                labels: rule.labels.clone(),
                silenced_until: None,
                silence: None,
            }
        })
        .collect()
}

/// The dedup key of a severity's incident: one incident per severity, shared by every host
/// that monitors the same stack through the same state.
pub fn dedup_key(severity: Severity) -> String {
    format!("broker-ops-monitor:{}", severity.as_str())
}

/// The alert for one severity: the rules firing at it (its members), or, when none fires, the
/// resolved notice for its incident (which says nothing when no incident is open). `None` while
/// no rule of the severity fires but one is failing towards it: the incident is not over (a
/// wrong key that turns `ably-unreachable` green fails `ably-key-refused` in the same sweep),
/// and a RESOLVED now would be followed by a new page two sweeps later.
pub fn group_alert(severity: Severity, results: &[RuleResult], source: &AlertSource) -> Option<Alert> {
    let of_severity = || results.iter().filter(|r| r.severity == severity);
    // A silenced rule pages nobody, and while it fires its incident is not over either.
    let firing: Vec<&RuleResult> = of_severity().filter(|r| r.firing && r.silenced_until.is_none()).collect();
    let name = severity.as_str();
    if firing.is_empty() {
        if of_severity().any(|r| r.verdict == Eval::Failing || r.firing) {
            return None;
        }
        let summary = format!("broker-ops monitor: no {name} rule is firing");
        return Some(Alert::new(crate::alert::Severity::Resolved, summary, source.clone(), Some(dedup_key(severity))));
    }
    let names: Vec<&str> = firing.iter().map(|r| r.name.as_str()).collect();
    let summary = format!(
        "broker-ops monitor: {} {name} rule{} firing: {}",
        firing.len(),
        if firing.len() == 1 { "" } else { "s" },
        names.join(", ")
    );
    let level = match severity {
        Severity::Warning => crate::alert::Severity::Warning,
        Severity::Critical => crate::alert::Severity::Critical,
    };
    let mut alert = Alert::new(level, summary, source.clone(), Some(dedup_key(severity)));
    alert.details = firing.iter().map(|r| line(r)).collect::<Vec<_>>().join("\n");
    alert.members = names.iter().map(|n| n.to_string()).collect();
    alert.links.runbook =
        firing.iter().filter_map(|r| r.runbook.as_deref()).find_map(|l| crate::alert::check_link(l).ok());
    for r in &firing {
        for (k, v) in &r.labels {
            alert.labels.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    alert.labels.insert("rules".into(), names.join(","));
    Some(alert)
}

/// One firing rule in a notice, readable on a phone: what, the value now against the limit and
/// what the check said (the error, Ably's code, the address), since when, and where to read.
fn line(r: &RuleResult) -> String {
    let now = match (r.check_state, r.value) {
        (Some(s), Some(v)) => {
            format!("{} at {}", s.label(), crate::probe::shown(Some(v), r.unit.unwrap_or(Unit::Count)))
        }
        (Some(s), None) => s.label().to_string(),
        (None, _) => "not reported this sweep".to_string(),
    };
    let detail = r.detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default();
    let since = r
        .since
        .map(|t| format!("since {} UTC ({} sweep(s))", t.format("%Y-%m-%d %H:%M"), r.failing_sweeps.max(1)))
        .unwrap_or_else(|| format!("failing {} sweep(s)", r.failing_sweeps));
    let runbook = match r.runbook.as_deref() {
        Some(l) if crate::alert::check_link(l).is_ok() => format!("\n  runbook: {l}"),
        Some(l) => format!("\n  runbook: {l} in broker-ops' docs (set RUNBOOK_BASE_URL for a link)"),
        None => String::new(),
    };
    let ended =
        r.silence.as_deref().filter(|_| r.silenced_until.is_none()).map(|s| format!(" ({s})")).unwrap_or_default();
    format!("- {} ({} {}): now {now}{detail}; {since}{ended}{runbook}", r.name, r.check, r.condition)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::rules::Probe;
    use crate::monitor::sweep::{ProbeOutcome, Status};
    use crate::probe::Rules;

    fn swept(probe: Probe, metric: &str, state: ProbeState, value: Option<f64>) -> ProbeOutcome {
        let rules = Rules::default();
        let mut c = rules.unknown(metric, Unit::Ms, "x");
        (c.state, c.value) = (state, value);
        ProbeOutcome { probe, status: Status::Ran, state, elapsed_ms: 1.0, reason: None, checks: vec![c] }
    }

    const RULES: &str = r#"
[[rules]]
name = "slow"
check = "sla.p95"
condition = "value > 5s"
severity = "critical"
for = 2
recover = 1
runbook = "https://wiki.example/sla"
labels = { team = "chat" }

[[rules]]
name = "down"
check = "ably_health.latency"
condition = "state >= CRITICAL"
severity = "critical"
"#;

    #[test]
    fn rules_fire_after_for_group_per_severity_and_resolve() {
        let set = RuleSet::parse(RULES, "t").unwrap();
        let src = AlertSource { host: "h".into(), command: "monitor".into() };
        let mut states = BTreeMap::new();
        states.insert("gone".to_string(), RuleState::default());
        let bad = vec![
            swept(Probe::Sla, "p95", ProbeState::Critical, Some(6100.0)),
            swept(Probe::AblyHealth, "latency", ProbeState::Ok, Some(20.0)),
        ];
        let first = evaluate(&set, &bad, &mut states, chrono::Utc::now());
        assert!(!states.contains_key("gone"), "a rule no longer in force is forgotten");
        assert_eq!(
            (first[0].verdict, first[0].firing, first[0].transition),
            (Eval::Failing, false, Transition::Unchanged)
        );
        // The rule is failing towards firing: its severity's incident is held, not resolved.
        assert_eq!(group_alert(Severity::Critical, &first, &src).map(|a| a.severity), None);
        let second = evaluate(&set, &bad, &mut states, chrono::Utc::now());
        assert_eq!((second[0].firing, second[0].transition), (true, Transition::Fired));
        let a = group_alert(Severity::Critical, &second, &src).unwrap();
        assert_eq!(a.summary, "broker-ops monitor: 1 critical rule firing: slow");
        assert_eq!(
            (a.members.clone(), a.dedup_key.as_str()),
            (vec!["slow".to_string()], "broker-ops-monitor:critical")
        );
        assert_eq!(a.links.runbook.as_deref(), Some("https://wiki.example/sla"));
        assert_eq!(a.labels["team"], "chat");
        assert!(a.details.contains("now CRITICAL at 6100ms"), "{}", a.details);
        assert_eq!(
            group_alert(Severity::Warning, &second, &src).map(|a| a.severity),
            Some(crate::alert::Severity::Resolved)
        );
        // Ably down too: the same incident gains a member.
        let worse = vec![bad[0].clone(), swept(Probe::AblyHealth, "latency", ProbeState::Critical, None)];
        let third = evaluate(&set, &worse, &mut states, chrono::Utc::now());
        assert_eq!(group_alert(Severity::Critical, &third, &src).unwrap().members, vec!["slow", "down"]);
        // A hung SLA probe (no checks) is unknown: the rule stays firing.
        let hung = vec![ProbeOutcome { checks: vec![], status: Status::TimedOut, ..bad[0].clone() }];
        let fourth = evaluate(&set, &hung, &mut states, chrono::Utc::now());
        assert_eq!((fourth[0].verdict, fourth[0].firing), (Eval::Unknown, true));
        let good = vec![swept(Probe::Sla, "p95", ProbeState::Ok, Some(900.0)), bad[1].clone()];
        let fifth = evaluate(&set, &good, &mut states, chrono::Utc::now());
        assert_eq!((fifth[0].transition, fifth[1].transition), (Transition::Resolved, Transition::Resolved));
    }

    #[test]
    fn the_failing_check_of_several_wins() {
        let set = RuleSet::parse(RULES, "t").unwrap();
        let mut two = swept(Probe::Sla, "p95", ProbeState::Ok, Some(100.0));
        two.checks.push(swept(Probe::Sla, "p95", ProbeState::Critical, Some(9000.0)).checks.remove(0));
        let (e, c) = verdict(&set.rules[0], std::slice::from_ref(&two));
        assert_eq!((e, c.and_then(|c| c.value)), (Eval::Failing, Some(9000.0)));
    }
}
