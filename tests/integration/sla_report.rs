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
    let (prefix, db, window, exp) = filled(&pool, "sla-report").await;
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

    // Prometheus: parses back, with the window's P95 in seconds and the counters.
    let r = run(report(dir.path(), &db, &prefix, window, &["-o", "prometheus"])).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let scrape = prometheus_parse::Scrape::parse(r.stdout.lines().map(|l| Ok(l.to_string()))).unwrap();
    let sample = |name: &str, q: Option<&str>| {
        let s = scrape.samples.iter().find(|s| s.metric == name && s.labels.get("quantile") == q);
        match s.unwrap_or_else(|| panic!("{name} {q:?}\n{}", r.stdout)).value {
            prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Untyped(v) => v,
            ref other => panic!("{name}: {other:?}"),
        }
    };
    let p95 = pg["reply_ms"]["p95"].as_f64().unwrap();
    assert!((sample("broker_ops_sla_report_reply_seconds", Some("0.95")) - p95 / 1000.0).abs() < 1e-9);
    assert_eq!(sample("broker_ops_sla_report_unanswered_total", None), exp.unanswered as f64);

    // NDJSON: one line per bucket, each the JSON's bucket.
    let r = run(report(dir.path(), &db, &prefix, window, &["-o", "ndjson"])).await;
    let lines: Vec<Value> = r.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1], pg["buckets"][1]);

    // --report-dir: Markdown, JSON and SVG side by side, the Markdown linking the chart.
    let r = run(report(dir.path(), &db, &prefix, window, &["--report-dir", "out"])).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mut names: Vec<String> = std::fs::read_dir(dir.path().join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 4, "{names:?}");
    assert!(names.iter().all(|n| n.contains("-sla-report.")), "{names:?}");
    let md = std::fs::read_to_string(dir.path().join("out").join(&names[2])).unwrap();
    assert!(md.starts_with("# SLA report") && md.contains(&format!("]({})", names[3])), "{md}");
}

/// The report's page with its two buckets, read in a browser; a conversation id that is markup
/// (the slowest of the window, so the page names it) shows as text.
#[sqlx::test(migrations = false)]
async fn the_report_page_reads_in_a_browser_and_shows_markup_as_text(pool: PgPool) {
    let (prefix, db, window, _) = filled(&pool, "sla-report-page").await;
    let hostile = "<script>alert(1)</script>";
    let at = window.0 + 60_000;
    let events = [
        event("h1", hostile, "message:user", json!({"messageId": 1_000_001, "content": "q"}), at),
        event("h2", hostile, "message:ai", json!({"messageId": 1_000_002, "replyTo": 1_000_001}), at + 50_000),
    ];
    let table = Contracts::with_redis_prefix(&prefix).table;
    broker_ops::store::postgres::insert(&pool, "test", &table, &events).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let r = run(report(dir.path(), &db, &prefix, window, &["--from", "postgres", "--report-dir", "out"])).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let page = crate::pages::only(&dir.path().join("out"), ".html");
    let text = std::fs::read_to_string(&page).unwrap();
    assert!(text.contains("&lt;script&gt;alert(1)&lt;/script&gt;") && !text.contains(hostile), "escaped");
    assert!(!text.contains("<script"), "no script at all");
    let seen = crate::pages::check(&page, &dir.path().join("shots")).await;
    assert_eq!(seen["views"]["1280-light"]["text"], "OVER THE SLO", "{seen}");
}

#[sqlx::test(migrations = false)]
async fn empty_windows_bad_windows_and_a_missing_table(pool: PgPool) {
    let prefix = support::prefix("sla-report-edges");
    let db = crate::support::url_of(&pool);
    let dir = tempfile::tempdir().unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    let window = (now - 7_200_000, now - 3_600_000);

    let r = run(report(dir.path(), &db, &prefix, window, &[])).await;
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("broker-ops db migrate") && r.stderr.contains("127.0.0.1"), "{}", r.stderr);

    broker_ops::store::postgres::migrate(&pool, "test", &Contracts::default().table).await.unwrap();
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

/// Fills both mirrors of a fresh database with the events of [`mirror_data`].
async fn filled(pool: &PgPool, name: &str) -> (String, String, (i64, i64), Expected) {
    let prefix = support::prefix(name);
    let contracts = Contracts::with_redis_prefix(&prefix);
    broker_ops::store::postgres::migrate(pool, "test", &contracts.table).await.unwrap();
    let (events, window, exp) = mirror_data(chrono::Utc::now().timestamp_millis());
    broker_ops::store::postgres::insert(pool, "test", &contracts.table, &events).await.unwrap();
    let mut redis = support::redis_handle(&prefix).await;
    broker_ops::store::redis::append(&mut redis, &contracts, &events).await.unwrap();
    (prefix, crate::support::url_of(pool), window, exp)
}

