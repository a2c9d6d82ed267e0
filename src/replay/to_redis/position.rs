//! Where the backfill left each stream, and what that allows the next page: pure logic.

use std::collections::HashMap;

/// A Redis stream entry id, `<ms>-<seq>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct StreamId {
    pub ms: u64,
    pub seq: u64,
}

impl StreamId {
    pub fn parse(s: &str) -> Option<StreamId> {
        let (ms, seq) = s.split_once('-')?;
        Some(StreamId { ms: ms.parse().ok()?, seq: seq.parse().ok()? })
    }

    /// The id `n` places after this one (same millisecond), unless the sequence would overflow.
    pub fn plus(self, n: u64) -> Option<StreamId> {
        Some(StreamId { ms: self.ms, seq: self.seq.checked_add(n)? })
    }
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// Where a stream was left, in the script's terms: entries up to `after` can repeat no event of
/// a later page (each is older than a page already written, and later pages are not); `newest`
/// is the newest timestamp up to `after`; `last` was the stream's last entry, and `sorted` says
/// the entries after `after` were then in time order. The default is "never seen": the script
/// reads the whole stream.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Position {
    pub after: String,
    pub newest: Option<i64>,
    pub last: String,
    pub sorted: bool,
}

impl Position {
    /// When `timestamps` (one conversation's events of a page, in page order) can go straight
    /// after the stream's last entry without reading it: the stream ends at `after` and was in
    /// time order, the events are in order, none older than the stream's newest and none past
    /// the stream lifetime. Returns the last entry's id: the events take the ids after it, so
    /// that Redis itself refuses them (`XADD` with an id not above the stream's top) if anyone
    /// wrote to the stream since; the caller then falls back to the script.
    pub fn append_after(&self, timestamps: &[i64], now_ms: i64, ttl_ms: i64) -> Option<StreamId> {
        let first = *timestamps.first()?;
        let ordered = timestamps.windows(2).all(|w| w[0] <= w[1]);
        let fits = self.newest.is_none_or(|n| first >= n);
        let fresh = first.saturating_add(ttl_ms) > now_ms;
        if self.last.is_empty() || self.after != self.last || !self.sorted || !ordered || !fits || !fresh {
            return None;
        }
        let last = StreamId::parse(&self.last)?;
        last.plus(timestamps.len() as u64)?;
        Some(last)
    }

    /// The position after appending entries `first_id`, `first_id + 1`, … with `timestamps`:
    /// it moves past those older than `horizon` (the page's newest), as the script does.
    pub fn appended(&self, first_id: StreamId, timestamps: &[i64], horizon: i64) -> Position {
        let mut next = self.clone();
        for (i, ts) in timestamps.iter().enumerate() {
            if *ts >= horizon {
                break;
            }
            next.after = first_id.plus(i as u64).map(|id| id.to_string()).unwrap_or_default();
            next.newest = Some(next.newest.map_or(*ts, |n| n.max(*ts)));
        }
        let end = first_id.plus(timestamps.len().saturating_sub(1) as u64);
        next.last = end.map(|id| id.to_string()).unwrap_or_default();
        next
    }

    /// The script's arguments for this position.
    pub fn args(&self) -> [String; 4] {
        let newest = self.newest.map(|n| n.to_string()).unwrap_or_default();
        [self.after.clone(), newest, self.last.clone(), if self.sorted { "1" } else { "0" }.into()]
    }

    /// The position from the script's answer (the same four, as text).
    pub fn from_answer(after: String, newest: &str, last: String, sorted: &str) -> Position {
        Position { after, newest: newest.parse().ok(), last, sorted: sorted == "1" }
    }
}

/// The positions of the conversations met so far. Forgetting one is always safe (the next call
/// reads that stream from its start), so the map is bounded: emptied when it reaches
/// [`MAX_POSITIONS`] conversations (about 150 bytes each: at most ~30 MiB).
#[derive(Default)]
pub struct Positions(HashMap<Box<str>, Position>);

pub const MAX_POSITIONS: usize = 200_000;

impl Positions {
    pub fn get(&self, conversation: &str) -> Option<&Position> {
        self.0.get(conversation)
    }

    pub fn set(&mut self, conversation: &str, at: Position) {
        if self.0.len() >= MAX_POSITIONS && !self.0.contains_key(conversation) {
            self.0.clear();
        }
        self.0.insert(conversation.into(), at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: i64 = 86_400_000;

    fn left(after: &str, newest: i64, last: &str) -> Position {
        Position { after: after.into(), newest: Some(newest), last: last.into(), sorted: true }
    }

    #[test]
    fn only_a_stream_left_at_its_end_in_order_takes_events_straight_after_it() {
        let now = 1_000_000;
        let at = left("5-3", 900, "5-3");
        assert_eq!(at.append_after(&[900, 950], now, TTL), Some(StreamId { ms: 5, seq: 3 }));
        assert_eq!(at.append_after(&[899], now, TTL), None, "older than the stream's newest");
        assert_eq!(at.append_after(&[950, 940], now, TTL), None, "not in order");
        assert_eq!(at.append_after(&[], now, TTL), None);
        assert_eq!(at.append_after(&[900], 900 + TTL, TTL), None, "past the lifetime");
        assert_eq!(left("5-2", 900, "5-3").append_after(&[950], now, TTL), None, "entries after the position");
        assert_eq!(Position { sorted: false, ..at.clone() }.append_after(&[950], now, TTL), None);
        assert_eq!(Position::default().append_after(&[950], now, TTL), None, "never seen: read it");
        assert_eq!(left("5-18446744073709551615", 1, "5-18446744073709551615").append_after(&[950], now, TTL), None);
    }

    #[test]
    fn the_position_moves_past_appended_entries_older_than_the_horizon() {
        let at = left("5-3", 900, "5-3");
        let first = StreamId { ms: 5, seq: 4 };
        assert_eq!(at.appended(first, &[910, 920], 1000), left("5-5", 920, "5-5"));
        // The page's newest event may have a twin in a later page: the position stops before it.
        assert_eq!(at.appended(first, &[910, 1000], 1000), left("5-4", 910, "5-5"));
        assert_eq!(at.appended(first, &[1000], 1000), left("5-3", 900, "5-4"));
    }

    #[test]
    fn answers_and_arguments_round_trip() {
        let at = left("7-0", 42, "7-1");
        let [a, n, l, s] = at.args();
        assert_eq!(Position::from_answer(a, &n, l, &s), at);
        assert_eq!(Position::default().args(), ["", "", "", "0"].map(String::from));
        assert_eq!(StreamId::parse("17-4").map(|i| i.to_string()).as_deref(), Some("17-4"));
        assert_eq!(StreamId::parse("17"), None);
    }

    #[test]
    fn a_full_map_starts_again_empty() {
        let mut p = Positions::default();
        for i in 0..MAX_POSITIONS {
            p.set(&i.to_string(), Position::default());
        }
        p.set("0", left("1-0", 1, "1-0"));
        assert_eq!(p.0.len(), MAX_POSITIONS, "known conversations are updated in place");
        p.set("new", left("1-0", 1, "1-0"));
        assert_eq!(p.0.len(), 1);
        assert_eq!(p.get("0"), None, "forgotten: read from the start next time");
    }
}
