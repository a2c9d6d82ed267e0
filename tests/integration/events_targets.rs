//! `events replay --to ably|redis|postgres`: backfill both ways (twice, nothing doubled, the
//! stream rebuilt in time order with its expiry), a real child killed with SIGKILL and resumed
//! from its checkpoint, Redis going away mid-replay, Ably re-publishing paced under the sandbox's
//! 50 msg/s limit with idempotent ids, dry runs and the confirmation guard.

use std::collections::HashSet;
use std::time::Duration;

use redis::AsyncCommands;
use serde_json::{Value, json};
use sqlx::PgPool;

use broker_ops::contracts::Contracts;
use broker_ops::mirror::MirroredEvent;

use crate::support::{self, bin, run};

fn event(conv: usize, i: usize, ts: i64) -> MirroredEvent {
    MirroredEvent {
        id: format!("msg-{conv}-{i}"),
        conversation_id: conv.to_string(),
        channel: format!("conversation:{conv}"),
        name: if i.is_multiple_of(2) { "message:user" } else { "message:ai" }.into(),
        data: json!({"content": format!("text {i} of {conv}"), "messageId": i}),
        client_id: i.is_multiple_of(2).then(|| format!("contact-{conv}")),
        timestamp_ms: ts,
    }
}

/// `per` events in each of `convs` conversations, one second apart, ending `ago_ms` ago.
pub(crate) fn fixture(convs: usize, per: usize, ago_ms: i64) -> Vec<MirroredEvent> {
    let end = chrono::Utc::now().timestamp_millis() - ago_ms;
    (0..convs).flat_map(|c| (0..per).map(move |i| event(c + 1, i, end - ((per - i) as i64) * 1000))).collect()
}

pub(crate) async fn to_postgres(pool: &PgPool, events: &[MirroredEvent]) {
    let table = Contracts::default().table;
    broker_ops::store::postgres::migrate(pool, "test", &table).await.unwrap();
    for chunk in events.chunks(5000) {
        broker_ops::store::postgres::insert(pool, "test", &table, chunk).await.unwrap();
    }
}

async fn to_redis(prefix: &str, events: &[MirroredEvent]) {
    let mut redis = support::redis_handle(prefix).await;
    let contracts = Contracts::with_redis_prefix(prefix);
    for chunk in events.chunks(5000) {
        broker_ops::store::redis::append(&mut redis, &contracts, chunk).await.unwrap();
    }
}

/// The Ably ids and timestamps in a conversation's stream, in stream order.
async fn stream(prefix: &str, conv: &str) -> Vec<(String, i64)> {
    let mut conn = support::redis().await;
    let entries: Vec<(String, std::collections::HashMap<String, String>)> = redis::cmd("XRANGE")
        .arg(format!("{prefix}chat:events:{conv}"))
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .unwrap();
    entries.into_iter().map(|(_, f)| (f["id"].clone(), f["timestamp"].parse().unwrap())).collect()
}

fn replay(db: &str, prefix: &str, dir: &std::path::Path, args: &[&str]) -> tokio::process::Command {
    let mut c = bin(dir);
    c.args(["events", "replay"])
        .args(args)
        .env("REDIS_URL", support::redis_url())
        .env("DATABASE_URL", db)
        .env("REDIS_KEY_PREFIX", prefix);
    c
}

fn summary(stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|_| panic!("a JSON summary: {stdout}"))
}

