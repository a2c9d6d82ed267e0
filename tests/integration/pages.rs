//! The HTML pages as a reader sees them: each rendered in Debian's headless Chromium (driven by
//! the pinned playwright-core in tests/interop) at 390 and 1280 px, light, dark and high
//! contrast: no console error, no request besides the page itself, 0 axe-core violations at WCAG
//! 2.1 A and AA, the verdict visible without scrolling, nothing wider than the screen, and the
//! page under 300 KB.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support::{bin, run};

const MAX_PAGE_BYTES: u64 = 300 * 1024;

/// Renders `page` in Chromium and asserts what every page must hold; returns what the browser
/// saw (one entry per view) for the test's own checks. Screenshots go to `shots`.
pub async fn check(page: &Path, shots: &Path) -> Value {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(Path::new(&chromium).exists(), "{chromium} is missing: scripts/test installs Debian's chromium");
    let size = std::fs::metadata(page).unwrap().len();
    assert!(size < MAX_PAGE_BYTES, "{}: {size} bytes", page.display());
    let interop = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop");
    let out = tokio::process::Command::new("node")
        .arg("page-check.js")
        .arg(page)
        .arg(shots)
        .current_dir(interop)
        .env("CHROMIUM", &chromium)
        .kill_on_drop(true)
        .output();
    let out =
        tokio::time::timeout(std::time::Duration::from_secs(120), out).await.expect("the browser finished").unwrap();
    assert!(out.status.success(), "page-check.js: {}", String::from_utf8_lossy(&out.stderr));
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(seen["console"], serde_json::json!([]), "{}: console errors", page.display());
    assert_eq!(seen["requests"], serde_json::json!([]), "{}: requests", page.display());
    for (view, v) in seen["views"].as_object().unwrap() {
        assert_eq!(v["violations"], serde_json::json!([]), "{view}: axe-core violations in {}", page.display());
        assert_eq!(v["verdict_visible"], true, "{view}: the verdict needs scrolling");
        assert!(v["sideways_px"].as_f64() <= Some(0.0), "{view}: the page scrolls sideways: {v}");
    }
    seen
}

/// The one file of `dir` ending in `ext`.
pub fn only(dir: &Path, ext: &str) -> PathBuf {
    let found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(ext))
        .collect();
    assert_eq!(found.len(), 1, "{ext} in {}: {found:?}", dir.display());
    found.into_iter().next().unwrap()
}

fn verdict(seen: &Value) -> &str {
    seen["views"]["390-light"]["text"].as_str().unwrap()
}

/// A smoke against the sandbox, two of them merged, and a run in which no reply came: each
/// leaves a page next to its Markdown and JSON that reads in a browser; the pages link the
/// files beside them, and charts with nothing to draw say "no data".
#[tokio::test]
async fn smoke_merged_and_reply_less_pages_read_in_a_browser() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let smoke = |reports: &str, extra: &[&str]| {
        let mut c = bin(d);
        c.args(["sla", "smoke", "--sandbox", "--concurrency", "4", "--ai-latency", "fixed:20ms"])
            .args(["--report-dir", reports])
            .args(extra);
        run(c)
    };
    let r = smoke("a", &["--chats", "12", "--histogram-out", "a.hlog", "--junit", "a/junit.xml"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let html = only(&d.join("a"), ".html");
    assert!(
        r.stderr.contains(&format!("open {} in a browser", Path::new("a").join(html.file_name().unwrap()).display())),
        "{}",
        r.stderr
    );
    let text = std::fs::read_to_string(&html).unwrap();
    for file in [".json\"", ".md\"", ".svg\"", "junit.xml\""] {
        assert!(text.contains(file), "links {file}");
    }
    assert!(text.contains("Reply time over the run") && !text.contains("no data"), "a timeline was drawn");
    let seen = check(&html, &d.join("shots-smoke")).await;
    assert_eq!(verdict(&seen), "PASSED");
    let r = smoke("b", &["--chats", "12", "--histogram-out", "b.hlog"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mut c = bin(d);
    c.args(["sla", "merge", "a.hlog", "b.hlog", "--report-dir", "merged"]);
    let r = run(c).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let merged = only(&d.join("merged"), ".html");
    assert!(std::fs::read_to_string(&merged).unwrap().contains("no data: a merged report carries histograms"));
    assert_eq!(verdict(&check(&merged, &d.join("shots-merged")).await), "PASSED");
    // Every reply lost: a failed run with nothing to chart.
    let r = smoke("none", &["--ai-error-rate", "1", "--reply-timeout", "2s", "--chats", "3"]).await;
    assert_eq!(r.code, 1, "{}", r.stderr);
    let none = only(&d.join("none"), ".html");
    let text = std::fs::read_to_string(&none).unwrap();
    assert!(text.contains("no data: no reply arrived"), "the charts say so");
    assert_eq!(verdict(&check(&none, &d.join("shots-none")).await), "FAILED");
}
