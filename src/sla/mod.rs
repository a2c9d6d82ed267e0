//! `sla smoke`: real smoke chats end to end, measured honestly, judged against thresholds.
//!
//! Workers (one task per chat) send their outcome to one aggregator, which keeps an HDR
//! histogram per phase, counts SLA events and errors, reports progress and decides when a run
//! can no longer pass (`--abort-on-fail`). The report renders as a table, JSON, Markdown and
//! JUnit. `merge` combines the histogram logs of several runs into one exact result.

pub mod chat;
pub mod driver;
pub mod extras;
pub mod figures;
pub mod files;
pub mod html;
pub mod merge;
pub mod path;
pub mod report;
pub mod scenario;
pub mod soak;
pub mod threshold;
pub mod timeline;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, mpsc, watch};
use tokio_util::sync::CancellationToken;

pub use crate::histogram::LatencyHistogram;
pub use chat::{ChatContext, Phase, Transport};
pub use report::{SmokeReport, Verdict};
pub use scenario::Scenario;
pub use threshold::Threshold;

use crate::chatwoot::ChatwootClient;
use crate::config::AblyKey;
use crate::contracts::Contracts;

mod num_like {
    /// Checked addition of the aggregate's count types.
    pub trait Checked: Sized + Copy {
        fn checked(self, other: Self) -> Option<Self>;
    }
    impl Checked for usize {
        fn checked(self, other: Self) -> Option<Self> {
            self.checked_add(other)
        }
    }
    impl Checked for u64 {
        fn checked(self, other: Self) -> Option<Self> {
            self.checked_add(other)
        }
    }
}

/// How chats are started.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Schedule {
    /// At most `concurrency` chats at once; each starts when one ends.
    Closed { concurrency: usize },
    /// A chat every `1/rate` seconds whatever the system does; latency also counts from each
    /// chat's intended start (coordinated-omission correction, as wrk2 does it).
    Open { rate_per_s: f64, max_in_flight: usize },
}

/// Where the smoke chats go.
#[derive(Clone)]
pub struct Target {
    pub chatwoot: ChatwootClient,
    /// Shown in reports (no secrets in it).
    pub label: String,
    pub ably: Option<(url::Url, AblyKey)>,
    /// Whether the Application API is configured, so smoke conversations can be resolved.
    pub can_clean_up: bool,
}

impl Target {
    /// The configured target: Chatwoot required, Ably optional (without it, replies are polled).
    pub fn from_config(c: &crate::config::Config) -> Result<Target, crate::config::ConfigError> {
        let base = c.require("CHATWOOT_BASE_URL", &c.chatwoot_base_url)?;
        let inbox = c.require("CHATWOOT_INBOX_IDENTIFIER", &c.chatwoot_inbox_identifier)?;
        let token = c.chatwoot_api_token.as_ref().map(|s| s.value.clone());
        let account = c.chatwoot_account_id.as_ref().map(|s| s.value);
        let can_clean_up = token.is_some() && account.is_some();
        let chatwoot =
            ChatwootClient::new(base.value.clone(), Some(inbox.value.clone()), token, account, c.timeout.value);
        let ably = c.ably_api_key.as_ref().map(|k| (c.ably_rest_url.value.clone(), k.value.clone()));
        let label = crate::redact::url(base.value.as_str());
        Ok(Target { chatwoot, label, ably, can_clean_up })
    }
}

/// A target started for this run alone (the built-in sandbox): the smoke hands its chats to it
/// and stops it on every way out, a failed run included.
pub trait OwnedTarget: Send {
    /// Where the chats go, each call bounded by `timeout`.
    fn target(&self, timeout: Duration) -> Target;
    /// Stops it (its servers, its writers) and waits for that.
    fn stop(self: Box<Self>) -> futures::future::BoxFuture<'static, ()>;
}

/// [`smoke`] against a target of its own, started for the run (the options are made for it),
/// stopped when the run ends, however it ends.
pub async fn smoke_owning(
    owned: Box<dyn OwnedTarget>,
    timeout: Duration,
    options: impl FnOnce(Target) -> SmokeOptions,
    cancel: CancellationToken,
    progress: Option<watch::Sender<Progress>>,
) -> Result<SmokeReport, SmokeError> {
    let opts = options(owned.target(timeout));
    let report = smoke(opts, cancel, progress).await;
    owned.stop().await;
    report
}

