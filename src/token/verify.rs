//! Strict verification of a resume token, collecting every reason it fails.

use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value};

use super::codec::{self, Parts};
use super::{Keys, MAX_TOKEN_BYTES};
use crate::contracts::{IdType, TokenContract};

#[derive(Debug, Clone, Copy)]
pub struct VerifyOptions<'a> {
    /// Clock tolerance for `exp`, `nbf` and `iat` (none by default).
    pub leeway: Duration,
    /// Now, in seconds since the epoch.
    pub now: i64,
    /// Issuer, audience, required claims and the type of `conversationId`.
    pub contract: &'a TokenContract,
}

/// The result of checking one token.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Verdict {
    pub valid: bool,
    /// Every reason the token is not valid (empty when it is).
    pub reasons: Vec<String>,
    /// Remarks that do not make it invalid (e.g. "revocation not checked").
    pub notes: Vec<String>,
    pub header: Option<Value>,
    pub claims: Option<Value>,
    pub kid: Option<String>,
    pub jti: Option<String>,
    pub exp: Option<i64>,
    /// Whether the signature was checked and matched.
    pub signature_ok: bool,
    pub revoked_at: Option<String>,
}

impl Verdict {
    fn fail(&mut self, reason: impl Into<String>) {
        self.reasons.push(reason.into());
    }

    /// Marks the token revoked (the check happens outside, against Redis).
    pub fn revoked(&mut self, at: String) {
        self.reasons.push(format!("revoked at {at}"));
        self.revoked_at = Some(at);
        self.valid = false;
    }
}

/// Accepts a bare token or a resume link a customer pasted (`...?resume=TOKEN`).
pub fn extract(text: &str) -> &str {
    let t = text.trim();
    if !t.contains("://") {
        return t;
    }
    match t.find("resume=") {
        Some(i) => t[i + "resume=".len()..].split('&').next().unwrap_or(""),
        None => t,
    }
}

pub fn verify(input: &[u8], keys: &Keys, opts: VerifyOptions) -> Verdict {
    let mut v = Verdict::default();
    if input.len() > MAX_TOKEN_BYTES {
        v.fail(format!("the token is {} bytes, over the {} KiB limit", input.len(), MAX_TOKEN_BYTES / 1024));
        return v;
    }
    let Ok(text) = std::str::from_utf8(input) else {
        v.fail("the token is not UTF-8 text");
        return v;
    };
    let token = extract(text);
    if token.is_empty() {
        v.fail("the token is empty");
        return v;
    }
    let parts = match Parts::split(token) {
        Ok(p) => p,
        Err(e) => {
            v.fail(e);
            return v;
        }
    };
    let header = codec::decode_part("header", parts.header).and_then(|b| codec::parse_object("header", &b));
    let claims = codec::decode_part("payload", parts.payload).and_then(|b| codec::parse_object("payload", &b));
    let sig = codec::decode_part("signature", parts.signature);
    let header = header.map_err(|e| v.fail(e)).ok();
    let claims = claims.map_err(|e| v.fail(e)).ok();
    let sig = sig.map_err(|e| v.fail(e)).ok();
    let key = header.as_ref().and_then(|h| check_header(h, keys, &mut v));
    if let (Some(key), Some(sig)) = (key, &sig) {
        if key.signature_ok(parts.signing_input.as_bytes(), sig) {
            v.signature_ok = true;
        } else {
            v.fail("the signature does not match (signed with another secret, or the token was altered)");
        }
    }
    if let Some(c) = &claims {
        check_claims(c, opts, &mut v);
    }
    v.header = header.map(Value::Object);
    v.claims = claims.map(Value::Object);
    v.valid = v.reasons.is_empty();
    v
}

/// Checks `alg`, `typ`, `crit` and `kid`; returns the key to check the signature with.
fn check_header<'k>(h: &Map<String, Value>, keys: &'k Keys, v: &mut Verdict) -> Option<&'k codec::PreparedKey> {
    let mut alg_ok = false;
    match h.get("alg") {
        None => v.fail("the header has no alg"),
        Some(Value::String(a)) if a == "HS256" => alg_ok = true,
        Some(Value::String(a)) if a.eq_ignore_ascii_case("none") => {
            v.fail("alg \"none\" is refused: the token is unsigned")
        }
        Some(Value::String(a)) => v.fail(format!("alg {a:?} is not allowed: resume tokens are HS256 only")),
        Some(other) => v.fail(format!("alg must be a string, got {}", type_name(other))),
    }
    match h.get("typ") {
        None => {}
        Some(Value::String(t)) if t.eq_ignore_ascii_case("JWT") => {}
        Some(other) => v.fail(format!("typ must be \"JWT\", got {other}")),
    }
    if h.contains_key("crit") {
        v.fail("the header has crit extensions, which are not supported");
    }
    let key = match h.get("kid") {
        Some(Value::String(kid)) => {
            v.kid = Some(kid.clone());
            let k = keys.get(kid);
            if k.is_none() {
                v.fail(format!("signed with unknown key id {kid} (known: {})", keys.kids().join(", ")));
            }
            k
        }
        Some(other) => {
            v.fail(format!("kid must be a string, got {}", type_name(other)));
            None
        }
        None => {
            let k = keys.single();
            if k.is_none() {
                v.fail(format!("the header has no kid and several keys are configured ({})", keys.kids().join(", ")));
            }
            k
        }
    };
    if alg_ok { key } else { None }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A NumericDate claim when present (whether it must be is the contract's `required` list).
fn numeric(c: &Map<String, Value>, name: &str, v: &mut Verdict) -> Option<i64> {
    match c.get(name) {
        None => None,
        Some(Value::Number(n)) => match n.as_i64().or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64)) {
            Some(x) => Some(x),
            None => {
                v.fail(format!("{name} is not a usable number: {n}"));
                None
            }
        },
        Some(other) => {
            v.fail(format!("{name} must be a number (seconds since the epoch), got {}", type_name(other)));
            None
        }
    }
}

