//! The timeline printer: one line per event as it is read (never holding the window), with the
//! reply latency next to each `message:ai`.

use std::collections::HashMap;
use std::io::{self, Write};

use serde_json::Value;

use super::{Malformed, Source};
use crate::contracts::events;
use crate::mirror::MirrorError;
use crate::mirror::MirroredEvent;
use crate::output::Format;

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

/// Remembers when each customer message was seen, to put the reply latency next to the reply.
/// Bounded: forgotten wholesale past 100,000 entries (a reply that far from its question shows
/// no latency rather than growing memory).
#[derive(Default)]
struct Questions(HashMap<(String, String), i64>);

impl Questions {
    fn note(&mut self, e: &MirroredEvent) {
        if e.name == events::MESSAGE_USER
            && let Some(id) = id_of(&e.data["messageId"])
        {
            if self.0.len() >= 100_000 {
                self.0.clear();
            }
            self.0.insert((e.conversation_id.clone(), id), e.timestamp_ms);
        }
    }

    fn latency_ms(&self, e: &MirroredEvent) -> Option<i64> {
        if e.name != events::MESSAGE_AI {
            return None;
        }
        let q = self.0.get(&(e.conversation_id.clone(), id_of(&e.data["replyTo"])?))?;
        Some(e.timestamp_ms - q)
    }
}

fn id_of(v: &Value) -> Option<String> {
    match v {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

fn shorten(text: &str, max: usize) -> String {
    let one_line: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    crate::output::truncate(&one_line, max)
}

fn text_of(e: &MirroredEvent) -> String {
    match e.data.get("content").and_then(Value::as_str) {
        Some(c) => c.to_string(),
        None => e.data.to_string(),
    }
}

/// Reads every page of `source` and writes the events in `format` to `w`.
pub async fn write(source: Source, format: Format, w: &mut dyn Write) -> Result<Summary, TimelineError> {
    let mut sum = Summary::default();
    let mut questions = Questions::default();
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
                        e.conversation_id,
                        e.name,
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
