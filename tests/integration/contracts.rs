//! A stack that named everything differently (channel `chat-{id}`, reply field `inReplyTo`,
//! stream `conv:{id}:events`, table `ops.chat_log`, no `aud`): with a config file saying so, the
//! whole flow works (smoke over SSE, replay from both mirrors, backlog, token issue and verify,
//! doctor all green); with the defaults, `doctor` names each mismatch and exits 3.

use std::collections::HashMap;
use std::path::Path;

use broker_ops::config::Layers;
use broker_ops::sandbox::Sandbox;
use serde_json::Value;
use sqlx::PgPool;

use crate::support::{self, Env, bin, run};
use crate::support::{mirrored_options, url_of, wait_mirrored};

const CONFIG: &str = r#"
[contracts]
channel = "chat-{id}"
reply_field = "inReplyTo"
redis_stream = "conv:{id}:events"
redis_active = "conv:active"
table = "ops.chat_log"
token_audience = ""
"#;

const SECRET: &str = "0123456789abcdef0123456789abcdef-contracts";

/// The binary pointed at the sandbox, the test's Redis prefix and BullMQ prefix, its database.
fn cmd(dir: &Path, env: &Env, prefix: &str, db: &str, config: bool, args: &[&str]) -> tokio::process::Command {
    let mut c = bin(dir);
    env.apply(c.args(args))
        .env("REDIS_URL", support::redis_url())
        .env("REDIS_KEY_PREFIX", prefix)
        .env("BULL_PREFIX", format!("{prefix}bull"))
        .env("DATABASE_URL", db)
        .env("RESUME_TOKEN_SECRET", SECRET);
    if config {
        c.env("BROKER_OPS_CONFIG", dir.join("stack.toml"));
    }
    c
}

async fn start(pool: &PgPool, dir: &Path, prefix: &str) -> (Sandbox, Env) {
    std::fs::write(dir.join("stack.toml"), CONFIG).unwrap();
    let layers = Layers::new(HashMap::new(), Some(&dir.join("stack.toml"))).unwrap();
    let mut opts = mirrored_options(pool, prefix);
    opts.contracts = broker_ops::contracts::resolve(&layers, prefix.to_string()).unwrap();
    support::start(opts).await
}

fn json(stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("JSON ({e}): {stdout}"))
}

