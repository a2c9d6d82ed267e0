//! Staging in a box: the sandbox's simulated customers against real Redis and Postgres (the
//! mirror they fill, the flag they follow, the report that sees them), the soak, and typing and
//! read receipts timed by the smoke against the sandbox's own delivery record.

use std::time::Duration;

use broker_ops::rollout::bucket;
use broker_ops::sandbox::traffic::{ControlPatch, TrafficOptions};
use broker_ops::sandbox::{Sandbox, SandboxOptions};
use serde_json::Value;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::support::{self, bin, run, until, until_value, url_of};

fn traffic(rate_per_min: f64) -> TrafficOptions {
    TrafficOptions {
        rate_per_min,
        turns: (1, 2),
        think: Duration::from_millis(100),
        poll_interval: Duration::from_millis(100),
        reply_timeout: Duration::from_secs(10),
        ..TrafficOptions::default()
    }
}

async fn truth(sb: &Sandbox) -> Value {
    let r = support::http().get(format!("{}/_sandbox/traffic", sb.base_url())).send().await.unwrap();
    assert!(r.status().is_success());
    r.json().await.unwrap()
}

async fn cli(pool: &PgPool, dir: &std::path::Path, prefix: &str, args: &[&str]) -> support::Run {
    let mut c = bin(dir);
    c.env("DATABASE_URL", url_of(pool)).env("REDIS_URL", support::redis_url()).env("REDIS_KEY_PREFIX", prefix);
    c.env("USER", "test").args(args);
    run(c).await
}

/// A sandbox mirroring under `prefix` whose simulated customers stay a while (8 turns, 0.8 s
/// apart) and whose app looks at the flag every second.
async fn lingering(pool: &PgPool, prefix: &str) -> Sandbox {
    let t = TrafficOptions {
        turns: (8, 8),
        think: Duration::from_millis(800),
        flag_refresh: Duration::from_secs(1),
        ..traffic(900.0)
    };
    let opts = SandboxOptions { traffic: Some(t), ..support::mirrored_options(pool, prefix) };
    Sandbox::start(opts).await.unwrap()
}

/// Tells the simulated app to ignore the flag and waits until `n` conversations started since
/// have spoken on real-time against it.
async fn ignore_the_flag(sb: &Sandbox, n: usize) {
    sb.set_traffic(ControlPatch { rate: None, paused: None, ignore_flag: Some(true) }).unwrap();
    let switched = chrono::Utc::now().timestamp_millis();
    until(&format!("{n} conversations ignoring the flag spoke"), || async {
        let t = truth(sb).await;
        let spoke = t["conversations"].as_array().unwrap().iter().filter(|c| {
            c["started_ms"].as_i64() > Some(switched)
                && c["why"] == "ignoring_flag"
                && c["events"]["messages"].as_u64() > Some(0)
        });
        spoke.count() >= n
    })
    .await;
}

/// Pauses the arrivals and waits until every simulated customer has left and the webhook has
/// delivered what they produced.
async fn drain(sb: &Sandbox) -> Value {
    sb.set_traffic(ControlPatch { rate: None, paused: Some(true), ignore_flag: None }).unwrap();
    let t = until_value("every simulated customer left", || async {
        let t = truth(sb).await;
        (t["active"] == 0).then_some(t)
    })
    .await;
    until("the webhook delivered everything", || async {
        sb.webhook_counters().is_some_and(|c| c["pending"] == 0) && sb.sink_counters().1 == 0
    })
    .await;
    t
}

