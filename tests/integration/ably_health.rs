//! `ably health` against the sandbox: states and exit codes, each output format checked against
//! its grammar (JSON Schema, monitoring-plugins perfdata, Prometheus exposition parsed back),
//! faults that make checks UNKNOWN while the others still report, and the overall time-out.

use std::time::{Duration, Instant};

use broker_ops::sandbox::Stall;
use serde_json::Value;

use crate::support::{self, Env, bin, run};

fn health(env: &Env, dir: &std::path::Path, args: &[&str]) -> tokio::process::Command {
    let mut c = bin(dir);
    c.args(["ably", "health"]).args(args).env("ABLY_REST_URL", &env.base).env("ABLY_API_KEY", &env.key);
    c
}

fn checks(doc: &Value) -> Vec<(String, String)> {
    doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (crate::support::check_label(c), c["state"].as_str().unwrap().to_string()))
        .collect()
}

#[tokio::test]
async fn a_healthy_sandbox_is_ok_with_occupancy_and_status() {
    let (_sb, env) = support::sandbox().await;
    let _listener = support::subscribe(&env, "channels=conversation:1").await;
    let dir = tempfile::tempdir().unwrap();
    let status = format!("{}/status/up.json", env.base);
    let r =
        run(health(&env, dir.path(), &["-o", "json", "--channel", "conversation:1", "--status-url", &status])).await;
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let doc: Value = serde_json::from_str(&r.stdout).unwrap();
    support::schema_check("probe", &doc);
    assert_eq!(doc["state"], "OK");
    let names: Vec<String> = checks(&doc).into_iter().map(|c| c.0).collect();
    assert_eq!(
        names,
        [
            "latency",
            "skew",
            "messages",
            "connections",
            "channels",
            "failed",
            "refused",
            "subscribers@conversation:1",
            "status"
        ]
    );
    let occ = &doc["checks"][7];
    assert_eq!(occ["value"], 1.0, "one SSE subscriber: {occ}");
    assert!(doc["checks"][0]["value"].as_f64().unwrap() >= 0.0);
    assert_eq!(doc["checks"][0]["warn"], 300.0);
    assert_eq!(doc["checks"][0]["crit"], 1000.0);
}

#[tokio::test]
async fn thresholds_decide_warning_and_critical_exit_codes() {
    let (_sb, env) = support::sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let r = run(health(&env, dir.path(), &["--warn", "latency>0ms"])).await;
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stdout.trim_end().ends_with("ABLY HEALTH: WARNING"));
    let r = run(health(&env, dir.path(), &["--warn", "latency>0ms", "--crit", "latency>0ms"])).await;
    assert_eq!(r.code, 2, "{}", r.stdout);
    let r = run(health(&env, dir.path(), &["--warn", "nonsense"])).await;
    assert_eq!(r.code, 3, "a usage error of a probe is UNKNOWN");
}

#[tokio::test]
async fn a_wrong_key_makes_the_authenticated_checks_unknown_while_time_still_reports() {
    let (_sb, env) = support::sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = health(&env, dir.path(), &["-o", "json", "--channel", "x"]);
    c.env("ABLY_API_KEY", format!("{}:wrong", env.key_name()));
    let r = run(c).await;
    assert_eq!(r.code, 3, "{}", r.stdout);
    let doc: Value = serde_json::from_str(&r.stdout).unwrap();
    support::schema_check("probe", &doc);
    let c = checks(&doc);
    assert_eq!(c[0], ("latency".to_string(), "OK".to_string()), "GET /time needs no key");
    assert!(c[2..].iter().all(|(_, s)| s == "UNKNOWN"));
    assert!(doc["checks"][2]["detail"].as_str().unwrap().contains("code 40101"), "{}", doc["checks"][2]);
}

#[tokio::test]
async fn server_errors_are_critical_with_ablys_code() {
    // monitoring-plugins: a service answering 5xx is CRITICAL; only the skew, which needs the
    // answer, cannot be judged.
    let (_sb, env) = support::start(support::faulted(support::options(), |f| f.http_error_rate = 1.0)).await;
    let dir = tempfile::tempdir().unwrap();
    let r = run(health(&env, dir.path(), &["-o", "json"])).await;
    assert_eq!(r.code, 2, "{}", r.stdout);
    let doc: Value = serde_json::from_str(&r.stdout).unwrap();
    for (name, state) in checks(&doc) {
        let want = if name == "skew" { "UNKNOWN" } else { "CRITICAL" };
        assert_eq!(state, want, "{name}: {}", r.stdout);
    }
    assert!(doc["checks"][0]["detail"].as_str().unwrap().contains("code 50000"));
}

