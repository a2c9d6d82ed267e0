//! `rollout observe`: whether the app follows the flag, seen from what customers hold. A sample
//! of the active conversations of each cohort (from the mirror), each channel's occupancy asked
//! of Ably (`GET /channels/{id}?occupancy=metrics`, concurrently and paced under Ably's request
//! limits): a real-time conversation should hold a subscriber, a polling one none. A probe.
//!
//! What it proves and what it cannot: a polling conversation holding a subscriber means the app
//! put a customer on real-time against the flag (or a client outside the app subscribes to
//! customers' channels). A real-time conversation without one may be a customer who closed the
//! tab within the active window: that is what `realtime_tolerance` allows for.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::Value;

use super::RolloutError;
use super::bucket::{self, Reason};
use super::store::Db;
use super::switch::kill_switch;
use crate::ably::{AblyClient, AblyError};
use crate::config::Config;
use crate::exit::ProbeState;
use crate::probe::{Check, ProbeReport, Unit};

/// What to observe.
#[derive(Debug, Clone)]
pub struct ObserveRequest {
    pub flag: String,
    /// Conversations looked at, at most, split between the cohorts.
    pub sample: usize,
    /// A conversation with an event this recently is active.
    pub active_window: Duration,
    /// Share of sampled polling conversations that may hold a subscriber.
    pub polling_tolerance: f64,
    /// Share of sampled real-time conversations that may hold none (closed tabs).
    pub realtime_tolerance: f64,
    /// A cohort with fewer sampled conversations is not judged.
    pub min_sample: usize,
    /// Occupancy requests a second, at most.
    pub max_rate: f64,
    /// The state of a sample too thin to judge: UNKNOWN when asked (`rollout observe` was asked
    /// to judge), OK without a value in the monitor (a quiet night is not an incident, as the
    /// SLA probe's checks without traffic are not).
    pub thin: ProbeState,
}

/// The checks the observation reports (what a monitor rule can name).
pub const METRICS: &[&str] =
    &["realtime_subscribed", "realtime_sampled", "polling_subscribed", "polling_sampled", "sample", "occupancy"];

impl Default for ObserveRequest {
    fn default() -> Self {
        ObserveRequest {
            flag: crate::contracts::DEFAULT_FLAG.into(),
            sample: 200,
            active_window: Duration::from_secs(300),
            polling_tolerance: 0.05,
            realtime_tolerance: 0.5,
            min_sample: 10,
            max_rate: 300.0,
            thin: ProbeState::Unknown,
        }
    }
}

/// One sampled conversation as Ably showed it.
#[derive(Debug, Clone)]
struct Seen {
    conversation: String,
    realtime: bool,
    reason: Reason,
    bucket: u32,
    subscribers: u64,
    present: u64,
}

/// Observes the flag's cohorts; the report is a probe's (`rollout_observe`).
pub async fn observe(config: &Config, req: &ObserveRequest) -> Result<ProbeReport, RolloutError> {
    // The key first: a missing one is said before any database is dialled.
    let ably = ably_of(config)?;
    observe_with(config, req, &Db::open(config).await?, &ably).await
}

fn ably_of(config: &Config) -> Result<AblyClient, RolloutError> {
    let key = config.require("ABLY_API_KEY", &config.ably_api_key).map_err(RolloutError::from)?;
    AblyClient::new(config.ably_rest_url.value.clone(), Some(key.value.clone()), config.timeout.value)
        .map_err(|e| RolloutError::Usage(e.to_string()))
}

/// The observation on an open database (the monitor's one Postgres handle).
pub async fn observe_on(config: &Config, req: &ObserveRequest, db: &Db) -> Result<ProbeReport, RolloutError> {
    observe_with(config, req, db, &ably_of(config)?).await
}

