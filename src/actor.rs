//! Who runs a command that changes something, for the audit trails (the rollout's audit, alert
//! acknowledgements and silences): `--by`, else `BROKER_OPS_ACTOR`, else `$USER@host`; with the
//! command line as typed.

use crate::config::Config;

#[derive(Debug, Clone)]
pub struct Actor {
    pub who: String,
    pub command: String,
}

impl Actor {
    /// `by` (already checked by [`crate::config::actor_name`]) or the configured name, else the
    /// login name and host.
    pub fn resolve(config: &Config, by: Option<&str>, command: String) -> Actor {
        let named = by.map(str::to_string).or_else(|| config.actor.as_ref().map(|s| s.value.clone()));
        let who = named.unwrap_or_else(|| {
            let user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "unknown".into());
            let host =
                hostname::get().map(|h| h.to_string_lossy().into_owned()).unwrap_or_else(|_| "unknown-host".into());
            format!("{user}@{host}")
        });
        Actor { who, command }
    }
}
