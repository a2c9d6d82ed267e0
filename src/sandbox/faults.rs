//! Faults of the mirror pipeline that can be set when the sandbox starts (flags) and changed
//! while it runs (`GET`/`POST /_sandbox/faults`, a JSON object of the keys to change). Unknown
//! keys, rates outside 0..1 and unreadable durations are refused with 400 and the reason, so a
//! typo never silently leaves a fault off.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State as AxState;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{State, lock};
use crate::duration::{format_duration, parse_duration};

/// The pipeline's faults in force.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    /// Share of webhook items Ably "loses": never sent, counted as dropped.
    pub webhook_drop_rate: f64,
    /// Added before every webhook request.
    pub webhook_delay: Duration,
    /// Share of webhook requests the receiver answers 500 without writing.
    pub receiver_error_rate: f64,
    /// The receiver's Redis write fails (500; Postgres is not reached, as in the app's route).
    pub redis_write_fail: bool,
    /// The receiver's Postgres write fails (500, after Redis was written).
    pub postgres_write_fail: bool,
    /// The receiver stops checking signatures: a broken route, for `mirror webhook-test` to catch.
    pub receiver_skip_signature: bool,
}

/// A change of faults: only the keys given.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultsPatch {
    pub webhook_drop_rate: Option<f64>,
    /// A duration (`250ms`, `2s`) or a number of milliseconds.
    pub webhook_delay: Option<Value>,
    pub receiver_error_rate: Option<f64>,
    pub redis_write_fail: Option<bool>,
    pub postgres_write_fail: Option<bool>,
    pub receiver_skip_signature: Option<bool>,
}

fn rate(key: &str, v: f64) -> Result<f64, String> {
    if (0.0..=1.0).contains(&v) { Ok(v) } else { Err(format!("{key} must be between 0 and 1, got {v}")) }
}

impl Faults {
    /// The faults with `patch` applied; nothing changes when any value is refused.
    pub fn patched(&self, patch: FaultsPatch) -> Result<Faults, String> {
        let mut f = self.clone();
        if let Some(v) = patch.webhook_drop_rate {
            f.webhook_drop_rate = rate("webhook_drop_rate", v)?;
        }
        if let Some(v) = patch.receiver_error_rate {
            f.receiver_error_rate = rate("receiver_error_rate", v)?;
        }
        if let Some(v) = patch.webhook_delay {
            f.webhook_delay = match &v {
                Value::String(s) => parse_duration(s).map_err(|e| format!("webhook_delay: {e}"))?,
                Value::Number(n) => n
                    .as_u64()
                    .map(Duration::from_millis)
                    .ok_or_else(|| format!("webhook_delay: {n} is not a whole number of milliseconds"))?,
                other => return Err(format!("webhook_delay: expected a duration like \"2s\", got {other}")),
            };
        }
        f.redis_write_fail = patch.redis_write_fail.unwrap_or(f.redis_write_fail);
        f.postgres_write_fail = patch.postgres_write_fail.unwrap_or(f.postgres_write_fail);
        f.receiver_skip_signature = patch.receiver_skip_signature.unwrap_or(f.receiver_skip_signature);
        Ok(f)
    }

    pub fn json(&self) -> Value {
        json!({
            "webhook_drop_rate": self.webhook_drop_rate,
            "webhook_delay": format_duration(self.webhook_delay),
            "receiver_error_rate": self.receiver_error_rate,
            "redis_write_fail": self.redis_write_fail,
            "postgres_write_fail": self.postgres_write_fail,
            "receiver_skip_signature": self.receiver_skip_signature,
        })
    }
}

pub(super) async fn get_faults(AxState(state): AxState<Arc<State>>) -> Response {
    axum::Json(state.faults().json()).into_response()
}

pub(super) async fn set_faults(AxState(state): AxState<Arc<State>>, body: axum::body::Bytes) -> Response {
    let bad = |why: String| (StatusCode::BAD_REQUEST, axum::Json(json!({"error": why}))).into_response();
    let patch: FaultsPatch = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => return bad(format!("faults: {e}")),
    };
    let mut faults = lock(&state.faults);
    match faults.patched(patch) {
        Ok(f) => {
            tracing::info!("sandbox faults now {}", f.json());
            *faults = f;
            axum::Json(faults.json()).into_response()
        }
        Err(why) => bad(why),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patch(v: Value) -> Result<Faults, String> {
        Faults::default().patched(serde_json::from_value(v).map_err(|e| e.to_string())?)
    }

    #[test]
    fn patches_change_only_the_keys_given_and_refuse_bad_values() {
        let f =
            patch(json!({"webhook_drop_rate": 0.5, "webhook_delay": "250ms", "postgres_write_fail": true})).unwrap();
        assert_eq!(f.webhook_drop_rate, 0.5);
        assert_eq!(f.webhook_delay, Duration::from_millis(250));
        assert!(f.postgres_write_fail && !f.redis_write_fail);
        let g = f.patched(serde_json::from_value(json!({"webhook_delay": 40})).unwrap()).unwrap();
        assert_eq!((g.webhook_delay, g.webhook_drop_rate), (Duration::from_millis(40), 0.5));
        assert!(patch(json!({"receiver_error_rate": 1.5})).unwrap_err().contains("between 0 and 1"));
        assert!(patch(json!({"webhook_delay": "soon"})).unwrap_err().starts_with("webhook_delay"));
        assert!(patch(json!({"webhook_dorp_rate": 0.1})).unwrap_err().contains("unknown field"));
    }
}
