//! The final summary of a replay to a target: what was read, written, skipped and failed.

use std::io::{self, Write};
use std::time::Duration;

use serde_json::{Value, json};

use super::{Counts, Malformed};
use crate::output::{Render, Style, escape};

#[derive(Debug, Clone)]
pub struct Summary {
    pub target: &'static str,
    pub counts: Counts,
    pub elapsed: Duration,
    pub dry_run: bool,
    /// Resumed from a checkpoint (the counts include the earlier runs).
    pub resumed: bool,
    pub checkpoint: Option<String>,
    /// The first malformed entries (at most 100).
    pub malformed: Vec<Malformed>,
    /// The first refused events (at most 100).
    pub failures: Vec<String>,
    /// Events read by this run (the counts include earlier runs when resumed).
    pub read_now: u64,
    /// The checkpoint said the replay had already finished: nothing was left to do.
    pub already_done: bool,
}

impl Summary {
    pub fn new(target: &'static str) -> Summary {
        Summary {
            target,
            counts: Counts::default(),
            elapsed: Duration::ZERO,
            dry_run: false,
            resumed: false,
            checkpoint: None,
            malformed: Vec::new(),
            failures: Vec::new(),
            read_now: 0,
            already_done: false,
        }
    }

    pub fn note_malformed(&mut self, m: Vec<Malformed>) {
        let room = 100usize.saturating_sub(self.malformed.len());
        self.malformed.extend(m.into_iter().take(room));
    }

    /// `before`: the counts the run started from (a resumed checkpoint's).
    pub fn finish(&mut self, counts: Counts, before: &Counts, elapsed: Duration) {
        self.read_now = counts.read.saturating_sub(before.read);
        self.counts = counts;
        self.elapsed = elapsed;
    }

    /// Events per second of this run (not of earlier runs a checkpoint resumed).
    pub fn rate(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 { self.read_now as f64 / s } else { 0.0 }
    }
}

impl Render for Summary {
    fn table(&self, w: &mut dyn Write, _style: Style) -> io::Result<()> {
        let c = &self.counts;
        if self.already_done {
            writeln!(w, "nothing left to do: this replay had already finished (its checkpoint says so)")?;
        }
        let verb = if self.dry_run { "would write" } else { "written" };
        writeln!(w, "target      {}{}", self.target, if self.dry_run { " (dry run: nothing written)" } else { "" })?;
        writeln!(w, "read        {}{}", c.read, if c.read == 0 { " (nothing in this window)" } else { "" })?;
        writeln!(w, "{verb:<11} {}", c.written)?;
        writeln!(w, "skipped     {} (already there)", c.skipped)?;
        if c.expired > 0 {
            writeln!(w, "expired     {} (older than the Redis stream lifetime)", c.expired)?;
        }
        writeln!(w, "failed      {}", c.failed)?;
        writeln!(w, "malformed   {}", c.malformed)?;
        if c.rate_limited > 0 {
            writeln!(w, "rate-limited {} (retried)", c.rate_limited)?;
        }
        let this_run = if self.resumed { format!(", {} read by this run", self.read_now) } else { String::new() };
        writeln!(
            w,
            "time        {} ({:.0} events/s{this_run})",
            crate::duration::format_duration(self.elapsed),
            self.rate()
        )?;
        if let Some(cp) = &self.checkpoint {
            writeln!(w, "checkpoint  {cp}{}", if self.resumed { " (resumed)" } else { "" })?;
        }
        for m in &self.malformed {
            writeln!(w, "malformed   {}: {}", escape(&m.position), escape(&m.reason))?;
        }
        for f in &self.failures {
            writeln!(w, "failed      {}", escape(f))?;
        }
        Ok(())
    }

    fn json(&self) -> Value {
        json!({
            "schema_version": 1,
            "kind": "replay",
            "target": self.target,
            "dry_run": self.dry_run,
            "resumed": self.resumed,
            "checkpoint": self.checkpoint,
            "counts": self.counts,
            "elapsed_ms": self.elapsed.as_millis() as u64,
            "events_per_second": self.rate(),
            "read_this_run": self.read_now,
            "already_done": self.already_done,
            "malformed": self.malformed,
            "failures": self.failures,
        })
    }
}
