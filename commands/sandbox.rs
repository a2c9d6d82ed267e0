//! `broker-ops sandbox`: arguments in, `Sandbox::start`, the environment out, wait for Ctrl-C.

use std::io::Write;
use std::net::SocketAddr;

use clap::Args;

use broker_ops::config::Config;
use broker_ops::duration::{parse_duration, parse_positive_duration};
use broker_ops::exit::Outcome;
use broker_ops::output::Format;
use broker_ops::sandbox::tls::TlsIdentity;
use broker_ops::sandbox::{Faults, LatencyModel, Sandbox, SandboxOptions, Stall};

use crate::Ctx;

#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// Address to serve on (port 0 picks a free port). Loopback only, unless --allow-remote.
    #[arg(long, default_value = "127.0.0.1:8790")]
    pub listen: SocketAddr,
    /// Serve on a non-loopback address too: the sandbox serves known keys to anyone who asks.
    #[arg(long)]
    pub allow_remote: bool,
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
    /// Prefix for every Redis mirror key (for drills that must not touch real keys)
    /// [default: REDIS_KEY_PREFIX].
    #[arg(long, value_name = "PREFIX")]
    pub key_prefix: Option<String>,
    /// Serve HTTPS with this certificate chain (PEM); clients trust it through TLS_CA_FILE or
    /// SSL_CERT_FILE.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub pipeline: Pipeline,
    /// Make the reference resume route (/api/chat/resume) careless in one way (repeatable), to
    /// see `token resume-test` fail on it.
    #[arg(long = "resume-careless", value_enum, value_name = "MODE")]
    pub resume_careless: Vec<ResumeCareless>,
    #[command(flatten, next_help_heading = "Simulated customers (--traffic)")]
    pub traffic: TrafficArgs,
}

/// Simulated customer traffic (changeable at run time through POST /_sandbox/traffic).
#[derive(Debug, Args, Clone)]
pub struct TrafficArgs {
    /// Start simulated conversations at this rate (per minute, Poisson arrivals; `120` or
    /// `120/min`), each choosing its transport through the ENABLE_ABLY_REALTIME flag.
    #[arg(long, value_name = "RATE", value_parser = parse_traffic_rate)]
    pub traffic: Option<f64>,
    /// Customer messages per conversation, drawn uniformly from MIN-MAX.
    #[arg(long, default_value = "1-4", value_name = "MIN-MAX", value_parser = parse_range, requires = "traffic")]
    pub traffic_turns: (u32, u32),
    /// Mean think time before each message (exponentially distributed).
    #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "DUR", requires = "traffic")]
    pub traffic_think: std::time::Duration,
    /// How often the simulated app reads the flag again for a conversation.
    #[arg(long, default_value = "30s", value_parser = parse_duration, value_name = "DUR", requires = "traffic")]
    pub flag_refresh: std::time::Duration,
    /// The simulated app's polling interval on the polling transport.
    #[arg(long, default_value = "2s", value_parser = parse_duration, value_name = "DUR", requires = "traffic")]
    pub traffic_poll: std::time::Duration,
    /// Share of real-time conversations a simulated broker dashboard subscribes to.
    #[arg(long, default_value = "50%", value_parser = broker_ops::compare::share, value_name = "SHARE", requires = "traffic")]
    pub traffic_dashboard: f64,
    /// The simulated app ignores the flag: every conversation on real-time (a deployment that
    /// does not read it).
    #[arg(long, requires = "traffic")]
    pub ignore_flag: bool,
}

fn parse_traffic_rate(s: &str) -> Result<f64, String> {
    let n = s.trim().trim_end_matches("/min");
    let r: f64 = n.trim().parse().map_err(|_| format!("invalid rate {s:?}: conversations per minute, e.g. 120"))?;
    broker_ops::sandbox::traffic::check_rate(r)
}

fn parse_range(s: &str) -> Result<(u32, u32), String> {
    let bad = || format!("invalid range {s:?}: expected MIN-MAX, e.g. 1-4");
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let (a, b) = (a.trim().parse().map_err(|_| bad())?, b.trim().parse().map_err(|_| bad())?);
    if a == 0 || a > b { Err(bad()) } else { Ok((a, b)) }
}

