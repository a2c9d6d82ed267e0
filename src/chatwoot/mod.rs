//! Chatwoot: the public Client API of an API-channel inbox (what a customer does) and the few
//! Application API calls broker-ops needs (read replies, resolve and label smoke chats).
//! Shapes follow docs/sandbox.md ("Chatwoot"): integer
//! `message_type`, epoch-second `created_at`, `source_id` as the contact identifier, display ids.

use std::time::Duration;

use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use url::Url;

pub const MESSAGE_INCOMING: u8 = 0;
pub const MESSAGE_OUTGOING: u8 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Contact {
    pub source_id: String,
    #[serde(default)]
    pub pubsub_token: Option<String>,
    pub id: u64,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Conversation {
    pub id: u64,
    #[serde(default)]
    pub uuid: Option<String>,
    pub inbox_id: u64,
    pub status: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChatMessage {
    pub id: u64,
    #[serde(default)]
    pub content: Option<String>,
    pub message_type: u8,
    pub created_at: i64,
    pub conversation_id: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ChatwootError {
    #[error("Chatwoot {op} {url}: HTTP {status}: {body}")]
    Http { op: &'static str, url: String, status: u16, body: String },
    #[error("Chatwoot {op} {url}: {detail}")]
    Transport { op: &'static str, url: String, detail: String },
    #[error("Chatwoot {op} {url}: unexpected response: {detail}")]
    Protocol { op: &'static str, url: String, detail: String },
    #[error("Chatwoot {op}: {what} is required")]
    NotConfigured { op: &'static str, what: &'static str },
}

impl ChatwootError {
    pub fn status(&self) -> Option<u16> {
        match self {
            ChatwootError::Http { status, .. } => Some(*status),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ChatwootClient {
    base: Url,
    inbox: Option<String>,
    api_token: Option<SecretString>,
    account_id: Option<u64>,
    http: reqwest::Client,
}

impl ChatwootClient {
    pub fn new(
        base: Url,
        inbox: Option<String>,
        api_token: Option<SecretString>,
        account_id: Option<u64>,
        timeout: Duration,
    ) -> Self {
        ChatwootClient { base, inbox, api_token, account_id, http: crate::http::client(timeout) }
    }

    fn url(&self, path: &str) -> Url {
        self.base.join(path.trim_start_matches('/')).unwrap_or_else(|_| self.base.clone())
    }

    fn inbox_path(&self, op: &'static str) -> Result<String, ChatwootError> {
        let inbox =
            self.inbox.as_deref().ok_or(ChatwootError::NotConfigured { op, what: "CHATWOOT_INBOX_IDENTIFIER" })?;
        Ok(format!("public/api/v1/inboxes/{}", enc(inbox)))
    }

    fn account_path(&self, op: &'static str) -> Result<String, ChatwootError> {
        let id = self.account_id.ok_or(ChatwootError::NotConfigured { op, what: "CHATWOOT_ACCOUNT_ID" })?;
        Ok(format!("api/v1/accounts/{id}"))
    }

    async fn call<T: for<'de> Deserialize<'de>>(
        &self,
        op: &'static str,
        method: Method,
        path: &str,
        body: Option<&Value>,
        app_api: bool,
    ) -> Result<T, ChatwootError> {
        let url = self.url(path);
        let mut rb = self.http.request(method, url.clone()).header("Accept", "application/json");
        if app_api {
            let token =
                self.api_token.as_ref().ok_or(ChatwootError::NotConfigured { op, what: "CHATWOOT_API_TOKEN" })?;
            rb = rb.header("api_access_token", token.expose_secret());
        }
        if let Some(b) = body {
            rb = rb.json(b);
        }
        let shown = redact_path(&url);
        let resp = rb.send().await.map_err(|e| ChatwootError::Transport {
            op,
            url: shown.clone(),
            detail: crate::http::describe(&e),
        })?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| ChatwootError::Transport {
            op,
            url: shown.clone(),
            detail: crate::http::describe(&e),
        })?;
        if !status.is_success() {
            let body = String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned();
            return Err(ChatwootError::Http { op, url: shown, status: status.as_u16(), body });
        }
        serde_json::from_slice(&bytes).map_err(|e| ChatwootError::Protocol { op, url: shown, detail: e.to_string() })
    }

    /// `GET /api`: Chatwoot's version and health answer (no auth).
    pub async fn api_info(&self) -> Result<Value, ChatwootError> {
        self.call("GET /api", Method::GET, "api", None, false).await
    }

    /// `GET /api/v1/profile`: checks the API token.
    pub async fn profile(&self) -> Result<Value, ChatwootError> {
        self.call("GET /api/v1/profile", Method::GET, "api/v1/profile", None, true).await
    }

    pub async fn create_contact(&self, identifier: &str, name: &str) -> Result<Contact, ChatwootError> {
        let op = "create contact";
        let path = format!("{}/contacts", self.inbox_path(op)?);
        self.call(op, Method::POST, &path, Some(&json!({"identifier": identifier, "name": name})), false).await
    }

    pub async fn create_conversation(&self, contact: &str) -> Result<Conversation, ChatwootError> {
        let op = "create conversation";
        let path = format!("{}/contacts/{}/conversations", self.inbox_path(op)?, enc(contact));
        self.call(op, Method::POST, &path, Some(&json!({})), false).await
    }

    pub async fn post_message(
        &self,
        contact: &str,
        conversation: u64,
        content: &str,
        echo_id: Option<&str>,
    ) -> Result<ChatMessage, ChatwootError> {
        let op = "post message";
        let path = format!("{}/contacts/{}/conversations/{conversation}/messages", self.inbox_path(op)?, enc(contact));
        let mut body = json!({"content": content});
        if let Some(e) = echo_id {
            body["echo_id"] = json!(e);
        }
        self.call(op, Method::POST, &path, Some(&body), false).await
    }

    /// The latest 20 messages, ascending (the public API's only listing).
    pub async fn list_messages(&self, contact: &str, conversation: u64) -> Result<Vec<ChatMessage>, ChatwootError> {
        let op = "list messages";
        let path = format!("{}/contacts/{}/conversations/{conversation}/messages", self.inbox_path(op)?, enc(contact));
        self.call(op, Method::GET, &path, None, false).await
    }

    /// Application API: messages with id greater than or equal to `after`, ascending.
    pub async fn messages_after(&self, conversation: u64, after: u64) -> Result<Vec<ChatMessage>, ChatwootError> {
        let op = "list messages (application API)";
        let path = format!("{}/conversations/{conversation}/messages?after={after}", self.account_path(op)?);
        let v: Value = self.call(op, Method::GET, &path, None, true).await?;
        serde_json::from_value(v.get("payload").cloned().unwrap_or(Value::Null)).map_err(|e| ChatwootError::Protocol {
            op,
            url: path,
            detail: e.to_string(),
        })
    }

    /// Application API: sets a conversation's status (`open`, `resolved`, `pending`).
    pub async fn set_status(&self, conversation: u64, status: &str) -> Result<Value, ChatwootError> {
        let op = "toggle status";
        let path = format!("{}/conversations/{conversation}/toggle_status", self.account_path(op)?);
        self.call(op, Method::POST, &path, Some(&json!({"status": status})), true).await
    }

    /// Application API: adds labels to a conversation.
    pub async fn add_labels(&self, conversation: u64, labels: &[&str]) -> Result<Value, ChatwootError> {
        let op = "add labels";
        let path = format!("{}/conversations/{conversation}/labels", self.account_path(op)?);
        self.call(op, Method::POST, &path, Some(&json!({"labels": labels})), true).await
    }
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The inbox identifier and contact identifiers are bearer credentials of the public API, so
/// messages show the path only up to the inbox segment.
fn redact_path(url: &Url) -> String {
    let mut u = url.clone();
    let path = u.path().to_string();
    if let Some(rest) = path.strip_prefix("/public/api/v1/inboxes/") {
        let tail: Vec<&str> = rest.split('/').skip(1).collect();
        let tail: Vec<&str> = tail
            .iter()
            .enumerate()
            .map(|(i, seg)| if i == 1 && tail.first() == Some(&"contacts") { "***" } else { *seg })
            .collect();
        u.set_path(&format!("/public/api/v1/inboxes/***/{}", tail.join("/")));
    }
    u.set_query(None);
    crate::redact::url(u.as_str())
}
