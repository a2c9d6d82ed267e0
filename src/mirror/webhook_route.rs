//! `broker-ops mirror webhook-test URL`: does the app's webhook route take what Ably signs and
//! refuse everything else? Four requests, each a batch of one canary item (the canary channel,
//! a unique id: never a customer's data): a forged signature, no signature, a body altered
//! after signing, then a correctly signed one. The signed one must be answered 2xx and its item
//! mirrored; the others refused (4xx) and nothing of theirs mirrored. The forged ones go first,
//! and are looked for once the good one has arrived, so a route that accepts them has had as
//! long to write them as it took to write the good one.

use std::io::{self, Write};
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::canary::{fresh_id, message};
use super::watch::{Store, Watch};
use crate::config::{AblyKey, Config, ConfigError};
use crate::output::{Render, Style, escape, table};
use crate::webhook::{self, Batch, Item};

#[derive(Debug, Clone)]
pub struct WebhookTestRequest {
    pub url: url::Url,
    /// How long to wait for the signed item to be mirrored.
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseName {
    WrongSignature,
    NoSignature,
    AlteredBody,
    Signed,
}

impl CaseName {
    fn expect(self) -> &'static str {
        match self {
            CaseName::Signed => "2xx, mirrored",
            _ => "4xx, not mirrored",
        }
    }
}

