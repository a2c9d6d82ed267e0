//! `sla report` against the real Postgres and Redis: a mirror filled by the test with known
//! reply times (fixed and lognormal), unanswered, late and pending messages, SLA events, test
//! traffic and malformed rows over two buckets; the report's figures checked against the same
//! figures computed here, the same answer from both mirrors, the chart parsed as SVG.

use rand::SeedableRng;
use rand_distr::{Distribution, LogNormal};
use serde_json::{Value, json};
use sqlx::PgPool;

use broker_ops::contracts::Contracts;
use broker_ops::mirror::MirroredEvent;

use crate::support::{self, bin, run};

struct Expected {
    latencies_ms: Vec<u64>,
    by_bucket: [Vec<u64>; 2],
    unanswered: u64,
    pending: u64,
}

fn event(id: &str, conv: &str, name: &str, data: Value, at_ms: i64) -> MirroredEvent {
    MirroredEvent {
        id: id.into(),
        conversation_id: conv.into(),
        channel: format!("conversation:{conv}"),
        name: name.into(),
        data,
        client_id: None,
        timestamp_ms: at_ms,
    }
}

/// Two one-hour buckets ending an hour ago; returns the events, the window and what to expect.
fn mirror_data(now_ms: i64) -> (Vec<MirroredEvent>, (i64, i64), Expected) {
    let since = (now_ms - 3 * 3_600_000) / 1000 * 1000;
    let until = since + 2 * 3_600_000;
    let mut ev = Vec::new();
    let mut exp = Expected { latencies_ms: vec![], by_bucket: [vec![], vec![]], unanswered: 0, pending: 0 };
    let msg = |ev: &mut Vec<MirroredEvent>, n: u64, conv: &str, at: i64, reply_ms: Option<u64>| {
        ev.push(event(&format!("u{n}"), conv, "message:user", json!({"messageId": n, "content": "q"}), at));
        if let Some(l) = reply_ms {
            let data = json!({"messageId": 900_000 + n, "replyTo": n, "latencyMs": l});
            ev.push(event(&format!("a{n}"), conv, "message:ai", data, at + l as i64));
        }
    };
    // Bucket 0: 60 messages with fixed reply times 50 ms to 5,950 ms (the last nine over 5 s).
    for i in 0..60u64 {
        let l = 50 + i * 100;
        msg(&mut ev, i, &format!("{}", 70_000 + i % 20), since + i as i64 * 50_000, Some(l));
        exp.latencies_ms.push(l);
        exp.by_bucket[0].push(l);
    }
    // Bucket 1: 80 lognormal reply times (median 1.2 s), three unanswered, one answered late
    // (past the 60 s time-out: unanswered), one pending at the window's end.
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let logn = LogNormal::new((1200f64).ln(), 0.8).unwrap();
    let b1 = since + 3_600_000;
    for i in 0..80u64 {
        let l = (logn.sample(&mut rng) as u64).clamp(1, 59_000);
        msg(&mut ev, 100 + i, &format!("{}", 70_100 + i % 30), b1 + i as i64 * 40_000, Some(l));
        exp.latencies_ms.push(l);
        exp.by_bucket[1].push(l);
    }
    for i in 0..3u64 {
        msg(&mut ev, 200 + i, "70200", b1 + 100_000 + i as i64 * 1000, None);
    }
    msg(&mut ev, 210, "70201", b1 + 200_000, Some(70_000));
    exp.unanswered = 4;
    msg(&mut ev, 220, "70202", until - 10_000, None);
    exp.pending = 1;
    // SLA events about message 205 (answered late) and others: 4 warnings, 2 violations.
    for (i, (name, about)) in [("sla:warning", 210), ("sla:warning", 200), ("sla:warning", 59), ("sla:warning", 58)]
        .into_iter()
        .chain([("sla:violation", 210), ("sla:violation", 200)])
        .enumerate()
    {
        let data = json!({"messageId": about, "elapsedMs": 5000, "thresholdMs": 5000});
        ev.push(event(&format!("s{i}"), "70000", name, data, b1 + 300_000 + i as i64));
    }
    // Test traffic: a canary conversation and a smoke chat marked by its echoId.
    msg(&mut ev, 300, "broker-ops-canary-1", since + 10_000, Some(30_000));
    ev.push(event(
        "u301",
        "70300",
        "message:user",
        json!({"messageId": 301, "echoId": "broker-ops-smoke-r-0-0"}),
        since + 20_000,
    ));
    ev.push(event("a301", "70300", "message:ai", json!({"messageId": 9301, "replyTo": 301}), since + 21_000));
    // Malformed: a message without messageId, a reply without replyTo.
    ev.push(event("bad-u", "70400", "message:user", json!("just text"), since + 30_000));
    ev.push(event("bad-a", "70400", "message:ai", json!({"messageId": 9400}), since + 31_000));
    // Outside the window: ignored.
    msg(&mut ev, 400, "70500", until + 1000, Some(100));
    (ev, (since, until), exp)
}

