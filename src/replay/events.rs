//! Which events `events replay --to ably` re-sends: the messages customers missed by default.

/// Which events `--to ably` re-sends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Events {
    /// The customer's and the AI's messages (the contracts' `event_user` and `event_ai`): what a
    /// customer missed. SLA events and anything else stay where they were.
    #[default]
    Messages,
    /// Every event of the window.
    All,
    /// These names.
    Named(Vec<String>),
}

impl Events {
    /// `--events`: `messages`, `all`, or names separated by commas.
    pub fn parse(s: &str) -> Result<Events, String> {
        match s.trim() {
            "messages" => Ok(Events::Messages),
            "all" => Ok(Events::All),
            t => {
                let names: Vec<String> =
                    t.split(',').map(str::trim).filter(|n| !n.is_empty()).map(str::to_string).collect();
                if names.is_empty() {
                    return Err(format!("--events {s:?}: expected messages, all, or event names"));
                }
                Ok(Events::Named(names))
            }
        }
    }

    /// The names selected under `contracts`, `None` for every event.
    pub fn names(&self, c: &crate::contracts::Contracts) -> Option<Vec<String>> {
        match self {
            Events::Messages => Some(vec![c.event_user.clone(), c.event_ai.clone()]),
            Events::All => None,
            Events::Named(n) => Some(n.clone()),
        }
    }

    /// A warning when SLA events would be re-sent: customers may see stale SLA banners.
    pub fn warning(&self, c: &crate::contracts::Contracts) -> Option<String> {
        let sla = [&c.event_sla_warning, &c.event_sla_violation];
        let hit = match self {
            Events::Messages => false,
            Events::All => true,
            Events::Named(n) => n.iter().any(|e| sla.contains(&e)),
        };
        hit.then(|| {
            format!(
                "warning: re-sending SLA events ({}, {}) to Ably: customers' apps may show stale SLA banners",
                c.event_sla_warning, c.event_sla_violation
            )
        })
    }
}

impl std::fmt::Display for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Events::Messages => f.write_str("messages"),
            Events::All => f.write_str("all"),
            Events::Named(n) => f.write_str(&n.join(",")),
        }
    }
}
