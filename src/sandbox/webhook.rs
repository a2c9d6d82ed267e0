//! The sandbox's Ably webhook rule (batch mode): every message published on a conversation
//! channel becomes a `channel.message` item, and items go to the target URL as Ably sends them
//! (docs/mirror.md): signed `{"items":[...]}` bodies of at most 100 items, one request in
//! flight, the next as soon as the last is answered (or after `--webhook-interval`), retries
//! on a non-2xx answer or a time-out with a backoff from 1 s growing by √2 up to 60 s, and
//! items older than 5 minutes dropped and counted.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::faults::Faults;
use super::lock;
use crate::config::AblyKey;
use crate::webhook::{self, Item, MAX_BATCH_ITEMS};

/// How long Ably keeps a webhook's queued items before dropping them.
pub const QUEUE_KEEP: Duration = Duration::from_secs(300);
/// The first retry delay, and the cap that consecutive failures grow it to (by √2 each).
pub const RETRY_FIRST: Duration = Duration::from_secs(1);
pub const RETRY_CAP: Duration = Duration::from_secs(60);

/// The wait after `failures` consecutive failed requests (1 or more).
pub fn backoff(failures: u32) -> Duration {
    let f = RETRY_FIRST.as_secs_f64() * std::f64::consts::SQRT_2.powi(failures.saturating_sub(1).min(64) as i32);
    Duration::from_secs_f64(f.min(RETRY_CAP.as_secs_f64()))
}

/// What the emitter did, for `/_sandbox/mirror` and tests.
#[derive(Debug, Default)]
pub struct WebhookCounters {
    /// Items queued and not yet delivered, expired or dropped.
    pub pending: AtomicUsize,
    pub requests: AtomicUsize,
    pub failed_requests: AtomicUsize,
    pub delivered_items: AtomicUsize,
    /// Items older than 5 minutes, dropped as Ably drops them.
    pub expired_items: AtomicUsize,
    /// Items lost to the `webhook_drop_rate` fault.
    pub dropped_items: AtomicUsize,
}

impl WebhookCounters {
    pub fn json(&self) -> serde_json::Value {
        let g = |a: &AtomicUsize| a.load(Ordering::Relaxed);
        serde_json::json!({
            "pending": g(&self.pending), "requests": g(&self.requests), "failed_requests": g(&self.failed_requests),
            "delivered_items": g(&self.delivered_items), "expired_items": g(&self.expired_items),
            "dropped_items": g(&self.dropped_items),
        })
    }
}

struct Queued {
    at: Instant,
    item: Item,
}

/// The sending half, held by the sandbox's state.
pub struct Emitter {
    tx: mpsc::UnboundedSender<Queued>,
    pub counters: Arc<WebhookCounters>,
    pub url: url::Url,
    webhook_id: String,
    serial: AtomicUsize,
}

/// Where and how the emitter sends.
pub struct Target {
    pub url: url::Url,
    pub key: AblyKey,
    pub timeout: Duration,
    pub interval: Duration,
    pub faults: Arc<Mutex<Faults>>,
}

impl Emitter {
    pub fn start(target: Target) -> (Emitter, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let counters = Arc::new(WebhookCounters::default());
        let url = target.url.clone();
        let sender = Sender { http: crate::http::client(target.timeout), target, counters: counters.clone() };
        let task = tokio::spawn(sender.run(rx));
        let webhook_id = super::channels::random_id()[..6].to_string();
        (Emitter { tx, counters, url, webhook_id, serial: AtomicUsize::new(0) }, task)
    }

    /// Queues the messages of one publish on `channel`, unless the drop fault loses them.
    pub fn enqueue(&self, channel: &str, messages: Vec<crate::ably::Message>, dropped: bool, now_ms: i64) {
        if dropped {
            self.counters.dropped_items.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let n = self.serial.fetch_add(1, Ordering::Relaxed);
        let serial = format!("{}sandbox:{n}", self.webhook_id);
        let item = Item::messages(&self.webhook_id, serial, channel, messages, now_ms);
        self.counters.pending.fetch_add(1, Ordering::Relaxed);
        // The receiver only goes when the sandbox shuts down, after which nothing publishes.
        let _ = self.tx.send(Queued { at: Instant::now(), item });
    }
}

struct Sender {
    http: reqwest::Client,
    target: Target,
    counters: Arc<WebhookCounters>,
}

#[derive(Serialize)]
struct BatchRef<'a> {
    items: Vec<&'a Item>,
}

