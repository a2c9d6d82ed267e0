//! The mirror pipeline end to end: the sandbox's Ably webhook (signature, batching, retries)
//! observed on a local receiver, its receiver at the app's route, `mirror canary` and
//! `mirror webhook-test` against it, with real Redis and Postgres.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use sqlx::{PgPool, Row};

use crate::support::{self, Env};
use crate::support::{mirrored_options, url_of};

/// One request as the local receiver saw it.
struct Seen {
    at: Instant,
    headers: HeaderMap,
    body: Bytes,
}

/// A webhook receiver that answers 500 to the first `fail` requests, then 200, recording every
/// request's exact bytes and the most requests it ever had in flight at once.
struct Receiver {
    url: url::Url,
    seen: Arc<Mutex<Vec<Seen>>>,
    max_in_flight: Arc<AtomicUsize>,
}

async fn receiver(fail: usize) -> Receiver {
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let (in_flight, max) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (s, i, m) = (seen.clone(), in_flight.clone(), max.clone());
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let (s, i, m) = (s.clone(), i.clone(), m.clone());
            async move {
                let now = i.fetch_add(1, Ordering::SeqCst) + 1;
                m.fetch_max(now, Ordering::SeqCst);
                // Long enough that a second concurrent request would overlap this one.
                tokio::time::sleep(Duration::from_millis(20)).await;
                let n = {
                    let mut seen = s.lock().unwrap();
                    seen.push(Seen { at: Instant::now(), headers, body });
                    seen.len()
                };
                i.fetch_sub(1, Ordering::SeqCst);
                if n <= fail { StatusCode::INTERNAL_SERVER_ERROR } else { StatusCode::OK }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = url::Url::parse(&format!("http://{}/hook", listener.local_addr().unwrap())).unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Receiver { url, seen, max_in_flight: max }
}

/// An authenticated Ably REST call to the sandbox.
async fn ably(env: &Env, path: &str, body: Option<&Value>) -> Value {
    let url = format!("{}{path}", env.base);
    let rb = match body {
        Some(b) => support::http().post(url).json(b),
        None => support::http().get(url),
    };
    let resp = rb.basic_auth(env.key_name(), Some(env.key_secret())).send().await.unwrap();
    assert!(resp.status().is_success(), "{path}: {}", resp.status());
    resp.json().await.unwrap()
}

fn items_of(body: &[u8]) -> Vec<Value> {
    serde_json::from_slice::<Value>(body).unwrap()["items"].as_array().unwrap().clone()
}

fn message_ids(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .flat_map(|i| i["data"]["messages"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_string()))
        .collect()
}

#[tokio::test]
async fn webhook_requests_are_signed_over_their_bytes_batched_by_100_and_retried_with_ablys_backoff() {
    let rx = receiver(2).await;
    let opts = broker_ops::sandbox::SandboxOptions { webhook_url: Some(rx.url.clone()), ..support::options() };
    let (sb, env) = support::start(opts).await;
    // 150 publishes over 10 conversation channels (Ably allows 50 a second per channel), and
    // one on a channel that is not a conversation's: the rule's filter leaves it out.
    let mut published = Vec::new();
    for i in 0..150 {
        let id = format!("pub-{i}");
        let channel = format!("conversation:webhook-{}", i % 10);
        let body = json!({"id": id, "name": "message:user", "data": {"text": "hi", "i": i}});
        ably(&env, &format!("/channels/{channel}/messages"), Some(&body)).await;
        published.push(id);
    }
    ably(&env, "/channels/lobby/messages", Some(&json!({"name": "x", "data": "y"}))).await;
    support::until("every item delivered", || async { message_ids_delivered(&rx).len() >= 150 }).await;

    let seen = std::mem::take(&mut *rx.seen.lock().unwrap());
    let (name, secret) = (env.key_name(), env.key_secret());
    for s in seen.iter() {
        // The signature, computed here over the exact bytes received.
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(&s.body);
        let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        assert_eq!(s.headers["x-ably-signature"], expected.as_str());
        assert_eq!(s.headers["x-ably-key"], name);
        assert_eq!(s.headers["x-ably-version"], "1.2");
        assert_eq!(s.headers["content-type"], "application/json");
        let items = items_of(&s.body);
        assert!(!items.is_empty() && items.len() <= 100, "batches of 1 to 100 items, got {}", items.len());
        for item in &items {
            assert_eq!(item["source"], "channel.message");
            assert_eq!(item["name"], "channel.message");
            assert!(item["data"]["channelId"].as_str().unwrap().starts_with("conversation:"));
        }
    }
    assert_eq!(rx.max_in_flight.load(Ordering::SeqCst), 1, "one request in flight at a time");
    // Two failures, then the same (grown) batch again: the retries waited 1 s, then 1.41 s.
    let gap = |a: usize, b: usize| seen[b].at.duration_since(seen[a].at);
    assert!(gap(0, 1) >= Duration::from_millis(1000), "first retry after {:?}", gap(0, 1));
    assert!(gap(1, 2) >= Duration::from_millis(1414), "second retry after {:?}", gap(1, 2));
    // Not the next step of the schedule either (2 s, 2.83 s): the growth is √2, not more.
    assert!(
        gap(0, 1) < Duration::from_millis(1900) && gap(1, 2) < Duration::from_millis(2700),
        "{:?}",
        (gap(0, 1), gap(1, 2))
    );
    let first_ids = message_ids(&items_of(&seen[0].body));
    let retried = message_ids(&items_of(&seen[2].body));
    assert_eq!(retried[..first_ids.len()], first_ids[..], "a retry sends the failed items first, in order");
    assert_eq!(retried.len(), 100, "everything queued meanwhile joins, up to 100 items");
    // Delivered exactly once each, in publish order.
    let delivered: Vec<String> = seen[2..].iter().flat_map(|s| message_ids(&items_of(&s.body))).collect();
    assert_eq!(delivered, published);
    let counters = sb.webhook_counters().unwrap();
    assert_eq!((counters["failed_requests"].as_u64(), counters["delivered_items"].as_u64()), (Some(2), Some(150)));
    sb.shutdown().await;
}

fn message_ids_delivered(rx: &Receiver) -> Vec<String> {
    let seen = rx.seen.lock().unwrap();
    seen.iter().skip(2).flat_map(|s| message_ids(&items_of(&s.body))).collect()
}

/// The binary pointed at a sandbox that mirrors into this test's stores.
fn bin_for(env: &Env, pool: &PgPool, prefix: &str, dir: &std::path::Path) -> tokio::process::Command {
    let mut cmd = support::bin(dir);
    env.apply(&mut cmd)
        .env("REDIS_URL", support::redis_url())
        .env("REDIS_KEY_PREFIX", prefix)
        .env("DATABASE_URL", url_of(pool));
    cmd
}

async fn canary(env: &Env, pool: &PgPool, prefix: &str, args: &[&str]) -> (i32, Value) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = bin_for(env, pool, prefix, dir.path());
    cmd.args(["-o", "json", "mirror", "canary"]).args(args);
    let out = support::run(cmd).await;
    let doc: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|_| panic!("{} {}", out.stdout, out.stderr));
    (out.code, doc)
}

