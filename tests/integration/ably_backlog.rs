//! `ably backlog` against real BullMQ state made by the pinned `bullmq` package (our counts must
//! equal its own getJobCounts), the legacy marker, broken job hashes, and the mirror's lag
//! behind the sandbox's Ably history in the real Redis and Postgres.

use std::process::Stdio;

use redis::AsyncCommands;
use serde_json::Value;
use sqlx::PgPool;

use crate::support::{self, Env, bin, run};

async fn bullmq_state(prefix: &str, queue: &str, pause: bool) -> Value {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop");
    assert!(
        std::path::Path::new(dir).join("node_modules/bullmq").exists(),
        "run `npm ci` in tests/interop (scripts/test does)"
    );
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg("bullmq-state.js").arg(support::redis_url()).arg(prefix).arg(queue).current_dir(dir).stdout(Stdio::piped());
    if pause {
        cmd.arg("pause");
    }
    let out = cmd.output().await.unwrap();
    assert!(out.status.success(), "bullmq-state.js failed");
    serde_json::from_slice(&out.stdout).unwrap()
}

fn backlog(dir: &std::path::Path, prefix: &str, queue: &str) -> tokio::process::Command {
    let mut c = bin(dir);
    c.args(["ably", "backlog", "-o", "json"])
        .env("REDIS_URL", support::redis_url())
        .env("BULL_PREFIX", prefix)
        .env("BROKER_QUEUE", queue);
    c
}

fn value(doc: &Value, name: &str) -> Value {
    doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| crate::support::check_label(c) == name)
        .unwrap_or_else(|| panic!("no check {name}: {doc}"))
        .clone()
}

#[tokio::test]
async fn counts_equal_bullmqs_own_get_job_counts_running_and_paused() {
    let prefix = support::prefix("bullmq").trim_end_matches(':').to_string();
    let dir = tempfile::tempdir().unwrap();
    for (queue, pause) in [("running", false), ("paused", true)] {
        let theirs = bullmq_state(&prefix, queue, pause).await;
        let r = run(backlog(dir.path(), &prefix, queue)).await;
        let doc: Value = serde_json::from_str(&r.stdout).unwrap_or_else(|_| panic!("{}{}", r.stdout, r.stderr));
        support::schema_check("probe", &doc);
        for (ours, bull) in [
            ("waiting", "waiting"),
            ("active", "active"),
            ("delayed", "delayed"),
            ("prioritized", "prioritized"),
            ("failed", "failed"),
            ("completed", "completed"),
            ("paused", "paused"),
            ("waiting_children", "waiting-children"),
        ] {
            assert_eq!(
                value(&doc, ours)["value"].as_f64().unwrap() as u64,
                theirs[bull].as_u64().unwrap(),
                "{queue}: {ours} vs bullmq {bull}: {theirs}"
            );
        }
        assert_eq!(value(&doc, "overdue")["value"], 1.0, "the 50 ms job is due and nothing promoted it");
        assert_eq!(value(&doc, "overdue")["state"], "WARNING");
        assert_eq!(value(&doc, "queue_paused")["value"], if pause { 1.0 } else { 0.0 });
        let oldest = value(&doc, "oldest_wait");
        assert_eq!(oldest["state"], "OK", "{oldest}");
        assert!(oldest["value"].as_f64().unwrap() < 10.0);
        assert_eq!(r.code, 1, "WARNING: overdue jobs{}", if pause { " and a paused queue" } else { "" });
    }
}

#[tokio::test]
async fn the_legacy_marker_is_not_counted_and_never_popped() {
    let prefix = support::prefix("marker").trim_end_matches(':').to_string();
    let mut r = support::redis().await;
    let wait = format!("{prefix}:q:wait");
    // Oldest job at the tail, then BullMQ v4's marker behind it.
    let _: () = r.rpush(&wait, "7").await.unwrap();
    let _: () = r.rpush(&wait, "0:12").await.unwrap();
    let _: () = r.lpush(&wait, "8").await.unwrap();
    let _: () =
        r.hset(format!("{prefix}:q:7"), "timestamp", chrono::Utc::now().timestamp_millis() - 45_000).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = run(backlog(dir.path(), &prefix, "q")).await;
    let doc: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(value(&doc, "waiting")["value"], 2.0);
    let oldest = value(&doc, "oldest_wait");
    assert!(oldest["value"].as_f64().unwrap() >= 45.0, "{oldest}");
    assert_eq!(oldest["detail"], "job 7");
    assert_eq!(oldest["state"], "CRITICAL", "over the 30 s default");
    assert_eq!(out.code, 2);
    let len: i64 = r.llen(&wait).await.unwrap();
    assert_eq!(len, 3, "read-only: the marker is still there");
}

