//! The dead-man's switch, in the healthchecks.io pinging protocol: `<url>/start?rid=<uuid>` when
//! the run starts, then `<url>?rid=<uuid>` (success) or `<url>/fail?rid=<uuid>` (failure) with
//! the run's summary as the body. The same run id ties the two together, so the service can
//! time the run and tell overlapping runs apart. A ping that fails is a warning: the monitor's
//! own result never depends on the pinging service.

use std::time::Duration;

use url::Url;

/// Healthchecks.io keeps at most this much of a ping's body.
const MAX_BODY: usize = 100_000;
const ATTEMPTS: u32 = 3;

pub struct Pinger {
    base: String,
    /// The run id (a UUID, as the protocol requires).
    pub rid: String,
    client: reqwest::Client,
}

/// How a run ends, for the ping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Success,
    Fail,
}

impl Signal {
    /// Success while the sweep is OK or WARNING; CRITICAL or UNKNOWN is a failure.
    pub fn of(state: crate::exit::ProbeState) -> Signal {
        use crate::exit::ProbeState;
        match state {
            ProbeState::Ok | ProbeState::Warning => Signal::Success,
            ProbeState::Critical | ProbeState::Unknown => Signal::Fail,
        }
    }
}

impl Pinger {
    pub fn new(url: &Url, rid: &str, timeout: Duration) -> Pinger {
        Pinger {
            base: url.as_str().trim_end_matches('/').to_string(),
            rid: rid.to_string(),
            client: crate::http::client(timeout),
        }
    }

    /// The address shown in errors: scheme and host only, since the path of a ping URL is
    /// what lets anyone ping the check.
    fn shown(&self) -> String {
        Url::parse(&self.base)
            .map_or_else(|_| "the ping URL".into(), |u| format!("{}://{}/…", u.scheme(), u.host_str().unwrap_or("")))
    }

    pub async fn start(&self) -> Result<(), String> {
        self.send("start", format!("{}/start", self.base), String::new()).await
    }

    pub async fn finish(&self, signal: Signal, body: &str) -> Result<(), String> {
        let (op, url) = match signal {
            Signal::Success => ("success", self.base.clone()),
            Signal::Fail => ("fail", format!("{}/fail", self.base)),
        };
        self.send(op, url, crate::output::truncate(body, MAX_BODY)).await
    }

    /// One ping, tried up to three times on a network error or a 5xx (the service advises
    /// retrying: a lost ping is a false alarm).
    async fn send(&self, op: &str, url: String, body: String) -> Result<(), String> {
        let mut last = String::new();
        for attempt in 1..=ATTEMPTS {
            let sent = self.client.post(&url).query(&[("rid", &self.rid)]).body(body.clone()).send().await;
            match sent {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) if r.status().is_server_error() => last = format!("HTTP {}", r.status().as_u16()),
                Ok(r) => {
                    return Err(format!("healthchecks ping {op} at {}: HTTP {}", self.shown(), r.status().as_u16()));
                }
                Err(e) => last = crate::http::describe(&e),
            }
            if attempt < ATTEMPTS {
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
            }
        }
        Err(format!("healthchecks ping {op} at {}: {last} (after {ATTEMPTS} attempts)", self.shown()))
    }
}
