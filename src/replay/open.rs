//! Turning a replay request into a connected source, target and checkpoint.

use std::path::PathBuf;

use chrono::{DateTime, Utc};

use super::source::{PostgresSource, RedisSource};
use super::{
    AblyOptions, AblyTarget, Checkpoint, Cursor, Order, PostgresTarget, RedisTarget, ReplayError, Selection, Source,
    Target,
};
use crate::config::{Config, ConfigError};
use crate::redis_handle::Redis;
use crate::store::MirrorError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    Redis,
    Postgres,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum To {
    Stdout,
    Ably,
    Redis,
    Postgres,
}

/// A replay as asked for.
#[derive(Debug, Clone)]
pub struct Request {
    pub from: Option<Store>,
    pub to: To,
    pub selection: Selection,
    pub ably: AblyOptions,
    /// `--to ably`: which events are re-sent.
    pub events: super::events::Events,
    pub checkpoint: Option<PathBuf>,
    /// The arguments as typed (without secrets): a checkpoint only resumes the same replay.
    pub arguments: String,
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Replay(#[from] ReplayError),
    #[error("{0}")]
    Usage(String),
}

impl crate::exit::Classified for OpenError {
    fn kind(&self) -> crate::exit::ErrorKind {
        match self {
            OpenError::Usage(_) => crate::exit::ErrorKind::Usage,
            _ => crate::exit::ErrorKind::CouldNotRun,
        }
    }
}

impl From<crate::store::MirrorError> for OpenError {
    fn from(e: crate::store::MirrorError) -> Self {
        OpenError::Replay(e.into())
    }
}

pub struct Opened {
    pub from: Store,
    pub source: Source,
    /// None for stdout.
    pub target: Option<Target>,
    pub checkpoint: Checkpoint,
    pub resumed: bool,
}

/// Redis for windows that start inside the stream lifetime (24 h), else Postgres; never the
/// store that is being backfilled.
pub fn default_from(to: To, since: DateTime<Utc>, now: DateTime<Utc>) -> Store {
    match to {
        To::Redis => Store::Postgres,
        To::Postgres => Store::Redis,
        // A minute's grace: `--since -24h` resolved a moment before `now` is still "the last 24 h".
        _ if now - since <= chrono::Duration::hours(24) + chrono::Duration::minutes(1) => Store::Redis,
        _ => Store::Postgres,
    }
}

pub async fn open(config: &Config, req: Request) -> Result<Opened, OpenError> {
    let mut sel = req.selection.clone();
    let (checkpoint, resumed) = match &req.checkpoint {
        Some(path) => Checkpoint::open(path, &req.arguments, sel.since, sel.until).map_err(ReplayError::from)?,
        None => (Checkpoint::ephemeral(&req.arguments, sel.since, sel.until), false),
    };
    // A resumed replay reads the window it started with (`--since -1h` is fixed at the start).
    sel.since = checkpoint.since;
    sel.until = checkpoint.until;
    let from = req.from.unwrap_or_else(|| default_from(req.to, sel.since, Utc::now()));
    // Canaries are test traffic of the pipeline, not events: left out unless their conversation
    // is named.
    let canary = config.contracts.canary_conversation();
    if !sel.conversations.contains(&canary) {
        sel.skip_events.push(config.contracts.canary_event.clone());
    }
    // Re-sending to Ably: the messages customers missed, unless asked for more.
    if req.to == To::Ably {
        sel.only = req.events.names(&config.contracts);
        sel.skip_copies = true;
        let c = &config.contracts;
        sel.skip_events.extend(crate::contracts::Extra::ALL.map(|e| c.extra_name(e).to_string()));
    }
    // Writing Redis streams needs `data` as text: read it so, never parsed.
    if req.to == To::Redis {
        sel.raw = true;
    }
    if matches!((from, req.to), (Store::Redis, To::Redis) | (Store::Postgres, To::Postgres)) {
        return Err(OpenError::Usage(
            "--from and --to name the same store: backfill copies one mirror into the other".into(),
        ));
    }
    let t = config.timeout.value;
    let contracts = config.contracts.clone();
    let redis = || async {
        let url = config.require("REDIS_URL", &config.redis_url)?;
        Ok::<_, OpenError>(Redis::of_setting(config, url).await.map_err(MirrorError::from)?)
    };
    let pg = || async {
        let crate::store::postgres::Pg { pool, addr } = crate::store::postgres::Pg::required(config).await?;
        Ok::<_, OpenError>((pool, addr))
    };
    let at: &Cursor = &checkpoint.cursor;
    let source = match from {
        Store::Redis => Source::Redis(Box::new(RedisSource::new(redis().await?, contracts.clone(), sel, at).await?)),
        Store::Postgres => {
            let (pool, addr) = pg().await?;
            let order = if req.to == To::Redis { Order::Conversation } else { Order::Time };
            let table = contracts.table.clone();
            Source::Postgres(Box::new(PostgresSource::new(pool, addr, table, sel, order, at)))
        }
    };
    let dry = req.ably.dry_run;
    let target = match req.to {
        To::Stdout => None,
        To::Ably => {
            let key = config.require("ABLY_API_KEY", &config.ably_api_key)?.value.clone();
            let client = crate::ably::AblyClient::new(config.ably_rest_url.value.clone(), Some(key), t)
                .map_err(ReplayError::from)?;
            Some(Target::Ably(AblyTarget::new(client, req.ably.clone())))
        }
        To::Redis => Some(Target::Redis(Box::new(RedisTarget::bulk(redis().await?, contracts, dry).await?))),
        To::Postgres => {
            let (pool, addr) = pg().await?;
            let table = contracts.table.clone();
            Some(Target::Postgres(PostgresTarget::new(pool, addr, table, dry).await?))
        }
    };
    Ok(Opened { from, source, target, checkpoint, resumed })
}
