//! The traffic's ground truth: each conversation's transport over time and the events it
//! produced. Bounded: the live conversations and the last [`KEPT`] finished ones are kept, the
//! counts over the whole run.

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;
use serde_json::{Value, json};

use crate::rollout::reader::Why;

/// Finished conversations kept for the ground truth.
pub const KEPT: usize = 10_000;
/// Minutes `by_minute` covers.
const MINUTES: i64 = 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    Realtime,
    Polling,
}

/// One event a simulated customer (or its app) produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Produced {
    Message,
    Reply,
    TypingStart,
    TypingStop,
    Read,
    PresenceEnter,
    PresenceLeave,
    Subscribe,
    Unsubscribe,
    Poll,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Counts {
    pub messages: u64,
    pub replies: u64,
    pub typing_start: u64,
    pub typing_stop: u64,
    pub read: u64,
    pub presence_enter: u64,
    pub presence_leave: u64,
    pub subscribe: u64,
    pub unsubscribe: u64,
    pub polls: u64,
}

impl Counts {
    fn add(&mut self, e: Produced) {
        let c = match e {
            Produced::Message => &mut self.messages,
            Produced::Reply => &mut self.replies,
            Produced::TypingStart => &mut self.typing_start,
            Produced::TypingStop => &mut self.typing_stop,
            Produced::Read => &mut self.read,
            Produced::PresenceEnter => &mut self.presence_enter,
            Produced::PresenceLeave => &mut self.presence_leave,
            Produced::Subscribe => &mut self.subscribe,
            Produced::Unsubscribe => &mut self.unsubscribe,
            Produced::Poll => &mut self.polls,
        };
        *c += 1;
    }
}

/// One simulated conversation.
#[derive(Debug, Clone, Serialize)]
pub struct Conv {
    pub id: u64,
    pub customer: u64,
    pub started_ms: i64,
    pub ended_ms: Option<i64>,
    pub transport: Transport,
    pub why: Why,
    /// Holds an SSE subscription of its own now.
    pub subscribed: bool,
    pub dashboard: bool,
    /// Each transport it was put on: (ms, transport, why).
    pub timeline: Vec<(i64, Transport, Why)>,
    pub events: Counts,
    pub failure: Option<String>,
}

#[derive(Debug, Default)]
pub struct Truth {
    pub started: u64,
    pub finished: u64,
    pub failed: u64,
    /// Arrivals not started: too many customers at once.
    pub shed: u64,
    pub events: Counts,
    live: BTreeMap<u64, Conv>,
    done: VecDeque<Conv>,
    failures: BTreeMap<String, u64>,
    flag_reads: u64,
    flag_unreadable_reads: u64,
    /// Why the flag could not be read at the last read (`None`: it was read).
    flag_unreadable: Option<String>,
}

impl Truth {
    pub fn active(&self) -> usize {
        self.live.len()
    }

    pub fn flag_read(&mut self, unreadable: Option<String>) {
        self.flag_reads += 1;
        self.flag_unreadable_reads += u64::from(unreadable.is_some());
        self.flag_unreadable = unreadable;
    }

    pub fn begin(&mut self, conv: Conv) {
        self.started += 1;
        self.live.insert(conv.id, conv);
    }

    /// A customer that failed before its conversation existed.
    pub fn failed_early(&mut self, kind: String) {
        self.started += 1;
        self.failed += 1;
        *self.failures.entry(kind).or_default() += 1;
    }

    /// Whether the live conversation `id` has not been put on a transport yet.
    pub fn live_timeline_empty(&self, id: u64) -> bool {
        self.live.get(&id).is_some_and(|c| c.timeline.is_empty())
    }

    pub fn put_on(&mut self, id: u64, at: i64, t: Transport, why: Why) {
        if let Some(c) = self.live.get_mut(&id) {
            c.transport = t;
            c.why = why;
            c.timeline.push((at, t, why));
        }
    }

    pub fn subscribed(&mut self, id: u64, on: bool) {
        if let Some(c) = self.live.get_mut(&id) {
            c.subscribed = on;
        }
        self.event(id, if on { Produced::Subscribe } else { Produced::Unsubscribe });
    }

    pub fn event(&mut self, id: u64, e: Produced) {
        self.events.add(e);
        if let Some(c) = self.live.get_mut(&id) {
            c.events.add(e);
        }
    }

    pub fn end(&mut self, id: u64, at: i64, failure: Option<String>) {
        let Some(mut c) = self.live.remove(&id) else { return };
        c.ended_ms = Some(at);
        c.subscribed = false;
        self.finished += 1;
        if let Some(f) = &failure {
            self.failed += 1;
            *self.failures.entry(f.split(':').next().unwrap_or(f).to_string()).or_default() += 1;
        }
        c.failure = failure;
        if self.done.len() == KEPT {
            self.done.pop_front();
        }
        self.done.push_back(c);
    }

    /// The ground truth as `GET /_sandbox/traffic` answers it.
    pub fn json(&self, control: super::Control, o: &super::TrafficOptions, now_ms: i64) -> Value {
        let on = |t: Transport| self.live.values().filter(|c| c.transport == t).count();
        let subscribed = self.live.values().filter(|c| c.subscribed).count();
        json!({
            "schema_version": 1,
            "control": control,
            "options": {
                "turns": [o.turns.0, o.turns.1], "think_ms": o.think.as_millis() as u64,
                "flag_refresh_ms": o.flag_refresh.as_millis() as u64, "poll_interval_ms": o.poll_interval.as_millis() as u64,
                "dashboard_share": o.dashboard_share, "flag": o.flag, "kill_switch": o.kill_switch,
            },
            "flag": {
                "reads": self.flag_reads,
                "unreadable_reads": self.flag_unreadable_reads,
                "unreadable": self.flag_unreadable,
                "fallback": self.flag_unreadable.as_ref().map(|_| "the flag could not be read: the app falls back to the kill switch (polling)"),
            },
            "started": self.started,
            "active": self.live.len(),
            "finished": self.finished,
            "failed": self.failed,
            "shed": self.shed,
            "failures": self.failures,
            "now": {"realtime": on(Transport::Realtime), "polling": on(Transport::Polling), "subscribed": subscribed},
            "events": self.events,
            "by_minute": self.by_minute(now_ms),
            "conversations": self.live.values().chain(self.done.iter()).collect::<Vec<_>>(),
        })
    }

    /// For each of the last minutes: how many conversations were on each transport at some
    /// time in it.
    fn by_minute(&self, now_ms: i64) -> Vec<Value> {
        let last = now_ms.div_euclid(60_000);
        let first = last - MINUTES + 1;
        let mut counts: BTreeMap<i64, (u64, u64)> = BTreeMap::new();
        for c in self.live.values().chain(self.done.iter()) {
            let end = c.ended_ms.unwrap_or(now_ms);
            for (i, (at, t, _)) in c.timeline.iter().enumerate() {
                let until = c.timeline.get(i + 1).map_or(end, |n| n.0);
                let (a, b) = (at.div_euclid(60_000).max(first), until.div_euclid(60_000).min(last));
                for m in a..=b {
                    let e = counts.entry(m).or_default();
                    match t {
                        Transport::Realtime => e.0 += 1,
                        Transport::Polling => e.1 += 1,
                    }
                }
            }
        }
        counts
            .into_iter()
            .map(|(m, (r, p))| {
                let at = chrono::DateTime::from_timestamp(m * 60, 0).map(|d| d.to_rfc3339()).unwrap_or_default();
                json!({"minute": at, "realtime": r, "polling": p})
            })
            .collect()
    }
}
