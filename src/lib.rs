//! broker-ops: the library behind the `broker-ops` binary.
//!
//! The binary (`commands/`) parses arguments, makes one call into this library and renders the
//! result. The library never prints, never exits and never parses argv, so every capability can
//! be driven in-process by tests and benchmarks.
//!
//! Module map, by layer (each imports only its own layer or below; docs/architecture.md lists
//! the same and `tests/integration/layering.rs` holds the code to it):
//!
//! 1. foundations: [`compare`] (the one expression language of limits), [`duration`], [`exit`]
//!    (outcomes, kinds of error, the one exit-code policy), [`output`] (formats and `Render`),
//!    [`redact`], [`fsutil`] (atomic files), [`retry`], [`histogram`] and [`chart`] (shared by the
//!    smoke and the report), [`page`] (self-contained HTML pages), [`layers`] and [`settings`] (where settings are read from), [`event`]
//!    (the mirrored event), [`tls`] (the trust policy);
//! 2. configuration and contracts: [`contracts`] (the names shared with the chat system, every key
//!    and SQL statement built from them), [`config`] (every setting with its source), [`actor`]
//!    (who runs a change, for the audits);
//! 3. clients and stores: [`http`], [`ably`], [`chatwoot`], [`redis_handle`] (the one Redis
//!    handle), [`smtp`], [`store`] (the one Postgres handle, the mirror's stores), [`webhook`]
//!    (Ably's batched body and signature), [`queue`] (BullMQ's layout and counts);
//! 4. capabilities: [`token`], [`alert`], [`probe`] (`ably health`, `ably backlog`), [`mirror`]
//!    (migrate, watch, canary, the webhook route check), [`replay`], [`doctor`], [`sandbox`],
//!    [`sla`] (smoke and merge), [`analytics`] (`sla report`), [`rollout`];
//! 5. composition: [`monitor`] (every probe swept, rules, incidents through `alert`).

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
pub mod page;
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
