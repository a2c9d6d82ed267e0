//! The sandbox's Ably REST surface against docs/sandbox.md: auth and error envelope,
//! publish rules, history pagination, stats shapes, channel enumeration and occupancy.

use broker_ops::ably::link;
use serde_json::{Value, json};

use crate::support::{self, Env, http};

async fn get(env: &Env, path: &str, version: &str) -> reqwest::Response {
    http()
        .get(format!("{}{path}", env.base))
        .basic_auth(env.key_name(), Some(env.key_secret()))
        .header("X-Ably-Version", version)
        .send()
        .await
        .unwrap()
}

async fn post(env: &Env, path: &str, body: &Value) -> reqwest::Response {
    http()
        .post(format!("{}{path}", env.base))
        .basic_auth(env.key_name(), Some(env.key_secret()))
        .header("X-Ably-Version", "3")
        .json(body)
        .send()
        .await
        .unwrap()
}

/// Checks Ably's error answer: status, envelope with href, and the two error headers.
async fn assert_ably_error(resp: reqwest::Response, status: u16, code: u32) -> Value {
    assert_eq!(resp.status(), status);
    assert_eq!(resp.headers()["x-ably-errorcode"], code.to_string().as_str());
    assert!(resp.headers().contains_key("x-ably-errormessage"));
    let body: Value = resp.json().await.unwrap();
    let e = &body["error"];
    assert_eq!(e["code"], code);
    assert_eq!(e["statusCode"], status);
    assert_eq!(e["href"], format!("https://help.ably.io/error/{code}"));
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()));
    body
}

#[tokio::test]
async fn time_needs_no_auth_and_is_an_array_of_one_millisecond_timestamp() {
    let (_sb, env) = support::sandbox().await;
    let resp = http().get(format!("{}/time", env.base)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let body: Vec<i64> = resp.json().await.unwrap();
    assert_eq!(body.len(), 1);
    assert!((body[0] - chrono::Utc::now().timestamp_millis()).abs() < 5_000);
}

#[tokio::test]
async fn wrong_key_missing_credentials_and_unknown_tokens_are_refused_with_ably_codes() {
    let (_sb, env) = support::sandbox().await;
    let wrong = http()
        .get(format!("{}/stats", env.base))
        .basic_auth(env.key_name(), Some("not-the-secret"))
        .send()
        .await
        .unwrap();
    assert_ably_error(wrong, 401, 40101).await;
    let other_app = http().get(format!("{}/stats", env.base)).basic_auth("otherapp.k", Some("x")).send().await.unwrap();
    assert_ably_error(other_app, 401, 40101).await;
    let none = http().get(format!("{}/stats", env.base)).send().await.unwrap();
    assert_ably_error(none, 401, 40101).await;
    let bogus = http().get(format!("{}/stats", env.base)).bearer_auth("no-such-token").send().await.unwrap();
    assert_ably_error(bogus, 401, 40143).await;
}

#[tokio::test]
async fn tokens_expire_with_40142_and_capabilities_are_enforced_with_40160() {
    let (_sb, env) = support::sandbox().await;
    let path = format!("/keys/{}/requestToken", env.key_name());
    let narrow = post(&env, &path, &json!({"capability": "{\"conversation:*\":[\"subscribe\"]}"})).await;
    assert_eq!(narrow.status(), 200);
    let details: Value = narrow.json().await.unwrap();
    assert_eq!(details["keyName"], env.key_name());
    assert!(details["expires"].as_i64().unwrap() > details["issued"].as_i64().unwrap());
    let token = details["token"].as_str().unwrap().to_string();
    let publish = http()
        .post(format!("{}/channels/conversation:1/messages", env.base))
        .bearer_auth(&token)
        .json(&json!({"name": "x", "data": "y"}))
        .send()
        .await
        .unwrap();
    assert_ably_error(publish, 401, 40160).await;
    let list = http().get(format!("{}/channels", env.base)).bearer_auth(&token).send().await.unwrap();
    assert_ably_error(list, 401, 40160).await;

    let short: Value = post(&env, &path, &json!({"ttl": 100})).await.json().await.unwrap();
    let short = short["token"].as_str().unwrap().to_string();
    let ok = http().get(format!("{}/stats", env.base)).bearer_auth(&short).send().await.unwrap();
    assert_eq!(ok.status(), 200, "a fresh token works");
    let stats = format!("{}/stats", env.base);
    support::until("the 100 ms token expires", || async {
        http().get(&stats).bearer_auth(&short).send().await.unwrap().status() == 401
    })
    .await;
    let expired = http().get(&stats).bearer_auth(&short).send().await.unwrap();
    assert_ably_error(expired, 401, 40142).await;
}

#[tokio::test]
async fn publish_answers_201_and_deduplicates_client_ids_for_two_minutes() {
    let (_sb, env) = support::sandbox().await;
    let one = post(&env, "/channels/ops/messages", &json!({"id": "abc", "name": "n", "data": {"k": 1}})).await;
    assert_eq!(one.status(), 201);
    let body: Value = one.json().await.unwrap();
    assert_eq!(body["channel"], "ops");
    assert_eq!(body["messageId"], "abc");
    assert_eq!(body["serials"].as_array().unwrap().len(), 1);
    let again = post(&env, "/channels/ops/messages", &json!({"id": "abc", "name": "n", "data": {"k": 1}})).await;
    assert_eq!(again.status(), 201, "a duplicate is accepted as success");
    let many = post(
        &env,
        "/channels/ops/messages",
        &json!([{"id": "b:0", "name": "n", "data": "x"}, {"id": "b:1", "name": "n", "data": "y"}]),
    )
    .await;
    assert_eq!(many.status(), 201);
    let history: Vec<Value> = get(&env, "/channels/ops/messages?direction=forwards", "3").await.json().await.unwrap();
    let ids: Vec<&str> = history.iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["abc", "b:0", "b:1"], "the duplicate was not delivered twice");
    assert_eq!(history[0]["encoding"], "json", "object data travels as JSON text");
    assert_eq!(history[0]["data"], "{\"k\":1}");
    assert!(history[0]["timestamp"].as_i64().unwrap() > 0);
}

