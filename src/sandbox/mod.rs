//! `broker-ops sandbox`: a local stand-in for what no test machine can reach. One HTTP port
//! serves the Chatwoot Client API (plus the Application API calls broker-ops needs), Ably REST
//! and SSE, and an AI worker that answers every customer message after a drawn latency.
//! Optionally it mirrors every message into Redis and Postgres through the path production uses
//! (an Ably webhook rule sending signed batches to a receiver at the app's route, which writes
//! both stores), with faults settable at run time, and passes jobs through a BullMQ-layout
//! queue, as the production worker does.
//!
//! It is a library module so that tests and `sla smoke --sandbox` start it in-process on port 0.

mod ably_api;
mod ably_auth;
mod channels;
mod chatwoot_api;
pub mod faults;
pub mod latency;
mod options;
pub mod receiver;
mod resume;
mod sinks;
mod slack;
mod sse;
mod stats;
mod store;
pub mod tls;
pub mod traffic;
pub mod webhook;
mod worker;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State as AxState};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use secrecy::ExposeSecret;
use serde::Serialize;
use tokio::sync::{mpsc, watch};

pub use faults::Faults;
pub use latency::{LatencyModel, Stall};
pub use options::{SandboxOptions, Summary};

use crate::ably::{ErrorInfo, Message};
use crate::config::AblyKey;
use crate::store::MirrorError;

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("sandbox: binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("sandbox: {0}")]
    Option(String),
    #[error("sandbox: {0}")]
    Mirror(#[from] MirrorError),
}

/// One reply the AI worker gave (or failed to give): the ground truth benchmarks compare with.
#[derive(Debug, Clone, Serialize)]
pub struct TruthRecord {
    pub conversation_id: u64,
    pub message_id: u64,
    pub reply_id: Option<u64>,
    /// From the moment the sandbox accepted the customer's message to the moment the reply
    /// was published, in microseconds.
    pub latency_us: Option<u64>,
    pub outcome: &'static str,
    pub sla_warning: bool,
    pub sla_violation: bool,
}

impl TruthRecord {
    /// A message that got no reply, for `outcome`.
    pub fn unanswered(conversation_id: u64, message_id: u64, outcome: &'static str) -> TruthRecord {
        TruthRecord {
            conversation_id,
            message_id,
            reply_id: None,
            latency_us: None,
            outcome,
            sla_warning: false,
            sla_violation: false,
        }
    }
}

/// Counters of what the mirror and queue writers did.
#[derive(Debug, Default)]
pub struct SinkCounters {
    pub mirrored: AtomicUsize,
    pub errors: AtomicUsize,
}

/// Requests the webhook receiver refused (signature absent or wrong).
#[derive(Debug, Default)]
pub struct ReceiverCounters {
    pub refused: AtomicUsize,
}

pub(crate) struct State {
    opts: SandboxOptions,
    key: AblyKey,
    inbox: String,
    api_token: String,
    channels: Mutex<channels::Channels>,
    tokens: Mutex<ably_auth::Tokens>,
    chatwoot: Mutex<store::Store>,
    truth: Mutex<Vec<TruthRecord>>,
    stats: Mutex<stats::Stats>,
    rng: Mutex<StdRng>,
    sink: Option<mpsc::UnboundedSender<sinks::JobOp>>,
    sink_counters: Arc<SinkCounters>,
    sse_connections: AtomicUsize,
    /// Typing and read events: publish → each subscriber's stream (the delivery record).
    deliveries: Mutex<Deliveries>,
    faults: Arc<Mutex<Faults>>,
    emitter: Option<webhook::Emitter>,
    stores: Option<tokio::sync::Mutex<receiver::Stores>>,
    pipeline: Mutex<receiver::PipelineLog>,
    receiver: ReceiverCounters,
    /// What was posted to the Slack stand-in.
    slack: Mutex<Vec<serde_json::Value>>,
    /// Set by `shutdown`: jobs waiting for a paused worker give up.
    stopping: std::sync::atomic::AtomicBool,
    /// The sandbox's own address, for the simulated customers.
    base: url::Url,
    traffic: Option<Arc<traffic::Traffic>>,
}

/// Locks a mutex; a poisoned lock means a handler panicked mid-update, after which the
/// sandbox's state cannot be trusted, so the panic is carried on.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().expect("sandbox state lock poisoned")
}

