//! The token commands' work, from the configuration: keys and contract from [`Config`], the
//! revocation look-up in the configured Redis, the resume link emailed through `SMTP_URL`.

use super::render::{BatchSummary, Inspected, verify_batch};
use super::revoke::{self, LiveRevocation, Revocation};
use super::{IssueRequest, Issued, Keys, KeysError, SendError, Verdict, VerifyOptions};
use crate::config::{Config, ConfigError};
use crate::redis_handle::{Redis, RedisError};

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(transparent)]
    Keys(#[from] KeysError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Redis(#[from] RedisError),
    #[error(transparent)]
    Send(#[from] SendError),
    /// The request itself is wrong (an invalid address, an expired token to revoke, ...).
    #[error("{0}")]
    Invalid(String),
    /// Revocation asked for while `contracts.revocation_key` is unset.
    #[error("{0}")]
    NotConfigured(String),
}

/// Issues a token and, with `send`, emails the link; returns it and to whom it was sent.
pub async fn issue(config: &Config, req: IssueRequest<'_>, send: bool) -> Result<(Issued, Option<String>), TokenError> {
    let keys = Keys::from_config(config)?;
    let issued = super::issue(&keys, &config.contracts.token, req).map_err(TokenError::Invalid)?;
    if !send {
        return Ok((issued, None));
    }
    if issued.link.is_none() {
        return Err(TokenError::Invalid("--send needs APP_BASE_URL to build the resume link".into()));
    }
    config.require("SMTP_URL", &config.smtp_url)?;
    let from = config.require("ALERT_EMAIL_FROM", &config.alert_email_from)?;
    let smtp = crate::smtp::Smtp::from_config(config).map_err(|e| TokenError::Send(SendError::Url(e)))?;
    // Required just above.
    let smtp = smtp.expect("SMTP_URL is set");
    super::send_link(&smtp, &from.value, &issued).await?;
    let to = issued.email.clone();
    Ok((issued, Some(to)))
}

/// What `token verify` says, and why `token revoke` refuses, while `contracts.revocation_key` is unset.
pub const NOT_CONFIGURED: &str = "revocation: not configured (the app must check a key for revocation to mean \
     anything: set contracts.revocation_key to the key it checks, e.g. resume:revoked:{jti})";

/// Verifies one token against the configured keys and contract, and its revocation in Redis
/// when the revocation contract and Redis are configured (a note says so when they are not).
pub async fn verify(config: &Config, input: &[u8], leeway: std::time::Duration) -> Result<Verdict, TokenError> {
    let keys = Keys::from_config(config)?;
    let opts = VerifyOptions { leeway, now: chrono::Utc::now().timestamp(), contract: &config.contracts.token };
    let mut v = super::verify(input, &keys, opts);
    let Some(at_key) = &config.contracts.revocation else {
        v.notes.push(NOT_CONFIGURED.into());
        return Ok(v);
    };
    match Redis::from_config(config).await? {
        None => v.notes.push("revocation not checked: REDIS_URL is not set".into()),
        Some(mut r) => match v.jti.clone() {
            None => v.notes.push(format!("revocation not checked: the token has no jti for {at_key}")),
            Some(jti) => {
                if let Some(Some(at)) = revoke::check_many(&mut r, at_key, &[jti.as_str()]).await?.into_iter().next() {
                    v.revoked(at);
                }
            }
        },
    }
    Ok(v)
}

/// `token verify --batch`: one token per line of `input`, one NDJSON verdict per line of `out`.
/// Synchronous reading and writing; the Redis look-ups are bridged into the runtime one chunk
/// at a time.
pub async fn verify_lines(
    config: &Config,
    input: &mut dyn std::io::BufRead,
    out: &mut dyn std::io::Write,
    leeway: std::time::Duration,
) -> Result<BatchSummary, TokenError> {
    let keys = Keys::from_config(config)?;
    let opts = VerifyOptions { leeway, now: chrono::Utc::now().timestamp(), contract: &config.contracts.token };
    let redis = match &config.contracts.revocation {
        Some(k) => Redis::from_config(config).await?.map(|r| (r, k.clone())),
        None => None,
    };
    let handle = tokio::runtime::Handle::current();
    tokio::task::block_in_place(|| match redis {
        Some((mut r, at_key)) => {
            let mut lookup = |jtis: &[&str]| -> Result<Vec<Option<String>>, String> {
                handle.block_on(revoke::check_many(&mut r, &at_key, jtis)).map_err(|e| e.to_string())
            };
            verify_batch(input, out, &keys, opts, Some(&mut lookup))
        }
        None => verify_batch(input, out, &keys, opts, None),
    })
    .map_err(TokenError::Invalid)
}

/// What to revoke: a token (its `jti` and `exp` read from it, unverified), or an id until a time.
pub enum RevokeWhat {
    Token(Vec<u8>),
    Id { jti: String, until: chrono::DateTime<chrono::Utc> },
}

pub async fn revoke(config: &Config, what: RevokeWhat) -> Result<Revocation, TokenError> {
    let at_key = revocation_key(config)?;
    let now = chrono::Utc::now().timestamp();
    let (jti, until) = match what {
        RevokeWhat::Token(text) => {
            let ins = Inspected::of(&String::from_utf8_lossy(&text), now);
            let claims = ins.claims.map_err(|e| TokenError::Invalid(format!("cannot read the token: {e}")))?;
            let jti = claims.get("jti").and_then(|j| j.as_str()).filter(|j| !j.is_empty());
            let jti = jti.ok_or_else(|| TokenError::Invalid("the token has no jti claim".into()))?.to_string();
            let exp = claims.get("exp").and_then(|e| e.as_i64());
            (jti, exp.ok_or_else(|| TokenError::Invalid("the token has no numeric exp claim".into()))?)
        }
        RevokeWhat::Id { jti, until } => (jti, until.timestamp()),
    };
    if until <= now {
        return Err(TokenError::Invalid(format!("the token already expired at {until}: there is nothing to revoke")));
    }
    let mut r = redis(config).await?;
    Ok(revoke::revoke(&mut r, at_key, &jti, until, now).await?)
}

pub async fn revoked(config: &Config) -> Result<Vec<LiveRevocation>, TokenError> {
    let at_key = revocation_key(config)?;
    Ok(revoke::list(&mut redis(config).await?, at_key).await?)
}

/// The key the app checks, or the refusal: a revocation the app never reads protects nobody.
fn revocation_key(config: &Config) -> Result<&crate::contracts::RevocationKey, TokenError> {
    config.contracts.revocation.as_ref().ok_or_else(|| TokenError::NotConfigured(NOT_CONFIGURED.into()))
}

/// The configured Redis, which revocations need.
async fn redis(config: &Config) -> Result<Redis, TokenError> {
    let url = config.require("REDIS_URL", &config.redis_url)?;
    Ok(Redis::of_setting(config, url).await?)
}