/// The Ably webhook rule and the app route's stand-in, and their faults (changeable at run
/// time through POST /_sandbox/faults).
#[derive(Debug, Args, Clone)]
pub struct Pipeline {
    /// Send the Ably webhook (signed batches of channel.message items) here [default with a
    /// mirror: the sandbox's own receiver at /api/ably/events].
    #[arg(long, value_name = "URL")]
    pub webhook_url: Option<url::Url>,
    /// Least time between two webhook requests (Ably sends at most one a second per instance).
    #[arg(long, default_value = "0s", value_parser = parse_duration, value_name = "DUR")]
    pub webhook_interval: std::time::Duration,
    /// Fault: fraction of webhook items lost before sending (0 to 1, or a percentage).
    #[arg(long, default_value_t = 0.0, value_parser = broker_ops::compare::share)]
    pub webhook_drop_rate: f64,
    /// Fault: wait this long before every webhook request.
    #[arg(long, default_value = "0s", value_parser = parse_duration, value_name = "DUR")]
    pub webhook_delay: std::time::Duration,
    /// Fault: fraction of webhook requests the receiver answers with 500 (0 to 1, or a percentage).
    #[arg(long, default_value_t = 0.0, value_parser = broker_ops::compare::share)]
    pub receiver_error_rate: f64,
    /// Fault: the receiver's Redis writes fail.
    #[arg(long)]
    pub redis_write_fail: bool,
    /// Fault: the receiver's Postgres writes fail.
    #[arg(long)]
    pub postgres_write_fail: bool,
}

/// What the stand-in does; shared with `sla smoke --sandbox`.
#[derive(Debug, Args, Clone)]
pub struct Behaviour {
    /// Reply latency: fixed:800ms, uniform:200ms..2s or lognormal:p50=800ms,p95=2500ms[,max=4s]
    /// (the default is cut at 4s: a default run never breaches the 5s SLA unless asked).
    #[arg(long, default_value = "lognormal:p50=800ms,p95=2500ms,max=4s", value_parser = str::parse::<LatencyModel>)]
    pub ai_latency: LatencyModel,
    /// Publish sla:warning when a reply is later than this.
    #[arg(long, default_value = "4s", value_parser = parse_duration)]
    pub sla_warning: std::time::Duration,
    /// Publish sla:violation when a reply is later than this.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub sla_violation: std::time::Duration,
    /// Fraction of messages the AI never answers (0 to 1, or a percentage).
    #[arg(long, default_value_t = 0.0, value_parser = broker_ops::compare::share)]
    pub ai_error_rate: f64,
    /// Nothing answers for DUR, starting AFTER after start (e.g. 3s@10s).
    #[arg(long, value_parser = str::parse::<Stall>, value_name = "DUR@AFTER")]
    pub stall: Option<Stall>,
    /// Fraction of API requests answered with a 5xx (0 to 1, or a percentage).
    #[arg(long, default_value_t = 0.0, value_parser = broker_ops::compare::share)]
    pub http_error_rate: f64,
    /// Seed for the random draws, for repeatable runs.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Interval of SSE keepalives.
    #[arg(long, default_value = "15s", value_parser = parse_positive_duration)]
    pub sse_keepalive: std::time::Duration,
    /// Close every SSE stream this long after it opened (clients must resume with lastEvent).
    #[arg(long, value_parser = parse_positive_duration, value_name = "DUR")]
    pub sse_drop_after: Option<std::time::Duration>,
    /// Fault: fraction of deliveries to realtime subscribers that never happen (0 to 1, or a percentage); Ably
    /// still accepts the publish and mirrors it through the webhook.
    #[arg(long, default_value_t = 0.0, value_parser = broker_ops::compare::share)]
    pub deliver_drop_rate: f64,
}