impl Sender {
    async fn run(self, mut rx: mpsc::UnboundedReceiver<Queued>) {
        let mut queue: VecDeque<Queued> = VecDeque::new();
        let mut failures = 0u32;
        let mut last: Option<Instant> = None;
        loop {
            if queue.is_empty() {
                match rx.recv().await {
                    Some(q) => queue.push_back(q),
                    None => return,
                }
            }
            if let Some(t) = last {
                tokio::time::sleep_until(t + self.target.interval).await;
            }
            let delay = lock(&self.target.faults).webhook_delay;
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            while let Ok(q) = rx.try_recv() {
                queue.push_back(q);
            }
            self.expire(&mut queue);
            if queue.is_empty() {
                continue;
            }
            let n = queue.len().min(MAX_BATCH_ITEMS);
            last = Some(Instant::now());
            match self.send(&queue.iter().take(n).map(|q| &q.item).collect::<Vec<_>>()).await {
                Ok(()) => {
                    queue.drain(..n);
                    failures = 0;
                    self.counters.delivered_items.fetch_add(n, Ordering::Relaxed);
                    self.counters.pending.fetch_sub(n, Ordering::Relaxed);
                }
                Err(why) => {
                    failures += 1;
                    self.counters.failed_requests.fetch_add(1, Ordering::Relaxed);
                    let wait = backoff(failures);
                    tracing::warn!("sandbox webhook to {}: {why}; retrying in {wait:?}", self.target.url);
                    // Keep taking new items while waiting; stop when the sandbox shuts down.
                    let until = Instant::now() + wait;
                    loop {
                        tokio::select! {
                            _ = tokio::time::sleep_until(until) => break,
                            q = rx.recv() => match q {
                                Some(q) => queue.push_back(q),
                                None => return,
                            },
                        }
                    }
                }
            }
        }
    }

    fn expire(&self, queue: &mut VecDeque<Queued>) {
        let mut n = 0;
        while queue.front().is_some_and(|q| q.at.elapsed() >= QUEUE_KEEP) {
            queue.pop_front();
            n += 1;
        }
        if n > 0 {
            tracing::warn!("sandbox webhook: {n} items older than 5 minutes dropped, as Ably drops them");
            self.counters.expired_items.fetch_add(n, Ordering::Relaxed);
            self.counters.pending.fetch_sub(n, Ordering::Relaxed);
        }
    }

    /// One signed request; Ok on a 2xx answer.
    async fn send(&self, items: &[&Item]) -> Result<(), String> {
        // Items are plain data and always serialise.
        let body = serde_json::to_vec(&BatchRef { items: items.to_vec() }).expect("webhook body serialises");
        let t = &self.target;
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        let resp = self
            .http
            .post(t.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(webhook::HEADER_VERSION, webhook::VERSION)
            .header(webhook::HEADER_KEY, &t.key.name)
            .header(webhook::HEADER_SIGNATURE, webhook::sign(&t.key, &body))
            .body(body)
            .send()
            .await
            .map_err(|e| crate::http::describe(&e))?;
        let status = resp.status();
        if status.is_success() { Ok(()) } else { Err(format!("HTTP {}", status.as_u16())) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_starts_at_one_second_grows_by_root_two_and_stops_at_a_minute() {
        let ms = |f| backoff(f).as_millis();
        assert_eq!(ms(1), 1000);
        assert_eq!(ms(2), 1414);
        assert_eq!(ms(3), 2000);
        assert_eq!(ms(4), 2828);
        assert_eq!(ms(12), 45_254);
        assert_eq!(ms(13), 60_000);
        assert_eq!(ms(1000), 60_000);
    }
}
