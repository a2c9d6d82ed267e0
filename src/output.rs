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

/// The width tables must fit, set once by the binary (the terminal's, or `COLUMNS`); 0 is
/// none (output to a file or a pipe keeps whole lines).
static TABLE_WIDTH: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);

/// Tables from now on fit `width` columns (long cells wrap), or keep whole lines with `None`.
pub fn set_table_width(width: Option<u16>) {
    TABLE_WIDTH.store(width.unwrap_or(0), std::sync::atomic::Ordering::Relaxed);
}

/// A table in the house style: no outer frame, a rule under the header; within the width the
/// binary set, the widest cells (an error's detail) wrap instead of pushing the row past the
/// terminal's edge. Colour codes do not count towards a cell's width.
pub fn table(header: &[&str]) -> Table {
    let width = TABLE_WIDTH.load(std::sync::atomic::Ordering::Relaxed);
    table_within(header, (width > 0).then_some(width))
}

/// `text` as lines within the width tables fit (none set: one line), broken at spaces, each
/// line after the first indented by `indent` spaces; a word longer than a line stays whole.
pub fn wrap(text: &str, indent: usize) -> String {
    match TABLE_WIDTH.load(std::sync::atomic::Ordering::Relaxed) {
        0 => text.to_string(),
        w => wrap_within(text, usize::from(w), indent),
    }
}

fn wrap_within(text: &str, width: usize, indent: usize) -> String {
    let mut out = String::new();
    let mut line = 0usize;
    for word in text.split(' ') {
        let n = word.chars().count();
        if line > indent && line + 1 + n > width {
            out.push('\n');
            out.push_str(&" ".repeat(indent));
            line = indent;
        } else if !out.is_empty() {
            out.push(' ');
            line += 1;
        }
        out.push_str(word);
        line += n;
    }
    out
}

fn table_within(header: &[&str], width: Option<u16>) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING)
        .set_style(TableComponent::HeaderLines, '─')
        .set_style(TableComponent::MiddleHeaderIntersections, '─')
        .set_header(header.iter().copied());
    match width {
        None => t.set_content_arrangement(ContentArrangement::Disabled),
        Some(w) => t.set_content_arrangement(ContentArrangement::Dynamic).set_width(w),
    };
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

    /// The columns' start positions in each line, as characters after colour codes are removed.
    fn plain(text: &str) -> String {
        let mut out = String::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c == '\x1b' {
                chars.by_ref().find(|c| *c == 'm');
            } else {
                out.push(c);
            }
        }
        out
    }

    #[test]
    fn a_long_detail_wraps_within_the_width_and_colour_keeps_alignment() {
        let detail = "ably: POST /channels/x/messages: HTTP 500, code 50000: ".repeat(6);
        let mut t = table_within(&["probe", "check", "state", "detail"], Some(100));
        t.add_row(vec!["mirror_canary", "publish_latency", "CRITICAL", detail.as_str()]);
        let text = t.to_string();
        assert!(text.lines().all(|l| l.chars().count() <= 100), "{text}");
        assert!(text.replace(['\n', ' '], "").contains(&detail.replace(' ', "")), "nothing is lost: {text}");
        let style = Style { color: true };
        let rows = |cells: [String; 2]| {
            let mut t = table_within(&["state", "check"], Some(100));
            t.add_row(vec![cells[0].clone(), "latency".to_string()]);
            t.add_row(vec!["OK".to_string(), "skew".to_string()]);
            t.to_string()
        };
        let coloured = rows([style.bad("CRITICAL"), String::new()]);
        let bare = rows(["CRITICAL".to_string(), String::new()]);
        assert_eq!(plain(&coloured), bare, "colour codes take no column");
    }

    #[test]
    fn wrapping_breaks_at_spaces_within_the_width() {
        let text = "note: the sweep is CRITICAL but no rule is firing, so nobody is paged";
        let w = wrap_within(text, 30, 6);
        assert!(w.lines().all(|l| l.chars().count() <= 30), "{w}");
        assert!(w.lines().skip(1).all(|l| l.starts_with("      ") && !l[6..].starts_with(' ')), "{w}");
        assert_eq!(w.split_whitespace().collect::<Vec<_>>(), text.split_whitespace().collect::<Vec<_>>());
        assert_eq!(wrap_within("short", 30, 2), "short");
    }

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
