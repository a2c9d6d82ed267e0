//! The arguments of `broker-ops events`: the command tree and what each flag means.

use std::num::NonZeroUsize;
use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

use broker_ops::replay::events::Events;
use broker_ops::replay::to_ably::MAX_RATE;

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
    /// with --to ably, so that a page spans many channels, which are paced side by side; 5000
    /// with --to redis, where each page is one transaction].
    #[arg(long, value_name = "N")]
    pub page_size: Option<NonZeroUsize>,
    /// --to ably: messages per second per channel (at most Ably's limit, 50).
    #[arg(long, default_value_t = MAX_RATE, value_parser = clap::value_parser!(u32).range(1..=MAX_RATE as i64))]
    pub rate: u32,
    /// --to ably: which events to re-send: `messages` (the customer's and the AI's), `all`, or
    /// names separated by commas. Every copy is marked (extras.headers: replayed, originalId,
    /// originalTimestamp).
    #[arg(long, value_name = "LIST", default_value = "messages", value_parser = Events::parse)]
    pub events: Events,
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