fn check<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["checks"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap_or_else(|| panic!("{name}: {doc}"))
}

async fn set_faults(env: &Env, faults: Value) {
    let resp = support::http().post(format!("{}/_sandbox/faults", env.base)).json(&faults).send().await.unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
}

#[sqlx::test(migrations = false)]
async fn the_canary_times_its_way_through_the_pipeline_as_the_sandbox_recorded_it(pool: PgPool) {
    let prefix = support::prefix("canary");
    let (sb, env) = support::start(mirrored_options(&pool, &prefix)).await;
    let (code, doc) = canary(&env, &pool, &prefix, &[]).await;
    support::schema_check("probe", &doc);
    assert_eq!((code, doc["kind"].as_str(), doc["state"].as_str()), (0, Some("mirror_canary"), Some("OK")), "{doc}");
    let names: Vec<&str> = doc["checks"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["publish_latency", "deliver_latency", "redis_latency", "postgres_latency"]);
    let deliver = check(&doc, "deliver_latency")["value"].as_f64().unwrap();
    assert!(deliver >= 0.0 && check(&doc, "deliver_latency")["detail"] == "to an SSE subscriber", "{doc}");
    let detail = check(&doc, "publish_latency")["detail"].as_str().unwrap();
    let id = detail.split_whitespace().nth(1).unwrap();
    assert!(id.starts_with("broker-ops-canary-"), "{detail}");
    let record = support::get_json(format!("{}/_sandbox/mirror?id={id}", env.base)).await["record"].clone();
    for store in ["redis", "postgres"] {
        let reported = check(&doc, &format!("{store}_latency"))["value"].as_f64().unwrap();
        let (began, truth) =
            (record[format!("{store}_began_ms")].as_f64().unwrap(), record[format!("{store}_ms")].as_f64().unwrap());
        // The canary's clock starts before the sandbox's, and the entry is visible from some
        // moment during the write (a loaded clean-clone run saw it 1.5 ms before the sandbox
        // heard back from Redis); the canary stops at its next poll after that.
        assert!(reported + 1.0 >= began, "{store}: reported {reported} ms, the write began at {began} ms");
        assert!(reported - truth < 50.0, "{store}: reported {reported} ms, sandbox {truth} ms");
    }
    // In both stores, under the canary conversation and event, and nowhere else.
    let row = sqlx::query("SELECT conversation_id, channel, name, data FROM chat_events WHERE id = $1")
        .bind(id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(row.get::<String, _>("conversation_id"), "broker-ops-canary");
    assert_eq!(row.get::<String, _>("channel"), "conversation:broker-ops-canary");
    assert_eq!(row.get::<String, _>("name"), "broker-ops:canary");
    assert_eq!(row.get::<Value, _>("data")["canary"], true);
    let others: i64 =
        sqlx::query_scalar("SELECT count(*) FROM chat_events WHERE conversation_id <> 'broker-ops-canary'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(others, 0, "no customer conversation was touched");

    // Replays leave canaries out unless their conversation is named.
    let dir = tempfile::tempdir().unwrap();
    let mut all = bin_for(&env, &pool, &prefix, dir.path());
    all.args(["-o", "ndjson", "events", "replay", "--all", "--from", "postgres"]);
    let out = support::run(all).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stdout.contains(id), "{}", out.stdout);
    let mut named = bin_for(&env, &pool, &prefix, dir.path());
    named.args(["-o", "ndjson", "events", "replay", "--conversation", "broker-ops-canary", "--from", "postgres"]);
    assert!(support::run(named).await.stdout.contains(id));
    sb.shutdown().await;
}

#[sqlx::test(migrations = false)]
async fn a_subscriber_that_gets_nothing_is_critical_while_the_stores_are_measured(pool: PgPool) {
    let prefix = support::prefix("canary-deliver");
    let (sb, env) = support::start(mirrored_options(&pool, &prefix)).await;
    set_faults(&env, json!({"deliver_drop_rate": 1.0})).await;
    let (code, doc) = canary(&env, &pool, &prefix, &["--wait", "2s"]).await;
    assert_eq!(code, 2, "{doc}");
    let states = support::check_states(&doc);
    assert_eq!(
        states,
        [
            ("publish_latency", "OK"),
            ("deliver_latency", "CRITICAL"),
            ("redis_latency", "OK"),
            ("postgres_latency", "OK")
        ],
        "{doc}"
    );
    let why = check(&doc, "deliver_latency")["detail"].as_str().unwrap();
    assert!(why.contains("Ably took the publish, but its subscriber got nothing after 2.00s"), "{why}");
    set_faults(&env, json!({"deliver_drop_rate": 0.0})).await;
    assert_eq!(canary(&env, &pool, &prefix, &[]).await.0, 0, "healed");
    sb.shutdown().await;
}

#[sqlx::test(migrations = false)]
async fn the_canary_is_critical_for_the_store_the_pipeline_lost(pool: PgPool) {
    let prefix = support::prefix("canary-faults");
    let (sb, env) = support::start(mirrored_options(&pool, &prefix)).await;
    let cases = [
        (json!({"webhook_drop_rate": 1.0}), ["CRITICAL", "CRITICAL"]),
        (json!({"receiver_error_rate": 1.0}), ["CRITICAL", "CRITICAL"]),
        (json!({"postgres_write_fail": true}), ["OK", "CRITICAL"]),
        (json!({"redis_write_fail": true}), ["CRITICAL", "CRITICAL"]),
    ];
    let clear = json!({"webhook_drop_rate": 0.0, "receiver_error_rate": 0.0, "postgres_write_fail": false, "redis_write_fail": false});
    for (faults, [redis, postgres]) in cases {
        set_faults(&env, faults.clone()).await;
        let (code, doc) = canary(&env, &pool, &prefix, &["--wait", "1s"]).await;
        assert_eq!(code, 2, "{faults}: {doc}");
        assert_eq!(check(&doc, "publish_latency")["state"], "OK");
        assert_eq!(
            (check(&doc, "redis_latency")["state"].as_str(), check(&doc, "postgres_latency")["state"].as_str()),
            (Some(redis), Some(postgres)),
            "{faults}: {doc}"
        );
        let lost = check(&doc, "postgres_latency")["detail"].as_str().unwrap();
        assert!(lost.contains("not in table public.chat_events after 1.00s"), "{lost}");
        // Faults gone, the webhook's retries (Ably's backoff) deliver what failed.
        set_faults(&env, clear.clone()).await;
        support::until("the webhook queue drains", || async {
            support::get_json(format!("{}/_sandbox/mirror", env.base)).await["webhook"]["pending"] == 0
        })
        .await;
    }
    // The sandbox's webhook retries what failed: once the faults are gone, it all arrives.
    assert_eq!(canary(&env, &pool, &prefix, &[]).await.0, 0);

    // Ably refusing our key is UNKNOWN (the check could not be made: docs/probes.md's table)
    // with Ably's code; the stores are not waited for.
    let wrong = Env { key: format!("{}:wrong-secret", env.key_name()), ..Env::of(&sb) };
    let (code, doc) = canary(&wrong, &pool, &prefix, &[]).await;
    assert_eq!(code, 3, "{doc}");
    let publish = check(&doc, "publish_latency");
    assert_eq!(publish["state"], "UNKNOWN");
    assert!(publish["detail"].as_str().unwrap().contains("40101"), "{publish}");
    assert_eq!(check(&doc, "redis_latency")["state"], "UNKNOWN");

    // Nowhere to look: UNKNOWN (exit 3) naming the setting, and nothing published.
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = support::bin(dir.path());
    env.apply(&mut cmd).args(["mirror", "canary"]);
    let out = support::run(cmd).await;
    assert_eq!(out.code, 3, "{}", out.stdout);
    assert!(out.stderr.contains("REDIS_URL"), "{}", out.stderr);
    sb.shutdown().await;
}

async fn webhook_test(env: &Env, pool: &PgPool, prefix: &str, extra: &[(&str, &str)]) -> (i32, Value, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = bin_for(env, pool, prefix, dir.path());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd.args(["-o", "json", "mirror", "webhook-test", &format!("{}/api/ably/events", env.base), "--wait", "2s"]);
    let out = support::run(cmd).await;
    let doc = serde_json::from_str(&out.stdout).unwrap_or(Value::Null);
    (out.code, doc, out.stderr)
}

fn case_results(doc: &Value) -> HashMap<String, (Option<u64>, Option<bool>, bool)> {
    doc["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let k = c["name"].as_str().unwrap().to_string();
            (k, (c["status"].as_u64(), c["mirrored"].as_bool(), c["pass"].as_bool().unwrap()))
        })
        .collect()
}

