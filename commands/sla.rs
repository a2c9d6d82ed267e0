//! `broker-ops sla smoke` and `sla merge`: arguments in, one library call, reports out.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

use broker_ops::chatwoot::ChatwootClient;
use broker_ops::contracts::Names;
use broker_ops::duration::parse_duration;
use broker_ops::exit::Exit;
use broker_ops::sandbox::Sandbox;
use broker_ops::sla::{self, Scenario, Schedule, SmokeReport, Target, Threshold, Transport};

use crate::Ctx;
use crate::sandbox::Behaviour;

#[derive(Debug, Subcommand)]
pub enum SlaCommand {
    /// Run smoke chats end to end and judge the AI's reply time against thresholds.
    Smoke(Box<SmokeArgs>),
    /// Combine the histogram logs of several runs (--histogram-out) into one exact result.
    Merge(MergeArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum TransportArg {
    /// Ably SSE on the conversation's channel.
    Sse,
    /// Poll Chatwoot's messages (the web app's fallback).
    Poll,
}

#[derive(Debug, Args)]
pub struct Outputs {
    /// Threshold (repeatable): p50|p90|p95|p99|max < DUR, error_rate < N%, violations==0.
    #[arg(long = "threshold", value_name = "EXPR", value_parser = str::parse::<Threshold>)]
    pub thresholds: Vec<Threshold>,
    /// Write a JUnit XML file (one test case per threshold).
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Directory for the Markdown and JSON report.
    #[arg(long, value_name = "DIR", default_value = "validation-reports")]
    pub report_dir: PathBuf,
    /// Write no report files.
    #[arg(long)]
    pub no_report: bool,
}

#[derive(Debug, Args)]
pub struct SmokeArgs {
    /// Start the built-in sandbox on a free port and run against it.
    #[arg(long)]
    pub sandbox: bool,
    /// How many chats.
    #[arg(long, default_value_t = 20)]
    pub chats: usize,
    /// Closed loop: at most N chats at once.
    #[arg(long, default_value_t = 10, conflicts_with = "rate")]
    pub concurrency: usize,
    /// Open loop: start R chats per second (e.g. 20/s), counting latency from each intended start.
    #[arg(long, value_name = "R/s", value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// Open loop: the most chats in flight at once.
    #[arg(long, default_value_t = 10_000, requires = "rate")]
    pub max_in_flight: usize,
    /// Customer messages per chat.
    #[arg(long, default_value_t = 1)]
    pub turns: usize,
    /// YAML or JSON file: a list of chats, each a list of customer messages.
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,
    /// How the reply is awaited.
    #[arg(long, value_enum, default_value = "sse")]
    pub transport: TransportArg,
    /// A chat without a reply after this long is a failure.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub reply_timeout: Duration,
    /// Interval of the poll transport.
    #[arg(long, default_value = "250ms", value_parser = parse_duration)]
    pub poll_interval: Duration,
    /// Stop early once a threshold can no longer pass.
    #[arg(long)]
    pub abort_on_fail: bool,
    /// Write the raw HDR histograms (HdrHistogram log format) for `sla merge`.
    #[arg(long, value_name = "FILE")]
    pub histogram_out: Option<PathBuf>,
    /// Do not resolve and label the smoke conversations afterwards.
    #[arg(long)]
    pub no_cleanup: bool,
    #[command(flatten)]
    pub outputs: Outputs,
    #[command(flatten, next_help_heading = "Sandbox (with --sandbox)")]
    pub behaviour: Behaviour,
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Histogram logs written by `sla smoke --histogram-out`.
    #[arg(required = true, value_name = "FILES")]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub outputs: Outputs,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let n = s.trim().trim_end_matches("/s");
    match n.parse::<f64>() {
        Ok(r) if r > 0.0 && r.is_finite() => Ok(r),
        _ => Err(format!("invalid rate {s:?}: expected chats per second, e.g. 20/s")),
    }
}

pub async fn run(cmd: SlaCommand, ctx: &Ctx) -> anyhow::Result<i32> {
    match cmd {
        SlaCommand::Smoke(args) => smoke(*args, ctx).await,
        SlaCommand::Merge(args) => merge(args, ctx),
    }
}

/// The target from the configuration (Chatwoot required, Ably optional).
fn configured_target(ctx: &Ctx) -> anyhow::Result<Target> {
    let c = &ctx.config;
    let base = c.require("CHATWOOT_BASE_URL", &c.chatwoot_base_url)?;
    let inbox = c.require("CHATWOOT_INBOX_IDENTIFIER", &c.chatwoot_inbox_identifier)?;
    let token = c.chatwoot_api_token.as_ref().map(|s| s.value.clone());
    let account = c.chatwoot_account_id.as_ref().map(|s| s.value);
    let can_clean_up = token.is_some() && account.is_some();
    let chatwoot = ChatwootClient::new(base.value.clone(), Some(inbox.value.clone()), token, account, c.timeout.value);
    let ably = c.ably_api_key.as_ref().map(|k| (c.ably_rest_url.value.clone(), k.value.clone()));
    Ok(Target { chatwoot, label: base.value.to_string(), ably, can_clean_up })
}

fn sandbox_target(sb: &Sandbox, ctx: &Ctx) -> anyhow::Result<Target> {
    let env: std::collections::HashMap<_, _> = sb.env().into_iter().collect();
    let base = url::Url::parse(&sb.base_url())?;
    let key = broker_ops::config::AblyKey::parse(&env["ABLY_API_KEY"]).map_err(anyhow::Error::msg)?;
    let chatwoot = ChatwootClient::new(
        base.clone(),
        Some(env["CHATWOOT_INBOX_IDENTIFIER"].clone()),
        Some(env["CHATWOOT_API_TOKEN"].clone().into()),
        env["CHATWOOT_ACCOUNT_ID"].parse().ok(),
        ctx.config.timeout.value,
    );
    Ok(Target { chatwoot, label: format!("sandbox {base}"), ably: Some((base, key)), can_clean_up: true })
}

/// Cancels the run on Ctrl-C so that the partial result is still reported.
fn cancel_on_ctrl_c() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        crate::wait_for_shutdown().await;
        eprintln!("interrupted: finishing with the partial result");
        t.cancel();
    });
    token
}