impl State {
    /// Where the simulated customers reach the sandbox.
    fn self_url(&self) -> url::Url {
        self.base.clone()
    }

    fn now_ms() -> i64 {
        chrono::Utc::now().timestamp_millis()
    }

    /// The pipeline faults in force now.
    fn faults(&self) -> Faults {
        lock(&self.faults).clone()
    }

    fn chance(&self, p: f64) -> bool {
        p > 0.0 && lock(&self.rng).random::<f64>() < p
    }

    /// Publishes on a channel with Ably's rules, counts it, and hands what was delivered on a
    /// conversation channel to the webhook rule.
    fn publish(&self, channel: &str, messages: Vec<Message>) -> Result<channels::Published, ErrorInfo> {
        let n = messages.len();
        let at = Instant::now();
        let result = lock(&self.channels).publish(channel, messages, Self::now_ms());
        let mut stats = lock(&self.stats);
        match &result {
            Ok(p) => stats.published(p.delivered.len(), lock(&self.channels).map.len()),
            Err(e) if e.status_code == 429 || e.status_code == 413 => stats.refused(n),
            Err(_) => stats.failed(n),
        }
        drop(stats);
        if let (Ok(p), Some(emitter)) = (&result, &self.emitter)
            && !p.delivered.is_empty()
            && self.opts.contracts.conversation_of(channel).is_some()
        {
            let mut log = lock(&self.pipeline);
            for s in &p.delivered {
                log.published(s.message.id.as_deref().unwrap_or_default(), at);
            }
            drop(log);
            let messages = p.delivered.iter().map(|s| s.message.clone()).collect();
            let dropped = self.chance(self.faults().webhook_drop_rate);
            emitter.enqueue(channel, messages, dropped, Self::now_ms());
        }
        result
    }
}

/// The delivery record of typing indicators and read receipts: from the publish to the moment
/// each subscriber's stream is handed the frame.
#[derive(Default)]
pub(crate) struct Deliveries {
    typing: crate::histogram::LatencyHistogram,
    read: crate::histogram::LatencyHistogram,
}

impl Deliveries {
    pub(crate) fn json(&self) -> serde_json::Value {
        let p = |h: &crate::histogram::LatencyHistogram| {
            (!h.is_empty()).then(|| {
                serde_json::json!({"count": h.count(), "p50": h.percentile_ms(50.0), "p95": h.percentile_ms(95.0),
                                   "p99": h.percentile_ms(99.0), "max": h.max_ms()})
            })
        };
        serde_json::json!({"typing": p(&self.typing), "read": p(&self.read)})
    }
}

impl State {
    /// Notes the delivery of a typing or read event to one subscriber.
    fn delivered_extra(&self, s: &channels::Stored) {
        let Some(extra) = s.message.name.as_deref().and_then(|n| self.opts.contracts.extra_kind(n)) else { return };
        let took = s.at.elapsed();
        let mut d = lock(&self.deliveries);
        match extra {
            crate::contracts::Extra::Read => d.read.record(took),
            _ => d.typing.record(took),
        }
    }
}