#[tokio::test]
async fn the_whole_probe_finishes_within_the_timeout_when_ably_hangs() {
    let stall = Stall { duration: Duration::from_secs(30), after: Duration::ZERO };
    let (_sb, env) = support::start(support::faulted(support::options(), |f| f.stall = Some(stall))).await;
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let r = run(health(&env, dir.path(), &["--timeout", "1s"])).await;
    // A hang detector, not a timing claim: the probe's own bound is measured in the benchmark.
    assert!(started.elapsed() < Duration::from_secs(15), "took {:?}", started.elapsed());
    assert_eq!(r.code, 2, "a service that times out is CRITICAL: {}", r.stdout);
    assert!(r.stdout.contains("timed out"), "{}", r.stdout);
}

#[tokio::test]
async fn nagios_output_is_one_status_line_with_valid_perfdata() {
    let (_sb, env) = support::sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let r = run(health(&env, dir.path(), &["-o", "nagios", "--warn", "latency>0ms"])).await;
    assert_eq!(r.code, 1);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{}", r.stdout);
    let (text, perf) = lines[0].split_once(" | ").expect("text | perfdata");
    assert!(text.starts_with("ABLY HEALTH WARNING - latency WARNING"), "{text}");
    // 'label'=value[UOM];[warn];[crit];[min];[max]  (monitoring-plugins development guidelines)
    let item = regex_lite(perf);
    assert_eq!(item.len(), 7, "{perf}");
    assert!(perf.contains("'latency'=") && perf.contains("ms;0;1000;0;"), "{perf}");
}

/// Splits perfdata into items and checks each against the guidelines' grammar.
fn regex_lite(perf: &str) -> Vec<&str> {
    let items: Vec<&str> = perf.split(' ').collect();
    for it in &items {
        let (label, rest) = it.split_once('=').unwrap_or_else(|| panic!("no '=' in {it}"));
        assert!(label.starts_with('\'') && label.ends_with('\'') && label.len() > 2, "label {label}");
        let fields: Vec<&str> = rest.split(';').collect();
        assert_eq!(fields.len(), 5, "value;warn;crit;min;max in {it}");
        let value = fields[0];
        let num_end = value.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-')).unwrap_or(value.len());
        assert!(value[..num_end].parse::<f64>().is_ok(), "value {value}");
        assert!(["", "s", "ms", "us", "%", "B", "KB", "MB", "TB", "c"].contains(&&value[num_end..]), "UOM in {value}");
        for range in &fields[1..3] {
            let r = range.trim_end_matches(':');
            assert!(r.is_empty() || r.parse::<f64>().is_ok(), "range {range}");
        }
    }
    items
}

#[tokio::test]
async fn prometheus_output_parses_back_and_the_textfile_is_written() {
    let (_sb, env) = support::sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let textfile = dir.path().join("broker_ops.prom");
    let r = run(health(&env, dir.path(), &["-o", "prometheus", "--textfile", textfile.to_str().unwrap()])).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines = r.stdout.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("the exposition format parses");
    let state = scrape.samples.iter().find(|s| s.metric == "broker_ops_probe_state").expect("probe state");
    assert!(matches!(state.value, prometheus_parse::Value::Gauge(v) if v == 0.0));
    let latency = scrape
        .samples
        .iter()
        .find(|s| s.metric == "broker_ops_check_value" && s.labels.get("check") == Some("latency"))
        .expect("latency sample");
    assert_eq!(latency.labels.get("unit"), Some("ms"));
    let written = std::fs::read_to_string(&textfile).unwrap();
    assert!(written.contains("broker_ops_probe_state{probe=\"ably_health\"} 0"));
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "the temporary file was renamed into place");
}

/// Off a terminal (CI, cron) a long wait is never silent: a line on stderr every few seconds
/// says the probe is still waiting and how long a request may take; stdout keeps the verdict.
#[tokio::test]
async fn a_long_wait_says_so_on_stderr_off_a_terminal() {
    let hang = support::Hang::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = bin(dir.path());
    cmd.env("ABLY_REST_URL", format!("http://{}", hang.addr)).env("ABLY_API_KEY", "app.key:secret");
    cmd.args(["--timeout", "6s", "-o", "nagios", "ably", "health", "--no-status"]);
    let r = run(cmd).await;
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("ably health: still waiting after 5s (each request may take up to 6"), "{}", r.stderr);
    assert!(r.stdout.starts_with("ABLY HEALTH CRITICAL"), "{}", r.stdout);
}
