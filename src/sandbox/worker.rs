//! The sandbox's AI worker. For every customer message it publishes the contract's user event
//! (`message:user`), queues a job, and after a drawn latency posts the reply to Chatwoot and
//! publishes the AI event (`message:ai`) with the reply field (`replyTo`, or none under
//! `first-after`); the SLA warning and violation events go out when the reply is still missing
//! at the thresholds. Every name comes from the contracts. Every outcome is recorded as truth.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::sinks::JobOp;
use super::store::ChatMessage;
use super::{State, TruthRecord, lock};
use crate::ably::Message;
use crate::chatwoot::MESSAGE_OUTGOING;

/// The `clientId` the worker publishes with.
const WORKER_CLIENT_ID: &str = "ai-broker";

const ANSWERS: &[&str] = &[
    "Thanks for asking. A fixed rate keeps your repayments the same for the fixed period; a variable rate moves with the lender's rate.",
    "Most lenders look for a deposit of at least 5 to 10 percent; under 20 percent usually means lenders mortgage insurance.",
    "Pre-approval usually takes two to five business days once we have your payslips, bank statements and ID.",
    "Refinancing can lower your rate, but check break costs, discharge fees and the comparison rate before you switch.",
    "An offset account reduces the interest you pay by offsetting its balance against your loan each day.",
];

/// Called by the Chatwoot handler once the customer's message is stored.
pub fn on_customer_message(state: &Arc<State>, msg: &ChatMessage) {
    let received = Instant::now();
    let channel = state.opts.contracts.channel_of(&msg.conversation_id.to_string());
    let user_event = Message {
        name: Some(state.opts.contracts.event_user.clone()),
        client_id: Some(format!("contact:{}", msg.sender.get("id").and_then(|v| v.as_u64()).unwrap_or(0))),
        data: Some(user_data(msg)),
        ..Default::default()
    };
    publish(state, &channel, user_event);
    let job_id = msg.id.to_string();
    if let Some(sink) = &state.sink {
        let data = json!({"conversationId": msg.conversation_id, "messageId": msg.id, "content": msg.content});
        let _ = sink.send(JobOp::Added { id: job_id.clone(), data: data.to_string(), at_ms: State::now_ms() });
    }
    let state = state.clone();
    let (conv, msg_id) = (msg.conversation_id, msg.id);
    tokio::spawn(async move {
        // A paused or stopped worker takes no job: it waits in `wait`, as BullMQ keeps it.
        if !taken(&state).await {
            return;
        }
        let (latency, fails, throws) = {
            let faults = state.faults();
            let mut rng = lock(&state.rng);
            let latency = faults.ai_latency.sample(&mut *rng);
            let mut draw = |p: f64| p > 0.0 && rand::Rng::random::<f64>(&mut *rng) < p;
            (latency, draw(faults.ai_error_rate), draw(faults.job_failure_rate))
        };
        if let Some(sink) = &state.sink {
            let _ = sink.send(JobOp::Active { id: job_id.clone(), at_ms: State::now_ms() });
        }
        if throws {
            let reason =
                format!("Chatwoot API: POST conversations/{conv}/messages answered 502 (sandbox job_failure_rate)");
            if let Some(sink) = &state.sink {
                let _ = sink.send(JobOp::Failed { id: job_id, at_ms: State::now_ms(), reason, attempts: 1 });
            }
            lock(&state.truth).push(TruthRecord::unanswered(conv, msg_id, "job_failed"));
            return;
        }
        let outcome = run_job(&state, &channel, conv, msg_id, received, latency, fails).await;
        if let Some(sink) = state.sink.as_ref().filter(|_| outcome.outcome != "worker_down") {
            let at_ms = State::now_ms();
            let _ = sink.send(match outcome.reply_id {
                Some(r) => JobOp::Completed { id: job_id, at_ms, result: json!({"replyId": r}).to_string() },
                None => JobOp::Failed {
                    id: job_id,
                    at_ms,
                    reason: "AI provider error (sandbox --ai-error-rate)".into(),
                    attempts: 1,
                },
            });
        }
        lock(&state.truth).push(outcome);
    });
}

