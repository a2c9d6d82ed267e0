//! The names broker-ops shares with the chat system: the Ably channel of a conversation, the
//! four event names, how a reply points at the message it answers, the Redis keys and the
//! Postgres table of the mirror, and what a resume token must carry.
//!
//! The product plan never fixed these names, so they are configuration (the config file's
//! `[contracts]` table, or `BROKER_OPS_CONTRACT_<KEY>` in the environment) with today's values as
//! defaults. Every key, channel name and SQL statement is built here from them, and nowhere
//! else, so a deployment that chose other names changes them in one place (docs/contracts.md).

pub mod report_sql;
mod resolve;
pub mod rollout_sql;
pub mod sql;

use std::fmt;

use serde::Serialize;

use crate::layers::Source;

pub use resolve::{CONTRACT_KEYS, ContractsError, env_var, resolve};
pub use rollout_sql::{DEFAULT_FLAG, FlagTables};

/// A name with one `{id}` in it, e.g. `conversation:{id}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    before: String,
    after: String,
}

impl Pattern {
    /// Parses a pattern; it must hold `{id}` exactly once and no white space or control character.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("{text:?} has white space or a control character"));
        }
        let Some((before, after)) = text.split_once("{id}") else {
            return Err(format!("{text:?} has no {{id}} (where the conversation id goes)"));
        };
        if after.contains("{id}") {
            return Err(format!("{text:?} has {{id}} more than once"));
        }
        if before.is_empty() && after.is_empty() {
            return Err("the pattern is only {id}: it must name something around the id".into());
        }
        Ok(Pattern { before: before.into(), after: after.into() })
    }

    pub fn of(&self, id: &str) -> String {
        format!("{}{id}{}", self.before, self.after)
    }

    /// The id in a name made by this pattern.
    pub fn id_in<'a>(&self, name: &'a str) -> Option<&'a str> {
        let id = name.strip_prefix(&self.before)?.strip_suffix(&self.after)?;
        (!id.is_empty()).then_some(id)
    }

    /// A glob for Redis `SCAN MATCH` (`*` where the id goes, glob characters escaped).
    pub fn glob(&self, prefix: &str) -> String {
        format!("{}*{}", glob_escape(&format!("{prefix}{}", self.before)), glob_escape(&self.after))
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{{id}}{}", self.before, self.after)
    }
}

fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// How a `message:ai` is matched to the customer message it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyMatch {
    /// A field of the reply's data holds the customer message's id (default `replyTo`).
    Field(String),
    /// No such field: the first reply after the customer's message is taken as its answer.
    /// Weaker: two messages in quick succession can be paired wrongly; reports say so.
    FirstAfter,
}

impl ReplyMatch {
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        if t == "first-after" {
            return Ok(ReplyMatch::FirstAfter);
        }
        if t.is_empty() || !t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return Err(format!("{text:?} is neither \"first-after\" nor a field name (letters, digits, _ and -)"));
        }
        Ok(ReplyMatch::Field(t.to_string()))
    }

    /// The field of a reply's data naming the message it answers, when there is one.
    pub fn field(&self) -> Option<&str> {
        match self {
            ReplyMatch::Field(f) => Some(f),
            ReplyMatch::FirstAfter => None,
        }
    }
}

impl fmt::Display for ReplyMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplyMatch::Field(name) => f.write_str(name),
            ReplyMatch::FirstAfter => f.write_str("first-after"),
        }
    }
}

/// A Postgres `schema.table`, both valid unquoted identifiers; used quoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub schema: String,
    pub name: String,
}

/// Table names are kept short enough that `{name}_conversation_idx` still fits Postgres's
/// 63-byte identifiers (longer ones would be cut silently and could collide).
const MAX_TABLE_NAME: usize = 40;

impl Table {
    pub fn parse(text: &str) -> Result<Self, String> {
        let (schema, name) = match text.split_once('.') {
            Some((s, n)) => (s, n),
            None => ("public", text),
        };
        ident(schema, 63).map_err(|e| format!("schema {e}"))?;
        ident(name, MAX_TABLE_NAME).map_err(|e| format!("table {e}"))?;
        Ok(Table { schema: schema.into(), name: name.into() })
    }