#[sqlx::test(migrations = false)]
async fn backfill_both_ways_twice_writes_each_event_once_in_time_order(pool: PgPool) {
    let prefix = support::prefix("backfill");
    let db = crate::support::url_of(&pool);
    let dir = tempfile::tempdir().unwrap();
    let all = fixture(3, 10, 60_000);
    // Postgres holds everything; Redis lost the first half of each conversation (a flush), and
    // holds one event Postgres never got (a failed insert).
    to_postgres(&pool, &all).await;
    let index = |e: &MirroredEvent| e.id.rsplit('-').next().unwrap().parse::<usize>().unwrap();
    let later: Vec<MirroredEvent> = all.iter().filter(|e| index(e) >= 5).cloned().collect();
    let mut only_redis = event(1, 99, chrono::Utc::now().timestamp_millis() - 30_000);
    only_redis.id = "msg-only-redis".into();
    to_redis(&prefix, &later).await;
    to_redis(&prefix, std::slice::from_ref(&only_redis)).await;

    let pg_to_redis = ["--from", "postgres", "--to", "redis", "--all", "--yes", "-o", "json", "--page-size", "7"];
    let r = run(replay(&db, &prefix, dir.path(), &pg_to_redis)).await;
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let s = summary(&r.stdout);
    support::schema_check("replay", &s);
    assert_eq!(
        (s["counts"]["read"].as_u64(), s["counts"]["written"].as_u64(), s["counts"]["skipped"].as_u64()),
        (Some(30), Some(15), Some(15))
    );
    for conv in ["1", "2", "3"] {
        let st = stream(&prefix, conv).await;
        let ids: HashSet<&String> = st.iter().map(|(id, _)| id).collect();
        assert_eq!(ids.len(), st.len(), "no id twice in conversation {conv}");
        assert_eq!(st.len(), if conv == "1" { 11 } else { 10 });
        assert!(st.windows(2).all(|w| w[0].1 <= w[1].1), "rebuilt in timestamp order: {st:?}");
    }
    let mut conn = support::redis().await;
    let pttl: i64 = conn.pttl(format!("{prefix}chat:events:1")).await.unwrap();
    assert!(pttl > 23 * 3600 * 1000 && pttl <= 24 * 3600 * 1000, "expires 24 h after its newest event: {pttl}");
    let score: f64 = conn.zscore(format!("{prefix}chat:conversations:active"), "2").await.unwrap();
    assert_eq!(score as i64, all.iter().filter(|e| e.conversation_id == "2").map(|e| e.timestamp_ms).max().unwrap());

    let again = run(replay(&db, &prefix, dir.path(), &pg_to_redis)).await;
    let s = summary(&again.stdout);
    assert_eq!((s["counts"]["written"].as_u64(), s["counts"]["skipped"].as_u64()), (Some(0), Some(30)));
    assert_eq!(stream(&prefix, "1").await.len(), 11);

    let redis_to_pg = ["--from", "redis", "--to", "postgres", "--all", "--yes", "-o", "json"];
    for (written, skipped) in [(1, 30), (0, 31)] {
        let r = run(replay(&db, &prefix, dir.path(), &redis_to_pg)).await;
        assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
        let s = summary(&r.stdout);
        assert_eq!((s["counts"]["written"].as_u64(), s["counts"]["skipped"].as_u64()), (Some(written), Some(skipped)));
    }
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM chat_events").fetch_one(&pool).await.unwrap();
    assert_eq!(rows, 31);
}

#[sqlx::test(migrations = false)]
async fn events_older_than_the_stream_lifetime_are_not_written_to_redis(pool: PgPool) {
    let prefix = support::prefix("expired");
    let db = crate::support::url_of(&pool);
    let dir = tempfile::tempdir().unwrap();
    let old = fixture(1, 4, 25 * 3600 * 1000);
    to_postgres(&pool, &old).await;
    let r = run(replay(&db, &prefix, dir.path(), &["--to", "redis", "--all", "--since", "-48h", "-o", "json"])).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let s = summary(&r.stdout);
    assert_eq!((s["counts"]["written"].as_u64(), s["counts"]["expired"].as_u64()), (Some(0), Some(4)));
    assert!(stream(&prefix, "1").await.is_empty());
}

#[sqlx::test(migrations = false)]
async fn dry_run_writes_nothing_and_big_windows_need_yes(pool: PgPool) {
    let prefix = support::prefix("dry");
    let db = crate::support::url_of(&pool);
    let dir = tempfile::tempdir().unwrap();
    to_redis(&prefix, &fixture(2, 6, 10_000)).await;
    let args = ["--from", "redis", "--to", "postgres", "--all", "--confirm-over", "5"];
    // No table: a replay never creates one, dry run or not; it names `db migrate`.
    for extra in [&[][..], &["--dry-run"][..]] {
        let r = run(replay(&db, &prefix, dir.path(), &[&args[..], extra].concat())).await;
        assert_eq!(r.code, 3, "{}{}", r.stdout, r.stderr);
        assert!(
            r.stderr.contains("public.chat_events does not exist (create it with `broker-ops db migrate`"),
            "{}",
            r.stderr
        );
    }
    let tables: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_tables WHERE tablename LIKE '%sqlx%' OR tablename = 'chat_events'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(tables, 0, "nothing was created");
    to_postgres(&pool, &[]).await;
    let r = run(replay(&db, &prefix, dir.path(), &args)).await;
    assert_eq!(r.code, 1, "not confirmed is 1 in every command: {}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("about 12 events would be written to postgres: pass --yes"), "{}", r.stderr);
    let r = run(replay(&db, &prefix, dir.path(), &[&args[..], &["--dry-run", "-o", "json"]].concat())).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let s = summary(&r.stdout);
    assert_eq!((s["dry_run"].as_bool(), s["counts"]["written"].as_u64()), (Some(true), Some(12)));
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM chat_events").fetch_one(&pool).await.unwrap();
    assert_eq!(rows, 0);
    let r = run(replay(&db, &prefix, dir.path(), &["--from", "redis", "--to", "redis", "--all"])).await;
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("the same store"), "{}", r.stderr);
}