#[sqlx::test(migrations = false)]
async fn first_after_pairing_gives_the_same_answer_from_both_mirrors(pool: PgPool) {
    let (prefix, db, window, exp) = filled(&pool, "sla-report-first-after").await;
    let dir = tempfile::tempdir().unwrap();
    let mut docs = Vec::new();
    for from in ["postgres", "redis"] {
        let mut c = report(dir.path(), &db, &prefix, window, &["--from", from]);
        c.env("BROKER_OPS_CONTRACT_REPLY_FIELD", "first-after");
        let r = run(c).await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        let mut doc: Value = serde_json::from_str(&r.stdout).unwrap();
        support::schema_check("sla-report", &doc);
        assert_eq!(doc["reply_match"], "first-after");
        // Without a reply field nothing is malformed: the message without messageId is answered
        // by the reply after it (1 s later), which carries no replyTo.
        let mut lat = exp.latencies_ms.clone();
        lat.push(1000);
        check_stats(&doc["reply_ms"], &lat, from);
        assert_eq!(doc["messages"], 60 + 80 + 3 + 1 + 1 + 1);
        assert_eq!(doc["replies"], 60 + 80 + 1 + 1);
        assert_eq!(doc["unanswered"], exp.unanswered);
        assert_eq!(doc["pending"], exp.pending);
        assert_eq!(doc["sla_events"], json!({"warnings": 4, "violations": 2}));
        assert_eq!(doc["excluded"]["conversations"], 2);
        assert_eq!(doc["malformed"]["messages_without_id"], 0);
        doc["source"] = Value::Null;
        doc["elapsed_ms"] = Value::Null;
        docs.push(doc);
    }
    assert_eq!(docs[0], docs[1], "Postgres and Redis disagree under first-after");
}

/// Real smoke chats against a sandbox that mirrors through Redis and Postgres: the report of the
/// mirror agrees with the smoke's own figures for the same chats, the smoke being later by the
/// time a post and an SSE delivery take (a few ms on loopback). Without the flag the chats are
/// test traffic, left out and counted apart.
#[sqlx::test(migrations = false)]
async fn a_smoke_run_read_back_from_the_mirror_agrees_with_the_smoke(pool: PgPool) {
    let prefix = support::prefix("sla-report-smoke");
    let opts = support::faulted(crate::support::mirrored_options(&pool, &prefix), |f| {
        f.ai_latency = "lognormal:p50=60ms,p95=150ms".parse().unwrap()
    });
    let (sb, _env) = support::start(opts).await;
    let started = chrono::Utc::now().timestamp_millis() - 1000;
    let chats = 40;
    let smoke = broker_ops::sla::smoke(crate::sla_smoke::options(&sb, chats), Default::default(), None).await.unwrap();
    assert_eq!(smoke.chats.ok, chats, "{:?}", smoke.errors);
    crate::support::wait_mirrored(&sb, 2 * chats).await;
    let window = (started, chrono::Utc::now().timestamp_millis() + 1000);
    let db = crate::support::url_of(&pool);
    let dir = tempfile::tempdir().unwrap();
    let sm = smoke.reply_ms.as_ref().unwrap();
    for from in ["postgres", "redis"] {
        let r = run(report(dir.path(), &db, &prefix, window, &["--from", from, "--include-test-traffic"])).await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        let doc: Value = serde_json::from_str(&r.stdout).unwrap();
        let rep = &doc["reply_ms"];
        assert_eq!(rep["count"], chats as u64, "{from}");
        assert_eq!(doc["unanswered"], 0, "{from}");
        for (k, smoke_ms) in [("p50", sm.p50), ("p95", sm.p95), ("max", sm.max)] {
            let mirror_ms = rep[k].as_f64().unwrap();
            // The smoke counts from before its post to the reply's SSE delivery; the mirror from
            // the customer event's Ably timestamp to the reply's: ms resolution, and the smoke
            // is never earlier by more than that millisecond.
            assert!(
                smoke_ms >= mirror_ms - 1.5 && smoke_ms - mirror_ms <= (mirror_ms * 0.1).max(25.0),
                "{from} {k}: smoke {smoke_ms} ms, mirror {mirror_ms} ms"
            );
        }
        let r = run(report(dir.path(), &db, &prefix, window, &["--from", from])).await;
        let doc: Value = serde_json::from_str(&r.stdout).unwrap();
        assert_eq!(doc["reply_ms"]["count"], 0, "{from}: smoke chats are test traffic");
        assert_eq!(doc["excluded"]["messages"], chats as u64, "{from}");
        assert_eq!(doc["excluded"]["conversations"], chats as u64, "{from}");
    }
}