/// Waits until the worker takes jobs (neither paused nor down); false when the sandbox stops
/// first. Polled: the faults change through the control route at any time.
async fn taken(state: &State) -> bool {
    loop {
        if state.stopping.load(std::sync::atomic::Ordering::Relaxed) {
            return false;
        }
        let f = state.faults();
        if !f.worker_paused && !f.worker_down {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn user_data(msg: &ChatMessage) -> serde_json::Value {
    let mut data = json!({"messageId": msg.id, "conversationId": msg.conversation_id, "content": msg.content});
    if let Some(echo) = &msg.echo_id {
        data["echoId"] = json!(echo);
    }
    data
}

fn publish(state: &State, channel: &str, m: Message) {
    if let Err(e) = state.publish(channel, vec![m]) {
        tracing::warn!(channel, code = e.code, "sandbox worker could not publish: {}", e.message);
    }
}

fn sla_event(name: String, conv: u64, msg_id: u64, elapsed: Duration, threshold: Duration) -> Message {
    Message {
        name: Some(name),
        client_id: Some(WORKER_CLIENT_ID.into()),
        data: Some(json!({
            "conversationId": conv, "messageId": msg_id,
            "elapsedMs": elapsed.as_millis() as u64, "thresholdMs": threshold.as_millis() as u64,
        })),
        ..Default::default()
    }
}

/// Waits out the latency, firing the SLA events whose thresholds come first, then replies
/// (unless the AI call fails). A stall holds the reply until the stall is over.
async fn run_job(
    state: &State,
    channel: &str,
    conv: u64,
    msg_id: u64,
    received: Instant,
    latency: Duration,
    fails: bool,
) -> TruthRecord {
    let (warn, viol) = (state.opts.sla_warning, state.opts.sla_violation);
    let mut record = TruthRecord::unanswered(conv, msg_id, "ai_error");
    let mut due = received + latency;
    loop {
        let now = Instant::now();
        // The next thing to happen: a threshold not yet announced, or the reply.
        let next_threshold = [(warn, false), (viol, true)]
            .into_iter()
            .filter(|(_, is_viol)| if *is_viol { !record.sla_violation } else { !record.sla_warning })
            .map(|(t, is_viol)| (received + t, t, is_viol))
            .filter(|(at, ..)| *at <= due || fails)
            .min_by_key(|(at, ..)| *at);
        match next_threshold {
            Some((at, threshold, is_viol)) if at <= due || fails => {
                tokio::time::sleep_until(at.into()).await;
                let c = &state.opts.contracts;
                let name = if is_viol { c.event_sla_violation.clone() } else { c.event_sla_warning.clone() };
                publish(state, channel, sla_event(name, conv, msg_id, received.elapsed(), threshold));
                if is_viol {
                    record.sla_violation = true
                } else {
                    record.sla_warning = true
                }
                if fails && record.sla_violation {
                    return record;
                }
            }
            _ => {
                tokio::time::sleep_until(due.into()).await;
                if let Some(end) = state.faults().stalled_until(Instant::now()) {
                    due = end.max(now);
                    continue;
                }
                break;
            }
        }
    }
    if state.faults().worker_down {
        // The process died holding the job: it stays `active`, unanswered (stalled).
        record.outcome = "worker_down";
        return record;
    }
    let content = ANSWERS[(msg_id as usize) % ANSWERS.len()];
    let reply = {
        let sender = json!({"id": 1, "name": "AI broker", "avatar_url": "", "type": "agent_bot"});
        lock(&state.chatwoot).add_message(conv, content, MESSAGE_OUTGOING, sender, None)
    };
    let Some(reply) = reply else { return record };
    let latency = received.elapsed();
    let mut data = json!({
        "messageId": reply.id, "conversationId": conv, "content": content, "latencyMs": latency.as_millis() as u64,
    });
    if let Some(field) = state.opts.contracts.reply.field() {
        data[field] = json!(msg_id);
    }
    let name = Some(state.opts.contracts.event_ai.clone());
    publish(
        state,
        channel,
        Message { name, client_id: Some(WORKER_CLIENT_ID.into()), data: Some(data), ..Default::default() },
    );
    record.reply_id = Some(reply.id);
    record.latency_us = Some(latency.as_micros() as u64);
    record.outcome = "replied";
    record
}
