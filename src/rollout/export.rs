//! `rollout export --unleash`: a flag as Unleash's feature import takes it
//! (`POST /api/admin/features-batch/import`, body `{project, environment, data}` where `data` is
//! Unleash's export result: features, featureStrategies, featureEnvironments, contextFields, ...),
//! for a team that moves to an Unleash server. The percentage becomes a `flexibleRollout` on
//! `conversationId` with the same group id, so every conversation keeps its bucket; overrides in
//! force become constraints: `off` ones a `NOT_IN` on the rollout, `on` ones a second strategy at
//! 100 % with an `IN`. The environment's kill switch stays the app's business.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::Flag;
use super::RolloutError;
use super::bucket::{InForce, STICKINESS};
use super::store::Db;
use crate::config::Config;

/// The import document. It is a file for Unleash whatever the format: the table and `-o json`
/// write it indented, `-o ndjson` on one line; no `schema_version` is added (Unleash would refuse
/// a key it does not know).
pub struct UnleashImport(pub Value);

impl crate::output::Render for UnleashImport {
    fn table(&self, w: &mut dyn std::io::Write, _: crate::output::Style) -> std::io::Result<()> {
        serde_json::to_writer_pretty(&mut *w, &self.0).map_err(std::io::Error::from)?;
        writeln!(w)
    }

    fn json(&self) -> Value {
        self.0.clone()
    }
}

pub async fn unleash(
    config: &Config,
    flag: &str,
    project: &str,
    environment: &str,
) -> Result<UnleashImport, RolloutError> {
    let db = Db::open(config).await?;
    let f = db.flag(flag).await?;
    let overrides = db.overrides(flag, None).await?;
    Ok(UnleashImport(document(&f, &overrides, project, environment)))
}

/// The import document of `flag` with the overrides in force.
pub fn document(flag: &Flag, overrides: &HashMap<String, InForce>, project: &str, environment: &str) -> Value {
    let ids = |on: bool| {
        let mut v: Vec<&str> = overrides.iter().filter(|(_, o)| o.enabled == on).map(|(id, _)| id.as_str()).collect();
        v.sort_unstable();
        v
    };
    let (on, off) = (ids(true), ids(false));
    let constraint = |op: &str, values: &[&str]| json!({"contextName": STICKINESS, "operator": op, "values": values, "inverted": false, "caseInsensitive": false});
    let rollout = |title: String, percent: u8, constraints: Vec<Value>| {
        json!({"name": "flexibleRollout", "featureName": flag.name, "title": title, "disabled": false,
               "parameters": {"groupId": flag.group_id, "rollout": percent.to_string(), "stickiness": flag.stickiness},
               "constraints": constraints, "segments": []})
    };
    let mut strategies = Vec::new();
    if !on.is_empty() {
        strategies.push(rollout("broker-ops overrides: on".into(), 100, vec![constraint("IN", &on)]));
    }
    let main_constraints = if off.is_empty() { vec![] } else { vec![constraint("NOT_IN", &off)] };
    strategies.push(rollout(format!("Rollout {} %", flag.percent), flag.percent, main_constraints));
    json!({
        "project": project,
        "environment": environment,
        "data": {
            "features": [{"name": flag.name, "type": "release", "project": project, "stale": false,
                          "impressionData": false, "archived": false,
                          "description": format!("Exported by broker-ops from {} (version {})", flag.name, flag.version)}],
            "featureStrategies": strategies,
            "featureEnvironments": [{"name": flag.name, "featureName": flag.name, "environment": environment,
                                     "enabled": flag.enabled, "variants": []}],
            "contextFields": [{"name": STICKINESS, "description": "The chat conversation id (broker-ops rollout)",
                               "stickiness": true, "legalValues": []}],
            "featureTags": [], "segments": [], "tagTypes": [], "dependencies": []
        }
    })
}

/// The export as Unleash's client API would then serve it (strategies in order, first match
/// wins), for checking that the import decides as broker-ops does.
pub fn as_client_features(doc: &Value) -> Value {
    let d = &doc["data"];
    let env = &d["featureEnvironments"][0];
    let strategies: Vec<Value> = d["featureStrategies"]
        .as_array()
        .map(|s| {
            s.iter()
                .map(|s| json!({"name": s["name"], "parameters": s["parameters"], "constraints": s["constraints"]}))
                .collect()
        })
        .unwrap_or_default();
    json!({"version": 2, "features": [{"name": env["featureName"], "enabled": env["enabled"], "strategies": strategies}]})
}

#[cfg(test)]
mod tests {
    use super::super::bucket::{Evaluator, decide};
    use super::*;

    #[test]
    fn the_export_decides_every_conversation_as_broker_ops_does() {
        let flag = Flag { enabled: true, percent: 30, ..Flag::new("ENABLE_ABLY_REALTIME") };
        let overrides: HashMap<String, InForce> = [("7", true), ("8", false), ("9", false)]
            .into_iter()
            .map(|(id, enabled)| (id.to_string(), InForce { enabled, expires: None }))
            .collect();
        let doc = document(&flag, &overrides, "default", "production");
        assert_eq!(doc["data"]["featureStrategies"].as_array().unwrap().len(), 2);
        let exported = Evaluator::from_features(serde_json::from_value(as_client_features(&doc)).unwrap());
        for i in 0..2000 {
            let id = i.to_string();
            let want = decide(&flag, false, overrides.get(&id).copied(), &id).enabled;
            let ctx = unleash_yggdrasil::Context {
                properties: Some(HashMap::from([(STICKINESS.to_string(), id.clone())])),
                ..Default::default()
            };
            assert_eq!(exported.is_enabled(&flag.name, &ctx), want, "conversation {id}");
        }
    }
}
