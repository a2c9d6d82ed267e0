//! The sandbox's Chatwoot: the public Client API of an API-channel inbox and the Application
//! API calls broker-ops uses, with the shapes of docs/sandbox.md
//! ("Chatwoot": integer `message_type`, epoch-second `created_at`, display ids).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State as AxState};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::store::Store;
use super::{State, lock};
use crate::chatwoot::MESSAGE_INCOMING;

const PUBLIC: &str = "/public/api/v1/inboxes/{inbox}";

pub fn routes() -> Router<Arc<State>> {
    Router::new()
        .route("/api", get(api_info))
        .route("/api/v1/profile", get(profile))
        .route(&format!("{PUBLIC}/contacts"), post(create_contact))
        .route(&format!("{PUBLIC}/contacts/{{contact}}"), get(get_contact))
        .route(
            &format!("{PUBLIC}/contacts/{{contact}}/conversations"),
            get(list_conversations).post(create_conversation),
        )
        .route(&format!("{PUBLIC}/contacts/{{contact}}/conversations/{{conv}}"), get(get_conversation))
        .route(&format!("{PUBLIC}/contacts/{{contact}}/conversations/{{conv}}/toggle_status"), post(resolve))
        .route(
            &format!("{PUBLIC}/contacts/{{contact}}/conversations/{{conv}}/messages"),
            get(list_messages).post(post_message),
        )
        .route("/api/v1/accounts/{account}/conversations/{conv}/messages", get(app_messages))
        .route("/api/v1/accounts/{account}/conversations/{conv}/toggle_status", post(app_toggle_status))
        .route("/api/v1/accounts/{account}/conversations/{conv}/labels", get(app_labels).post(app_add_labels))
}

/// Chatwoot's error answer (`RequestExceptionHandler`): `{"error": message}`.
pub fn error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "error": message }))).into_response()
}

/// A request turned away, rendered by [`error`].
pub struct Reject(StatusCode, String);

impl IntoResponse for Reject {
    fn into_response(self) -> Response {
        error(self.0, &self.1)
    }
}

type Answer = Result<Response, Reject>;

fn not_found() -> Reject {
    Reject(StatusCode::NOT_FOUND, "Resource could not be found".into())
}

fn parse_body(body: &Bytes) -> Result<Value, Reject> {
    if body.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(body).map_err(|e| Reject(StatusCode::BAD_REQUEST, format!("Invalid JSON body: {e}")))
}

/// Resolves the inbox and the contact; both are path credentials of the public API.
fn check_contact(state: &State, store: &Store, inbox: &str, contact: &str) -> Result<(), Reject> {
    if inbox != state.inbox || !store.contacts.contains_key(contact) {
        return Err(not_found());
    }
    Ok(())
}

fn check_conversation(state: &State, store: &Store, inbox: &str, contact: &str, conv: u64) -> Result<(), Reject> {
    check_contact(state, store, inbox, contact)?;
    match store.conversations.get(&conv) {
        Some(c) if c.contact_source_id == contact => Ok(()),
        _ => Err(not_found()),
    }
}

async fn api_info() -> Response {
    axum::Json(json!({
        "version": "4.3.0",
        "timestamp": chrono::Utc::now().format("%Y-%m-%d %H:%M:%S").to_string(),
        "queue_services": "ok",
        "data_services": "ok"
    }))
    .into_response()
}

fn check_token(state: &State, headers: &HeaderMap) -> Result<(), Reject> {
    match headers.get("api_access_token").and_then(|v| v.to_str().ok()) {
        Some(t) if t == state.api_token => Ok(()),
        _ => Err(Reject(StatusCode::UNAUTHORIZED, "Invalid Access Token".into())),
    }
}

async fn profile(AxState(state): AxState<Arc<State>>, headers: HeaderMap) -> Answer {
    check_token(&state, &headers)?;
    Ok(axum::Json(json!({
        "id": 1, "name": "broker-ops sandbox bot", "type": "agent_bot",
        "account_id": state.opts.account_id, "accounts": [{"id": state.opts.account_id, "name": "Sandbox"}]
    }))
    .into_response())
}

