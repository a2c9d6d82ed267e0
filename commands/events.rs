//! `broker-ops events replay`: the mirror as a timeline on stdout, re-published to Ably, or
//! backfilled into the other mirror. Arguments in, one library call, the summary out.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};

use broker_ops::duration::parse_time;
use broker_ops::exit::Exit;
use broker_ops::replay::open::{self, OpenError, Request, Store as FromStore, To};
use broker_ops::replay::to_ably::MAX_RATE;
use broker_ops::replay::{AblyOptions, Selection, timeline};
use broker_ops::retry::RetryPolicy;

use crate::Ctx;

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Mirrored events: a timeline (stdout), re-published to Ably, or backfilled into the other mirror.
    Replay(ReplayArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Store {
    Redis,
    Postgres,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Target {
    Stdout,
    Ably,
    Redis,
    Postgres,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["conversations", "all"])))]
pub struct ReplayArgs {
    /// Read from this mirror (default: Redis for windows inside the last 24 h, else Postgres;
    /// the other mirror when backfilling).
    #[arg(long, value_enum)]
    pub from: Option<Store>,
    /// Where events go: a timeline on stdout, Ably (re-publish), or the other mirror (backfill).
    #[arg(long, value_enum, default_value = "stdout")]
    pub to: Target,
    /// Conversation id (repeatable).
    #[arg(long = "conversation", value_name = "ID")]
    pub conversations: Vec<String>,
    /// Every conversation (Redis: the active set).
    #[arg(long)]
    pub all: bool,
    /// Start of the window (RFC 3339 or relative like -2h).
    #[arg(long, default_value = "-24h", allow_hyphen_values = true)]
    pub since: String,
    /// End of the window (RFC 3339, relative, or now).
    #[arg(long, default_value = "now", allow_hyphen_values = true)]
    pub until: String,
    /// Only events whose name matches this glob (e.g. 'message:*').
    #[arg(long, value_name = "GLOB")]
    pub name: Option<String>,
    /// Events read per page; a checkpoint is written after every page [default: 1000; 10000
    /// with --to ably, so that a page spans many channels, which are paced side by side].
    #[arg(long, value_name = "N")]
    pub page_size: Option<usize>,
    /// --to ably: messages per second per channel (at most Ably's limit, 50).
    #[arg(long, default_value_t = MAX_RATE, value_parser = clap::value_parser!(u32).range(1..=MAX_RATE as i64))]
    pub rate: u32,
    /// --to ably: mark re-published messages (extras.headers.replayed = "true", originalId, originalTimestamp).
    #[arg(long)]
    pub extras: bool,
    /// Read everything and count what would be written; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask before writing more than --confirm-over events.
    #[arg(long)]
    pub yes: bool,
    /// Ask (or, without a terminal, require --yes) above this many events.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub confirm_over: u64,
    /// Record progress here after every acknowledged page; the same command resumes from it.
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Option<PathBuf>,
}

pub async fn run(cmd: EventsCommand, ctx: &Ctx) -> anyhow::Result<i32> {
    match cmd {
        EventsCommand::Replay(a) => replay(a, ctx).await,
    }
}

fn request(a: &ReplayArgs, ctx: &Ctx) -> anyhow::Result<Request> {
    let now = chrono::Utc::now();
    let since = parse_time(&a.since, now).map_err(anyhow::Error::msg).context("--since")?;
    let until = parse_time(&a.until, now).map_err(anyhow::Error::msg).context("--until")?;
    if since >= until {
        bail!("--since ({since}) must be before --until ({until})");
    }
    let name = a.name.as_deref().map(glob::Pattern::new).transpose().context("--name is not a valid glob")?;
    let to = match a.to {
        Target::Stdout => To::Stdout,
        Target::Ably => To::Ably,
        Target::Redis => To::Redis,
        Target::Postgres => To::Postgres,
    };
    if a.checkpoint.is_some() && to == To::Stdout {
        bail!("--checkpoint needs --to ably, redis or postgres");
    }
    let from = a.from.map(|f| match f {
        Store::Redis => FromStore::Redis,
        Store::Postgres => FromStore::Postgres,
    });
    // What identifies this replay for its checkpoint: everything that changes what is read or
    // written (not --page-size, --yes or --dry-run).
    let arguments = format!(
        "from={:?} to={:?} conversations={:?} all={} since={} until={} name={:?} rate={} extras={}",
        a.from, a.to, a.conversations, a.all, a.since, a.until, a.name, a.rate, a.extras
    );
    let timeout = ctx.config.timeout.value;
    Ok(Request {
        from,
        to,
        selection: Selection {
            conversations: a.conversations.clone(),
            since,
            until,
            name,
            page_size: a.page_size.unwrap_or(if to == To::Ably { 10_000 } else { 1000 }).max(1),
            raw: to == To::Stdout && ctx.format != broker_ops::output::Format::Table,
        },
        ably: AblyOptions {
            rate: a.rate,
            extras: a.extras,
            dry_run: a.dry_run,
            retry: RetryPolicy {
                budget: (timeout * 6).max(std::time::Duration::from_secs(1)),
                attempts: 6,
                ..RetryPolicy::default()
            },
        },
        checkpoint: a.checkpoint.clone(),
        arguments,
    })
}

