//! The sandbox mirrors every conversation message into the real Redis and Postgres exactly as
//! docs/contracts.md says, and passes jobs through a BullMQ-layout queue.

use std::collections::HashMap;
use std::time::Duration;

use broker_ops::mirror::MirroredEvent;
use redis::AsyncCommands;
use serde_json::Value;
use sqlx::{PgPool, Row};

use crate::support::{self, mirrored_options, wait_mirrored};

#[sqlx::test(migrations = false)]
async fn every_conversation_event_lands_in_redis_and_postgres_once(pool: PgPool) {
    let prefix = support::prefix("mirror");
    let (sb, env) = support::start(mirrored_options(&pool, &prefix)).await;
    let (contact, conv) = support::new_chat(&env).await;
    let msg = support::say(&env, &contact, conv, "Is my rate fixed?").await;
    wait_mirrored(&sb, 2).await;

    let mut r = support::redis().await;
    let key = format!("{prefix}chat:events:{conv}");
    let entries: Vec<(String, HashMap<String, String>)> =
        redis::cmd("XRANGE").arg(&key).arg("-").arg("+").query_async(&mut r).await.unwrap();
    assert_eq!(entries.len(), 2);
    let (user, ai) = (&entries[0].1, &entries[1].1);
    let mut fields: Vec<&str> = user.keys().map(String::as_str).collect();
    fields.sort();
    assert_eq!(fields, ["clientId", "data", "id", "name", "timestamp"]);
    assert_eq!(user["name"], "message:user");
    assert_eq!(ai["name"], "message:ai");
    let ai_data: Value = serde_json::from_str(&ai["data"]).unwrap();
    assert_eq!(ai_data["replyTo"], msg["id"]);
    assert_eq!(ai["clientId"], "ai-broker");
    let ttl: i64 = r.ttl(&key).await.unwrap();
    assert!((86_300..=86_400).contains(&ttl), "24 h expiry, got {ttl}");
    let score: f64 = r.zscore(format!("{prefix}chat:conversations:active"), conv.to_string()).await.unwrap();
    assert_eq!(score as i64, ai["timestamp"].parse::<i64>().unwrap(), "scored by the last event time");

    let rows = sqlx::query("SELECT id, conversation_id, channel, name, data, client_id, occurred_at FROM chat_events ORDER BY occurred_at, name DESC")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(rows.len(), 2, "the sandbox created chat_events with the project's migration and filled it");
    assert_eq!(rows[0].get::<String, _>("id"), user["id"]);
    assert_eq!(rows[1].get::<String, _>("id"), ai["id"]);
    assert_eq!(rows[1].get::<String, _>("conversation_id"), conv.to_string());
    assert_eq!(rows[1].get::<String, _>("channel"), format!("conversation:{conv}"));
    assert_eq!(rows[1].get::<Value, _>("data")["replyTo"], msg["id"]);
    let occurred: chrono::DateTime<chrono::Utc> = rows[1].get("occurred_at");
    assert_eq!(occurred.timestamp_millis(), ai["timestamp"].parse::<i64>().unwrap());

    // Writing the same events again adds nothing: the mirror is idempotent on the Ably id.
    let again: Vec<MirroredEvent> = rows
        .iter()
        .map(|row| MirroredEvent {
            id: row.get("id"),
            conversation_id: row.get("conversation_id"),
            channel: row.get("channel"),
            name: row.get("name"),
            data: row.get("data"),
            client_id: row.get("client_id"),
            timestamp_ms: row.get::<chrono::DateTime<chrono::Utc>, _>("occurred_at").timestamp_millis(),
        })
        .collect();
    assert_eq!(
        broker_ops::store::postgres::insert(&pool, "test", &broker_ops::contracts::Contracts::default().table, &again)
            .await
            .unwrap(),
        0
    );
    sb.shutdown().await;
}

#[sqlx::test(migrations = false)]
async fn smoke_jobs_pass_through_a_bullmq_layout_queue(pool: PgPool) {
    let prefix = support::prefix("queue");
    let mut opts = mirrored_options(&pool, &prefix);
    opts.faults.ai_latency = broker_ops::sandbox::LatencyModel::Fixed(Duration::from_millis(300));
    let (sb, env) = support::start(opts).await;
    let (contact, conv) = support::new_chat(&env).await;
    let msg = support::say(&env, &contact, conv, "How long does pre-approval take?").await;
    let id = msg["id"].as_u64().unwrap().to_string();
    let q = format!("{prefix}bull:broker");
    let mut r = support::redis().await;
    // While the AI thinks, the job is active (it leaves `wait` at once, `active` after 50 ms).
    let active_key = format!("{q}:active");
    support::until("the job is active", || {
        let (key, id) = (active_key.clone(), id.clone());
        async move {
            let mut r = support::redis().await;
            let job: HashMap<String, String> =
                r.hgetall(format!("{}:{id}", key.trim_end_matches(":active"))).await.unwrap();
            job.contains_key("processedOn")
        }
    })
    .await;
    let job: HashMap<String, String> = r.hgetall(format!("{q}:{id}")).await.unwrap();
    assert_eq!(job["name"], "message_created");
    assert!(job["timestamp"].parse::<i64>().unwrap() > 0);
    assert!(job.contains_key("processedOn"));
    let data: Value = serde_json::from_str(&job["data"]).unwrap();
    assert_eq!(data["conversationId"], conv);
    // Then it completes.
    wait_mirrored(&sb, 2).await;
    let completed = format!("{q}:completed");
    support::until("the job completes", || {
        let (key, id) = (completed.clone(), id.clone());
        async move { support::redis().await.zscore::<_, _, Option<f64>>(key, id).await.unwrap().is_some() }
    })
    .await;
    let active: i64 = r.llen(format!("{q}:active")).await.unwrap();
    let waiting: i64 = r.llen(format!("{q}:wait")).await.unwrap();
    let done: Option<f64> = r.zscore(format!("{q}:completed"), &id).await.unwrap();
    assert_eq!((active, waiting), (0, 0));
    let finished: i64 = r.hget(format!("{q}:{id}"), "finishedOn").await.unwrap();
    assert_eq!(done.unwrap() as i64, finished, "completed is scored by finishedOn");
    sb.shutdown().await;
}
