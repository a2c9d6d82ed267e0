//! The dead-man's switch, in the healthchecks.io pinging protocol: `<url>/start?rid=<uuid>` when
//! the run starts, then `<url>?rid=<uuid>` (success) or `<url>/fail?rid=<uuid>` (failure) with
//! the run's summary as the body. The same run id ties the two together, so the service can
//! time the run and tell overlapping runs apart. A ping that fails is a note in the report:
//! the monitor's own result never depends on the pinging service.

use std::time::Duration;

use url::Url;

use crate::retry::{Attempt, RetryPolicy, Retrying};

/// Healthchecks.io keeps at most this much of a ping's body.
const MAX_BODY: usize = 100_000;

pub struct Pinger {
    base: String,
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

/// Three tries, quickly: the service advises retrying (a lost ping is a false alarm), and a run
/// must not wait long on it.
fn policy() -> RetryPolicy {
    RetryPolicy {
        budget: Duration::from_secs(5),
        attempts: 3,
        min_delay: Duration::from_millis(200),
        max_delay: Duration::from_secs(1),
    }
}

impl Pinger {
    pub fn new(url: &Url, timeout: Duration) -> Pinger {
        Pinger { base: url.as_str().trim_end_matches('/').to_string(), client: crate::http::client(timeout) }
    }

    /// The address shown in errors: scheme and host only, since the path of a ping URL is
    /// what lets anyone ping the check.
    fn shown(&self) -> String {
        Url::parse(&self.base)
            .map_or_else(|_| "the ping URL".into(), |u| format!("{}://{}/…", u.scheme(), u.host_str().unwrap_or("")))
    }

    /// The run `rid` (a UUID, as the protocol requires) has started.
    pub async fn start(&self, rid: &str) -> Result<(), String> {
        self.send("start", format!("{}/start", self.base), rid, String::new()).await
    }

    /// The run `rid` has ended.
    pub async fn finish(&self, rid: &str, signal: Signal, body: &str) -> Result<(), String> {
        let (op, url) = match signal {
            Signal::Success => ("success", self.base.clone()),
            Signal::Fail => ("fail", format!("{}/fail", self.base)),
        };
        self.send(op, url, rid, crate::output::truncate(body, MAX_BODY)).await
    }

    /// One ping, retried on a network error or a 5xx.
    async fn send(&self, op: &str, url: String, rid: &str, body: String) -> Result<(), String> {
        let mut retrying = Retrying::new(&policy());
        loop {
            let outcome = match self.client.post(&url).query(&[("rid", rid)]).body(body.clone()).send().await {
                Ok(r) if r.status().is_success() => Attempt::Done(()),
                Ok(r) if r.status().is_server_error() => Attempt::Transient(format!("HTTP {}", r.status().as_u16())),
                Ok(r) => Attempt::Rejected(format!("HTTP {}", r.status().as_u16())),
                // describe() reads the error's causes, not reqwest's own text, which holds the URL.
                Err(e) => Attempt::Transient(crate::http::describe(&e)),
            };
            if let std::ops::ControlFlow::Break(result) = retrying.settle(outcome).await {
                let attempts = retrying.attempts();
                return result.map_err(|f| {
                    format!("healthchecks ping {op} at {}: {} (after {attempts} attempt(s))", self.shown(), f.reason)
                });
            }
        }
    }
}