/// Nearest-rank percentile of sorted values.
fn pct(sorted: &[u64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank - 1] as f64
}

fn close(got: &Value, want: f64, what: &str) {
    let g = got.as_f64().unwrap_or_else(|| panic!("{what}: {got}"));
    // Three significant digits: 0.1 % of the value, and the millisecond the events carry.
    assert!((g - want).abs() <= want * 0.001 + 1.0, "{what}: report {g}, computed {want}");
}

fn check_stats(stats: &Value, lat: &[u64], what: &str) {
    let mut s = lat.to_vec();
    s.sort_unstable();
    assert_eq!(stats["count"], s.len() as u64, "{what} count");
    for (k, p) in [("p50", 50.0), ("p90", 90.0), ("p95", 95.0), ("p99", 99.0), ("max", 100.0)] {
        close(&stats[k], pct(&s, p), &format!("{what} {k}"));
    }
}

fn report(
    dir: &std::path::Path,
    db: &str,
    prefix: &str,
    (since, until): (i64, i64),
    extra: &[&str],
) -> tokio::process::Command {
    let t = |ms: i64| chrono::DateTime::from_timestamp_millis(ms).unwrap().to_rfc3339();
    let mut c = bin(dir);
    c.args(["-o", "json", "sla", "report", "--since", &t(since), "--until", &t(until), "--by", "1h"])
        .args(extra)
        .env("DATABASE_URL", db)
        .env("REDIS_URL", support::redis_url())
        .env("REDIS_KEY_PREFIX", prefix);
    c
}

