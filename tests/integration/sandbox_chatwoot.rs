//! The sandbox's Chatwoot against docs/sandbox.md section 1 and the
//! specs in Chatwoot's published Swagger specs: exact shapes, integer types, paging, errors.

use serde_json::{Value, json};

use crate::support::{self, http};

#[tokio::test]
async fn contact_conversation_and_message_have_chatwoots_shapes_and_types() {
    let (_sb, env) = support::sandbox().await;
    let base = format!("{}/public/api/v1/inboxes/{}", env.base, env.inbox);
    let contact: Value = support::post_json(
        format!("{base}/contacts"),
        &json!({"identifier": "smoke-1", "name": "Ann", "email": "ann@example.com"}),
    )
    .await;
    let keys: Vec<&str> = contact.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["email", "id", "name", "phone_number", "pubsub_token", "source_id"]);
    assert!(contact["id"].is_u64());
    let source = contact["source_id"].as_str().unwrap();
    assert_eq!(uuid::Uuid::parse_str(source).unwrap().get_version_num(), 4);

    let conv: Value = support::post_json(format!("{base}/contacts/{source}/conversations"), &json!({})).await;
    assert!(conv["id"].is_u64());
    assert_eq!(conv["inbox_id"], 1);
    assert_eq!(conv["status"], "open");
    assert!(conv["contact_last_seen_at"].is_i64());
    assert_eq!(conv["messages"], json!([]));
    assert_eq!(conv["contact"]["identifier"], "smoke-1");
    let id = conv["id"].as_u64().unwrap();

    let before = chrono::Utc::now().timestamp();
    let msg = support::say(&env, source, id, "Can I refinance?").await;
    assert!(msg["id"].is_u64());
    assert_eq!(msg["message_type"], 0, "integer message_type, incoming");
    assert_eq!(msg["content_type"], "text");
    assert!(msg["created_at"].as_i64().unwrap() >= before, "epoch seconds");
    assert!(msg["created_at"].as_i64().unwrap() < 10_000_000_000, "seconds, not milliseconds");
    assert_eq!(msg["conversation_id"], id);
    assert_eq!(msg["sender"]["type"], "contact");
    assert!(msg.get("attachments").is_none());
}

#[tokio::test]
async fn listing_gives_the_latest_20_ascending_and_pages_back_with_before() {
    let (_sb, env) = support::sandbox().await;
    let (contact, conv) = support::new_chat(&env).await;
    for i in 0..25 {
        support::say(&env, &contact, conv, &format!("m{i}")).await;
    }
    let url =
        format!("{}/public/api/v1/inboxes/{}/contacts/{contact}/conversations/{conv}/messages", env.base, env.inbox);
    let latest = support::get_json(&url).await.as_array().cloned().unwrap();
    assert_eq!(latest.len(), 20);
    let ids: Vec<u64> = latest.iter().map(|m| m["id"].as_u64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ascending");
    let oldest_shown = ids[0];
    let older = support::get_json(format!("{url}?before={oldest_shown}")).await.as_array().cloned().unwrap();
    assert!(!older.is_empty());
    assert!(older.iter().all(|m| m["id"].as_u64().unwrap() < oldest_shown));
}

#[tokio::test]
async fn unknown_inbox_contact_or_conversation_is_404_with_chatwoots_error_body() {
    let (_sb, env) = support::sandbox().await;
    let (contact, conv) = support::new_chat(&env).await;
    for url in [
        format!("{}/public/api/v1/inboxes/nope/contacts", env.base),
        format!("{}/public/api/v1/inboxes/{}/contacts/nope/conversations", env.base, env.inbox),
        format!(
            "{}/public/api/v1/inboxes/{}/contacts/{contact}/conversations/{}/messages",
            env.base,
            env.inbox,
            conv + 99
        ),
    ] {
        let resp = http().post(&url).json(&json!({"content": "x"})).send().await.unwrap();
        assert_eq!(resp.status(), 404, "{url}");
        assert_eq!(resp.json::<Value>().await.unwrap(), json!({"error": "Resource could not be found"}));
    }
    let (other_contact, _) = support::new_chat(&env).await;
    let resp = http()
        .get(format!("{}/public/api/v1/inboxes/{}/contacts/{other_contact}/conversations/{conv}", env.base, env.inbox))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404, "a contact cannot read another contact's conversation");
}

#[tokio::test]
async fn application_api_lists_after_an_id_resolves_and_labels_behind_the_token() {
    let (_sb, env) = support::sandbox().await;
    let (contact, conv) = support::new_chat(&env).await;
    let first = support::say(&env, &contact, conv, "one").await["id"].as_u64().unwrap();
    support::say(&env, &contact, conv, "two").await;
    let app = format!("{}/api/v1/accounts/1/conversations/{conv}", env.base);
    let denied = http().get(format!("{app}/messages")).header("api_access_token", "wrong").send().await.unwrap();
    assert_eq!(denied.status(), 401);
    let after: Value = support::json_of(
        http().get(format!("{app}/messages?after={}", first + 1)).header("api_access_token", &env.token),
    )
    .await;
    let payload = after["payload"].as_array().unwrap();
    assert!(payload.iter().all(|m| m["id"].as_u64().unwrap() > first));
    assert!(payload.iter().any(|m| m["content"] == "two"));
    assert_eq!(payload[0]["private"], false);
    assert!(after["meta"]["labels"].is_array());

    let toggled: Value = support::json_of(
        http()
            .post(format!("{app}/toggle_status"))
            .header("api_access_token", &env.token)
            .json(&json!({"status": "resolved"})),
    )
    .await;
    assert_eq!(toggled["payload"], json!({"success": true, "current_status": "resolved", "conversation_id": conv}));
    let labels: Value = support::json_of(
        http()
            .post(format!("{app}/labels"))
            .header("api_access_token", &env.token)
            .json(&json!({"labels": ["smoke-test"]})),
    )
    .await;
    assert_eq!(labels, json!({"payload": ["smoke-test"]}));
    let conv_now: Value = support::get_json(format!(
        "{}/public/api/v1/inboxes/{}/contacts/{contact}/conversations/{conv}",
        env.base, env.inbox
    ))
    .await;
    assert_eq!(conv_now["status"], "resolved");
}

#[tokio::test]
async fn api_root_reports_version_and_health() {
    let (_sb, env) = support::sandbox().await;
    let v: Value = support::get_json(format!("{}/api", env.base)).await;
    assert_eq!(v["queue_services"], "ok");
    assert_eq!(v["data_services"], "ok");
    assert!(v["version"].is_string());
}