#[tokio::test]
async fn a_missing_queue_or_job_hash_is_unknown_with_the_reason() {
    let prefix = support::prefix("missing").trim_end_matches(':').to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = run(backlog(dir.path(), &prefix, "nope")).await;
    assert_eq!(out.code, 3);
    assert!(out.stdout.contains("has no keys in Redis"), "{}", out.stdout);

    let mut r = support::redis().await;
    let _: () = r.lpush(format!("{prefix}:q:wait"), "42").await.unwrap();
    let out = run(backlog(dir.path(), &prefix, "q")).await;
    let doc: Value = serde_json::from_str(&out.stdout).unwrap();
    let oldest = value(&doc, "oldest_wait");
    assert_eq!(oldest["state"], "UNKNOWN");
    assert!(oldest["detail"].as_str().unwrap().contains("job 42 is in the wait list but its hash"), "{oldest}");
    assert_eq!(value(&doc, "waiting")["value"], 1.0, "the other checks still report");

    let mut c = bin(dir.path());
    c.args(["ably", "backlog", "--timeout", "1s"]).env("REDIS_URL", "redis://127.0.0.1:1");
    let out = run(c).await;
    assert_eq!(out.code, 2, "a Redis that refuses is CRITICAL: {}", out.stdout);
    assert!(out.stdout.contains("redis://127.0.0.1:1"), "{}", out.stdout);
}

#[sqlx::test(migrations = false)]
async fn mirror_lag_compares_redis_and_postgres_with_ably_history(pool: PgPool) {
    let prefix = support::prefix("lag");
    let (sb, env) = support::start(crate::support::mirrored_options(&pool, &prefix)).await;
    let (contact, conv) = support::new_chat(&env).await;
    support::say(&env, &contact, conv, "Is my rate fixed?").await;
    crate::support::wait_mirrored(&sb, 2).await;
    let dir = tempfile::tempdir().unwrap();
    let probe = |env: &Env| {
        let mut c = bin(dir.path());
        c.args(["ably", "backlog", "-o", "json"])
            .env("REDIS_URL", support::redis_url())
            .env("DATABASE_URL", crate::support::url_of(&pool))
            .env("REDIS_KEY_PREFIX", &prefix)
            .env("BULL_PREFIX", format!("{prefix}bull"))
            .env("ABLY_REST_URL", &env.base)
            .env("ABLY_API_KEY", &env.key);
        c
    };
    let out = run(probe(&env)).await;
    let doc: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|_| panic!("{}{}", out.stdout, out.stderr));
    for store in ["redis", "postgres"] {
        let lag = value(&doc, &format!("mirror_lag@{store}"));
        assert_eq!((lag["state"].as_str(), lag["value"].as_f64()), (Some("OK"), Some(0.0)), "{lag}");
        assert_eq!(value(&doc, &format!("missing@{store}"))["value"], 0.0);
    }
    // Redis loses the conversation (flushed): the messages are in Ably's history but not mirrored.
    let mut r = support::redis().await;
    let _: () = r.del(format!("{prefix}chat:events:{conv}")).await.unwrap();
    let out = run(probe(&env)).await;
    let doc: Value = serde_json::from_str(&out.stdout).unwrap();
    let missing = value(&doc, "missing@redis");
    assert_eq!((missing["value"].as_f64(), missing["state"].as_str()), (Some(2.0), Some("WARNING")), "{missing}");
    assert_eq!(value(&doc, "missing@postgres")["value"], 0.0, "Postgres still has both");
    assert_eq!(out.code, 1);
    sb.shutdown().await;
}

