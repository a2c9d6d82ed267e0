//! `broker-ops token resume-test [URL]`: does the app's resume route let in the holder of a good
//! link, and only them? One request per case, each with a token made here for a synthetic
//! conversation (never a customer's): the valid one must be answered 2xx or 3xx with a session
//! cookie a script cannot read, that does not outlive the token and that a shared cache cannot
//! keep, and without the token echoed anywhere a log or a Referer would carry it; every other
//! one must be refused (4xx) without a session cookie. Redirects are never followed: the first
//! answer is the route's own.

use serde::Serialize;
use serde_json::{Value, json};

use super::Keys;
use crate::config::Config;
use crate::contracts::{IdType, TokenContract};

/// How the token is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// `GET URL?{param}={token}`.
    Get,
    /// `POST URL` with `{"{param}": token}`.
    Json,
    /// `POST URL` with `{param}={token}` form-encoded.
    Form,
}

#[derive(Debug, Clone)]
pub struct ResumeTestRequest {
    pub url: url::Url,
    pub method: Method,
    pub param: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseName {
    Valid,
    Expired,
    SignatureAltered,
    AlgNone,
    OtherKey,
    ConversationIdMissing,
    EmailMissing,
    ConversationIdWrongType,
    Oversized,
    Revoked,
}

impl CaseName {
    pub const ALL: [CaseName; 10] = [
        CaseName::Valid,
        CaseName::Expired,
        CaseName::SignatureAltered,
        CaseName::AlgNone,
        CaseName::OtherKey,
        CaseName::ConversationIdMissing,
        CaseName::EmailMissing,
        CaseName::ConversationIdWrongType,
        CaseName::Oversized,
        CaseName::Revoked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CaseName::Valid => "valid",
            CaseName::Expired => "expired",
            CaseName::SignatureAltered => "signature_altered",
            CaseName::AlgNone => "alg_none",
            CaseName::OtherKey => "other_key",
            CaseName::ConversationIdMissing => "conversation_id_missing",
            CaseName::EmailMissing => "email_missing",
            CaseName::ConversationIdWrongType => "conversation_id_wrong_type",
            CaseName::Oversized => "oversized",
            CaseName::Revoked => "revoked",
        }
    }

    fn expect(self) -> &'static str {
        match self {
            CaseName::Valid => "2xx/3xx, HttpOnly Secure SameSite cookie ending by exp, no-store, token not echoed",
            _ => "4xx, no session cookie",
        }
    }
}

/// A `Set-Cookie` as seen, without its value.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct CookieSeen {
    pub name: String,
    pub http_only: bool,
    pub secure: bool,
    pub same_site: Option<String>,
    pub path: Option<String>,
    /// When it ends (Unix seconds), from `Max-Age` or `Expires`; `None`: a session cookie.
    pub expires_at: Option<i64>,
    /// It clears a cookie (empty value, `Max-Age=0` or an `Expires` in the past).
    pub clears: bool,
}

/// Reads one `Set-Cookie` header (RFC 6265 §5.2), keeping the attributes, never the value.
pub fn parse_cookie(header: &str, now: i64) -> Option<CookieSeen> {
    let mut parts = header.split(';');
    let (name, value) = parts.next()?.split_once('=')?;
    let mut c = CookieSeen { name: name.trim().to_string(), clears: value.trim().is_empty(), ..Default::default() };
    let mut max_age = None;
    let mut expires = None;
    for attr in parts {
        let (k, v) = attr.split_once('=').map_or((attr.trim(), ""), |(k, v)| (k.trim(), v.trim()));
        match k.to_ascii_lowercase().as_str() {
            "httponly" => c.http_only = true,
            "secure" => c.secure = true,
            "samesite" => c.same_site = Some(v.to_string()),
            "path" => c.path = Some(v.to_string()),
            "max-age" => max_age = v.parse::<i64>().ok(),
            "expires" => {
                expires = chrono::DateTime::parse_from_rfc2822(&v.replace('-', " ")).ok().map(|t| t.timestamp())
            }
            _ => {}
        }
    }
    // Max-Age wins over Expires (§5.3 step 3).
    c.expires_at = max_age.map(|s| now.saturating_add(s)).or(expires);
    c.clears |= c.expires_at.is_some_and(|t| t <= now);
    Some(c)
}