/// Waits until the checkpoint at `path` shows at least `pages` pages done.
async fn wait_for_pages(path: &std::path::Path, pages: u64) -> Value {
    crate::support::until_value(&format!("the checkpoint reached {pages} pages"), || async {
        let cp = serde_json::from_str::<Value>(&std::fs::read_to_string(path).ok()?).ok()?;
        (cp["counts"]["pages"].as_u64().unwrap_or(0) >= pages).then_some(cp)
    })
    .await
}

#[sqlx::test(migrations = false)]
async fn a_replay_killed_with_sigkill_resumes_from_its_checkpoint_exactly_once(pool: PgPool) {
    let prefix = support::prefix("sigkill");
    let db = crate::support::url_of(&pool);
    let dir = tempfile::tempdir().unwrap();
    let all = fixture(100, 60, 60_000);
    to_postgres(&pool, &all).await;
    let cp = dir.path().join("replay.checkpoint");
    let cp_arg = cp.to_str().unwrap();
    let args = ["--to", "redis", "--all", "--yes", "--page-size", "50", "--checkpoint", cp_arg, "-o", "json"];
    let mut child = replay(&db, &prefix, dir.path(), &args).stdout(std::process::Stdio::null()).spawn().unwrap();
    let at_kill = wait_for_pages(&cp, 3).await;
    child.start_kill().unwrap(); // SIGKILL
    child.wait().await.unwrap();
    let on_disk: Value = serde_json::from_str(&std::fs::read_to_string(&cp).unwrap()).unwrap();
    assert_eq!(on_disk["finished"], false, "killed mid-run: {at_kill}");

    let r = run(replay(&db, &prefix, dir.path(), &args)).await;
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let s = summary(&r.stdout);
    assert_eq!(s["resumed"], true);
    assert_eq!(s["counts"]["read"].as_u64(), Some(6000), "the counts carry over: {s}");
    let mut total = 0;
    for conv in 1..=100 {
        let st = stream(&prefix, &conv.to_string()).await;
        let ids: HashSet<&String> = st.iter().map(|(id, _)| id).collect();
        assert_eq!((st.len(), ids.len()), (60, 60), "conversation {conv}: every event exactly once");
        total += st.len();
    }
    assert_eq!(total, 6000);
    // Finished: the same command again does nothing.
    let r = run(replay(&db, &prefix, dir.path(), &args)).await;
    assert_eq!(summary(&r.stdout)["counts"]["read"].as_u64(), Some(6000));
}

