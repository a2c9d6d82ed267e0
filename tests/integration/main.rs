//! Integration tests: the sandbox over real HTTP, the mirrors in the real Redis and Postgres
//! of this machine, and the `broker-ops` binary. One test binary, split into modules.

mod support;

mod ably_backlog;
mod ably_client;
mod ably_health;
mod alert;
mod backfill_plain;
mod cli;
mod contracts;
mod doctor;
mod drills;
mod events_replay;
mod events_targets;
mod exit_codes;
mod faults;
mod hardening;
mod layering;
mod mirror;
mod monitor;
mod pages;
mod pipeline;
mod rollout;
mod sandbox_ably;
mod sandbox_chatwoot;
mod sandbox_sse;
mod sandbox_worker;
mod sla_report;
mod sla_smoke;
mod states;
mod tls;
mod token;
mod traffic;
