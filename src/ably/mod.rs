//! Ably: the REST client every command uses, and the wire types it shares with the sandbox.

mod client;
pub mod link;
pub mod realtime;
pub mod types;

pub use client::{AblyClient, AblyError, PROTOCOL_VERSION};
pub use types::{ErrorInfo, Message};