#[sqlx::test(migrations = false)]
async fn a_stack_named_differently_works_end_to_end_with_its_config(pool: PgPool) {
    let (dir, prefix, db) = (tempfile::tempdir().unwrap(), support::prefix("names"), url_of(&pool));
    let (sb, env) = start(&pool, dir.path(), &prefix).await;
    let d = dir.path();

    let smoke =
        run(cmd(d, &env, &prefix, &db, true, &["sla", "smoke", "--chats", "3", "--no-report", "-o", "json"])).await;
    assert_eq!(smoke.code, 0, "{}{}", smoke.stdout, smoke.stderr);
    let report = json(&smoke.stdout);
    assert_eq!(report["chats"]["ok"], 3, "{report}");
    assert_eq!(report["mode"]["transport"], "sse");
    assert_eq!(report["mode"]["reply_match"], "field inReplyTo");
    // Per chat: typing start and stop, the message, the reply, the read receipt.
    wait_mirrored(&sb, 15).await;

    let tables: Vec<String> =
        sqlx::query_scalar("SELECT schemaname || '.' || tablename FROM pg_tables WHERE schemaname = 'ops'")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(tables, ["ops.chat_log"]);
    let conv: String =
        sqlx::query_scalar("SELECT conversation_id FROM ops.chat_log LIMIT 1").fetch_one(&pool).await.unwrap();
    let channel: String =
        sqlx::query_scalar("SELECT channel FROM ops.chat_log LIMIT 1").fetch_one(&pool).await.unwrap();
    assert_eq!(channel, format!("chat-{conv}"));
    for from in ["redis", "postgres"] {
        let args = ["events", "replay", "--from", from, "--conversation", &conv, "-o", "ndjson"];
        let r = run(cmd(d, &env, &prefix, &db, true, &args)).await;
        assert_eq!(r.code, 0, "{from}: {}", r.stderr);
        let mut names: Vec<String> = r.stdout.lines().map(|l| json(l)["name"].as_str().unwrap().to_string()).collect();
        // A typing stop and the message right after it can share a millisecond: their order in
        // a timeline at the same time is the ids', so the names are compared as a set.
        names.sort();
        assert_eq!(names, ["message:ai", "message:read", "message:user", "typing:start", "typing:stop"], "{from}");
        let event = |name: &str| r.stdout.lines().map(json).find(|e| e["name"] == name).unwrap();
        assert_eq!(event("message:ai")["data"]["inReplyTo"], event("message:user")["data"]["messageId"]);
        assert_eq!(event("message:read")["data"]["messageId"], event("message:ai")["data"]["messageId"]);
    }

    let r = run(cmd(d, &env, &prefix, &db, true, &["ably", "backlog", "-o", "json"])).await;
    let doc = json(&r.stdout);
    let checks = doc["checks"].as_array().unwrap();
    let lag = |name: &str| {
        checks.iter().find(|c| crate::support::check_label(c) == name).unwrap_or_else(|| panic!("{name}: {doc}"))
    };
    assert_eq!(lag("missing@redis")["value"], 0.0, "{doc}");
    assert_eq!(lag("missing@postgres")["value"], 0.0, "{doc}");
    assert_eq!(lag("waiting")["state"], "OK", "{doc}");

    let issued = run(cmd(
        d,
        &env,
        &prefix,
        &db,
        true,
        &["token", "issue", "--conversation", &conv, "--email", "ann@example.com", "-o", "json"],
    ))
    .await;
    assert_eq!(issued.code, 0, "{}", issued.stderr);
    let token = json(&issued.stdout)["token"].as_str().unwrap().to_string();
    let verified = run(cmd(d, &env, &prefix, &db, true, &["token", "verify", &token, "-o", "json"])).await;
    assert_eq!(verified.code, 0, "{}{}", verified.stdout, verified.stderr);
    let v = json(&verified.stdout);
    assert!(v["claims"].get("aud").is_none(), "no aud under token_audience = \"\": {v}");
    assert!(v["claims"].get("iss").is_none(), "no iss: the default contract pins none: {v}");

    let doctor = run(cmd(d, &env, &prefix, &db, true, &["doctor", "-o", "json"])).await;
    assert_eq!(doctor.code, 0, "{}{}", doctor.stdout, doctor.stderr);
    let doc = json(&doctor.stdout);
    support::schema_check("doctor", &doc);
    let verdict = |key: &str| {
        let row = doc["contracts"].as_array().unwrap().iter().find(|r| r["key"] == key).unwrap().clone();
        (row["evidence"]["verdict"].as_str().unwrap().to_string(), row)
    };
    for key in ["channel", "event_user", "event_ai", "reply_field", "redis_stream", "redis_active", "table"] {
        assert_eq!(verdict(key).0, "match", "{key}: {:?}", verdict(key).1);
    }
    assert!(verdict("channel").1["source"].as_str().unwrap().starts_with("config file "));
    sb.shutdown().await;
}

#[sqlx::test(migrations = false)]
async fn with_the_defaults_doctor_names_every_mismatch_and_exits_3(pool: PgPool) {
    let (dir, prefix, db) = (tempfile::tempdir().unwrap(), support::prefix("mismatch"), url_of(&pool));
    let (sb, env) = start(&pool, dir.path(), &prefix).await;
    let (contact, conv) = support::new_chat(&env).await;
    support::say(&env, &contact, conv, "Is my rate fixed?").await;
    // The customer message and the AI reply.
    wait_mirrored(&sb, 2).await;

    let r = run(cmd(dir.path(), &env, &prefix, &db, false, &["doctor"])).await;
    assert_eq!(r.code, 3, "{}{}", r.stdout, r.stderr);
    let out = &r.stdout;
    for line in [
        "contracts.channel = \"conversation:{id}\": no active channel matches conversation:*; 1 channels match chat-*; set contracts.channel",
        "contracts.redis_stream = \"chat:events:{id}\": no key matches chat:events:*; 1 keys match conv:*:events; set contracts.redis_stream",
        "contracts.redis_active = \"chat:conversations:active\": chat:conversations:active is missing; sorted sets found: conv:active; set contracts.redis_active",
        "contracts.table = \"public.chat_events\": public.chat_events does not exist; ops.chat_log has the mirror's columns; set contracts.table",
        "contracts.reply_field = \"replyTo\": no message:ai carries replyTo; their data has: content, conversationId, inReplyTo, latencyMs, messageId; set contracts.reply_field",
    ] {
        assert!(out.contains(line), "missing line {line:?} in:\n{out}");
    }
    sb.shutdown().await;
}

