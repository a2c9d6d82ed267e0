//! What a report adds up: per bucket a latency histogram and the counts, the same for test
//! traffic apart, and the worst conversations. Both sources feed it: Postgres with the rows of
//! its grouped statement (one per bucket and HDR value), Redis with one [`Group`] at a time;
//! each partition's tally merges into the whole exactly.

use std::cmp::Ordering;

use super::window::Window;
use crate::histogram::LatencyHistogram;

/// Counts of one bucket (or of the whole window, or of test traffic).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub messages: u64,
    pub duplicates: u64,
    pub replies: u64,
    pub unpaired: u64,
    pub unanswered: u64,
    pub pending: u64,
    pub over_slo: u64,
    pub warnings: u64,
    pub violations: u64,
    pub keyless_messages: u64,
    pub keyless_replies: u64,
}

impl Counts {
    pub fn add(&mut self, o: &Counts) {
        self.messages += o.messages;
        self.duplicates += o.duplicates;
        self.replies += o.replies;
        self.unpaired += o.unpaired;
        self.unanswered += o.unanswered;
        self.pending += o.pending;
        self.over_slo += o.over_slo;
        self.warnings += o.warnings;
        self.violations += o.violations;
        self.keyless_messages += o.keyless_messages;
        self.keyless_replies += o.keyless_replies;
    }
}

/// A bucket: the reply latencies of its messages and its counts.
#[derive(Debug, Clone, Default)]
pub struct Acc {
    pub latency: LatencyHistogram,
    pub counts: Counts,
}

impl Acc {
    fn merge(&mut self, o: &Acc) -> Result<(), String> {
        self.counts.add(&o.counts);
        self.latency.merge(&o.latency)
    }
}

/// A conversation among the worst.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Worst {
    pub conversation: String,
    pub slowest_us: Option<u64>,
    pub unanswered: u64,
    pub over_slo: u64,
    pub messages: u64,
}

impl Worst {
    /// Worst first: a conversation with an unanswered message, then the slowest reply, then id.
    pub fn rank(a: &Worst, b: &Worst) -> Ordering {
        (b.unanswered > 0)
            .cmp(&(a.unanswered > 0))
            .then_with(|| b.slowest_us.cmp(&a.slowest_us))
            .then_with(|| a.conversation.cmp(&b.conversation))
    }

    fn counts(&self) -> bool {
        self.slowest_us.is_some() || self.unanswered > 0
    }
}

/// The whole report's sums.
#[derive(Debug, Clone)]
pub struct Tally {
    pub buckets: Vec<Acc>,
    pub excluded: Acc,
    pub conversations: u64,
    pub excluded_conversations: u64,
    pub worst: Vec<Worst>,
    pub top: usize,
    /// Redis entries whose timestamp could not be read (skipped, counted).
    pub unreadable: u64,
    /// Re-sent copies (`replay-<original id>`) left out of every figure.
    pub copies: u64,
    /// Typing and read events of customers' conversations, by [`crate::contracts::Extra`]
    /// (in `Extra::ALL` order): counted apart, never as messages or replies.
    pub extras: [u64; 3],
    /// Typing and read events of test traffic.
    pub excluded_extras: u64,
}

impl Tally {
    pub fn new(buckets: usize, top: usize) -> Self {
        Tally {
            buckets: vec![Acc::default(); buckets],
            excluded: Acc::default(),
            conversations: 0,
            excluded_conversations: 0,
            worst: Vec::new(),
            top,
            unreadable: 0,
            copies: 0,
            extras: [0; 3],
            excluded_extras: 0,
        }
    }

    /// Counts `n` typing or read events, of test traffic or a customer's.
    pub fn extra(&mut self, e: crate::contracts::Extra, synthetic: bool, n: u64) {
        if synthetic {
            self.excluded_extras += n;
        } else {
            self.extras[e as usize] += n;
        }
    }

    /// The accumulator of bucket `b` (clamped into the window), or of test traffic.
    pub fn acc(&mut self, synthetic: bool, b: i64) -> &mut Acc {
        if synthetic {
            return &mut self.excluded;
        }
        let last = self.buckets.len().saturating_sub(1);
        let i = (b.max(0) as usize).min(last);
        &mut self.buckets[i]
    }

    /// Offers a conversation for the worst list.
    pub fn offer(&mut self, w: Worst) {
        if self.top == 0 || !w.counts() {
            return;
        }
        self.worst.push(w);
        if self.worst.len() > self.top * 2 {
            self.trim();
        }
    }

    fn trim(&mut self) {
        self.worst.sort_by(Worst::rank);
        self.worst.truncate(self.top);
    }

