//! `alert silence`: a silence checked against the monitor's rules in force (a silence that
//! matches no rule and no open incident would hide nothing and reassure wrongly), then kept with
//! the alert state.

use std::path::Path;

use chrono::{DateTime, Utc};

use super::RuleSet;
use crate::alert::silence::{self, Matcher, SilenceRequest};
use crate::alert::silence_render::SilenceChanged;
use crate::alert::{self, AlertError};
use crate::config::Config;

/// What `alert silence` asks.
pub struct SilenceAsk<'a> {
    pub matchers: Vec<Matcher>,
    pub ends_at: DateTime<Utc>,
    pub reason: String,
    pub rules: &'a RuleSet,
    pub state_dir: Option<&'a Path>,
}

pub async fn silence(
    config: &Config,
    ask: SilenceAsk<'_>,
    actor: &crate::actor::Actor,
) -> Result<SilenceChanged, AlertError> {
    let req = SilenceRequest {
        matchers: ask.matchers,
        ends_at: ask.ends_at,
        reason: ask.reason,
        max: config.alert_silence_max.value,
    };
    // Refused before the store is opened when it cannot be right whatever the store holds.
    silence::check_request(&req, Utc::now())?;
    let mut store = alert::open_shared_store(config, ask.state_dir).await?;
    let made = silence::create(&mut store, req, super::engine::subjects(ask.rules), actor).await?;
    Ok(SilenceChanged { silence: made, action: "silenced" })
}
