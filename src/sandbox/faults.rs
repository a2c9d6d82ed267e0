//! Faults that can be set when the sandbox starts (flags) and changed while it runs (`GET`/`POST
//! /_sandbox/faults`, a JSON object of the keys to change): the services' (AI latency model and
//! error rate, HTTP error rate, a stall, SSE drops) and the mirror pipeline's. Unknown keys, rates
//! outside 0..1 and unreadable durations or models are refused with 400 and the reason, so a typo
//! never silently leaves a fault off; a refused change changes nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State as AxState;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{LatencyModel, Stall, State, lock};
use crate::duration::{format_duration, parse_duration};

/// The faults in force.
#[derive(Debug, Clone, PartialEq)]
pub struct Faults {
    /// How long the AI takes to answer (`--ai-latency`).
    pub ai_latency: LatencyModel,
    /// Share of AI jobs that fail (`--ai-error-rate`).
    pub ai_error_rate: f64,
    /// Share of API requests answered 500 (`--http-error-rate`).
    pub http_error_rate: f64,
    /// Nothing answers for `duration`, `after` past `stall_from` (`--stall DUR@AFTER`: from the
    /// start; set at run time: from when it was set).
    pub stall: Option<Stall>,
    pub stall_from: Option<Instant>,
    /// Every SSE stream opened from now on is closed this long after it opened.
    pub sse_drop_after: Option<Duration>,
    /// Share of deliveries to SSE subscribers that never happen: Ably accepts the publish and
    /// mirrors it through the webhook, but the subscriber does not get it (1: nothing at all).
    pub deliver_drop_rate: f64,
    /// Each delivery to an SSE subscriber is held back a random 0 to this long after Ably took
    /// (and stamped) the message, one after the other per subscriber: a fan-out under load.
    pub deliver_jitter: Duration,
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
    /// The worker takes no job (BullMQ's `worker.pause()`): jobs wait in `wait` and are taken
    /// when it resumes.
    pub worker_paused: bool,
    /// The worker process is gone: no job is taken, and the jobs it held stay `active` with no
    /// reply (stalled) while it is down.
    pub worker_down: bool,
    /// Share of jobs whose handler throws on every attempt: they end in `failed` with BullMQ's
    /// `failedReason`, `stacktrace` and `attemptsMade`, and no reply.
    pub job_failure_rate: f64,
    /// The resume route lets in an expired (but genuinely signed) token.
    pub resume_accept_expired: bool,
    /// The resume route lets in an unsigned token (`alg: none`).
    pub resume_accept_none: bool,
    /// The resume route's session cookie lacks HttpOnly.
    pub resume_cookie_scriptable: bool,
    /// The resume route redirects with the token in `Location`.
    pub resume_token_in_location: bool,
    /// The resume route's answer may be kept by a shared cache.
    pub resume_cacheable: bool,
}

/// No fault, and the AI answering as `--ai-latency` does by default (P50 800 ms, P95 2.5 s).
impl Default for Faults {
    fn default() -> Self {
        Faults {
            ai_latency: LatencyModel::LogNormal {
                p50: Duration::from_millis(800),
                p95: Duration::from_millis(2500),
                max: Some(Duration::from_secs(4)),
            },
            ai_error_rate: 0.0,
            http_error_rate: 0.0,
            stall: None,
            stall_from: None,
            sse_drop_after: None,
            deliver_drop_rate: 0.0,
            deliver_jitter: Duration::ZERO,
            webhook_drop_rate: 0.0,
            webhook_delay: Duration::ZERO,
            receiver_error_rate: 0.0,
            redis_write_fail: false,
            postgres_write_fail: false,
            receiver_skip_signature: false,
            worker_paused: false,
            worker_down: false,
            job_failure_rate: 0.0,
            resume_accept_expired: false,
            resume_accept_none: false,
            resume_cookie_scriptable: false,
            resume_token_in_location: false,
            resume_cacheable: false,
        }
    }
}

