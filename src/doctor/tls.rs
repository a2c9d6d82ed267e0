//! `doctor`'s look at every TLS dependency: the protocol agreed, who issued the certificate and
//! how many days it has left, from a handshake under the trust policy ([`crate::tls`]).

use std::time::Duration;

use secrecy::ExposeSecret;
use serde::Serialize;

use crate::config::Config;

/// One TLS dependency as `doctor` saw it.
#[derive(Debug, Clone, Serialize)]
pub struct TlsRow {
    pub dependency: &'static str,
    /// `host:port`.
    pub target: String,
    pub protocol: Option<String>,
    pub issuer: Option<String>,
    pub expires: Option<String>,
    pub days_left: Option<i64>,
    /// Why there is no certificate to show (refused, not inspected).
    pub note: Option<String>,
}

/// The TLS endpoints of what is configured: HTTPS URLs, `rediss://`, `smtps://`; Postgres and
/// STARTTLS negotiate TLS inside their own protocol and are named without a look.
fn targets(config: &Config) -> Vec<(&'static str, url::Url)> {
    let mut out: Vec<(&'static str, url::Url)> = vec![("ably", config.ably_rest_url.value.clone())];
    let parse = |s: &str| url::Url::parse(s).ok();
    out.extend(config.chatwoot_base_url.as_ref().map(|s| ("chatwoot", s.value.clone())));
    out.extend(config.app_base_url.as_ref().map(|s| ("app", s.value.clone())));
    out.extend(config.slack_webhook_url.as_ref().and_then(|s| parse(s.value.expose_secret())).map(|u| ("slack", u)));
    if config.slack_bot_token.is_some() {
        out.push(("slack", config.slack_api_url.value.clone()));
    }
    for (name, url) in [("redis", &config.redis_url), ("smtp", &config.smtp_url), ("postgres", &config.database_url)] {
        out.extend(url.as_ref().and_then(|s| parse(s.value.expose_secret())).map(|u| (name, u)));
    }
    out
}

pub async fn rows(config: &Config, t: Duration) -> Vec<TlsRow> {
    let looks = targets(config).into_iter().filter_map(|(dependency, url)| {
        let host = url.host_str()?.to_string();
        let (port, note) = match url.scheme() {
            "https" | "rediss" | "valkeys" => {
                (url.port_or_known_default().unwrap_or(if url.scheme() == "https" { 443 } else { 6379 }), None)
            }
            "smtps" => (url.port().unwrap_or(465), None),
            "smtp" if url.query_pairs().any(|(k, v)| k == "tls" && v == "required") => {
                (url.port().unwrap_or(587), Some("STARTTLS: negotiated inside SMTP, not inspected here"))
            }
            "postgres" | "postgresql" if url.query_pairs().any(|(k, _)| k == "sslmode") => (
                url.port().unwrap_or(5432),
                Some("negotiated inside the Postgres protocol (sslmode): verify-full checks it on connect"),
            ),
            _ => return None,
        };
        Some(async move {
            let target = format!("{host}:{port}");
            let empty = TlsRow {
                dependency,
                target: target.clone(),
                protocol: None,
                issuer: None,
                expires: None,
                days_left: None,
                note: None,
            };
            if let Some(n) = note {
                return TlsRow { note: Some(n.to_string()), ..empty };
            }
            match crate::tls::inspect(&host, port, t).await {
                Ok(p) => TlsRow {
                    protocol: Some(p.protocol.clone()),
                    issuer: Some(p.issuer.clone()),
                    expires: Some(p.not_after.format("%Y-%m-%d").to_string()),
                    days_left: Some(p.days_left(chrono::Utc::now())),
                    ..empty
                },
                Err(e) => TlsRow { note: Some(e), ..empty },
            }
        })
    });
    futures::future::join_all(looks).await
}