fn when(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| secs.to_string())
}

fn span(secs: i64) -> String {
    crate::duration::format_duration(Duration::from_secs(secs.unsigned_abs()))
}

fn check_claims(c: &Map<String, Value>, opts: VerifyOptions, v: &mut Verdict) {
    let contract = opts.contract;
    for name in &contract.required {
        if !c.contains_key(name) {
            v.fail(format!("the {name} claim is missing (required by contracts.token_required)"));
        }
    }
    string_claim(c, "iss", "issuer", contract.issuer.as_deref(), v);
    audience(c, contract.audience.as_deref(), v);
    // A claim the contract does not pin is not judged, and the reader is told how to pin it.
    for (claim, pinned, setting) in
        [("iss", contract.issuer.is_some(), "token_issuer"), ("aud", contract.audience.is_some(), "token_audience")]
    {
        if let (Some(value), false) = (c.get(claim), pinned) {
            v.notes.push(format!("{claim} {value} is not checked: set contracts.{setting} to pin it"));
        }
    }
    conversation_id(c.get("conversationId"), contract.conversation_id, v);
    match c.get("email") {
        None => {}
        Some(Value::String(s)) if email_ok(s) => {}
        Some(Value::String(s)) => v.fail(format!("email {s:?} is not a valid address")),
        Some(o) => v.fail(format!("email must be a string, got {}", type_name(o))),
    }
    match c.get("jti") {
        None => {}
        Some(Value::String(s)) if !s.is_empty() => v.jti = Some(s.clone()),
        Some(o) => v.fail(format!("jti must be a non-empty string, got {o}")),
    }
    let iat = numeric(c, "iat", v);
    let exp = numeric(c, "exp", v);
    let nbf = numeric(c, "nbf", v);
    v.exp = exp;
    times(iat, exp, nbf, opts, v);
}

/// `iss` against the contract: checked when the contract names one.
fn string_claim(c: &Map<String, Value>, claim: &str, what: &str, expected: Option<&str>, v: &mut Verdict) {
    let Some(expected) = expected else { return };
    match c.get(claim) {
        Some(Value::String(s)) if s == expected => {}
        Some(Value::String(s)) => v.fail(format!("{what} is {s:?}, expected {expected:?}")),
        Some(o) => v.fail(format!("{claim} must be a string, got {}", type_name(o))),
        None => v.fail(format!("the {claim} claim is missing")),
    }
}

/// `aud` against the contract: a string or an array that includes it.
fn audience(c: &Map<String, Value>, expected: Option<&str>, v: &mut Verdict) {
    let Some(aud) = expected else { return };
    match c.get("aud") {
        Some(Value::String(s)) if s == aud => {}
        Some(Value::Array(a)) if a.iter().any(|x| x.as_str() == Some(aud)) => {}
        Some(Value::String(s)) => v.fail(format!("audience is {s:?}, expected {aud:?}")),
        Some(o @ Value::Array(_)) => v.fail(format!("audience {o} does not include {aud:?}")),
        Some(o) => v.fail(format!("aud must be a string, got {}", type_name(o))),
        None => v.fail("the aud claim is missing"),
    }
}

/// `conversationId`: a non-empty string or a whole number, of the contract's type.
fn conversation_id(value: Option<&Value>, want: IdType, v: &mut Verdict) {
    let Some(value) = value else { return };
    let is_string = match value {
        Value::String(s) if !s.trim().is_empty() => true,
        Value::Number(n) if n.is_u64() => false,
        o => return v.fail(format!("conversationId must be a non-empty string or a whole number, got {o}")),
    };
    match (want, is_string) {
        (IdType::String, false) => {
            v.fail("conversationId is a number, but contracts.token_conversation_id is \"string\"")
        }
        (IdType::Number, true) => {
            v.fail("conversationId is a string, but contracts.token_conversation_id is \"number\"")
        }
        _ => {}
    }
}

fn times(iat: Option<i64>, exp: Option<i64>, nbf: Option<i64>, opts: VerifyOptions, v: &mut Verdict) {
    let leeway = opts.leeway.as_secs() as i64;
    let now = opts.now;
    if let Some(exp) = exp {
        if now >= exp.saturating_add(leeway) {
            v.fail(format!("expired {} ago (exp {})", span(now - exp), when(exp)));
        } else if now >= exp {
            v.notes.push(format!("expired {} ago, within the {}s leeway", span(now - exp), leeway));
        }
    }
    if let Some(nbf) = nbf
        && nbf > now.saturating_add(leeway)
    {
        v.fail(format!("not valid before {} (in {})", when(nbf), span(nbf - now)));
    }
    if let Some(iat) = iat
        && iat > now.saturating_add(leeway)
    {
        v.fail(format!("issued in the future ({}, in {})", when(iat), span(iat - now)));
    }
}

/// A syntactic check of an address: one `@`, a local part, a dotted domain, no spaces.
pub fn email_ok(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else { return false };
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && local.chars().all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c));
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && domain.len() <= 253
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    local_ok && domain_ok
}
