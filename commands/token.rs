//! `broker-ops token issue | verify | inspect | revoke | revoked`.

use std::io::Read;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use secrecy::ExposeSecret;

use broker_ops::duration::{parse_duration, parse_time};
use broker_ops::exit::Exit;
use broker_ops::output::Format;
use broker_ops::token::render::{Inspected, IssuedView, RevokedList, VerdictView, verify_batch};
use broker_ops::token::{self, Keys, VerifyOptions, revoke};

use crate::Ctx;

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Issue a resume token (and link) for a conversation.
    Issue(IssueArgs),
    /// Verify a token strictly; every reason it fails is listed. Exit 0 valid, 1 invalid, 3 could not check.
    Verify(VerifyArgs),
    /// Decode a token without verifying it (UNVERIFIED).
    Inspect {
        /// The token or resume link; `-` reads it from stdin.
        token: String,
    },
    /// Revoke a token until it expires.
    Revoke(RevokeArgs),
    /// List the live revocations.
    Revoked,
}

#[derive(Debug, Args)]
pub struct IssueArgs {
    /// Conversation id (display id).
    #[arg(long)]
    pub conversation: String,
    /// The customer's email address.
    #[arg(long)]
    pub email: String,
    /// How long the token is valid.
    #[arg(long, default_value = "7d", value_parser = parse_duration)]
    pub ttl: Duration,
    /// Email the link to the customer through SMTP_URL (from ALERT_EMAIL_FROM).
    #[arg(long)]
    pub send: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The token or resume link; `-` (or nothing) reads it from stdin.
    pub token: Option<String>,
    /// Clock tolerance for exp, nbf and iat.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub leeway: Duration,
    /// One token per input line, one NDJSON verdict per output line.
    #[arg(long, conflicts_with = "token")]
    pub batch: bool,
}

#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The token to revoke (its jti and exp are read from it).
    #[arg(conflicts_with_all = ["jti", "until"], required_unless_present = "jti")]
    pub token: Option<String>,
    /// Revoke by token id instead.
    #[arg(long, requires = "until")]
    pub jti: Option<String>,
    /// With --jti: until when (RFC 3339, or relative to now like +7d).
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn keys(ctx: &Ctx) -> anyhow::Result<Keys> {
    Ok(Keys::from_layers(ctx.config.layers())?)
}

async fn redis(ctx: &Ctx) -> anyhow::Result<Option<(redis::aio::ConnectionManager, String)>> {
    match &ctx.config.redis_url {
        None => Ok(None),
        Some(s) => {
            let url = s.value.expose_secret();
            let conn = broker_ops::mirror::redis::connect(url, ctx.config.timeout.value).await?;
            Ok(Some((conn, broker_ops::redact::url(url))))
        }
    }
}

fn prefix(ctx: &Ctx) -> String {
    ctx.config.redis_key_prefix.value.clone()
}

pub async fn run(cmd: TokenCommand, ctx: &Ctx) -> anyhow::Result<i32> {
    match cmd {
        TokenCommand::Issue(a) => issue(a, ctx).await,
        TokenCommand::Verify(a) if a.batch => batch(a, ctx).await,
        TokenCommand::Verify(a) => verify(a, ctx).await,
        TokenCommand::Inspect { token } => {
            let text = read_arg(Some(token))?;
            ctx.render(&Inspected::of(&String::from_utf8_lossy(&text), now()))?;
            Ok(Exit::Ok.code())
        }
        TokenCommand::Revoke(a) => revoke_cmd(a, ctx).await,
        TokenCommand::Revoked => {
            let (mut conn, addr) = redis(ctx).await?.context("token revoked needs REDIS_URL")?;
            let list = revoke::list(&mut conn, &addr, &prefix(ctx)).await?;
            ctx.render(&RevokedList(list))?;
            Ok(Exit::Ok.code())
        }
    }
}

async fn issue(a: IssueArgs, ctx: &Ctx) -> anyhow::Result<i32> {
    let keys = keys(ctx)?;
    let base = ctx.config.app_base_url.as_ref().map(|s| &s.value);
    let t = now();
    let issued = token::issue(&keys, &a.conversation, &a.email, a.ttl, t, base).map_err(anyhow::Error::msg)?;
    let mut sent_to = None;
    if a.send {
        let c = &ctx.config;
        if issued.link.is_none() {
            bail!("--send needs APP_BASE_URL to build the resume link");
        }
        let smtp = c.require("SMTP_URL", &c.smtp_url)?;
        let from = c.require("ALERT_EMAIL_FROM", &c.alert_email_from)?;
        token::send_link(smtp.value.expose_secret(), &from.value, &issued, c.timeout.value).await?;
        sent_to = Some(issued.email.clone());
    }
    ctx.render(&IssuedView { issued: &issued, now: t, sent_to })?;
    Ok(Exit::Ok.code())
}