/// A TCP proxy to the real Redis that can be cut, to take Redis away in the middle of a replay.
struct CuttableProxy {
    port: u16,
    tasks: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl CuttableProxy {
    async fn start() -> CuttableProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let tasks = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let t = tasks.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let h = tokio::spawn(async move {
                    if let Ok(mut out) = tokio::net::TcpStream::connect("127.0.0.1:6379").await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
                t.lock().unwrap().push(h);
            }
        });
        CuttableProxy { port, tasks, accept }
    }

    fn cut(&self) {
        self.accept.abort();
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

#[sqlx::test(migrations = false)]
async fn redis_going_away_mid_replay_stops_with_exit_3_and_the_checkpoint_resumes(pool: PgPool) {
    let prefix = support::prefix("cut");
    let db = crate::support::url_of(&pool);
    let dir = tempfile::tempdir().unwrap();
    to_postgres(&pool, &fixture(50, 40, 60_000)).await;
    let proxy = CuttableProxy::start().await;
    let cp = dir.path().join("cp.json");
    let args =
        ["--to", "redis", "--all", "--yes", "--page-size", "20", "--checkpoint", cp.to_str().unwrap(), "-o", "json"];
    let mut cmd = replay(&db, &prefix, dir.path(), &args);
    cmd.env("REDIS_URL", format!("redis://127.0.0.1:{}", proxy.port)).env("BROKER_OPS_TIMEOUT", "1s");
    let child = tokio::spawn(run(cmd));
    wait_for_pages(&cp, 3).await;
    proxy.cut();
    let r = child.await.unwrap();
    assert_eq!(r.code, 3, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("Redis") && r.stderr.contains(&format!("127.0.0.1:{}", proxy.port)), "{}", r.stderr);
    assert!(r.stderr.contains("kept: run the same command again to resume"), "{}", r.stderr);
    let kept: Value = serde_json::from_str(&std::fs::read_to_string(&cp).unwrap()).unwrap();
    assert_eq!(kept["finished"], false);

    let r = run(replay(&db, &prefix, dir.path(), &args)).await;
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    for conv in 1..=50 {
        let st = stream(&prefix, &conv.to_string()).await;
        let ids: HashSet<&String> = st.iter().map(|(id, _)| id).collect();
        assert_eq!((st.len(), ids.len()), (40, 40), "conversation {conv}");
    }
}

#[tokio::test]
async fn ably_republish_is_paced_under_the_channel_limit_and_idempotent() {
    let prefix = support::prefix("ably-replay");
    let (sb, env) = support::sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    // 3 conversations of 60 events: at most 50 per second per channel means more than a second.
    to_redis(&prefix, &fixture(3, 60, 10_000)).await;
    let args = ["--from", "redis", "--to", "ably", "--all", "--yes", "-o", "json"];
    let go = || {
        let mut c = replay("postgres://unused", &prefix, dir.path(), &args);
        c.env("ABLY_API_KEY", &env.key).env("ABLY_REST_URL", &env.base);
        c
    };
    let started = std::time::Instant::now();
    let r = run(go()).await;
    let took = started.elapsed();
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let s = summary(&r.stdout);
    assert_eq!(s["counts"]["written"].as_u64(), Some(180), "{s}");
    assert_eq!(s["counts"]["rate_limited"].as_u64(), Some(0), "the sandbox answered 42913: the pacer crossed 50 msg/s");
    assert_eq!(s["counts"]["failed"].as_u64(), Some(0));
    assert!(
        took >= Duration::from_millis(1000),
        "60 messages on one channel cannot go out in under a second: {took:?}"
    );

    let history = |conv: usize| {
        let url = format!("{}/channels/conversation:{conv}/messages?limit=1000", env.base);
        support::json_of(
            support::http().get(url).basic_auth(env.key.split(':').next().unwrap(), env.key.split(':').nth(1)),
        )
    };
    let h = history(2).await;
    let items = h.as_array().unwrap();
    assert_eq!(items.len(), 60);
    let m = items.iter().find(|m| m["id"] == "replay-msg-2-0").expect("the replayed id");
    assert_eq!(m["extras"]["headers"]["replayed"], "true");
    assert_eq!(m["extras"]["headers"]["originalId"], "msg-2-0");
    assert_eq!(m["clientId"], "contact-2");

    // Again at once: Ably deduplicates the ids, nothing is delivered twice.
    let r = run(go()).await;
    assert_eq!(r.code, 0);
    assert_eq!(history(2).await.as_array().unwrap().len(), 60);
    drop(sb);
}

#[tokio::test]
async fn ably_5xx_answers_are_retried_and_a_down_ably_stops_with_the_checkpoint_intact() {
    let prefix = support::prefix("ably-5xx");
    let dir = tempfile::tempdir().unwrap();
    to_redis(&prefix, &fixture(2, 15, 10_000)).await;
    let cp = dir.path().join("cp.json");
    let args =
        ["--from", "redis", "--to", "ably", "--all", "--yes", "-o", "json", "--checkpoint", cp.to_str().unwrap()];
    let go = |env: &support::Env, timeout: &str| {
        let mut c = replay("postgres://unused", &prefix, dir.path(), &args);
        c.env("ABLY_API_KEY", &env.key).env("ABLY_REST_URL", &env.base).env("BROKER_OPS_TIMEOUT", timeout);
        c
    };
    // Ably answers every request with 500: retried with backoff, then the replay stops, exit 3.
    let down = support::faulted(support::options(), |f| f.http_error_rate = 1.0);
    let (sb, env) = support::start(down).await;
    let r = run(go(&env, "500ms")).await;
    assert_eq!(r.code, 3, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("gave up after") && r.stderr.contains("50000"), "{}", r.stderr);
    assert!(r.stderr.contains("kept: run the same command again to resume"), "{}", r.stderr);
    let kept: Value = serde_json::from_str(&std::fs::read_to_string(&cp).unwrap()).unwrap();
    assert_eq!((kept["finished"].as_bool(), kept["counts"]["written"].as_u64()), (Some(false), Some(0)));
    drop(sb);

    // Ably failing one request in five (the sandbox's seeded draw, so the same requests fail on
    // every run): every message still arrives exactly once.
    let flaky = support::faulted(support::options(), |f| f.http_error_rate = 0.2);
    let (sb, env) = support::start(flaky).await;
    let r = run(go(&env, "2s")).await;
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(summary(&r.stdout)["counts"]["written"].as_u64(), Some(30));
    for conv in [1, 2] {
        let url = format!("{}/channels/conversation:{conv}/messages?limit=1000", env.base);
        let (name, secret) = env.key.split_once(':').unwrap();
        // The sandbox fails our own reads one in five times too: read until it answers.
        let mut h = Value::Null;
        for _ in 0..50 {
            h = support::json_of(support::http().get(&url).basic_auth(name, Some(secret))).await;
            if h.is_array() {
                break;
            }
        }
        let ids: HashSet<&str> = h.as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
        assert_eq!((h.as_array().unwrap().len(), ids.len()), (15, 15), "conversation {conv}");
    }
    drop(sb);
}

/// Running a finished replay again (the runbook's "run the same command again") is nothing left
/// to do, exit 0, from Redis (an empty pipeline used to be refused) and from Postgres alike.
#[sqlx::test(migrations = false)]
async fn a_finished_replay_run_again_has_nothing_left_to_do(pool: PgPool) {
    let prefix = support::prefix("again");
    let db = crate::support::url_of(&pool);
    let dir = tempfile::tempdir().unwrap();
    to_redis(&prefix, &fixture(3, 4, 10_000)).await;
    to_postgres(&pool, &[]).await;
    for (from, to) in [("redis", "postgres"), ("postgres", "redis")] {
        let cp = dir.path().join(format!("{from}-{to}.json"));
        let args = ["--all", "--from", from, "--to", to, "--yes", "--checkpoint", cp.to_str().unwrap(), "-o", "json"];
        let mut runs = Vec::new();
        for _ in 0..2 {
            runs.push(run(replay(&db, &prefix, dir.path(), &args)).await);
        }
        assert_eq!(runs[0].code, 0, "{from}->{to}: {}", runs[0].stderr);
        assert_eq!(runs[1].code, 0, "{from}->{to}: {}", runs[1].stderr);
        let s = summary(&runs[1].stdout);
        assert_eq!(s["already_done"], true, "{s}");
        assert_eq!(s["read_this_run"], 0, "{s}");
        assert!(s["events_per_second"].as_f64().unwrap() < 1.0, "no absurd rate for a resumed run: {s}");
    }
}

/// A window replayed twice to Ably (the webhook mirroring every copy back into Redis and
/// Postgres) leaves `sla report` from either store as it was: each message and reply counted
/// once, no copy measured as a reply time, the copies counted apart; and no SLA event was re-sent.
#[sqlx::test(migrations = false)]
async fn a_replayed_window_leaves_the_sla_report_as_it_was_and_resends_no_sla_event(pool: PgPool) {
    let prefix = support::prefix("replay-sla");
    let opts = broker_ops::sandbox::SandboxOptions {
        // Every reply past these: the worker publishes sla:warning and sla:violation.
        sla_warning: Duration::from_millis(1),
        sla_violation: Duration::from_millis(2),
        ..support::faulted(crate::support::mirrored_options(&pool, &prefix), |f| {
            f.ai_latency = broker_ops::sandbox::LatencyModel::Fixed(Duration::from_millis(20))
        })
    };
    let (_sb, env) = support::start(opts).await;
    let mut convs = Vec::new();
    for _ in 0..3 {
        let (contact, conv) = support::new_chat(&env).await;
        support::say(&env, &contact, conv, "hello").await;
        convs.push(conv.to_string());
    }
    let names = |conv: String| {
        let prefix = prefix.clone();
        async move {
            let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
                .arg(format!("{prefix}chat:events:{conv}"))
                .arg("-")
                .arg("+")
                .query_async(&mut support::redis().await)
                .await
                .unwrap();
            entries
                .into_iter()
                .map(|(_, f)| {
                    let get = |k: &str| f.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap_or_default();
                    (get("id"), get("name"))
                })
                .collect::<Vec<_>>()
        }
    };
    for conv in &convs {
        support::until("the chat, its reply and its SLA events are mirrored", || async {
            let n = names(conv.clone()).await;
            ["message:ai", "sla:violation"].iter().all(|want| n.iter().any(|(_, name)| name == want))
        })
        .await;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = crate::support::url_of(&pool);
    let report = |from: &'static str| {
        let mut c = bin(dir.path());
        c.args(["-o", "json", "sla", "report", "--from", from, "--since", "1h"])
            .env("REDIS_URL", support::redis_url())
            .env("DATABASE_URL", &db)
            .env("REDIS_KEY_PREFIX", &prefix);
        run(c)
    };
    let figures = |doc: &Value| {
        json!([
            doc["messages"],
            doc["replies"],
            doc["unanswered"],
            doc["reply_ms"],
            doc["sla_events"],
            doc["malformed"],
            doc["over_slo"]
        ])
    };
    let mut before = Vec::new();
    for from in ["redis", "postgres"] {
        let doc: Value = serde_json::from_str(&report(from).await.stdout).unwrap();
        assert_eq!((doc["messages"].as_u64(), doc["replies"].as_u64()), (Some(3), Some(3)), "{from}: {doc}");
        before.push(doc);
    }

    let resend = || {
        let mut c = replay(
            "postgres://unused",
            &prefix,
            dir.path(),
            &["--from", "redis", "--to", "ably", "--all", "--since", "-1h", "--yes", "-o", "json"],
        );
        c.env("ABLY_API_KEY", &env.key).env("ABLY_REST_URL", &env.base);
        run(c)
    };
    for _ in 0..2 {
        let r = resend().await;
        assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    }
    for conv in &convs {
        support::until("the copies are mirrored back", || async {
            names(conv.clone()).await.iter().filter(|(id, _)| id.starts_with("replay-")).count() == 2
        })
        .await;
        let resent = names(conv.clone()).await;
        assert!(
            resent.iter().filter(|(id, _)| id.starts_with("replay-")).all(|(_, n)| n.starts_with("message:")),
            "only messages re-sent: {resent:?}"
        );
    }
    support::until("the copies are in Postgres too", || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM chat_events WHERE id LIKE 'replay-%'")
            .fetch_one(&pool)
            .await
            .unwrap()
            == 6
    })
    .await;
    for (from, before) in ["redis", "postgres"].into_iter().zip(&before) {
        let after: Value = serde_json::from_str(&report(from).await.stdout).unwrap();
        support::schema_check("sla-report", &after);
        assert_eq!(figures(&after), figures(before), "{from}: {after:#}");
        assert_eq!(after["excluded"]["replayed_copies"], 6, "{from}: a message and a reply per chat, once");
    }
}

