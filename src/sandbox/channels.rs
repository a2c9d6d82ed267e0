//! The sandbox's Ably channels: history, live subscribers, idempotent ids (2 minutes), the
//! 50 msg/s per-channel limit and the 64 KiB message limit, as docs/sandbox.md ("Ably REST") says.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::broadcast;

use crate::ably::{ErrorInfo, Message};

pub const MAX_MESSAGE_SIZE: usize = 65_536;
pub const CHANNEL_RATE_PER_SEC: usize = 50;
pub const DEDUP_WINDOW: Duration = Duration::from_secs(120);
/// Messages kept per channel for history and resume.
const HISTORY_CAP: usize = 10_000;
/// A channel counts as active this long after its last message or subscriber.
const ACTIVE_FOR: Duration = Duration::from_secs(120);
/// A channel nobody holds (no subscriber, nobody present) is forgotten, its history with it, this
/// long after its last activity, so that a sandbox carrying traffic all day keeps its memory flat
/// (Ably without persistence keeps history for 2 minutes).
pub const RETAIN_IDLE: Duration = Duration::from_secs(600);
/// Live messages a subscriber may fall behind by before it is caught up from history (each
/// channel's buffer is allocated in full).
const LIVE_BUFFER: usize = 64;
/// Idle channels are looked for once per this many new channels.
const PRUNE_EVERY: u64 = 1024;

/// A message as stored: the global sequence number is the SSE event id and resume position.
#[derive(Debug, Clone)]
pub struct Stored {
    pub seq: u64,
    pub channel: String,
    pub message: Message,
    /// When it was published (its delivery is timed from here).
    pub at: Instant,
    /// A presence event (Ably's action: 2 enter, 3 leave) rather than a message: sent to
    /// subscribers as `event: presence`, never kept in history.
    pub presence: Option<u8>,
}

#[derive(Debug)]
pub struct Channel {
    pub history: VecDeque<Arc<Stored>>,
    pub tx: broadcast::Sender<Arc<Stored>>,
    recent: VecDeque<Instant>,
    pub subscribers: usize,
    pub last_active: Instant,
    /// Client ids present on the channel.
    pub present: std::collections::BTreeSet<String>,
}

impl Channel {
    fn new() -> Self {
        Channel {
            history: VecDeque::new(),
            tx: broadcast::channel(LIVE_BUFFER).0,
            recent: VecDeque::new(),
            subscribers: 0,
            last_active: Instant::now(),
            present: Default::default(),
        }
    }

    pub fn is_active(&self, now: Instant) -> bool {
        self.subscribers > 0 || now.duration_since(self.last_active) < ACTIVE_FOR
    }

    /// Messages after `seq`, oldest first.
    pub fn after(&self, seq: u64) -> Vec<Arc<Stored>> {
        self.history.iter().filter(|s| s.seq > seq).cloned().collect()
    }
}

/// What a publish did.
#[derive(Debug, Clone)]
pub struct Published {
    pub message_id: String,
    /// False when the idempotency key was seen in the last 2 minutes: accepted, not delivered.
    pub delivered: Vec<Arc<Stored>>,
}

#[derive(Debug, Default)]
pub struct Channels {
    pub map: BTreeMap<String, Channel>,
    seen_ids: HashMap<String, Instant>,
    seen_order: VecDeque<(Instant, String)>,
    next_seq: u64,
    /// Channels made so far (idle ones are pruned every [`PRUNE_EVERY`]).
    made: u64,
}

impl Channels {
    pub fn channel(&mut self, name: &str) -> &mut Channel {
        self.counting(name);
        self.map.entry(name.to_string()).or_insert_with(Channel::new)
    }

    /// Counts a channel about to be made, pruning idle ones every [`PRUNE_EVERY`].
    fn counting(&mut self, name: &str) {
        if !self.map.contains_key(name) {
            self.made += 1;
            if self.made.is_multiple_of(PRUNE_EVERY) {
                self.prune_idle(Instant::now());
            }
        }
    }

    /// Forgets the channels nobody holds that have been idle for [`RETAIN_IDLE`].
    pub fn prune_idle(&mut self, now: Instant) {
        self.map.retain(|_, c| {
            c.subscribers > 0 || !c.present.is_empty() || now.duration_since(c.last_active) < RETAIN_IDLE
        });
    }

