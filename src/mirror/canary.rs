//! `broker-ops mirror canary`: one message through the whole pipeline, end to end. A subscriber
//! joins the canary channel over SSE (a test conversation, never a customer's:
//! contracts.canary_channel), then the message is published through Ably REST with a unique id
//! and watched for on the subscriber, in the Redis stream and in the Postgres table: the checks
//! `publish`, `deliver`, `redis` and `postgres`, in milliseconds from the moment the publish was
//! sent, or CRITICAL for a leg it never reached within the time-out.
//! Canary entries older than a day are trimmed from both stores first.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use super::watch::{Store, Watch};
use crate::ably::realtime::{self, RtEvent, Subscription};
use crate::ably::{AblyClient, Message};
use crate::config::Config;
use crate::contracts::Contracts;
use crate::exit::Fault;
use crate::probe::health::ProbeError;
use crate::probe::{Check, ProbeReport, Rule, Rules, Unit};

pub const KIND: &str = "mirror_canary";
pub const DEFAULT_WARN: &[&str] =
    &["publish_latency>1s", "deliver_latency>1s", "redis_latency>5s", "postgres_latency>10s"];
pub const DEFAULT_CRIT: &[&str] = &[];
/// The metrics a rule of this probe may name.
pub const METRICS: &[&str] = &["publish_latency", "deliver_latency", "redis_latency", "postgres_latency"];

#[derive(Debug, Clone)]
pub struct CanaryRequest {
    /// How long to wait for each store.
    pub timeout: Duration,
    pub warn: Vec<Rule>,
    pub crit: Vec<Rule>,
}

/// A canary message: the canary event, its unique id, JSON data that says what it is
/// (encoded as Ably clients send JSON: text with `encoding: json`).
pub fn message(contracts: &Contracts, id: &str, now_ms: i64) -> Message {
    let data = json!({"canary": true, "sentAt": now_ms, "by": "broker-ops mirror canary"});
    Message {
        id: Some(id.to_string()),
        name: Some(contracts.canary_event.clone()),
        data: Some(Value::String(data.to_string())),
        encoding: Some("json".into()),
        ..Message::default()
    }
}

/// A fresh canary message id, marked as test traffic.
pub fn fresh_id(contracts: &Contracts, what: &str) -> String {
    format!("{}{what}-{}", contracts.synthetic_prefix, uuid::Uuid::new_v4().simple())
}

pub async fn run(config: &Config, req: CanaryRequest) -> Result<ProbeReport, ProbeError> {
    run_on(config, req, &crate::store::opened::Connections::open(config).await).await
}

/// The canary on stores already opened (a `monitor` sweep shares them).
pub async fn run_on(
    config: &Config,
    req: CanaryRequest,
    opened: &crate::store::opened::Connections,
) -> Result<ProbeReport, ProbeError> {
    let rules = Rules::new(DEFAULT_WARN, DEFAULT_CRIT, req.warn, req.crit, METRICS).map_err(ProbeError::Usage)?;
    let key = config.require("ABLY_API_KEY", &config.ably_api_key)?;
    if config.redis_url.is_none() && config.database_url.is_none() {
        config.require("REDIS_URL", &config.redis_url)?;
    }
    let ably = AblyClient::new(config.ably_rest_url.value.clone(), Some(key.value.clone()), config.timeout.value)?;
    let (watch, unusable) = Watch::of(config, opened).await;
    let mut checks: Vec<Check> = Vec::new();
    for u in &unusable {
        checks.push(rules.failed(&metric(u.store), Unit::Ms, u.fault, u.reason.clone()));
    }
    let stores: Vec<Store> = [Store::Redis, Store::Postgres].into_iter().filter(|s| watch.watches(*s)).collect();
    if stores.is_empty() {
        // Nothing could observe the canary: publishing it would only leave a message behind.
        // No `publish` row either: the stores' rows say why, and a `publish` UNKNOWN would
        // read as Ably refusing us (and fire `ably-publish-refused`).
        return Ok(ProbeReport { kind: KIND, checks });
    }
    for problem in watch.trim(config.timeout.value).await {
        tracing::warn!("mirror canary: trimming old canaries: {problem}");
    }
    let c = &config.contracts;
    let id = fresh_id(c, "canary");
    // Subscribed before the publish, as a customer's browser is, so nothing can be missed.
    let subscriber = subscribe(config, &key.value).await;
    let channel: String = url::form_urlencoded::byte_serialize(c.canary_channel.as_bytes()).collect();
    // A struct of strings always serialises.
    let body = serde_json::to_value(message(c, &id, chrono::Utc::now().timestamp_millis())).expect("a message");
    let sent = Instant::now();
    let published = ably.post_json("publish", &format!("channels/{channel}/messages"), &body).await;
    let publish_ms = ms(sent.elapsed());
    let mut results = match published {
        Err(e) => {
            let why = format!("canary {id} on {}: {e}", c.canary_channel);
            let mut out = vec![rules.failed("publish_latency", Unit::Ms, e.fault(), why)];
            out.push(rules.unknown("deliver_latency", Unit::Ms, "not published"));
            out.extend(stores.iter().map(|s| rules.unknown(&metric(*s), Unit::Ms, "not published")));
            out
        }
        Ok(_) => {
            let detail = format!("canary {id} on {}", c.canary_channel);
            let mut out = vec![rules.check("publish_latency", publish_ms, Unit::Ms, detail)];
            let deadline = sent + req.timeout;
            let waits = stores.iter().map(|s| wait(&watch, *s, &id, sent, deadline, &rules));
            let (delivered, stored) =
                tokio::join!(deliver(subscriber, &id, sent, deadline, &rules), futures::future::join_all(waits));
            out.push(delivered);
            out.extend(stored);
            out
        }
    };
    results.extend(checks);
    Ok(ProbeReport { kind: KIND, checks: results })
}

