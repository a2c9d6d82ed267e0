//! `broker-ops sandbox`: arguments in, `Sandbox::start`, the environment out, wait for Ctrl-C.

use std::net::SocketAddr;

use anyhow::{Context, bail};
use clap::Args;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use broker_ops::config::Config;
use broker_ops::contracts::Names;
use broker_ops::duration::parse_duration;
use broker_ops::exit::Exit;
use broker_ops::output::Format;
use broker_ops::sandbox::{LatencyModel, Sandbox, SandboxOptions, Stall};

use crate::Ctx;

#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// Address to serve on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8790")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub behaviour: Behaviour,
    /// Mirror into a Redis at this URL (no password here: use REDIS_URL and --mirror).
    #[arg(long, value_name = "URL")]
    pub redis_url: Option<String>,
    /// Mirror into a Postgres at this URL (no password here: use DATABASE_URL and --mirror).
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// Mirror into the configured REDIS_URL and DATABASE_URL.
    #[arg(long)]
    pub mirror: bool,
    /// Prefix for every Redis mirror key (for drills that must not touch real keys).
    #[arg(long, default_value = "", value_name = "PREFIX")]
    pub key_prefix: String,
}

/// What the stand-in does; shared with `sla smoke --sandbox`.
#[derive(Debug, Args, Clone)]
pub struct Behaviour {
    /// Reply latency: fixed:800ms, uniform:200ms..2s or lognormal:p50=800ms,p95=2500ms.
    #[arg(long, default_value = "lognormal:p50=800ms,p95=2500ms", value_parser = str::parse::<LatencyModel>)]
    pub ai_latency: LatencyModel,
    /// Publish sla:warning when a reply is later than this.
    #[arg(long, default_value = "4s", value_parser = parse_duration)]
    pub sla_warning: std::time::Duration,
    /// Publish sla:violation when a reply is later than this.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub sla_violation: std::time::Duration,
    /// Fraction of messages the AI never answers (0 to 1).
    #[arg(long, default_value_t = 0.0)]
    pub ai_error_rate: f64,
    /// Nothing answers for DUR, starting AFTER after start (e.g. 3s@10s).
    #[arg(long, value_parser = str::parse::<Stall>, value_name = "DUR@AFTER")]
    pub stall: Option<Stall>,
    /// Fraction of API requests answered with a 5xx (0 to 1).
    #[arg(long, default_value_t = 0.0)]
    pub http_error_rate: f64,
    /// Seed for the random draws, for repeatable runs.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Interval of SSE keepalives.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub sse_keepalive: std::time::Duration,
    /// Close every SSE stream this long after it opened (clients must resume with lastEvent).
    #[arg(long, value_parser = parse_duration, value_name = "DUR")]
    pub sse_drop_after: Option<std::time::Duration>,
}

impl Behaviour {
    pub fn options(&self, config: &Config) -> SandboxOptions {
        let env = &config.layers().env;
        SandboxOptions {
            ai_latency: self.ai_latency.clone(),
            sla_warning: self.sla_warning,
            sla_violation: self.sla_violation,
            ai_error_rate: self.ai_error_rate,
            http_error_rate: self.http_error_rate,
            stall: self.stall,
            seed: self.seed,
            sse_keepalive: self.sse_keepalive,
            sse_drop_after: self.sse_drop_after,
            key: env.get("BROKER_OPS_SANDBOX_KEY").map(|k| SecretString::from(k.clone())),
            inbox: env.get("BROKER_OPS_SANDBOX_INBOX").cloned(),
            queue: config.broker_queue.value.clone(),
            bull_prefix: config.bull_prefix.value.clone(),
            connect_timeout: config.timeout.value,
            ..SandboxOptions::default()
        }
    }
}

/// A database URL given as a flag must not carry a password (no flag takes a secret).
fn flag_url(flag: &str, var: &str, value: &str) -> anyhow::Result<SecretString> {
    let u = url::Url::parse(value).with_context(|| format!("{flag}: not a valid URL"))?;
    if u.password().is_some() {
        bail!("{flag} must not carry a password: set {var} (or {var}_FILE) and pass --mirror instead");
    }
    Ok(SecretString::from(value.to_string()))
}

pub async fn run(args: SandboxArgs, ctx: &Ctx) -> anyhow::Result<i32> {
    let config = &ctx.config;
    let mut opts = args.behaviour.options(config);
    opts.listen = args.listen;
    opts.names = Names::with_redis_prefix(args.key_prefix.clone());
    opts.redis_url = match (&args.redis_url, args.mirror) {
        (Some(u), _) => Some(flag_url("--redis-url", "REDIS_URL", u)?),
        (None, true) => config.redis_url.as_ref().map(|s| s.value.clone()),
        (None, false) => None,
    };
    opts.database_url = match (&args.database_url, args.mirror) {
        (Some(u), _) => Some(flag_url("--database-url", "DATABASE_URL", u)?),
        (None, true) => config.database_url.as_ref().map(|s| s.value.clone()),
        (None, false) => None,
    };
    if args.mirror && opts.redis_url.is_none() && opts.database_url.is_none() {
        bail!("--mirror needs REDIS_URL or DATABASE_URL to be set");
    }
    let mirrors: Vec<String> = [("redis", &opts.redis_url), ("postgres", &opts.database_url)]
        .iter()
        .filter_map(|(n, u)| u.as_ref().map(|u| format!("{n} {}", broker_ops::redact::url(u.expose_secret()))))
        .collect();
    let latency = opts.ai_latency.to_string();
    let sandbox = Sandbox::start(opts).await?;
    let env = sandbox.env();
    let mut out = std::io::stdout().lock();
    match ctx.format {
        Format::Json | Format::Ndjson => {
            let vars: serde_json::Map<_, _> = env.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
            let doc = json!({"schema_version": 1, "kind": "sandbox", "listen": sandbox.addr.to_string(),
                             "ai_latency": latency, "mirrors": mirrors, "env": vars});
            crate::print_json(&mut out, &doc, ctx.format)?;
        }
        _ => {
            let exports: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
            use std::io::Write;
            writeln!(out, "export {}", exports.join(" "))?;
            out.flush()?;
            eprintln!(
                "broker-ops sandbox listening on http://{} (AI latency {latency}{}); Ctrl-C stops it",
                sandbox.addr,
                if mirrors.is_empty() { String::new() } else { format!("; mirroring to {}", mirrors.join(", ")) }
            );
        }
    }
    drop(out);
    crate::wait_for_shutdown().await;
    eprintln!("broker-ops sandbox: stopping");
    sandbox.shutdown().await;
    Ok(Exit::Ok.code())
}
