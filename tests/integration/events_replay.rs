//! `events replay` to stdout from the real Redis and Postgres mirrors filled by the sandbox:
//! order and content, reply latency, name filter, paging, malformed entries, unknown conversations.

use std::time::Duration;

use redis::AsyncCommands;
use serde_json::Value;
use sqlx::PgPool;

use crate::support::{self, bin, run};

struct Mirrored {
    prefix: String,
    db: String,
    conv: u64,
    _sb: broker_ops::sandbox::Sandbox,
}

async fn mirrored(pool: &PgPool, name: &str) -> Mirrored {
    let prefix = support::prefix(name);
    let (sb, env) = support::start(crate::support::mirrored_options(pool, &prefix)).await;
    let (contact, conv) = support::new_chat(&env).await;
    let mut events = support::subscribe(&env, &format!("channels=conversation:{conv}")).await;
    support::say(&env, &contact, conv, "First question?").await;
    support::collect(&mut events, 2, Duration::from_secs(3)).await;
    support::say(&env, &contact, conv, "Second question?").await;
    support::collect(&mut events, 2, Duration::from_secs(3)).await;
    crate::support::wait_mirrored(&sb, 4).await;
    Mirrored { prefix, db: crate::support::url_of(pool), conv, _sb: sb }
}

fn replay(m: &Mirrored, dir: &std::path::Path, args: &[&str]) -> tokio::process::Command {
    let mut c = bin(dir);
    c.args(["events", "replay"])
        .args(args)
        .env("REDIS_URL", support::redis_url())
        .env("DATABASE_URL", &m.db)
        .env("REDIS_KEY_PREFIX", &m.prefix);
    c
}

fn lines(stdout: &str) -> Vec<Value> {
    stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[sqlx::test(migrations = false)]
async fn both_mirrors_give_the_same_timeline_in_order(pool: PgPool) {
    let m = mirrored(&pool, "replay").await;
    let dir = tempfile::tempdir().unwrap();
    let conv = m.conv.to_string();
    let mut seen = Vec::new();
    for from in ["redis", "postgres"] {
        let r = run(replay(&m, dir.path(), &["--conversation", &conv, "--from", from, "-o", "ndjson"])).await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        let ev = lines(&r.stdout);
        let names: Vec<&str> = ev.iter().map(|e| e["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["message:user", "message:ai", "message:user", "message:ai"], "{from}");
        assert_eq!(ev[1]["data"]["replyTo"], ev[0]["data"]["messageId"]);
        assert!(ev.windows(2).all(|w| w[0]["timestamp_ms"].as_i64() <= w[1]["timestamp_ms"].as_i64()));
        assert!(r.stderr.contains(&format!("4 events from {}", if from == "redis" { "Redis" } else { "Postgres" })));
        seen.push(ev.iter().map(|e| e["id"].as_str().unwrap().to_string()).collect::<Vec<_>>());
    }
    assert_eq!(seen[0], seen[1], "the same Ably ids from both mirrors");

    let r = run(replay(
        &m,
        dir.path(),
        &["--conversation", &conv, "--from", "postgres", "-o", "ndjson", "--page-size", "1"],
    ))
    .await;
    assert_eq!(lines(&r.stdout).len(), 4, "keyset paging one row at a time loses nothing");
    let r =
        run(replay(&m, dir.path(), &["--conversation", &conv, "--from", "redis", "-o", "ndjson", "--page-size", "1"]))
            .await;
    assert_eq!(lines(&r.stdout).len(), 4, "exclusive XRANGE cursors one entry at a time lose nothing");

    let r = run(replay(&m, dir.path(), &["--conversation", &conv, "--name", "message:ai", "-o", "json"])).await;
    let doc: Vec<Value> = serde_json::from_str(&r.stdout).expect("-o json is one JSON array");
    assert_eq!(doc.len(), 2);

    let r = run(replay(&m, dir.path(), &["--conversation", &conv])).await;
    let table: Vec<&str> = r.stdout.lines().collect();
    assert!(table[0].starts_with("time"), "{}", r.stdout);
    let ai = table.iter().find(|l| l.contains("message:ai")).unwrap();
    assert!(ai.contains("ms  "), "the reply latency stands next to the reply: {ai}");
    assert!(table[1].contains("First question?"));
}

#[sqlx::test(migrations = false)]
async fn malformed_entries_are_counted_and_unknown_conversations_say_so(pool: PgPool) {
    let m = mirrored(&pool, "malformed").await;
    let dir = tempfile::tempdir().unwrap();
    let mut r = support::redis().await;
    let key = format!("{}chat:events:{}", m.prefix, m.conv);
    let bad_json: String = r
        .xadd(&key, "*", &[("id", "x1"), ("name", "message:user"), ("data", "{not json"), ("timestamp", "1")])
        .await
        .unwrap();
    let _: String = r.xadd(&key, "*", &[("id", "x2"), ("name", "message:user")]).await.unwrap();
    let out =
        run(replay(&m, dir.path(), &["--conversation", &m.conv.to_string(), "--from", "redis", "-o", "ndjson"])).await;
    assert_eq!(out.code, 0);
    assert_eq!(lines(&out.stdout).len(), 4, "the good events still come out");
    assert!(out.stderr.contains("2 malformed entries skipped"), "{}", out.stderr);
    assert!(out.stderr.contains(&format!("{key} {bad_json}: data is not JSON")), "{}", out.stderr);
    assert!(out.stderr.contains("missing field \"data\""), "{}", out.stderr);

    let out = run(replay(&m, dir.path(), &["--conversation", "999999", "--from", "postgres"])).await;
    assert_eq!(out.code, 0);
    assert!(out.stderr.contains("no events in Postgres for conversation(s) 999999"), "{}", out.stderr);
    let out = run(replay(&m, dir.path(), &["--from", "redis"])).await;
    assert_eq!(out.code, 2, "--conversation or --all is required");
}