async fn observe_with(
    config: &Config,
    req: &ObserveRequest,
    db: &Db,
    ably: &AblyClient,
) -> Result<ProbeReport, RolloutError> {
    let flag = db.flag(&req.flag).await?;
    let now = chrono::Utc::now();
    let since = now - chrono::Duration::from_std(req.active_window).unwrap_or(chrono::Duration::MAX);
    let active = db.active(&config.contracts, since, now).await?;
    let overrides = db.overrides(&req.flag, None).await?;
    let ks = kill_switch(config, &req.flag);
    let decided: Vec<_> = active.iter().map(|id| bucket::decide(&flag, ks, overrides.get(id).copied(), id)).collect();
    let (on, off): (Vec<_>, Vec<_>) = decided.into_iter().partition(|d| d.enabled);
    let half = req.sample.div_ceil(2);
    // Each cohort gets half the sample, and what the other leaves unused.
    let take_on = on.len().min(req.sample - off.len().min(half));
    let take_off = off.len().min(req.sample - take_on);
    let sampled: Vec<_> = on.into_iter().take(take_on).chain(off.into_iter().take(take_off)).collect();
    let started = Instant::now();
    let pace = Duration::from_secs_f64(1.0 / req.max_rate.max(1.0));
    let contracts = &config.contracts;
    let looked = futures::stream::iter(sampled.into_iter().enumerate())
        .map(|(i, d)| {
            let ably = &ably;
            async move {
                // Paced: request i leaves no earlier than i / max_rate after the first.
                tokio::time::sleep_until((started + pace * i as u32).into()).await;
                let channel = contracts.channel_of(&d.conversation);
                occupancy(ably, &channel).await.map(|(subscribers, present)| Seen {
                    conversation: d.conversation,
                    realtime: d.enabled,
                    reason: d.reason,
                    bucket: d.bucket,
                    subscribers,
                    present,
                })
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    let mut seen = Vec::with_capacity(looked.len());
    for r in looked {
        match r {
            Ok(s) => seen.push(s),
            Err(e) => return Ok(could_not_look(&e)),
        }
    }
    Ok(judge(req, &seen, active.len()))
}

/// A channel's subscribers and presence members.
async fn occupancy(ably: &AblyClient, channel: &str) -> Result<(u64, u64), AblyError> {
    let mut url =
        ably.url(&format!("channels/{}", url::form_urlencoded::byte_serialize(channel.as_bytes()).collect::<String>()));
    url.query_pairs_mut().append_pair("occupancy", "metrics");
    let v: Value = ably.get_one("channel occupancy", url).await?;
    let m = &v["status"]["occupancy"]["metrics"];
    Ok((m["subscribers"].as_u64().unwrap_or(0), m["presenceMembers"].as_u64().unwrap_or(0)))
}

/// Ably would not answer: a key without the capability is UNKNOWN naming it (we could not
/// check); Ably refusing or not answering is CRITICAL (customers' real-time is down too).
fn could_not_look(e: &AblyError) -> ProbeReport {
    let capability = matches!(e, AblyError::Api { info, .. } if info.code == 40160 || info.status_code == 401 || info.status_code == 403);
    let (state, detail) = if capability {
        (ProbeState::Unknown, format!("{e}: the key needs the channel-metadata capability to read occupancy; add it"))
    } else {
        (e.fault().state(), e.to_string())
    };
    ProbeReport { kind: "rollout_observe", checks: vec![check("occupancy", state, None, Unit::Count, detail)] }
}

fn check(name: &str, state: ProbeState, value: Option<f64>, unit: Unit, detail: String) -> Check {
    Check {
        name: name.into(),
        target: None,
        state,
        value,
        unit,
        warn: None,
        crit: None,
        ranges: (String::new(), String::new()),
        detail,
    }
}

/// The verdict per cohort: polling conversations holding subscribers past the tolerance, or
/// real-time ones without, is CRITICAL "the app does not follow the flag"; a cohort sampled too
/// thinly is UNKNOWN, saying so; a cohort with nobody active says that and is not judged.
fn judge(req: &ObserveRequest, seen: &[Seen], active: usize) -> ProbeReport {
    let mut checks = Vec::new();
    for realtime in [true, false] {
        let cohort: Vec<&Seen> = seen.iter().filter(|s| s.realtime == realtime).collect();
        let (name, tolerance) = if realtime {
            ("realtime_subscribed", req.realtime_tolerance)
        } else {
            ("polling_subscribed", req.polling_tolerance)
        };
        let held = cohort.iter().filter(|s| s.subscribers > 0).count();
        let wrong: Vec<&&Seen> = cohort.iter().filter(|s| (s.subscribers > 0) != realtime).collect();
        let share = |n: usize| if cohort.is_empty() { 0.0 } else { n as f64 / cohort.len() as f64 };
        let listed: Vec<String> = wrong
            .iter()
            .take(10)
            .map(|s| {
                format!(
                    "{} ({}, bucket {}, {} subscribers, {} present)",
                    s.conversation,
                    reason(s.reason),
                    s.bucket,
                    s.subscribers,
                    s.present
                )
            })
            .collect();
        let what = if realtime { "real-time" } else { "polling" };
        let (state, detail) = if cohort.is_empty() {
            (
                ProbeState::Ok,
                format!(
                    "no active {what} conversation in the last {}: nothing to judge",
                    crate::duration::format_duration(req.active_window)
                ),
            )
        } else if cohort.len() < req.min_sample {
            (
                req.thin,
                format!("{} {what} conversations sampled, fewer than {} to judge by", cohort.len(), req.min_sample),
            )
        } else if share(wrong.len()) > tolerance {
            let how = if realtime { "hold no subscriber" } else { "hold a subscriber" };
            (
                ProbeState::Critical,
                format!(
                    "the app does not follow the flag: {} of {} {what} conversations {how} (tolerance {:.0} %): {}",
                    wrong.len(),
                    cohort.len(),
                    tolerance * 100.0,
                    listed.join(", ")
                ),
            )
        } else {
            (ProbeState::Ok, format!("{held} of {} {what} conversations hold a subscriber", cohort.len()))
        };
        // A thin cohort's share is shown when asked, and kept from the monitor's rules.
        let thin_ok = cohort.len() < req.min_sample && req.thin == ProbeState::Ok;
        let value = (!cohort.is_empty() && !thin_ok).then(|| share(held));
        checks.push(check(name, state, value, Unit::Ratio, detail));
        checks.push(check(
            if realtime { "realtime_sampled" } else { "polling_sampled" },
            ProbeState::Ok,
            Some(cohort.len() as f64),
            Unit::Count,
            format!("{} sampled of {active} active", cohort.len()),
        ));
    }
    // Both cohorts empty or unjudged: the sample could not judge anything.
    if seen.len() < req.min_sample {
        checks.push(check(
            "sample",
            req.thin,
            Some(seen.len() as f64),
            Unit::Count,
            format!(
                "{} conversations sampled of {active} active: too few to judge whether the app follows the flag",
                seen.len()
            ),
        ));
    }
    ProbeReport { kind: "rollout_observe", checks }
}

fn reason(r: Reason) -> &'static str {
    match r {
        Reason::KillSwitch => "kill switch",
        Reason::FlagOff => "flag off",
        Reason::Override => "override",
        Reason::Bucket => "bucket",
    }
}

/// The real-time cohort's active conversations now (at most `n`): the ones a rollback must
/// see leave real-time. `None` when Ably is not configured (nothing to watch with).
pub async fn realtime_sample(
    config: &Config,
    flag: &str,
    n: usize,
    window: Duration,
) -> Result<Vec<String>, RolloutError> {
    let db = Db::open(config).await?;
    let f = db.flag(flag).await?;
    let now = chrono::Utc::now();
    let since = now - chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX);
    let active = db.active(&config.contracts, since, now).await?;
    let overrides = db.overrides(flag, None).await?;
    let ks = kill_switch(config, flag);
    Ok(active.into_iter().filter(|id| bucket::decide(&f, ks, overrides.get(id).copied(), id).enabled).take(n).collect())
}

/// How a watch for subscriptions to end came out.
#[derive(Debug, Clone, PartialEq)]
pub enum Converged {
    /// No sampled conversation held a subscriber any more, after this long.
    After(Duration),
    /// Still subscribed when the time was up: these conversations.
    Not(Vec<String>),
}

/// Watches the channels of `conversations` (every 2 s, at most `limit`) until none holds a
/// subscriber: customers leaving real-time as the app reads the flag again.
pub async fn converge(config: &Config, conversations: &[String], limit: Duration) -> Result<Converged, AblyError> {
    let key = match &config.ably_api_key {
        Some(k) => k.value.clone(),
        None => return Err(AblyError::NoKey { op: "watch subscriptions" }),
    };
    let ably = AblyClient::new(config.ably_rest_url.value.clone(), Some(key), config.timeout.value)?;
    let started = Instant::now();
    let mut left: Vec<String> = conversations.to_vec();
    loop {
        let looked = futures::stream::iter(left.iter().cloned())
            .map(|id| {
                let ably = &ably;
                async move {
                    let channel = config.contracts.channel_of(&id);
                    occupancy(ably, &channel).await.map(|(subs, _)| (id, subs))
                }
            })
            .buffer_unordered(32)
            .collect::<Vec<_>>()
            .await;
        let mut still = Vec::new();
        for r in looked {
            let (id, subs) = r?;
            if subs > 0 {
                still.push(id);
            }
        }
        if still.is_empty() {
            return Ok(Converged::After(started.elapsed()));
        }
        if started.elapsed() >= limit {
            still.sort();
            return Ok(Converged::Not(still));
        }
        left = still;
        tokio::time::sleep(Duration::from_secs(2).min(limit.saturating_sub(started.elapsed()))).await;
    }
}
