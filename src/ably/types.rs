//! Ably wire types (REST JSON), as Ably documents them (docs/sandbox.md summarises).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A channel message. `data` is a JSON string when `encoding` is `json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extras: Option<Value>,
    /// Set on messages received over SSE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
}

impl Message {
    /// The payload with `encoding: json` undone: an object for JSON data, the raw value otherwise.
    pub fn decoded_data(&self) -> Value {
        match (&self.data, self.encoding.as_deref()) {
            (Some(Value::String(s)), Some("json")) => serde_json::from_str(s).unwrap_or(Value::String(s.clone())),
            (Some(v), _) => v.clone(),
            (None, _) => Value::Null,
        }
    }
}

/// Ably's ErrorInfo, as found in `{"error": {...}}` bodies and SSE `error` events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorInfo {
    pub code: u32,
    pub status_code: u16,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub href: Option<String>,
}

impl ErrorInfo {
    pub fn new(status_code: u16, code: u32, message: impl Into<String>) -> Self {
        ErrorInfo {
            code,
            status_code,
            message: message.into(),
            href: Some(format!("https://help.ably.io/error/{code}")),
        }
    }
}

/// `{"error": ErrorInfo}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorEnvelope {
    pub error: ErrorInfo,
}
