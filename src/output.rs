//! Output formats and the renderer contract. Every result type implements [`Render`]; the
//! binary picks the format and the writer. Renderers are generic over `Write` so tests render
//! into a `Vec<u8>`.

use std::io::{self, Write};

use comfy_table::{ContentArrangement, Table, TableComponent, presets};
use serde_json::Value;

/// `-o/--output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A table for people.
    Table,
    /// One JSON document with a versioned shape.
    Json,
    /// One JSON object per line.
    Ndjson,
    /// A monitoring-plugins status line with perfdata (probe commands).
    Nagios,
    /// Prometheus text exposition format (probe commands).
    Prometheus,
}

/// Whether colour may be used (a terminal, and `NO_COLOR` unset).
#[derive(Debug, Clone, Copy, Default)]
pub struct Style {
    pub color: bool,
}

impl Style {
    pub fn paint(&self, text: &str, ansi: &str) -> String {
        if self.color { format!("\x1b[{ansi}m{text}\x1b[0m") } else { text.to_string() }
    }
    pub fn good(&self, t: &str) -> String {
        self.paint(t, "32")
    }
    pub fn bad(&self, t: &str) -> String {
        self.paint(t, "31")
    }
    pub fn dim(&self, t: &str) -> String {
        self.paint(t, "2")
    }
}

/// A result that can be shown in every format.
pub trait Render {
    /// The human rendering.
    fn table(&self, w: &mut dyn Write, style: Style) -> io::Result<()>;
    /// The JSON document (with `schema_version`).
    fn json(&self) -> Value;
    /// NDJSON lines; by default the document on one line.
    fn ndjson(&self) -> Vec<Value> {
        vec![self.json()]
    }
    /// Writes the JSON document; a renderer of a very large one serialises it directly.
    fn write_json(&self, w: &mut dyn Write) -> io::Result<()> {
        serde_json::to_writer_pretty(&mut *w, &self.json()).map_err(io::Error::from)
    }
    /// Writes the NDJSON lines; a renderer of very many lines streams them instead of building
    /// every [`Value`] first.
    fn write_ndjson(&self, w: &mut dyn Write) -> io::Result<()> {
        for line in self.ndjson() {
            serde_json::to_writer(&mut *w, &line).map_err(io::Error::from)?;
            writeln!(w)?;
        }
        Ok(())
    }
    /// A monitoring-plugins status line (probes only).
    fn as_nagios(&self) -> Option<String> {
        None
    }
    /// The Prometheus text exposition (probes only).
    fn as_prometheus(&self) -> Option<String> {
        None
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("output format {0:?} is not one this command renders")]
    Unsupported(Format),
    #[error("writing output: {0}")]
    Io(#[from] io::Error),
}

/// Writes `r` in `format`. Nagios and Prometheus exist for probes only.
pub fn write(r: &dyn Render, format: Format, style: Style, w: &mut dyn Write) -> Result<(), OutputError> {
    match format {
        Format::Table => r.table(w, style)?,
        Format::Json => {
            r.write_json(w)?;
            writeln!(w)?;
        }
        Format::Ndjson => r.write_ndjson(w)?,
        Format::Nagios => writeln!(w, "{}", r.as_nagios().ok_or(OutputError::Unsupported(format))?)?,
        Format::Prometheus => w.write_all(r.as_prometheus().ok_or(OutputError::Unsupported(format))?.as_bytes())?,
    }
    Ok(())
}

/// A table in the house style: no outer frame, a rule under the header.
pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING)
        .set_style(TableComponent::HeaderLines, '─')
        .set_style(TableComponent::MiddleHeaderIntersections, '─')
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.iter().copied());
    t
}
/// Makes untrusted text safe to show on a terminal: control characters (ESC, BEL, CR, DEL, C1
/// controls, ...) become visible escapes (`\u{1b}`), and the bidirectional overrides that can
/// reorder what a reader sees are escaped as well. Newlines and tabs are escaped too, so one
/// value stays on one line. JSON output never goes through this: serde escapes it exactly.
pub fn escape(text: &str) -> String {
    if !text.chars().any(needs_escape) {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if needs_escape(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// [`escape`] for text of several lines (a mail body shown by a dry run): newlines and tabs
/// stay, every other control character is escaped.
pub fn escape_lines(text: &str) -> String {
    text.split('\n').map(|l| escape(l).replace("\\u{9}", "\t")).collect::<Vec<_>>().join("\n")
}

fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}')
}

/// Cuts `text` to at most `max` characters, ending with an ellipsis when it was longer.
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_counts_characters_and_marks_the_cut() {
        assert_eq!(truncate("héllo", 5), "héllo");
        assert_eq!(truncate("héllo wörld", 6), "héllo…");
        assert_eq!(truncate("ab", 1), "…");
    }

    #[test]
    fn escaping_leaves_no_control_character() {
        assert_eq!(escape("plain – text"), "plain – text");
        let e = escape("\u{1b}]0;PWN\u{7}\u{1b}[2J\r\nx\u{9b}\u{202e}");
        assert!(!e.chars().any(|c| c.is_control() || needs_escape(c)), "{e}");
        assert_eq!(escape("a\u{1b}b"), "a\\u{1b}b");
    }
}