    /// `"schema"."name"`, for SQL text.
    pub fn quoted(&self) -> String {
        format!("\"{}\".\"{}\"", self.schema, self.name)
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// An identifier Postgres takes without quoting: a letter or `_`, then letters, digits, `_`.
/// Only these are accepted, so that quoting never has to escape anything.
fn ident(s: &str, max: usize) -> Result<(), String> {
    let mut chars = s.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!("{s:?} is not a valid identifier (a letter or _, then letters, digits or _)"));
    }
    if s.len() > max {
        return Err(format!("{s:?} is longer than {max} characters"));
    }
    Ok(())
}

/// The type `conversationId` has in resume tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum IdType {
    /// A number when the id is all digits, else a string (what Chatwoot display ids give).
    AsGiven,
    String,
    Number,
}

impl IdType {
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.trim() {
            "as-given" => Ok(IdType::AsGiven),
            "string" => Ok(IdType::String),
            "number" => Ok(IdType::Number),
            other => Err(format!("{other:?} is not one of as-given, string, number")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            IdType::AsGiven => "as-given",
            IdType::String => "string",
            IdType::Number => "number",
        }
    }
}

/// What a resume token must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenContract {
    /// `iss`; `None`: not set when issuing, not checked when verifying.
    pub issuer: Option<String>,
    /// `aud`; `None` likewise.
    pub audience: Option<String>,
    /// Claims a token must have (beyond `iss` and `aud`, which follow the two settings above).
    pub required: Vec<String>,
    pub conversation_id: IdType,
}

/// The id `events replay --to ably` gives a re-sent copy: derived from the original, so Ably
/// delivers the first re-send and deduplicates a second one within its window, and so every
/// report can tell a copy from the customer's own event.
pub const REPLAY_ID_PREFIX: &str = "replay-";

/// The id of a re-sent copy of `original`.
pub fn replay_id(original: &str) -> String {
    format!("{REPLAY_ID_PREFIX}{original}")
}

/// Whether `id` is a re-sent copy.
pub fn is_replay_copy(id: &str) -> bool {
    id.starts_with(REPLAY_ID_PREFIX)
}

/// Where the app looks a revoked token id up (`contracts.revocation_key`, e.g.
/// `resume:revoked:{jti}`): the key around `{jti}`. Unset by default: revocation the app does
/// not check would be false assurance, so broker-ops neither writes nor reports it then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationKey {
    before: String,
    after: String,
}

impl RevocationKey {
    /// `""`: not configured; otherwise a Redis key with `{jti}` exactly once.
    pub fn parse(v: &str) -> Result<Option<RevocationKey>, String> {
        let v = v.trim();
        if v.is_empty() {
            return Ok(None);
        }
        match v.split_once("{jti}") {
            Some((before, after)) if !after.contains("{jti}") && !v.chars().any(char::is_whitespace) => {
                Ok(Some(RevocationKey { before: before.to_string(), after: after.to_string() }))
            }
            _ => Err(format!("{v:?} is not a Redis key with {{jti}} exactly once (e.g. resume:revoked:{{jti}})")),
        }
    }

    /// The key of `jti` under `redis_prefix`.
    pub fn key(&self, redis_prefix: &str, jti: &str) -> String {
        format!("{redis_prefix}{}{jti}{}", self.before, self.after)
    }

    /// `SCAN MATCH` glob of every revocation under `redis_prefix`.
    pub fn glob(&self, redis_prefix: &str) -> String {
        format!("{}*{}", glob_escape(&format!("{redis_prefix}{}", self.before)), glob_escape(&self.after))
    }

    /// The token id of a revocation key under `redis_prefix`.
    pub fn jti_of<'a>(&self, redis_prefix: &str, key: &'a str) -> &'a str {
        let head = redis_prefix.len() + self.before.len();
        key.get(head..key.len().saturating_sub(self.after.len())).unwrap_or(key)
    }
}

impl std::fmt::Display for RevocationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{{jti}}{}", self.before, self.after)
    }
}