#[tokio::test]
async fn publish_rejects_bad_ids_oversize_messages_and_rates_over_50_per_second() {
    let (_sb, env) = support::sandbox().await;
    let bad =
        post(&env, "/channels/ops/messages", &json!([{"id": "x:1", "data": "a"}, {"id": "x:0", "data": "b"}])).await;
    assert_ably_error(bad, 400, 40031).await;
    let big = "x".repeat(65_537);
    let oversize = post(&env, "/channels/ops/messages", &json!({"name": "n", "data": big})).await;
    assert_ably_error(oversize, 413, 40009).await;
    let text = http()
        .post(format!("{}/channels/ops/messages", env.base))
        .basic_auth(env.key_name(), Some(env.key_secret()))
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_ably_error(text, 400, 40001).await;
    let fifty: Vec<Value> = (0..50).map(|i| json!({"name": "n", "data": i})).collect();
    assert_eq!(post(&env, "/channels/busy/messages", &Value::Array(fifty)).await.status(), 201);
    let over = post(&env, "/channels/busy/messages", &json!({"name": "n", "data": "51st"})).await;
    assert_ably_error(over, 429, 42913).await;
    assert_eq!(
        post(&env, "/channels/quiet/messages", &json!({"data": 1})).await.status(),
        201,
        "the limit is per channel"
    );
    // Once the sliding second has passed, the channel accepts again.
    support::until("the channel accepts again", || async {
        post(&env, "/channels/busy/messages", &json!({"data": "later"})).await.status() == 201
    })
    .await;
}