/// Simulated customers at 240 conversations a minute for about 15 s (the issue's 120/min for
/// 30 s, compressed: the same 60 conversations) with the flag at 50 %: the mirror fills, the
/// conversations bucketed on real-time (and only they) hold subscriptions and presence, and
/// `sla report` (test traffic excluded) counts exactly what the sandbox says its customers did.
#[sqlx::test(migrations = false)]
async fn traffic_fills_the_mirror_follows_the_flag_and_the_report_agrees(pool: PgPool) {
    let dir = tempfile::tempdir().unwrap();
    let prefix = support::prefix("traffic");
    assert_eq!(cli(&pool, dir.path(), &prefix, &["db", "migrate"]).await.code, 0);
    let set = cli(&pool, dir.path(), &prefix, &["rollout", "set", "--percent", "50", "--reason", "t", "--yes"]).await;
    assert_eq!(set.code, 0, "{}", set.stderr);
    let since = chrono::Utc::now() - chrono::Duration::seconds(5);
    let opts = SandboxOptions { traffic: Some(traffic(240.0)), ..support::mirrored_options(&pool, &prefix) };
    let sb = Sandbox::start(opts).await.unwrap();
    until("the flag was read", || async { truth(&sb).await["flag"]["unreadable"].is_null() }).await;
    until("60 conversations started", || async { truth(&sb).await["started"].as_u64().unwrap() >= 60 }).await;
    // Live conversations hold a subscription exactly when the app put them on real-time, and
    // that is exactly when their bucket is within 50 %.
    let t = truth(&sb).await;
    for c in t["conversations"].as_array().unwrap() {
        let id = c["id"].as_u64().unwrap().to_string();
        let on = bucket::bucket("ENABLE_ABLY_REALTIME", &id) <= 50;
        assert_eq!(c["transport"] == "realtime", on, "{c}");
        assert_eq!(c["why"], "bucket", "{c}");
        if c["ended_ms"].is_null() && c["subscribed"] == true {
            assert!(on, "a polling conversation holds a subscription: {c}");
        }
        if !on {
            assert_eq!(c["events"]["subscribe"], 0, "{c}");
            assert_eq!(c["events"]["typing_start"], 0, "{c}");
        }
    }
    // And as Ably's occupancy shows it: the live real-time conversations have subscribers and a
    // member present, the polling ones neither.
    let key = support::Env::of(&sb).key;
    let (name, secret) = key.split_once(':').unwrap();
    let mut looked = 0;
    for c in t["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ended_ms"].is_null() && c["subscribed"] == c["transport"].eq("realtime"))
    {
        let url = format!("{}/channels/conversation:{}?occupancy=metrics", sb.base_url(), c["id"]);
        let d: Value =
            support::http().get(url).basic_auth(name, Some(secret)).send().await.unwrap().json().await.unwrap();
        let m = &d["status"]["occupancy"]["metrics"];
        let agrees = if c["transport"] == "realtime" {
            m["subscribers"].as_u64() >= Some(1) && m["presenceMembers"] == 1
        } else {
            m["subscribers"] == 0 && m["presenceMembers"] == 0
        };
        if !agrees {
            // It may have ended since the ground truth was read: only a conversation still live
            // on the same transport contradicts the occupancy.
            let now = truth(&sb).await;
            let same = now["conversations"].as_array().unwrap().iter().find(|x| x["id"] == c["id"]).cloned();
            let still = same.is_some_and(|x| x["ended_ms"].is_null() && x["transport"] == c["transport"]);
            assert!(!still, "occupancy {m} contradicts {c}");
            continue;
        }
        looked += 1;
    }
    assert!(looked > 0, "no live conversation to look at");
    let t = drain(&sb).await;
    let all = t["conversations"].as_array().unwrap();
    let realtime = all.iter().filter(|c| c["transport"] == "realtime").count();
    let share = realtime as f64 / all.len() as f64;
    assert!((0.3..=0.7).contains(&share), "about half on real-time: {realtime} of {}", all.len());
    assert_eq!(t["failed"], 0, "{}", t["failures"]);
    let ev = &t["events"];
    assert_eq!(ev["subscribe"], ev["unsubscribe"]);
    assert_eq!(ev["presence_enter"], ev["presence_leave"]);
    assert!(ev["typing_start"].as_u64().unwrap() > 0 && ev["polls"].as_u64().unwrap() > 0, "{ev}");
    let until_t = (chrono::Utc::now() + chrono::Duration::seconds(5)).to_rfc3339();
    let r = cli(
        &pool,
        dir.path(),
        &prefix,
        &["-o", "json", "sla", "report", "--since", &since.to_rfc3339(), "--until", &until_t],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let rep: Value = serde_json::from_str(&r.stdout).unwrap();
    support::schema_check("sla-report", &rep);
    assert_eq!(rep["messages"], ev["messages"], "{rep}");
    assert_eq!(rep["replies"], ev["replies"], "{rep}");
    assert_eq!(rep["unanswered"], 0);
    assert_eq!(rep["conversations"]["in_window"], t["started"]);
    assert_eq!(rep["excluded"]["conversations"], 0, "the simulated customers are customers");
    assert_eq!(rep["extras"]["typing_start"], ev["typing_start"]);
    assert_eq!(rep["extras"]["typing_stop"], ev["typing_stop"]);
    assert_eq!(rep["extras"]["read"], ev["read"]);
    sb.shutdown().await;
    support::forget_prefix(&prefix).await;
}

