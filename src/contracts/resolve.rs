//! Contracts from the layers: `BROKER_OPS_CONTRACT_<KEY>` in the environment, else the config
//! file's `[contracts]` table, else the default. An unknown key, a pattern without `{id}` or an
//! invalid identifier is refused with the file (or variable), the key and why.

use std::path::PathBuf;

use super::{Contracts, FlagTables, IdType, Pattern, ReplyMatch, RevocationKey, Table, TokenContract};
pub use crate::layers::ContractsError;
use crate::layers::{Layers, Source};

/// Every key of the `[contracts]` table, with its default.
pub const CONTRACT_KEYS: &[(&str, &str)] = &[
    ("channel", "conversation:{id}"),
    ("event_user", "message:user"),
    ("event_ai", "message:ai"),
    ("event_sla_warning", "sla:warning"),
    ("event_sla_violation", "sla:violation"),
    ("event_typing_start", "typing:start"),
    ("event_typing_stop", "typing:stop"),
    ("event_read", "message:read"),
    ("reply_field", "replyTo"),
    ("redis_stream", "chat:events:{id}"),
    ("redis_active", "chat:conversations:active"),
    ("table", "public.chat_events"),
    ("token_issuer", ""),
    ("token_audience", ""),
    ("token_required", "conversationId,email,exp"),
    ("token_conversation_id", "as-given"),
    ("synthetic_prefix", "broker-ops-"),
    ("canary_channel", ""),
    ("canary_event", "broker-ops:canary"),
    ("flag_table", "public.feature_flags"),
    ("revocation_key", ""),
    ("resume_path", "/api/chat/resume"),
];

/// The environment variable that overrides a contract key.
pub fn env_var(key: &str) -> String {
    format!("BROKER_OPS_CONTRACT_{}", key.to_ascii_uppercase())
}

pub(super) fn defaults() -> Contracts {
    let raw: Vec<(&'static str, String, Source)> =
        CONTRACT_KEYS.iter().map(|(k, v)| (*k, v.to_string(), Source::Default)).collect();
    // The defaults are constants that parse; a test below proves it.
    build(raw, String::new()).expect("default contracts parse")
}

/// Resolves the contracts from the layers; `redis_prefix` is `REDIS_KEY_PREFIX`.
pub fn resolve(layers: &Layers, redis_prefix: String) -> Result<Contracts, ContractsError> {
    let file = file_table(layers)?;
    let mut raw = Vec::with_capacity(CONTRACT_KEYS.len());
    for (key, default) in CONTRACT_KEYS {
        let var = env_var(key);
        let found = match layers.env.get(&var) {
            Some(v) => Some((v.clone(), Source::Env(var))),
            None => match &file {
                Some((path, t)) => file_value(path, t, key)?.map(|v| (v, Source::File(path.clone()))),
                None => None,
            },
        };
        let (value, source) = found.unwrap_or_else(|| (default.to_string(), Source::Default));
        raw.push((*key, value, source));
    }
    build(raw, redis_prefix)
}

type FileTable<'a> = Option<(PathBuf, &'a toml::Table)>;

/// The `[contracts]` table, with every key in it known.
fn file_table(layers: &Layers) -> Result<FileTable<'_>, ContractsError> {
    let Some((path, table)) = &layers.file else { return Ok(None) };
    let err =
        |key: &str, reason: String| ContractsError { key: key.into(), source_: Source::File(path.clone()), reason };
    let t = match table.get("contracts") {
        None => return Ok(None),
        Some(toml::Value::Table(t)) => t,
        Some(other) => return Err(err("*", format!("`contracts` must be a table, found {}", other.type_str()))),
    };
    if let Some(unknown) = t.keys().find(|k| !CONTRACT_KEYS.iter().any(|(c, _)| c == k)) {
        let known: Vec<&str> = CONTRACT_KEYS.iter().map(|(k, _)| *k).collect();
        return Err(err(unknown, format!("unknown key (known: {})", known.join(", "))));
    }
    Ok(Some((path.clone(), t)))
}

fn file_value(path: &std::path::Path, t: &toml::Table, key: &str) -> Result<Option<String>, ContractsError> {
    let err = |reason: String| ContractsError { key: key.into(), source_: Source::File(path.into()), reason };
    match t.get(key) {
        None => Ok(None),
        Some(toml::Value::String(s)) => Ok(Some(s.clone())),
        Some(toml::Value::Array(items)) if key == "token_required" => {
            let names: Option<Vec<&str>> = items.iter().map(toml::Value::as_str).collect();
            names.map(|n| Some(n.join(","))).ok_or_else(|| err("must be a list of claim names (strings)".into()))
        }
        Some(other) => Err(err(format!("must be a string, found {}", other.type_str()))),
    }
}