    /// Publishes `messages` atomically on `channel` at `now_ms`, with Ably's checks.
    pub fn publish(&mut self, channel: &str, mut messages: Vec<Message>, now_ms: i64) -> Result<Published, ErrorInfo> {
        if channel.is_empty() || channel.starts_with("[meta]") {
            return Err(ErrorInfo::new(400, 40010, format!("Invalid channel name: {channel:?}")));
        }
        if messages.is_empty() {
            return Err(ErrorInfo::new(400, 40001, "Invalid message body: no messages"));
        }
        let size: usize = messages.iter().map(message_size).sum();
        if size > MAX_MESSAGE_SIZE {
            return Err(ErrorInfo::new(
                413,
                40009,
                format!("Maximum message length exceeded (size was {size} bytes, limit is {MAX_MESSAGE_SIZE} bytes)"),
            ));
        }
        let key = idempotency_key(&messages)?;
        let now = Instant::now();
        self.prune_seen(now);
        if let Some(k) = &key
            && self.seen_ids.contains_key(&format!("{channel}\u{0}{k}"))
        {
            return Ok(Published { message_id: k.clone(), delivered: Vec::new() });
        }
        self.counting(channel);
        let ch = self.map.entry(channel.to_string()).or_insert_with(Channel::new);
        while ch.recent.front().is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1)) {
            ch.recent.pop_front();
        }
        if ch.recent.len() + messages.len() > CHANNEL_RATE_PER_SEC {
            return Err(ErrorInfo::new(
                429,
                42913,
                format!(
                    "Rate limit exceeded; request rejected (nonfatal); metric = channel.maxRate; permitted rate = {CHANNEL_RATE_PER_SEC}"
                ),
            ));
        }
        let base = key.clone().unwrap_or_else(random_id);
        let mut delivered = Vec::with_capacity(messages.len());
        let n = messages.len();
        for (i, mut m) in messages.drain(..).enumerate() {
            ch.recent.push_back(now);
            if m.id.is_none() {
                m.id = Some(format!("{base}:{i}"));
            }
            m.timestamp = Some(now_ms);
            encode_json_data(&mut m);
            self.next_seq += 1;
            let stored = Arc::new(Stored {
                seq: self.next_seq,
                channel: channel.to_string(),
                message: m,
                at: now,
                presence: None,
            });
            if ch.history.len() == HISTORY_CAP {
                ch.history.pop_front();
            }
            ch.history.push_back(stored.clone());
            // No receiver is fine: nobody is subscribed.
            let _ = ch.tx.send(stored.clone());
            delivered.push(stored);
        }
        ch.last_active = now;
        if let Some(k) = key {
            let full = format!("{channel}\u{0}{k}");
            self.seen_ids.insert(full.clone(), now);
            self.seen_order.push_back((now, full));
        }
        let message_id = if n == 1 { base } else { format!("{base}:0") };
        Ok(Published { message_id, delivered })
    }

    /// `client` enters (`true`) or leaves the channel's presence, as a realtime connection does;
    /// subscribers get the presence event. Entering twice or leaving when absent changes nothing.
    pub fn presence(&mut self, channel: &str, client: &str, enter: bool, now_ms: i64) {
        self.counting(channel);
        let ch = self.map.entry(channel.to_string()).or_insert_with(Channel::new);
        let changed = if enter { ch.present.insert(client.to_string()) } else { ch.present.remove(client) };
        if !changed {
            return;
        }
        ch.last_active = Instant::now();
        self.next_seq += 1;
        let message = Message {
            id: Some(format!("{client}:{}", self.next_seq)),
            client_id: Some(client.to_string()),
            timestamp: Some(now_ms),
            ..Message::default()
        };
        let action = if enter { 2 } else { 3 };
        let stored = Stored {
            seq: self.next_seq,
            channel: channel.to_string(),
            message,
            at: Instant::now(),
            presence: Some(action),
        };
        let _ = ch.tx.send(Arc::new(stored));
    }

    fn prune_seen(&mut self, now: Instant) {
        while let Some((t, _)) = self.seen_order.front() {
            if now.duration_since(*t) < DEDUP_WINDOW {
                break;
            }
            if let Some((_, k)) = self.seen_order.pop_front() {
                self.seen_ids.remove(&k);
            }
        }
    }
}

