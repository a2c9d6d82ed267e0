//! The sandbox's Chatwoot data: one account, one API-channel inbox, contacts keyed by their
//! `source_id`, conversations by display id, messages with account-wide integer ids.

use std::collections::HashMap;

use serde_json::{Value, json};

pub const INBOX_ID: u64 = 1;

#[derive(Debug, Clone)]
pub struct Contact {
    pub id: u64,
    pub source_id: String,
    pub pubsub_token: String,
    pub identifier: Option<String>,
    pub name: String,
    pub email: Option<String>,
    pub phone_number: Option<String>,
}

impl Contact {
    /// `push_event_data` of a contact (the `sender` of incoming messages).
    pub fn push_event_data(&self) -> Value {
        json!({
            "additional_attributes": {}, "custom_attributes": {}, "email": self.email, "id": self.id,
            "identifier": self.identifier, "name": self.name, "phone_number": self.phone_number,
            "thumbnail": "", "blocked": false, "type": "contact"
        })
    }
}

#[derive(Debug, Clone)]
pub struct ChatMessage {
    pub id: u64,
    pub content: String,
    pub message_type: u8,
    pub created_at: i64,
    pub conversation_id: u64,
    pub sender: Value,
    pub echo_id: Option<String>,
}

impl ChatMessage {
    /// The public API's message view (`public/api/v1/models/_message.json.jbuilder`).
    pub fn public_json(&self) -> Value {
        json!({
            "id": self.id, "content": self.content, "message_type": self.message_type,
            "content_type": "text", "content_attributes": {}, "created_at": self.created_at,
            "conversation_id": self.conversation_id, "sender": self.sender,
        })
    }

    /// The Application API's message view (`api/v1/models/_message.json.jbuilder`).
    pub fn app_json(&self) -> Value {
        let mut v = self.public_json();
        v["inbox_id"] = json!(INBOX_ID);
        v["status"] = json!("sent");
        v["private"] = json!(false);
        v["source_id"] = Value::Null;
        if let Some(e) = &self.echo_id {
            v["echo_id"] = json!(e);
        }
        v
    }
}

#[derive(Debug, Clone)]
pub struct Conversation {
    pub display_id: u64,
    pub uuid: String,
    pub contact_source_id: String,
    pub status: String,
    pub messages: Vec<ChatMessage>,
    pub labels: Vec<String>,
}

#[derive(Debug)]
pub struct Store {
    next_contact: u64,
    next_conversation: u64,
    next_message: u64,
    pub contacts: HashMap<String, Contact>,
    pub conversations: HashMap<u64, Conversation>,
}

impl Store {
    pub fn new() -> Self {
        Store {
            next_contact: 0,
            next_conversation: 0,
            next_message: 0,
            contacts: HashMap::new(),
            conversations: HashMap::new(),
        }
    }

    pub fn add_contact(&mut self, body: &Value) -> Contact {
        self.next_contact += 1;
        let s = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_string);
        let source_id = s("source_id").unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let c = Contact {
            id: self.next_contact,
            source_id: source_id.clone(),
            pubsub_token: super::channels::random_id() + &super::channels::random_id(),
            identifier: s("identifier"),
            name: s("name").unwrap_or_else(|| format!("contact-{}", self.next_contact)),
            email: s("email"),
            phone_number: s("phone_number"),
        };
        self.contacts.insert(source_id, c.clone());
        c
    }

    pub fn add_conversation(&mut self, contact: &str) -> u64 {
        self.next_conversation += 1;
        let id = self.next_conversation;
        self.conversations.insert(
            id,
            Conversation {
                display_id: id,
                uuid: uuid::Uuid::new_v4().to_string(),
                contact_source_id: contact.to_string(),
                status: "open".into(),
                messages: Vec::new(),
                labels: Vec::new(),
            },
        );
        id
    }

    pub fn add_message(
        &mut self,
        conversation: u64,
        content: &str,
        message_type: u8,
        sender: Value,
        echo_id: Option<String>,
    ) -> Option<ChatMessage> {
        let conv = self.conversations.get_mut(&conversation)?;
        self.next_message += 1;
        let m = ChatMessage {
            id: self.next_message,
            content: content.to_string(),
            message_type,
            created_at: chrono::Utc::now().timestamp(),
            conversation_id: conversation,
            sender,
            echo_id,
        };
        conv.messages.push(m.clone());
        Some(m)
    }

    /// The public view of a conversation (`public/api/v1/models/_conversation.json.jbuilder`).
    pub fn conversation_json(&self, c: &Conversation) -> Value {
        let contact = self.contacts.get(&c.contact_source_id);
        json!({
            "id": c.display_id, "uuid": c.uuid, "inbox_id": INBOX_ID,
            "contact_last_seen_at": 0, "status": c.status, "agent_last_seen_at": 0,
            "messages": c.messages.iter().map(ChatMessage::public_json).collect::<Vec<_>>(),
            "contact": contact.map(|ct| json!({
                "id": ct.id, "name": ct.name, "email": ct.email, "phone_number": ct.phone_number,
                "identifier": ct.identifier, "custom_attributes": {}, "additional_attributes": {}
            })),
        })
    }
}
