//! The sandbox's Ably authentication: Basic (`appId.keyId:secret`) and Bearer tokens issued by
//! `POST /keys/{keyName}/requestToken`, capabilities, protocol versions, and Ably's error codes for
//! each refusal (docs/sandbox.md, "Ably REST").

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State as AxState};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{State, lock};
use crate::ably::ErrorInfo;

/// Builds Ably's error answer: the envelope plus `X-Ably-ErrorCode`/`X-Ably-ErrorMessage`.
pub fn error_response(e: &ErrorInfo) -> Response {
    let status = StatusCode::from_u16(e.status_code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (status, axum::Json(json!({ "error": e }))).into_response();
    let h = resp.headers_mut();
    h.insert("x-ably-errorcode", HeaderValue::from(e.code));
    if let Ok(v) = HeaderValue::from_str(&e.message.replace(['\r', '\n'], " ")) {
        h.insert("x-ably-errormessage", v);
    }
    resp
}

/// The protocol major version of a request (`X-Ably-Version` or `?v=`); 1 when absent.
pub fn version(headers: &HeaderMap, query: &HashMap<String, String>) -> u32 {
    let text = headers
        .get("x-ably-version")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| query.get("v").cloned())
        .unwrap_or_else(|| "1".into());
    text.split('.').next().and_then(|m| m.trim().parse().ok()).unwrap_or(1)
}

// ---- authentication -------------------------------------------------------------------

/// A capability: channel pattern to operations (`{"conversation:*":["subscribe"]}`).
pub type Capability = HashMap<String, Vec<String>>;

#[derive(Debug, Clone)]
pub struct Grant {
    pub expires_ms: i64,
    pub capability: Capability,
}

pub type Tokens = HashMap<String, Grant>;

/// Who a request is.
#[derive(Debug, Clone)]
pub enum Cred {
    Key,
    Token(Grant),
}

impl Cred {
    pub fn allows(&self, channel: &str, op: &str) -> bool {
        match self {
            Cred::Key => true,
            Cred::Token(g) => g.capability.iter().any(|(pattern, ops)| {
                let matches = pattern == "*"
                    || pattern == channel
                    || pattern.strip_suffix('*').is_some_and(|p| channel.starts_with(p));
                matches && ops.iter().any(|o| o == "*" || o == op)
            }),
        }
    }

    pub fn expires_ms(&self) -> Option<i64> {
        match self {
            Cred::Key => None,
            Cred::Token(g) => Some(g.expires_ms),
        }
    }
}

pub fn denied(op: &str, channel: &str) -> ErrorInfo {
    ErrorInfo::new(
        401,
        40160,
        format!("Action not permitted: {op} on channel {channel:?} is not in the token's capability"),
    )
}

/// Checks `Authorization` (Basic or Bearer) or the `key` / `accessToken` query parameters.
pub fn authenticate(
    state: &State,
    headers: &HeaderMap,
    query_key: Option<&str>,
    query_token: Option<&str>,
) -> Result<Cred, ErrorInfo> {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    if let Some(basic) = auth.and_then(|a| a.strip_prefix("Basic ")) {
        let decoded = B64.decode(basic.trim()).ok().and_then(|b| String::from_utf8(b).ok());
        return check_key(state, decoded.as_deref());
    }
    if let Some(key) = query_key {
        return check_key(state, Some(key));
    }
    let token = auth.and_then(|a| a.strip_prefix("Bearer ")).map(str::trim).or(query_token);
    if let Some(token) = token {
        return check_token(state, token);
    }
    Err(ErrorInfo::new(401, 40101, "Unable to authenticate: no credentials (Basic key or Bearer token) in request"))
}

fn check_key(state: &State, presented: Option<&str>) -> Result<Cred, ErrorInfo> {
    match presented {
        Some(k) if k == state.key.full() => Ok(Cred::Key),
        Some(k) if k.split(':').next() == Some(state.key.name.as_str()) => {
            Err(ErrorInfo::new(401, 40101, "Invalid credentials: the key secret does not match"))
        }
        _ => Err(ErrorInfo::new(401, 40101, "Invalid credentials: unknown key")),
    }
}