/// The app ignoring the flag puts everyone on real-time; a flag table that cannot be read sends
/// everyone to polling and the ground truth says why.
#[sqlx::test(migrations = false)]
async fn ignoring_the_flag_and_a_missing_flag_table(pool: PgPool) {
    let prefix = support::prefix("traffic-noflag");
    let opts = SandboxOptions { traffic: Some(traffic(600.0)), ..support::mirrored_options(&pool, &prefix) };
    let sb = Sandbox::start(opts).await.unwrap();
    let t = until_value("the flag read failed", || async {
        let t = truth(&sb).await;
        (t["flag"]["reads"].as_u64() > Some(0) && t["started"].as_u64() > Some(5)).then_some(t)
    })
    .await;
    assert!(t["flag"]["unreadable"].as_str().unwrap().contains("db migrate"), "{}", t["flag"]);
    assert!(t["flag"]["fallback"].as_str().unwrap().contains("kill switch"));
    for c in t["conversations"].as_array().unwrap().iter().filter(|c| !c["timeline"].as_array().unwrap().is_empty()) {
        assert_eq!((&c["transport"], &c["why"]), (&Value::from("polling"), &Value::from("flag_unreadable")), "{c}");
    }
    sb.set_traffic(ControlPatch { rate: None, paused: None, ignore_flag: Some(true) }).unwrap();
    let later = chrono::Utc::now().timestamp_millis();
    until("new conversations on real-time, ignoring the flag", || async {
        let t = truth(&sb).await;
        let newer: Vec<&Value> =
            t["conversations"].as_array().unwrap().iter().filter(|c| c["started_ms"].as_i64() > Some(later)).collect();
        newer.len() >= 3 && newer.iter().all(|c| c["transport"] == "realtime" && c["why"] == "ignoring_flag")
    })
    .await;
    // A rate past the limit is refused and changes nothing.
    let e = sb.set_traffic(ControlPatch { rate: Some(1e6), paused: None, ignore_flag: None }).unwrap_err();
    assert!(e.contains("3000"), "{e}");
    let r =
        support::http().post(format!("{}/_sandbox/traffic", sb.base_url())).body(r#"{"rate":0}"#).send().await.unwrap();
    assert_eq!(r.status(), 400);
    drain(&sb).await;
    sb.shutdown().await;
    support::forget_prefix(&prefix).await;
}

/// The smoke's typing and read percentiles against the sandbox's own delivery record: every
/// typing and read event reaches both subscribers of its chat (the customer and the dashboard),
/// and the medians agree (within 5 ms here, beside the rest of the suite); without extras the
/// same smoke passes and reports none.
#[tokio::test]
async fn typing_and_read_receipts_are_timed_as_the_sandbox_delivered_them() {
    let (sb, _env) = support::start(support::options()).await;
    let mut opts = crate::sla_smoke::options(&sb, 20);
    // Two at once: the sandbox's record starts when the publish is accepted, the smoke's when it
    // sends the request, so the request's own handling (parsing, auth) is the gap; in a debug
    // build on two cores, ten chats at once make that gap a few milliseconds.
    opts.schedule = broker_ops::sla::Schedule::Closed { concurrency: 2 };
    opts.extras = true;
    opts.turns = 2;
    opts.thresholds.push("typing_p95<500ms".parse().unwrap());
    opts.thresholds.push("read_p95<500ms".parse().unwrap());
    let report = broker_ops::sla::smoke(opts.clone(), CancellationToken::new(), None).await.unwrap();
    assert!(report.passed, "{:?} {:?}", report.thresholds, report.errors);
    let doc = broker_ops::output::Render::json(&report);
    support::schema_check("sla-smoke", &doc);
    let (typing, read) = (report.typing_ms.clone().unwrap(), report.read_ms.clone().unwrap());
    assert_eq!((typing.count, read.count), (80, 40), "two typing events and a read receipt per message");
    let g: Value = support::http()
        .get(format!("{}/_sandbox/ground-truth", sb.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let d = &g["extras_delivery_ms"];
    assert_eq!(d["typing"]["count"], 160, "each to two subscribers: {d}");
    assert_eq!(d["read"]["count"], 80, "{d}");
    for (ours, theirs) in [(typing.p50, &d["typing"]["p50"]), (read.p50, &d["read"]["p50"])] {
        let theirs = theirs.as_f64().unwrap();
        // The benchmarks' bar is max(1 %, 2 ms) on a quiet machine; beside the rest of the suite
        // on two cores the request's own handling can add a few milliseconds more.
        let tolerance = (theirs * 0.01).max(5.0);
        assert!(ours >= theirs - 0.05 && ours - theirs <= tolerance, "smoke {ours} ms, sandbox {theirs} ms");
    }
    opts.extras = false;
    opts.thresholds.truncate(2);
    let plain = broker_ops::sla::smoke(opts, CancellationToken::new(), None).await.unwrap();
    assert!(plain.passed && plain.typing_ms.is_none() && plain.read_ms.is_none());
    sb.shutdown().await;
}

/// A soak through the binary: 8 s at 240/min in 2 s intervals (the issue's 2 minutes at 60/min
/// in 30 s intervals, compressed fifteen-fold): four interval records in the report directory,
/// each also on stderr, and a final report that holds them; bad rates refused before anything.
#[tokio::test]
async fn a_soak_reports_each_interval_and_the_whole() {
    let dir = tempfile::tempdir().unwrap();
    let reports = dir.path().join("reports");
    let mut c = bin(dir.path());
    c.args([
        "-o",
        "json",
        "sla",
        "smoke",
        "--sandbox",
        "--ai-latency",
        "fixed:20ms",
        "--duration",
        "8s",
        "--rate",
        "240/min",
    ])
    .args(["--interval", "2s", "--interval-thresholds", "--report-dir"])
    .arg(&reports);
    let r = run(c).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let doc: Value = serde_json::from_str(&r.stdout).unwrap();
    support::schema_check("sla-smoke", &doc);
    let soak = &doc["soak"];
    assert_eq!(soak["intervals"].as_array().unwrap().len(), 4, "{soak}");
    assert_eq!(soak["rate_per_min"], 240.0);
    let chats: u64 = soak["intervals"].as_array().unwrap().iter().map(|i| i["chats"].as_u64().unwrap()).sum();
    assert_eq!(Some(chats), doc["chats"]["total"].as_u64(), "every chat in exactly one interval");
    assert!((24..=40).contains(&chats), "about 32 chats at 240/min for 8 s: {chats}");
    assert_eq!(r.stderr.matches("interval ").count(), 4, "{}", r.stderr);
    let ndjson = std::fs::read_dir(&reports)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".intervals.ndjson"))
        .expect("the intervals file");
    let lines: Vec<Value> =
        std::fs::read_to_string(ndjson).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 4);
    assert!(lines.iter().all(|l| l["kind"] == "sla_smoke_interval" && l["rss_kib"].as_u64() > Some(0)));
    for bad in [["--rate", "0/min"], ["--rate", "100000/min"]] {
        let mut c = bin(dir.path());
        c.args(["sla", "smoke", "--sandbox", "--duration", "5s"]).args(bad);
        let r = run(c).await;
        assert_eq!(r.code, 2, "{bad:?}: {}", r.stderr);
    }
    let mut c = bin(dir.path());
    c.args(["sandbox", "--traffic", "100000"]);
    let r = run(c).await;
    assert!(r.code == 2 && r.stderr.contains("3000"), "{}", r.stderr);
}