#[derive(Clone)]
pub struct SmokeOptions {
    pub target: Target,
    pub chats: usize,
    pub schedule: Schedule,
    pub turns: usize,
    pub scenario: Scenario,
    pub transport: Transport,
    pub reply_timeout: Duration,
    pub poll_interval: Duration,
    pub thresholds: Vec<Threshold>,
    pub abort_on_fail: bool,
    /// Resolve and label the smoke conversations afterwards (when the target allows it).
    pub cleanup_allowed: bool,
    pub timeout: Duration,
    pub contracts: Contracts,
    /// A tick late past this counts towards saturation (5 of any 50 ticks: see [`driver`]).
    pub max_driver_lag: Duration,
    /// The command line as typed (secrets never appear in it: no flag takes one).
    pub command: String,
    /// Typing and read events published and timed to a second subscriber (SSE transport).
    pub extras: bool,
    /// Run for a duration at the open loop's rate, summarised per interval (`chats` unused).
    pub soak: Option<soak::SoakPlan>,
}

impl SmokeOptions {
    /// The chats the run means to start: `chats`, or for a soak its duration at its rate.
    pub fn planned(&self) -> usize {
        match (&self.soak, self.schedule) {
            (Some(p), Schedule::Open { rate_per_s, .. }) => {
                (p.duration.as_secs_f64() * rate_per_s).ceil().min(usize::MAX as f64) as usize
            }
            _ => self.chats,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SmokeError {
    #[error("sla smoke: {0}")]
    Options(String),
    #[error(
        "Ably {0}: refusing to send Basic auth over plain HTTP to a non-loopback host (Ably answers this with 40103); use https://"
    )]
    InsecureBasicAuth(String),
}

/// A progress snapshot for the progress bar.
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    pub planned: usize,
    pub done: usize,
    pub failed: usize,
    pub p95_ms: f64,
}

/// Everything the aggregator has seen.
#[derive(Debug, Clone, Default)]
pub struct Aggregate {
    pub phases: BTreeMap<Phase, LatencyHistogram>,
    /// Open loop only: reply latency counted from each chat's intended start.
    pub corrected: Option<LatencyHistogram>,
    pub total: usize,
    pub ok: usize,
    pub failed: usize,
    pub cancelled: usize,
    pub warnings: u64,
    pub violations: u64,
    /// Error kind → (count, one full example).
    pub errors: BTreeMap<String, (usize, String)>,
    /// Chats that failed before a message went in (contact, conversation, subscription, post):
    /// the target's fault, not a reply's.
    pub setup_failures: usize,
    /// Presence events the chats' dashboards saw.
    pub presence: extras::PresenceSeen,
    /// Reply times by when they came (empty for merged runs: the logs carry histograms only).
    pub timeline: timeline::Timeline,
    /// The replies' path times (empty for merged runs and polling runs).
    pub path: path::PathWitness,
}

impl Aggregate {
    fn add(&mut self, o: &chat::ChatOutcome, open_loop: bool) {
        if o.cancelled {
            self.cancelled += 1;
            return;
        }
        self.total += 1;
        for (phase, d) in &o.phases {
            self.phases.entry(*phase).or_default().record(*d);
        }
        if open_loop && let Some(c) = o.corrected_first_reply {
            self.corrected.get_or_insert_with(LatencyHistogram::new).record(c);
        }
        self.warnings += u64::from(o.warnings);
        self.violations += u64::from(o.violations);
        self.presence.add(o.presence);
        o.path_ms.iter().for_each(|(path, reply)| self.path.record(*path, *reply));
        match &o.failure {
            None => self.ok += 1,
            Some(f) => {
                self.failed += 1;
                self.setup_failures += usize::from(f.setup);
                let e = self.errors.entry(f.kind.clone()).or_insert((0, f.detail.clone()));
                e.0 += 1;
            }
        }
    }

    /// Adds another run's aggregate (for `sla merge`): histograms merge exactly, counts add up.
    /// Counts that would overflow (a crafted or corrupt log) are an error, never a wrap.
    pub fn absorb(&mut self, other: Aggregate) -> Result<(), String> {
        fn add<T: num_like::Checked>(a: &mut T, b: T, what: &str) -> Result<(), String> {
            *a = a.checked(b).ok_or_else(|| format!("the {what} counts overflow when added up"))?;
            Ok(())
        }
        add(&mut self.total, other.total, "chat")?;
        add(&mut self.ok, other.ok, "ok")?;
        add(&mut self.failed, other.failed, "failed")?;
        add(&mut self.setup_failures, other.setup_failures, "failed")?;
        add(&mut self.cancelled, other.cancelled, "cancelled")?;
        add(&mut self.warnings, other.warnings, "warning")?;
        add(&mut self.violations, other.violations, "violation")?;
        add(&mut self.presence.enter, other.presence.enter, "presence")?;
        add(&mut self.presence.leave, other.presence.leave, "presence")?;
        for (k, (n, ex)) in other.errors {
            add(&mut self.errors.entry(k).or_insert((0, ex)).0, n, "error")?;
        }
        for (phase, h) in &other.phases {
            self.phases.entry(*phase).or_default().merge(h)?;
        }
        if let Some(c) = &other.corrected {
            self.corrected.get_or_insert_with(LatencyHistogram::new).merge(c)?;
        }
        Ok(())
    }

