//! The files a smoke run leaves: the Markdown report and its JSON twin in the report directory
//! (names unique even when runs start in the same second), its HTML page, JUnit XML, and the text
//! histogram.

use std::path::{Path, PathBuf};

use super::report::SmokeReport;
use crate::histogram::{LatencyHistogram, histogram_text};
use crate::output::escape;

#[derive(Debug, thiserror::Error)]
#[error("writing {}: {source}", escape(&path.display().to_string()))]
pub struct FileError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// A `FileError` for `path`, for `map_err`.
pub(crate) fn at(path: &Path) -> impl FnOnce(std::io::Error) -> FileError + use<> {
    let path = path.to_path_buf();
    move |source| FileError { path, source }
}

impl SmokeReport {
    /// The Markdown report written to `--report-dir`.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let verdict = if self.passed { "PASSED" } else { "FAILED" };
        s.push_str(&format!("# SLA smoke report: {verdict}\n\n"));
        s.push_str(&format!(
            "- target: `{}`\n- started: {}\n- duration: {:.1} s\n",
            self.target,
            self.started_at,
            self.duration_ms / 1000.0
        ));
        s.push_str(&format!("- run: {}\n- command: `{}`\n", self.headline(), self.command));
        s.push_str(&format!(
            "- chats: {} run, {} ok, {} failed, {} cancelled (planned {})\n",
            self.chats.total, self.chats.ok, self.chats.failed, self.chats.cancelled, self.chats.planned
        ));
        s.push_str(&format!(
            "- SLA events seen: {} warnings, {} violations\n",
            self.sla_events["warning"], self.sla_events["violation"]
        ));
        for (line, _) in self.witness_lines() {
            s.push_str(&format!("- {line}\n"));
        }
        s.push('\n');
        s.push_str("## Thresholds\n\n");
        for l in self.verdict_lines() {
            s.push_str(&format!("- {l}\n"));
        }
        s.push_str("\n## Phases (ms)\n\n| phase | count | min | p50 | p90 | p95 | p99 | max |\n|---|---|---|---|---|---|---|---|\n");
        for p in &self.phases {
            let m = &p.ms;
            s.push_str(&format!(
                "| {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |\n",
                p.name, m.count, m.min, m.p50, m.p90, m.p95, m.p99, m.max
            ));
        }
        if let Some(c) = &self.reply_corrected_ms {
            s.push_str(&format!(
                "| reply (corrected) | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |\n",
                c.count, c.min, c.p50, c.p90, c.p95, c.p99, c.max
            ));
        }
        if !self.errors.is_empty() {
            s.push_str("\n## Errors\n\n| kind | count | example |\n|---|---|---|\n");
            for e in &self.errors {
                s.push_str(&format!("| {} | {} | {} |\n", e.kind, e.count, e.example.replace('|', "\\|")));
            }
        }
        s.push_str("\n## Reply latency histogram\n\n```\n");
        s.push_str(&histogram_text(&self.aggregate.reply(), 40));
        s.push_str("```\n");
        s
    }

    /// JUnit XML: one test case per threshold.
    pub fn junit(&self) -> String {
        use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
        let mut suite = TestSuite::new("broker-ops sla smoke");
        let verdicts = self.verdict_lines();
        for (t, line) in self.thresholds.iter().zip(verdicts) {
            let status = if t.passed {
                TestCaseStatus::success()
            } else {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                s.set_message(line.clone());
                s
            };
            let mut case = TestCase::new(format!("threshold {}", t.expr), status);
            case.set_classname("sla.smoke");
            case.set_system_out(line);
            suite.add_test_case(case);
        }
        if let Some(a) = &self.aborted {
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
            s.set_message(format!("aborted early: {a} could no longer pass"));
            suite.add_test_case(TestCase::new("run completed", s));
        }
        let mut report = Report::new("broker-ops");
        report.add_test_suite(suite);
        // Serialising into a String cannot fail for well-formed names, which ours are.
        report.to_string().unwrap_or_default()
    }
}