/// A soak whose target goes away for a while keeps going: the intervals in which it was away
/// count their failures, the next ones recover, and the whole run says it failed.
#[tokio::test]
async fn a_soak_rides_out_a_target_that_goes_away_and_comes_back() {
    let (sb, _env) = support::start(support::options()).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut opts = crate::sla_smoke::options(&sb, 1);
    opts.schedule = broker_ops::sla::Schedule::Open { rate_per_s: 5.0, max_in_flight: 1000 };
    opts.soak = Some(broker_ops::sla::soak::SoakPlan {
        duration: Duration::from_secs(6),
        interval: Duration::from_secs(2),
        interval_thresholds: true,
        records: Some(tx),
    });
    let run = tokio::spawn(broker_ops::sla::smoke(opts, CancellationToken::new(), None));
    let first = rx.recv().await.unwrap();
    // The target goes away for the second interval: every request answered 500.
    sb.set_faults(serde_json::from_value(serde_json::json!({"http_error_rate": 1.0})).unwrap()).unwrap();
    let second = rx.recv().await.unwrap();
    sb.set_faults(serde_json::from_value(serde_json::json!({"http_error_rate": 0.0})).unwrap()).unwrap();
    let report = run.await.unwrap().unwrap();
    let third = rx.recv().await.unwrap();
    assert!(first.passed && first.failed == 0, "{first:?}");
    assert!(!second.passed && second.failed > 0, "{second:?}");
    assert!(third.passed && third.ok > 0, "recovered: {third:?}");
    let soak = report.soak.as_ref().unwrap();
    assert_eq!((soak.intervals.len(), soak.failed_intervals.clone()), (3, vec![1]));
    assert!(!report.passed, "one bad interval fails the soak");
    sb.shutdown().await;
}

