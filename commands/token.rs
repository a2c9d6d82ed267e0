//! `broker-ops token issue | verify | inspect | revoke | revoked`.

use std::io::Read;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};

use broker_ops::duration::{parse_duration, parse_positive_duration, parse_time};
use broker_ops::exit::{Outcome, UsageError};
use broker_ops::token::ops::{self, RevokeWhat};
use broker_ops::token::render::{Inspected, IssuedView, RevokedList, VerdictView};
use broker_ops::token::resume_test::{self, Method, ResumeTestRequest};
use broker_ops::token::{self, IssueRequest};

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
    /// Check the app's resume route with tokens made for a synthetic conversation: the valid one
    /// must get a safe session cookie, every broken one a 4xx. Exit 0 all pass, 1 any fails.
    ResumeTest(ResumeTestArgs),
}

#[derive(Debug, Args)]
pub struct ResumeTestArgs {
    /// The route [default: APP_BASE_URL + contracts.resume_path, /api/chat/resume].
    #[arg(value_name = "URL", value_parser = http_url)]
    pub url: Option<url::Url>,
    /// How the token is sent: a GET query, or a POST with a JSON or form body.
    #[arg(long, value_enum, default_value = "get")]
    pub method: MethodArg,
    /// The name of the token's query parameter or body field.
    #[arg(long, default_value = "token", value_name = "NAME")]
    pub param: String,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum MethodArg {
    Get,
    Json,
    Form,
}

/// An http(s) URL (anything else is a usage error).
fn http_url(s: &str) -> Result<url::Url, String> {
    let u = url::Url::parse(s).map_err(|e| format!("{s:?}: {e}"))?;
    if matches!(u.scheme(), "http" | "https") { Ok(u) } else { Err(format!("{s:?} is not an http(s) URL")) }
}

#[derive(Debug, Args)]
pub struct IssueArgs {
    /// Conversation id (display id).
    #[arg(long)]
    pub conversation: String,
    /// The customer's email address.
    #[arg(long)]
    pub email: String,
    /// How long the token is valid (more than 0s, at most 10 years).
    #[arg(long, default_value = "7d", value_parser = parse_ttl)]
    pub ttl: Duration,
    /// Email the link to the customer through SMTP_URL (from ALERT_EMAIL_FROM).
    #[arg(long)]
    pub send: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The token or resume link; `-` (or nothing) reads it from stdin.
    pub token: Option<String>,
    /// Clock tolerance for exp, nbf and iat (none by default).
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
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

pub async fn run(cmd: TokenCommand, ctx: &Ctx) -> anyhow::Result<Outcome> {
    let c = &ctx.config;
    let now = chrono::Utc::now().timestamp();
    match cmd {
        TokenCommand::Issue(a) => {
            let base = c.app_base_url.as_ref().map(|s| &s.value);
            let req =
                IssueRequest { conversation_id: &a.conversation, email: &a.email, ttl: a.ttl, now, app_base_url: base };
            let (issued, sent_to) = ops::issue(c, req, a.send).await?;
            ctx.render(&IssuedView { issued: &issued, now, sent_to })?;
            Ok(Outcome::Done)
        }
        TokenCommand::Verify(a) if a.batch => {
            let mut input = std::io::BufReader::with_capacity(1 << 16, std::io::stdin().lock());
            let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
            let sum = ops::verify_lines(c, &mut input, &mut out, a.leeway).await?;
            eprintln!("{} tokens: {} valid, {} invalid", sum.total, sum.valid, sum.invalid);
            Ok(Outcome::passed(sum.invalid == 0))
        }
        TokenCommand::Verify(a) => {
            let input = read_arg(a.token)?;
            let v = ops::verify(c, input.trim_ascii(), a.leeway).await?;
            ctx.render(&VerdictView { verdict: &v, now })?;
            Ok(Outcome::passed(v.valid))
        }
        TokenCommand::Inspect { token } => {
            let text = read_arg(Some(token))?;
            ctx.render(&Inspected::of(&String::from_utf8_lossy(&text), now))?;
            Ok(Outcome::Done)
        }
        TokenCommand::Revoke(a) => {
            let what = match (a.token, a.jti, a.until) {
                (Some(tok), _, _) => RevokeWhat::Token(read_arg(Some(tok))?),
                (None, Some(jti), Some(until)) => {
                    let until =
                        parse_time(&until, chrono::Utc::now()).map_err(|e| UsageError(format!("--until: {e}")))?;
                    RevokeWhat::Id { jti, until }
                }
                _ => return Err(UsageError("give a token, or --jti with --until".into()).into()),
            };
            ctx.render(&ops::revoke(c, what).await?)?;
            Ok(Outcome::Done)
        }
        TokenCommand::ResumeTest(a) => {
            let req = ResumeTestRequest {
                url: resume_test::route(c, a.url)?,
                method: match a.method {
                    MethodArg::Get => Method::Get,
                    MethodArg::Json => Method::Json,
                    MethodArg::Form => Method::Form,
                },
                param: a.param,
            };
            let report = resume_test::run(c, req).await?;
            ctx.render(&report)?;
            Ok(Outcome::passed(report.passed()))
        }
        TokenCommand::Revoked => {
            ctx.render(&RevokedList(ops::revoked(c).await?))?;
            Ok(Outcome::Done)
        }
    }
}

fn parse_ttl(s: &str) -> Result<Duration, String> {
    let d = parse_positive_duration(s)?;
    if d > token::MAX_TTL {
        return Err(format!("{s:?}: at most 10 years"));
    }
    Ok(d)
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
