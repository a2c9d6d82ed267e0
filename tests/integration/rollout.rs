//! `broker-ops rollout` against real Postgres: bucketing that agrees with Unleash's own
//! specification suites and its Node SDK, the tables `db migrate` makes, every command through
//! the binary, precedence, the audit, and two operators at once.

use std::collections::HashMap;
use std::path::Path;

use broker_ops::config::{Config, Layers};
use broker_ops::rollout::{Actor, Evaluator, Flag, RolloutError, bucket, ops};
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::io::AsyncWriteExt;

use crate::support;
use crate::support::url_of;

fn interop() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Suite {
    state: unleash_yggdrasil::ClientFeatures,
    tests: Option<Vec<Case>>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Case {
    description: String,
    context: unleash_yggdrasil::Context,
    toggle_name: String,
    expected_result: bool,
}

/// Unleash's own client specification (the npm package, pinned in tests/interop): the suites
/// that define `flexibleRollout` and custom stickiness, through the evaluator broker-ops uses.
#[test]
fn the_unleash_specification_suites_pass_through_the_evaluator() {
    let dir = interop().join("node_modules/@unleash/client-specification/specifications");
    let mut ran = 0;
    for suite in ["01-simple-examples.json", "10-flexible-rollout-strategy.json", "12-custom-stickiness.json"] {
        let text = std::fs::read_to_string(dir.join(suite))
            .unwrap_or_else(|e| panic!("{suite}: {e} (npm ci in tests/interop)"));
        let s: Suite = serde_json::from_str(&text).unwrap();
        let eval = Evaluator::from_features(s.state);
        for case in s.tests.unwrap_or_default() {
            let got = eval.is_enabled(&case.toggle_name, &case.context);
            assert_eq!(got, case.expected_result, "{suite}: {}", case.description);
            ran += 1;
        }
    }
    assert_eq!(ran, 20, "5 simple, 10 flexible-rollout and 5 custom-stickiness cases");
}

/// The same answer as `unleash-client` (Node), through its own Client and strategies, for
/// 100,000 conversation ids at 10 % and at 50 %.
#[tokio::test]
async fn bucketing_agrees_with_unleash_client_on_100000_conversations() {
    let ids: Vec<String> = (0..100_000)
        .map(|i| if i % 2 == 0 { (i * 7 + 1).to_string() } else { uuid::Uuid::new_v4().to_string() })
        .collect();
    for percent in [10u8, 50] {
        let flag = Flag { enabled: true, percent, ..Flag::new("ENABLE_ABLY_REALTIME") };
        let toggle = bucket::unleash_definition(&flag)["features"][0].clone();
        let mut node = tokio::process::Command::new("node")
            .arg("unleash-rollout.js")
            .current_dir(interop())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("node (scripts/test installs it)");
        let input = serde_json::to_vec(&json!({"toggle": toggle, "ids": ids})).unwrap();
        let mut stdin = node.stdin.take().unwrap();
        stdin.write_all(&input).await.unwrap();
        drop(stdin);
        let out = node.wait_with_output().await.unwrap();
        assert!(out.status.success());
        let theirs: Vec<bool> = serde_json::from_slice(&out.stdout).unwrap();
        // What `which`, `status` and the cohorts decide, and what Unleash's engine says.
        let ours: Vec<bool> = ids.iter().map(|id| bucket::decide(&flag, false, None, id).enabled).collect();
        let eval = Evaluator::for_flag(&flag);
        assert!(ids.iter().zip(&ours).all(|(id, on)| eval.in_rollout(&flag, id) == *on), "the engine agrees");
        let differ: Vec<&String> =
            ids.iter().zip(ours.iter().zip(&theirs)).filter(|(_, (a, b))| a != b).map(|(id, _)| id).collect();
        assert!(
            differ.is_empty(),
            "{percent} %: {} ids differ, e.g. {:?}",
            differ.len(),
            &differ[..differ.len().min(5)]
        );
        let on = ours.iter().filter(|b| **b).count() as f64 / ids.len() as f64;
        assert!((on - f64::from(percent) / 100.0).abs() < 0.01, "{percent} %: {on}");
        // The bucket explains the decision.
        assert!(
            ids.iter()
                .zip(&ours)
                .all(|(id, on)| (bucket::bucket("ENABLE_ABLY_REALTIME", id) <= u32::from(percent)) == *on)
        );
    }
}

fn config(pool: &PgPool, extra: &[(&str, &str)]) -> Config {
    let mut env: HashMap<String, String> = HashMap::from([("DATABASE_URL".to_string(), url_of(pool))]);
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Config::resolve(Layers::new(env, None).unwrap()).unwrap()
}

async fn rollout(pool: &PgPool, dir: &Path, args: &[&str], extra: &[(&str, &str)]) -> support::Run {
    let mut cmd = support::bin(dir);
    cmd.env("DATABASE_URL", url_of(pool)).env("USER", "alice");
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd.args(args);
    support::run(cmd).await
}

fn json_of(r: &support::Run) -> Value {
    serde_json::from_str(&r.stdout).unwrap_or_else(|_| panic!("not JSON: {} / {}", r.stdout, r.stderr))
}

#[sqlx::test(migrations = false)]
async fn db_migrate_creates_the_flag_off_and_an_audit_that_cannot_be_rewritten(pool: PgPool) {
    let dir = tempfile::tempdir().unwrap();
    // Before the tables exist: exit 3 naming the address and `db migrate`.
    let r = rollout(&pool, dir.path(), &["rollout", "status"], &[]).await;
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("broker-ops db migrate") && r.stderr.contains("127.0.0.1"), "{}", r.stderr);
    let mut runs = Vec::new();
    for _ in 0..2 {
        let m = rollout(&pool, dir.path(), &["-o", "json", "db", "migrate"], &[]).await;
        assert_eq!(m.code, 0, "{}", m.stderr);
        runs.push(json_of(&m));
    }
    // The first run says what it created; the second finds the same objects in place.
    let names = |doc: &Value, key: &str| -> Vec<String> {
        doc[key].as_array().unwrap().iter().map(|o| format!("{} {}", o["kind"], o["name"])).collect()
    };
    let created = names(&runs[0], "created");
    assert!(created.contains(&r#""table" "public.feature_flags_audit""#.to_string()), "{created:?}");
    assert!(created.iter().any(|c| c.starts_with(r#""trigger""#)), "{created:?}");
    assert!(names(&runs[1], "created").is_empty(), "{:#}", runs[1]);
    let found = names(&runs[1], "found");
    let named: Vec<&String> =
        created.iter().filter(|c| c.starts_with(r#""table""#) || c.contains("append_only")).collect();
    assert!(named.iter().all(|c| found.contains(c)), "the second run finds in place {named:?}: {found:?}");
    assert!(found.iter().all(|f| created.contains(f)), "nothing found that the first run did not create");
    let m = rollout(&pool, dir.path(), &["db", "migrate"], &[]).await;
    assert!(m.stdout.contains("0 created") && m.stdout.contains("in place"), "{}", m.stdout);
    assert!(!m.stdout.contains("CREATE TABLE"), "a real run says what it did, not the SQL: {}", m.stdout);
    let flag: (bool, i32, i64) = sqlx::query_as(
        "SELECT enabled, rollout_percent, version FROM feature_flags WHERE name = 'ENABLE_ABLY_REALTIME'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(flag, (false, 0, 1));
    let audits: i64 = sqlx::query_scalar("SELECT count(*) FROM feature_flags_audit").fetch_one(&pool).await.unwrap();
    assert_eq!(audits, 1, "created once, with its audit row, however often migrate runs");
    let e = sqlx::query("UPDATE feature_flags_audit SET reason = 'rewritten'").execute(&pool).await.unwrap_err();
    assert!(e.to_string().contains("append-only"), "{e}");
    let e = sqlx::query("DELETE FROM feature_flags_audit").execute(&pool).await.unwrap_err();
    assert!(e.to_string().contains("append-only"), "{e}");
    let e = sqlx::query("TRUNCATE feature_flags_audit").execute(&pool).await.unwrap_err();
    assert!(e.to_string().contains("append-only"), "TRUNCATE too: {e}");
}

/// Three ids: one in the first 10 %, one out of it, one for overrides.
fn ids_around(percent: u32) -> (String, String, String) {
    let find = |want_in: bool, skip: usize| {
        (1..)
            .map(|i: u32| i.to_string())
            .filter(|id| (bucket::bucket("ENABLE_ABLY_REALTIME", id) <= percent) == want_in)
            .nth(skip)
            .unwrap()
    };
    (find(true, 0), find(false, 0), find(false, 1))
}

#[sqlx::test(migrations = false)]
async fn set_which_override_history_and_rollback_through_the_binary(pool: PgPool) {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(rollout(&pool, dir.path(), &["db", "migrate"], &[]).await.code, 0);
    let d = dir.path();
    // Bad input: a usage error naming it, nothing changed.
    let r = rollout(&pool, d, &["rollout", "set", "--percent", "150", "--reason", "x", "--yes"], &[]).await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("outside 0..100"), "{}", r.stderr);
    let r = rollout(&pool, d, &["rollout", "set", "--flag", "NOPE", "--percent", "10", "--reason", "x", "--yes"], &[])
        .await;
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("unknown flag \"NOPE\" (known: ENABLE_ABLY_REALTIME)"), "{}", r.stderr);
    // No terminal and no --yes: refused, nothing changed.
    let r = rollout(&pool, d, &["rollout", "set", "--percent", "10", "--reason", "staging soak passed"], &[]).await;
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("not confirmed: set ENABLE_ABLY_REALTIME: off (0 %) -> on at 10 %"), "{}", r.stderr);
    let r = rollout(
        &pool,
        d,
        &["-o", "json", "rollout", "set", "--percent", "10", "--reason", "staging soak passed", "--yes"],
        &[],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let set = json_of(&r);
    support::schema_check("rollout-change", &set);
    assert_eq!(
        (set["flag"].as_str(), set["enabled"].as_bool(), set["percent"].as_u64(), set["version"].as_i64()),
        (Some("ENABLE_ABLY_REALTIME"), Some(true), Some(10), Some(2))
    );
    assert!(set["updated_by"].as_str().unwrap().starts_with("alice@"), "{set}");

    let (inside, outside, forced) = ids_around(10);
    let r = rollout(
        &pool,
        d,
        &["rollout", "override", &forced, "on", "--for", "1h", "--reason", "VIP on real-time", "--yes"],
        &[],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let which = |extra: &'static [(&'static str, &'static str)]| {
        let (pool, d, ids) = (pool.clone(), d.to_path_buf(), [inside.clone(), outside.clone(), forced.clone()]);
        async move {
            let args = ["-o", "json", "rollout", "which", &ids[0], &ids[1], &ids[2]];
            let r = rollout(&pool, &d, &args, extra).await;
            assert_eq!(r.code, 0, "{}", r.stderr);
            support::schema_check("rollout-which", &json_of(&r));
            json_of(&r)
                .as_array()
                .unwrap()
                .iter()
                .map(|d| (d["enabled"].as_bool().unwrap(), d["reason"].as_str().unwrap().to_string()))
                .collect::<Vec<_>>()
        }
    };
    let on = |r: &str| (true, r.to_string());
    let off = |r: &str| (false, r.to_string());
    assert_eq!(which(&[]).await, [on("bucket"), off("bucket"), on("override")]);
    assert_eq!(
        which(&[("ENABLE_ABLY_REALTIME", "false")]).await,
        [off("kill_switch"), off("kill_switch"), off("kill_switch")]
    );
    // Read as the app's code reads it: only the exact string "false" is the switch.
    const NOT_THE_SWITCH: [&[(&str, &str)]; 3] =
        [&[("ENABLE_ABLY_REALTIME", "0")], &[("ENABLE_ABLY_REALTIME", "no")], &[("ENABLE_ABLY_REALTIME", "FALSE")]];
    for env in NOT_THE_SWITCH {
        assert_eq!(which(env).await, [on("bucket"), off("bucket"), on("override")], "{env:?}");
    }
    let r = rollout(&pool, d, &["rollout", "which", &inside], &[("ENABLE_ABLY_REALTIME", "0")]).await;
    assert!(
        r.stderr
            .contains("ENABLE_ABLY_REALTIME=\"0\" (environment variable ENABLE_ABLY_REALTIME) is not the kill switch"),
        "{}",
        r.stderr
    );
    // Ids from stdin too, with the bucket that explains each.
    let mut cmd = support::bin(d);
    cmd.env("DATABASE_URL", url_of(&pool))
        .args(["-o", "json", "rollout", "which", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child.stdin.take().unwrap().write_all(format!("{inside}\n{outside}\n").as_bytes()).await.unwrap();
    let out: Value = serde_json::from_slice(&child.wait_with_output().await.unwrap().stdout).unwrap();
    assert_eq!(out.as_array().unwrap().len(), 2);
    assert_eq!(out[0]["bucket"].as_u64().unwrap() as u32, bucket::bucket("ENABLE_ABLY_REALTIME", &inside));

    // The same flag in Unleash's import format: the override as an `IN` strategy first.
    let r = rollout(&pool, d, &["rollout", "export", "--unleash", "--environment", "staging"], &[]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let doc = json_of(&r);
    assert_eq!((doc["project"].as_str(), doc["environment"].as_str()), (Some("default"), Some("staging")));
    assert_eq!(doc["data"]["featureEnvironments"][0]["enabled"], true);
    let strategies = doc["data"]["featureStrategies"].as_array().unwrap();
    assert_eq!(strategies[0]["constraints"][0]["values"], json!([forced]));
    assert_eq!(
        strategies[1]["parameters"],
        json!({"groupId": "ENABLE_ABLY_REALTIME", "rollout": "10", "stickiness": "conversationId"})
    );

    // Rollback: off in one transaction with its audit row, read back; overrides no longer count.
    let r =
        rollout(&pool, d, &["-o", "json", "rollout", "rollback", "--reason", "P95 over budget", "--yes"], &[]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(json_of(&r)["enabled"], false);
    let r = rollout(&pool, d, &["-o", "json", "rollout", "status"], &[]).await;
    let status = json_of(&r);
    support::schema_check("rollout-status", &status);
    assert_eq!(
        (status["enabled"].as_bool(), status["percent"].as_u64(), status["version"].as_i64()),
        (Some(false), Some(10), Some(3))
    );
    assert_eq!(which(&[]).await, [off("flag_off"), off("flag_off"), off("flag_off")]);
    let r = rollout(&pool, d, &["-o", "json", "rollout", "history"], &[]).await;
    let h = json_of(&r);
    support::schema_check("rollout-history", &h);
    let actions: Vec<&str> = h["changes"].as_array().unwrap().iter().map(|c| c["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["rollback", "override", "set", "create"]);
    let rollback = &h["changes"][0];
    assert_eq!(rollback["reason"], "P95 over budget");
    assert_eq!(rollback["before"]["enabled"], true);
    assert_eq!(rollback["after"]["enabled"], false);
    assert!(rollback["command"].as_str().unwrap().contains("rollout rollback --reason"), "{rollback}");
}

#[sqlx::test(migrations = false)]
async fn two_operators_changing_the_flag_at_once_one_wins_the_other_is_told_who(pool: PgPool) {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(rollout(&pool, dir.path(), &["db", "migrate"], &[]).await.code, 0);
    let c = config(&pool, &[]);
    let alice = Actor { who: "alice@ops".into(), command: "broker-ops rollout set --percent 50".into() };
    let bob = Actor { who: "bob@ops".into(), command: "broker-ops rollout rollback".into() };
    // Both read version 1, then both apply.
    let a = ops::plan_set(&c, "ENABLE_ABLY_REALTIME", 50, "go", None).await.unwrap();
    let b = ops::plan_rollback(&c, "ENABLE_ABLY_REALTIME", "stop").await.unwrap();
    let (ra, rb) = tokio::join!(a.apply(&alice), b.apply(&bob));
    let (won, lost) = match (ra, rb) {
        (Ok(w), Err(l)) | (Err(l), Ok(w)) => (w, l),
        (ra, rb) => panic!("exactly one must win: {:?} / {:?}", ra.map(|r| r.after), rb.map(|r| r.after)),
    };
    match &lost {
        RolloutError::Conflict { by, read, now, .. } => {
            assert_eq!((by.as_str(), *read, *now), (won.after.updated_by.as_str(), 1, 2));
        }
        other => panic!("{other}"),
    }
    assert!(lost.to_string().contains("since you read it"), "{lost}");
    let audits: i64 = sqlx::query_scalar("SELECT count(*) FROM feature_flags_audit WHERE action <> 'create'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(audits, 1, "only the winner's change is in the audit");
}

/// An override is confirmed against the flag as it was shown, like `set`: a rollback between the
/// read and the save refuses it, naming who, and writes nothing.
#[sqlx::test(migrations = false)]
async fn an_override_shown_before_a_rollback_is_refused_with_who_changed_it(pool: PgPool) {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(rollout(&pool, dir.path(), &["db", "migrate"], &[]).await.code, 0);
    let c = config(&pool, &[]);
    let alice = Actor { who: "alice@ops".into(), command: "broker-ops rollout override c-7 on".into() };
    let bob = Actor { who: "bob@ops".into(), command: "broker-ops rollout rollback".into() };
    let read = ops::read_override(&c, "ENABLE_ABLY_REALTIME", "c-7").await.unwrap();
    ops::plan_rollback(&c, "ENABLE_ABLY_REALTIME", "stop").await.unwrap().apply(&bob).await.unwrap();
    let lost = read.save(ops::OverrideTo::On, None, "vip", &alice).await.unwrap_err();
    assert!(matches!(&lost, RolloutError::Conflict { by, .. } if by == "bob@ops"), "{lost}");
    let overrides: i64 =
        sqlx::query_scalar("SELECT count(*) FROM feature_flags_overrides").fetch_one(&pool).await.unwrap();
    assert_eq!(overrides, 0, "nothing saved");
}

/// Mirrors `pairs` message/reply pairs in the last half hour for each of 400 conversations,
/// the real-time cohort's replies taking `rt_ms`, the polling cohort's `polling_ms`; returns
/// how many replies the real-time cohort got (the flag at 10 %).
async fn fill_mirror(pool: &PgPool, rt_ms: i64, polling_ms: i64, pairs: usize) -> u64 {
    use broker_ops::mirror::MirroredEvent;
    let table = broker_ops::contracts::Contracts::default().table;
    let now = chrono::Utc::now().timestamp_millis();
    let mut events = Vec::new();
    let mut rt_replies = 0;
    for c in 1..=400 {
        let conv = format!("adv-{c}");
        let rt = bucket::bucket("ENABLE_ABLY_REALTIME", &conv) <= 10;
        let latency = if rt { rt_ms } else { polling_ms };
        for p in 0..pairs {
            let at = now - 1_800_000 + (p as i64) * 60_000 + c;
            let mid = format!("{conv}-m{p}");
            let ev = |id: String, name: &str, data: Value, ts: i64| MirroredEvent {
                id,
                conversation_id: conv.clone(),
                channel: format!("conversation:{conv}"),
                name: name.into(),
                data,
                client_id: None,
                timestamp_ms: ts,
            };
            events.push(ev(mid.clone(), "message:user", json!({"messageId": mid, "text": "hi"}), at));
            events.push(ev(format!("{mid}-r"), "message:ai", json!({"replyTo": mid, "text": "hello"}), at + latency));
            rt_replies += u64::from(rt);
        }
    }
    broker_ops::store::postgres::insert(pool, "test", &table, &events).await.unwrap();
    rt_replies
}

async fn advance(pool: &PgPool, d: &Path, extra: &[&str]) -> (i32, Value) {
    // No Ably here: whether the app follows the flag is the traffic tests' business.
    let mut args = vec!["-o", "json", "rollout", "advance", "--min-replies", "100"];
    args.extend_from_slice(&["--waive", "observed", "--reason", "no Ably in this test"]);
    args.extend_from_slice(extra);
    let r = rollout(pool, d, &args, &[]).await;
    (r.code, serde_json::from_str(&r.stdout).unwrap_or_else(|_| panic!("{} {}", r.stdout, r.stderr)))
}

fn gate<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["gates"].as_array().unwrap().iter().find(|g| g["name"] == name).unwrap()
}

async fn at_ten_percent(pool: &PgPool, d: &Path) {
    assert_eq!(rollout(pool, d, &["db", "migrate"], &[]).await.code, 0);
    let r = rollout(pool, d, &["rollout", "set", "--percent", "10", "--reason", "start", "--yes"], &[]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[sqlx::test(migrations = false)]
async fn advance_is_refused_on_a_breaching_cohort_missing_data_or_a_short_soak(pool: PgPool) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    at_ten_percent(&pool, d).await;
    // Nothing mirrored: never promoted on missing data.
    let (code, doc) = advance(&pool, d, &["--min-soak", "0s", "--yes"]).await;
    assert_eq!(code, 1);
    assert!(gate(&doc, "replies")["detail"].as_str().unwrap().contains("no replies in the window"), "{doc}");
    // The real-time cohort answers in 7 s, polling in 1 s.
    let rt = fill_mirror(&pool, 7_000, 1_000, 5).await;
    let (code, doc) = advance(&pool, d, &["--min-soak", "0s", "--yes"]).await;
    assert_eq!(code, 1, "{doc}");
    assert_eq!(doc["cohorts"]["realtime"]["replies"].as_u64(), Some(rt));
    assert!((doc["cohorts"]["realtime"]["p95_ms"].as_f64().unwrap() - 7000.0).abs() < 10.0, "{doc}");
    assert_eq!(doc["cohorts"]["realtime"]["breach_rate"].as_f64(), Some(1.0));
    assert_eq!(doc["cohorts"]["polling"]["breach_rate"].as_f64(), Some(0.0));
    let failed: Vec<&str> = doc["gates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["pass"] == false)
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(failed, ["p95", "regression"]);
    support::schema_check("rollout-advance", &doc);
    // The default soak of 24 h has not passed either.
    let (code, doc) = advance(&pool, d, &["--yes"]).await;
    assert_eq!((code, gate(&doc, "soak")["pass"].as_bool()), (1, Some(false)));
    let status = json_of(&rollout(&pool, d, &["-o", "json", "rollout", "status"], &[]).await);
    assert_eq!((status["percent"].as_u64(), status["version"].as_i64()), (Some(10), Some(2)), "nothing changed");
    // A bad plan is a usage error.
    let r = rollout(&pool, d, &["rollout", "advance", "--steps", "50,10"], &[]).await;
    assert_eq!(r.code, 2, "{}", r.stderr);
}

#[sqlx::test(migrations = false)]
async fn advance_moves_a_healthy_cohort_to_the_next_step(pool: PgPool) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    at_ten_percent(&pool, d).await;
    let rt = fill_mirror(&pool, 1_500, 1_500, 5).await;
    let (code, doc) = advance(&pool, d, &["--min-soak", "0s", "--dry-run"]).await;
    assert_eq!(code, 0, "{doc}");
    support::schema_check("rollout-advance", &doc);
    assert_eq!((doc["pass"].as_bool(), doc["next"].as_u64(), doc["applied"].is_null()), (Some(true), Some(50), true));
    assert_eq!(doc["cohorts"]["realtime"]["replies"].as_u64(), Some(rt));
    assert_eq!(doc["cohorts"]["polling"]["replies"].as_u64(), Some(2000 - rt));
    // With --smoke, three real-time smoke chats against the sandbox are a gate too.
    let (sb, env) = support::sandbox().await;
    let pairs = sb.env();
    let extra: Vec<(&str, &str)> =
        pairs.iter().map(|(k, v)| (*k, v.as_str())).chain([("CHATWOOT_ACCOUNT_ID", "1")]).collect();
    let args = ["-o", "json", "rollout", "advance", "--min-replies", "100", "--min-soak", "0s", "--dry-run", "--smoke"];
    let waive = ["--waive", "observed", "--reason", "the sandbox has no subscribers here"];
    let args: Vec<&str> = args.into_iter().chain(waive).collect();
    let r = rollout(&pool, d, &args, &extra).await;
    let doc = json_of(&r);
    assert_eq!(r.code, 0, "{doc}");
    assert!(gate(&doc, "smoke")["detail"].as_str().unwrap().contains("3 of 3 smoke chats"), "{doc}");
    drop(env);
    sb.shutdown().await;
    // `sla report --by-cohort` shows the same split.
    let r = rollout(
        &pool,
        d,
        &["-o", "json", "sla", "report", "--since", "1h", "--by-cohort", "ENABLE_ABLY_REALTIME"],
        &[],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let split = json_of(&r);
    assert_eq!(split["cohorts"]["realtime"]["report"]["replies"].as_u64(), Some(rt));
    assert_eq!(split["cohorts"]["polling"]["report"]["replies"].as_u64(), Some(2000 - rt));
    assert_eq!(split["cohorts"]["realtime"]["conversations"].as_u64().unwrap() * 5, rt);
    let (code, doc) = advance(&pool, d, &["--min-soak", "0s", "--yes"]).await;
    assert_eq!(code, 0, "{doc}");
    assert_eq!((doc["applied"]["percent"].as_u64(), doc["applied"]["version"].as_i64()), (Some(50), Some(3)));
    let h = json_of(&rollout(&pool, d, &["-o", "json", "rollout", "history", "--limit", "1"], &[]).await);
    assert_eq!(h["changes"][0]["action"], "advance");
    // Rolled back: the real-time cohort is empty, and the split still reads (it failed on a NUL
    // stand-in id before), everything on polling.
    let r = rollout(&pool, d, &["rollout", "rollback", "--reason", "drill", "--yes"], &[]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let by_cohort = ["-o", "json", "sla", "report", "--since", "1h", "--by-cohort", "ENABLE_ABLY_REALTIME"];
    let r = rollout(&pool, d, &by_cohort, &[]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let split = json_of(&r);
    assert_eq!(split["cohorts"]["realtime"]["conversations"].as_u64(), Some(0), "{split}");
    assert_eq!(split["cohorts"]["realtime"]["report"]["replies"].as_u64(), Some(0));
    assert_eq!(split["cohorts"]["polling"]["report"]["replies"].as_u64(), Some(2000));
}

#[sqlx::test(migrations = false)]
async fn rollback_tells_the_alert_channels_and_verifies_that_polling_answers(pool: PgPool) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    at_ten_percent(&pool, d).await;
    // A Slack incoming webhook stand-in that keeps what it is sent.
    let got: std::sync::Arc<std::sync::Mutex<Vec<Value>>> = Default::default();
    let keep = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(v): axum::Json<Value>| {
            let keep = keep.clone();
            async move {
                keep.lock().unwrap().push(v);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let (sb, env) = support::sandbox().await;
    let state = tempfile::tempdir().unwrap();
    let mut cmd = support::bin(d);
    env.apply(&mut cmd)
        .env("DATABASE_URL", url_of(&pool))
        .env("SLACK_WEBHOOK_URL", &hook)
        .env("BROKER_OPS_STATE_DIR", state.path())
        .args(["rollout", "rollback", "--reason", "rollback drill", "--verify", "--yes"]);
    let r = support::run(cmd).await;
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("rollback ENABLE_ABLY_REALTIME: on at 10 % -> off (last percentage 10 %)"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("notice: done: sent through the alert channels"), "{}", r.stdout);
    assert!(r.stdout.contains("verify: done: 3 of 3 polling chats answered"), "{}", r.stdout);
    let sent = got.lock().unwrap().clone();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let text = sent[0].to_string();
    assert!(text.contains("ENABLE_ABLY_REALTIME rollback: on at 10 % -> off: every conversation polls"), "{text}");
    assert!(text.contains("rollback drill"), "{text}");
    // Already off: nothing to change, nothing written (no version, no audit row), exit 0.
    let audit = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM feature_flags_audit").fetch_one(&pool).await.unwrap()
    };
    let rows = audit().await;
    let r = rollout(&pool, d, &["rollout", "rollback", "--reason", "twice", "--yes"], &[]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("nothing to change: rollback ENABLE_ABLY_REALTIME: off"), "{}", r.stderr);
    assert_eq!(audit().await, rows, "no audit row for a change that changes nothing");
    let r = rollout(&pool, d, &["rollout", "override", "70", "on", "--reason", "vip", "--yes"], &[]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("saved: override enable_ably_realtime of conversation 70 -> on (audited); the flag is off"),
        "{}",
        r.stderr
    );
    let r = rollout(&pool, d, &["rollout", "set", "--percent", "10", "--reason", "  ", "--yes"], &[]).await;
    assert_eq!(r.code, 2, "an empty reason is refused: {}", r.stderr);
    at_ten_percent(&pool, d).await;
    let rows = audit().await;
    let r = rollout(&pool, d, &["rollout", "override", "c-none", "clear", "--reason", "tidy", "--yes"], &[]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("nothing to change: conversation c-none has no override"), "{}", r.stderr);
    assert_eq!(audit().await, rows, "clearing nothing writes nothing");
    // Chatwoot unreachable: the rollback stands, the verify says it could not run (exit 1).
    let mut cmd = support::bin(d);
    cmd.env("DATABASE_URL", url_of(&pool))
        .env("CHATWOOT_BASE_URL", "http://127.0.0.1:9")
        .env("CHATWOOT_INBOX_IDENTIFIER", "x");
    cmd.args(["-o", "json", "rollout", "rollback", "--reason", "again", "--verify", "--yes"]);
    let r = support::run(cmd).await;
    assert_eq!(r.code, 1, "{}", r.stderr);
    let doc: Value = serde_json::from_str(&r.stdout).unwrap();
    support::schema_check("rollout-change", &doc);
    assert_eq!((doc["action"].as_str(), doc["enabled"].as_bool()), (Some("rollback"), Some(false)), "{doc}");
    assert_eq!(doc["steps"][0]["outcome"], "skipped", "no channel: {doc}");
    assert_eq!(
        (doc["steps"][1]["step"].as_str(), doc["steps"][1]["outcome"].as_str()),
        (Some("verify"), Some("failed"))
    );
    sb.shutdown().await;
}

/// A format a mutating command cannot render is a usage error (exit 2) before anything happens:
/// the flag, its audit, the alert state and Redis are as they were.
#[sqlx::test(migrations = false)]
async fn a_mutating_command_with_a_format_it_cannot_render_changes_nothing(pool: PgPool) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    at_ten_percent(&pool, d).await;
    let audit = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM feature_flags_audit").fetch_one(&pool).await.unwrap()
    };
    let before = audit().await;
    let prefix = support::prefix("no-half");
    let state = d.join("alert-state");
    let extra: [(&str, &str); 3] = [
        ("REDIS_URL", &support::redis_url()),
        ("REDIS_KEY_PREFIX", &prefix),
        ("BROKER_OPS_STATE_DIR", state.to_str().unwrap()),
    ];
    let commands: [&[&str]; 8] = [
        &["-o", "nagios", "rollout", "rollback", "--reason", "x", "--yes"],
        &["-o", "prometheus", "rollout", "set", "--percent", "50", "--reason", "x", "--yes"],
        &["-o", "nagios", "rollout", "override", "c-1", "on", "--reason", "x", "--yes"],
        &["-o", "nagios", "rollout", "advance", "--yes"],
        &["-o", "nagios", "db", "migrate"],
        &["-o", "nagios", "alert", "send", "--severity", "critical", "--summary", "x"],
        &["-o", "prometheus", "token", "revoke", "some-jti"],
        &["-o", "nagios", "events", "replay", "--all", "--from", "redis", "--to", "ably", "--yes"],
    ];
    for args in commands {
        let r = rollout(&pool, d, args, &extra).await;
        assert_eq!(r.code, 2, "{args:?}: {}{}", r.stdout, r.stderr);
        assert!(r.stderr.contains("is not a format this command renders") && r.stdout.is_empty(), "{}", r.stderr);
    }
    let flag = json_of(&rollout(&pool, d, &["-o", "json", "rollout", "status"], &[]).await);
    assert_eq!((flag["enabled"].as_bool(), flag["percent"].as_u64()), (Some(true), Some(10)), "{flag}");
    assert_eq!(audit().await, before, "no audit row");
    assert!(!state.exists(), "no alert state written");
    let keys: Vec<String> =
        redis::cmd("KEYS").arg(format!("{prefix}*")).query_async(&mut support::redis().await).await.unwrap();
    assert!(keys.is_empty(), "{keys:?}");
}

/// Three `db migrate` at once on a fresh database take turns under one advisory lock: all three
/// succeed (without it two failed on a duplicate `pg_type` key every time).
#[sqlx::test(migrations = false)]
async fn concurrent_migrations_on_a_fresh_database_all_succeed(pool: PgPool) {
    let dir = tempfile::tempdir().unwrap();
    let runs = (0..3).map(|_| rollout(&pool, dir.path(), &["db", "migrate"], &[]));
    for r in futures::future::join_all(runs).await {
        assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    }
    let audit: i64 = sqlx::query_scalar("SELECT count(*) FROM feature_flags_audit").fetch_one(&pool).await.unwrap();
    assert_eq!(audit, 1, "the flag created once, with one audit row");
}

/// Names and sizes have limits, checked before anything is read or written: flag names as
/// Unleash takes them, conversation ids of at most 255 characters, and ids on stdin read a
/// line at a time so one endless line cannot fill memory.
#[sqlx::test(migrations = false)]
async fn names_and_sizes_without_limits_are_refused(pool: PgPool) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    at_ten_percent(&pool, d).await;
    let long_flag = "f".repeat(5000);
    let long_id = "c".repeat(10_000);
    let cases: [Vec<&str>; 5] = [
        vec!["rollout", "set", "--flag", "", "--percent", "10", "--reason", "x", "--yes", "--create"],
        vec!["rollout", "set", "--flag", &long_flag, "--percent", "10", "--reason", "x", "--yes", "--create"],
        vec!["rollout", "set", "--flag", "bad\u{1b}[2Jname", "--percent", "10", "--reason", "x", "--yes", "--create"],
        vec!["rollout", "override", "", "on", "--reason", "x", "--yes"],
        vec!["rollout", "override", &long_id, "on", "--reason", "x", "--yes"],
    ];
    for args in cases {
        let r = rollout(&pool, d, &args, &[]).await;
        assert_eq!(r.code, 2, "{}", r.stderr);
        assert!(!r.stderr.contains('\u{1b}'), "escaped: {:?}", r.stderr);
    }
    let flags: i64 = sqlx::query_scalar("SELECT count(*) FROM feature_flags").fetch_one(&pool).await.unwrap();
    assert_eq!(flags, 1, "no flag created");
    let mut cmd = support::bin(d);
    cmd.env("DATABASE_URL", url_of(&pool))
        .args(["rollout", "which", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..300 {
            if stdin.write_all(&chunk).await.is_err() {
                return;
            }
        }
    });
    let out =
        tokio::time::timeout(std::time::Duration::from_secs(30), child.wait_with_output()).await.unwrap().unwrap();
    writer.abort();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("stdin line 1: longer than a conversation id can be"));
}

/// A mirror table of the wrong shape (every column text) and a flag table missing a column are
/// named column by column by `db migrate` (exit 3, nothing created around them) and by `doctor`.
#[sqlx::test(migrations = false)]
async fn tables_of_the_wrong_shape_are_named_and_nothing_is_created_around_them(pool: PgPool) {
    sqlx::query(
        "CREATE TABLE chat_events (id text, conversation_id text, channel text, name text, data text, \
         client_id text, occurred_at text)",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("CREATE TABLE feature_flags (name text PRIMARY KEY, enabled boolean)").execute(&pool).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let r = rollout(&pool, dir.path(), &["db", "migrate"], &[]).await;
    assert_eq!(r.code, 3, "{}", r.stdout);
    for said in [
        "public.chat_events: column data is text, expected jsonb",
        "public.chat_events: column occurred_at is text, expected timestamptz",
        "public.feature_flags: column rollout_percent is missing (expected int4)",
        "nothing was created",
    ] {
        assert!(r.stderr.contains(said), "{said}: {}", r.stderr);
    }
    let made: Option<String> =
        sqlx::query_scalar("SELECT to_regclass('feature_flags_audit')::text").fetch_one(&pool).await.unwrap();
    assert_eq!(made, None, "nothing created around a table it cannot use");
    let r = rollout(&pool, dir.path(), &["-o", "json", "doctor"], &[]).await;
    let doc: Value = serde_json::from_str(&r.stdout).unwrap();
    let row = doc["contracts"].as_array().unwrap().iter().find(|c| c["key"] == "table").unwrap().clone();
    assert!(row.to_string().contains("column data is text, expected jsonb"), "{row}");
}

/// Under cron or Kubernetes there is no `$USER`: the audit names whoever `BROKER_OPS_ACTOR` or
/// `--by` says, and an empty name is refused before anything changes.
#[sqlx::test(migrations = false)]
async fn the_audit_names_the_actor_given_by_flag_or_environment(pool: PgPool) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert_eq!(rollout(&pool, d, &["db", "migrate"], &[]).await.code, 0);
    let set = ["rollout", "set", "--percent", "10", "--reason", "soak", "--yes"];
    let r = rollout(&pool, d, &set, &[("BROKER_OPS_ACTOR", "deploy-pipeline")]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = rollout(&pool, d, &["rollout", "--by", "", "rollback", "--reason", "x", "--yes"], &[]).await;
    assert_eq!(r.code, 2, "an empty name is refused: {}", r.stderr);
    let r = rollout(&pool, d, &["rollout", "rollback", "--by", "ana (on call)", "--reason", "p95", "--yes"], &[]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let h = json_of(&rollout(&pool, d, &["-o", "json", "rollout", "history"], &[]).await);
    let actors: Vec<&str> = h["changes"].as_array().unwrap().iter().map(|c| c["actor"].as_str().unwrap()).collect();
    assert_eq!(actors[..2], ["ana (on call)", "deploy-pipeline"], "{h:#}");
}

/// The plan's first production step asks for staging evidence: a passing soak report of at
/// least `--min-staging-soak`, recent, and not from the production target. The short report is
/// a real soak against the sandbox; the 24 h one is a fixture derived from it (its duration and
/// start moved a day back, its target a staging Chatwoot's: a soak of the sandbox itself is not
/// staging evidence) and held to the smoke's own schema.
#[sqlx::test(migrations = false)]
async fn the_first_step_needs_a_staging_soak_or_a_waiver_with_a_reason(pool: PgPool) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert_eq!(rollout(&pool, d, &["db", "migrate"], &[]).await.code, 0);
    let prod = [("CHATWOOT_BASE_URL", "https://chat.example.com")];
    fn first<'a>(extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec!["-o", "json", "rollout", "advance", "--dry-run"];
        args.extend_from_slice(&["--waive", "observed", "--reason", "no Ably in this test"]);
        args.extend(extra.iter().copied());
        args
    }
    let staging = |doc: &Value| gate(doc, "staging").clone();
    // No report: refused, naming how to make one.
    let doc = json_of(&rollout(&pool, d, &first(&[]), &prod).await);
    assert_eq!((doc["pass"].as_bool(), doc["next"].as_u64()), (Some(false), Some(10)), "{doc}");
    assert!(staging(&doc)["detail"].as_str().unwrap().contains("no staging soak report"), "{doc}");
    assert!(gate(&doc, "step")["pass"].as_bool().unwrap(), "off -> 10 % is the plan's first step");
    // A real soak, passing but 4 s long.
    let mut c = support::bin(d);
    c.args(["-o", "json", "sla", "smoke", "--sandbox", "--ai-latency", "fixed:20ms", "--duration", "4s"]).args([
        "--rate",
        "240/min",
        "--interval",
        "2s",
    ]);
    let r = support::run(c).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let short: Value = serde_json::from_str(&r.stdout).unwrap();
    let write = |name: &str, v: &Value| {
        let p = d.join(name);
        std::fs::write(&p, v.to_string()).unwrap();
        p.to_str().unwrap().to_string()
    };
    let short_path = write("short.json", &short);
    let doc = json_of(&rollout(&pool, d, &first(&["--staging-report", &short_path]), &prod).await);
    let detail = staging(&doc)["detail"].as_str().unwrap().to_string();
    assert!(detail.contains("shorter than the 1d asked") || detail.contains("shorter than the 24h asked"), "{doc}");
    assert_eq!(doc["pass"].as_bool(), Some(false));
    // The same soak as a day's: accepted.
    let day = 25 * 3600 * 1000;
    let mut long = short.clone();
    long["duration_ms"] = json!(day);
    long["soak"]["duration_planned_ms"] = json!(day);
    long["started_at"] = json!((chrono::Utc::now() - chrono::Duration::hours(26)).to_rfc3339());
    long["target"] = json!("https://staging-chat.example.com/");
    support::schema_check("sla-smoke", &long);
    let long_path = write("long.json", &long);
    let r = rollout(&pool, d, &first(&["--staging-report", &long_path]), &prod).await;
    let doc = json_of(&r);
    assert_eq!((r.code, doc["pass"].as_bool()), (0, Some(true)), "{doc}");
    assert_eq!(staging(&doc)["value"].as_f64(), Some(25.0 * 3600.0));
    support::schema_check("rollout-advance", &doc);
    // Failed, from production, not a soak, or not a file: refused, naming which.
    let mut failed = long.clone();
    failed["passed"] = json!(false);
    let mut from_prod = long.clone();
    from_prod["target"] = json!("https://CHAT.example.com:443/");
    let mut no_soak = long.clone();
    no_soak["soak"] = Value::Null;
    let mut sandboxed = long.clone();
    sandboxed["target"] = short["target"].clone();
    let cases = [
        (write("failed.json", &failed), "the soak failed"),
        (write("prod.json", &from_prod), "production"),
        (write("no-soak.json", &no_soak), "not a soak"),
        (write("sandbox.json", &sandboxed), "built-in sandbox"),
        (d.to_str().unwrap().to_string(), "not a regular file"),
        (write("junk.json", &json!({"kind": "token_inspect"})), "not a `sla smoke -o json` report"),
    ];
    for (path, why) in cases {
        let r = rollout(&pool, d, &first(&["--staging-report", &path]), &prod).await;
        let doc = json_of(&r);
        assert_eq!(r.code, 1, "{doc}");
        assert!(staging(&doc)["detail"].as_str().unwrap().contains(why), "{why}: {doc}");
    }
    // A waiver needs a reason, and only the first step has a staging gate to waive.
    let r = rollout(&pool, d, &["rollout", "advance", "--waive", "staging", "--yes"], &prod).await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    let why = "staging is being rebuilt; 10 % is watched by hand";
    let args = ["-o", "json", "rollout", "advance", "--waive", "staging", "--waive", "observed", "--reason", why];
    let r = rollout(&pool, d, &[&args[..], &["--yes"]].concat(), &prod).await;
    let doc = json_of(&r);
    assert_eq!((r.code, doc["applied"]["percent"].as_u64()), (0, Some(10)), "{doc}");
    assert_eq!(staging(&doc)["waived"].as_str(), Some(why));
    let h = json_of(&rollout(&pool, d, &["-o", "json", "rollout", "history", "--limit", "1"], &[]).await);
    assert!(h["changes"][0]["reason"].as_str().unwrap().ends_with(&format!("waived staging, observed: {why}")), "{h}");
    let r = rollout(&pool, d, &[&args[..], &["--dry-run", "--min-soak", "0s"]].concat(), &prod).await;
    assert!(r.code == 2 && r.stderr.contains("first step"), "{}", r.stderr);
}