fn build(raw: Vec<(&'static str, String, Source)>, redis_prefix: String) -> Result<Contracts, ContractsError> {
    // Each key's text parsed by `parse`; a refusal names the key and where its value was read.
    fn field<T>(
        raw: &[(&'static str, String, Source)],
        key: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, ContractsError> {
        // Every key of CONTRACT_KEYS is in `raw` by construction.
        let (_, v, s) = raw.iter().find(|(k, ..)| *k == key).expect("every contract key resolved");
        parse(v).map_err(|reason| ContractsError { key: key.into(), source_: s.clone(), reason })
    }
    let text = |check: fn(&str) -> Result<(), String>| move |v: &str| check(v).map(|()| v.to_string());
    let optional = |v: &str| Ok((!v.trim().is_empty()).then(|| v.trim().to_string()));
    let required = field(&raw, "token_required", text(claim_list))?
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect();
    let sources = raw.iter().map(|(k, _, s)| (*k, s.clone())).collect();
    let mut c = Contracts {
        channel: field(&raw, "channel", Pattern::parse)?,
        event_user: field(&raw, "event_user", text(event_name))?,
        event_ai: field(&raw, "event_ai", text(event_name))?,
        event_sla_warning: field(&raw, "event_sla_warning", text(event_name))?,
        event_sla_violation: field(&raw, "event_sla_violation", text(event_name))?,
        event_typing_start: field(&raw, "event_typing_start", text(event_name))?,
        event_typing_stop: field(&raw, "event_typing_stop", text(event_name))?,
        event_read: field(&raw, "event_read", text(event_name))?,
        reply: field(&raw, "reply_field", ReplyMatch::parse)?,
        redis_stream: field(&raw, "redis_stream", Pattern::parse)?,
        redis_active: field(&raw, "redis_active", text(key_name))?,
        table: field(&raw, "table", Table::parse)?,
        token: TokenContract {
            issuer: field(&raw, "token_issuer", optional)?,
            audience: field(&raw, "token_audience", optional)?,
            required,
            conversation_id: field(&raw, "token_conversation_id", IdType::parse)?,
        },
        synthetic_prefix: field(&raw, "synthetic_prefix", text(synthetic_prefix))?,
        canary_channel: String::new(),
        canary_event: field(&raw, "canary_event", text(event_name))?,
        flags: FlagTables::of(&field(&raw, "flag_table", Table::parse)?),
        revocation: field(&raw, "revocation_key", RevocationKey::parse)?,
        resume_path: field(&raw, "resume_path", text(resume_path))?,
        redis_prefix,
        stream_ttl_secs: 24 * 3600,
        sources,
    };
    c.canary_channel = field(&raw, "canary_channel", |v| canary_channel(&c, v))?;
    distinct_events(&c, &raw)?;
    Ok(c)
}

/// Two roles under one event name would make a typing indicator count as a message (or a reply
/// as a read receipt): each event key must name its own event.
fn distinct_events(c: &Contracts, raw: &[(&'static str, String, Source)]) -> Result<(), ContractsError> {
    let events = [
        ("event_user", &c.event_user),
        ("event_ai", &c.event_ai),
        ("event_sla_warning", &c.event_sla_warning),
        ("event_sla_violation", &c.event_sla_violation),
        ("event_typing_start", &c.event_typing_start),
        ("event_typing_stop", &c.event_typing_stop),
        ("event_read", &c.event_read),
    ];
    for (i, (key, name)) in events.iter().enumerate() {
        if let Some((other, _)) = events[..i].iter().find(|(_, n)| n == name) {
            let source_ = raw.iter().find(|(k, ..)| k == key).map(|(_, _, s)| s.clone()).unwrap_or(Source::Default);
            return Err(ContractsError {
                key: (*key).into(),
                source_,
                reason: format!("{name:?} is already contracts.{other}: each event needs its own name"),
            });
        }
    }
    Ok(())
}

/// The canary's channel: empty means the channel of conversation `{synthetic_prefix}canary`.
/// Whatever it is, the webhook must mirror it as a conversation (it matches the channel pattern)
/// and that conversation must be marked as test traffic, so that no canary ever lands in, or is
/// counted as, a customer's conversation.
fn canary_channel(c: &Contracts, v: &str) -> Result<String, String> {
    let channel =
        if v.trim().is_empty() { c.channel_of(&format!("{}canary", c.synthetic_prefix)) } else { v.trim().to_string() };
    let Some(conv) = c.conversation_of(&channel) else {
        return Err(format!(
            "{channel:?} does not match contracts.channel ({}): the webhook would not mirror it as a conversation",
            c.channel
        ));
    };
    if !conv.starts_with(&c.synthetic_prefix) {
        return Err(format!(
            "{channel:?} is conversation {conv:?}, which does not start with contracts.synthetic_prefix ({:?}): \
             it could be a customer's",
            c.synthetic_prefix
        ));
    }
    Ok(channel)
}

fn event_name(v: &str) -> Result<(), String> {
    if v.is_empty() || v.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{v:?} is not an event name (non-empty, no white space)"));
    }
    Ok(())
}

fn key_name(v: &str) -> Result<(), String> {
    event_name(v).map_err(|_| format!("{v:?} is not a Redis key name (non-empty, no white space)"))
}

/// The app's resume route, a path from the root: `/api/chat/resume`.
fn resume_path(v: &str) -> Result<(), String> {
    let ok = v.starts_with('/') && !v.contains("//") && !v.contains(['?', '#']) && !v.chars().any(char::is_whitespace);
    if ok { Ok(()) } else { Err(format!("{v:?} is not a path from the root without query, like /api/chat/resume")) }
}

fn synthetic_prefix(v: &str) -> Result<(), String> {
    if v.is_empty() || v.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{v:?} is not a prefix (non-empty, no white space)"));
    }
    Ok(())
}

fn claim_list(v: &str) -> Result<(), String> {
    for c in v.split(',').map(str::trim).filter(|c| !c.is_empty()) {
        if !c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_') {
            return Err(format!("{c:?} is not a claim name"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::contracts::DEFAULT_REQUIRED_CLAIMS;

    fn layers(toml_text: &str, env: &[(&str, &str)]) -> (tempfile::TempDir, Layers) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.toml");
        std::fs::write(&path, toml_text).unwrap();
        let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let l = Layers::new(env, Some(&path)).unwrap();
        (dir, l)
    }

    #[test]
    fn defaults_parse_and_file_and_env_override_them() {
        let d = Contracts::default();
        assert_eq!(d.table.quoted(), "\"public\".\"chat_events\"");
        assert_eq!(d.token.issuer, None, "the product plan names no issuer: not checked unless pinned");
        assert_eq!(d.token.required, ["conversationId", "email", "exp"]);
        assert!(d.revocation.is_none(), "revocation is a contract of its own, unset by default");
        assert_eq!(d.token.required, DEFAULT_REQUIRED_CLAIMS);
        let (_d, l) = layers(
            "[contracts]\nchannel = \"chat-{id}\"\nreply_field = \"inReplyTo\"\nredis_stream = \"conv:{id}:events\"\n\
             table = \"ops.chat_log\"\ntoken_audience = \"\"\ntoken_required = [\"conversationId\", \"exp\"]\n",
            &[("BROKER_OPS_CONTRACT_EVENT_AI", "ai:reply")],
        );
        let c = resolve(&l, "p:".into()).unwrap();
        assert_eq!(c.channel_of("5"), "chat-5");
        assert_eq!(c.reply, ReplyMatch::Field("inReplyTo".into()));
        assert_eq!(c.stream_key("5"), "p:conv:5:events");
        assert_eq!(c.table.to_string(), "ops.chat_log");
        assert_eq!(c.token.audience, None);
        assert_eq!(c.token.required, ["conversationId", "exp"]);
        assert_eq!(c.event_ai, "ai:reply");
        assert_eq!(c.source_of("event_ai"), Source::Env("BROKER_OPS_CONTRACT_EVENT_AI".into()));
        assert!(matches!(c.source_of("channel"), Source::File(_)));
        assert_eq!(c.source_of("event_user"), Source::Default);
        assert_eq!(d.canary_channel, "conversation:broker-ops-canary");
        assert_eq!(c.canary_channel, "chat-broker-ops-canary", "the default follows the channel pattern");
        assert_eq!(c.canary_conversation(), "broker-ops-canary");
    }

    #[test]
    fn a_canary_channel_must_be_a_test_conversation() {
        for (channel, why) in
            [("alerts", "does not match contracts.channel"), ("conversation:42", "could be a customer's")]
        {
            let (_d, l) = layers(&format!("[contracts]\ncanary_channel = \"{channel}\"\n"), &[]);
            let e = resolve(&l, String::new()).unwrap_err().to_string();
            assert!(e.starts_with("contracts.canary_channel from config file ") && e.contains(why), "{e}");
        }
        let (_d, l) = layers("[contracts]\ncanary_channel = \"conversation:broker-ops-probe-eu\"\n", &[]);
        assert_eq!(resolve(&l, String::new()).unwrap().canary_conversation(), "broker-ops-probe-eu");
    }

    #[test]
    fn bad_contracts_name_the_file_the_key_and_why() {
        let (_d, l) = layers("[contracts]\nchanel = \"x:{id}\"\n", &[]);
        let e = resolve(&l, String::new()).unwrap_err().to_string();
        assert!(e.starts_with("contracts.chanel from config file ") && e.contains("unknown key"), "{e}");
        let (_d, l) = layers("[contracts]\nredis_stream = \"conv:events\"\n", &[]);
        let e = resolve(&l, String::new()).unwrap_err().to_string();
        assert!(e.starts_with("contracts.redis_stream from config file ") && e.contains("no {id}"), "{e}");
        let (_d, l) = layers("[contracts]\ntable = \"ops.chat-log\"\n", &[]);
        let e = resolve(&l, String::new()).unwrap_err().to_string();
        assert!(e.contains("contracts.table") && e.contains("not a valid identifier"), "{e}");
        let (_d, l) = layers("", &[("BROKER_OPS_CONTRACT_TOKEN_CONVERSATION_ID", "uuid")]);
        let e = resolve(&l, String::new()).unwrap_err().to_string();
        assert!(e.contains("environment variable BROKER_OPS_CONTRACT_TOKEN_CONVERSATION_ID"), "{e}");
    }
}
