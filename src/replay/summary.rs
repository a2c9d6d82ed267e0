//! The final summary of a replay to a target: what was read, written, skipped and failed.

use std::io::{self, Write};
use std::time::Duration;

use serde_json::{Value, json};

use super::{Counts, Malformed};
use crate::output::{Render, Style};

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
        }
    }

    pub fn note_malformed(&mut self, m: Vec<Malformed>) {
        let room = 100usize.saturating_sub(self.malformed.len());
        self.malformed.extend(m.into_iter().take(room));
    }

    pub fn finish(&mut self, counts: Counts, elapsed: Duration) {
        self.counts = counts;
        self.elapsed = elapsed;
    }

    /// Events per second of this run (not of earlier runs a checkpoint resumed).
    pub fn rate(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 { self.counts.read as f64 / s } else { 0.0 }
    }
}

impl Render for Summary {
    fn table(&self, w: &mut dyn Write, _style: Style) -> io::Result<()> {
        let c = &self.counts;
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
        writeln!(w, "time        {} ({:.0} events/s)", crate::duration::format_duration(self.elapsed), self.rate())?;
        if let Some(cp) = &self.checkpoint {
            writeln!(w, "checkpoint  {cp}{}", if self.resumed { " (resumed)" } else { "" })?;
        }
        for m in &self.malformed {
            writeln!(w, "malformed   {}: {}", m.position, m.reason)?;
        }
        for f in &self.failures {
            writeln!(w, "failed      {f}")?;
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
            "malformed": self.malformed,
            "failures": self.failures,
        })
    }
}