    /// Adds another partition's tally (same window).
    pub fn merge(&mut self, o: Tally) -> Result<(), String> {
        for (a, b) in self.buckets.iter_mut().zip(&o.buckets) {
            a.merge(b)?;
        }
        self.excluded.merge(&o.excluded)?;
        self.conversations += o.conversations;
        self.excluded_conversations += o.excluded_conversations;
        self.unreadable += o.unreadable;
        self.copies += o.copies;
        for (a, b) in self.extras.iter_mut().zip(o.extras) {
            *a += b;
        }
        self.excluded_extras += o.excluded_extras;
        for w in o.worst {
            self.offer(w);
        }
        self.trim();
        Ok(())
    }

    /// Everything not test traffic, over the whole window.
    pub fn total(&self) -> Result<Acc, String> {
        let mut t = Acc::default();
        for b in &self.buckets {
            t.merge(b)?;
        }
        Ok(t)
    }

    pub fn finish(mut self) -> Self {
        self.trim();
        self
    }
}

/// One customer message with what answers it (or one reply or SLA event alone), as both
/// sources build it; times in microseconds since the epoch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Group {
    pub msg_at: Option<i64>,
    pub msgs: u64,
    pub reply_at: Option<i64>,
    pub replies: u64,
    pub unpaired: u64,
    pub warnings: u64,
    pub violations: u64,
    pub first_at: i64,
    pub synthetic: bool,
    /// A row without its key (a message without `messageId`, a reply without the reply field).
    pub keyless: bool,
}

/// What became of a group's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    Answered { us: u64 },
    Unanswered,
    Pending,
    NoMessage,
}

/// The longest latency recorded exactly (as the SQL clamps it): one hour.
pub const MAX_US: u64 = 3_600_000_000;

impl Group {
    /// The rule the SQL applies (docs/sla-report.md): answered within the time-out; unanswered
    /// once the time-out ran out inside the window; pending otherwise.
    pub fn fate(&self, timeout_us: i64, until_us: i64) -> Fate {
        let Some(m) = self.msg_at.filter(|_| self.msgs > 0 && !self.keyless) else { return Fate::NoMessage };
        match self.reply_at {
            Some(r) if r <= m + timeout_us => Fate::Answered { us: (r - m).clamp(1, MAX_US as i64) as u64 },
            Some(_) => Fate::Unanswered,
            None if m + timeout_us <= until_us => Fate::Unanswered,
            None => Fate::Pending,
        }
    }

    /// Adds the group to `tally` under the SQL's rules; returns its fate.
    pub fn add_to(&self, tally: &mut Tally, w: &Window, timeout_us: i64, slo_us: u64) -> Fate {
        let fate = self.fate(timeout_us, w.until.timestamp_micros());
        let b = w.bucket_of_us(self.msg_at.unwrap_or(self.first_at)) as i64;
        let acc = tally.acc(self.synthetic, b);
        let c = &mut acc.counts;
        if self.keyless {
            c.keyless_messages += self.msgs;
            c.keyless_replies += self.replies;
        } else {
            c.messages += self.msgs.min(1);
            c.duplicates += self.msgs.saturating_sub(1);
            c.replies += self.replies;
            c.unpaired += self.unpaired;
        }
        c.warnings += self.warnings;
        c.violations += self.violations;
        match fate {
            Fate::Answered { us } => {
                acc.latency.record_us(us, 1);
                if us > slo_us {
                    acc.counts.over_slo += 1;
                }
            }
            Fate::Unanswered => c.unanswered += 1,
            Fate::Pending => c.pending += 1,
            Fate::NoMessage => {}
        }
        fate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_answered_unanswered_or_pending() {
        let g = |reply: Option<i64>| Group { msg_at: Some(1_000_000), msgs: 1, reply_at: reply, ..Group::default() };
        let (timeout, until) = (60_000_000, 100_000_000);
        assert_eq!(g(Some(3_000_000)).fate(timeout, until), Fate::Answered { us: 2_000_000 });
        assert_eq!(g(Some(500_000)).fate(timeout, until), Fate::Answered { us: 1 }, "a reply before: 0, clamped");
        assert_eq!(g(Some(62_000_000)).fate(timeout, until), Fate::Unanswered, "a late reply");
        assert_eq!(g(None).fate(timeout, until), Fate::Unanswered);
        assert_eq!(g(None).fate(timeout, 30_000_000), Fate::Pending, "its time-out runs past the window");
        let keyless = Group { keyless: true, ..g(None) };
        assert_eq!(keyless.fate(timeout, until), Fate::NoMessage);
    }

    #[test]
    fn worst_ranks_unanswered_then_slowest() {
        let w = |c: &str, s: Option<u64>, u: u64| Worst {
            conversation: c.into(),
            slowest_us: s,
            unanswered: u,
            over_slo: 0,
            messages: 1,
        };
        let mut t = Tally::new(1, 2);
        t.offer(w("a", Some(5), 0));
        t.offer(w("b", Some(9), 0));
        t.offer(w("c", None, 1));
        t.offer(w("d", None, 0));
        let t = t.finish();
        let names: Vec<&str> = t.worst.iter().map(|w| w.conversation.as_str()).collect();
        assert_eq!(names, ["c", "b"]);
    }
}
