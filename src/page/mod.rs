//! Self-contained HTML pages: one file a reader opens anywhere (a CI artifact, a link in Slack)
//! with its CSS and charts inline, no request to anywhere (a Content-Security-Policy forbids
//! them) and no script needed to read it. Light and dark by the reader's preference, high
//! contrast when asked, readable at 390 px; real table markup and landmarks for screen readers,
//! and every chart followed by its figures as a table.
//!
//! Everything from the stack (conversation ids, error texts, labels) goes through [`esc`].

pub mod svg;

use std::fmt::Write;

/// Text for HTML element content and attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// How a verdict reads: good news, bad news, or neither.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Good,
    Bad,
    Neutral,
}

impl Tone {
    fn class(self) -> &'static str {
        match self {
            Tone::Good => "good",
            Tone::Bad => "bad",
            Tone::Neutral => "neutral",
        }
    }
}

/// A table: a caption (its accessible name), column headers, rows of cells already escaped.
pub struct Table<'a> {
    pub caption: &'a str,
    pub headers: &'a [&'a str],
    pub rows: Vec<Vec<String>>,
}

impl Table<'_> {
    /// Cells of text, escaped here.
    pub fn text_rows(rows: impl IntoIterator<Item = Vec<String>>) -> Vec<Vec<String>> {
        rows.into_iter().map(|r| r.iter().map(|c| esc(c)).collect()).collect()
    }
}

/// A page being written: the header with its verdict, then sections, then the footer.
pub struct Page {
    title: String,
    /// A script of the page's own (the status page's refresh), the only one its policy allows.
    script: Option<String>,
    body_attrs: String,
    header: String,
    body: String,
    footer: String,
}

impl Page {
    /// `kind` names what made it (`broker-ops sla smoke`); `verdict` is the first thing read.
    pub fn new(title: &str, kind: &str, tone: Tone, verdict: &str) -> Page {
        let header = format!(
            "<header><p class=\"kind\">{}</p><h1 id=\"verdict\" class=\"verdict {}\">{}</h1>",
            esc(kind),
            tone.class(),
            esc(verdict)
        );
        Page {
            title: title.into(),
            script: None,
            body_attrs: String::new(),
            header,
            body: String::new(),
            footer: String::new(),
        }
    }

    /// A line under the verdict (why it is so), as text.
    pub fn because(&mut self, text: &str, tone: Tone) -> &mut Self {
        let _ = write!(self.header, "<p class=\"because {}\">{}</p>", tone.class(), esc(text));
        self
    }

    /// Facts as a description list in the header (target, started, the command line).
    pub fn facts(&mut self, facts: &[(&str, String)]) -> &mut Self {
        self.header.push_str("<dl class=\"facts\">");
        for (k, v) in facts {
            let _ = write!(self.header, "<div><dt>{}</dt><dd>{}</dd></div>", esc(k), esc(v));
        }
        self.header.push_str("</dl>");
        self
    }

    /// Raw markup in the header, under the verdict (built with this module's helpers).
    pub fn header_markup(&mut self, markup: &str) -> &mut Self {
        self.header.push_str(markup);
        self
    }

    /// The page's one script, at the end of the body: the page reads the same without it.
    pub fn script(&mut self, js: &str) -> &mut Self {
        self.script = Some(js.to_string());
        self
    }

    /// A `data-NAME` attribute on `<body>` (what the script reads).
    pub fn data(&mut self, name: &str, value: &str) -> &mut Self {
        let _ = write!(self.body_attrs, " data-{name}=\"{}\"", esc(value));
        self
    }

    /// A section with a heading; `content` is markup built with this module's helpers.
    pub fn section(&mut self, id: &str, heading: &str, content: &str) -> &mut Self {
        let _ = write!(
            self.body,
            "<section aria-labelledby=\"h-{id}\"><h2 id=\"h-{id}\">{}</h2>{content}</section>",
            esc(heading)
        );
        self
    }

    /// The footer: when and what made the page, and the files beside it (`(label, href)`).
    pub fn footer(&mut self, made: &str, links: &[(&str, String)]) -> &mut Self {
        let _ = write!(self.footer, "<p>{}</p>", esc(made));
        if !links.is_empty() {
            self.footer.push_str("<nav aria-label=\"the files beside this one\"><ul class=\"links\">");
            for (label, href) in links {
                let _ = write!(self.footer, "<li><a href=\"{}\">{}</a></li>", esc(href), esc(label));
            }
            self.footer.push_str("</ul></nav>");
        }
        self
    }