async fn create_contact(AxState(state): AxState<Arc<State>>, Path(inbox): Path<String>, body: Bytes) -> Answer {
    if inbox != state.inbox {
        return Err(not_found());
    }
    let body = parse_body(&body)?;
    let c = lock(&state.chatwoot).add_contact(&body);
    Ok(axum::Json(json!({
        "source_id": c.source_id, "pubsub_token": c.pubsub_token, "id": c.id,
        "name": c.name, "email": c.email, "phone_number": c.phone_number
    }))
    .into_response())
}

async fn get_contact(AxState(state): AxState<Arc<State>>, Path((inbox, contact)): Path<(String, String)>) -> Answer {
    let store = lock(&state.chatwoot);
    check_contact(&state, &store, &inbox, &contact)?;
    let c = &store.contacts[&contact];
    Ok(axum::Json(json!({
        "source_id": c.source_id, "pubsub_token": c.pubsub_token, "id": c.id,
        "name": c.name, "email": c.email, "phone_number": c.phone_number
    }))
    .into_response())
}

async fn create_conversation(
    AxState(state): AxState<Arc<State>>,
    Path((inbox, contact)): Path<(String, String)>,
) -> Answer {
    let mut store = lock(&state.chatwoot);
    check_contact(&state, &store, &inbox, &contact)?;
    let id = store.add_conversation(&contact);
    let v = store.conversation_json(&store.conversations[&id]);
    Ok(axum::Json(v).into_response())
}

async fn list_conversations(
    AxState(state): AxState<Arc<State>>,
    Path((inbox, contact)): Path<(String, String)>,
) -> Answer {
    let store = lock(&state.chatwoot);
    check_contact(&state, &store, &inbox, &contact)?;
    let mut list: Vec<_> = store.conversations.values().filter(|c| c.contact_source_id == contact).collect();
    list.sort_by_key(|c| c.display_id);
    Ok(axum::Json(list.into_iter().map(|c| store.conversation_json(c)).collect::<Vec<_>>()).into_response())
}

async fn get_conversation(
    AxState(state): AxState<Arc<State>>,
    Path((inbox, contact, conv)): Path<(String, String, u64)>,
) -> Answer {
    let store = lock(&state.chatwoot);
    check_conversation(&state, &store, &inbox, &contact, conv)?;
    Ok(axum::Json(store.conversation_json(&store.conversations[&conv])).into_response())
}

async fn resolve(
    AxState(state): AxState<Arc<State>>,
    Path((inbox, contact, conv)): Path<(String, String, u64)>,
) -> Answer {
    let mut store = lock(&state.chatwoot);
    check_conversation(&state, &store, &inbox, &contact, conv)?;
    if let Some(c) = store.conversations.get_mut(&conv) {
        c.status = "resolved".into();
    }
    Ok(axum::Json(store.conversation_json(&store.conversations[&conv])).into_response())
}

/// Latest 20 ascending; with `?before=id`, the 20 before that id.
async fn list_messages(
    AxState(state): AxState<Arc<State>>,
    Path((inbox, contact, conv)): Path<(String, String, u64)>,
    Query(q): Query<HashMap<String, String>>,
) -> Answer {
    let store = lock(&state.chatwoot);
    check_conversation(&state, &store, &inbox, &contact, conv)?;
    let before = q.get("before").and_then(|b| b.parse::<u64>().ok());
    let mut msgs: Vec<_> =
        store.conversations[&conv].messages.iter().filter(|m| before.is_none_or(|b| m.id < b)).collect();
    let skip = msgs.len().saturating_sub(20);
    msgs.drain(..skip);
    Ok(axum::Json(msgs.iter().map(|m| m.public_json()).collect::<Vec<_>>()).into_response())
}

async fn post_message(
    AxState(state): AxState<Arc<State>>,
    Path((inbox, contact, conv)): Path<(String, String, u64)>,
    body: Bytes,
) -> Answer {
    let body = parse_body(&body)?;
    let Some(content) = body.get("content").and_then(Value::as_str).map(str::to_string) else {
        return Err(Reject(StatusCode::UNPROCESSABLE_ENTITY, "content is required".into()));
    };
    let echo_id = body.get("echo_id").and_then(Value::as_str).map(str::to_string);
    let msg = {
        let mut store = lock(&state.chatwoot);
        check_conversation(&state, &store, &inbox, &contact, conv)?;
        let sender = store.contacts[&contact].push_event_data();
        store.add_message(conv, &content, MESSAGE_INCOMING, sender, echo_id)
    };
    let Some(msg) = msg else { return Err(not_found()) };
    super::worker::on_customer_message(&state, &msg);
    Ok(axum::Json(msg.public_json()).into_response())
}