#[tokio::test]
async fn bad_contracts_are_refused_at_start_naming_the_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    for (text, needle) in [
        ("[contracts]\nchanel = \"x-{id}\"\n", "contracts.chanel from config file "),
        ("[contracts]\nredis_stream = \"conv:events\"\n", "has no {id}"),
        ("[contracts]\ntable = \"ops.chat-log\"\n", "is not a valid identifier"),
        ("redis_urll = \"redis://x\"\n", "unknown key `redis_urll` (did you mean `redis_url`?)"),
    ] {
        std::fs::write(&path, text).unwrap();
        let mut c = bin(dir.path());
        c.args(["--config", path.to_str().unwrap(), "doctor"]);
        let r = run(c).await;
        assert_eq!(r.code, 3, "{text}: {}", r.stderr);
        assert!(r.stderr.contains(needle), "{text}: {}", r.stderr);
    }
}

/// A stack whose replies carry no field naming the message: `first-after` pairs each message
/// with the first reply after it, and the report says the match is the weaker one.
#[sqlx::test(migrations = false)]
async fn first_after_pairs_replies_without_a_reply_field(pool: PgPool) {
    let (dir, prefix, db) = (tempfile::tempdir().unwrap(), support::prefix("first"), url_of(&pool));
    std::fs::write(dir.path().join("stack.toml"), "[contracts]\nreply_field = \"first-after\"\n").unwrap();
    let layers = Layers::new(HashMap::new(), Some(&dir.path().join("stack.toml"))).unwrap();
    let mut opts = mirrored_options(&pool, &prefix);
    opts.contracts = broker_ops::contracts::resolve(&layers, prefix.clone()).unwrap();
    let (sb, env) = support::start(opts).await;
    let d = dir.path();
    let smoke =
        run(cmd(d, &env, &prefix, &db, true, &["sla", "smoke", "--chats", "2", "--turns", "2", "-o", "json"])).await;
    assert_eq!(smoke.code, 0, "{}{}", smoke.stdout, smoke.stderr);
    let report = json(&smoke.stdout);
    assert_eq!(report["chats"]["ok"], 2, "{report}");
    assert_eq!(report["mode"]["reply_match"], "first-after");
    assert_eq!(report["reply_ms"]["count"], 4, "two turns of two chats: {report}");
    let human = run(cmd(d, &env, &prefix, &db, true, &["sla", "smoke", "--chats", "1", "--no-report"])).await;
    assert!(human.stdout.contains("replies matched first-after (weaker)"), "{}", human.stdout);
    wait_mirrored(&sb, 8).await;
    let conv: String =
        sqlx::query_scalar("SELECT conversation_id FROM public.chat_events LIMIT 1").fetch_one(&pool).await.unwrap();
    let r = run(cmd(d, &env, &prefix, &db, true, &["events", "replay", "--conversation", &conv, "--from", "postgres"]))
        .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let replies: Vec<&str> = r.stdout.lines().filter(|l| l.contains("message:ai")).collect();
    assert_eq!(replies.len(), 2, "{}", r.stdout);
    for l in replies {
        assert!(
            l.split_whitespace().any(|w| w.ends_with("ms") && w.trim_end_matches("ms").parse::<i64>().is_ok()),
            "a latency next to each reply: {l}"
        );
    }
    sb.shutdown().await;
}