#[tokio::test]
async fn history_pages_are_walked_to_the_end_through_relative_link_headers() {
    let (_sb, env) = support::sandbox().await;
    for i in 0..7 {
        assert_eq!(post(&env, "/channels/hist/messages", &json!({"name": "n", "data": i})).await.status(), 201);
    }
    let mut url = reqwest::Url::parse(&format!("{}/channels/hist/messages?limit=3", env.base)).unwrap();
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let resp = http().get(url.clone()).basic_auth(env.key_name(), Some(env.key_secret())).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let links: Vec<String> =
            resp.headers().get_all("link").iter().map(|v| v.to_str().unwrap().to_string()).collect();
        assert!(links.iter().any(|l| l.starts_with("<./messages?") && l.ends_with("rel=\"first\"")), "{links:?}");
        assert!(links.iter().any(|l| l.ends_with("rel=\"current\"")));
        let page: Vec<Value> = resp.json().await.unwrap();
        seen.extend(page.iter().map(|m| m["data"].as_i64().unwrap()));
        pages += 1;
        match link::find(links.iter().map(String::as_str), "next") {
            Some(next) => {
                assert!(next.starts_with("./messages?"), "relative link: {next}");
                url = link::resolve(&url, &next).unwrap();
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, [6, 5, 4, 3, 2, 1, 0], "backwards by default, newest first, each once");
    let over = get(&env, "/channels/hist/messages?limit=1001", "3").await;
    assert_ably_error(over, 400, 40003).await;
    let unknown: Vec<Value> = get(&env, "/channels/nothing-here/messages", "3").await.json().await.unwrap();
    assert!(unknown.is_empty());
}

#[tokio::test]
async fn stats_follow_the_protocol_version_entries_or_legacy_nesting() {
    let (_sb, env) = support::sandbox().await;
    post(&env, "/channels/s/messages", &json!([{"data": 1}, {"data": 2}])).await;
    let current: Vec<Value> = get(&env, "/stats?unit=minute", "3").await.json().await.unwrap();
    let first = &current[0];
    assert_eq!(first["schema"], "https://schemas.ably.com/json/app-stats-0.0.5.json");
    assert_eq!(first["unit"], "minute");
    assert!(first["intervalId"].as_str().unwrap().len() == "2026-11-26:13:14".len());
    assert_eq!(first["entries"]["messages.inbound.rest.messages.count"], 2);
    assert!(first["entries"]["apiRequests.all.succeeded"].as_u64().unwrap() >= 1);
    assert!(first["entries"].get("messages.all.all.failed").is_none(), "zero metrics are omitted");
    let legacy: Vec<Value> = get(&env, "/stats?unit=hour", "1.2").await.json().await.unwrap();
    assert_eq!(legacy[0]["inbound"]["rest"]["messages"]["count"], 2);
    assert_eq!(legacy[0]["intervalId"].as_str().unwrap().len(), "2026-11-26:13".len());
    assert!(legacy[0].get("entries").is_none());
    assert_ably_error(get(&env, "/stats?unit=fortnight", "3").await, 400, 40003).await;
}

#[tokio::test]
async fn channels_are_enumerated_by_prefix_in_pages_and_report_occupancy() {
    let (_sb, env) = support::sandbox().await;
    for name in ["conversation:1", "conversation:2", "conversation:3", "other"] {
        post(&env, &format!("/channels/{name}/messages"), &json!({"data": 1})).await;
    }
    let mut names = Vec::new();
    let mut url = reqwest::Url::parse(&format!("{}/channels?prefix=conversation:&limit=2", env.base)).unwrap();
    loop {
        let resp = http()
            .get(url.clone())
            .basic_auth(env.key_name(), Some(env.key_secret()))
            .header("X-Ably-Version", "3")
            .send()
            .await
            .unwrap();
        let links: Vec<String> =
            resp.headers().get_all("link").iter().map(|v| v.to_str().unwrap().to_string()).collect();
        let page: Vec<String> = resp.json().await.unwrap();
        names.extend(page);
        match link::find(links.iter().map(String::as_str), "next") {
            Some(next) => url = link::resolve(&url, &next).unwrap(),
            None => break,
        }
    }
    assert_eq!(names, ["conversation:1", "conversation:2", "conversation:3"]);
    let by_value: Vec<Value> = get(&env, "/channels?prefix=other", "2").await.json().await.unwrap();
    assert_eq!(by_value[0]["channelId"], "other", "protocol 2 defaults to by=value");

    let sub = support::subscribe(&env, "channels=conversation:2").await;
    let details: Value = get(&env, "/channels/conversation:2", "3").await.json().await.unwrap();
    assert_eq!(details["channelId"], "conversation:2");
    assert_eq!(details["status"]["isActive"], true);
    let m = &details["status"]["occupancy"]["metrics"];
    assert_eq!(m["subscribers"], 1);
    assert_eq!(m["connections"], 1);
    // The SSE subscriber gets the channel's presence events too; nobody is present.
    assert_eq!(m["presenceSubscribers"], 1);
    for k in ["publishers", "presenceConnections", "presenceMembers", "objectPublishers", "objectSubscribers"] {
        assert_eq!(m[k], 0, "{k}");
    }
    drop(sub);
}

#[tokio::test]
async fn batch_publish_answers_batch_results_or_the_legacy_40020_envelope() {
    let (_sb, env) = support::sandbox().await;
    let fifty: Vec<Value> = (0..50).map(|i| json!({"data": i})).collect();
    post(&env, "/channels/full/messages", &Value::Array(fifty)).await;
    let spec = json!([{"channels": ["a", "full"], "messages": {"name": "n", "data": "x"}}]);
    let resp = post(&env, "/messages", &spec).await;
    assert_eq!(resp.status(), 201);
    let results: Vec<Value> = resp.json().await.unwrap();
    assert_eq!(results[0]["successCount"], 1);
    assert_eq!(results[0]["failureCount"], 1);
    assert_eq!(results[0]["results"][0]["channel"], "a");
    assert!(results[0]["results"][0]["messageId"].is_string());
    assert_eq!(results[0]["results"][1]["error"]["code"], 42913);

    let legacy = http()
        .post(format!("{}/messages", env.base))
        .basic_auth(env.key_name(), Some(env.key_secret()))
        .header("X-Ably-Version", "1.2")
        .json(&json!({"channels": ["b", "full"], "messages": [{"data": "y"}]}))
        .send()
        .await
        .unwrap();
    let body = assert_ably_error(legacy, 400, 40020).await;
    assert_eq!(body["batchResponse"][0]["channel"], "b");
    assert_eq!(body["batchResponse"][1]["error"]["code"], 42913);
}

#[tokio::test]
async fn ably_status_document_says_up() {
    let (_sb, env) = support::sandbox().await;
    let v = support::get_json(format!("{}/status/up.json", env.base)).await;
    assert_eq!(v, json!({"status": true}));
}