    pub fn finish(&self) -> String {
        // No script runs unless the page brings its own; nothing is fetched from anywhere.
        let (scripts, script) = match &self.script {
            Some(js) => ("'unsafe-inline'", format!("<script>{js}</script>")),
            None => ("'none'", String::new()),
        };
        format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; \
             script-src {scripts}; img-src data:\">\
             <meta name=\"color-scheme\" content=\"light dark\"><title>{}</title><style>{CSS}</style></head>\
             <body{}>{}</header><main>{}</main><footer>{}</footer>{script}</body></html>\n",
            esc(&self.title),
            self.body_attrs,
            self.header,
            self.body,
            self.footer
        )
    }
}

/// A table, scrollable on its own on a narrow screen (and reachable by keyboard to scroll it).
pub fn table(t: &Table<'_>) -> String {
    let mut s = format!(
        "<div class=\"scroll\" role=\"region\" tabindex=\"0\" aria-label=\"{}\"><table><caption>{}</caption><thead><tr>",
        esc(t.caption),
        esc(t.caption)
    );
    for h in t.headers {
        let _ = write!(s, "<th scope=\"col\">{}</th>", esc(h));
    }
    s.push_str("</tr></thead><tbody>");
    for row in &t.rows {
        s.push_str("<tr>");
        for (i, cell) in row.iter().enumerate() {
            match i {
                0 => {
                    let _ = write!(s, "<th scope=\"row\">{cell}</th>");
                }
                _ => {
                    let _ = write!(s, "<td>{cell}</td>");
                }
            }
        }
        s.push_str("</tr>");
    }
    if t.rows.is_empty() {
        let _ = write!(s, "<tr><td colspan=\"{}\">none</td></tr>", t.headers.len().max(1));
    }
    s.push_str("</tbody></table></div>");
    s
}

/// A paragraph of text.
pub fn para(text: &str) -> String {
    format!("<p>{}</p>", esc(text))
}

/// A list of text items.
pub fn list(items: &[String]) -> String {
    let mut s = String::from("<ul>");
    for i in items {
        let _ = write!(s, "<li>{}</li>", esc(i));
    }
    s.push_str("</ul>");
    s
}

/// A text cell marked good or bad (by a word, not only by colour).
pub fn state_cell(text: &str, tone: Tone) -> String {
    format!("<span class=\"tag {}\">{}</span>", tone.class(), esc(text))
}

/// Preformatted text (a command line, a text histogram).
pub fn pre(text: &str) -> String {
    format!("<pre>{}</pre>", esc(text))
}

/// A chart made elsewhere (plotters' SVG, drawn on white), as an image with a text alternative:
/// its SVG inlined (no file to fetch) with `role="img"` and a label, and the figures follow it.
pub fn figure(svg: &str, label: &str, caption: &str) -> String {
    let body = svg.trim_start_matches(|c| c != '<');
    let body = body.strip_prefix("<?xml").map_or(body, |r| r.split_once("?>").map_or(r, |(_, b)| b)).trim_start();
    let body = match body.strip_prefix("<svg") {
        Some(rest) => format!("<svg role=\"img\" aria-label=\"{}\" focusable=\"false\"{rest}", esc(label)),
        None => String::new(),
    };
    format!("<figure class=\"chart on-white\">{body}<figcaption>{}</figcaption></figure>", esc(caption))
}