/// A change of faults: only the keys given.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultsPatch {
    /// A model as `--ai-latency` takes it (`fixed:800ms`, `lognormal:p50=800ms,p95=2500ms`).
    pub ai_latency: Option<String>,
    pub ai_error_rate: Option<f64>,
    pub http_error_rate: Option<f64>,
    /// `DUR@AFTER` counted from now, or `"off"`.
    pub stall: Option<String>,
    /// A duration or a number of milliseconds; `"off"` or 0 ends the drops.
    pub sse_drop_after: Option<Value>,
    pub deliver_drop_rate: Option<f64>,
    /// A duration or a number of milliseconds; 0 ends it.
    pub deliver_jitter: Option<Value>,
    pub webhook_drop_rate: Option<f64>,
    /// A duration (`250ms`, `2s`) or a number of milliseconds.
    pub webhook_delay: Option<Value>,
    pub receiver_error_rate: Option<f64>,
    pub redis_write_fail: Option<bool>,
    pub postgres_write_fail: Option<bool>,
    pub receiver_skip_signature: Option<bool>,
    pub worker_paused: Option<bool>,
    pub worker_down: Option<bool>,
    pub job_failure_rate: Option<f64>,
    pub resume_accept_expired: Option<bool>,
    pub resume_accept_none: Option<bool>,
    pub resume_cookie_scriptable: Option<bool>,
    pub resume_token_in_location: Option<bool>,
    pub resume_cacheable: Option<bool>,
}

fn rate(key: &str, v: f64) -> Result<(), String> {
    if (0.0..=1.0).contains(&v) { Ok(()) } else { Err(format!("{key} must be between 0 and 1, got {v}")) }
}

/// A duration given as text (`250ms`, `2s`) or a whole number of milliseconds.
fn duration(key: &str, v: &Value) -> Result<Duration, String> {
    match v {
        Value::String(s) => parse_duration(s).map_err(|e| format!("{key}: {e}")),
        Value::Number(n) => n
            .as_u64()
            .map(Duration::from_millis)
            .ok_or_else(|| format!("{key}: {n} is not a whole number of milliseconds")),
        other => Err(format!("{key}: expected a duration like \"2s\", got {other}")),
    }
}

impl Faults {
    /// The faults with `patch` applied; nothing changes when any value is refused.
    pub fn patched(&self, patch: FaultsPatch) -> Result<Faults, String> {
        let mut f = self.clone();
        if let Some(m) = patch.ai_latency {
            f.ai_latency = m.parse().map_err(|e| format!("ai_latency: {e}"))?;
        }
        if let Some(v) = patch.ai_error_rate {
            f.ai_error_rate = v;
        }
        if let Some(v) = patch.http_error_rate {
            f.http_error_rate = v;
        }
        match patch.stall.as_deref() {
            None => {}
            Some("off") => (f.stall, f.stall_from) = (None, None),
            Some(s) => {
                (f.stall, f.stall_from) = (Some(s.parse().map_err(|e| format!("stall: {e}"))?), Some(Instant::now()))
            }
        }
        match patch.sse_drop_after {
            None => {}
            Some(Value::String(s)) if s == "off" => f.sse_drop_after = None,
            Some(v) => {
                let d = duration("sse_drop_after", &v)?;
                f.sse_drop_after = (!d.is_zero()).then_some(d);
            }
        }
        if let Some(v) = patch.deliver_drop_rate {
            f.deliver_drop_rate = v;
        }
        if let Some(v) = patch.webhook_drop_rate {
            f.webhook_drop_rate = v;
        }
        if let Some(v) = patch.receiver_error_rate {
            f.receiver_error_rate = v;
        }
        if let Some(v) = patch.webhook_delay {
            f.webhook_delay = duration("webhook_delay", &v)?;
        }
        if let Some(v) = patch.deliver_jitter {
            f.deliver_jitter = duration("deliver_jitter", &v)?;
        }
        f.redis_write_fail = patch.redis_write_fail.unwrap_or(f.redis_write_fail);
        f.postgres_write_fail = patch.postgres_write_fail.unwrap_or(f.postgres_write_fail);
        f.receiver_skip_signature = patch.receiver_skip_signature.unwrap_or(f.receiver_skip_signature);
        f.worker_paused = patch.worker_paused.unwrap_or(f.worker_paused);
        f.worker_down = patch.worker_down.unwrap_or(f.worker_down);
        f.job_failure_rate = patch.job_failure_rate.unwrap_or(f.job_failure_rate);
        f.resume_accept_expired = patch.resume_accept_expired.unwrap_or(f.resume_accept_expired);
        f.resume_accept_none = patch.resume_accept_none.unwrap_or(f.resume_accept_none);
        f.resume_cookie_scriptable = patch.resume_cookie_scriptable.unwrap_or(f.resume_cookie_scriptable);
        f.resume_token_in_location = patch.resume_token_in_location.unwrap_or(f.resume_token_in_location);
        f.resume_cacheable = patch.resume_cacheable.unwrap_or(f.resume_cacheable);
        f.checked()
    }

