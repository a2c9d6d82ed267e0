//! What the smoke customers say: `--scenario FILE` (YAML or JSON: a list of chats, each a list
//! of customer messages) or the built-in mortgage-broker questions.

use std::path::Path;

/// One chat's customer messages, in order.
pub type Chat = Vec<String>;

#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub chats: Vec<Chat>,
}

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("scenario {path}: {reason}")]
    Invalid { path: String, reason: String },
}

const DEFAULT: &[&str] = &[
    "Hi, I'm looking to buy my first home. How much deposit do I need?",
    "What's the difference between a fixed and a variable rate?",
    "Can I get pre-approval before I find a property?",
    "I'm self-employed. What documents will a lender ask for?",
    "Is it worth refinancing if my fixed term ends next month?",
    "How does an offset account reduce the interest I pay?",
    "What is lenders mortgage insurance and can I avoid it?",
    "Can I use my super or a family guarantee for the deposit?",
    "How long does settlement usually take after approval?",
    "What fees should I expect when switching lenders?",
];

impl Default for Scenario {
    /// Ten realistic mortgage-broker questions, one per chat.
    fn default() -> Self {
        Scenario { chats: DEFAULT.iter().map(|q| vec![q.to_string()]).collect() }
    }
}

impl Scenario {
    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        let shown = path.display().to_string();
        let invalid = |reason: String| ScenarioError::Invalid { path: shown.clone(), reason };
        let text = std::fs::read_to_string(path).map_err(|e| invalid(e.to_string()))?;
        let is_json = path.extension().is_some_and(|e| e == "json") || text.trim_start().starts_with('[');
        let chats: Vec<Chat> = if is_json {
            serde_json::from_str(&text).map_err(|e| invalid(format!("invalid JSON: {e}")))?
        } else {
            serde_norway::from_str(&text).map_err(|e| invalid(format!("invalid YAML: {e}")))?
        };
        if chats.is_empty() {
            return Err(invalid("no chats: expected a list of chats, each a list of customer messages".into()));
        }
        if let Some(i) = chats.iter().position(|c| c.is_empty() || c.iter().any(|m| m.trim().is_empty())) {
            return Err(invalid(format!("chat {} is empty or has an empty message", i + 1)));
        }
        Ok(Scenario { chats })
    }

    /// The messages of chat number `i` for `turns` turns: the scenario's chats are used in
    /// turn, and a chat's messages repeat when it has fewer than `turns`.
    pub fn messages(&self, i: usize, turns: usize) -> Vec<String> {
        let chat = &self.chats[i % self.chats.len()];
        (0..turns.max(1)).map(|t| chat[t % chat.len()].clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_yaml_and_json_and_refuses_empty_chats() {
        let dir = tempfile::tempdir().unwrap();
        let y = dir.path().join("s.yaml");
        std::fs::write(&y, "- [\"hello\", \"and then?\"]\n- - second chat\n").unwrap();
        let s = Scenario::load(&y).unwrap();
        assert_eq!(s.chats, vec![vec!["hello".to_string(), "and then?".into()], vec!["second chat".into()]]);
        assert_eq!(s.messages(1, 3), vec!["second chat"; 3]);
        let j = dir.path().join("s.json");
        std::fs::write(&j, r#"[["a"],[]]"#).unwrap();
        assert!(Scenario::load(&j).unwrap_err().to_string().contains("chat 2 is empty"));
        std::fs::write(&j, r#"{"not": "a list"}"#).unwrap();
        assert!(Scenario::load(&j).unwrap_err().to_string().contains("invalid JSON"));
        assert_eq!(Scenario::default().chats.len(), 10);
    }
}
