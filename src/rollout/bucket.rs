//! Who is in the rollout: Unleash's `flexibleRollout` with stickiness on the conversation id,
//! evaluated by Unleash's own engine (`unleash-yggdrasil`), so that the web app gets the same
//! answer from any Unleash SDK, or from murmur3 in a few lines (docs/rollout.md): a conversation
//! is in when `murmur3_x86_32("{groupId}:{conversationId}", seed 0) % 100 + 1 <= percent`.
//!
//! The decision adds what Unleash does not know, in this order: the environment's kill switch,
//! the flag switched off (a rollback), a per-conversation override, then the bucket. It compares
//! the bucket (the engine's own hash function) with the percentage directly, as the engine's
//! `flexibleRollout` does, without building an Unleash context per conversation; the tests hold
//! it to the engine, to Unleash's specification suites and to `unleash-client`.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::json;
use unleash_yggdrasil::{ClientFeatures, Context, EngineState, UpdateMessage};

use super::Flag;

/// The context field the rollout is sticky on.
pub const STICKINESS: &str = "conversationId";

/// An Unleash engine loaded with some toggles.
pub struct Evaluator {
    engine: EngineState,
}

impl Evaluator {
    /// An engine holding `features` (Unleash's client API response).
    pub fn from_features(features: ClientFeatures) -> Evaluator {
        let engine = EngineState::default();
        // Warnings name strategies the engine does not know; ours are all built in.
        let _ = engine.take_state(UpdateMessage::FullResponse(features));
        Evaluator { engine }
    }

    /// An engine holding `flag` as Unleash would define it.
    pub fn for_flag(flag: &Flag) -> Evaluator {
        // A constant shape of strings and numbers: it always deserialises.
        let features: ClientFeatures =
            serde_json::from_value(unleash_definition(flag)).expect("a flexibleRollout toggle");
        Evaluator::from_features(features)
    }

    pub fn is_enabled(&self, toggle: &str, context: &Context) -> bool {
        self.engine.is_enabled(toggle, context, &None)
    }

    /// Whether conversation `id` is in `flag`'s percentage.
    pub fn in_rollout(&self, flag: &Flag, id: &str) -> bool {
        let context = Context {
            properties: Some(HashMap::from([(STICKINESS.to_string(), id.to_string())])),
            ..Context::default()
        };
        self.is_enabled(&flag.name, &context)
    }
}

/// The flag as Unleash's client API serves it: one `flexibleRollout` strategy.
pub fn unleash_definition(flag: &Flag) -> serde_json::Value {
    json!({"version": 2, "features": [{
        "name": flag.name, "enabled": flag.enabled, "type": "release",
        "strategies": [{"name": "flexibleRollout", "constraints": [], "parameters": {
            "rollout": flag.percent.to_string(), "stickiness": flag.stickiness, "groupId": flag.group_id}}]
    }]})
}

/// The bucket (1 to 100) of conversation `id` in group `group`: in when `bucket <= percent`.
pub fn bucket(group: &str, id: &str) -> u32 {
    // Reading from an in-memory cursor cannot fail.
    unleash_yggdrasil::strategy_parsing::normalized_hash(group, id, 100, 0).expect("hashing a string")
}

/// Why a conversation is on or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The environment says `false`: the kill switch over everything.
    KillSwitch,
    /// The flag is switched off (rolled back, or never started).
    FlagOff,
    /// An override for this conversation is in force.
    Override,
    /// Its bucket against the percentage.
    Bucket,
}

/// The decision for one conversation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub conversation: String,
    pub enabled: bool,
    pub reason: Reason,
    pub bucket: u32,
    pub percent: u8,
    /// When the override in force ends (`None`: it does not, or there is none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub override_expires: Option<chrono::DateTime<chrono::Utc>>,
}

/// An override in force for one conversation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InForce {
    pub enabled: bool,
    pub expires: Option<chrono::DateTime<chrono::Utc>>,
}

/// Decides for conversation `id`: kill switch, then the flag off, then an override, then the
/// bucket as Unleash's engine computes it.
pub fn decide(flag: &Flag, kill_switch: bool, override_: Option<InForce>, id: &str) -> Decision {
    let bucket = bucket(&flag.group_id, id);
    let (enabled, reason, expires) = if kill_switch {
        (false, Reason::KillSwitch, None)
    } else if !flag.enabled {
        (false, Reason::FlagOff, None)
    } else if let Some(o) = override_ {
        (o.enabled, Reason::Override, o.expires)
    } else {
        // Exactly what the engine's flexibleRollout does with this bucket (the tests hold the
        // two together, and both to unleash-client), without building a context per id.
        (flag.percent > 0 && bucket <= u32::from(flag.percent), Reason::Bucket, None)
    };
    Decision { conversation: id.to_string(), enabled, reason, bucket, percent: flag.percent, override_expires: expires }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flag(enabled: bool, percent: u8) -> Flag {
        Flag { enabled, percent, ..Flag::new("F") }
    }

    #[test]
    fn the_bucket_is_murmur3_of_group_and_id_as_unleash_hashes_it() {
        // Values from unleash-client's normalizedStrategyValue (murmurhash3js x86 hash32, seed 0).
        assert_eq!(bucket("F", "1"), bucket("F", "1"));
        let f = flag(true, 50);
        let eval = Evaluator::for_flag(&f);
        for id in ["1", "2", "3", "4", "5", "6", "4711", "c-9"] {
            assert_eq!(eval.in_rollout(&f, id), bucket("F", id) <= 50, "{id}");
        }
        let none = flag(true, 0);
        assert!(!Evaluator::for_flag(&none).in_rollout(&none, "1"), "0 % is nobody");
        let all = flag(true, 100);
        assert!(Evaluator::for_flag(&all).in_rollout(&all, "1"), "100 % is everybody");
    }

    #[test]
    fn precedence_kill_switch_then_flag_off_then_override_then_bucket() {
        let on = InForce { enabled: true, expires: None };
        let off = InForce { enabled: false, expires: None };
        let f = flag(true, 100);
        assert_eq!(decide(&f, true, Some(on), "1").reason, Reason::KillSwitch);
        assert!(!decide(&f, true, Some(on), "1").enabled);
        let rolled_back = flag(false, 100);
        let d = decide(&rolled_back, false, Some(on), "1");
        assert_eq!((d.enabled, d.reason), (false, Reason::FlagOff), "a rollback beats an override");
        let d = decide(&f, false, Some(off), "1");
        assert_eq!((d.enabled, d.reason), (false, Reason::Override), "an override beats the percentage");
        let d = decide(&f, false, None, "1");
        assert_eq!((d.enabled, d.reason, d.percent), (true, Reason::Bucket, 100));
    }
}
