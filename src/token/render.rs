//! How token results look: tables for people, JSON with a versioned shape, and the NDJSON
//! batch verifier (generic over its reader and writer).

use std::io::{self, BufRead, Write};

use serde_json::{Value, json};

use super::revoke::{LiveRevocation, Revocation};
use super::{Issued, Keys, Verdict, VerifyOptions, verify};
use crate::output::{Render, Style, escape, table};

fn when(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| secs.to_string())
}

fn relative(secs: i64, now: i64) -> String {
    let d = crate::duration::format_duration(std::time::Duration::from_secs((secs - now).unsigned_abs()));
    if secs >= now { format!("in {d}") } else { format!("{d} ago") }
}

/// `token issue`'s result, with `now` for the relative expiry.
pub struct IssuedView<'a> {
    pub issued: &'a Issued,
    pub now: i64,
    pub sent_to: Option<String>,
}

impl Render for IssuedView<'_> {
    fn table(&self, w: &mut dyn Write, _style: Style) -> io::Result<()> {
        // Plain lines, not a table: the token and the link are too long for columns.
        let i = self.issued;
        writeln!(w, "token:        {}", i.token)?;
        writeln!(w, "jti:          {}", i.jti)?;
        writeln!(w, "kid:          {}", i.kid)?;
        writeln!(w, "conversation: {}", escape(&i.conversation_id))?;
        writeln!(w, "email:        {}", escape(&i.email))?;
        writeln!(w, "expires:      {} ({})", when(i.exp), relative(i.exp, self.now))?;
        writeln!(w, "link:         {}", i.link.as_deref().unwrap_or("- (APP_BASE_URL not set)"))?;
        if let Some(to) = &self.sent_to {
            writeln!(w, "sent:         emailed to {to}")?;
        }
        Ok(())
    }

    fn json(&self) -> Value {
        let i = self.issued;
        json!({"schema_version": 1, "kind": "token_issue", "token": i.token, "jti": i.jti, "kid": i.kid,
               "conversation_id": i.conversation_id, "email": i.email, "iat": i.iat,
               "exp": when(i.exp), "exp_unix": i.exp, "link": i.link, "sent_to": self.sent_to})
    }
}

/// `token verify`'s result.
pub struct VerdictView<'a> {
    pub verdict: &'a Verdict,
    pub now: i64,
}

impl Render for VerdictView<'_> {
    fn table(&self, w: &mut dyn Write, style: Style) -> io::Result<()> {
        let v = self.verdict;
        if v.valid {
            writeln!(w, "{}", style.good("VALID"))?;
        } else {
            writeln!(w, "{}", style.bad("INVALID"))?;
            for r in &v.reasons {
                writeln!(w, "  - {}", escape(r))?;
            }
        }
        for n in &v.notes {
            writeln!(w, "  note: {}", escape(n))?;
        }
        if let Some(c) = &v.claims {
            let mut t = table(&["claim", "value"]);
            for k in ["conversationId", "email", "jti", "iss", "aud", "iat", "exp", "nbf"] {
                if let Some(x) = c.get(k) {
                    let shown = match (k, x.as_i64()) {
                        ("iat" | "exp" | "nbf", Some(s)) => format!("{} ({})", when(s), relative(s, self.now)),
                        _ => x.as_str().map(str::to_string).unwrap_or_else(|| x.to_string()),
                    };
                    t.add_row(vec![k.to_string(), escape(&shown)]);
                }
            }
            if let Some(kid) = &v.kid {
                t.add_row(vec!["kid (header)".to_string(), escape(kid)]);
            }
            writeln!(w, "{t}")?;
        }
        Ok(())
    }

    fn json(&self) -> Value {
        let v = self.verdict;
        json!({"schema_version": 1, "kind": "token_verify", "valid": v.valid, "reasons": v.reasons, "notes": v.notes,
               "kid": v.kid, "jti": v.jti, "exp": v.exp.map(when), "signature_ok": v.signature_ok,
               "revoked_at": v.revoked_at, "header": v.header, "claims": v.claims})
    }
}