/// `rollout observe` against the sandbox's traffic at 50 %: the real-time cohort holds
/// subscribers and the polling one none (OK); once the simulated app ignores the flag, polling
/// conversations hold subscriptions and it is CRITICAL, naming them.
#[sqlx::test(migrations = false)]
async fn rollout_observe_sees_whether_the_app_follows_the_flag(pool: PgPool) {
    let dir = tempfile::tempdir().unwrap();
    let prefix = support::prefix("observe");
    assert_eq!(cli(&pool, dir.path(), &prefix, &["db", "migrate"]).await.code, 0);
    let set = cli(&pool, dir.path(), &prefix, &["rollout", "set", "--percent", "50", "--reason", "t", "--yes"]).await;
    assert_eq!(set.code, 0, "{}", set.stderr);
    let t = TrafficOptions { turns: (8, 8), think: Duration::from_millis(800), ..traffic(900.0) };
    let opts = SandboxOptions { traffic: Some(t), ..support::mirrored_options(&pool, &prefix) };
    let sb = Sandbox::start(opts).await.unwrap();
    let env = support::Env::of(&sb);
    let with_ably = |args: &[&str]| {
        let mut c = bin(dir.path());
        c.env("DATABASE_URL", url_of(&pool)).env("REDIS_KEY_PREFIX", &prefix);
        c.env("ABLY_REST_URL", &env.base).env("ABLY_API_KEY", &env.key);
        c.args(args).args(["--active-window", "1m", "--min-sample", "5"]);
        run(c)
    };
    let observe = || with_ably(&["-o", "json", "rollout", "observe"]);
    // `advance`'s `observed` gate is the same observation (the other gates are not this test's).
    let observed_gate = || async {
        let args = ["-o", "json", "rollout", "advance", "--dry-run", "--min-soak", "0s", "--min-replies", "1"];
        let r = with_ably(&args).await;
        let doc: Value = serde_json::from_str(&r.stdout).unwrap_or_else(|_| panic!("{} {}", r.stdout, r.stderr));
        support::schema_check("rollout-advance", &doc);
        doc["gates"].as_array().unwrap().iter().find(|g| g["name"] == "observed").unwrap().clone()
    };
    until("40 conversations spoke", || async { truth(&sb).await["events"]["messages"].as_u64() >= Some(40) }).await;
    let r = observe().await;
    let doc: Value = serde_json::from_str(&r.stdout).unwrap_or_else(|_| panic!("{} {}", r.stdout, r.stderr));
    support::schema_check("probe", &doc);
    let check =
        |doc: &Value, name: &str| doc["checks"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap().clone();
    assert_eq!(r.code, 0, "{doc}");
    assert_eq!(check(&doc, "polling_subscribed")["value"], 0.0, "{doc}");
    assert!(check(&doc, "realtime_subscribed")["value"].as_f64() >= Some(0.5), "{doc}");
    let gate = observed_gate().await;
    assert_eq!((gate["pass"].as_bool(), gate["value"].as_f64()), (Some(true), Some(0.0)), "{gate}");
    ignore_the_flag(&sb, 20).await;
    let r = observe().await;
    let doc: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(r.code, 2, "CRITICAL: {doc}");
    let polling = check(&doc, "polling_subscribed");
    assert_eq!(polling["state"], "CRITICAL");
    assert!(polling["detail"].as_str().unwrap().contains("the app does not follow the flag"), "{polling}");
    assert!(polling["detail"].as_str().unwrap().contains("bucket"), "names each with its reason: {polling}");
    let gate = observed_gate().await;
    assert_eq!(gate["pass"].as_bool(), Some(false), "{gate}");
    assert!(gate["detail"].as_str().unwrap().contains("the app does not follow the flag"), "{gate}");
    sb.set_traffic(ControlPatch { rate: None, paused: Some(true), ignore_flag: None }).unwrap();
    sb.shutdown().await;
    support::forget_prefix(&prefix).await;
}

/// `rollout rollback --verify` watches the real-time customers seen before it leave real-time:
/// with an app that reads the flag every second they do, and the time it took is reported; with
/// an app that ignores the flag they do not, and it exits 1 naming them (the rollback done).
#[sqlx::test(migrations = false)]
async fn a_verified_rollback_waits_for_customers_to_leave_real_time(pool: PgPool) {
    let dir = tempfile::tempdir().unwrap();
    let prefix = support::prefix("converge");
    assert_eq!(cli(&pool, dir.path(), &prefix, &["db", "migrate"]).await.code, 0);
    let sb = lingering(&pool, &prefix).await;
    let with_sandbox = |args: &[&str]| {
        let mut c = bin(dir.path());
        c.env("DATABASE_URL", url_of(&pool)).env("REDIS_KEY_PREFIX", &prefix).env("USER", "test");
        for (k, v) in sb.env() {
            c.env(k, v);
        }
        c.args(args);
        run(c)
    };
    let on = ["rollout", "set", "--percent", "50", "--reason", "t", "--yes"];
    assert_eq!(with_sandbox(&on).await.code, 0);
    let spoke = |n: u64| {
        let sb = &sb;
        async move {
            until("real-time customers spoke", || async {
                let t = truth(sb).await;
                t["conversations"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|c| {
                        c["ended_ms"].is_null() && c["subscribed"] == true && c["events"]["messages"].as_u64() > Some(0)
                    })
                    .count() as u64
                    >= n
            })
            .await
        }
    };
    spoke(10).await;
    let back = ["-o", "json", "rollout", "rollback", "--reason", "t", "--yes", "--verify", "--converge", "20s"];
    let r = with_sandbox(&back).await;
    assert_eq!(r.code, 0, "{} {}", r.stdout, r.stderr);
    let step = converge_step(&r.stdout);
    assert_eq!(step["outcome"], "done", "{step}");
    assert!(step["detail"].as_str().unwrap().contains("left real-time within"), "{step}");
    // Now an app that ignores the flag.
    assert_eq!(with_sandbox(&on).await.code, 0);
    sb.set_traffic(ControlPatch { rate: None, paused: None, ignore_flag: Some(true) }).unwrap();
    spoke(20).await;
    let back = ["-o", "json", "rollout", "rollback", "--reason", "t", "--yes", "--verify", "--converge", "2s"];
    let r = with_sandbox(&back).await;
    assert_eq!(r.code, 1, "{} {}", r.stdout, r.stderr);
    let step = converge_step(&r.stdout);
    assert_eq!(step["outcome"], "failed", "{step}");
    assert!(step["detail"].as_str().unwrap().contains("still hold a subscription"), "{step}");
    let status = with_sandbox(&["-o", "json", "rollout", "status"]).await;
    assert!(
        status.stdout.contains("\"enabled\": false") || status.stdout.contains("\"enabled\":false"),
        "the rollback stays done: {}",
        status.stdout
    );
    sb.set_traffic(ControlPatch { rate: None, paused: Some(true), ignore_flag: None }).unwrap();
    sb.shutdown().await;
    support::forget_prefix(&prefix).await;
}

/// The `converge` step of a rollback's JSON.
fn converge_step(stdout: &str) -> Value {
    let doc: Value = serde_json::from_str(stdout).unwrap();
    doc["steps"].as_array().unwrap().iter().find(|s| s["step"] == "converge").unwrap().clone()
}

/// The monitor watches the flag too: with the built-in rules, an app that starts ignoring the
/// flag fires `flag-not-followed` once (after its two sweeps) and, once it follows the flag again
/// (it looks every second), resolves it once; Slack hears of it with the conversations named.
#[sqlx::test(migrations = false)]
async fn the_monitor_pages_once_when_the_app_stops_following_the_flag(pool: PgPool) {
    let dir = tempfile::tempdir().unwrap();
    let prefix = support::prefix("flag-rule");
    assert_eq!(cli(&pool, dir.path(), &prefix, &["db", "migrate"]).await.code, 0);
    let set = cli(&pool, dir.path(), &prefix, &["rollout", "set", "--percent", "50", "--reason", "t", "--yes"]).await;
    assert_eq!(set.code, 0, "{}", set.stderr);
    let sb = lingering(&pool, &prefix).await;
    let slack = support::Recorder::start().await;
    let sweep = || {
        let mut c = bin(dir.path());
        c.env("DATABASE_URL", url_of(&pool)).env("REDIS_URL", support::redis_url()).env("REDIS_KEY_PREFIX", &prefix);
        c.envs(sb.env()).env("SLACK_WEBHOOK_URL", slack.url("/services/T0/B0/flag"));
        c.env("BROKER_OPS_STATE_DIR", dir.path().join("state"));
        c.args(["-o", "json", "monitor", "--probe-timeout", "10s"]);
        async move {
            let r = run(c).await;
            let doc: Value =
                serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}\n{}", r.stdout, r.stderr));
            support::schema_check("monitor", &doc);
            let rule = doc["rules"].as_array().unwrap().iter().find(|r| r["name"] == "flag-not-followed").unwrap();
            let transition = rule["transition"].as_str().filter(|t| *t != "unchanged").map(str::to_string);
            (rule["verdict"].as_str().unwrap().to_string(), transition)
        }
    };
    until("20 conversations spoke", || async { truth(&sb).await["events"]["messages"].as_u64() >= Some(20) }).await;
    assert_eq!(sweep().await.0, "passing", "the app follows the flag");
    ignore_the_flag(&sb, 20).await;
    let mut transitions = Vec::new();
    for _ in 0..2 {
        let (verdict, transition) = sweep().await;
        assert_eq!(verdict, "failing");
        transitions.extend(transition);
    }
    assert_eq!(transitions, ["fired"]);
    let texts: Vec<String> = slack.seen().iter().map(|s| s.body.clone()).collect();
    assert!(
        texts.iter().any(|t| t.contains("flag-not-followed") && t.contains("the app does not follow the flag")),
        "{texts:?}"
    );
    sb.set_traffic(ControlPatch { rate: None, paused: None, ignore_flag: Some(false) }).unwrap();
    // Each customer looks at the flag again within a second; two passing sweeps resolve it.
    let mut passing = 0;
    for _ in 0..10 {
        let (verdict, transition) = sweep().await;
        transitions.extend(transition);
        passing = if verdict == "passing" { passing + 1 } else { 0 };
        if passing == 3 {
            break;
        }
    }
    assert_eq!(transitions, ["fired", "resolved"], "fired once, resolved once");
    sb.set_traffic(ControlPatch { rate: None, paused: Some(true), ignore_flag: None }).unwrap();
    sb.shutdown().await;
    support::forget_prefix(&prefix).await;
}