/// The reference resume route's careless modes.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ResumeCareless {
    /// Lets in an expired (genuinely signed) token.
    AcceptExpired,
    /// Lets in an unsigned token (`alg: none`).
    AcceptNone,
    /// Sets the session cookie without HttpOnly.
    CookieScriptable,
    /// Redirects with the token in Location.
    TokenInLocation,
    /// Lets shared caches keep its answer.
    Cacheable,
}

impl Behaviour {
    /// These behaviours on top of the configured sandbox options.
    pub fn options(&self, config: &Config) -> SandboxOptions {
        let faults = Faults {
            ai_latency: self.ai_latency.clone(),
            ai_error_rate: self.ai_error_rate,
            http_error_rate: self.http_error_rate,
            stall: self.stall,
            sse_drop_after: self.sse_drop_after,
            deliver_drop_rate: self.deliver_drop_rate,
            ..Faults::default()
        };
        SandboxOptions {
            sla_warning: self.sla_warning,
            sla_violation: self.sla_violation,
            seed: self.seed,
            sse_keepalive: self.sse_keepalive,
            faults,
            ..SandboxOptions::from_config(config)
        }
    }
}

pub async fn run(args: SandboxArgs, ctx: &Ctx) -> anyhow::Result<Outcome> {
    let mut opts = args.behaviour.options(&ctx.config);
    opts.listen = args.listen;
    opts.allow_remote = args.allow_remote;
    if let Some(p) = &args.key_prefix {
        opts.contracts.redis_prefix = p.clone();
    }
    opts.mirror_from(&ctx.config, args.redis_url.as_deref(), args.database_url.as_deref(), args.mirror)?;
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        let read = |p: &std::path::Path| {
            broker_ops::config::read_small_file(p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))
        };
        opts.tls = Some(TlsIdentity { cert_pem: read(cert)?.into_bytes(), key_pem: read(key)?.into_bytes() });
    }
    let p = args.pipeline;
    opts.webhook_url = p.webhook_url;
    opts.webhook_interval = p.webhook_interval;
    opts.faults = Faults {
        webhook_drop_rate: p.webhook_drop_rate,
        webhook_delay: p.webhook_delay,
        receiver_error_rate: p.receiver_error_rate,
        redis_write_fail: p.redis_write_fail,
        postgres_write_fail: p.postgres_write_fail,
        receiver_skip_signature: false,
        ..opts.faults
    };
    for mode in &args.resume_careless {
        let f = &mut opts.faults;
        match mode {
            ResumeCareless::AcceptExpired => f.resume_accept_expired = true,
            ResumeCareless::AcceptNone => f.resume_accept_none = true,
            ResumeCareless::CookieScriptable => f.resume_cookie_scriptable = true,
            ResumeCareless::TokenInLocation => f.resume_token_in_location = true,
            ResumeCareless::Cacheable => f.resume_cacheable = true,
        }
    }
    if let Some(rate) = args.traffic.traffic {
        let t = &args.traffic;
        let flag = broker_ops::contracts::DEFAULT_FLAG;
        opts.traffic = Some(broker_ops::sandbox::traffic::TrafficOptions {
            rate_per_min: rate,
            turns: t.traffic_turns,
            think: t.traffic_think,
            flag_refresh: t.flag_refresh,
            poll_interval: t.traffic_poll,
            dashboard_share: t.traffic_dashboard,
            ignore_flag: t.ignore_flag,
            flag: flag.to_string(),
            kill_switch: broker_ops::rollout::switch::kill_switch(&ctx.config, flag),
            reply_timeout: ctx.config.sla.reply_timeout.value,
        });
    }
    let sandbox = Sandbox::start(opts).await?;
    let summary = sandbox.summary();
    let mut out = std::io::stdout().lock();
    match ctx.format {
        Format::Json | Format::Ndjson => crate::print_json(&mut out, &summary.json(), ctx.format)?,
        _ => {
            writeln!(out, "{}", summary.exports())?;
            out.flush()?;
            eprintln!("{}", summary.banner());
        }
    }
    drop(out);
    crate::wait_for_shutdown().await;
    eprintln!("broker-ops sandbox: stopping");
    sandbox.shutdown().await;
    Ok(Outcome::Done)
}