/// The columns (and their Postgres types, as `udt_name`) that broker-ops reads and writes in
/// each table, so that `db migrate` and `doctor` can tell a table of the wrong shape from one it
/// can use, and name each difference.
pub const MIRROR_SHAPE: &[(&str, &str)] = &[
    ("id", "text"),
    ("conversation_id", "text"),
    ("channel", "text"),
    ("name", "text"),
    ("data", "jsonb"),
    ("client_id", "text"),
    ("occurred_at", "timestamptz"),
];
pub const FLAGS_SHAPE: &[(&str, &str)] = &[
    ("name", "text"),
    ("enabled", "bool"),
    ("rollout_percent", "int4"),
    ("stickiness", "text"),
    ("group_id", "text"),
    ("version", "int8"),
    ("updated_at", "timestamptz"),
    ("updated_by", "text"),
    ("reason", "text"),
];
pub const OVERRIDES_SHAPE: &[(&str, &str)] = &[
    ("flag", "text"),
    ("conversation_id", "text"),
    ("enabled", "bool"),
    ("expires_at", "timestamptz"),
    ("created_at", "timestamptz"),
    ("created_by", "text"),
    ("reason", "text"),
];
pub const AUDIT_SHAPE: &[(&str, &str)] = &[
    ("id", "int8"),
    ("flag", "text"),
    ("at", "timestamptz"),
    ("actor", "text"),
    ("action", "text"),
    ("before", "jsonb"),
    ("after", "jsonb"),
    ("reason", "text"),
    ("command", "text"),
];

/// The differences between a table's columns (`(name, udt_name)`) and `shape`.
pub fn shape_differences(table: &Table, found: &[(String, String)], shape: &[(&str, &str)]) -> Vec<String> {
    shape
        .iter()
        .filter_map(|(col, want)| match found.iter().find(|(c, _)| c == col) {
            None => Some(format!("{table}: column {col} is missing (expected {want})")),
            Some((_, got)) if got != want => Some(format!("{table}: column {col} is {got}, expected {want}")),
            Some(_) => None,
        })
        .collect()
}

/// The claims a token must have by default.
pub const DEFAULT_REQUIRED_CLAIMS: &[&str] = &["conversationId", "email", "exp"];

/// Every contract, resolved, with where each value came from.
#[derive(Debug, Clone)]
pub struct Contracts {
    pub channel: Pattern,
    pub event_user: String,
    pub event_ai: String,
    pub event_sla_warning: String,
    pub event_sla_violation: String,
    /// The customer started typing (published by the web app on the conversation's channel).
    pub event_typing_start: String,
    /// The customer stopped typing.
    pub event_typing_stop: String,
    /// A read receipt: the customer saw a reply.
    pub event_read: String,
    pub reply: ReplyMatch,
    pub redis_stream: Pattern,
    pub redis_active: String,
    pub table: Table,
    pub token: TokenContract,
    /// Test traffic (smoke chats, canaries): a conversation id, or a customer message's
    /// `echoId`, that starts with this. Reports leave it out and count it apart.
    pub synthetic_prefix: String,
    /// The channel `mirror canary` and `mirror webhook-test` publish on: a conversation channel
    /// whose conversation id starts with the synthetic prefix (checked when resolved).
    pub canary_channel: String,
    /// The event name of canary messages.
    pub canary_event: String,
    /// The web app's resume route, from `APP_BASE_URL` (`token resume-test`, the sandbox's route).
    pub resume_path: String,
    /// The rollout's tables: flags, overrides, audit (from `flag_table`).
    pub flags: FlagTables,
    /// Prefix before every Redis key of the mirror and revocations (empty in production; drills
    /// and tests keep their keys apart with it). From `REDIS_KEY_PREFIX`.
    pub redis_prefix: String,
    /// The key the app checks for a revoked token (`None`: revocation is not configured).
    pub revocation: Option<RevocationKey>,
    /// Lifetime of a conversation's Redis stream after its last write.
    pub stream_ttl_secs: u64,
    /// Where each contract key's value came from (for `doctor`), in [`CONTRACT_KEYS`] order.
    pub sources: Vec<(&'static str, Source)>,
}

impl Default for Contracts {
    fn default() -> Self {
        resolve::defaults()
    }
}

impl Contracts {
    /// The defaults with another Redis key prefix (tests, drills).
    pub fn with_redis_prefix(prefix: impl Into<String>) -> Self {
        Contracts { redis_prefix: prefix.into(), ..Contracts::default() }
    }