/// The canary channel's subscriber over SSE, or the check that says why there is none.
async fn subscribe(config: &Config, key: &crate::config::AblyKey) -> Result<Subscription, (Fault, String)> {
    let c = &config.contracts;
    let t = config.timeout.value;
    let http = crate::http::streaming_client(t);
    realtime::subscribe(http, config.ably_rest_url.value.clone(), key.clone(), c.canary_channel.clone(), t)
        .await
        .map_err(|e| (e.fault(), e.to_string()))
}

/// Waits for the canary on the subscriber: publish → subscriber in ms, or CRITICAL at the
/// deadline (Ably took the publish but delivered nothing to the channel's subscribers).
async fn deliver(
    subscriber: Result<Subscription, (Fault, String)>,
    id: &str,
    sent: Instant,
    deadline: Instant,
    rules: &Rules,
) -> Check {
    const METRIC: &str = "deliver_latency";
    let mut sub = match subscriber {
        Ok(s) => s,
        Err((fault, why)) => return rules.failed(METRIC, Unit::Ms, fault, why),
    };
    let seen = async {
        while let Some(ev) = sub.rx.recv().await {
            match ev {
                RtEvent::Message(m, at) if m.id.as_deref() == Some(id) => return Ok(at),
                RtEvent::Message(..) | RtEvent::Presence(..) => {}
                RtEvent::Error(e) => return Err(e),
            }
        }
        Err("the subscription ended".to_string())
    };
    match tokio::time::timeout_at(deadline, seen).await {
        Ok(Ok(at)) => {
            let at = Instant::from_std(at);
            rules.check(METRIC, ms(at.saturating_duration_since(sent)), Unit::Ms, "to an SSE subscriber")
        }
        Ok(Err(e)) => rules.critical(METRIC, Unit::Ms, format!("the subscriber got no canary: {e}")),
        Err(_) => {
            let waited = crate::duration::format_duration(deadline - sent);
            let why = format!("Ably took the publish, but its subscriber got nothing after {waited}");
            rules.critical(METRIC, Unit::Ms, why)
        }
    }
}

fn metric(store: Store) -> String {
    format!("{}_latency", store.name())
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}

/// Waits for the canary in one store: its latency from `sent`, or CRITICAL at the deadline.
async fn wait(watch: &Watch, store: Store, id: &str, sent: Instant, deadline: Instant, rules: &Rules) -> Check {
    let where_ = match store {
        Store::Redis => format!("stream {}", watch.contracts.stream_key(&watch.contracts.canary_conversation())),
        Store::Postgres => format!("table {}", watch.contracts.table),
    };
    match Watch::until(deadline, || watch.holds(store, id)).await {
        Ok(Some(at)) => rules.check(&metric(store), ms(at - sent), Unit::Ms, format!("in {where_}")),
        Ok(None) => {
            let waited = crate::duration::format_duration(deadline - sent);
            rules.critical(&metric(store), Unit::Ms, format!("not in {where_} after {waited}"))
        }
        // The store was opened for this run: failing now is the store's own failure.
        Err(e) => rules.critical(&metric(store), Unit::Ms, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_canary_is_marked_as_test_traffic_and_carries_json() {
        let c = Contracts::default();
        let id = fresh_id(&c, "canary");
        assert!(id.starts_with("broker-ops-canary-") && id.len() > 30);
        assert_ne!(id, fresh_id(&c, "canary"));
        let m = message(&c, &id, 5);
        assert_eq!(m.name.as_deref(), Some("broker-ops:canary"));
        assert_eq!(m.decoded_data()["canary"], true);
        for d in [DEFAULT_WARN, DEFAULT_CRIT] {
            Rules::new(d, &[], vec![], vec![], METRICS).unwrap();
        }
    }
}
