//! The sandbox's SSE endpoints against Ably's SSE documentation: framing, keepalives,
//! resume with `lastEvent`, `rewind`, `enveloped=false`, `heartbeats`, `error` events and
//! non-streamed failures.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};

use crate::support::{self, Env, http};

async fn publish(env: &Env, channel: &str, body: Value) {
    let resp = http()
        .post(format!("{}/channels/{channel}/messages", env.base))
        .basic_auth(env.key_name(), Some(env.key_secret()))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
}

/// Reads the raw body for `within`, for checks on the exact framing.
async fn raw(resp: reqwest::Response, within: Duration) -> String {
    let mut body = resp.bytes_stream();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(within, async {
        while let Some(Ok(chunk)) = body.next().await {
            out.extend_from_slice(&chunk);
        }
    })
    .await;
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn messages_are_framed_with_id_event_and_data_and_keepalives_are_comments() {
    let (_sb, env) = support::sandbox().await;
    let resp =
        http().get(format!("{}/sse?v=1.2&channels=conversation:9&key={}", env.base, env.key)).send().await.unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    publish(&env, "conversation:9", json!({"name": "message:user", "data": {"content": "hi"}, "clientId": "c1"})).await;
    let text = raw(resp, Duration::from_millis(500)).await;
    let first = text.split("\n\n").next().unwrap();
    let lines: Vec<&str> = first.lines().collect();
    assert!(lines[0].starts_with("id: "), "{first}");
    assert_eq!(lines[1], "event: message");
    let data: Value = serde_json::from_str(lines[2].strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(data["channel"], "conversation:9");
    assert_eq!(data["name"], "message:user");
    assert_eq!(data["clientId"], "c1");
    assert_eq!(data["encoding"], "json");
    assert_eq!(data["data"], "{\"content\":\"hi\"}");
    assert!(text.contains("\n\n:keepalive\n\n"), "keepalive comments every 200 ms: {text:?}");
}

#[tokio::test]
async fn a_dropped_stream_resumes_from_last_event_without_loss_or_repeat() {
    let (_sb, env) = support::sandbox().await;
    let mut first = support::subscribe(&env, "channels=conversation:5").await;
    publish(&env, "conversation:5", json!({"name": "n", "data": "one"})).await;
    let got = support::collect(&mut first, 1, Duration::from_secs(2)).await;
    let last_id = got[0].id.clone();
    drop(first);
    publish(&env, "conversation:5", json!({"name": "n", "data": "two"})).await;
    publish(&env, "conversation:5", json!({"name": "n", "data": "three"})).await;
    let mut again = support::subscribe(&env, &format!("channels=conversation:5&lastEvent={last_id}")).await;
    let resumed = support::collect(&mut again, 3, Duration::from_millis(600)).await;
    let data: Vec<Value> = resumed.iter().map(|e| support::message(e).1).collect();
    assert_eq!(data, [json!("two"), json!("three")]);
}

#[tokio::test]
async fn rewind_replays_the_last_n_and_unenveloped_streams_carry_the_bare_payload() {
    let (_sb, env) = support::sandbox().await;
    for i in 0..4 {
        publish(&env, "rw", json!({"name": "n", "data": format!("m{i}")})).await;
    }
    let mut s = support::subscribe(&env, "channels=rw&rewind=2").await;
    let got = support::collect(&mut s, 3, Duration::from_millis(600)).await;
    let data: Vec<Value> = got.iter().map(|e| support::message(e).1).collect();
    assert_eq!(data, [json!("m2"), json!("m3")]);
    let mut bare = support::subscribe(&env, "channels=rw&rewind=1&enveloped=false").await;
    let got = support::collect(&mut bare, 1, Duration::from_secs(2)).await;
    assert_eq!(got[0].data, "m3");
}

#[tokio::test]
async fn several_channels_in_one_stream_and_heartbeat_events_when_asked() {
    let (_sb, env) = support::sandbox().await;
    let resp = http()
        .get(format!("{}/sse?v=1.2&channels=a,b&heartbeats=true&key={}", env.base, env.key))
        .send()
        .await
        .unwrap();
    publish(&env, "a", json!({"data": 1})).await;
    publish(&env, "b", json!({"data": 2})).await;
    let text = raw(resp, Duration::from_millis(500)).await;
    assert!(text.contains("\"channel\":\"a\"") && text.contains("\"channel\":\"b\""), "{text}");
    assert!(text.contains("event: heartbeat\n"), "{text}");
    assert!(!text.contains(":keepalive"));
}

#[tokio::test]
async fn failures_before_the_stream_are_ordinary_error_answers() {
    let (_sb, env) = support::sandbox().await;
    let no_channels = http().get(format!("{}/sse?v=1.2&key={}", env.base, env.key)).send().await.unwrap();
    assert_eq!(no_channels.status(), 400);
    assert_eq!(no_channels.json::<Value>().await.unwrap()["error"]["code"], 40000);
    let no_version = http().get(format!("{}/sse?channels=a&key={}", env.base, env.key)).send().await.unwrap();
    assert_eq!(no_version.status(), 400);
    let bad_key =
        http().get(format!("{}/sse?v=1.2&channels=a&key={}:nope", env.base, env.key_name())).send().await.unwrap();
    assert_eq!(bad_key.status(), 401);
    assert_eq!(bad_key.json::<Value>().await.unwrap()["error"]["code"], 40101);
}

#[tokio::test]
async fn a_token_that_expires_mid_stream_ends_it_with_an_error_event() {
    let (_sb, env) = support::sandbox().await;
    let token = support::json_of(
        http()
            .post(format!("{}/keys/{}/requestToken", env.base, env.key_name()))
            .basic_auth(env.key_name(), Some(env.key_secret()))
            .json(&json!({"ttl": 300})),
    )
    .await;
    let resp = http()
        .get(format!("{}/sse?v=1.2&channels=t&accessToken={}", env.base, token["token"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = raw(resp, Duration::from_secs(3)).await;
    let err = text.split("\n\n").find(|f| f.starts_with("event: error")).expect("an error event");
    let data: Value = serde_json::from_str(err.lines().nth(1).unwrap().strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(data["code"], 40142);
    assert_eq!(data["statusCode"], 401);
}

#[tokio::test]
async fn event_stream_without_sse_accept_sends_json_lines() {
    let (_sb, env) = support::sandbox().await;
    let resp =
        http().get(format!("{}/event-stream?v=1.2&channels=lines&key={}", env.base, env.key)).send().await.unwrap();
    assert_eq!(resp.headers()["content-type"], "application/json");
    publish(&env, "lines", json!({"name": "n", "data": {"x": 1}})).await;
    let text = raw(resp, Duration::from_millis(400)).await;
    let line: Value = serde_json::from_str(text.lines().find(|l| !l.trim().is_empty()).unwrap()).unwrap();
    assert_eq!(line["event"], "message");
    assert_eq!(line["data"]["name"], "n");
    assert!(line["id"].is_string());
}