/// A running sandbox.
pub struct Sandbox {
    pub addr: SocketAddr,
    /// `https` when it serves TLS, else `http`.
    scheme: &'static str,
    state: Arc<State>,
    shutdown: watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
    sink_task: Option<tokio::task::JoinHandle<()>>,
    emitter_task: Option<tokio::task::JoinHandle<()>>,
    traffic_tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Sandbox {
    /// Binds, connects the optional mirrors, and starts serving.
    pub async fn start(opts: SandboxOptions) -> Result<Sandbox, SandboxError> {
        let key_text = match &opts.key {
            Some(k) => k.expose_secret().to_string(),
            None => format!("sandboxapp.keyid:{}", channels::random_id() + &channels::random_id()),
        };
        let key =
            AblyKey::parse(&key_text).map_err(|e| SandboxError::Option(format!("BROKER_OPS_SANDBOX_KEY: {e}")))?;
        if !opts.listen.ip().is_loopback() && !opts.allow_remote {
            return Err(SandboxError::Option(format!(
                "--listen {} is not a loopback address: the sandbox hands its keys to anyone who asks; \
                 pass --allow-remote to serve there anyway",
                opts.listen
            )));
        }
        if opts.sse_keepalive.is_zero() || opts.faults.sse_drop_after.is_some_and(|d| d.is_zero()) {
            return Err(SandboxError::Option("SSE keepalive and drop intervals must be more than zero".into()));
        }
        // The faults at start, from here on changed only through `/_sandbox/faults`.
        let mut live = opts.faults.clone().checked().map_err(SandboxError::Option)?;
        let started = sinks::start(&opts).await?;
        let listener = tokio::net::TcpListener::bind(opts.listen)
            .await
            .map_err(|source| SandboxError::Bind { addr: opts.listen, source })?;
        let addr = listener.local_addr().map_err(|source| SandboxError::Bind { addr: opts.listen, source })?;
        let acceptor = opts.tls.as_ref().map(tls::acceptor).transpose().map_err(SandboxError::Option)?;
        let scheme = if acceptor.is_some() { "https" } else { "http" };
        // A `--stall` counts from the start.
        live.stall_from = Some(Instant::now());
        let faults = Arc::new(Mutex::new(live));
        let target = match (&opts.webhook_url, &started.stores) {
            (Some(u), _) => Some(u.clone()),
            // `http://` and a socket address always make a valid URL.
            (None, Some(_)) => Some(url::Url::parse(&format!("{scheme}://{addr}{}", receiver::PATH)).expect("a URL")),
            (None, None) => None,
        };
        let (emitter, emitter_task) = match target {
            Some(url) => {
                let (e, t) = webhook::Emitter::start(webhook::Target {
                    url,
                    key: key.clone(),
                    timeout: opts.connect_timeout,
                    interval: opts.webhook_interval,
                    faults: faults.clone(),
                });
                (Some(e), Some(t))
            }
            None => (None, None),
        };
        if opts.traffic.is_some() && opts.tls.is_some() {
            return Err(SandboxError::Option(
                "--traffic with --tls-cert: the simulated customers reach the sandbox over plain HTTP on loopback; \
                 run the traffic without TLS"
                    .into(),
            ));
        }
        let traffic = opts
            .traffic
            .clone()
            .map(|t| t.checked().map(|t| Arc::new(traffic::Traffic::new(t))))
            .transpose()
            .map_err(SandboxError::Option)?;
        // `http://` and a socket address always make a valid URL.
        let base = url::Url::parse(&format!("{scheme}://{addr}")).expect("a socket address URL");
        let rng = match opts.seed {
            Some(s) => StdRng::seed_from_u64(s),
            None => StdRng::from_os_rng(),
        };
        let state = Arc::new(State {
            inbox: opts.inbox.clone().unwrap_or_else(|| format!("sbx{}", channels::random_id())),
            api_token: opts
                .api_token
                .as_ref()
                .map(|t| t.expose_secret().to_string())
                .unwrap_or_else(channels::random_id),
            key,
            channels: Mutex::default(),
            tokens: Mutex::default(),
            chatwoot: Mutex::new(store::Store::new()),
            truth: Mutex::default(),
            stats: Mutex::default(),
            rng: Mutex::new(rng),
            sink: started.sink,
            sink_counters: started.counters,
            sse_connections: AtomicUsize::new(0),
            deliveries: Mutex::default(),
            faults,
            emitter,
            stores: started.stores.map(tokio::sync::Mutex::new),
            pipeline: Mutex::default(),
            receiver: ReceiverCounters::default(),
            stopping: Default::default(),
            slack: Mutex::new(Vec::new()),
            base,
            traffic,
            opts,
        });
        let (shutdown, rx) = watch::channel(false);
        let app = router(state.clone());
        let server = tokio::spawn(serve(listener, acceptor, app, rx));
        let traffic_tasks = traffic::start(state.clone(), state.opts.seed);
        Ok(Sandbox { addr, scheme, state, shutdown, server, sink_task: started.task, emitter_task, traffic_tasks })
    }

    pub fn base_url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// The base URL, parsed.
    pub fn url(&self) -> url::Url {
        // `http://` and a socket address always make a valid URL.
        url::Url::parse(&self.base_url()).expect("a socket address URL")
    }

    pub fn key(&self) -> &AblyKey {
        &self.state.key
    }

    pub fn inbox(&self) -> &str {
        &self.state.inbox
    }

    pub fn api_token(&self) -> String {
        self.state.api_token.clone()
    }

    pub fn account_id(&self) -> u64 {
        self.state.opts.account_id
    }

    /// The environment that points broker-ops at this sandbox, as `(name, value)` pairs.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("ABLY_REST_URL", self.base_url()),
            ("ABLY_API_KEY", self.state.key.full()),
            ("CHATWOOT_BASE_URL", self.base_url()),
            ("CHATWOOT_INBOX_IDENTIFIER", self.state.inbox.clone()),
            ("CHATWOOT_API_TOKEN", self.state.api_token.clone()),
            ("CHATWOOT_ACCOUNT_ID", self.state.opts.account_id.to_string()),
        ]
    }

    /// Where it listens and the environment pointing at it.
    pub fn summary(&self) -> Summary {
        Summary {
            listen: self.addr,
            ai_latency: self.state.faults().ai_latency.to_string(),
            mirrors: self.state.opts.mirrors(),
            webhook: self.state.emitter.as_ref().map(|e| crate::redact::url(e.url.as_str())),
            env: self.env(),
        }
    }

    /// The replies given so far.
    pub fn ground_truth(&self) -> Vec<TruthRecord> {
        lock(&self.state.truth).clone()
    }

    pub fn sink_counters(&self) -> (usize, usize) {
        let c = &self.state.sink_counters;
        (c.mirrored.load(Ordering::Relaxed), c.errors.load(Ordering::Relaxed))
    }

    /// The webhook emitter's counters (delivered, failed, dropped, pending items).
    pub fn webhook_counters(&self) -> Option<serde_json::Value> {
        self.state.emitter.as_ref().map(|e| e.counters.json())
    }

    /// Changes the traffic (as `POST /_sandbox/traffic` does); refused values change nothing.
    pub fn set_traffic(&self, patch: traffic::ControlPatch) -> Result<traffic::Control, String> {
        let t = self.state.traffic.as_ref().ok_or("no traffic: start the sandbox with --traffic RATE")?;
        t.patch(patch)
    }

    /// Sets pipeline faults (as `POST /_sandbox/faults` does); refused values change nothing.
    pub fn set_faults(&self, patch: faults::FaultsPatch) -> Result<Faults, String> {
        let mut f = lock(&self.state.faults);
        *f = f.patched(patch)?;
        Ok(f.clone())
    }

    /// Lets the webhook deliver what is queued (at most 10 s: a failing receiver would hold it
    /// for minutes), stops accepting requests, lets the queue writer drain, and waits for all.
    pub async fn shutdown(self) {
        // The simulated customers leave first, so their last messages are mirrored below.
        if let Some(t) = &self.state.traffic {
            t.stop.cancel();
        }
        for t in &self.traffic_tasks {
            t.abort();
        }
        if let Some(e) = &self.state.emitter {
            let deadline = Instant::now() + Duration::from_secs(10);
            while e.counters.pending.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        let _ = self.shutdown.send(true);
        self.state.stopping.store(true, Ordering::Relaxed);
        let Sandbox { server, sink_task, emitter_task, state, .. } = self;
        // Open SSE streams hold the server open; give them a moment, then stop regardless.
        let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
        // The sink stops when the last sender (held by the state) is gone.
        drop(state);
        for t in [sink_task, emitter_task].into_iter().flatten() {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
    }
}

/// Serves `app` on `listener` (over TLS with `acceptor`) until the shutdown signal.
async fn serve(
    listener: tokio::net::TcpListener,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    app: Router,
    mut stop: watch::Receiver<bool>,
) {
    let stopped = async move {
        let _ = stop.wait_for(|stop| *stop).await;
    };
    let served = match acceptor {
        Some(acceptor) => {
            let listener = tls::TlsListener { inner: listener, acceptor };
            axum::serve(listener, app).with_graceful_shutdown(stopped).await
        }
        None => {
            // Small SSE frames must leave at once: without TCP_NODELAY, Nagle's algorithm and
            // delayed ACKs add ~40 ms to a reply, which would falsify every measurement.
            let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::warn!("sandbox: TCP_NODELAY: {e}");
                }
            });
            axum::serve(listener, app).with_graceful_shutdown(stopped).await
        }
    };
    if let Err(e) = served {
        tracing::error!("sandbox server stopped: {e}");
    }
}

