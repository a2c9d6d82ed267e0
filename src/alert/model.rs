//! What an alert is, independent of where it goes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// How bad it is. `Resolved` closes the incident that the same dedup key opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
    Resolved,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
            Severity::Resolved => "resolved",
        }
    }

    pub fn upper(self) -> String {
        self.as_str().to_ascii_uppercase()
    }

    /// Slack attachment colour.
    pub fn colour(self) -> &'static str {
        match self {
            Severity::Info => "#439fe0",
            Severity::Warning => "#daa038",
            Severity::Critical => "#d00000",
            Severity::Resolved => "#2eb886",
        }
    }

    pub fn emoji(self) -> &'static str {
        match self {
            Severity::Info => ":information_source:",
            Severity::Warning => ":warning:",
            Severity::Critical => ":red_circle:",
            Severity::Resolved => ":white_check_mark:",
        }
    }
}

/// Where the alert comes from: the host and the command that raised it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertSource {
    pub host: String,
    pub command: String,
}

impl AlertSource {
    /// This host, and the command that raised the alert.
    pub fn this_host(command: impl Into<String>) -> AlertSource {
        let host = hostname::get().ok().and_then(|h| h.into_string().ok()).unwrap_or_else(|| "unknown-host".into());
        AlertSource { host, command: command.into() }
    }
}

/// A runbook link must be http or https: it becomes a clickable link in Slack and the mail, and
/// `javascript:` or `data:` there would be a trap.
pub fn check_link(text: &str) -> Result<String, String> {
    match url::Url::parse(text.trim()) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => Ok(u.to_string()),
        Ok(u) => Err(format!("only http and https links are allowed, not {}:", u.scheme())),
        Err(e) => Err(format!("not a URL: {e}")),
    }
}

/// Links shown as buttons (Slack) and links (email).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Links {
    pub runbook: Option<String>,
    pub conversation: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    pub severity: Severity,
    pub summary: String,
    pub details: String,
    pub source: AlertSource,
    pub dedup_key: String,
    pub labels: BTreeMap<String, String>,
    pub links: Links,
    /// What this alert groups (the monitor's firing rules): a member the open incident has not
    /// notified yet is worth a notice at once, not at the next reminder.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
}

impl Alert {
    /// An alert whose dedup key, when not given, is a hash of its source and summary: the same
    /// problem raised by the same command on the same host is one incident.
    pub fn new(
        severity: Severity,
        summary: impl Into<String>,
        source: AlertSource,
        dedup_key: Option<String>,
    ) -> Alert {
        let summary = summary.into();
        let dedup_key = dedup_key.filter(|k| !k.trim().is_empty()).unwrap_or_else(|| default_key(&source, &summary));
        Alert {
            severity,
            summary,
            details: String::new(),
            source,
            dedup_key,
            labels: BTreeMap::new(),
            links: Links::default(),
            members: Vec::new(),
        }
    }

    /// Links the alert to a conversation: a URL as given (http or https), or an id turned into
    /// a Chatwoot link when `CHATWOOT_BASE_URL` and `CHATWOOT_ACCOUNT_ID` are set.
    pub fn with_conversation(mut self, conv: &str, config: &crate::config::Config) -> Result<Alert, String> {
        if conv.starts_with("http://") || conv.starts_with("https://") {
            self.links.conversation = Some(check_link(conv)?);
        } else if let (Some(base), Some(account)) = (&config.chatwoot_base_url, &config.chatwoot_account_id) {
            let base = base.value.as_str().trim_end_matches('/');
            let id: String = url::form_urlencoded::byte_serialize(conv.as_bytes()).collect();
            self.links.conversation = Some(format!("{base}/app/accounts/{}/conversations/{id}", account.value));
        }
        self.labels.insert("conversation".into(), conv.to_string());
        Ok(self)
    }
}

fn default_key(source: &AlertSource, summary: &str) -> String {
    let mut h = Sha256::new();
    for part in [source.host.as_str(), source.command.as_str(), summary.trim()] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    let digest = h.finalize();
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

pub use crate::output::truncate;

#[cfg(test)]
mod tests {
    use super::*;

    fn src() -> AlertSource {
        AlertSource { host: "cron-1".into(), command: "monitor".into() }
    }

    #[test]
    fn default_dedup_key_depends_on_source_and_summary_only() {
        let a = Alert::new(Severity::Critical, "Ably down", src(), None);
        let b = Alert::new(Severity::Resolved, "Ably down", src(), None);
        let c = Alert::new(Severity::Critical, "Redis down", src(), None);
        assert_eq!(a.dedup_key, b.dedup_key);
        assert_ne!(a.dedup_key, c.dedup_key);
        assert_eq!(a.dedup_key.len(), 16);
        assert_eq!(Alert::new(Severity::Info, "x", src(), Some("k1".into())).dedup_key, "k1");
    }

    #[test]
    fn links_are_http_or_https_only() {
        assert!(check_link("https://wiki.example/rb").is_ok());
        assert!(check_link("javascript:alert(1)").unwrap_err().contains("not javascript:"));
        assert!(check_link("data:text/html,x").is_err());
        assert!(check_link("not a url").is_err());
    }
}
