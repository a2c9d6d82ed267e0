//! Ably's outbound webhooks in batch mode, as the app's webhook route receives them: the body
//! (`{"items":[...]}` of `channel.message` items), its signature, and the mirror events a body
//! carries. One place for the format, shared by the sandbox's emitter and receiver and by
//! `mirror webhook-test`, which must all agree with Ably byte for byte.
//!
//! Ably's documented steps (docs/mirror.md quotes them): the signature is
//! `base64(HMAC-SHA256(key secret, raw body bytes))` in `X-Ably-Signature`, and `X-Ably-Key`
//! names the key (`appId.keyId`). The signature covers the exact bytes: a receiver must verify
//! before it parses, and must not re-serialise.

pub mod sign;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use sign::{Refusal, sign, verify};

use crate::ably::Message;
use crate::contracts::Contracts;
use crate::event::MirroredEvent;

/// Headers of a batched webhook request.
pub const HEADER_KEY: &str = "x-ably-key";
pub const HEADER_SIGNATURE: &str = "x-ably-signature";
pub const HEADER_VERSION: &str = "x-ably-version";
/// The version Ably sends with batched requests.
pub const VERSION: &str = "1.2";
/// The source of channel message items (the only one the mirror takes).
pub const SOURCE_MESSAGE: &str = "channel.message";
/// Ably's batch size limit on paid plans (50 on the free plan).
pub const MAX_BATCH_ITEMS: usize = 100;

/// A batched webhook body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    pub items: Vec<Item>,
}

/// One item: for `channel.message`, the messages of one publish on one channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Item {
    pub webhook_id: String,
    pub source: String,
    pub serial: String,
    pub timestamp: i64,
    pub name: String,
    pub data: Value,
}

/// The `data` of a `channel.message` item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageData {
    pub channel_id: String,
    #[serde(default)]
    pub site: String,
    #[serde(default)]
    pub messages: Vec<Message>,
}

impl Item {
    /// A `channel.message` item carrying `messages` published on `channel` (messages as Ably
    /// stores them: `data` encoded, `encoding` set, id and timestamp given).
    pub fn messages(webhook_id: &str, serial: String, channel: &str, messages: Vec<Message>, now_ms: i64) -> Item {
        let data = MessageData { channel_id: channel.to_string(), site: "local-sandbox-1".into(), messages };
        Item {
            webhook_id: webhook_id.to_string(),
            source: SOURCE_MESSAGE.into(),
            serial,
            timestamp: now_ms,
            name: SOURCE_MESSAGE.into(),
            // A struct of strings and messages always serialises.
            data: serde_json::to_value(data).expect("message data serialises"),
        }
    }
}

/// What a body held for the mirror.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Extracted {
    pub events: Vec<MirroredEvent>,
    /// Items of another source, or on channels that are not a conversation's: not mirrored.
    pub ignored: usize,
}

/// Why a body could not be read.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BodyError {
    #[error("not a batched webhook body: {0}")]
    Json(String),
    #[error("item {item}: {reason}")]
    Item { item: usize, reason: String },
}

/// Parses a (verified) body into the events the mirror keeps, in body order: every message of
/// every `channel.message` item whose channel is a conversation's under the contracts.
pub fn extract(body: &[u8], contracts: &Contracts) -> Result<Extracted, BodyError> {
    let batch: Batch = serde_json::from_slice(body).map_err(|e| BodyError::Json(e.to_string()))?;
    let mut out = Extracted::default();
    for (i, item) in batch.items.into_iter().enumerate() {
        if item.source != SOURCE_MESSAGE {
            out.ignored += 1;
            continue;
        }
        let data: MessageData =
            serde_json::from_value(item.data).map_err(|e| BodyError::Item { item: i, reason: e.to_string() })?;
        let Some(conversation) = contracts.conversation_of(&data.channel_id) else {
            out.ignored += 1;
            continue;
        };
        for m in data.messages {
            let Some(id) = m.id.clone().filter(|id| !id.is_empty()) else {
                return Err(BodyError::Item { item: i, reason: "a message without an id".into() });
            };
            out.events.push(MirroredEvent {
                id,
                conversation_id: conversation.clone(),
                channel: data.channel_id.clone(),
                name: m.name.clone().unwrap_or_default(),
                data: m.decoded_data(),
                client_id: m.client_id.clone(),
                timestamp_ms: m.timestamp.unwrap_or(item.timestamp),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn message(id: &str, data: Value, encoding: Option<&str>) -> Message {
        Message {
            id: Some(id.into()),
            name: Some("message:user".into()),
            data: Some(data),
            encoding: encoding.map(str::to_string),
            client_id: Some("contact-1".into()),
            timestamp: Some(1_700_000_000_123),
            ..Message::default()
        }
    }

    #[test]
    fn items_become_mirror_events_in_order_and_other_channels_are_ignored() {
        let c = Contracts::default();
        let batch = Batch {
            items: vec![
                Item::messages(
                    "w",
                    "s:0".into(),
                    "conversation:7",
                    vec![
                        message("a:0", json!("{\"text\":\"hi\"}"), Some("json")),
                        message("a:1", json!("plain"), None),
                    ],
                    1,
                ),
                Item::messages("w", "s:1".into(), "presence-room", vec![message("b:0", json!("x"), None)], 2),
            ],
        };
        let body = serde_json::to_vec(&batch).unwrap();
        let got = extract(&body, &c).unwrap();
        assert_eq!(got.ignored, 1);
        assert_eq!(got.events.len(), 2);
        assert_eq!(got.events[0].id, "a:0");
        assert_eq!(got.events[0].conversation_id, "7");
        assert_eq!(got.events[0].data, json!({"text": "hi"}), "encoding json is undone");
        assert_eq!(got.events[1].data, json!("plain"));
        assert_eq!(got.events[1].timestamp_ms, 1_700_000_000_123);
        assert_eq!(got.events[1].client_id.as_deref(), Some("contact-1"));
    }

    #[test]
    fn the_documented_example_body_parses() {
        // Ably's own example of a batched channel.message request.
        let body = br#"{"items":[{"webhookId":"ABcDEf","source":"channel.message","serial":"a7bcdEFghIjklm123456789:4",
            "timestamp":1562124922426,"name":"channel.message","data":{"channelId":"conversation:4","site":"eu-west-1-A",
            "messages":[{"id":"ABcDefgHIj:1:0","clientId":"user-3","connectionId":"ABcDefgHIj","timestamp":1123145678900,
            "data":"the message data","name":"a message name"}]}}]}"#;
        let got = extract(body, &Contracts::default()).unwrap();
        assert_eq!(got.events.len(), 1);
        assert_eq!(got.events[0].id, "ABcDefgHIj:1:0");
        assert_eq!(got.events[0].timestamp_ms, 1_123_145_678_900);
    }

    #[test]
    fn bad_bodies_are_refused_with_the_reason() {
        let c = Contracts::default();
        assert!(matches!(extract(b"{", &c), Err(BodyError::Json(_))));
        assert!(matches!(extract(b"{\"items\":3}", &c), Err(BodyError::Json(_))));
        let no_id = br#"{"items":[{"webhookId":"w","source":"channel.message","serial":"s","timestamp":1,
            "name":"channel.message","data":{"channelId":"conversation:1","messages":[{"name":"n"}]}}]}"#;
        assert_eq!(
            extract(no_id, &c).unwrap_err(),
            BodyError::Item { item: 0, reason: "a message without an id".into() }
        );
    }
}
