//! Re-publishing mirrored events to their conversations' Ably channels.
//!
//! Each event becomes one message with an idempotent id derived from the original
//! (`replay-<original id>`), sent as its own `BatchSpec` in `POST /messages` (Ably requires one
//! spec per message for individually idempotent ids), many channels per request. Per channel the
//! pacer spaces messages `1/rate` apart and never sends more than `rate` within any window of
//! 1 s + 25 ms (the margin absorbs request jitter), so Ably's 50 msg/s per-channel limit is never
//! crossed. 42913/42910 answers put the message back at the head of its channel and back that
//! channel off; 5xx answers and time-outs retry the whole request (the ids make that safe).

use std::ops::ControlFlow;
use std::time::Instant;

use serde_json::{Value, json};

use super::pacer::Pacer;
use crate::ably::{AblyClient, AblyError};
use crate::mirror::MirroredEvent;
use crate::retry::{Attempt, RetryPolicy, Retrying};

/// Ably's per-channel publish limit (messages per second).
pub const MAX_RATE: u32 = 50;
/// Specs per request: well under Ably's 2 MiB body for chat-sized messages.
const MAX_SPECS: usize = 500;

#[derive(Debug, Clone)]
pub struct AblyOptions {
    /// Messages per second per channel (at most [`MAX_RATE`]).
    pub rate: u32,
    pub dry_run: bool,
    /// Retries of a request that failed as a whole (5xx, time-out).
    pub retry: RetryPolicy,
}

/// What publishing a page did.
#[derive(Debug, Default, Clone)]
pub struct Published {
    pub written: u64,
    pub failed: u64,
    /// 42913/42910 answers (each retried).
    pub rate_limited: u64,
    pub requests: u64,
    pub failures: Vec<String>,
}

/// The message an event is re-published as.
/// Every copy is marked (`extras.headers`: `replayed`, the original id and time) besides its
/// derived id, so the app and every report can tell it from the customer's own event.
pub fn message_of(e: &MirroredEvent) -> Value {
    let mut m = json!({"id": crate::contracts::replay_id(&e.id), "name": e.name, "data": e.data});
    if let Some(c) = &e.client_id {
        m["clientId"] = json!(c);
    }
    m["extras"] = json!({"headers": {
        "replayed": "true",
        "originalId": e.id,
        "originalTimestamp": e.timestamp_ms.to_string(),
    }});
    m
}

/// Called with the original ids of every acknowledged request (the checkpoint records them).
pub type Ack<'a> = dyn FnMut(&[String]) -> Result<(), super::ReplayError> + Send + 'a;

pub struct AblyTarget {
    client: AblyClient,
    opts: AblyOptions,
}

impl AblyTarget {
    pub fn new(client: AblyClient, mut opts: AblyOptions) -> AblyTarget {
        opts.rate = opts.rate.clamp(1, MAX_RATE);
        AblyTarget { client, opts }
    }

    /// Publishes `events`, calling `ack` with the original ids of every acknowledged request.
    pub async fn publish(
        &mut self,
        events: Vec<MirroredEvent>,
        ack: &mut Ack<'_>,
    ) -> Result<Published, super::ReplayError> {
        let mut done = Published::default();
        if self.opts.dry_run {
            done.written = events.len() as u64;
            return Ok(done);
        }
        let mut pacer = Pacer::new(self.opts.rate, Instant::now());
        for e in events {
            let channel = e.channel.clone();
            pacer.push(&channel, e);
        }
        while !pacer.is_empty() {
            let now = Instant::now();
            let batch: Vec<MirroredEvent> = pacer.due(now, MAX_SPECS).into_iter().map(|(_, e)| e).collect();
            if batch.is_empty() {
                tokio::time::sleep_until(tokio::time::Instant::from_std(pacer.next_wake(now))).await;
                continue;
            }
            let results = self.post(&batch).await?;
            done.requests += 1;
            let mut acked = Vec::new();
            let mut refused: Vec<MirroredEvent> = Vec::new();
            for (e, result) in batch.into_iter().zip(results) {
                match result {
                    Ok(()) => acked.push(e.id),
                    Err(code) if code == 42913 || code == 42910 => {
                        done.rate_limited += 1;
                        refused.push(e);
                    }
                    Err(code) => {
                        done.failed += 1;
                        if done.failures.len() < 100 {
                            done.failures.push(format!("{} on {}: Ably code {code}", e.id, e.channel));
                        }
                    }
                }
            }
            let now = Instant::now();
            for e in refused.into_iter().rev() {
                let channel = e.channel.clone();
                pacer.refused(&channel, e, now);
            }
            done.written += acked.len() as u64;
            ack(&acked)?;
        }
        Ok(done)
    }

    /// One `POST /messages`; per spec, Ok or Ably's error code. Whole-request failures that may
    /// pass (5xx, 429 account limits, time-outs) are retried with backoff and jitter.
    async fn post(&self, batch: &[MirroredEvent]) -> Result<Vec<Result<(), u32>>, super::ReplayError> {
        let body =
            Value::Array(batch.iter().map(|e| json!({"channels": [e.channel], "messages": message_of(e)})).collect());
        let mut retrying = Retrying::new(&self.opts.retry);
        loop {
            let outcome = match self.client.post_json("batch publish", "/messages", &body).await {
                Ok(v) => Attempt::Done(v),
                Err(e) if transient(&e) => Attempt::Transient(e.to_string()),
                Err(e) => return Err(super::ReplayError::Ably(e)),
            };
            match retrying.settle(outcome).await {
                ControlFlow::Continue(()) => continue,
                ControlFlow::Break(Ok(v)) => return parse_results(&v, batch.len()),
                ControlFlow::Break(Err(f)) => {
                    return Err(super::ReplayError::AblyGaveUp { attempts: f.attempts, reason: f.reason });
                }
            }
        }
    }
}

fn transient(e: &AblyError) -> bool {
    match e {
        AblyError::Api { info, .. } => info.status_code >= 500 || info.status_code == 429,
        AblyError::Transport { .. } => true,
        _ => false,
    }
}

/// Reads the `BatchResult` array (protocol 2+): one entry per spec, in order.
fn parse_results(v: &Value, n: usize) -> Result<Vec<Result<(), u32>>, super::ReplayError> {
    let items = v.as_array().filter(|a| a.len() == n).ok_or_else(|| {
        super::ReplayError::AblyAnswer(format!(
            "expected {n} batch results, got {}",
            crate::output::truncate(&v.to_string(), 200)
        ))
    })?;
    Ok(items
        .iter()
        .map(|r| {
            let failed = r["failureCount"].as_u64().unwrap_or(0) > 0;
            if failed {
                let code = r["results"][0]["error"]["code"].as_u64().unwrap_or(50000) as u32;
                Err(code)
            } else {
                Ok(())
            }
        })
        .collect())
}