/// Claims a unique `{dir}/{stamp}-{slug}` for a report's files: its `.md` is created
/// exclusively (a run that starts in the same second takes `-2`, `-3`, ...). Returns the path
/// without extension.
pub fn claim_stem(dir: &Path, slug: &str) -> Result<PathBuf, FileError> {
    std::fs::create_dir_all(dir).map_err(at(dir))?;
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let slug = slug_of(slug);
    for n in 1..1000 {
        let stem = if n == 1 { format!("{stamp}-{slug}") } else { format!("{stamp}-{slug}-{n}") };
        let md = dir.join(format!("{stem}.md"));
        match std::fs::OpenOptions::new().write(true).create_new(true).open(&md) {
            Ok(_) => return Ok(dir.join(stem)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(at(&md)(e)),
        }
    }
    Err(at(dir)(std::io::Error::other("1,000 reports already carry this second's name")))
}

/// `{stem}.{ext}`: the extension added to the whole stem. (`Path::with_extension` would cut a
/// stem with dots, `…-127.0.0.1-8790`, at its last dot.)
pub fn beside(stem: &Path, ext: &str) -> PathBuf {
    let mut name = stem.as_os_str().to_owned();
    name.push(".");
    name.push(ext);
    PathBuf::from(name)
}

/// The report's files as written: the Markdown, and the HTML page to open in a browser.
#[derive(Debug, Clone)]
pub struct Written {
    pub markdown: PathBuf,
    pub html: PathBuf,
}

/// Writes `{dir}/{stamp}-{slug}.md`, `.json`, `.html` and the percentile spectrum `.svg`.
pub fn write_report(report: &SmokeReport, dir: &Path, slug: &str, junit: Option<&Path>) -> Result<Written, FileError> {
    write_report_to(report, &claim_stem(dir, slug)?, junit)
}

/// Writes the report's `.md`, `.json`, `.html` and `.svg` at a stem already claimed
/// ([`claim_stem`]); the page links the JUnit file when it is in the same directory.
pub fn write_report_to(report: &SmokeReport, stem: &Path, junit: Option<&Path>) -> Result<Written, FileError> {
    let stem = stem.to_path_buf();
    let svg = beside(&stem, "svg");
    let spectrum = report.spectrum_svg().map_err(|e| at(&svg)(std::io::Error::other(e)))?;
    crate::fsutil::write_shared(&svg, &spectrum).map_err(at(&svg))?;
    let name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let md = beside(&stem, "md");
    let text =
        format!("{}\n## Reply time percentile spectrum\n\n![percentile spectrum]({})\n", report.markdown(), name(&svg));
    std::fs::write(&md, text).map_err(at(&md))?;
    let json = beside(&stem, "json");
    let mut body = serde_json::to_vec_pretty(&crate::output::Render::json(report)).map_err(|e| at(&json)(e.into()))?;
    body.push(b'\n');
    crate::fsutil::write_shared(&json, &String::from_utf8_lossy(&body)).map_err(at(&json))?;
    let mut links = vec![("JSON", name(&json)), ("Markdown", name(&md)), ("Percentile spectrum (SVG)", name(&svg))];
    if let Some(j) = junit.filter(|j| same_dir(j, &stem)) {
        links.push(("JUnit XML", name(j)));
    }
    let html = beside(&stem, "html");
    let started = std::time::Instant::now();
    let page = report.html(&links, Some(&spectrum));
    let rendered = started.elapsed();
    crate::fsutil::write_shared(&html, &page).map_err(at(&html))?;
    // What the page costs a run (scripts/bench/pages.py reads this line).
    tracing::debug!(
        render_us = rendered.as_micros() as u64,
        total_us = started.elapsed().as_micros() as u64,
        bytes = page.len(),
        "wrote the HTML page"
    );
    Ok(Written { markdown: md, html })
}

/// Whether `file` sits in the directory of `stem` (so a relative link reaches it).
fn same_dir(file: &Path, stem: &Path) -> bool {
    let dir = |p: &Path| {
        let parent = p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::canonicalize(parent).ok()
    };
    dir(file).is_some() && dir(file) == dir(stem)
}

/// Appends one interval's record to a soak's `{stem}.intervals.ndjson`.
pub fn append_interval(stem: &Path, record: &super::soak::IntervalRecord) -> Result<PathBuf, FileError> {
    use std::io::Write;
    let path = beside(stem, "intervals.ndjson");
    let mut line = serde_json::to_vec(record).map_err(|e| at(&path)(e.into()))?;
    line.push(b'\n');
    crate::fsutil::refuse_non_regular(&path).map_err(at(&path))?;
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(at(&path))?;
    f.write_all(&line).map_err(at(&path))?;
    Ok(path)
}

impl SmokeReport {
    /// The percentile spectrum of every phase measured (HdrHistogram's plot), as SVG.
    pub fn spectrum_svg(&self) -> Result<String, String> {
        let phases: Vec<(&str, &LatencyHistogram)> = self.aggregate.phases.iter().map(|(p, h)| (p.name(), h)).collect();
        crate::chart::spectrum_svg("Latency by percentile, per phase (ms)", &phases)
    }
}

/// A file-name-safe form of a target: letters, digits and dots kept, the rest `-`; a URL's
/// password never reaches it (the target is shown redacted before this).
pub fn slug_of(target: &str) -> String {
    let s: String = target
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '.' { c } else { '-' })
        .collect();
    let s = s.trim_matches('-');
    if s.is_empty() { "target".into() } else { crate::output::truncate(s, 80) }
}

/// Writes the JUnit XML of `report` to `path`.
pub fn write_junit(report: &SmokeReport, path: &Path) -> Result<(), FileError> {
    std::fs::write(path, report.junit()).map_err(at(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dotted_host_keeps_its_whole_name_in_every_file() {
        let dir = tempfile::tempdir().unwrap();
        let stem = claim_stem(dir.path(), &slug_of("http://127.0.0.1:8790")).unwrap();
        let md = beside(&stem, "md");
        assert!(md.to_string_lossy().ends_with("-127.0.0.1-8790.md"), "{md:?}");
        assert!(md.exists(), "the claimed name is the one written");
        assert!(beside(&stem, "json").to_string_lossy().ends_with("-127.0.0.1-8790.json"));
        assert!(beside(&stem, "svg").to_string_lossy().ends_with("-127.0.0.1-8790.svg"));
        assert_eq!(slug_of("https://chat.example.com"), "chat.example.com");
    }
}
