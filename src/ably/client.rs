//! A small Ably REST client: the headers a conforming client sends, the error envelope parsed
//! into a typed error that keeps Ably's code, relative `Link` pagination, a time-out on every
//! request, and no Basic auth over plain HTTP to anything but loopback.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;
use url::Url;

use super::types::{ErrorEnvelope, ErrorInfo};
use crate::config::AblyKey;

/// The protocol version sent in `X-Ably-Version` (current response shapes: stats `entries`,
/// `/channels` by id, batch `BatchResult`).
pub const PROTOCOL_VERSION: &str = "3";

#[derive(Debug, thiserror::Error)]
pub enum AblyError {
    #[error("Ably {op} {url}: HTTP {status}, code {code}: {message}", code = .info.code, message = .info.message, status = .info.status_code)]
    Api { op: &'static str, url: String, info: ErrorInfo },
    #[error("Ably {op} {url}: {detail}")]
    Transport { op: &'static str, url: String, detail: String },
    #[error("Ably {op} {url}: unexpected response: {detail}")]
    Protocol { op: &'static str, url: String, detail: String },
    #[error(
        "Ably {url}: refusing to send Basic auth over plain HTTP to a non-loopback host (Ably answers this with 40103); use https://"
    )]
    InsecureBasicAuth { url: String },
    #[error("Ably {op}: ABLY_API_KEY is required")]
    NoKey { op: &'static str },
}

impl AblyError {
    /// Whose failure this is: Ably refusing, resetting, timing out, not resolving, answering
    /// 5xx or 429, or answering what is not its API is the service's; a key it refuses, a
    /// request it calls invalid, or a key we lack is ours.
    pub fn fault(&self) -> crate::exit::Fault {
        use crate::exit::Fault;
        match self {
            AblyError::Api { info, .. } => Fault::of_http_status(info.status_code),
            AblyError::Transport { .. } | AblyError::Protocol { .. } => Fault::Service,
            AblyError::InsecureBasicAuth { .. } | AblyError::NoKey { .. } => Fault::Ours,
        }
    }

    /// Ably's error code, when the service answered with one.
    pub fn code(&self) -> Option<u32> {
        match self {
            AblyError::Api { info, .. } => Some(info.code),
            _ => None,
        }
    }
}

/// One page of a paginated resource.
#[derive(Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<Url>,
}

#[derive(Debug, Clone)]
pub struct AblyClient {
    base: Url,
    key: Option<AblyKey>,
    http: reqwest::Client,
    /// Fallback hosts, tried in random order when the primary fails in a way that a conforming
    /// client retries (RSC15). Only the default endpoint has them; an explicit URL never does.
    fallbacks: Vec<Url>,
}

/// The default endpoint's fallback hosts (REC2c1).
pub const FALLBACK_HOSTS: [&str; 5] = [
    "main.a.fallback.ably-realtime.com",
    "main.b.fallback.ably-realtime.com",
    "main.c.fallback.ably-realtime.com",
    "main.d.fallback.ably-realtime.com",
    "main.e.fallback.ably-realtime.com",
];

/// At most this many fallback attempts per request (httpMaxRetryCount, TO3l5).
const MAX_FALLBACK_RETRIES: usize = 3;

impl AblyClient {
    /// A client for `base` (ABLY_REST_URL). Basic auth over `http://` is only allowed to
    /// loopback; anything else is refused before a byte is sent.
    pub fn new(base: Url, key: Option<AblyKey>, timeout: Duration) -> Result<Self, AblyError> {
        if key.is_some() && base.scheme() == "http" && !crate::http::is_loopback_host(&base) {
            return Err(AblyError::InsecureBasicAuth { url: crate::redact::url(base.as_str()) });
        }
        let fallbacks = if base.as_str().trim_end_matches('/') == crate::config::DEFAULT_ABLY_REST_URL {
            FALLBACK_HOSTS.iter().filter_map(|h| Url::parse(&format!("https://{h}/")).ok()).collect()
        } else {
            Vec::new()
        };
        Ok(AblyClient { base, key, http: crate::http::client(timeout), fallbacks })
    }

