//! App statistics for the sandbox's `GET /stats`: per-minute counters, aggregated by `unit`,
//! in the current `entries` shape (protocol 2+) or the legacy nested shape (1.x).

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde_json::{Map, Value, json};

use crate::ably::ErrorInfo;

#[derive(Debug, Default, Clone, Copy)]
struct Counters {
    messages: u64,
    outbound: u64,
    refused: u64,
    failed: u64,
    api_ok: u64,
    api_failed: u64,
    api_refused: u64,
    peak_connections: u64,
    opened_connections: u64,
    peak_channels: u64,
}

impl Counters {
    fn add(&mut self, o: &Counters) {
        self.messages += o.messages;
        self.outbound += o.outbound;
        self.refused += o.refused;
        self.failed += o.failed;
        self.api_ok += o.api_ok;
        self.api_failed += o.api_failed;
        self.api_refused += o.api_refused;
        self.opened_connections += o.opened_connections;
        self.peak_connections = self.peak_connections.max(o.peak_connections);
        self.peak_channels = self.peak_channels.max(o.peak_channels);
    }
}

/// Counters keyed by the start of their minute (ms).
#[derive(Debug, Default)]
pub struct Stats {
    minutes: BTreeMap<i64, Counters>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Minute,
    Hour,
    Day,
    Month,
}

#[derive(Debug, Clone, Copy)]
pub struct StatsQuery {
    start: i64,
    end: i64,
    limit: usize,
    forwards: bool,
    unit: Unit,
    now: i64,
}

impl StatsQuery {
    pub fn parse(q: &HashMap<String, String>, now: i64) -> Result<Self, ErrorInfo> {
        let num = |k: &str, d: i64| -> Result<i64, ErrorInfo> {
            q.get(k).map_or(Ok(d), |v| v.parse().map_err(|_| ErrorInfo::new(400, 40003, format!("Invalid {k}: {v:?}"))))
        };
        let limit = num("limit", 100)?;
        if !(1..=1000).contains(&limit) {
            return Err(ErrorInfo::new(400, 40003, format!("Invalid limit {limit}: must be between 1 and 1000")));
        }
        let unit = match q.get("unit").map(String::as_str) {
            None | Some("minute") => Unit::Minute,
            Some("hour") => Unit::Hour,
            Some("day") => Unit::Day,
            Some("month") => Unit::Month,
            Some(u) => return Err(ErrorInfo::new(400, 40003, format!("Invalid unit {u:?}"))),
        };
        let forwards = match q.get("direction").map(String::as_str) {
            None | Some("backwards") => false,
            Some("forwards") => true,
            Some(d) => return Err(ErrorInfo::new(400, 40003, format!("Invalid direction {d:?}"))),
        };
        let (start, end) = (num("start", 0)?, num("end", now)?);
        if start > end {
            return Err(ErrorInfo::new(400, 40003, "Invalid time range: start is after end"));
        }
        Ok(StatsQuery { start, end, limit: limit as usize, forwards, unit, now })
    }

    pub fn link_params(&self) -> String {
        let unit = match self.unit {
            Unit::Minute => "minute",
            Unit::Hour => "hour",
            Unit::Day => "day",
            Unit::Month => "month",
        };
        let dir = if self.forwards { "forwards" } else { "backwards" };
        format!("start={}&end={}&limit={}&unit={unit}&direction={dir}", self.start, self.end, self.limit)
    }
}

fn minute_of(ms: i64) -> i64 {
    ms - ms.rem_euclid(60_000)
}

/// The interval id of `ms` for `unit` and the start of that interval.
fn interval(ms: i64, unit: Unit) -> (String, i64) {
    let t: DateTime<Utc> = DateTime::from_timestamp_millis(ms).unwrap_or_default();
    let (id, start) = match unit {
        Unit::Minute => (t.format("%Y-%m-%d:%H:%M").to_string(), t.with_second(0)),
        Unit::Hour => (t.format("%Y-%m-%d:%H").to_string(), t.with_second(0).and_then(|t| t.with_minute(0))),
        Unit::Day => (t.format("%Y-%m-%d").to_string(), t.date_naive().and_hms_opt(0, 0, 0).map(|d| d.and_utc())),
        Unit::Month => (
            t.format("%Y-%m").to_string(),
            t.date_naive().with_day(1).and_then(|d| d.and_hms_opt(0, 0, 0)).map(|d| d.and_utc()),
        ),
    };
    let start = start.map(|s| s.timestamp_millis() - s.timestamp_subsec_millis() as i64).unwrap_or(ms);
    (id, start)
}

impl Stats {
    fn now_bucket(&mut self) -> &mut Counters {
        let m = minute_of(chrono::Utc::now().timestamp_millis());
        self.minutes.entry(m).or_default()
    }

    pub fn published(&mut self, n: usize, channels: usize) {
        let b = self.now_bucket();
        b.messages += n as u64;
        b.peak_channels = b.peak_channels.max(channels as u64);
    }

    pub fn delivered(&mut self, n: usize) {
        self.now_bucket().outbound += n as u64;
    }

    pub fn refused(&mut self, n: usize) {
        self.now_bucket().refused += n as u64;
    }

    pub fn failed(&mut self, n: usize) {
        self.now_bucket().failed += n as u64;
    }

    pub fn connection(&mut self, open_now: usize) {
        let b = self.now_bucket();
        b.opened_connections += 1;
        b.peak_connections = b.peak_connections.max(open_now as u64);
    }