/// The token from the argument, or stdin for `-` or nothing. Bytes, since stdin may not be UTF-8.
fn read_arg(arg: Option<String>) -> anyhow::Result<Vec<u8>> {
    match arg.as_deref() {
        Some("-") | None => {
            let mut buf = Vec::new();
            // Read at most a little over the size limit: a larger token is refused anyway.
            std::io::stdin()
                .take(token::MAX_TOKEN_BYTES as u64 * 200)
                .read_to_end(&mut buf)
                .context("reading the token from stdin")?;
            Ok(buf)
        }
        Some(t) => Ok(t.as_bytes().to_vec()),
    }
}

async fn verify(a: VerifyArgs, ctx: &Ctx) -> anyhow::Result<i32> {
    let keys = keys(ctx)?;
    let input = read_arg(a.token)?;
    let t = now();
    let mut v = token::verify(input.trim_ascii(), &keys, VerifyOptions { leeway: a.leeway, now: t });
    match redis(ctx).await? {
        None => v.notes.push("revocation not checked: REDIS_URL is not set".into()),
        Some((mut conn, addr)) => {
            if let Some(jti) = v.jti.clone() {
                let found = revoke::check_many(&mut conn, &addr, &prefix(ctx), &[jti.as_str()]).await?;
                if let Some(Some(at)) = found.into_iter().next() {
                    v.revoked(at);
                }
            }
        }
    }
    ctx.render(&VerdictView { verdict: &v, now: t })?;
    Ok(if v.valid { Exit::Ok } else { Exit::Failed }.code())
}

async fn batch(a: VerifyArgs, ctx: &Ctx) -> anyhow::Result<i32> {
    if !matches!(ctx.format, Format::Ndjson | Format::Table) {
        bail!("token verify --batch writes NDJSON (one verdict per line)");
    }
    let keys = keys(ctx)?;
    let opts = VerifyOptions { leeway: a.leeway, now: now() };
    let redis = redis(ctx).await?;
    let prefix = prefix(ctx);
    let handle = tokio::runtime::Handle::current();
    // The verifier is synchronous (it reads stdin line by line); Redis look-ups are bridged back
    // into the runtime one chunk of 1,024 tokens at a time.
    let summary = tokio::task::block_in_place(|| {
        let stdin = std::io::stdin();
        let mut input = std::io::BufReader::with_capacity(1 << 16, stdin.lock());
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
        match redis {
            Some((mut conn, addr)) => {
                let mut lookup = |jtis: &[&str]| -> Result<Vec<Option<String>>, String> {
                    handle.block_on(revoke::check_many(&mut conn, &addr, &prefix, jtis)).map_err(|e| e.to_string())
                };
                verify_batch(&mut input, &mut out, &keys, opts, Some(&mut lookup))
            }
            None => verify_batch(&mut input, &mut out, &keys, opts, None),
        }
    })
    .map_err(anyhow::Error::msg)?;
    eprintln!("{} tokens: {} valid, {} invalid", summary.total, summary.valid, summary.invalid);
    Ok(if summary.invalid == 0 { Exit::Ok } else { Exit::Failed }.code())
}

async fn revoke_cmd(a: RevokeArgs, ctx: &Ctx) -> anyhow::Result<i32> {
    let t = now();
    let (jti, until) = match (a.token, a.jti, a.until) {
        (Some(tok), _, _) => {
            let text = read_arg(Some(tok))?;
            let ins = Inspected::of(&String::from_utf8_lossy(&text), t);
            let claims = ins.claims.map_err(|e| anyhow::anyhow!("cannot read the token: {e}"))?;
            let jti = claims.get("jti").and_then(|j| j.as_str()).context("the token has no jti claim")?.to_string();
            let exp = claims.get("exp").and_then(|e| e.as_i64()).context("the token has no numeric exp claim")?;
            (jti, exp)
        }
        (None, Some(jti), Some(until)) => {
            let at = parse_time(&until, chrono::Utc::now()).map_err(anyhow::Error::msg)?;
            (jti, at.timestamp())
        }
        _ => bail!("give a token, or --jti with --until"),
    };
    if until <= t {
        bail!("the token already expired at {until}: there is nothing to revoke");
    }
    let (mut conn, addr) = redis(ctx).await?.context("token revoke needs REDIS_URL")?;
    let r = revoke::revoke(&mut conn, &addr, &prefix(ctx), &jti, until, t).await?;
    ctx.render(&r)?;
    Ok(Exit::Ok.code())
}
