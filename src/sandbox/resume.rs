//! The web app's resume route as the product plan describes it, for `token resume-test` to be
//! shown against, at the contract's `resume_path`: `GET /api/chat/resume?token=…` (or `POST` with `{"token": …}` or a form)
//! validates the token with the same contract and keys, sets an HttpOnly, Secure, SameSite=Lax
//! session cookie that ends with the token, and redirects to the chat without the token
//! (`Cache-Control: no-store`). Anything else: 401, no cookie. Careless modes (faults
//! `resume_accept_expired`, `resume_accept_none`, `resume_cookie_scriptable`,
//! `resume_token_in_location`, `resume_cacheable`) make it wrong in one way each.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State as AxState};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{Faults, State};
use crate::token::{VerifyOptions, verify};

pub async fn get(AxState(state): AxState<Arc<State>>, Query(q): Query<HashMap<String, String>>) -> Response {
    resume(&state, q.get("token").map(String::as_str))
}

pub async fn post(AxState(state): AxState<Arc<State>>, headers: HeaderMap, body: Bytes) -> Response {
    let form = headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/x-www-form-urlencoded"));
    let token = if form {
        url::form_urlencoded::parse(&body).find(|(k, _)| k == "token").map(|(_, v)| v.into_owned())
    } else {
        serde_json::from_slice::<Value>(&body).ok().and_then(|v| v["token"].as_str().map(str::to_string))
    };
    resume(&state, token.as_deref())
}

fn refused(why: &str) -> Response {
    let mut r =
        (StatusCode::UNAUTHORIZED, axum::Json(json!({"error": "invalid resume link", "why": why}))).into_response();
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn resume(state: &State, token: Option<&str>) -> Response {
    let Some(keys) = &state.opts.resume_keys else {
        return (StatusCode::NOT_IMPLEMENTED, "the resume route needs RESUME_TOKEN_SECRET (or RESUME_TOKEN_KEYS)")
            .into_response();
    };
    let Some(token) = token.filter(|t| !t.is_empty()) else { return refused("no token") };
    let faults = state.faults();
    let now = chrono::Utc::now().timestamp();
    let opts = VerifyOptions { leeway: std::time::Duration::ZERO, now, contract: &state.opts.contracts.token };
    let v = verify(token.as_bytes(), keys, opts);
    let claims = match accepted(&v, token, &faults) {
        Some(c) => c,
        None => return refused(v.reasons.first().map_or("invalid", String::as_str)),
    };
    let exp = claims["exp"].as_i64().unwrap_or(now);
    let conversation = match &claims["conversationId"] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut location = format!(
        "/chat?conversation={}",
        url::form_urlencoded::byte_serialize(conversation.as_bytes()).collect::<String>()
    );
    if faults.resume_token_in_location {
        location.push_str(&format!("&resume={token}"));
    }
    let http_only = if faults.resume_cookie_scriptable { "" } else { "; HttpOnly" };
    let cookie = format!(
        "broker_session={}; Path=/; Max-Age={}; SameSite=Lax; Secure{http_only}",
        uuid::Uuid::new_v4().simple(),
        (exp - now).max(0)
    );
    let cache = if faults.resume_cacheable { "public, max-age=300" } else { "no-store" };
    let mut r = StatusCode::SEE_OTHER.into_response();
    let h = r.headers_mut();
    for (name, value) in
        [(header::LOCATION, location), (header::SET_COOKIE, cookie), (header::CACHE_CONTROL, cache.to_string())]
    {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
    r
}

/// The claims of a token the route lets in: a valid one; in the careless modes, an expired one
/// or an unsigned one too.
fn accepted(v: &crate::token::Verdict, token: &str, faults: &Faults) -> Option<Value> {
    if v.valid {
        return v.claims.clone();
    }
    let only_expired = v.reasons.iter().all(|r| r.starts_with("expired"));
    if faults.resume_accept_expired && only_expired && v.signature_ok {
        return v.claims.clone();
    }
    if faults.resume_accept_none && v.header.as_ref().is_some_and(|h| h["alg"] == "none") {
        let payload = token.split('.').nth(1)?;
        let bytes = crate::token::codec::decode_part("payload", payload).ok()?;
        return serde_json::from_slice(&bytes).ok();
    }
    None
}