#[sqlx::test(migrations = false)]
async fn figures_match_the_mirror_from_postgres_and_from_redis(pool: PgPool) {
    let prefix = support::prefix("sla-report");
    let contracts = Contracts::with_redis_prefix(&prefix);
    let db = crate::mirror::url_of(&pool);
    broker_ops::mirror::postgres::migrate(&pool, "test", &contracts.table).await.unwrap();
    let (events, window, exp) = mirror_data(chrono::Utc::now().timestamp_millis());
    broker_ops::mirror::postgres::insert(&pool, "test", &contracts.table, &events).await.unwrap();
    let mut redis = support::redis_handle(&prefix).await;
    broker_ops::mirror::redis::append(&mut redis, &contracts, &events).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let chart = dir.path().join("chart.svg");
    let r = run(report(dir.path(), &db, &prefix, window, &["--chart", chart.to_str().unwrap()])).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let pg: Value = serde_json::from_str(&r.stdout).unwrap();
    support::schema_check("sla-report", &pg);
    assert_eq!(pg["source"], "postgres");
    check_stats(&pg["reply_ms"], &exp.latencies_ms, "window");
    for (i, lat) in exp.by_bucket.iter().enumerate() {
        check_stats(&pg["buckets"][i]["reply_ms"], lat, &format!("bucket {i}"));
    }
    let over: u64 = exp.latencies_ms.iter().filter(|l| **l > 5000).count() as u64;
    assert_eq!(pg["over_slo"]["count"], over);
    assert_eq!(pg["messages"], 60 + 80 + 3 + 1 + 1);
    assert_eq!(pg["replies"], 60 + 80 + 1);
    assert_eq!(pg["unanswered"], exp.unanswered);
    assert_eq!(pg["pending"], exp.pending);
    assert_eq!(pg["sla_events"], json!({"warnings": 4, "violations": 2}));
    assert_eq!(pg["excluded"]["conversations"], 2);
    assert_eq!(pg["excluded"]["messages"], 2);
    assert_eq!(pg["malformed"]["messages_without_id"], 1);
    assert_eq!(pg["malformed"]["replies_without_reply_field"], 1);
    assert_eq!(pg["buckets"].as_array().unwrap().len(), 2);
    assert_eq!(pg["buckets"][1]["unanswered"], 4);
    assert_eq!(pg["worst"][0]["conversation"], "70200", "unanswered first: {}", pg["worst"]);
    assert_eq!(pg["worst"][0]["unanswered"], 3);

    // The same mirror through Redis: the same answer.
    let r = run(report(dir.path(), &db, &prefix, window, &["--from", "redis"])).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mut rd: Value = serde_json::from_str(&r.stdout).unwrap();
    let mut pg = pg.clone();
    for doc in [&mut rd, &mut pg] {
        doc["source"] = Value::Null;
        doc["elapsed_ms"] = Value::Null;
    }
    assert_eq!(rd, pg, "Redis and Postgres disagree");

    // The chart: SVG, one line per percentile (the SLO line apart).
    let svg = std::fs::read_to_string(&chart).unwrap();
    let doc = roxmltree::Document::parse(&svg).expect("the chart parses as XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    for color in ["#1F77B4", "#FF7F0E", "#9467BD"] {
        let lines = doc
            .descendants()
            .filter(|n| {
                n.has_tag_name("polyline") && n.attribute("stroke").is_some_and(|s| s.eq_ignore_ascii_case(color))
            })
            .count();
        assert!(lines >= 2, "{color}: {lines} polylines (legend and series)\n{svg}");
    }
    assert!(svg.contains("SLO 5000 ms"), "the SLO line is labelled");
}

#[sqlx::test(migrations = false)]
async fn empty_windows_bad_windows_and_a_missing_table(pool: PgPool) {
    let prefix = support::prefix("sla-report-edges");
    let db = crate::mirror::url_of(&pool);
    let dir = tempfile::tempdir().unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    let window = (now - 7_200_000, now - 3_600_000);

    let r = run(report(dir.path(), &db, &prefix, window, &[])).await;
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("broker-ops db migrate") && r.stderr.contains("127.0.0.1"), "{}", r.stderr);

    broker_ops::mirror::postgres::migrate(&pool, "test", &Contracts::default().table).await.unwrap();
    let r = run(report(dir.path(), &db, &prefix, window, &[])).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("no events between"), "{}", r.stderr);
    let doc: Value = serde_json::from_str(&r.stdout).unwrap();
    support::schema_check("sla-report", &doc);
    assert_eq!(doc["reply_ms"]["count"], 0);
    assert_eq!(doc["reply_ms"]["p95"], Value::Null);

    let r = run(report(dir.path(), &db, &prefix, (window.1, window.0), &[])).await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("before it starts"), "{}", r.stderr);
    let mut c = bin(dir.path());
    c.args(["sla", "report", "--since", "yesterday"]);
    assert_eq!(run(c).await.code, 2);
    let mut c = bin(dir.path());
    c.args(["sla", "report", "--since", "48h", "--from", "redis"]).env("REDIS_URL", support::redis_url());
    let r = run(c).await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("24 h"), "{}", r.stderr);
}
