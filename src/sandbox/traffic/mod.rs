//! Staging in a box: simulated customers arriving at a steady rate (Poisson, seeded), each going
//! through the paths a real one does over HTTP to the sandbox itself: Chatwoot's public API, the
//! AI worker's reply, Ably publish and SSE, the webhook into Redis and Postgres. Each chooses its
//! transport as the web app does, through the rollout's flag ([`crate::rollout::reader`]), at
//! its start and every `flag_refresh`; on real-time it holds an SSE subscription and is present
//! on its channel, on polling it polls Chatwoot and never subscribes. On real-time it also types
//! (typing start and stop before each message) and reads (a read receipt after each reply); a
//! broker's dashboard subscribes to a share of those conversations.
//!
//! The ground truth (`GET /_sandbox/traffic`): which transport each conversation used and when,
//! and every event it produced, counted. Changeable while running (`POST /_sandbox/traffic`:
//! `rate`, `paused`, `ignore_flag`).

mod customer;
mod truth;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State as AxState;
use axum::response::{IntoResponse, Response};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Exp};
use serde::Deserialize;
use tokio::sync::{RwLock, watch};

pub use truth::Truth;

use super::State;

/// The most conversations a minute the sandbox is let start: past it, its own machine (not the
/// stack it stands for) is what would be measured.
pub const MAX_RATE_PER_MIN: f64 = 3000.0;
/// The most simulated customers at once; arrivals past it are counted as shed.
pub const MAX_ACTIVE: usize = 5000;

/// What the simulated customers do.
#[derive(Debug, Clone)]
pub struct TrafficOptions {
    /// Conversations started per minute (mean of Poisson arrivals).
    pub rate_per_min: f64,
    /// Customer messages per conversation: drawn uniformly from this range.
    pub turns: (u32, u32),
    /// Mean think time before each message (exponential).
    pub think: Duration,
    /// How often the app reads the flag again for a conversation.
    pub flag_refresh: Duration,
    /// The app's polling interval on the polling transport.
    pub poll_interval: Duration,
    /// Share of real-time conversations a broker's dashboard subscribes to.
    pub dashboard_share: f64,
    /// The app does not read the flag: every conversation on real-time.
    pub ignore_flag: bool,
    /// The flag the app reads.
    pub flag: String,
    /// The app's `ENABLE_ABLY_REALTIME=false` kill switch.
    pub kill_switch: bool,
    /// How long a customer waits for a reply before giving up on it.
    pub reply_timeout: Duration,
}

impl Default for TrafficOptions {
    fn default() -> Self {
        TrafficOptions {
            rate_per_min: 60.0,
            turns: (1, 4),
            think: Duration::from_secs(5),
            flag_refresh: Duration::from_secs(30),
            poll_interval: Duration::from_secs(2),
            dashboard_share: 0.5,
            ignore_flag: false,
            flag: crate::contracts::DEFAULT_FLAG.to_string(),
            kill_switch: false,
            reply_timeout: Duration::from_secs(30),
        }
    }
}

/// Checks a rate, naming the limit.
pub fn check_rate(rate_per_min: f64) -> Result<f64, String> {
    if !(rate_per_min.is_finite() && rate_per_min > 0.0) {
        return Err(format!("traffic rate {rate_per_min}: must be more than 0 conversations a minute"));
    }
    if rate_per_min > MAX_RATE_PER_MIN {
        return Err(format!(
            "traffic rate {rate_per_min}/min: over the limit of {MAX_RATE_PER_MIN}/min one sandbox can drive and stay a \
             faithful stand-in"
        ));
    }
    Ok(rate_per_min)
}

impl TrafficOptions {
    pub fn checked(self) -> Result<Self, String> {
        check_rate(self.rate_per_min)?;
        if self.turns.0 == 0 || self.turns.0 > self.turns.1 || self.turns.1 > 100 {
            return Err(format!("traffic turns {}-{}: expected a range within 1-100", self.turns.0, self.turns.1));
        }
        if !(0.0..=1.0).contains(&self.dashboard_share) {
            return Err("traffic dashboard share must be from 0% to 100%".into());
        }
        if self.flag_refresh.is_zero() || self.poll_interval.is_zero() {
            return Err("traffic flag refresh and poll interval must be more than zero".into());
        }
        Ok(self)
    }
}

/// What can be changed while it runs.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Control {
    pub rate: f64,
    pub paused: bool,
    pub ignore_flag: bool,
}

/// `POST /_sandbox/traffic`'s body: any of the three.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlPatch {
    pub rate: Option<f64>,
    pub paused: Option<bool>,
    pub ignore_flag: Option<bool>,
}

/// The running traffic, shared by the arrival loop, the customers and the routes.
pub(crate) struct Traffic {
    pub opts: TrafficOptions,
    pub control: watch::Sender<Control>,
    pub truth: std::sync::Mutex<Truth>,
    /// The flag as the app last read it.
    pub flag: RwLock<crate::rollout::reader::Snapshot>,
    pub stop: tokio_util::sync::CancellationToken,
    /// The simulated app's HTTP clients, made once when the traffic starts: every customer
    /// shares their connection pools (a client each would parse the root certificates a
    /// thousand times over).
    pub clients: std::sync::OnceLock<customer::Clients>,
}

