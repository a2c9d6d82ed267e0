//! The sandbox's AI worker: `message:user` then `message:ai` with `replyTo`, SLA events at the
//! thresholds, injected faults, and the ground truth it records.

use std::time::{Duration, Instant};

use broker_ops::sandbox::{LatencyModel, Stall};
use serde_json::{Value, json};

use crate::support::{self, http};

#[tokio::test]
async fn a_customer_message_is_echoed_then_answered_on_the_conversation_channel() {
    let (sb, env) = support::sandbox().await;
    let (contact, conv) = support::new_chat(&env).await;
    let mut events = support::subscribe(&env, &format!("channels=conversation:{conv}")).await;
    let sent = Instant::now();
    let msg = support::say(&env, &contact, conv, "What deposit do I need?").await;
    let got = support::collect(&mut events, 2, Duration::from_secs(3)).await;
    let elapsed = sent.elapsed();
    let (n0, d0) = support::message(&got[0]);
    let (n1, d1) = support::message(&got[1]);
    assert_eq!(n0, "message:user");
    assert_eq!(d0["messageId"], msg["id"]);
    assert_eq!(d0["content"], "What deposit do I need?");
    assert_eq!(n1, "message:ai");
    assert_eq!(d1["replyTo"], msg["id"]);
    assert_eq!(d1["conversationId"], conv);
    assert!(elapsed >= Duration::from_millis(50), "fixed:50ms latency respected");

    let url =
        format!("{}/public/api/v1/inboxes/{}/contacts/{contact}/conversations/{conv}/messages", env.base, env.inbox);
    let list: Vec<Value> = http().get(url).send().await.unwrap().json().await.unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[1]["message_type"], 1, "the reply is outgoing");
    assert_eq!(list[1]["id"], d1["messageId"]);
    assert_eq!(list[1]["sender"]["type"], "agent_bot");

    let url = format!("{}/_sandbox/ground-truth", env.base);
    support::until("the reply is recorded", || async { support::get_json(&url).await["count"] == 1 }).await;
    let truth = support::get_json(&url).await;
    assert_eq!(truth["count"], 1);
    assert_eq!(truth["records"][0]["outcome"], "replied");
    let latency_ms = truth["records"][0]["latency_us"].as_f64().unwrap() / 1000.0;
    assert!(latency_ms >= 50.0, "fixed:50ms respected: true latency {latency_ms} ms");
    assert_eq!(sb.ground_truth().len(), 1);
}

#[tokio::test]
async fn late_replies_announce_sla_warning_and_violation_before_the_reply() {
    let mut opts = support::options();
    opts.faults.ai_latency = LatencyModel::Fixed(Duration::from_millis(300));
    opts.sla_warning = Duration::from_millis(100);
    opts.sla_violation = Duration::from_millis(200);
    let (_sb, env) = support::start(opts).await;
    let (contact, conv) = support::new_chat(&env).await;
    let mut events = support::subscribe(&env, &format!("channels=conversation:{conv}")).await;
    support::say(&env, &contact, conv, "hello?").await;
    let got = support::collect(&mut events, 4, Duration::from_secs(3)).await;
    let names: Vec<String> = got.iter().map(|e| support::message(e).0).collect();
    assert_eq!(names, ["message:user", "sla:warning", "sla:violation", "message:ai"]);
    let (_, warning) = support::message(&got[1]);
    assert_eq!(warning["thresholdMs"], 100);
    assert!(warning["elapsedMs"].as_u64().unwrap() >= 100);
}

#[tokio::test]
async fn with_ai_error_rate_one_nothing_answers_and_the_violation_is_published() {
    let mut opts = support::options();
    opts.faults.ai_error_rate = 1.0;
    opts.sla_warning = Duration::from_millis(60);
    opts.sla_violation = Duration::from_millis(120);
    let (sb, env) = support::start(opts).await;
    let (contact, conv) = support::new_chat(&env).await;
    let mut events = support::subscribe(&env, &format!("channels=conversation:{conv}")).await;
    support::say(&env, &contact, conv, "anyone?").await;
    let got = support::collect(&mut events, 4, Duration::from_millis(800)).await;
    let names: Vec<String> = got.iter().map(|e| support::message(e).0).collect();
    assert_eq!(names, ["message:user", "sla:warning", "sla:violation"]);
    let truth = sb.ground_truth();
    assert_eq!(truth.len(), 1);
    assert_eq!(truth[0].outcome, "ai_error");
    assert!(truth[0].latency_us.is_none());
}

