//! The files a report leaves: the SVG chart, and with `--report-dir` the Markdown, JSON, HTML and
//! SVG side by side (names unique as `sla smoke`'s are).

use std::path::Path;

use super::SlaReport;
use crate::sla::files::{FileError, Written, at};

/// Writes the chart to `path` (atomically).
pub fn write_chart(r: &SlaReport, path: &Path) -> Result<(), FileError> {
    let svg = super::chart::report_svg(r).map_err(|e| at(path)(std::io::Error::other(e)))?;
    crate::fsutil::write_shared(path, &svg).map_err(at(path))
}

/// Writes `{dir}/{stamp}-sla-report.md`, `.json`, `.html` and `.svg`.
pub fn write_report(r: &SlaReport, dir: &Path) -> Result<Written, FileError> {
    let stem = crate::sla::files::claim_stem(dir, "sla-report")?;
    let svg = crate::sla::files::beside(&stem, "svg");
    write_chart(r, &svg)?;
    let name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let md = crate::sla::files::beside(&stem, "md");
    crate::fsutil::write_shared(&md, &r.markdown(Some(&name(&svg)))).map_err(at(&md))?;
    let json = crate::sla::files::beside(&stem, "json");
    let mut body = serde_json::to_string_pretty(&crate::output::Render::json(r)).map_err(|e| at(&json)(e.into()))?;
    body.push('\n');
    crate::fsutil::write_shared(&json, &body).map_err(at(&json))?;
    let html = crate::sla::files::beside(&stem, "html");
    let links = [("JSON", name(&json)), ("Markdown", name(&md)), ("Chart (SVG)", name(&svg))];
    crate::fsutil::write_shared(&html, &r.html(&links)).map_err(at(&html))?;
    Ok(Written { markdown: md, html })
}