async fn replay(a: ReplayArgs, ctx: &Ctx) -> anyhow::Result<i32> {
    let req = request(&a, ctx)?;
    let opened = match open::open(&ctx.config, req).await {
        Ok(o) => o,
        Err(OpenError::Usage(m)) => {
            eprintln!("error: {m}");
            return Ok(Exit::Usage.code());
        }
        Err(e) => return Err(e.into()),
    };
    let open::Opened { from, mut source, target, mut checkpoint, resumed } = opened;
    let Some(mut target) = target else {
        return timeline_to_stdout(&a, ctx, source, from).await;
    };
    let left = source.estimate().await?;
    if !a.dry_run && !checkpoint.finished && left > a.confirm_over && !a.yes && !confirmed(left, target.name())? {
        eprintln!(
            "error: about {left} events would be written to {}: pass --yes (or --dry-run to see what would be written)",
            target.name()
        );
        return Ok(Exit::Usage.code());
    }
    let bar = progress_bar(left + checkpoint.counts.read, checkpoint.counts.read);
    let mut on_progress = |c: &broker_ops::replay::Counts| bar.set_position(c.read);
    let cp_path = checkpoint.path().map(|p| p.display().to_string());
    let result = broker_ops::replay::run(source, &mut target, &mut checkpoint, &mut on_progress).await;
    bar.finish_and_clear();
    let mut summary = match result {
        Ok(s) => s,
        Err(e) => {
            let kept = cp_path
                .map(|p| format!("; checkpoint {p} kept: run the same command again to resume"))
                .unwrap_or_default();
            return Err(anyhow::Error::new(e).context(format!("replay to {} stopped{kept}", target.name())));
        }
    };
    summary.dry_run = a.dry_run;
    summary.resumed = resumed;
    summary.checkpoint = cp_path;
    ctx.render(&summary)?;
    Ok(if summary.counts.failed > 0 { Exit::Failed } else { Exit::Ok }.code())
}

/// Asks on the terminal; without one, the answer is no.
fn confirmed(n: u64, target: &str) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        return Ok(false);
    }
    eprint!("Write about {n} events to {target}? [y/N] ");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes"))
}

fn progress_bar(total: u64, done: u64) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    // The template is a constant known to parse.
    let style = indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} events  {per_sec}  ETA {eta}")
        .expect("constant progress template");
    bar.set_style(style);
    bar.set_position(done);
    bar
}

async fn timeline_to_stdout(
    a: &ReplayArgs,
    ctx: &Ctx,
    source: broker_ops::replay::Source,
    from: FromStore,
) -> anyhow::Result<i32> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let summary = timeline::write(source, ctx.format, &mut out).await?;
    out.flush()?;
    let store = match from {
        FromStore::Redis => "Redis",
        FromStore::Postgres => "Postgres",
    };
    if summary.events == 0 {
        let what = if a.all {
            "any conversation".to_string()
        } else {
            format!("conversation(s) {}", a.conversations.join(", "))
        };
        eprintln!("no events in {store} for {what} in this window");
    } else {
        eprintln!("{} events from {store}", summary.events);
    }
    if summary.malformed > 0 {
        eprintln!("{} malformed entries skipped:", summary.malformed);
        for m in &summary.malformed_examples {
            eprintln!("  {}: {}", m.position, m.reason);
        }
    }
    Ok(Exit::Ok.code())
}