fn check_account(state: &State, headers: &HeaderMap, account: u64) -> Result<(), Reject> {
    check_token(state, headers)?;
    if account != state.opts.account_id {
        return Err(Reject(StatusCode::UNAUTHORIZED, "You are not authorized to access this account".into()));
    }
    Ok(())
}

/// Application API listing: `?after=id` ascending (100), `?before=id` latest 20 below it, both
/// together `after <= id < before` (1000). Private notes and activities would be included.
async fn app_messages(
    AxState(state): AxState<Arc<State>>,
    headers: HeaderMap,
    Path((account, conv)): Path<(u64, u64)>,
    Query(q): Query<HashMap<String, String>>,
) -> Answer {
    check_account(&state, &headers, account)?;
    let store = lock(&state.chatwoot);
    let Some(c) = store.conversations.get(&conv) else { return Err(not_found()) };
    let num = |k: &str| q.get(k).and_then(|v| v.parse::<u64>().ok());
    let (after, before) = (num("after"), num("before"));
    let all = c.messages.iter().filter(|m| after.is_none_or(|a| m.id >= a) && before.is_none_or(|b| m.id < b));
    let mut msgs: Vec<_> = all.collect();
    match (after, before) {
        (Some(_), Some(_)) => msgs.truncate(1000),
        (Some(_), None) => msgs.truncate(100),
        _ => {
            let skip = msgs.len().saturating_sub(20);
            msgs.drain(..skip);
        }
    }
    let contact = store.contacts.get(&c.contact_source_id).map(|ct| ct.push_event_data());
    Ok(axum::Json(json!({
        "meta": {"labels": c.labels, "additional_attributes": {}, "contact": contact,
                 "agent_last_seen_at": 0, "assignee_last_seen_at": 0},
        "payload": msgs.iter().map(|m| m.app_json()).collect::<Vec<_>>(),
    }))
    .into_response())
}

async fn app_toggle_status(
    AxState(state): AxState<Arc<State>>,
    headers: HeaderMap,
    Path((account, conv)): Path<(u64, u64)>,
    body: Bytes,
) -> Answer {
    check_account(&state, &headers, account)?;
    let body = parse_body(&body)?;
    let status = match body.get("status").and_then(Value::as_str) {
        Some(s @ ("open" | "resolved" | "pending")) => s.to_string(),
        Some(other) => return Err(Reject(StatusCode::UNPROCESSABLE_ENTITY, format!("invalid status {other:?}"))),
        // Without a status, Chatwoot toggles between open and resolved.
        None => String::new(),
    };
    let mut store = lock(&state.chatwoot);
    let Some(c) = store.conversations.get_mut(&conv) else { return Err(not_found()) };
    c.status =
        if status.is_empty() { if c.status == "open" { "resolved".into() } else { "open".into() } } else { status };
    Ok(axum::Json(
        json!({"meta": {}, "payload": {"success": true, "current_status": c.status, "conversation_id": conv}}),
    )
    .into_response())
}

async fn app_labels(
    AxState(state): AxState<Arc<State>>,
    headers: HeaderMap,
    Path((account, conv)): Path<(u64, u64)>,
) -> Answer {
    check_account(&state, &headers, account)?;
    let store = lock(&state.chatwoot);
    let Some(c) = store.conversations.get(&conv) else { return Err(not_found()) };
    Ok(axum::Json(json!({"payload": c.labels})).into_response())
}

async fn app_add_labels(
    AxState(state): AxState<Arc<State>>,
    headers: HeaderMap,
    Path((account, conv)): Path<(u64, u64)>,
    body: Bytes,
) -> Answer {
    check_account(&state, &headers, account)?;
    let body = parse_body(&body)?;
    let Some(labels) = body.get("labels").and_then(Value::as_array) else {
        return Err(Reject(StatusCode::UNPROCESSABLE_ENTITY, "labels is required".into()));
    };
    let mut store = lock(&state.chatwoot);
    let Some(c) = store.conversations.get_mut(&conv) else { return Err(not_found()) };
    // Chatwoot replaces the conversation's label list with the one given.
    c.labels = labels.iter().filter_map(|l| l.as_str().map(str::to_string)).collect();
    Ok(axum::Json(json!({"payload": c.labels})).into_response())
}