fn progress_bar(planned: usize) -> Option<(tokio::sync::watch::Sender<sla::Progress>, tokio::task::JoinHandle<()>)> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let (tx, mut rx) = tokio::sync::watch::channel(sla::Progress::default());
    let bar = indicatif::ProgressBar::new(planned as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} chats {msg} [{elapsed_precise}, ETA {eta}]")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let task = tokio::spawn(async move {
        while rx.changed().await.is_ok() {
            let p = *rx.borrow();
            bar.set_position(p.done as u64);
            bar.set_message(format!("{} failed, p95 {:.0}ms", p.failed, p.p95_ms));
        }
        bar.finish_and_clear();
    });
    Some((tx, task))
}

async fn smoke(args: SmokeArgs, ctx: &Ctx) -> anyhow::Result<i32> {
    let scenario = match &args.scenario {
        Some(p) => Scenario::load(p)?,
        None => Scenario::default(),
    };
    let sandbox = if args.sandbox {
        Some(Sandbox::start(args.behaviour.options(&ctx.config).with_free_port()).await?)
    } else {
        None
    };
    let target = match &sandbox {
        Some(sb) => sandbox_target(sb, ctx)?,
        None => configured_target(ctx)?,
    };
    let schedule = match args.rate {
        Some(rate_per_s) => Schedule::Open { rate_per_s, max_in_flight: args.max_in_flight },
        None => Schedule::Closed { concurrency: args.concurrency },
    };
    let thresholds =
        if args.outputs.thresholds.is_empty() { sla::threshold::defaults() } else { args.outputs.thresholds.clone() };
    let opts = sla::SmokeOptions {
        cleanup_allowed: !args.no_cleanup,
        target,
        chats: args.chats,
        schedule,
        turns: args.turns,
        scenario,
        transport: match args.transport {
            TransportArg::Sse => Transport::Sse,
            TransportArg::Poll => Transport::Poll,
        },
        reply_timeout: args.reply_timeout,
        poll_interval: args.poll_interval,
        thresholds,
        abort_on_fail: args.abort_on_fail,
        timeout: ctx.config.timeout.value,
        names: Names::default(),
        command: ctx.command_line(),
    };
    let cancel = cancel_on_ctrl_c();
    let progress = progress_bar(args.chats);
    let report = sla::smoke(opts, cancel, progress.as_ref().map(|p| p.0.clone())).await?;
    if let Some((tx, task)) = progress {
        drop(tx);
        let _ = task.await;
    }
    if let Some(sb) = sandbox {
        sb.shutdown().await;
    }
    if let Some(path) = &args.histogram_out {
        sla::merge::write_log(path, &report)?;
    }
    let slug = if args.sandbox { "sandbox".to_string() } else { slug(&report.target) };
    finish(&report, &args.outputs, &slug, ctx)
}

fn merge(args: MergeArgs, ctx: &Ctx) -> anyhow::Result<i32> {
    let thresholds =
        if args.outputs.thresholds.is_empty() { sla::threshold::defaults() } else { args.outputs.thresholds.clone() };
    let report = sla::merge::merge(&args.files, &thresholds, ctx.command_line())?;
    finish(&report, &args.outputs, "merged", ctx)
}

/// Renders, writes the report files and the JUnit file, and picks the exit code.
fn finish(report: &SmokeReport, outputs: &Outputs, slug: &str, ctx: &Ctx) -> anyhow::Result<i32> {
    ctx.render(report)?;
    if let Some(path) = &outputs.junit {
        std::fs::write(path, report.junit()).with_context(|| format!("writing JUnit file {}", path.display()))?;
    }
    if !outputs.no_report {
        let written = write_report(report, &outputs.report_dir, slug)?;
        eprintln!("report: {}", written.display());
    }
    if report.chats.ok == 0
        && report.chats.total > 0
        && report.errors.iter().all(|e| e.kind.ends_with("connection error"))
    {
        bail!(
            "could not reach the target {}: every chat failed to connect ({})",
            report.target,
            report.errors[0].example
        );
    }
    Ok(if report.passed { Exit::Ok } else { Exit::Failed }.code())
}

fn slug(target: &str) -> String {
    let s: String = target
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '.' { c } else { '-' })
        .collect();
    s.trim_matches('-').to_string()
}

/// Writes `{dir}/{date}-{slug}.md` and `.json`; returns the Markdown path.
fn write_report(report: &SmokeReport, dir: &Path, slug: &str) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating report directory {}", dir.display()))?;
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let base = dir.join(format!("{stamp}-{slug}"));
    let md = base.with_extension("md");
    std::fs::write(&md, report.markdown()).with_context(|| format!("writing {}", md.display()))?;
    let json = base.with_extension("json");
    let mut f = std::fs::File::create(&json).with_context(|| format!("writing {}", json.display()))?;
    serde_json::to_writer_pretty(&mut f, &broker_ops::output::Render::json(report))?;
    writeln!(f)?;
    Ok(md)
}
