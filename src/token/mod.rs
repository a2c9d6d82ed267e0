//! Resume tokens: JWT HS256 with header `kid`; claims `iss` and `aud` (from the contracts,
//! default `ai-broker` and `chat-resume`), `conversationId`, `email`, `iat`, `exp`, `jti`.
//! Revocation: Redis key `resume:revoked:{jti}` living until the token's `exp`
//! (docs/contracts.md). Signing and signature checks go through the `jsonwebtoken` crate.
//!
//! Verification is strict and explains itself: it collects every reason a token fails rather
//! than stopping at the first, and never panics on any input.

pub mod codec;
pub mod keys;
pub mod ops;
pub mod render;
pub mod resume_test;
pub mod revoke;
pub mod verify;

pub use keys::{Keys, KeysError};
pub use verify::{Verdict, VerifyOptions, verify};

/// Tokens longer than this are refused before any parsing.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

use serde::Serialize;
use serde_json::{Value, json};

use crate::contracts::{IdType, TokenContract};

/// What `token issue` made.
#[derive(Debug, Clone, Serialize)]
pub struct Issued {
    pub token: String,
    pub jti: String,
    pub kid: String,
    pub conversation_id: String,
    pub email: String,
    pub iat: i64,
    pub exp: i64,
    pub link: Option<String>,
}

/// The longest a resume token may live: a link that outlives ten years is a mistake.
pub const MAX_TTL: std::time::Duration = std::time::Duration::from_secs(10 * 366 * 24 * 3600);

/// What a token is issued for.
pub struct IssueRequest<'a> {
    pub conversation_id: &'a str,
    pub email: &'a str,
    pub ttl: std::time::Duration,
    pub now: i64,
    pub app_base_url: Option<&'a url::Url>,
}

/// Signs a resume token with `jsonwebtoken` (HS256, header `kid`), claims per the contract.
pub fn issue(keys: &Keys, contract: &TokenContract, r: IssueRequest) -> Result<Issued, String> {
    if !verify::email_ok(r.email) {
        return Err(format!("{} is not a valid email address", crate::output::escape(&format!("{:?}", r.email))));
    }
    if r.ttl.is_zero() || r.ttl > MAX_TTL {
        return Err("the time to live must be more than 0s and at most 10 years".into());
    }
    let conv = conversation_claim(r.conversation_id, contract.conversation_id)?;
    let (kid, secret) = keys.signing();
    let jti = uuid::Uuid::new_v4().simple().to_string();
    let exp = r.now + r.ttl.as_secs() as i64;
    let mut claims = json!({"conversationId": conv, "email": r.email, "iat": r.now, "exp": exp, "jti": jti});
    if let Some(iss) = &contract.issuer {
        claims["iss"] = json!(iss);
    }
    if let Some(aud) = &contract.audience {
        claims["aud"] = json!(aud);
    }
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(kid.to_string());
    let key = jsonwebtoken::EncodingKey::from_secret(secret).map_err(|e| format!("the signing key: {e}"))?;
    let token = jsonwebtoken::encode(&header, &claims, &key).map_err(|e| format!("signing the token: {e}"))?;
    let link = r.app_base_url.map(|base| resume_link(base, &token));
    Ok(Issued {
        token,
        jti,
        kid: kid.to_string(),
        conversation_id: r.conversation_id.to_string(),
        email: r.email.to_string(),
        iat: r.now,
        exp,
        link,
    })
}

/// `conversationId` as the contract types it.
fn conversation_claim(id: &str, ty: IdType) -> Result<Value, String> {
    if id.trim().is_empty() {
        return Err("the conversation id is empty".into());
    }
    let number = id.parse::<u64>().ok();
    match (ty, number) {
        (IdType::String, _) => Ok(json!(id)),
        (IdType::Number | IdType::AsGiven, Some(n)) => Ok(Value::from(n)),
        (IdType::AsGiven, None) => Ok(json!(id)),
        (IdType::Number, None) => Err(format!(
            "the conversation id {} is not a whole number, and contracts.token_conversation_id is \"number\"",
            crate::output::escape(&format!("{id:?}"))
        )),
    }
}

/// `{APP_BASE_URL}/chat?resume={token}`.
pub fn resume_link(base: &url::Url, token: &str) -> String {
    let mut u = base.clone();
    let path = format!("{}/chat", u.path().trim_end_matches('/'));
    u.set_path(&path);
    u.query_pairs_mut().clear().append_pair("resume", token);
    u.to_string()
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("invalid email address {0:?}")]
    Address(String),
    #[error("SMTP_URL: {0}")]
    Url(String),
    #[error("building the email: {0}")]
    Build(String),
    #[error("SMTP {addr}: sending to {to}: {reason}")]
    Send { addr: String, to: String, reason: String },
}

/// Emails the resume link to the customer: a plain, clear text message, one attempt bounded
/// by the SMTP time-outs.
pub async fn send_link(smtp: &crate::smtp::Smtp, from: &str, issued: &Issued) -> Result<(), SendError> {
    use lettre::Message;
    use lettre::message::{Mailbox, header::ContentType};
    let link = issued.link.as_deref().unwrap_or_default();
    let from: Mailbox = from.parse().map_err(|_| SendError::Address(from.to_string()))?;
    let to: Mailbox = issued.email.parse().map_err(|_| SendError::Address(issued.email.clone()))?;
    let until = chrono::DateTime::from_timestamp(issued.exp, 0).unwrap_or_default().format("%-d %B %Y, %H:%M UTC");
    let body = format!(
        "Hello,\n\nhere is your link to pick up your conversation with us where you left it:\n\n{link}\n\n\
         The link works until {until}. If you did not ask for it, you can ignore this email.\n"
    );
    let email = Message::builder()
        .from(from)
        .to(to)
        .subject("Your link to continue the conversation")
        .header(ContentType::TEXT_PLAIN)
        .body(body)
        .map_err(|e| SendError::Build(e.to_string()))?;
    smtp.send(email).await.map_err(|e| SendError::Send {
        addr: smtp.addr.clone(),
        to: issued.email.clone(),
        reason: match e {
            crate::smtp::SmtpFailure::Rejected(r) | crate::smtp::SmtpFailure::Transient(r) => r,
        },
    })
}