/// `token inspect`: decoded, never verified.
pub struct Inspected {
    pub header: Result<Value, String>,
    pub claims: Result<Value, String>,
    pub now: i64,
}

impl Inspected {
    pub fn of(text: &str, now: i64) -> Self {
        let token = super::verify::extract(text);
        match super::codec::Parts::split(token) {
            Ok(p) => {
                let dec = |name: &str, part: &str| {
                    super::codec::decode_part(name, part)
                        .and_then(|b| super::codec::parse_object(name, &b))
                        .map(Value::Object)
                };
                Inspected { header: dec("header", p.header), claims: dec("payload", p.payload), now }
            }
            Err(e) => Inspected { header: Err(e.clone()), claims: Err(e), now },
        }
    }
}

impl Render for Inspected {
    fn table(&self, w: &mut dyn Write, style: Style) -> io::Result<()> {
        writeln!(w, "{}", style.bad("UNVERIFIED: decoded without checking the signature or any claim"))?;
        for (name, part) in [("header", &self.header), ("claims", &self.claims)] {
            match part {
                Ok(Value::Object(m)) => {
                    let mut t = table(&[name, "value"]);
                    for (k, x) in m {
                        let shown = match (k.as_str(), x.as_i64()) {
                            ("iat" | "exp" | "nbf", Some(s)) => {
                                format!("{x} = {} ({})", when(s), relative(s, self.now))
                            }
                            _ => x.as_str().map(str::to_string).unwrap_or_else(|| x.to_string()),
                        };
                        t.add_row(vec![escape(k), escape(&shown)]);
                    }
                    writeln!(w, "{t}")?;
                }
                Ok(other) => writeln!(w, "{name}: {}", escape(&other.to_string()))?,
                Err(e) => writeln!(w, "{name}: cannot decode: {}", escape(e))?,
            }
        }
        Ok(())
    }

    fn json(&self) -> Value {
        let part = |p: &Result<Value, String>| match p {
            Ok(v) => json!({"decoded": v}),
            Err(e) => json!({"error": e}),
        };
        json!({"schema_version": 1, "kind": "token_inspect", "verified": false, "status": "UNVERIFIED",
               "header": part(&self.header), "claims": part(&self.claims)})
    }
}

impl Render for Revocation {
    fn table(&self, w: &mut dyn Write, _style: Style) -> io::Result<()> {
        let state = if self.already { "was already revoked" } else { "revoked" };
        let (jti, at) = (escape(&self.jti), escape(&self.revoked_at));
        writeln!(w, "jti {jti} {state} at {at}; the revocation lasts until {}", when(self.until))
    }

    fn json(&self) -> Value {
        json!({"schema_version": 1, "kind": "token_revoke", "jti": self.jti, "revoked_at": self.revoked_at,
               "until": when(self.until), "already": self.already})
    }
}

pub struct RevokedList(pub Vec<LiveRevocation>);

impl Render for RevokedList {
    fn table(&self, w: &mut dyn Write, _style: Style) -> io::Result<()> {
        let mut t = table(&["jti", "revoked at", "expires in"]);
        for r in &self.0 {
            let ttl = crate::duration::format_duration(std::time::Duration::from_secs(r.ttl_secs.max(0) as u64));
            t.add_row(vec![escape(&r.jti), escape(&r.revoked_at), ttl]);
        }
        writeln!(w, "{t}")?;
        writeln!(w, "{} live revocations", self.0.len())
    }

    fn json(&self) -> Value {
        json!({"schema_version": 1, "kind": "token_revoked", "revocations": self.0})
    }

    fn ndjson(&self) -> Vec<Value> {
        self.0.iter().map(|r| json!(r)).collect()
    }
}

/// Counts of a batch run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchSummary {
    pub total: u64,
    pub valid: u64,
    pub invalid: u64,
}

/// A revocation lookup for a batch: given the jtis of a chunk, their revocation times.
pub type Lookup<'a> = dyn FnMut(&[&str]) -> Result<Vec<Option<String>>, String> + 'a;
pub type RevocationLookup<'a> = &'a mut Lookup<'a>;

