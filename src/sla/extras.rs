//! Typing indicators and read receipts, as the web app publishes them and a broker's dashboard
//! sees them: a typing start and stop before each customer message and a read receipt after
//! each reply, published on the conversation's channel, each timed from its publish to its
//! arrival at a second subscriber on that channel (the dashboard).

use std::time::{Duration, Instant};

use serde_json::json;

use crate::ably::AblyClient;
use crate::ably::realtime::{RtEvent, Subscription};
use crate::contracts::{Contracts, Extra};

/// What the extras need: the publisher and the dashboard's subscription of one chat.
pub struct Dashboard {
    pub ably: AblyClient,
    pub sub: Subscription,
    pub channel: String,
    pub conversation: u64,
    /// Makes each published id unique to the run, chat and turn.
    pub id_prefix: String,
    pub wait: Duration,
}

/// Why a typing or read event failed: its kind (for the report's grouping) and the detail.
pub type Undelivered = (String, String);

fn fail(kind: String, detail: String) -> Undelivered {
    (kind, detail)
}

impl Dashboard {
    /// Publishes `extra` (about message `about`, for a read receipt) and waits until the
    /// dashboard receives it; returns how long that took, noting presence events seen meanwhile.
    pub async fn deliver(
        &mut self,
        c: &Contracts,
        extra: Extra,
        turn: usize,
        about: Option<u64>,
        presence: &mut PresenceSeen,
    ) -> Result<Duration, Undelivered> {
        let id = format!("{}-{turn}-{}", self.id_prefix, extra.key());
        let mut data = json!({"conversationId": self.conversation, "clientId": "customer"});
        if let Some(m) = about {
            data["messageId"] = json!(m);
        }
        let body = json!({"id": id, "name": c.extra_name(extra), "data": data.to_string(), "encoding": "json",
                          "clientId": "customer"});
        let what = extra.key().replace('_', " ");
        let sent = Instant::now();
        let path = format!("channels/{}/messages", self.channel);
        self.ably.post_json("publish", &path, &body).await.map_err(|e| {
            let kind = match e.code() {
                Some(code) => format!("{what}: publish refused ({code})"),
                None => format!("{what}: publish failed"),
            };
            fail(kind, e.to_string())
        })?;
        let deadline = tokio::time::Instant::from_std(sent + self.wait);
        loop {
            let ev = tokio::time::timeout_at(deadline, self.sub.rx.recv()).await.map_err(|_| {
                let within = crate::duration::format_duration(self.wait);
                fail(format!("{what}: not delivered"), format!("the dashboard did not see {id} within {within}"))
            })?;
            match ev {
                Some(RtEvent::Message(m, at)) if m.id.as_deref() == Some(id.as_str()) => {
                    return Ok(at.duration_since(sent));
                }
                Some(RtEvent::Presence(action, ..)) => presence.note(&action),
                Some(RtEvent::Message(..)) => {}
                Some(RtEvent::Error(e)) => return Err(fail("dashboard: stream error".into(), e)),
                None => return Err(fail("dashboard: stream ended".into(), "the dashboard's SSE stream ended".into())),
            }
        }
    }

    /// Presence events already waiting on the dashboard's stream.
    pub fn drain_presence(&mut self, presence: &mut PresenceSeen) {
        while let Ok(ev) = self.sub.rx.try_recv() {
            if let RtEvent::Presence(action, ..) = ev {
                presence.note(&action);
            }
        }
    }
}

/// Presence events the dashboard saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PresenceSeen {
    pub enter: u64,
    pub leave: u64,
}

impl PresenceSeen {
    pub fn note(&mut self, action: &str) {
        match action {
            "enter" => self.enter += 1,
            "leave" => self.leave += 1,
            _ => {}
        }
    }

    pub fn add(&mut self, o: PresenceSeen) {
        self.enter = self.enter.saturating_add(o.enter);
        self.leave = self.leave.saturating_add(o.leave);
    }
}