#[tokio::test]
async fn streams_without_expiry_and_an_evicting_redis_under_the_queue_are_critical_and_named() {
    let own = support::OwnRedis::start(&["--maxmemory", "512mb", "--maxmemory-policy", "allkeys-lru"]);
    let client = redis::Client::open(own.url.as_str()).unwrap();
    support::until("the second Redis answers", || {
        let c = client.clone();
        async move { c.get_multiplexed_async_connection().await.is_ok() }
    })
    .await;
    let mut r = client.get_multiplexed_async_connection().await.unwrap();
    // The queue as the worker makes it, then two conversations: one the route expired, one not.
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop");
    let out = tokio::process::Command::new("node")
        .args(["bullmq-state.js", &own.url, "bull", "broker", "empty"])
        .current_dir(dir)
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "bullmq-state.js: {}", String::from_utf8_lossy(&out.stderr));
    for (conv, ttl) in [("c-kept", Some(86_400)), ("c-forever", None)] {
        let key = format!("chat:events:{conv}");
        let _: String = r.xadd(&key, "*", &[("name", "message:user")]).await.unwrap();
        if let Some(t) = ttl {
            let _: bool = r.expire(&key, t).await.unwrap();
        }
        let _: i64 = r.zadd("chat:conversations:active", conv, 1).await.unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let mut c = bin(dir.path());
    c.args(["ably", "backlog", "-o", "json"]).env("REDIS_URL", &own.url).env("BULL_PREFIX", "bull");
    let out = run(c).await;
    assert_eq!(out.code, 2, "{}", out.stdout);
    let doc: Value = serde_json::from_str(&out.stdout).unwrap();
    support::schema_check("probe", &doc);
    let none = value(&doc, "no_expiry");
    assert_eq!((none["state"].as_str(), none["value"].as_f64()), (Some("CRITICAL"), Some(1.0)), "{none}");
    assert!(none["detail"].as_str().unwrap().contains("e.g. chat:events:c-forever"), "{none}");
    assert_eq!(value(&doc, "long_expiry")["state"], "OK");
    let evicting = value(&doc, "evicting");
    assert_eq!(evicting["state"], "CRITICAL", "{evicting}");
    assert!(evicting["detail"].as_str().unwrap().contains("allkeys-lru while a BullMQ queue"), "{evicting}");
    let used = value(&doc, "memory_used");
    assert_eq!(used["state"], "OK", "{used}");
    assert!(used["value"].as_f64().unwrap() < 0.1 && used["detail"].as_str().unwrap().contains("512.0 MiB"));

    // doctor says the same of that Redis.
    let mut c = bin(dir.path());
    c.args(["doctor", "-o", "json"]).env("REDIS_URL", &own.url).env("BULL_PREFIX", "bull");
    let out = run(c).await;
    let doc: Value = serde_json::from_str(&out.stdout).unwrap();
    let redis_row = doc["checks"].as_array().unwrap().iter().find(|c| c["name"] == "redis").unwrap().clone();
    let detail = redis_row["detail"].as_str().unwrap();
    assert!(detail.contains("CRITICAL no_expiry") && detail.contains("CRITICAL evicting"), "{detail}");

    // The shared test Redis (noeviction, no maxmemory): said plainly, not an alarm.
    let prefix = support::prefix("expiry-ok").trim_end_matches(':').to_string();
    let _ = bullmq_state(&prefix, "q", false).await;
    let out = run(backlog(dir.path(), &prefix, "q")).await;
    let doc: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(value(&doc, "evicting")["state"], "OK");
    let used = value(&doc, "memory_used");
    assert!(used["detail"].as_str().unwrap().contains("no maxmemory is set"), "{used}");
}

/// `--failed 5` lists exactly what BullMQ's own `getFailed(0, 4)` returns, newest first, with
/// `failedReason` and `attemptsMade` (a job retried once shows 2), and changes nothing.
#[tokio::test]
async fn failed_jobs_are_listed_as_bullmqs_get_failed_returns_them() {
    let prefix = format!("{}bull", support::prefix("failed"));
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop");
    let out = tokio::process::Command::new("node")
        .args(["bullmq-state.js", &support::redis_url(), &prefix, "broker", "failed"])
        .current_dir(dir)
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "bullmq-state.js: {}", String::from_utf8_lossy(&out.stderr));
    let theirs: Value = serde_json::from_slice(&out.stdout).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut before = support::redis().await;
    let keys_before: Vec<String> = before.keys(format!("{prefix}:*")).await.unwrap();
    let mut cmd = backlog(tmp.path(), &prefix, "broker");
    cmd.args(["--failed", "5"]);
    let r = run(cmd).await;
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let ours: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(ours["failed_total"], theirs["failed"], "{ours:#}");
    let jobs = ours["jobs"].as_array().unwrap();
    let expected = theirs["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 5);
    for (o, t) in jobs.iter().zip(expected) {
        for key in ["id", "name", "failed_reason", "attempts_made", "finished_on", "timestamp", "data"] {
            assert_eq!(o[key], t[key], "{key}: ours {o:#} bullmq {t:#}");
        }
    }
    let keys_after: Vec<String> = before.keys(format!("{prefix}:*")).await.unwrap();
    assert_eq!(keys_before.len(), keys_after.len(), "read-only");
    let listing = |format: &str| {
        let mut c = bin(tmp.path());
        c.args(["-o", format, "ably", "backlog", "--failed", "2"])
            .env("REDIS_URL", support::redis_url())
            .env("BULL_PREFIX", &prefix)
            .env("BROKER_QUEUE", "broker");
        c
    };
    let r = run(listing("table")).await;
    assert!(r.stdout.contains("Chatwoot API answered") && r.stdout.contains("7 failed job(s)"), "{}", r.stdout);
    let r = run(listing("nagios")).await;
    assert_eq!(r.code, 3, "a list is not a probe line: {}{}", r.stdout, r.stderr);
}
