//! `--histogram-out` and `sla merge`: the raw HDR histograms of a run in the HdrHistogram
//! interval-log format (one interval per phase, tagged with the phase name), plus one comment
//! line with the run's counts, so that runs from several machines merge into one exact result.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, IntervalLogWriterBuilder, LogEntry, Tag};
use hdrhistogram::serialization::{Deserializer, V2Serializer};
use serde::{Deserialize, Serialize};

use super::chat::Phase;
use super::report::{Inputs, SmokeReport};
use super::{Aggregate, LatencyHistogram, Threshold};

const META: &str = "broker-ops-meta ";
const CORRECTED_TAG: &str = "reply_corrected";

#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("histogram log {path}: {reason}")]
    Log { path: PathBuf, reason: String },
    #[error("sla merge: no histogram logs given")]
    Empty,
}

/// The run's counts that are not histograms.
#[derive(Debug, Serialize, Deserialize)]
struct Meta {
    target: String,
    started_at: String,
    duration_ms: f64,
    total: usize,
    ok: usize,
    failed: usize,
    cancelled: usize,
    warnings: u64,
    violations: u64,
    errors: BTreeMap<String, (usize, String)>,
    #[serde(default)]
    setup_failures: usize,
}

fn err(path: &Path, reason: impl ToString) -> MergeError {
    MergeError::Log { path: path.to_path_buf(), reason: reason.to_string() }
}

/// Writes the report's histograms and counts to `path`.
pub fn write_log(path: &Path, report: &SmokeReport) -> Result<(), MergeError> {
    let agg = &report.aggregate;
    let meta = Meta {
        target: report.target.clone(),
        started_at: report.started_at.clone(),
        duration_ms: report.duration_ms,
        total: agg.total,
        ok: agg.ok,
        failed: agg.failed,
        cancelled: agg.cancelled,
        warnings: agg.warnings,
        violations: agg.violations,
        errors: agg.errors.clone(),
        setup_failures: agg.setup_failures,
    };
    let meta_line = serde_json::to_string(&meta).map_err(|e| err(path, e))?;
    let mut buf = Vec::new();
    {
        let mut serializer = V2Serializer::new();
        let mut builder = IntervalLogWriterBuilder::new();
        builder.add_comment(&format!("{META}{meta_line}"));
        let mut log = builder.begin_log_with(&mut buf, &mut serializer).map_err(|e| err(path, e))?;
        let span = Duration::from_secs_f64(report.duration_ms / 1000.0);
        let mut tagged: Vec<(&str, &LatencyHistogram)> = agg.phases.iter().map(|(p, h)| (p.name(), h)).collect();
        if let Some(c) = &agg.corrected {
            tagged.push((CORRECTED_TAG, c));
        }
        for (tag, h) in tagged {
            log.write_histogram(h.inner(), Duration::ZERO, span, Tag::new(tag))
                .map_err(|e| err(path, format!("{e:?}")))?;
        }
    }
    std::fs::write(path, buf).map_err(|e| err(path, e))
}

fn phase_of(tag: &str) -> Option<Phase> {
    Phase::ALL.into_iter().find(|p| p.name() == tag)
}

/// Reads one log into an aggregate.
fn read_log(path: &Path) -> Result<(Aggregate, Meta), MergeError> {
    let bytes = std::fs::read(path).map_err(|e| err(path, e))?;
    let text = String::from_utf8_lossy(&bytes);
    let meta_line = text
        .lines()
        .find_map(|l| l.strip_prefix('#').map(str::trim_start).and_then(|l| l.strip_prefix(META)))
        .ok_or_else(|| err(path, "not a broker-ops histogram log (no broker-ops-meta line)"))?;
    let meta: Meta = serde_json::from_str(meta_line).map_err(|e| err(path, format!("invalid meta line: {e}")))?;
    let mut agg = Aggregate {
        total: meta.total,
        ok: meta.ok,
        failed: meta.failed,
        cancelled: meta.cancelled,
        warnings: meta.warnings,
        violations: meta.violations,
        errors: meta.errors.clone(),
        setup_failures: meta.setup_failures,
        ..Aggregate::default()
    };
    let mut de = Deserializer::new();
    for entry in IntervalLogIterator::new(&bytes) {
        let entry = entry.map_err(|e| err(path, format!("{e:?}")))?;
        let LogEntry::Interval(ih) = entry else { continue };
        let raw = base64::engine::general_purpose::STANDARD.decode(ih.encoded_histogram()).map_err(|e| err(path, e))?;
        let h: hdrhistogram::Histogram<u64> =
            de.deserialize(&mut raw.as_slice()).map_err(|e| err(path, format!("{e:?}")))?;
        let h = LatencyHistogram::from_inner(h);
        let merged = match ih.tag().map(|t| t.as_str()) {
            Some(CORRECTED_TAG) => agg.corrected.get_or_insert_with(LatencyHistogram::new).merge(&h),
            Some(tag) => match phase_of(tag) {
                Some(p) => agg.phases.entry(p).or_default().merge(&h),
                None => return Err(err(path, format!("unknown phase tag {tag:?}"))),
            },
            None => return Err(err(path, "an interval without a phase tag")),
        };
        merged.map_err(|reason| err(path, reason))?;
    }
    Ok((agg, meta))
}

/// Combines runs into one exact result, judged by `thresholds`.
pub fn merge(paths: &[PathBuf], thresholds: &[Threshold], command: String) -> Result<SmokeReport, MergeError> {
    if paths.is_empty() {
        return Err(MergeError::Empty);
    }
    let mut total = Aggregate::default();
    let mut targets: Vec<String> = Vec::new();
    let mut started: Option<chrono::DateTime<chrono::Utc>> = None;
    let mut longest = 0f64;
    for p in paths {
        let (agg, meta) = read_log(p)?;
        total.absorb(agg).map_err(|reason| err(p, reason))?;
        if !targets.contains(&meta.target) {
            targets.push(meta.target.clone());
        }
        let t = chrono::DateTime::parse_from_rfc3339(&meta.started_at).map(|d| d.with_timezone(&chrono::Utc)).ok();
        started = match (started, t) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        longest = longest.max(meta.duration_ms);
    }
    Ok(SmokeReport::build(Inputs {
        driver: None,
        agg: total,
        thresholds,
        mode: None,
        target: targets.join(", "),
        started_at: started.unwrap_or_else(chrono::Utc::now),
        duration: Duration::from_secs_f64(longest / 1000.0),
        aborted: None,
        interrupted: false,
        cleanup: None,
        command,
        soak: None,
    }))
}