#[sqlx::test(migrations = false)]
async fn webhook_test_passes_a_strict_route_and_names_what_a_careless_one_accepts(pool: PgPool) {
    let prefix = support::prefix("webhook-test");
    let (sb, env) = support::start(mirrored_options(&pool, &prefix)).await;
    let (code, doc, err) = webhook_test(&env, &pool, &prefix, &[]).await;
    assert_eq!(code, 0, "{doc} {err}");
    support::schema_check("webhook-test", &doc);
    let r = case_results(&doc);
    assert_eq!(r["signed"], (Some(200), Some(true), true));
    for case in ["wrong_signature", "no_signature", "altered_body"] {
        assert_eq!(r[case], (Some(401), Some(false), true), "{case}");
    }
    assert_eq!(doc["key_from"], "ABLY_API_KEY");

    // A route that skips the signature check accepts all three forgeries: exit 1, each named.
    set_faults(&env, json!({"receiver_skip_signature": true})).await;
    let (code, doc, _) = webhook_test(&env, &pool, &prefix, &[]).await;
    assert_eq!(code, 1, "{doc}");
    let r = case_results(&doc);
    for case in ["wrong_signature", "no_signature", "altered_body"] {
        assert_eq!(r[case], (Some(200), Some(true), false), "{case}");
    }
    assert!(r["signed"].2);
    set_faults(&env, json!({"receiver_skip_signature": false})).await;

    // Signing with a key the route does not trust: the good request is refused.
    let other = format!("{}:not-the-secret", env.key_name());
    let (code, doc, _) = webhook_test(&env, &pool, &prefix, &[("ABLY_WEBHOOK_KEY", &other)]).await;
    assert_eq!(code, 1, "{doc}");
    assert_eq!(doc["key_from"], "ABLY_WEBHOOK_KEY");
    assert_eq!(case_results(&doc)["signed"], (Some(401), Some(false), false));

    // A malformed key, or none at all: exit 3 naming the setting.
    let (code, _, err) = webhook_test(&env, &pool, &prefix, &[("ABLY_WEBHOOK_KEY", "nocolon")]).await;
    assert_eq!(code, 3);
    assert!(err.contains("ABLY_WEBHOOK_KEY"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = support::bin(dir.path());
    cmd.args(["mirror", "webhook-test", &format!("{}/api/ably/events", env.base)]);
    let out = support::run(cmd).await;
    assert_eq!(out.code, 3);
    assert!(out.stderr.contains("ABLY_WEBHOOK_KEY"), "{}", out.stderr);
    sb.shutdown().await;
}

#[sqlx::test(migrations = false)]
async fn the_mirror_written_through_the_webhook_is_what_ably_delivered_in_order(pool: PgPool) {
    let prefix = support::prefix("through-webhook");
    let (sb, env) = support::start(mirrored_options(&pool, &prefix)).await;
    let mut convs = Vec::new();
    for i in 0..3 {
        let (contact, conv) = support::new_chat(&env).await;
        for turn in 0..3 {
            support::say(&env, &contact, conv, &format!("question {i}.{turn}")).await;
        }
        convs.push(conv);
    }
    // Every customer message is answered: 9 messages and 9 replies.
    crate::support::wait_mirrored(&sb, 18).await;
    let mut r = support::redis().await;
    for conv in convs {
        let history =
            ably(&env, &format!("/channels/conversation:{conv}/messages?direction=forwards&limit=100"), None).await;
        // What the sandbox delivered on the channel, as the direct writer used to mirror it.
        let expected: Vec<(String, String, Value, String, i64)> = history
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                let msg: broker_ops::ably::Message = serde_json::from_value(m.clone()).unwrap();
                let client = msg.client_id.clone().unwrap_or_default();
                (msg.id.clone().unwrap(), msg.name.clone().unwrap(), msg.decoded_data(), client, msg.timestamp.unwrap())
            })
            .collect();
        assert_eq!(expected.len(), 6);
        let entries: Vec<(String, HashMap<String, String>)> = redis::cmd("XRANGE")
            .arg(format!("{prefix}chat:events:{conv}"))
            .arg("-")
            .arg("+")
            .query_async(&mut r)
            .await
            .unwrap();
        let in_redis: Vec<_> = entries
            .iter()
            .map(|(_, f)| {
                let data: Value = serde_json::from_str(&f["data"]).unwrap();
                (f["id"].clone(), f["name"].clone(), data, f["clientId"].clone(), f["timestamp"].parse().unwrap())
            })
            .collect();
        assert_eq!(in_redis, expected, "conversation {conv}: the Redis stream, entry for entry");
        let rows = sqlx::query(
            "SELECT id, name, data, client_id, occurred_at FROM chat_events WHERE conversation_id = $1 ORDER BY occurred_at, id",
        )
        .bind(conv.to_string())
        .fetch_all(&pool)
        .await
        .unwrap();
        let mut in_pg: Vec<_> = rows
            .iter()
            .map(|row| {
                let at: chrono::DateTime<chrono::Utc> = row.get("occurred_at");
                let client: Option<String> = row.get("client_id");
                (
                    row.get::<String, _>("id"),
                    row.get::<String, _>("name"),
                    row.get::<Value, _>("data"),
                    client.unwrap_or_default(),
                    at.timestamp_millis(),
                )
            })
            .collect();
        let mut sorted = expected.clone();
        sorted.sort_by(|a, b| (a.4, &a.0).cmp(&(b.4, &b.0)));
        in_pg.sort_by(|a, b| (a.4, &a.0).cmp(&(b.4, &b.0)));
        assert_eq!(in_pg, sorted, "conversation {conv}: the Postgres rows");
    }
    sb.shutdown().await;
}