/// What one request came to.
#[derive(Debug, Clone, Serialize)]
pub struct Case {
    pub name: CaseName,
    pub expect: &'static str,
    /// The HTTP status; `None` when the request failed (`error`).
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Whether its item reached the mirror (the signed one: every watched store; the others:
    /// any); `None` when no store is configured to look in.
    pub mirrored: Option<bool>,
    pub pass: bool,
    #[serde(skip)]
    id: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct WebhookTestReport {
    /// The route, credentials removed.
    pub url: String,
    /// The setting the signing key came from.
    pub key_from: &'static str,
    /// The stores looked in for the items.
    pub stores: Vec<&'static str>,
    pub cases: Vec<Case>,
}

impl WebhookTestReport {
    pub fn passed(&self) -> bool {
        self.cases.iter().all(|c| c.pass)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookTestError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("webhook route {url}: no request got an answer: {detail}")]
    Unreachable { url: String, detail: String },
    #[error("webhook route {url}: {why}")]
    Store { url: String, why: String },
}

pub async fn run(config: &Config, req: WebhookTestRequest) -> Result<WebhookTestReport, WebhookTestError> {
    let (key, key_from) = match (&config.ably_webhook_key, &config.ably_api_key) {
        (Some(k), _) => (k.value.clone(), "ABLY_WEBHOOK_KEY"),
        (None, Some(k)) => (k.value.clone(), "ABLY_API_KEY"),
        (None, None) => return Err(config.require("ABLY_WEBHOOK_KEY", &config.ably_webhook_key).unwrap_err().into()),
    };
    let url = crate::redact::url(req.url.as_str());
    let (watch, unusable) = Watch::open(config).await;
    if let Some(u) = unusable.first() {
        return Err(WebhookTestError::Store { url, why: u.reason.clone() });
    }
    for problem in watch.trim(config.timeout.value).await {
        tracing::warn!("mirror webhook-test: trimming old canaries: {problem}");
    }
    let http = crate::http::client(config.timeout.value);
    let mut cases = Vec::new();
    for name in [CaseName::WrongSignature, CaseName::NoSignature, CaseName::AlteredBody, CaseName::Signed] {
        cases.push(send(&http, &req.url, &key, &config.contracts, name).await);
    }
    if cases.iter().all(|c| c.status.is_none()) {
        let detail = cases.iter().filter_map(|c| c.error.clone()).next().unwrap_or_default();
        return Err(WebhookTestError::Unreachable { url, detail });
    }
    let stores: Vec<Store> = [Store::Redis, Store::Postgres].into_iter().filter(|s| watch.watches(*s)).collect();
    judge(&watch, &stores, &mut cases, Instant::now() + req.timeout)
        .await
        .map_err(|why| WebhookTestError::Store { url: url.clone(), why })?;
    Ok(WebhookTestReport { url, key_from, stores: stores.iter().map(|s| s.name()).collect(), cases })
}

/// One request of the case `name`.
async fn send(
    http: &reqwest::Client,
    url: &url::Url,
    key: &AblyKey,
    c: &crate::contracts::Contracts,
    name: CaseName,
) -> Case {
    let id = fresh_id(c, "webhook-test");
    let now = chrono::Utc::now().timestamp_millis();
    let body = body_of(c, &id, now, false);
    let signature = match name {
        CaseName::Signed | CaseName::AlteredBody => Some(webhook::sign(key, &body)),
        // The right key name, a secret that is not the key's.
        CaseName::WrongSignature => {
            let forged = AblyKey::parse(&format!("{}:{}", key.name, uuid::Uuid::new_v4().simple())).ok();
            forged.map(|k| webhook::sign(&k, &body))
        }
        CaseName::NoSignature => None,
    };
    let sent = if name == CaseName::AlteredBody { body_of(c, &id, now, true) } else { body };
    let mut r = http
        .post(url.clone())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(webhook::HEADER_VERSION, webhook::VERSION)
        .header(webhook::HEADER_KEY, &key.name);
    if let Some(s) = signature {
        r = r.header(webhook::HEADER_SIGNATURE, s);
    }
    let (status, error) = match r.body(sent).send().await {
        Ok(resp) => (Some(resp.status().as_u16()), None),
        Err(e) => (None, Some(crate::http::describe(&e))),
    };
    Case { name, expect: name.expect(), status, error, mirrored: None, pass: false, id }
}

/// A batch of one canary item; `altered` changes the message's data after the fact.
fn body_of(c: &crate::contracts::Contracts, id: &str, now_ms: i64, altered: bool) -> Vec<u8> {
    let mut m = message(c, id, now_ms);
    m.timestamp = Some(now_ms);
    if altered {
        m.data = Some(json!(json!({"canary": true, "sentAt": now_ms, "by": "someone else"}).to_string()));
    }
    let item = Item::messages("brokerops", format!("{id}:0"), &c.canary_channel, vec![m], now_ms);
    // A batch of plain data always serialises.
    serde_json::to_vec(&Batch { items: vec![item] }).expect("batch serialises")
}

/// Looks for each case's item and decides whether it passed.
async fn judge(watch: &Watch, stores: &[Store], cases: &mut [Case], deadline: Instant) -> Result<(), String> {
    for case in cases.iter_mut().rev() {
        let accepted = case.status.is_some_and(|s| (200..300).contains(&s));
        let refused = case.status.is_some_and(|s| (400..500).contains(&s));
        if stores.is_empty() {
            case.mirrored = None;
        } else if case.name == CaseName::Signed {
            let mut all = true;
            for s in stores {
                // Only an accepted item is worth waiting for.
                let until = if accepted { deadline } else { Instant::now() };
                all &= Watch::until(until, || watch.holds(*s, &case.id)).await?.is_some();
            }
            case.mirrored = Some(all);
        } else {
            let mut any = false;
            for s in stores {
                any |= watch.holds(*s, &case.id).await?;
            }
            case.mirrored = Some(any);
        }
        case.pass = match case.name {
            CaseName::Signed => accepted && case.mirrored != Some(false),
            _ => refused && case.mirrored != Some(true),
        };
    }
    Ok(())
}

impl Render for WebhookTestReport {
    fn table(&self, w: &mut dyn Write, style: Style) -> io::Result<()> {
        let mut t = table(&["case", "expect", "status", "mirrored", "result"]);
        for c in &self.cases {
            let status = match (c.status, &c.error) {
                (Some(s), _) => s.to_string(),
                (None, Some(e)) => escape(e),
                (None, None) => "-".into(),
            };
            let mirrored = c.mirrored.map_or("not checked".to_string(), |m| if m { "yes" } else { "no" }.to_string());
            let result = if c.pass { style.good("PASS") } else { style.bad("FAIL") };
            let name =
                serde_json::to_value(c.name).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
            t.add_row(vec![name, c.expect.to_string(), status, mirrored, result]);
        }
        writeln!(w, "{t}")?;
        let stores = if self.stores.is_empty() { "no store configured".into() } else { self.stores.join(", ") };
        let verdict = if self.passed() { style.good("PASS") } else { style.bad("FAIL") };
        writeln!(w, "{}: {verdict} (key from {}; mirror checked in {stores})", escape(&self.url), self.key_from)
    }

    fn json(&self) -> Value {
        json!({"schema_version": 1, "kind": "mirror_webhook_test", "url": self.url, "key_from": self.key_from,
               "stores": self.stores, "pass": self.passed(), "cases": self.cases})
    }

    fn ndjson(&self) -> Vec<Value> {
        self.cases.iter().map(|c| json!(c)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_altered_body_differs_only_in_its_data_and_fails_the_signature() {
        let c = crate::contracts::Contracts::default();
        let key = AblyKey::parse("app.k:secret").unwrap();
        let (good, bad) = (body_of(&c, "x", 1, false), body_of(&c, "x", 1, true));
        assert_ne!(good, bad);
        let sig = webhook::sign(&key, &good);
        let keys = [key];
        assert_eq!(webhook::verify(&keys, Some("app.k"), Some(&sig), &good), Ok(()));
        assert_eq!(webhook::verify(&keys, Some("app.k"), Some(&sig), &bad), Err(webhook::Refusal::Mismatch));
        let (g, b) = (webhook::extract(&good, &c).unwrap(), webhook::extract(&bad, &c).unwrap());
        assert_eq!((g.events[0].id.as_str(), b.events[0].id.as_str()), ("x", "x"));
        assert_eq!(g.events[0].conversation_id, "broker-ops-canary");
        assert_ne!(g.events[0].data, b.events[0].data);
    }
}