    pub fn channel_of(&self, conversation_id: &str) -> String {
        self.channel.of(conversation_id)
    }

    /// The conversation id of a channel name, when the channel is a conversation's.
    pub fn conversation_of(&self, channel: &str) -> Option<String> {
        self.channel.id_in(channel).map(str::to_string)
    }

    /// The canary's conversation id (its channel matches the pattern: checked when resolved).
    pub fn canary_conversation(&self) -> String {
        self.conversation_of(&self.canary_channel).unwrap_or_default()
    }

    pub fn stream_key(&self, conversation_id: &str) -> String {
        format!("{}{}", self.redis_prefix, self.redis_stream.of(conversation_id))
    }

    pub fn active_key(&self) -> String {
        format!("{}{}", self.redis_prefix, self.redis_active)
    }

    /// `SCAN MATCH` glob of every conversation's stream.
    pub fn stream_glob(&self) -> String {
        self.redis_stream.glob(&self.redis_prefix)
    }

    /// The event name's role, when it is one of the four contract events.
    pub fn event_kind(&self, name: &str) -> Option<EventKind> {
        [
            (&self.event_user, EventKind::User),
            (&self.event_ai, EventKind::Ai),
            (&self.event_sla_warning, EventKind::SlaWarning),
            (&self.event_sla_violation, EventKind::SlaViolation),
        ]
        .into_iter()
        .find_map(|(n, k)| (n == name).then_some(k))
    }

    /// The extra's role, when `name` is one of the typing and read events: never a message, never
    /// a reply, never re-sent.
    pub fn extra_kind(&self, name: &str) -> Option<Extra> {
        Extra::ALL.into_iter().find(|e| self.extra_name(*e) == name)
    }

    /// The contract's name of an extra.
    pub fn extra_name(&self, e: Extra) -> &str {
        match e {
            Extra::TypingStart => &self.event_typing_start,
            Extra::TypingStop => &self.event_typing_stop,
            Extra::Read => &self.event_read,
        }
    }

    /// The id of the customer message a reply's data names, under the reply-field contract.
    pub fn replied_to(&self, data: &serde_json::Value) -> Option<String> {
        id_text(data.get(self.reply.field()?)?)
    }

    /// The contract values as `(key, value)` text, in [`CONTRACT_KEYS`] order.
    pub fn values(&self) -> Vec<(&'static str, String)> {
        let none = |o: &Option<String>| o.clone().unwrap_or_default();
        vec![
            ("channel", self.channel.to_string()),
            ("event_user", self.event_user.clone()),
            ("event_ai", self.event_ai.clone()),
            ("event_sla_warning", self.event_sla_warning.clone()),
            ("event_sla_violation", self.event_sla_violation.clone()),
            ("event_typing_start", self.event_typing_start.clone()),
            ("event_typing_stop", self.event_typing_stop.clone()),
            ("event_read", self.event_read.clone()),
            ("reply_field", self.reply.to_string()),
            ("redis_stream", self.redis_stream.to_string()),
            ("redis_active", self.redis_active.clone()),
            ("table", self.table.to_string()),
            ("token_issuer", none(&self.token.issuer)),
            ("token_audience", none(&self.token.audience)),
            ("token_required", self.token.required.join(",")),
            ("token_conversation_id", self.token.conversation_id.as_str().to_string()),
            ("synthetic_prefix", self.synthetic_prefix.clone()),
            ("canary_channel", self.canary_channel.clone()),
            ("canary_event", self.canary_event.clone()),
            ("flag_table", self.flags.flags.to_string()),
            ("revocation_key", self.revocation.as_ref().map(ToString::to_string).unwrap_or_default()),
            ("resume_path", self.resume_path.clone()),
        ]
    }

