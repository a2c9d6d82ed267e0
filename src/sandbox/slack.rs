//! The sandbox's stand-in for a Slack incoming webhook, so that a drill sees its notices without
//! a Slack workspace: `POST /_sandbox/slack/webhook` answers as Slack's incoming webhooks do
//! (`200 ok` for a JSON payload with `text` or `blocks`; `400 invalid_payload` for a body that is
//! not JSON, `400 no_text` for one with neither), and `GET /_sandbox/slack` lists what was posted,
//! oldest first.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State as AxState;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::{State, lock};

/// The payloads kept (the oldest are dropped past this).
const KEPT: usize = 1000;

pub const PATH: &str = "/_sandbox/slack/webhook";

pub(super) async fn post(AxState(state): AxState<Arc<State>>, body: Bytes) -> Response {
    let Ok(payload) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "invalid_payload").into_response();
    };
    if payload.get("text").is_none() && payload.get("blocks").is_none() {
        return (StatusCode::BAD_REQUEST, "no_text").into_response();
    }
    let mut seen = lock(&state.slack);
    if seen.len() == KEPT {
        seen.remove(0);
    }
    seen.push(payload);
    (StatusCode::OK, "ok").into_response()
}

pub(super) async fn list(AxState(state): AxState<Arc<State>>) -> Response {
    axum::Json(lock(&state.slack).clone()).into_response()
}
