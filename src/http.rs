//! The one place HTTP clients are built: the TLS crypto provider is installed once, and every
//! client has a connect time-out and a whole-request time-out.

use std::time::Duration;

pub use crate::tls::ensure_crypto_provider;

/// A client whose requests give up after `timeout` (and whose connects after at most 4 s, as
/// Ably's `httpOpenTimeout`).
pub fn client(timeout: Duration) -> reqwest::Client {
    ensure_crypto_provider();
    builder()
        .user_agent(concat!("broker-ops/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(timeout.min(Duration::from_secs(4)))
        .timeout(timeout)
        .build()
        // Building only fails when the TLS backend cannot initialise, which the provider above
        // rules out; there is no useful way to run without an HTTP client.
        .expect("HTTP client")
}

/// [`client`] that never follows a redirect: a check that judges a route's own answer (its
/// `Location`, its cookies) must not be carried off to another host.
pub fn client_without_redirects(timeout: Duration) -> reqwest::Client {
    ensure_crypto_provider();
    builder()
        .user_agent(concat!("broker-ops/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(timeout.min(Duration::from_secs(4)))
        .timeout(timeout)
        .build()
        .expect("HTTP client")
}

/// A client for long-lived streams (SSE): a connect time-out but no whole-request time-out;
/// the reader enforces its own idle time-out.
pub fn streaming_client(connect_timeout: Duration) -> reqwest::Client {
    ensure_crypto_provider();
    builder()
        .user_agent(concat!("broker-ops/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(connect_timeout)
        .build()
        .expect("HTTP client")
}

/// A builder under the trust policy ([`crate::tls`]): the platform's verifier (the OS store,
/// `SSL_CERT_FILE`) with `TLS_CA_FILE`'s roots merged in.
fn builder() -> reqwest::ClientBuilder {
    let extra = crate::tls::trust().extra.iter().filter_map(|c| reqwest::Certificate::from_der(c.as_ref()).ok());
    reqwest::Client::builder().tls_certs_merge(extra)
}

/// Whether a host is a loopback address (or `localhost`), where plain HTTP cannot be sniffed.
pub fn is_loopback_host(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// A short description of a reqwest error for messages: the kind, without the URL (which the
/// caller names itself, redacted).
pub fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_decode() {
        "invalid response body"
    } else if e.is_body() {
        "error reading the body"
    } else {
        "request failed"
    };
    let mut source = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() { kind.to_string() } else { format!("{kind}: {}", crate::tls::with_reason(&detail)) }
}
