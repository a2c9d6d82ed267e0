//! broker-ops: the library behind the `broker-ops` binary.
//!
//! The binary (`commands/`) parses arguments, makes one call into this library and renders the
//! result. The library never prints, never exits and never parses argv, so every capability can
//! be driven in-process by tests and benchmarks.
//!
//! Module map:
//! - [`config`]: settings from flags, environment, `NAME_FILE` secrets and a TOML file, with the
//!   place each was read from;
//! - [`contracts`]: the names shared with the chat system (channel, events, reply field, Redis
//!   keys, the Postgres table, token claims), configurable, and every key and SQL statement
//!   built from them;
//! - [`exit`]: the process exit codes, in one place;
//! - [`output`]: output formats and renderers generic over `Write`;
//! - [`http`]: the one way this crate builds HTTP clients (TLS provider, time-outs);
//! - [`ably`], [`chatwoot`]: clients for the two services the tool cannot run itself;
//! - [`redis_handle`]: the one Redis connection type (address shown redacted, key prefix);
//! - [`smtp`]: the one way mail is sent, every phase bounded;
//! - [`mirror`], [`queue`]: the Redis/Postgres event mirror (and `db migrate`) and the BullMQ
//!   key layout;
//! - [`probe`]: probe checks, rules and renderings, and the probes (`ably health`, `ably backlog`);
//! - [`sla`], [`replay`], [`token`], [`alert`]: the capabilities behind the commands;
//! - [`rollout`]: the `ENABLE_ABLY_REALTIME` rollout (flags, Unleash bucketing, audit);
//! - [`sandbox`]: a local stand-in for Chatwoot, Ably and the AI worker;
//! - [`webhook`]: Ably's batched webhook body and its signature;
//! - [`doctor`]: configuration check and reachability of every dependency.

pub mod ably;
pub mod actor;
pub mod alert;
pub mod analytics;
pub mod chart;
pub mod chatwoot;
pub mod compare;
pub mod config;
pub mod contracts;
pub mod doctor;
pub mod duration;
pub mod event;
pub mod exit;
pub mod fsutil;
pub mod histogram;
pub mod http;
pub mod layers;
pub mod mirror;
pub mod monitor;
pub mod output;
pub mod probe;
pub mod queue;
pub mod redact;
pub mod redis_handle;
pub mod replay;
pub mod retry;
pub mod rollout;
pub mod sandbox;
pub mod settings;
pub mod sla;
pub mod smtp;
pub mod store;
pub mod tls;
pub mod token;
pub mod webhook;

/// The version that goes into `Ably-Agent` and reports.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