    pub fn reply(&self) -> LatencyHistogram {
        self.phases.get(&Phase::Reply).cloned().unwrap_or_default()
    }

    /// The reply histogram thresholds are judged on: corrected in open loop.
    pub fn judged_reply(&self) -> LatencyHistogram {
        self.corrected.clone().unwrap_or_else(|| self.reply())
    }
}

fn validate(opts: &SmokeOptions) -> Result<(), SmokeError> {
    if opts.chats == 0 {
        return Err(SmokeError::Options("--chats must be at least 1".into()));
    }
    match opts.schedule {
        Schedule::Closed { concurrency: 0 } => {
            return Err(SmokeError::Options("--concurrency must be at least 1".into()));
        }
        Schedule::Open { rate_per_s, .. } if !(rate_per_s > 0.0 && rate_per_s.is_finite()) => {
            return Err(SmokeError::Options("--rate must be a positive number of chats per second".into()));
        }
        _ => {}
    }
    if let Some(plan) = &opts.soak {
        if !matches!(opts.schedule, Schedule::Open { .. }) {
            return Err(SmokeError::Options("--duration needs --rate: a soak starts chats at a steady rate".into()));
        }
        plan.check().map_err(SmokeError::Options)?;
    }
    if let Some((base, _)) = &opts.target.ably
        && base.scheme() == "http"
        && !crate::http::is_loopback_host(base)
    {
        return Err(SmokeError::InsecureBasicAuth(base.to_string()));
    }
    Ok(())
}

/// Runs the smoke chats. `cancel` stops the run early (Ctrl-C); the report then holds what was
/// measured so far and says it was interrupted.
pub async fn smoke(
    opts: SmokeOptions,
    cancel: CancellationToken,
    progress: Option<watch::Sender<Progress>>,
) -> Result<SmokeReport, SmokeError> {
    validate(&opts)?;
    let started_at = chrono::Utc::now();
    let started = Instant::now();
    let watch = driver::DriverWatch::start(opts.max_driver_lag);
    let run_id = format!("{}-{}", started_at.format("%Y%m%dT%H%M%S"), &uuid::Uuid::new_v4().simple().to_string()[..8]);
    // The run's own token: Ctrl-C cancels it through the parent, an abort cancels only it.
    let run_cancel = cancel.child_token();
    let ctx = ChatContext {
        chatwoot: opts.target.chatwoot.clone(),
        ably: opts.target.ably.clone(),
        sse_http: crate::http::streaming_client(opts.timeout.min(Duration::from_secs(4))),
        transport: if opts.target.ably.is_some() { opts.transport } else { Transport::Poll },
        contracts: opts.contracts.clone(),
        run_id,
        reply_timeout: opts.reply_timeout,
        poll_interval: opts.poll_interval,
        timeout: opts.timeout,
        cancel: run_cancel.clone(),
        extras: match (&opts.target.ably, opts.extras, opts.transport) {
            (Some((base, key)), true, Transport::Sse) => Some(
                crate::ably::AblyClient::new(base.clone(), Some(key.clone()), opts.timeout)
                    .map_err(|e| SmokeError::Options(e.to_string()))?,
            ),
            _ => None,
        },
    };
    let (tx, mut rx) = mpsc::channel::<chat::ChatOutcome>(1024);
    let scheduler = tokio::spawn(schedule(opts.clone(), ctx.clone(), tx));
    let open_loop = matches!(opts.schedule, Schedule::Open { .. });
    let planned = opts.planned();
    let mut agg = Aggregate::default();
    let run_started = std::time::Instant::now();
    let mut conversations = Vec::new();
    let mut aborted = None;
    let rate_per_min = match opts.schedule {
        Schedule::Open { rate_per_s, .. } => rate_per_s * 60.0,
        Schedule::Closed { .. } => 0.0,
    };
    let mut intervals = opts.soak.clone().map(|p| soak::Intervals::new(p, rate_per_min));
    let every = intervals.as_ref().map_or(Duration::from_secs(3600), soak::Intervals::every);
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let cleaning = opts.target.can_clean_up && opts.cleanup_allowed;
    let mut cleanups = tokio::task::JoinSet::new();
    loop {
        let outcome = tokio::select! {
            o = rx.recv() => match o { Some(o) => o, None => break },
            _ = ticks.tick(), if intervals.as_ref().is_some_and(soak::Intervals::ticking) => {
                // Each interval's conversations are cleaned up as it closes: a soak's list
                // of conversations never grows with its length.
                if let Some(iv) = &mut intervals {
                    let done = iv.close(&opts.thresholds);
                    if cleaning {
                        let cw = opts.target.chatwoot.clone();
                        cleanups.spawn(async move { clean_up(&cw, &done).await });
                    }
                }
                continue;
            }
        };
        match &mut intervals {
            Some(iv) => iv.add(&outcome, open_loop),
            None => conversations.extend(outcome.conversation_id),
        }
        agg.add(&outcome, open_loop);
        agg.timeline.add(run_started.elapsed(), &outcome);
        if let Some(p) = &progress {
            let reply = agg.reply();
            let _ =
                p.send(Progress { planned, done: agg.total, failed: agg.failed, p95_ms: reply.percentile_ms(95.0) });
        }
        if opts.abort_on_fail && aborted.is_none() {
            let planned_samples = (planned * opts.turns.max(1)) as u64;
            if let Some(t) = opts.thresholds.iter().find(|t| threshold::cannot_pass(t, &agg, planned, planned_samples))
            {
                aborted = Some(t.expr.clone());
                run_cancel.cancel();
            }
        }
    }
    // The scheduler ends once every chat it started has reported.
    let _ = scheduler.await;
    let soak = intervals.map(|mut iv| {
        conversations.extend(iv.close(&opts.thresholds));
        iv.summary()
    });
    let driver = watch.finish(opts.max_driver_lag).await;
    let cleanup = if cleaning {
        let mut c = clean_up(&opts.target.chatwoot, &conversations).await;
        while let Some(done) = cleanups.join_next().await {
            if let Ok(d) = done {
                c.absorb(d);
            }
        }
        Some(c)
    } else {
        None
    };
    let mode = report::Mode {
        schedule: opts.schedule,
        turns: opts.turns.max(1),
        transport: ctx.transport,
        chats_planned: planned,
        reply_match: opts.contracts.reply.clone(),
    };
    Ok(SmokeReport::build(report::Inputs {
        agg,
        thresholds: &opts.thresholds,
        mode: Some(mode),
        target: opts.target.label.clone(),
        started_at,
        duration: started.elapsed(),
        aborted,
        interrupted: cancel.is_cancelled(),
        cleanup,
        command: opts.command.clone(),
        driver: Some(driver),
        soak,
    }))
}