/// The idempotency key of a publish: a single message's `id`, or for several messages the base
/// of ids that must all read `<base>:<index>` (else 40031).
fn idempotency_key(messages: &[Message]) -> Result<Option<String>, ErrorInfo> {
    let with_id = messages.iter().filter(|m| m.id.is_some()).count();
    if with_id == 0 {
        return Ok(None);
    }
    let bad = || {
        ErrorInfo::new(
            400,
            40031,
            "Invalid publish request (invalid client-specified id): Client-specified message ids do not match the required format for multi-message ProtocolMessages",
        )
    };
    if messages.iter().any(|m| m.id.as_deref() == Some("")) {
        return Err(ErrorInfo::new(
            400,
            40031,
            "Invalid publish request (invalid client-specified id): id cannot be empty",
        ));
    }
    if messages.len() == 1 {
        return Ok(messages[0].id.clone());
    }
    if with_id != messages.len() {
        return Err(bad());
    }
    let mut base = None;
    for (i, m) in messages.iter().enumerate() {
        let id = m.id.as_deref().unwrap_or_default();
        let (b, idx) = id.rsplit_once(':').ok_or_else(bad)?;
        if idx != i.to_string() || b.is_empty() || base.get_or_insert(b) != &b {
            return Err(bad());
        }
    }
    Ok(base.map(str::to_string))
}

/// Size as Ably counts it: data + name + clientId + extras.
fn message_size(m: &Message) -> usize {
    let data = match &m.data {
        Some(Value::String(s)) => s.len(),
        Some(v) => v.to_string().len(),
        None => 0,
    };
    let extras = m.extras.as_ref().map(|e| e.to_string().len()).unwrap_or(0);
    data + m.name.as_deref().map_or(0, str::len) + m.client_id.as_deref().map_or(0, str::len) + extras
}

/// JSON objects and arrays travel as JSON text with `encoding: json`, as Ably returns them.
fn encode_json_data(m: &mut Message) {
    if m.encoding.is_none()
        && let Some(v @ (Value::Object(_) | Value::Array(_))) = &m.data
    {
        m.data = Some(Value::String(v.to_string()));
        m.encoding = Some("json".into());
    }
}

pub fn random_id() -> String {
    use rand::Rng;
    use rand::distr::Alphanumeric;
    rand::rng().sample_iter(&Alphanumeric).take(12).map(char::from).collect()
}

#[cfg(test)]
mod tests {

    #[test]
    fn channels_nobody_holds_are_forgotten_once_idle_long_enough() {
        let mut c = Channels::default();
        c.channel("idle");
        c.channel("held").subscribers = 1;
        c.presence("present", "customer-1", true, 0);
        c.prune_idle(Instant::now());
        assert_eq!(c.map.len(), 3, "nothing is idle yet");
        c.prune_idle(Instant::now() + RETAIN_IDLE + Duration::from_secs(1));
        assert_eq!(c.map.keys().collect::<Vec<_>>(), ["held", "present"]);
    }

    use super::*;
    use serde_json::json;

    fn msg(id: Option<&str>) -> Message {
        Message {
            id: id.map(str::to_string),
            name: Some("n".into()),
            data: Some(json!({"a": 1})),
            ..Default::default()
        }
    }

    #[test]
    fn ids_follow_the_multi_message_rule() {
        assert_eq!(idempotency_key(&[msg(Some("x:0")), msg(Some("x:1"))]).unwrap().as_deref(), Some("x"));
        assert_eq!(idempotency_key(&[msg(Some("x:1")), msg(Some("x:0"))]).unwrap_err().code, 40031);
        assert_eq!(idempotency_key(&[msg(Some("x:0")), msg(None)]).unwrap_err().code, 40031);
        assert_eq!(idempotency_key(&[msg(Some("x:0")), msg(Some("y:1"))]).unwrap_err().code, 40031);
        assert_eq!(idempotency_key(&[msg(Some("anything"))]).unwrap().as_deref(), Some("anything"));
    }

    #[test]
    fn duplicates_are_accepted_once_and_rate_is_capped() {
        let mut c = Channels::default();
        let first = c.publish("c", vec![msg(Some("dup"))], 1).unwrap();
        assert_eq!(first.delivered.len(), 1);
        assert_eq!(first.delivered[0].message.encoding.as_deref(), Some("json"));
        let again = c.publish("c", vec![msg(Some("dup"))], 2).unwrap();
        assert!(again.delivered.is_empty());
        for _ in 0..49 {
            c.publish("c", vec![msg(None)], 3).unwrap();
        }
        assert_eq!(c.publish("c", vec![msg(None)], 4).unwrap_err().code, 42913);
        assert!(c.publish("other", vec![msg(None)], 4).is_ok());
    }
}