/// Lines verified per round: read, verified on every core, looked up in Redis, written.
const CHUNK: usize = 4096;

/// Verifies one token per line of `input`, writing one NDJSON verdict per line to `out`.
/// Blank lines are skipped; a line that is not UTF-8 gets its own verdict. Each chunk of lines
/// is verified on all available cores; the output keeps the input's order.
pub fn verify_batch(
    input: &mut dyn BufRead,
    out: &mut dyn Write,
    keys: &Keys,
    opts: VerifyOptions,
    mut revocations: Option<RevocationLookup<'_>>,
) -> Result<BatchSummary, String> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut sum = BatchSummary::default();
    let mut line_no = 0u64;
    let mut lines: Vec<(u64, Vec<u8>)> = Vec::with_capacity(CHUNK);
    loop {
        let mut buf = Vec::with_capacity(400);
        let n = input.read_until(b'\n', &mut buf).map_err(|e| format!("reading input: {e}"))?;
        if n > 0 {
            line_no += 1;
            if !buf.trim_ascii().is_empty() {
                lines.push((line_no, buf));
            }
        }
        if lines.len() == CHUNK || (n == 0 && !lines.is_empty()) {
            let mut verdicts = verify_parallel(&lines, keys, opts, threads);
            lines.clear();
            flush(&mut verdicts, out, &mut sum, revocations.as_deref_mut())?;
        }
        if n == 0 {
            break;
        }
    }
    out.flush().map_err(|e| format!("writing output: {e}"))?;
    Ok(sum)
}

fn verify_parallel(lines: &[(u64, Vec<u8>)], keys: &Keys, opts: VerifyOptions, threads: usize) -> Vec<(u64, Verdict)> {
    let one = |(n, l): &(u64, Vec<u8>)| (*n, verify(l.trim_ascii(), keys, opts));
    if threads < 2 || lines.len() < 64 {
        return lines.iter().map(one).collect();
    }
    let per = lines.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> =
            lines.chunks(per).map(|part| s.spawn(move || part.iter().map(one).collect::<Vec<_>>())).collect();
        // A verifier thread only panics on a bug; carrying the panic on is the honest outcome.
        handles.into_iter().flat_map(|h| h.join().expect("verifier thread")).collect()
    })
}

/// One output line, serialised straight from the verdict.
#[derive(serde::Serialize)]
struct Line<'a> {
    line: u64,
    valid: bool,
    reasons: &'a [String],
    kid: Option<&'a str>,
    jti: Option<&'a str>,
    exp: Option<i64>,
}

fn flush(
    chunk: &mut Vec<(u64, Verdict)>,
    out: &mut dyn Write,
    sum: &mut BatchSummary,
    revocations: Option<&mut Lookup<'_>>,
) -> Result<(), String> {
    if let Some(lookup) = revocations {
        let idx: Vec<usize> =
            chunk.iter().enumerate().filter(|(_, (_, v))| v.valid && v.jti.is_some()).map(|(i, _)| i).collect();
        let jtis: Vec<&str> = idx.iter().filter_map(|i| chunk[*i].1.jti.as_deref()).collect();
        let found = lookup(&jtis)?;
        let hits: Vec<(usize, String)> = idx.into_iter().zip(found).filter_map(|(i, at)| at.map(|a| (i, a))).collect();
        for (i, at) in hits {
            chunk[i].1.revoked(at);
        }
    }
    for (line, v) in chunk.drain(..) {
        sum.total += 1;
        if v.valid {
            sum.valid += 1
        } else {
            sum.invalid += 1
        }
        let doc = Line {
            line,
            valid: v.valid,
            reasons: &v.reasons,
            kid: v.kid.as_deref(),
            jti: v.jti.as_deref(),
            exp: v.exp,
        };
        serde_json::to_writer(&mut *out, &doc).map_err(|e| format!("writing output: {e}"))?;
        out.write_all(b"\n").map_err(|e| format!("writing output: {e}"))?;
    }
    Ok(())
}
