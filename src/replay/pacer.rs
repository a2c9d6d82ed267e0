//! The per-channel pacer of the Ably re-publisher: each channel at most `rate` messages in any
//! sliding window of [`WINDOW`], spaced 1/rate apart on an ideal schedule (so the caller's own
//! latency does not slow a channel), every due message of a channel released together, and a
//! channel that Ably refused (42913) backing off from 250 ms, doubling to 8 s. Pure: the caller
//! passes the clock, so the schedule is tested without sleeping.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// A little over one second: Ably counts 50 msg/s per channel, and this margin keeps the
/// pacer on the safe side of its window edges.
pub const WINDOW: Duration = Duration::from_millis(1025);

struct Lane<T> {
    queue: VecDeque<T>,
    sent: VecDeque<Instant>,
    next_due: Instant,
    backoff: Duration,
}

impl<T> Lane<T> {
    /// When this lane may send next.
    fn ready_at(&self, rate: usize) -> Instant {
        let window_free =
            if self.sent.len() >= rate { self.sent[self.sent.len() - rate] + WINDOW } else { self.next_due };
        self.next_due.max(window_free)
    }
}

pub struct Pacer<T> {
    lanes: BTreeMap<String, Lane<T>>,
    rate: usize,
    interval: Duration,
    start: Instant,
}

impl<T> Pacer<T> {
    /// `rate` messages per second per channel (at least 1).
    pub fn new(rate: u32, start: Instant) -> Self {
        let rate = rate.max(1);
        Pacer { lanes: BTreeMap::new(), rate: rate as usize, interval: Duration::from_secs(1) / rate, start }
    }

    pub fn push(&mut self, channel: &str, item: T) {
        let start = self.start;
        self.lanes
            .entry(channel.to_string())
            .or_insert_with(|| Lane {
                queue: VecDeque::new(),
                sent: VecDeque::new(),
                next_due: start,
                backoff: Duration::ZERO,
            })
            .queue
            .push_back(item);
    }

    pub fn is_empty(&self) -> bool {
        self.lanes.values().all(|l| l.queue.is_empty())
    }

    /// Everything due at `now` across channels, at most `max`, with its channel.
    pub fn due(&mut self, now: Instant, max: usize) -> Vec<(String, T)> {
        let mut out = Vec::new();
        for (channel, lane) in self.lanes.iter_mut() {
            while lane.sent.front().is_some_and(|t| now.duration_since(*t) >= WINDOW) {
                lane.sent.pop_front();
            }
            while out.len() < max && !lane.queue.is_empty() && lane.ready_at(self.rate) <= now {
                let Some(item) = lane.queue.pop_front() else { break };
                lane.sent.push_back(now);
                lane.next_due = (lane.next_due + self.interval).max(now.checked_sub(self.interval).unwrap_or(now));
                out.push((channel.clone(), item));
            }
        }
        out
    }

    /// When the next message will be due (never earlier than 1 ms from `now`).
    pub fn next_wake(&self, now: Instant) -> Instant {
        let wake = self
            .lanes
            .values()
            .filter(|l| !l.queue.is_empty())
            .map(|l| l.ready_at(self.rate))
            .min()
            .unwrap_or(now + self.interval);
        wake.max(now + Duration::from_millis(1))
    }

    /// Ably refused `item` for its rate: it goes back to the head of its channel, which backs off.
    pub fn refused(&mut self, channel: &str, item: T, now: Instant) {
        if let Some(lane) = self.lanes.get_mut(channel) {
            lane.backoff = (lane.backoff * 2).clamp(Duration::from_millis(250), Duration::from_secs(8));
            lane.next_due = now + lane.backoff;
            lane.queue.push_front(item);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drains the pacer on a simulated clock stepping 1 ms; returns each release time.
    fn drain(p: &mut Pacer<u32>, start: Instant) -> Vec<(String, Duration)> {
        let mut now = start;
        let mut out = Vec::new();
        while !p.is_empty() {
            for (ch, _) in p.due(now, 100) {
                out.push((ch, now - start));
            }
            now = p.next_wake(now);
        }
        out
    }

    #[test]
    fn a_channel_never_goes_over_its_rate_in_any_window_and_keeps_close_to_it() {
        let start = Instant::now();
        let mut p = Pacer::new(50, start);
        for i in 0..150 {
            p.push("a", i);
        }
        let sent = drain(&mut p, start);
        assert_eq!(sent.len(), 150);
        for (i, (_, t)) in sent.iter().enumerate() {
            let in_window = sent[i..].iter().take_while(|(_, u)| *u - *t < WINDOW).count();
            assert!(in_window <= 50, "{in_window} messages within a window from {t:?}");
        }
        let last = sent.last().unwrap().1;
        assert!(
            last >= Duration::from_millis(2900) && last <= Duration::from_millis(3200),
            "150 at 50/s took {last:?}"
        );
    }

    #[test]
    fn channels_are_paced_side_by_side_and_a_refusal_backs_the_channel_off() {
        let start = Instant::now();
        let mut p = Pacer::new(10, start);
        for i in 0..10 {
            p.push("a", i);
            p.push("b", i);
        }
        let first = p.due(start, 100);
        assert_eq!(first.iter().map(|(c, _)| c.as_str()).collect::<Vec<_>>(), ["a", "b"], "one each, at once");
        let (ch, item) = first.into_iter().next().unwrap();
        p.refused(&ch, item, start);
        let next = p.due(start + Duration::from_millis(100), 100);
        assert_eq!(next.iter().map(|(c, _)| c.as_str()).collect::<Vec<_>>(), ["b"], "a waits out its 250 ms");
        let later = p.due(start + Duration::from_millis(250), 100);
        assert!(later.iter().any(|(c, i)| c == "a" && *i == 0), "the refused message goes first: {later:?}");
    }
}