#[tokio::test]
async fn http_error_rate_one_answers_500_in_each_services_error_format() {
    let mut opts = support::options();
    opts.faults.http_error_rate = 1.0;
    let (_sb, env) = support::start(opts).await;
    let ably = http().get(format!("{}/time", env.base)).send().await.unwrap();
    assert_eq!(ably.status(), 500);
    assert_eq!(ably.json::<Value>().await.unwrap()["error"]["code"], 50000);
    let cw = http()
        .post(format!("{}/public/api/v1/inboxes/{}/contacts", env.base, env.inbox))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(cw.status(), 500);
    assert!(cw.json::<Value>().await.unwrap()["error"].is_string());
    let truth = http().get(format!("{}/_sandbox/ground-truth", env.base)).send().await.unwrap();
    assert_eq!(truth.status(), 200, "the sandbox's own endpoints are never faulted");
}

#[tokio::test]
async fn a_stall_holds_requests_and_replies_until_it_ends() {
    let mut opts = support::options();
    opts.faults.stall = Some(Stall { duration: Duration::from_secs(2), after: Duration::from_millis(300) });
    let before_start = Instant::now();
    let (_sb, env) = support::start(opts).await;
    let (contact, conv) = support::new_chat(&env).await;
    tokio::time::sleep_until((before_start + Duration::from_millis(400)).into()).await;
    let sent = Instant::now();
    let resp = http().get(format!("{}/time", env.base)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    // The stall ends 2.3 s after the sandbox started, which was after `before_start`.
    assert!(before_start.elapsed() >= Duration::from_millis(2300), "answered during the stall");
    assert!(sent.elapsed() >= Duration::from_secs(1), "held: {:?}", sent.elapsed());
    // Once the stall is over, requests are answered again (`say` asserts the 200).
    support::say(&env, &contact, conv, "after the stall").await;
}

/// The queue faults, as BullMQ keeps the jobs: a handler that throws leaves the job in `failed`
/// with its `failedReason` (read back by `ably backlog --failed`); a worker that goes down while
/// holding a job leaves it `active`, unanswered.
#[tokio::test]
async fn job_failures_and_a_worker_down_leave_the_queue_as_bullmq_would() {
    let prefix = format!("{}bull", support::prefix("qfaults"));
    let mut opts = support::options();
    opts.redis_url = Some(secrecy::SecretString::from(support::redis_url()));
    opts.bull_prefix = prefix.clone();
    opts.faults.job_failure_rate = 1.0;
    let (sb, env) = support::start(opts).await;
    let (contact, conv) = support::new_chat(&env).await;
    support::say(&env, &contact, conv, "will this fail?").await;
    support::until("the job fails", || async { sb.ground_truth().iter().any(|t| t.outcome == "job_failed") }).await;
    let dir = tempfile::tempdir().unwrap();
    let backlog = |args: &[&str]| {
        let mut c = support::bin(dir.path());
        c.args(["-o", "json", "ably", "backlog"])
            .args(args)
            .env("REDIS_URL", support::redis_url())
            .env("BULL_PREFIX", &prefix);
        c
    };
    let doc: Value = support::until_value("the failed job is written", || async {
        let r = support::run(backlog(&["--failed", "1"])).await;
        serde_json::from_str::<Value>(&r.stdout).ok().filter(|d| d["failed_total"] == 1)
    })
    .await;
    let job = &doc["jobs"][0];
    assert!(job["failed_reason"].as_str().unwrap().contains("answered 502"), "{job}");
    assert_eq!(job["attempts_made"], 1);
    sb.set_faults(serde_json::from_value(json!({"job_failure_rate": 0.0, "ai_latency": "fixed:400ms"})).unwrap())
        .unwrap();
    support::say(&env, &contact, conv, "and this?").await;
    sb.set_faults(serde_json::from_value(json!({"worker_down": true})).unwrap()).unwrap();
    support::until("the held job is abandoned", || async {
        sb.ground_truth().iter().any(|t| t.outcome == "worker_down")
    })
    .await;
    let r = support::run(backlog(&[])).await;
    let doc: Value = serde_json::from_str(&r.stdout).unwrap();
    let active = doc["checks"].as_array().unwrap().iter().find(|c| c["name"] == "active").unwrap();
    assert_eq!(active["value"], 1.0, "the job the worker held stays active: {doc:#}");
}