    /// The synthetic prefix as a SQL `LIKE` pattern (`\\`, `%` and `_` escaped, `%` after).
    pub fn synthetic_like(&self) -> String {
        let mut out = String::with_capacity(self.synthetic_prefix.len() + 4);
        for c in self.synthetic_prefix.chars() {
            if matches!(c, '\\' | '%' | '_') {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('%');
        out
    }

    pub fn source_of(&self, key: &str) -> Source {
        self.sources.iter().find(|(k, _)| *k == key).map(|(_, s)| s.clone()).unwrap_or(Source::Default)
    }
}

/// The events beside the messages: typing indicators and read receipts. Counted apart by
/// reports, shown by replays, never mistaken for a message or a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Extra {
    TypingStart,
    TypingStop,
    Read,
}

impl Extra {
    pub const ALL: [Extra; 3] = [Extra::TypingStart, Extra::TypingStop, Extra::Read];

    /// The name in reports (`typing_start`, `typing_stop`, `read`).
    pub fn key(self) -> &'static str {
        match self {
            Extra::TypingStart => "typing_start",
            Extra::TypingStop => "typing_stop",
            Extra::Read => "read",
        }
    }
}

/// The role of one of the four contract events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    User,
    Ai,
    SlaWarning,
    SlaViolation,
}

/// An id in event data: a string, or a whole number written as text.
pub fn id_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) if n.is_u64() || n.is_i64() => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_round_trip_and_refuse_what_cannot_work() {
        let n = Contracts::default();
        assert_eq!(n.channel_of("4711"), "conversation:4711");
        assert_eq!(n.conversation_of("conversation:4711").as_deref(), Some("4711"));
        assert_eq!(n.conversation_of("other:4711"), None);
        assert_eq!(n.conversation_of("conversation:"), None);
        let c = Contracts { redis_stream: Pattern::parse("s:{id}:e").unwrap(), ..Contracts::with_redis_prefix("t1:") };
        assert_eq!(c.stream_key("9"), "t1:s:9:e", "the prefix goes before the pattern");
        let p = Pattern::parse("conv:{id}:events").unwrap();
        assert_eq!(p.of("7"), "conv:7:events");
        assert_eq!(p.id_in("conv:7:events"), Some("7"));
        assert_eq!(p.id_in("conv:7:other"), None);
        assert_eq!(p.glob("t[1]:"), "t\\[1\\]:conv:*:events");
        assert!(Pattern::parse("conv").unwrap_err().contains("no {id}"));
        assert!(Pattern::parse("{id}:{id}").unwrap_err().contains("more than once"));
        assert!(Pattern::parse("a {id}").unwrap_err().contains("white space"));
        assert!(Pattern::parse("{id}").is_err());
    }

    #[test]
    fn tables_are_plain_identifiers() {
        assert_eq!(Table::parse("events_log").unwrap().quoted(), "\"public\".\"events_log\"");
        assert_eq!(Table::parse("ops.chat_log").unwrap().to_string(), "ops.chat_log");
        for bad in ["chat-events", "1abc", "a.b.c", "x\"; DROP TABLE y; --", "", "ops.", ".t"] {
            assert!(Table::parse(bad).is_err(), "{bad} accepted");
        }
        assert!(Table::parse(&"t".repeat(41)).unwrap_err().contains("longer than 40"));
    }

    #[test]
    fn replies_match_by_field_or_first_after() {
        let mut c = Contracts::default();
        assert_eq!(c.replied_to(&serde_json::json!({"replyTo": 12})).as_deref(), Some("12"));
        assert_eq!(c.replied_to(&serde_json::json!({"replyTo": "m-1"})).as_deref(), Some("m-1"));
        assert_eq!(c.replied_to(&serde_json::json!({"inReplyTo": 12})), None);
        c.reply = ReplyMatch::parse("inReplyTo").unwrap();
        assert_eq!(c.replied_to(&serde_json::json!({"inReplyTo": 12})).as_deref(), Some("12"));
        c.reply = ReplyMatch::parse("first-after").unwrap();
        assert_eq!(c.replied_to(&serde_json::json!({"replyTo": 12})), None);
        assert!(ReplyMatch::parse("a b").is_err());
        assert_eq!(c.event_kind("message:ai"), Some(EventKind::Ai));
        assert_eq!(c.event_kind("typing"), None);
    }
}
