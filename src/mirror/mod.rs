//! The event mirror: every Ably message of a conversation, in a Redis stream (24 h) and a
//! Postgres table (for good). Writes are idempotent on the Ably message id. The stores
//! themselves (the Postgres handle, the Redis stream, the stores a run opens) live below, in
//! [`crate::store`], for every capability to share.

pub mod canary;
pub mod migrate;
pub mod watch;
pub mod webhook_route;

pub use crate::event::MirroredEvent;