fn check_token(state: &State, token: &str) -> Result<Cred, ErrorInfo> {
    let tokens = lock(&state.tokens);
    // The token string may be sent as is or base64-encoded (RSA3b).
    let decoded = B64.decode(token).ok().and_then(|b| String::from_utf8(b).ok());
    let grant = tokens.get(token).or_else(|| decoded.as_deref().and_then(|d| tokens.get(d)));
    match grant {
        None => Err(ErrorInfo::new(401, 40143, "Token not recognised")),
        Some(g) if g.expires_ms <= State::now_ms() => Err(ErrorInfo::new(401, 40142, "Token expired")),
        Some(g) => Ok(Cred::Token(g.clone())),
    }
}

/// A request turned away with Ably's error envelope.
pub struct Rejected(pub ErrorInfo);

impl IntoResponse for Rejected {
    fn into_response(self) -> Response {
        error_response(&self.0)
    }
}

impl From<ErrorInfo> for Rejected {
    fn from(e: ErrorInfo) -> Self {
        Rejected(e)
    }
}

pub(super) type Answer = Result<Response, Rejected>;

pub(super) fn auth(state: &State, headers: &HeaderMap) -> Result<Cred, ErrorInfo> {
    authenticate(state, headers, None, None)
}

#[derive(Debug, Deserialize)]
struct TokenParams {
    #[serde(default)]
    ttl: Option<i64>,
    #[serde(default)]
    capability: Option<Value>,
    #[serde(default, rename = "clientId")]
    client_id: Option<String>,
}

/// `POST /keys/{keyName}/requestToken`: issues a token string with a TTL and capability.
pub(super) async fn request_token(
    AxState(state): AxState<Arc<State>>,
    Path(key_name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    match authenticate(&state, &headers, None, None) {
        Ok(Cred::Key) => {}
        Ok(Cred::Token(_)) => return Err(ErrorInfo::new(401, 40162, "Token requests require basic auth").into()),
        Err(e) => return Err(e.into()),
    }
    if key_name != state.key.name {
        return Err(ErrorInfo::new(404, 40400, format!("No key found with name {key_name:?}")).into());
    }
    let params: TokenParams = if body.is_empty() {
        TokenParams { ttl: None, capability: None, client_id: None }
    } else {
        match serde_json::from_slice(&body) {
            Ok(p) => p,
            Err(e) => return Err(ErrorInfo::new(400, 40001, format!("Invalid token request body: {e}")).into()),
        }
    };
    let capability: Capability = match params.capability {
        None => HashMap::from([("*".to_string(), vec!["*".to_string()])]),
        Some(Value::String(s)) => match serde_json::from_str(&s) {
            Ok(c) => c,
            Err(e) => return Err(ErrorInfo::new(400, 40003, format!("Invalid capability: {e}")).into()),
        },
        Some(v) => match serde_json::from_value(v) {
            Ok(c) => c,
            Err(e) => return Err(ErrorInfo::new(400, 40003, format!("Invalid capability: {e}")).into()),
        },
    };
    let issued = State::now_ms();
    let expires = issued + params.ttl.unwrap_or(3_600_000);
    let token = format!("sbxtok.{}{}", super::channels::random_id(), super::channels::random_id());
    lock(&state.tokens).insert(token.clone(), Grant { expires_ms: expires, capability: capability.clone() });
    let cap_text = serde_json::to_string(&capability).unwrap_or_default();
    let mut out =
        json!({"token": token, "keyName": key_name, "issued": issued, "expires": expires, "capability": cap_text});
    if let Some(c) = params.client_id {
        out["clientId"] = json!(c);
    }
    Ok(axum::Json(out).into_response())
}