const CSS: &str = "\
:root{--fg:#111;--bg:#fff;--muted:#444;--line:#767676;--good:#0b6b2f;--good-bg:#e3f4e8;--bad:#a4001d;--bad-bg:#fde7ea;\
--neutral:#3a3a3a;--neutral-bg:#eceff3;--link:#0645ad;--card:#f6f7f9;--s1:#1f5fa8;--s2:#b34d00;--s3:#5b3d99;--s4:#0b6b2f}\
@media (prefers-color-scheme:dark){:root{--fg:#ececec;--bg:#121212;--muted:#c4c4c4;--line:#9a9a9a;--good:#7fe0a0;\
--good-bg:#12321e;--bad:#ff9aa8;--bad-bg:#3d1219;--neutral:#e0e0e0;--neutral-bg:#2a2d31;--link:#9cc3ff;--card:#1d1f22;\
--s1:#8cc4ff;--s2:#ffb26b;--s3:#c9b3ff;--s4:#7fe0a0}}\
@media (prefers-contrast:more){:root{--fg:#000;--bg:#fff;--muted:#000;--line:#000;--good:#004d1f;--bad:#7a0014;\
--link:#00308a;--card:#fff}}\
*{box-sizing:border-box}\
body{margin:0 auto;max-width:72rem;padding:1rem;font:16px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;\
color:var(--fg);background:var(--bg)}\
header{border-bottom:2px solid var(--line);padding-bottom:.5rem}\
.kind{margin:0;color:var(--muted);font-size:.9rem}\
h1{margin:.2rem 0;font-size:1.6rem;line-height:1.25;overflow-wrap:anywhere}\
h2{font-size:1.2rem;margin:1.5rem 0 .5rem}\
.verdict{padding:.4rem .6rem;border-radius:.3rem;border-left:.5rem solid}\
.good{color:var(--good)}.warn{color:var(--bad)}.bad{color:var(--bad)}.neutral{color:var(--neutral)}\
.verdict.good{background:var(--good-bg)}.verdict.bad{background:var(--bad-bg)}.verdict.neutral{background:var(--neutral-bg)}\
.because{margin:.3rem 0;font-weight:600;overflow-wrap:anywhere}\
.facts{display:grid;grid-template-columns:repeat(auto-fit,minmax(16rem,1fr));gap:.2rem 1rem;margin:.5rem 0}\
.facts div{display:flex;gap:.5rem;min-width:0}.facts dt{font-weight:600;white-space:nowrap}\
.facts dd{margin:0;overflow-wrap:anywhere;min-width:0}\
.scroll{overflow-x:auto;max-width:100%}\
.scroll:focus{outline:2px solid var(--link)}\
table{border-collapse:collapse;margin:.25rem 0 1rem;font-variant-numeric:tabular-nums}\
caption{text-align:left;font-weight:600;padding:.25rem 0;color:var(--muted)}\
th,td{border:1px solid var(--line);padding:.25rem .5rem;text-align:left;vertical-align:top}\
td{overflow-wrap:break-word;max-width:40rem}\
thead th{background:var(--card)}\
.tag{font-weight:700}\
pre{background:var(--card);padding:.5rem;overflow-x:auto;white-space:pre-wrap;overflow-wrap:anywhere;font-size:.85rem}\
figure{margin:.5rem 0;max-width:48rem}\
figure.on-white{background:#fff;color:#111;padding:.25rem;border:1px solid var(--line)}\
figure svg{width:100%;height:auto;display:block}\
figcaption{font-size:.9rem;padding:.25rem}\
.key{white-space:nowrap;margin-right:.75rem}\
.strip{vertical-align:middle}\
button{font:inherit;padding:.2rem .6rem;color:var(--fg);background:var(--card);border:1px solid var(--line);border-radius:.25rem}\
.nodata{padding:1rem;border:1px dashed var(--line);color:var(--muted)}\
a{color:var(--link)}\
.links{display:flex;flex-wrap:wrap;gap:.25rem 1rem;padding:0;list-style:none}\
footer{margin-top:2rem;border-top:1px solid var(--line);color:var(--muted);font-size:.9rem}\
@media (max-width:40rem){body{padding:.5rem}h1{font-size:1.3rem}}\
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_the_stack_is_text() {
        assert_eq!(
            esc("<script>alert('x')</script> & \"y\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;y&quot;"
        );
        assert_eq!(esc("a\u{1b}[31mb"), "a\\u{1b}[31mb");
        let mut p = Page::new("<t>", "<k>", Tone::Bad, "<v>");
        p.facts(&[("<f>", "<x>".into())]).section("s", "<h>", &para("<p>"));
        let html = p.finish();
        assert!(!html.contains("<t>") && !html.contains("<x>") && !html.contains("<v>"), "{html}");
        assert!(html.contains("<p>&lt;p&gt;</p>") && html.contains("<title>&lt;t&gt;</title>"), "{html}");
        assert_eq!(html.matches("<script").count(), 0);
    }

    #[test]
    fn a_chart_is_an_image_with_a_name() {
        let f = figure("<?xml version=\"1.0\"?>\n<svg width=\"10\"><rect/></svg>", "a \"chart\"", "cap");
        assert!(
            f.contains("<svg role=\"img\" aria-label=\"a &quot;chart&quot;\" focusable=\"false\" width=\"10\">"),
            "{f}"
        );
        assert!(!f.contains("<?xml"));
    }
}