impl Traffic {
    pub fn new(opts: TrafficOptions) -> Traffic {
        let control = Control { rate: opts.rate_per_min, paused: false, ignore_flag: opts.ignore_flag };
        Traffic {
            control: watch::channel(control).0,
            truth: std::sync::Mutex::new(Truth::default()),
            flag: RwLock::new(crate::rollout::reader::Snapshot::unreadable(opts.kill_switch, "not read yet".into())),
            stop: tokio_util::sync::CancellationToken::new(),
            clients: std::sync::OnceLock::new(),
            opts,
        }
    }

    pub fn patch(&self, p: ControlPatch) -> Result<Control, String> {
        let mut c = *self.control.borrow();
        if let Some(r) = p.rate {
            c.rate = check_rate(r)?;
        }
        if let Some(b) = p.paused {
            c.paused = b;
        }
        if let Some(b) = p.ignore_flag {
            c.ignore_flag = b;
        }
        self.control.send_replace(c);
        Ok(c)
    }
}

/// Starts the flag reader and the arrival loop.
pub(crate) fn start(state: Arc<State>, seed: Option<u64>) -> Vec<tokio::task::JoinHandle<()>> {
    let Some(traffic) = state.traffic.clone() else { return Vec::new() };
    match customer::Clients::new(&state) {
        Ok(c) => {
            let _ = traffic.clients.set(c);
        }
        Err(e) => {
            super::lock(&traffic.truth).failed_early(format!("clients: {e}"));
            return Vec::new();
        }
    }
    let reader = tokio::spawn(read_flag(state.clone(), traffic.clone()));
    let arrivals = tokio::spawn(arrivals(state, traffic, seed));
    vec![reader, arrivals]
}

/// Reads the flag every second (each conversation looks at it when it starts and every
/// `flag_refresh`; the app's own read is at most a second older than the table).
async fn read_flag(state: Arc<State>, t: Arc<Traffic>) {
    let db = match &state.opts.database_url {
        Some(url) => {
            use secrecy::ExposeSecret;
            let pg = crate::store::postgres::Pg::connect(url.expose_secret(), state.opts.connect_timeout).await;
            match pg {
                Ok(pg) => crate::rollout::store::Db::of(pg, state.opts.contracts.flags.clone())
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            }
        }
        None => Err("the sandbox has no database (--mirror or --database-url)".into()),
    };
    loop {
        let snap = match &db {
            Ok(db) => crate::rollout::reader::read(Some(db), &t.opts.flag, t.opts.kill_switch).await,
            Err(e) => crate::rollout::reader::Snapshot::unreadable(t.opts.kill_switch, e.clone()),
        };
        super::lock(&t.truth).flag_read(snap.unreadable.clone());
        *t.flag.write().await = snap;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = t.stop.cancelled() => return,
        }
    }
}

/// Poisson arrivals at the control's rate; a change of rate or a pause takes effect at once.
async fn arrivals(state: Arc<State>, t: Arc<Traffic>, seed: Option<u64>) {
    let mut rng = match seed {
        Some(s) => StdRng::seed_from_u64(s ^ 0x0074_7261_6666_6963),
        None => StdRng::from_os_rng(),
    };
    let mut control = t.control.subscribe();
    let mut n = 0u64;
    loop {
        let c = *control.borrow_and_update();
        if c.paused {
            tokio::select! {
                r = control.changed() => if r.is_err() { return },
                _ = t.stop.cancelled() => return,
            }
            continue;
        }
        // The rate was checked positive and finite, so the distribution exists.
        let gap = Exp::new(c.rate / 60.0).map(|e| e.sample(&mut rng)).unwrap_or(1.0);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs_f64(gap.min(3600.0))) => {}
            r = control.changed() => { if r.is_err() { return } continue }
            _ = t.stop.cancelled() => return,
        }
        n += 1;
        let plan = customer::Plan::draw(&t.opts, &mut rng, n);
        if super::lock(&t.truth).active() >= MAX_ACTIVE {
            super::lock(&t.truth).shed += 1;
            continue;
        }
        tokio::spawn(customer::run(state.clone(), t.clone(), plan));
    }
}

/// `GET /_sandbox/traffic`: the control and the ground truth.
pub(crate) async fn get(AxState(state): AxState<Arc<State>>) -> Response {
    let Some(t) = &state.traffic else { return not_running() };
    let control = *t.control.borrow();
    let mut body = super::lock(&t.truth).json(control, &t.opts, chrono::Utc::now().timestamp_millis());
    // Every SSE stream the sandbox holds: the customers', the dashboards' and any other client's.
    body["held_streams"] = state.sse_connections.load(std::sync::atomic::Ordering::Relaxed).into();
    axum::Json(body).into_response()
}

/// `POST /_sandbox/traffic`: `{"rate": 120, "paused": false, "ignore_flag": true}` (any of them).
pub(crate) async fn post(AxState(state): AxState<Arc<State>>, body: axum::body::Bytes) -> Response {
    use axum::http::StatusCode;
    let Some(t) = &state.traffic else { return not_running() };
    let patch: ControlPatch = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => {
            return (StatusCode::BAD_REQUEST, axum::Json(serde_json::json!({"error": e.to_string()}))).into_response();
        }
    };
    match t.patch(patch) {
        Ok(c) => axum::Json(c).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, axum::Json(serde_json::json!({"error": e}))).into_response(),
    }
}

fn not_running() -> Response {
    let body = serde_json::json!({"error": "no traffic: start the sandbox with --traffic RATE"});
    (axum::http::StatusCode::NOT_FOUND, axum::Json(body)).into_response()
}

/// A draw in `[0, 1)`.
fn unit(rng: &mut StdRng) -> f64 {
    rng.random::<f64>()
}
