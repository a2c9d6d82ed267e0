//! `broker-ops events replay`: the mirror as a timeline on stdout.

use std::io::Write;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use secrecy::ExposeSecret;

use broker_ops::contracts::Names;
use broker_ops::duration::parse_time;
use broker_ops::exit::Exit;
use broker_ops::replay::source::{PostgresSource, RedisSource};
use broker_ops::replay::{Selection, Source, timeline};

use crate::Ctx;

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// What happened in a conversation: mirrored events as a timeline (table) or NDJSON.
    Replay(ReplayArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Store {
    Redis,
    Postgres,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["conversations", "all"])))]
pub struct ReplayArgs {
    /// Read from this mirror (default: Redis for windows inside the last 24 h, else Postgres).
    #[arg(long, value_enum)]
    pub from: Option<Store>,
    /// Conversation id (repeatable).
    #[arg(long = "conversation", value_name = "ID")]
    pub conversations: Vec<String>,
    /// Every conversation (Redis: the active set).
    #[arg(long)]
    pub all: bool,
    /// Start of the window (RFC 3339 or relative like -2h).
    #[arg(long, default_value = "-24h")]
    pub since: String,
    /// End of the window (RFC 3339, relative, or now).
    #[arg(long, default_value = "now")]
    pub until: String,
    /// Only events whose name matches this glob (e.g. 'message:*').
    #[arg(long, value_name = "GLOB")]
    pub name: Option<String>,
    /// Events read per page.
    #[arg(long, default_value_t = 1000)]
    pub page_size: usize,
}

pub async fn run(cmd: EventsCommand, ctx: &Ctx) -> anyhow::Result<i32> {
    match cmd {
        EventsCommand::Replay(a) => replay(a, ctx).await,
    }
}

async fn replay(a: ReplayArgs, ctx: &Ctx) -> anyhow::Result<i32> {
    let c = &ctx.config;
    let now = chrono::Utc::now();
    let since = parse_time(&a.since, now).map_err(anyhow::Error::msg).context("--since")?;
    let until = parse_time(&a.until, now).map_err(anyhow::Error::msg).context("--until")?;
    if since >= until {
        bail!("--since ({since}) must be before --until ({until})");
    }
    let name = a.name.as_deref().map(glob::Pattern::new).transpose().context("--name is not a valid glob")?;
    let sel = Selection { conversations: a.conversations.clone(), since, until, name, page_size: a.page_size.max(1) };
    let from =
        a.from.unwrap_or(if now - since <= chrono::Duration::hours(24) { Store::Redis } else { Store::Postgres });
    let mut source = match from {
        Store::Redis => {
            let u = c.require("REDIS_URL", &c.redis_url)?.value.expose_secret().to_string();
            let conn = broker_ops::mirror::redis::connect(&u, c.timeout.value).await?;
            let prefix = c.layers().plain("REDIS_KEY_PREFIX").ok().flatten().map(|s| s.value).unwrap_or_default();
            Source::Redis(
                RedisSource::new(conn, broker_ops::redact::url(&u), Names::with_redis_prefix(prefix), sel).await?,
            )
        }
        Store::Postgres => {
            let u = c.require("DATABASE_URL", &c.database_url)?.value.expose_secret().to_string();
            let pool = broker_ops::mirror::postgres::connect(&u, c.timeout.value).await?;
            Source::Postgres(PostgresSource::new(pool, broker_ops::redact::url(&u), sel))
        }
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let summary = timeline::write(&mut source, ctx.format, &mut out).await?;
    out.flush()?;
    let store = match from {
        Store::Redis => "Redis",
        Store::Postgres => "Postgres",
    };
    if summary.events == 0 {
        eprintln!(
            "no events in {store} for {} in this window",
            if a.all {
                "any conversation".to_string()
            } else {
                format!("conversation(s) {}", a.conversations.join(", "))
            }
        );
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