fn router(state: Arc<State>) -> Router {
    use axum::routing::post;
    Router::new()
        .merge(ably_api::routes().layer(axum::middleware::from_fn_with_state(state.clone(), ably_api::count_requests)))
        .merge(sse::routes())
        .merge(chatwoot_api::routes())
        .layer(axum::middleware::from_fn_with_state(state.clone(), faults))
        .merge(sandbox_routes())
        // The app's route stands apart from the API fault layer: it has faults of its own.
        .route(receiver::PATH, post(receiver::receive))
        .route(&state.opts.contracts.resume_path.clone(), axum::routing::get(resume::get).post(resume::post))
        .with_state(state)
}

fn sandbox_routes() -> Router<Arc<State>> {
    use axum::routing::get;
    Router::new()
        .route("/_sandbox/ground-truth", get(ground_truth))
        .route("/_sandbox/health", get(|| async { "ok" }))
        .route("/_sandbox/faults", get(faults::get_faults).post(faults::set_faults))
        .route("/_sandbox/mirror", get(receiver::report))
        .route("/_sandbox/slack", get(slack::list))
        .route("/_sandbox/traffic", get(traffic::get).post(traffic::post))
        .route(slack::PATH, axum::routing::post(slack::post))
}

async fn ground_truth(AxState(state): AxState<Arc<State>>) -> Response {
    let records = lock(&state.truth).clone();
    let mut lat: Vec<u64> = records.iter().filter_map(|r| r.latency_us).collect();
    lat.sort_unstable();
    let pct = |p: f64| -> Option<f64> {
        if lat.is_empty() {
            return None;
        }
        // Nearest rank, as hdrhistogram's value_at_quantile reports.
        let rank = ((p / 100.0) * lat.len() as f64).ceil().max(1.0) as usize;
        Some(lat[rank.min(lat.len()) - 1] as f64 / 1000.0)
    };
    let (mirrored, errors) =
        (state.sink_counters.mirrored.load(Ordering::Relaxed), state.sink_counters.errors.load(Ordering::Relaxed));
    axum::Json(serde_json::json!({
        "schema_version": 1,
        "ai_latency": state.faults().ai_latency.to_string(),
        "count": records.len(),
        "replied": lat.len(),
        "failed": records.len() - lat.len(),
        "reply_ms": { "p50": pct(50.0), "p90": pct(90.0), "p95": pct(95.0), "p99": pct(99.0), "max": lat.last().map(|v| *v as f64 / 1000.0) },
        "mirror": { "written": mirrored, "errors": errors },
        "extras_delivery_ms": lock(&state.deliveries).json(),
        "records": records,
    }))
    .into_response()
}