/// Typing indicators and read receipts are shown in a conversation's timeline and never re-sent
/// to Ably, even with `--events all`: an old "customer is typing" re-sent is a lie on screen.
#[tokio::test]
async fn typing_and_read_events_are_shown_but_never_re_sent() {
    let prefix = support::prefix("replay-extras");
    let (sb, env) = support::sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let end = chrono::Utc::now().timestamp_millis() - 10_000;
    let names = ["typing:start", "typing:stop", "message:user", "message:ai", "message:read"];
    let events: Vec<MirroredEvent> = names
        .iter()
        .enumerate()
        .map(|(i, n)| MirroredEvent { name: n.to_string(), ..event(1, i, end - (5 - i as i64) * 1000) })
        .collect();
    to_redis(&prefix, &events).await;
    let timeline = run(replay(
        "postgres://unused",
        &prefix,
        dir.path(),
        &["--from", "redis", "--conversation", "1", "-o", "ndjson"],
    ))
    .await;
    assert_eq!(timeline.code, 0, "{}", timeline.stderr);
    let shown: Vec<String> = timeline
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(shown, names, "the timeline shows every event");
    let mut c = replay(
        "postgres://unused",
        &prefix,
        dir.path(),
        &["--from", "redis", "--to", "ably", "--all", "--events", "all", "--yes", "-o", "json"],
    );
    c.env("ABLY_API_KEY", &env.key).env("ABLY_REST_URL", &env.base);
    let r = run(c).await;
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let url = format!("{}/channels/conversation:1/messages?limit=100", env.base);
    let (name, secret) = env.key.split_once(':').unwrap();
    let h = support::json_of(support::http().get(url).basic_auth(name, Some(secret))).await;
    let mut sent: Vec<&str> = h.as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap()).collect();
    sent.sort_unstable();
    assert_eq!(sent, ["message:ai", "message:user"], "{h}");
    drop(sb);
    support::forget_prefix(&prefix).await;
}
