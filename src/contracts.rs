//! The names broker-ops shares with the chat system (DESIGN.md section 4, docs/contracts.md).
//!
//! They are data, not string literals scattered through the code, so that a deployment with
//! other names (or a test with its own key prefix) changes them in one place.

/// Event names the worker publishes on a conversation's channel.
pub mod events {
    pub const MESSAGE_USER: &str = "message:user";
    pub const MESSAGE_AI: &str = "message:ai";
    pub const SLA_WARNING: &str = "sla:warning";
    pub const SLA_VIOLATION: &str = "sla:violation";
}

/// Channel and mirror names. `{id}` stands for the conversation id.
#[derive(Debug, Clone)]
pub struct Names {
    /// Ably channel of a conversation, e.g. `conversation:{id}`.
    pub channel: String,
    /// Prefix put before every Redis key of the mirror and revocations (empty in production;
    /// tests use one of their own so that they never see each other's data).
    pub redis_prefix: String,
    /// Redis stream of a conversation's events, e.g. `chat:events:{id}`.
    pub stream: String,
    /// Sorted set of active conversations scored by last event time (ms).
    pub active_set: String,
    /// Postgres mirror table.
    pub table: String,
    /// Lifetime of a conversation's Redis stream after its last write.
    pub stream_ttl_secs: u64,
}

impl Default for Names {
    fn default() -> Self {
        Names {
            channel: "conversation:{id}".into(),
            redis_prefix: String::new(),
            stream: "chat:events:{id}".into(),
            active_set: "chat:conversations:active".into(),
            table: "chat_events".into(),
            stream_ttl_secs: 24 * 3600,
        }
    }
}

impl Names {
    pub fn with_redis_prefix(prefix: impl Into<String>) -> Self {
        Names { redis_prefix: prefix.into(), ..Names::default() }
    }

    pub fn channel_of(&self, conversation_id: &str) -> String {
        self.channel.replace("{id}", conversation_id)
    }

    /// The conversation id of a channel name, when the channel is a conversation's.
    pub fn conversation_of(&self, channel: &str) -> Option<String> {
        let (before, after) = self.channel.split_once("{id}")?;
        let id = channel.strip_prefix(before)?.strip_suffix(after)?;
        (!id.is_empty()).then(|| id.to_string())
    }

    pub fn stream_key(&self, conversation_id: &str) -> String {
        format!("{}{}", self.redis_prefix, self.stream.replace("{id}", conversation_id))
    }

    pub fn active_key(&self) -> String {
        format!("{}{}", self.redis_prefix, self.active_set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_round_trip() {
        let n = Names::default();
        assert_eq!(n.channel_of("4711"), "conversation:4711");
        assert_eq!(n.conversation_of("conversation:4711").as_deref(), Some("4711"));
        assert_eq!(n.conversation_of("other:4711"), None);
        assert_eq!(n.conversation_of("conversation:"), None);
        assert_eq!(Names::with_redis_prefix("t1:").stream_key("9"), "t1:chat:events:9");
    }
}