    /// The same faults, refused when a rate is outside 0..1: at start and on every change.
    pub fn checked(self) -> Result<Faults, String> {
        let rates = [
            ("ai_error_rate", self.ai_error_rate),
            ("http_error_rate", self.http_error_rate),
            ("deliver_drop_rate", self.deliver_drop_rate),
            ("webhook_drop_rate", self.webhook_drop_rate),
            ("receiver_error_rate", self.receiver_error_rate),
            ("job_failure_rate", self.job_failure_rate),
        ];
        for (key, v) in rates {
            rate(key, v)?;
        }
        Ok(self)
    }

    /// When a stall is in force, the instant it ends.
    pub fn stalled_until(&self, now: Instant) -> Option<Instant> {
        let (s, from) = (self.stall?, self.stall_from?);
        let (start, end) = (from + s.after, from + s.after + s.duration);
        (now >= start && now < end).then_some(end)
    }

    pub fn json(&self) -> Value {
        let stall = self.stall.map(|s| format!("{}@{}", format_duration(s.duration), format_duration(s.after)));
        json!({
            "ai_latency": self.ai_latency.to_string(),
            "ai_error_rate": self.ai_error_rate,
            "http_error_rate": self.http_error_rate,
            "stall": stall,
            "sse_drop_after": self.sse_drop_after.map(format_duration),
            "deliver_drop_rate": self.deliver_drop_rate,
            "deliver_jitter": format_duration(self.deliver_jitter),
            "webhook_drop_rate": self.webhook_drop_rate,
            "webhook_delay": format_duration(self.webhook_delay),
            "receiver_error_rate": self.receiver_error_rate,
            "redis_write_fail": self.redis_write_fail,
            "postgres_write_fail": self.postgres_write_fail,
            "receiver_skip_signature": self.receiver_skip_signature,
            "worker_paused": self.worker_paused,
            "worker_down": self.worker_down,
            "job_failure_rate": self.job_failure_rate,
            "resume_accept_expired": self.resume_accept_expired,
            "resume_accept_none": self.resume_accept_none,
            "resume_cookie_scriptable": self.resume_cookie_scriptable,
            "resume_token_in_location": self.resume_token_in_location,
            "resume_cacheable": self.resume_cacheable,
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

    #[test]
    fn the_services_faults_change_at_run_time_and_can_be_turned_off() {
        let f = patch(
            json!({"ai_latency": "fixed:80ms", "http_error_rate": 0.2, "stall": "1s@0s", "sse_drop_after": "2s"}),
        )
        .unwrap();
        assert_eq!(f.ai_latency, LatencyModel::Fixed(Duration::from_millis(80)));
        assert_eq!((f.http_error_rate, f.sse_drop_after), (0.2, Some(Duration::from_secs(2))));
        let now = Instant::now();
        assert!(f.stalled_until(now).is_some(), "a stall set with @0s is in force at once");
        assert_eq!(f.json()["stall"], "1.00s@0ms");
        let off = f.patched(serde_json::from_value(json!({"stall": "off", "sse_drop_after": 0})).unwrap()).unwrap();
        assert_eq!((off.stall, off.sse_drop_after, off.stalled_until(now)), (None, None, None));
        assert_eq!(off.ai_latency, f.ai_latency, "what the change does not name stays");
        assert!(patch(json!({"ai_latency": "gaussian:1s"})).unwrap_err().starts_with("ai_latency"));
        assert!(patch(json!({"stall": "3s"})).unwrap_err().starts_with("stall"));
        assert!(patch(json!({"ai_error_rate": -0.1})).unwrap_err().contains("between 0 and 1"));
        assert_eq!(patch(json!({"deliver_drop_rate": 1.0})).unwrap().deliver_drop_rate, 1.0);
        assert!(patch(json!({"deliver_drop_rate": 2.0})).unwrap_err().contains("deliver_drop_rate"));
    }
}