/// Fault injection for every API route: `--stall` holds requests until the stall ends,
/// `--http-error-rate` answers 500 in the service's own error format.
async fn faults(AxState(state): AxState<Arc<State>>, req: Request, next: Next) -> Response {
    let faults = state.faults();
    if let Some(until) = faults.stalled_until(Instant::now()) {
        tokio::time::sleep_until(until.into()).await;
    }
    let path = req.uri().path().to_string();
    if state.chance(faults.http_error_rate) {
        if path.starts_with("/public/") || path.starts_with("/api") {
            return chatwoot_api::error(axum::http::StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
        }
        lock(&state.stats).failed(0);
        return ably_auth::error_response(&ErrorInfo::new(500, 50000, "Internal error (sandbox --http-error-rate)"));
    }
    next.run(req).await
}

/// The sandbox as the smoke's own target (`sla smoke --sandbox`): the smoke stops it.
impl crate::sla::OwnedTarget for Sandbox {
    fn target(&self, timeout: std::time::Duration) -> crate::sla::Target {
        let base = self.url();
        let chatwoot = crate::chatwoot::ChatwootClient::new(
            base.clone(),
            Some(self.inbox().to_string()),
            Some(self.api_token().into()),
            Some(self.account_id()),
            timeout,
        );
        crate::sla::Target {
            chatwoot,
            label: format!("sandbox {base}"),
            ably: Some((base, self.key().clone())),
            can_clean_up: true,
        }
    }

    fn stop(self: Box<Self>) -> futures::future::BoxFuture<'static, ()> {
        Box::pin(self.shutdown())
    }
}
