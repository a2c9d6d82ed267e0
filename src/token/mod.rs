//! Resume tokens: JWT HS256 with header `kid`; claims `iss` (`ai-broker`), `aud`
//! (`chat-resume`), `conversationId`, `email`, `iat`, `exp`, `jti`. Revocation: Redis key
//! `resume:revoked:{jti}` living until the token's `exp` (docs/contracts.md).
//!
//! Verification is strict and explains itself: it collects every reason a token fails rather
//! than stopping at the first, and never panics on any input.

pub mod codec;
pub mod keys;
pub mod render;
pub mod revoke;
pub mod verify;

pub use keys::{Keys, KeysError};
pub use verify::{Verdict, VerifyOptions, verify};

pub const ISSUER: &str = "ai-broker";
pub const AUDIENCE: &str = "chat-resume";
/// Tokens longer than this are refused before any parsing.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

use serde::Serialize;
use serde_json::{Value, json};

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

/// Signs a resume token for `conversation_id` and `email`, valid for `ttl` from `now`.
pub fn issue(
    keys: &Keys,
    conversation_id: &str,
    email: &str,
    ttl: std::time::Duration,
    now: i64,
    app_base_url: Option<&url::Url>,
) -> Result<Issued, String> {
    if !verify::email_ok(email) {
        return Err(format!("{email:?} is not a valid email address"));
    }
    if conversation_id.trim().is_empty() {
        return Err("the conversation id is empty".into());
    }
    let (kid, secret) = keys.signing();
    let jti = uuid::Uuid::new_v4().simple().to_string();
    let exp = now + ttl.as_secs() as i64;
    let header = json!({"alg": "HS256", "typ": "JWT", "kid": kid});
    // The web app's conversation ids are numbers in Chatwoot; keep a numeric id numeric.
    let conv: Value = conversation_id.parse::<u64>().map(Value::from).unwrap_or_else(|_| json!(conversation_id));
    let claims = json!({
        "iss": ISSUER, "aud": AUDIENCE, "conversationId": conv, "email": email,
        "iat": now, "exp": exp, "jti": jti,
    });
    let token = codec::sign(&header, &claims, secret);
    let link = app_base_url.map(|base| resume_link(base, &token));
    Ok(Issued {
        token,
        jti,
        kid: kid.to_string(),
        conversation_id: conversation_id.to_string(),
        email: email.to_string(),
        iat: now,
        exp,
        link,
    })
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

/// Emails the resume link to the customer: a plain, clear text message.
pub async fn send_link(
    smtp_url: &str,
    from: &str,
    issued: &Issued,
    timeout: std::time::Duration,
) -> Result<(), SendError> {
    use lettre::message::{Mailbox, header::ContentType};
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
    crate::http::ensure_crypto_provider();
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
    let transport: AsyncSmtpTransport<Tokio1Executor> = AsyncSmtpTransport::<Tokio1Executor>::from_url(smtp_url)
        .map_err(|e| SendError::Url(e.to_string()))?
        .timeout(Some(timeout))
        .build();
    transport.send(email).await.map(|_| ()).map_err(|e| SendError::Send {
        addr: crate::redact::url(smtp_url),
        to: issued.email.clone(),
        reason: e.to_string(),
    })
}
