//! BullMQ's Redis key layout (docs/contracts.md, "BullMQ"). The
//! sandbox writes jobs in this layout so that backlog probes read real keys; broker-ops itself
//! only ever reads a production queue.

/// Keys of one queue: `{prefix}:{queue}:{type}`.
#[derive(Debug, Clone)]
pub struct QueueKeys {
    pub prefix: String,
    pub queue: String,
}

impl QueueKeys {
    pub fn new(prefix: impl Into<String>, queue: impl Into<String>) -> Self {
        QueueKeys { prefix: prefix.into(), queue: queue.into() }
    }

    /// `bull:broker:wait`, `bull:broker:active`, ...
    pub fn key(&self, kind: &str) -> String {
        format!("{}:{}:{}", self.prefix, self.queue, kind)
    }

    /// The job hash `bull:broker:<id>`.
    pub fn job(&self, id: &str) -> String {
        self.key(id)
    }
}

pub mod counts;
pub mod failed;