    /// The same client with explicit fallback hosts (tests point them at local stand-ins).
    pub fn with_fallbacks(mut self, fallbacks: Vec<Url>) -> Self {
        self.fallbacks = fallbacks;
        self
    }

    /// Sends `rb_for(url)` to the primary host, then to fallback hosts in random order when the
    /// primary is unreachable, times out, answers 500-504, or any error status through
    /// CloudFront (RSC15l); at most 3 fallbacks. Returns the answer and the URL that gave it.
    async fn send(
        &self,
        op: &'static str,
        url: Url,
        rb_for: impl Fn(Url) -> reqwest::RequestBuilder,
    ) -> Result<(reqwest::Response, Url), AblyError> {
        let first = rb_for(url.clone()).send().await;
        let retryable = |r: &Result<reqwest::Response, reqwest::Error>| match r {
            Err(e) => e.is_connect() || e.is_timeout(),
            Ok(resp) => {
                let s = resp.status().as_u16();
                (500..=504).contains(&s)
                    || (s >= 400
                        && resp
                            .headers()
                            .get("server")
                            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cloudfront")))
            }
        };
        if self.fallbacks.is_empty() || !retryable(&first) {
            return first.map(|r| (r, url.clone())).map_err(|e| transport(op, &url, &e));
        }
        let mut hosts = self.fallbacks.clone();
        {
            use rand::seq::SliceRandom;
            hosts.shuffle(&mut rand::rng());
        }
        let mut last = first;
        let mut last_url = url.clone();
        for host in hosts.into_iter().take(MAX_FALLBACK_RETRIES) {
            let mut u = url.clone();
            if u.set_host(host.host_str()).is_err()
                || u.set_scheme(host.scheme()).is_err()
                || u.set_port(host.port()).is_err()
            {
                continue;
            }
            tracing::info!(op, fallback = %u, "Ably primary failed; trying a fallback host");
            last = rb_for(u.clone()).send().await;
            last_url = u;
            if !retryable(&last) {
                break;
            }
        }
        last.map(|r| (r, last_url.clone())).map_err(|e| transport(op, &last_url, &e))
    }

    pub fn base(&self) -> &Url {
        &self.base
    }

    pub fn url(&self, path: &str) -> Url {
        // Paths are built by this crate from constants and encoded channel names.
        self.base.join(path.trim_start_matches('/')).unwrap_or_else(|_| self.base.clone())
    }

    fn request(&self, method: Method, url: Url) -> reqwest::RequestBuilder {
        let mut rb = self
            .http
            .request(method, url)
            .header("X-Ably-Version", PROTOCOL_VERSION)
            .header("Ably-Agent", concat!("broker-ops/", env!("CARGO_PKG_VERSION")))
            .header("Accept", "application/json");
        if let Some(k) = &self.key {
            rb = rb.basic_auth(&k.name, Some(k.secret()));
        }
        rb
    }

    /// `GET /time` (no auth): the service time in ms and the round trip it took.
    pub async fn time(&self) -> Result<(i64, Duration), AblyError> {
        let url = self.url("time");
        let started = Instant::now();
        let (resp, url) = self
            .send("GET /time", url, |u| {
                self.http
                    .get(u)
                    .header("X-Ably-Version", PROTOCOL_VERSION)
                    .header("Ably-Agent", concat!("broker-ops/", env!("CARGO_PKG_VERSION")))
            })
            .await?;
        let body: Vec<i64> = read_json("GET /time", &url, resp).await?;
        let rtt = started.elapsed();
        match body.first() {
            Some(ms) if *ms > 0 => Ok((*ms, rtt)),
            _ => Err(AblyError::Protocol {
                op: "GET /time",
                url: crate::redact::url(url.as_str()),
                detail: "empty time array".into(),
            }),
        }
    }

    /// An authenticated GET of one page; `url` may be a resolved `next` link.
    pub async fn get_page<T: DeserializeOwned>(&self, op: &'static str, url: Url) -> Result<Page<T>, AblyError> {
        if self.key.is_none() {
            return Err(AblyError::NoKey { op });
        }
        let (resp, url) = self.send(op, url, |u| self.request(Method::GET, u)).await?;
        let links: Vec<String> = resp
            .headers()
            .get_all(reqwest::header::LINK)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect();
        let items = read_json(op, &url, resp).await?;
        let next = super::link::find(links.iter().map(String::as_str), "next")
            .and_then(|l| super::link::resolve(&url, &l).ok());
        Ok(Page { items, next })
    }

    /// An authenticated GET of one JSON document.
    pub async fn get_one<T: DeserializeOwned>(&self, op: &'static str, url: Url) -> Result<T, AblyError> {
        if self.key.is_none() {
            return Err(AblyError::NoKey { op });
        }
        let (resp, url) = self.send(op, url, |u| self.request(Method::GET, u)).await?;
        read_json(op, &url, resp).await
    }

    /// Follows `next` links until the last page or `max_pages`.
    pub async fn get_all<T: DeserializeOwned>(
        &self,
        op: &'static str,
        first: Url,
        max_pages: usize,
    ) -> Result<(Vec<T>, bool), AblyError> {
        let mut items = Vec::new();
        let mut next = Some(first);
        let mut pages = 0;
        while let Some(url) = next {
            if pages == max_pages {
                return Ok((items, true));
            }
            let page = self.get_page::<T>(op, url).await?;
            items.extend(page.items);
            next = page.next;
            pages += 1;
        }
        Ok((items, false))
    }

    /// `POST` a JSON body to `path`, returning the JSON answer.
    pub async fn post_json(&self, op: &'static str, path: &str, body: &Value) -> Result<Value, AblyError> {
        if self.key.is_none() {
            return Err(AblyError::NoKey { op });
        }
        // Not sent to fallback hosts: a caller that needs exactly-once sets message ids and
        // retries itself, and Ably deduplicates on them.
        let url = self.url(path);
        let resp =
            self.request(Method::POST, url.clone()).json(body).send().await.map_err(|e| transport(op, &url, &e))?;
        read_json(op, &url, resp).await
    }
}

fn transport(op: &'static str, url: &Url, e: &reqwest::Error) -> AblyError {
    AblyError::Transport { op, url: crate::redact::url(url.as_str()), detail: crate::http::describe(e) }
}

/// Reads a JSON body, or turns a non-2xx answer into [`AblyError::Api`] with Ably's code taken
/// from the envelope, else from `X-Ably-ErrorCode`, else a code made from the status.
async fn read_json<T: DeserializeOwned>(op: &'static str, url: &Url, resp: reqwest::Response) -> Result<T, AblyError> {
    let status = resp.status();
    let header_code =
        resp.headers().get("x-ably-errorcode").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u32>().ok());
    let header_msg = resp.headers().get("x-ably-errormessage").and_then(|v| v.to_str().ok()).map(str::to_string);
    let bytes = resp.bytes().await.map_err(|e| transport(op, url, &e))?;
    if status.is_success() {
        return serde_json::from_slice(&bytes).map_err(|e| AblyError::Protocol {
            op,
            url: url.to_string(),
            detail: format!("invalid JSON: {e}"),
        });
    }
    let info = match serde_json::from_slice::<ErrorEnvelope>(&bytes) {
        Ok(env) => env.error,
        Err(_) => ErrorInfo {
            code: header_code.unwrap_or(u32::from(status.as_u16()) * 100),
            status_code: status.as_u16(),
            message: header_msg.unwrap_or_else(|| status_text(status)),
            href: None,
        },
    };
    Err(AblyError::Api { op, url: crate::redact::url(url.as_str()), info })
}

fn status_text(status: StatusCode) -> String {
    status.canonical_reason().unwrap_or("error").to_string()
}
