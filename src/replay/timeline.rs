//! The timeline printer: one line per event as it is read (never holding the window), with the
//! reply latency next to each reply (the contract's AI event, paired with the customer message
//! by the reply field, or as the first reply after it under `first-after`).

use std::collections::HashMap;
use std::io::{self, Write};

use serde_json::Value;

use super::{Malformed, Source};
use crate::contracts::{Contracts, EventKind, id_text};
use crate::mirror::MirroredEvent;
use crate::output::Format;
use crate::store::MirrorError;

#[derive(Debug, thiserror::Error)]
pub enum TimelineError {
    #[error(transparent)]
    Source(#[from] MirrorError),
    #[error("writing output: {0}")]
    Io(#[from] io::Error),
}

#[derive(Debug, Default, serde::Serialize)]
pub struct Summary {
    pub events: u64,
    pub malformed: u64,
    /// The first malformed entries (at most 100), with their position.
    pub malformed_examples: Vec<Malformed>,
}

impl Summary {
    /// The lines for stderr: how many events from which store, and the malformed ones.
    pub fn describe(&self, from: super::open::Store, conversations: &[String]) -> String {
        let store = match from {
            super::open::Store::Redis => "Redis",
            super::open::Store::Postgres => "Postgres",
        };
        let mut out = if self.events == 0 {
            let what = if conversations.is_empty() {
                "any conversation".to_string()
            } else {
                format!("conversation(s) {}", crate::output::escape(&conversations.join(", ")))
            };
            format!("no events in {store} for {what} in this window")
        } else {
            format!("{} events from {store}", self.events)
        };
        if self.malformed > 0 {
            out.push_str(&format!("\n{} malformed entries skipped:", self.malformed));
            for m in &self.malformed_examples {
                out.push_str(&format!(
                    "\n  {}: {}",
                    crate::output::escape(&m.position),
                    crate::output::escape(&m.reason)
                ));
            }
        }
        out
    }
}

/// Remembers when each customer message was seen, to put the reply latency next to the reply.
/// Bounded: forgotten wholesale past 100,000 entries (a reply that far from its question shows
/// no latency rather than growing memory).
struct Questions<'c> {
    contracts: &'c Contracts,
    /// (conversation, message id) to its time; under `first-after`, the message id is empty and
    /// the entry is the conversation's oldest unanswered message.
    seen: HashMap<(String, String), i64>,
}

impl<'c> Questions<'c> {
    fn new(contracts: &'c Contracts) -> Self {
        Questions { contracts, seen: HashMap::new() }
    }

    fn note(&mut self, e: &MirroredEvent) {
        if self.contracts.event_kind(&e.name) != Some(EventKind::User) {
            return;
        }
        if self.seen.len() >= 100_000 {
            self.seen.clear();
        }
        match self.contracts.reply.field() {
            Some(_) => {
                if let Some(id) = e.data.get("messageId").and_then(id_text) {
                    self.seen.insert((e.conversation_id.clone(), id), e.timestamp_ms);
                }
            }
            None => {
                self.seen.entry((e.conversation_id.clone(), String::new())).or_insert(e.timestamp_ms);
            }
        }
    }

    fn latency_ms(&mut self, e: &MirroredEvent) -> Option<i64> {
        if self.contracts.event_kind(&e.name) != Some(EventKind::Ai) {
            return None;
        }
        let asked = match self.contracts.replied_to(&e.data) {
            Some(id) => self.seen.get(&(e.conversation_id.clone(), id)).copied(),
            None if self.contracts.reply.field().is_none() => {
                self.seen.remove(&(e.conversation_id.clone(), String::new()))
            }
            None => None,
        }?;
        Some(e.timestamp_ms - asked)
    }
}

fn shorten(text: &str, max: usize) -> String {
    crate::output::truncate(&crate::output::escape(text), max)
}

fn text_of(e: &MirroredEvent) -> String {
    match e.data.get("content").and_then(Value::as_str) {
        Some(c) => c.to_string(),
        None => e.data.to_string(),
    }
}

/// Reads every page of `source` and writes the events in `format` to `w`.
pub async fn write(
    source: Source,
    contracts: &Contracts,
    format: Format,
    w: &mut dyn Write,
) -> Result<Summary, TimelineError> {
    let mut sum = Summary::default();
    let mut questions = Questions::new(contracts);
    if format == Format::Table {
        writeln!(w, "{:<24}  {:<12}  {:<14}  {:<16}  {:>9}  text", "time", "conversation", "event", "who", "reply")?;
    }
    if format == Format::Json {
        write!(w, "[")?;
    }
    let mut pages = super::source::Prefetch::start(source, 1);
    while let Some(read) = pages.next().await {
        let (page, _) = read?;
        for m in page.malformed {
            sum.malformed += 1;
            if sum.malformed_examples.len() < 100 {
                sum.malformed_examples.push(m);
            }
        }
        for e in &page.raw {
            if format == Format::Json && sum.events > 0 {
                write!(w, ",")?;
            }
            serde_json::to_writer(&mut *w, e).map_err(io::Error::from)?;
            if format != Format::Json {
                writeln!(w)?;
            }
            sum.events += 1;
        }
        for e in &page.events {
            questions.note(e);
            match format {
                Format::Table => {
                    let t = chrono::DateTime::from_timestamp_millis(e.timestamp_ms)
                        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                        .unwrap_or_default();
                    let latency = questions.latency_ms(e).map(|ms| format!("{ms}ms")).unwrap_or_default();
                    let who = e.client_id.as_deref().unwrap_or("-");
                    writeln!(
                        w,
                        "{t:<24}  {:<12}  {:<14}  {:<16}  {latency:>9}  {}",
                        crate::output::escape(&e.conversation_id),
                        crate::output::escape(&e.name),
                        shorten(who, 16),
                        shorten(&text_of(e), 60)
                    )?;
                }
                Format::Json => {
                    if sum.events > 0 {
                        write!(w, ",")?;
                    }
                    serde_json::to_writer(&mut *w, e).map_err(io::Error::from)?;
                }
                _ => {
                    serde_json::to_writer(&mut *w, e).map_err(io::Error::from)?;
                    writeln!(w)?;
                }
            }
            sum.events += 1;
        }
    }
    if format == Format::Json {
        writeln!(w, "]")?;
    }
    w.flush()?;
    Ok(sum)
}