    pub fn api_request(&mut self, status: u16) {
        let b = self.now_bucket();
        match status {
            200..=299 => b.api_ok += 1,
            401 | 403 | 413 | 429 => b.api_refused += 1,
            _ => b.api_failed += 1,
        }
    }

    /// Intervals with data in `[start, end]`, newest first unless forwards, and the query
    /// string of the next page when one exists.
    pub fn query(&self, q: &StatsQuery, version: u32) -> (Vec<Value>, Option<String>) {
        let mut grouped: BTreeMap<i64, (String, Counters)> = BTreeMap::new();
        for (m, c) in self.minutes.range(minute_of(q.start)..=q.end) {
            let (id, start) = interval(*m, q.unit);
            grouped.entry(start).or_insert_with(|| (id, Counters::default())).1.add(c);
        }
        let (now_id, _) = interval(q.now, q.unit);
        let in_progress = interval(q.now, Unit::Minute).0;
        let mut ordered: Vec<(i64, (String, Counters))> = grouped.into_iter().collect();
        if !q.forwards {
            ordered.reverse();
        }
        let more = ordered.len() > q.limit;
        ordered.truncate(q.limit);
        let items = ordered
            .iter()
            .map(|(_, (id, c))| {
                let ip = (id == &now_id).then_some(in_progress.as_str());
                if version >= 2 { entries_shape(id, q.unit, c, ip) } else { legacy_shape(id, q.unit, c, ip) }
            })
            .collect();
        let next = match (more, ordered.last()) {
            (true, Some((start, _))) => {
                let (s, e) = if q.forwards { (start + 1, q.end) } else { (q.start, start - 1) };
                let p = StatsQuery { start: s.max(q.start), end: e, ..*q };
                Some(p.link_params())
            }
            _ => None,
        };
        (items, next)
    }
}

fn unit_name(u: Unit) -> &'static str {
    match u {
        Unit::Minute => "minute",
        Unit::Hour => "hour",
        Unit::Day => "day",
        Unit::Month => "month",
    }
}

/// The current shape: sparse dotted `entries` (zero metrics omitted).
fn entries_shape(id: &str, unit: Unit, c: &Counters, in_progress: Option<&str>) -> Value {
    let mut e = Map::new();
    let mut put = |k: &str, v: u64| {
        if v > 0 {
            e.insert(k.to_string(), json!(v));
        }
    };
    put("messages.all.all.count", c.messages + c.outbound);
    put("messages.all.messages.count", c.messages + c.outbound);
    put("messages.all.all.refused", c.refused);
    put("messages.all.all.failed", c.failed);
    put("messages.inbound.rest.messages.count", c.messages);
    put("messages.inbound.rest.all.count", c.messages);
    put("messages.inbound.all.messages.count", c.messages);
    put("messages.inbound.all.all.count", c.messages);
    put("messages.inbound.all.all.refused", c.refused);
    put("messages.inbound.all.all.failed", c.failed);
    put("messages.outbound.realtime.messages.count", c.outbound);
    put("messages.outbound.realtime.all.count", c.outbound);
    put("messages.outbound.all.all.count", c.outbound);
    put("connections.all.peak", c.peak_connections);
    put("connections.all.opened", c.opened_connections);
    put("channels.peak", c.peak_channels);
    put("apiRequests.all.succeeded", c.api_ok);
    put("apiRequests.all.failed", c.api_failed);
    put("apiRequests.all.refused", c.api_refused);
    let mut out = json!({
        "entries": e,
        "schema": "https://schemas.ably.com/json/app-stats-0.0.5.json",
        "appId": "sandboxapp",
        "unit": unit_name(unit),
        "intervalId": id,
    });
    if let Some(ip) = in_progress {
        out["inProgress"] = json!(ip);
    }
    out
}

/// The protocol 1.x nested shape.
fn legacy_shape(id: &str, unit: Unit, c: &Counters, in_progress: Option<&str>) -> Value {
    let mc = |count: u64| json!({"count": count, "data": 0, "uncompressedData": 0, "failed": 0, "refused": 0});
    let mut out = json!({
        "intervalId": id,
        "unit": unit_name(unit),
        "all": {"messages": mc(c.messages + c.outbound), "presence": mc(0), "all": {
            "count": c.messages + c.outbound, "data": 0, "uncompressedData": 0, "failed": c.failed, "refused": c.refused}},
        "inbound": {"rest": {"messages": mc(c.messages), "all": mc(c.messages)}, "realtime": {"all": mc(0)}, "all": {"all": mc(c.messages)}},
        "outbound": {"realtime": {"messages": mc(c.outbound), "all": mc(c.outbound)}, "all": {"all": mc(c.outbound)}},
        "persisted": {"all": mc(0)},
        "connections": {"all": {"peak": c.peak_connections, "min": 0, "mean": 0, "opened": c.opened_connections, "refused": 0}},
        "channels": {"peak": c.peak_channels, "min": 0, "mean": 0, "opened": 0, "refused": 0},
        "apiRequests": {"succeeded": c.api_ok, "failed": c.api_failed, "refused": c.api_refused},
        "tokenRequests": {"succeeded": 0, "failed": 0, "refused": 0},
    });
    if let Some(ip) = in_progress {
        out["inProgress"] = json!(ip);
    }
    out
}