/// Starts chats as the schedule says and forwards every outcome.
async fn schedule(opts: SmokeOptions, ctx: ChatContext, tx: mpsc::Sender<chat::ChatOutcome>) {
    let (limit, interval) = match opts.schedule {
        Schedule::Closed { concurrency } => (concurrency, None),
        Schedule::Open { rate_per_s, max_in_flight } => {
            (max_in_flight.max(1), Some(Duration::from_secs_f64(1.0 / rate_per_s)))
        }
    };
    let permits = Arc::new(Semaphore::new(limit));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    // A soak starts chats until its duration is over; a run, `chats` of them.
    let (count, until) = match &opts.soak {
        Some(p) => (usize::MAX, Some(start + p.duration)),
        None => (opts.chats, None),
    };
    for i in 0..count {
        let intended = match interval {
            Some(iv) => {
                let at = start + iv.mul_f64(i as f64);
                if until.is_some_and(|u| at >= u) {
                    break;
                }
                tokio::select! {
                    _ = tokio::time::sleep_until(at.into()) => {}
                    _ = ctx.cancel.cancelled() => break,
                }
                at
            }
            None => Instant::now(),
        };
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = ctx.cancel.cancelled() => break,
        };
        // In the closed loop a chat's intended start is when a slot freed up.
        let intended = if interval.is_none() { Instant::now() } else { intended };
        let messages = opts.scenario.messages(i, opts.turns);
        let (ctx, tx) = (ctx.clone(), tx.clone());
        // Finished chats leave the set at once: a soak's set holds the chats in flight only.
        while tasks.try_join_next().is_some() {}
        tasks.spawn(async move {
            let outcome = chat::run(&ctx, i, &messages, intended).await;
            drop(permit);
            let _ = tx.send(outcome).await;
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// Resolves every smoke conversation and labels it `smoke-test`, so smoke chats never sit in
/// the agents' inbox. A failure here is a warning in the report, not a failed run.
async fn clean_up(cw: &ChatwootClient, conversations: &[u64]) -> report::Cleanup {
    let mut c = report::Cleanup::default();
    for chunk in conversations.chunks(16) {
        let results = futures::future::join_all(chunk.iter().map(|id| async move {
            cw.set_status(*id, "resolved").await?;
            cw.add_labels(*id, &["smoke-test"]).await
        }))
        .await;
        for r in results {
            match r {
                Ok(_) => c.resolved += 1,
                Err(e) => {
                    c.failed += 1;
                    c.error.get_or_insert(e.to_string());
                }
            }
        }
    }
    c
}