/// What one request came to.
#[derive(Debug, Clone, Serialize)]
pub struct Case {
    pub name: CaseName,
    pub expect: &'static str,
    pub status: Option<u16>,
    /// The session cookie set, if any (its value never shown).
    pub cookie: Option<CookieSeen>,
    pub pass: bool,
    /// Why it failed, or what was seen; "skipped: …" when the case could not apply.
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ResumeTestReport {
    pub schema_version: u32,
    /// The route, credentials removed.
    pub url: String,
    pub method: Method,
    pub cases: Vec<Case>,
}

impl ResumeTestReport {
    pub fn passed(&self) -> bool {
        self.cases.iter().all(|c| c.pass)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ResumeTestError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Keys(#[from] super::KeysError),
    #[error("resume route {url}: {case}: no answer: {detail}")]
    Unreachable { url: String, case: &'static str, detail: String },
    #[error("resume route {url}: revoking the test token: {reason}")]
    Revoke { url: String, reason: String },
}

/// The synthetic conversation the tokens are made for: the contract's synthetic prefix, or (a
/// contract whose ids are numbers) the largest integer JavaScript holds exactly.
pub fn synthetic_conversation(config: &Config) -> Value {
    match config.contracts.token.conversation_id {
        IdType::Number => json!(9_007_199_254_740_991_u64),
        _ => json!(format!("{}resume-test", config.contracts.synthetic_prefix)),
    }
}

/// The tokens of every case, made with the configured key: (case, token, exp).
pub fn tokens(config: &Config, keys: &Keys, now: i64) -> Vec<(CaseName, String, i64)> {
    let c = &config.contracts.token;
    let conv = synthetic_conversation(config);
    let exp = now + 600;
    let base = claims(c, &conv, now, exp);
    let (kid, secret) = keys.signing();
    let sign = |claims: &Value, secret: &[u8]| {
        super::codec::sign(&json!({"alg": "HS256", "typ": "JWT", "kid": kid}), claims, secret)
    };
    let valid = sign(&base, secret);
    let without = |k: &str| {
        let mut m = base.clone();
        m.as_object_mut().map(|o| o.remove(k));
        m
    };
    let mut wrong = base.clone();
    wrong["conversationId"] = match c.conversation_id {
        IdType::Number => json!("not-a-number"),
        IdType::String => json!(12345),
        IdType::AsGiven => json!(true),
    };
    let mut big = base.clone();
    big["padding"] = json!("x".repeat(16 * 1024));
    let mut expired = base.clone();
    (expired["iat"], expired["exp"]) = (json!(now - 7200), json!(now - 3600));
    let other_secret = uuid::Uuid::new_v4().simple().to_string().repeat(2);
    let none = format!(
        "{}.{}.",
        super::codec::b64(br#"{"alg":"none","typ":"JWT"}"#),
        super::codec::b64(base.to_string().as_bytes())
    );
    vec![
        (CaseName::Valid, valid.clone(), exp),
        (CaseName::Expired, sign(&expired, secret), now - 3600),
        (CaseName::SignatureAltered, altered(&valid), exp),
        (CaseName::AlgNone, none, exp),
        (CaseName::OtherKey, sign(&base, other_secret.as_bytes()), exp),
        (CaseName::ConversationIdMissing, sign(&without("conversationId"), secret), exp),
        (CaseName::EmailMissing, sign(&without("email"), secret), exp),
        (CaseName::ConversationIdWrongType, sign(&wrong, secret), exp),
        (CaseName::Oversized, sign(&big, secret), exp),
        (CaseName::Revoked, sign(&base, secret), exp),
    ]
}

fn claims(c: &TokenContract, conv: &Value, now: i64, exp: i64) -> Value {
    let mut claims = json!({"conversationId": conv, "email": "resume-test@example.com", "iat": now, "exp": exp,
                            "jti": uuid::Uuid::new_v4().simple().to_string()});
    if let Some(iss) = &c.issuer {
        claims["iss"] = json!(iss);
    }
    if let Some(aud) = &c.audience {
        claims["aud"] = json!(aud);
    }
    claims
}

/// The token with one character of its signature changed (in the middle, where every bit of the
/// character counts).
fn altered(token: &str) -> String {
    let cut = token.rfind('.').map_or(0, |i| i + 1);
    let mid = cut + (token.len() - cut) / 2;
    let mut bytes = token.as_bytes().to_vec();
    if let Some(b) = bytes.get_mut(mid) {
        *b = if *b == b'A' { b'B' } else { b'A' };
    }
    String::from_utf8(bytes).unwrap_or_else(|_| token.to_string())
}

/// The route: the URL given, else `APP_BASE_URL` with the contract's `resume_path`.
pub fn route(config: &Config, given: Option<url::Url>) -> Result<url::Url, ResumeTestError> {
    if let Some(u) = given {
        return Ok(u);
    }
    let base = config.require("APP_BASE_URL", &config.app_base_url)?;
    let mut u = base.value.clone();
    let path = format!("{}{}", u.path().trim_end_matches('/'), config.contracts.resume_path);
    u.set_path(&path);
    Ok(u)
}

pub async fn run(config: &Config, req: ResumeTestRequest) -> Result<ResumeTestReport, ResumeTestError> {
    let keys = Keys::from_config(config)?;
    let url = crate::redact::url(req.url.as_str());
    let now = chrono::Utc::now().timestamp();
    let http = crate::http::client_without_redirects(config.timeout.value);
    let loopback_http = req.url.scheme() == "http" && crate::http::is_loopback_host(&req.url);
    let mut cases = Vec::new();
    for (name, token, exp) in tokens(config, &keys, now) {
        if name == CaseName::Revoked
            && let Some(skipped) = revoke_first(config, &token, &url).await?
        {
            cases.push(skipped);
            continue;
        }
        let answer = send(&http, &req, &token).await.map_err(|detail| ResumeTestError::Unreachable {
            url: url.clone(),
            case: name.as_str(),
            detail,
        })?;
        cases.push(judge(name, &answer, &token, exp, loopback_http, now));
    }
    Ok(ResumeTestReport { schema_version: 1, url, method: req.method, cases })
}

/// Before the revoked case: the token revoked (until its own expiry, ten minutes) in the app's
/// Redis; or, when the app checks no revocations (`contracts.revocation_key`, `REDIS_URL`), the
/// case as skipped.
async fn revoke_first(config: &Config, token: &str, url: &str) -> Result<Option<Case>, ResumeTestError> {
    if config.contracts.revocation.is_none() || config.redis_url.is_none() {
        let name = CaseName::Revoked;
        return Ok(Some(Case {
            name,
            expect: name.expect(),
            status: None,
            cookie: None,
            pass: true,
            detail: "skipped: revocation is not configured (contracts.revocation_key and REDIS_URL)".into(),
        }));
    }
    super::ops::revoke(config, super::ops::RevokeWhat::Token(token.as_bytes().to_vec()))
        .await
        .map_err(|e| ResumeTestError::Revoke { url: url.to_string(), reason: e.to_string() })?;
    Ok(None)
}

/// The route's answer: status, headers that matter, body.
pub struct Answer {
    pub status: u16,
    pub set_cookies: Vec<String>,
    pub location: Option<String>,
    pub cache_control: Option<String>,
    pub body: String,
}

async fn send(http: &reqwest::Client, req: &ResumeTestRequest, token: &str) -> Result<Answer, String> {
    let r = match req.method {
        Method::Get => {
            let mut u = req.url.clone();
            u.query_pairs_mut().append_pair(&req.param, token);
            http.get(u)
        }
        Method::Json => http.post(req.url.clone()).json(&json!({ req.param.as_str(): token })),
        Method::Form => {
            let body: String =
                url::form_urlencoded::Serializer::new(String::new()).append_pair(&req.param, token).finish();
            http.post(req.url.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(body)
        }
    };
    let resp = r.send().await.map_err(|e| crate::http::describe(&e))?;
    let header =
        |n: reqwest::header::HeaderName| resp.headers().get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
    let set_cookies = resp
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect();
    let (location, cache_control) = (header(reqwest::header::LOCATION), header(reqwest::header::CACHE_CONTROL));
    let status = resp.status().as_u16();
    // At most 1 MiB of body is read: enough to find an echoed token.
    let body = resp.bytes().await.map(|b| String::from_utf8_lossy(&b[..b.len().min(1 << 20)]).into_owned());
    Ok(Answer { status, set_cookies, location, cache_control, body: body.unwrap_or_default() })
}

/// The verdict on one answer.
pub fn judge(name: CaseName, a: &Answer, token: &str, exp: i64, loopback_http: bool, now: i64) -> Case {
    let session = a.set_cookies.iter().filter_map(|h| parse_cookie(h, now)).find(|c| !c.clears);
    let mut problems = Vec::new();
    if name == CaseName::Valid {
        if !(200..400).contains(&a.status) {
            problems.push(format!("refused the valid token with {}", a.status));
        }
        match &session {
            None => problems.push("set no session cookie".to_string()),
            Some(c) => problems.extend(cookie_problems(c, exp, loopback_http)),
        }
        if a.location.as_deref().is_some_and(|l| l.contains(token)) {
            problems.push("put the token in Location (it lands in logs and Referer headers)".into());
        }
        if a.body.contains(token) {
            problems.push("echoed the token in the body".into());
        }
        let cc = a.cache_control.as_deref().unwrap_or("").to_ascii_lowercase();
        if !(cc.contains("no-store") || cc.contains("private")) {
            problems.push(format!("Cache-Control {:?}: a shared cache may keep the answer (no-store)", cc));
        }
    } else {
        if !(400..500).contains(&a.status) {
            problems.push(format!("accepted: answered {} instead of 4xx", a.status));
        }
        if let Some(c) = &session {
            problems.push(format!("set the session cookie {}", c.name));
        }
    }
    let pass = problems.is_empty();
    let detail = if pass { format!("answered {}", a.status) } else { problems.join("; ") };
    Case { name, expect: name.expect(), status: Some(a.status), cookie: session, pass, detail }
}

fn cookie_problems(c: &CookieSeen, exp: i64, loopback_http: bool) -> Vec<String> {
    let mut p = Vec::new();
    if !c.http_only {
        p.push(format!("cookie {} is not HttpOnly: a script (or an injected one) can read it", c.name));
    }
    if !c.secure && !loopback_http {
        p.push(format!("cookie {} is not Secure: it is sent over plain HTTP", c.name));
    }
    match c.same_site.as_deref().map(str::to_ascii_lowercase).as_deref() {
        Some("lax" | "strict") => {}
        other => {
            p.push(format!("cookie {} has SameSite {:?}: another site can send it (Lax or Strict)", c.name, other))
        }
    }
    if c.path.is_none() {
        p.push(format!("cookie {} has no Path", c.name));
    }
    match c.expires_at {
        None => p.push(format!("cookie {} has no expiry: a session cookie can outlive the token", c.name)),
        // A few seconds for the round trip and the clocks.
        Some(t) if t > exp + 5 => p.push(format!("cookie {} outlives the token by {} s", c.name, t - exp)),
        Some(_) => {}
    }
    p
}

impl crate::output::Render for ResumeTestReport {
    fn table(&self, w: &mut dyn std::io::Write, style: crate::output::Style) -> std::io::Result<()> {
        let mut t = crate::output::table(&["case", "expect", "status", "cookie", "result", "detail"]);
        for c in &self.cases {
            let cookie = c.cookie.as_ref().map_or("-".to_string(), |k| {
                let mut a = vec![k.name.clone()];
                a.extend(k.http_only.then(|| "HttpOnly".to_string()));
                a.extend(k.secure.then(|| "Secure".to_string()));
                a.extend(k.same_site.as_ref().map(|s| format!("SameSite={s}")));
                a.join(" ")
            });
            let result = if c.pass { style.good("PASS") } else { style.bad("FAIL") };
            let status = c.status.map_or("-".to_string(), |s| s.to_string());
            t.add_row(vec![
                c.name.as_str().into(),
                c.expect.into(),
                status,
                cookie,
                result,
                crate::output::escape(&c.detail),
            ]);
        }
        writeln!(w, "{t}")?;
        let skipped = self.cases.iter().filter(|c| c.status.is_none()).count();
        let ran = self.cases.len() - skipped;
        let passed = self.cases.iter().filter(|c| c.pass && c.status.is_some()).count();
        let skipped = if skipped == 0 { String::new() } else { format!(", {skipped} skipped") };
        writeln!(w, "resume route {}: {passed} of {ran} case(s) pass{skipped}", crate::output::escape(&self.url))
    }

    fn json(&self) -> Value {
        json!({"schema_version": self.schema_version, "kind": "token_resume_test", "url": self.url,
               "method": self.method, "pass": self.passed(), "cases": self.cases})
    }
}
