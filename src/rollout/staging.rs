//! The staging evidence `rollout advance` asks for before the plan's first production step: a
//! soak report (`sla smoke --duration`, JSON) that passed, ran at least the soak asked, is
//! recent, and was not run against the production target. What it proves: the same build held
//! the SLA under a day of customer-shaped traffic somewhere that was not production.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use url::Url;

use crate::config::Config;
use crate::duration::format_duration;

/// A soak report is a few MiB at most (one summary a minute for a day is about 1 MiB).
const MAX_REPORT_BYTES: u64 = 64 << 20;

/// What the staging gate asks of the report.
#[derive(Debug, Clone)]
pub struct StagingRequest {
    pub report: Option<PathBuf>,
    /// The soak must have run at least this long.
    pub min_soak: Duration,
    /// And have ended at most this long ago.
    pub max_age: Duration,
}

impl Default for StagingRequest {
    fn default() -> Self {
        StagingRequest {
            report: None,
            min_soak: Duration::from_secs(24 * 3600),
            max_age: Duration::from_secs(14 * 24 * 3600),
        }
    }
}

/// The verdict on the report: the soak's length when it could be read, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub pass: bool,
    pub soaked: Option<Duration>,
    pub detail: String,
}

impl Verdict {
    fn fail(soaked: Option<Duration>, detail: String) -> Verdict {
        Verdict { pass: false, soaked, detail }
    }
}

/// The fields of a `sla smoke` JSON report the gate reads (the rest is not its business).
#[derive(Debug, Deserialize)]
struct Report {
    kind: String,
    schema_version: u32,
    passed: bool,
    target: String,
    started_at: DateTime<Utc>,
    duration_ms: f64,
    aborted: Option<String>,
    interrupted: bool,
    soak: Option<serde_json::Value>,
}

/// Judges the staging report named in `req` against the production target in `config`.
pub fn judge(config: &Config, req: &StagingRequest, now: DateTime<Utc>) -> Verdict {
    let Some(path) = &req.report else {
        return Verdict::fail(
            None,
            "no staging soak report: run `sla smoke --duration 24h -o json` against staging and pass it with \
             --staging-report FILE (or --waive staging --reason TEXT)"
                .into(),
        );
    };
    let report = match read(path) {
        Ok(r) => r,
        Err(why) => return Verdict::fail(None, format!("staging report {}: {why}", path.display())),
    };
    let soaked = Duration::try_from_secs_f64(report.duration_ms.max(0.0) / 1000.0).unwrap_or(Duration::MAX);
    let name = path.display();
    let ended = report.started_at + chrono::Duration::from_std(soaked).unwrap_or(chrono::Duration::MAX);
    let age = (now - ended).to_std().unwrap_or_default();
    let failure = if !report.passed || report.aborted.is_some() || report.interrupted {
        let how = match (&report.aborted, report.interrupted) {
            (Some(a), _) => format!("aborted: {a}"),
            (None, true) => "interrupted".into(),
            (None, false) => "a threshold failed".into(),
        };
        Some(format!("staging report {name}: the soak failed ({how})"))
    } else if report.soak.is_none() {
        Some(format!("staging report {name}: not a soak (a smoke without --duration)"))
    } else if soaked < req.min_soak {
        Some(format!(
            "staging report {name}: the soak ran {}, shorter than the {} asked (--min-staging-soak)",
            format_duration(soaked),
            format_duration(req.min_soak)
        ))
    } else if age > req.max_age {
        Some(format!(
            "staging report {name}: the soak ended {} ago, longer than {} (--max-staging-age): soak this build again",
            format_duration(age),
            format_duration(req.max_age)
        ))
    } else {
        production_target(config, &report.target).err().map(|why| format!("staging report {name}: {why}"))
    };
    match failure {
        Some(detail) => Verdict::fail(Some(soaked), detail),
        None => Verdict {
            pass: true,
            soaked: Some(soaked),
            detail: format!(
                "staging soak of {} against {} passed, ended {} ago",
                format_duration(soaked),
                report.target,
                format_duration(age)
            ),
        },
    }
}

/// Reads the report: a regular file (never a FIFO that would hold the command), bounded, JSON
/// of `sla smoke`'s schema version 1.
fn read(path: &Path) -> Result<Report, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read it: {e}"))?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > MAX_REPORT_BYTES {
        return Err(format!("{} bytes, more than a soak report can be", meta.len()));
    }
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_REPORT_BYTES).read_to_string(&mut text))
        .map_err(|e| format!("cannot read it: {e}"))?;
    let report: Report = serde_json::from_str(&text)
        .map_err(|e| format!("not a `sla smoke -o json` report ({e}): unreadable as evidence"))?;
    if report.kind != "sla_smoke" || report.schema_version != 1 {
        return Err(format!(
            "a {:?} report of schema version {}, not `sla smoke`'s (sla_smoke, 1)",
            report.kind, report.schema_version
        ));
    }
    Ok(report)
}

/// Refuses a report whose target (or one of a merged report's targets) is the configured
/// Chatwoot: staging evidence has to come from somewhere else.
fn production_target(config: &Config, targets: &str) -> Result<(), String> {
    let Some(production) = &config.chatwoot_base_url else {
        return Err("CHATWOOT_BASE_URL is not set: cannot tell the report's target from production's".into());
    };
    for t in targets.split(", ") {
        // `sla smoke --sandbox` labels its target so: a soak of the stand-ins measures this
        // tool, not the build that staging runs.
        if let Some(base) = t.strip_prefix("sandbox ") {
            return Err(format!(
                "the soak ran against the built-in sandbox ({base}), which stands in for Chatwoot and Ably: not \
                 staging evidence"
            ));
        }
        let Ok(url) = Url::parse(t) else {
            return Err(format!("the report's target {t:?} is not a URL"));
        };
        if same_place(&url, &production.value) {
            return Err(format!(
                "the soak ran against {t}, the production target (CHATWOOT_BASE_URL): not staging evidence"
            ));
        }
    }
    Ok(())
}

/// Same scheme, host, port and path (a trailing `/` aside): the same Chatwoot.
fn same_place(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str().map(str::to_ascii_lowercase) == b.host_str().map(str::to_ascii_lowercase)
        && a.port_or_known_default() == b.port_or_known_default()
        && a.path().trim_end_matches('/') == b.path().trim_end_matches('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_chatwoot_is_recognised_however_it_is_written() {
        let u = |s: &str| Url::parse(s).unwrap();
        assert!(same_place(&u("https://Chat.Example.com/"), &u("https://chat.example.com:443")));
        assert!(!same_place(&u("https://staging.example.com"), &u("https://chat.example.com")));
        assert!(!same_place(&u("http://chat.example.com"), &u("https://chat.example.com")));
        assert!(!same_place(&u("https://example.com/staging"), &u("https://example.com/")));
    }
}
