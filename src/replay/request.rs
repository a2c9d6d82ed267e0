//! A replay as an operator asks for it, turned into the [`Request`] the opener connects: the
//! window resolved, the defaults applied, and the identity a checkpoint is tied to.

use std::path::PathBuf;

use chrono::{DateTime, Utc};

use super::events::Events;
use super::open::{Request, Store, To};
use super::{AblyOptions, Selection};
use crate::retry::RetryPolicy;

/// What was asked, as typed (times still text, so that a checkpoint names `-1h` and not the
/// moment it meant).
#[derive(Debug, Clone)]
pub struct Ask {
    pub from: Option<Store>,
    pub to: To,
    pub conversations: Vec<String>,
    pub all: bool,
    pub since: String,
    pub until: String,
    pub name: Option<String>,
    pub page_size: Option<usize>,
    pub rate: u32,
    /// `--to ably`: which events to re-send (`--events`).
    pub events: Events,
    pub dry_run: bool,
    pub checkpoint: Option<PathBuf>,
    /// The events' data kept as text (NDJSON and JSON output).
    pub raw: bool,
}

impl Store {
    pub fn name(self) -> &'static str {
        match self {
            Store::Redis => "redis",
            Store::Postgres => "postgres",
        }
    }
}

impl To {
    pub fn name(self) -> &'static str {
        match self {
            To::Stdout => "stdout",
            To::Ably => "ably",
            To::Redis => "redis",
            To::Postgres => "postgres",
        }
    }
}

impl Ask {
    /// What identifies this replay for its checkpoint: everything that changes what is read or
    /// written (not the page size, `--yes` or `--dry-run`).
    pub fn identity(&self) -> String {
        format!(
            "from={} to={} conversations={} all={} since={} until={} name={} rate={} events={}",
            self.from.map_or("default", Store::name),
            self.to.name(),
            self.conversations.join(","),
            self.all,
            self.since,
            self.until,
            self.name.as_deref().unwrap_or("*"),
            self.rate,
            self.events
        )
    }

    /// The request, with times resolved against `now`. Errors are usage errors.
    pub fn request(&self, now: DateTime<Utc>, timeout: std::time::Duration) -> Result<Request, String> {
        let since = crate::duration::parse_time(&self.since, now).map_err(|e| format!("--since: {e}"))?;
        let until = crate::duration::parse_time(&self.until, now).map_err(|e| format!("--until: {e}"))?;
        if since >= until {
            return Err(format!("--since ({since}) must be before --until ({until})"));
        }
        let name = match self.name.as_deref().map(glob::Pattern::new).transpose() {
            Ok(n) => n,
            Err(e) => return Err(format!("--name is not a valid glob: {e}")),
        };
        if self.checkpoint.is_some() && self.to == To::Stdout {
            return Err("--checkpoint needs --to ably, redis or postgres".into());
        }
        // A backfill into Redis pays a round trip and a transaction per page: at 1,000 events
        // Redis sat idle between pages for 15 % of the run (docs/performance.md).
        let page_size = self.page_size.unwrap_or(match self.to {
            To::Ably => 10_000,
            To::Redis => 5_000,
            _ => 1000,
        });
        Ok(Request {
            from: self.from,
            to: self.to,
            selection: Selection {
                conversations: self.conversations.clone(),
                since,
                until,
                name,
                skip_events: Vec::new(),
                only: None,
                skip_copies: false,
                page_size,
                raw: self.raw && self.to == To::Stdout,
            },
            events: self.events.clone(),
            ably: AblyOptions {
                rate: self.rate,
                dry_run: self.dry_run,
                retry: RetryPolicy {
                    budget: (timeout * 6).max(std::time::Duration::from_secs(1)),
                    attempts: 6,
                    ..RetryPolicy::default()
                },
            },
            checkpoint: self.checkpoint.clone(),
            arguments: self.identity(),
        })
    }
}
