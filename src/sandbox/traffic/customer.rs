//! One simulated customer, from arrival to leaving: a contact and a conversation through
//! Chatwoot's public API, the transport the app chooses, each turn (think, type, send, get the
//! reply, read it) and the flag looked at again every `flag_refresh`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Exp};
use serde_json::json;

use super::truth::{Conv, Produced, Transport};
use super::{Traffic, unit};
use crate::ably::AblyClient;
use crate::ably::realtime::{self, RtEvent, Subscription};
use crate::chatwoot::{ChatwootClient, MESSAGE_OUTGOING};
use crate::contracts::{EventKind, Extra};
use crate::rollout::reader::Why;
use crate::sandbox::State;

/// What one customer will do, drawn at its arrival from the traffic's seeded generator.
pub struct Plan {
    pub n: u64,
    pub thinks: Vec<Duration>,
    pub dashboard: bool,
}

impl Plan {
    pub fn draw(o: &super::TrafficOptions, rng: &mut StdRng, n: u64) -> Plan {
        let turns = rng.random_range(o.turns.0..=o.turns.1);
        let mean = o.think.as_secs_f64().max(0.001);
        // The mean is positive, so the distribution exists.
        let exp = Exp::new(1.0 / mean).ok();
        let thinks =
            (0..turns).map(|_| Duration::from_secs_f64(exp.map_or(mean, |e| e.sample(rng)).min(mean * 10.0))).collect();
        Plan { n, thinks, dashboard: unit(rng) < o.dashboard_share }
    }
}

/// The customer's connections on real-time: its own subscription, and the dashboard's.
struct Realtime {
    own: Subscription,
    _dashboard: Option<Subscription>,
}

/// Everything a customer's steps share.
struct Ctx {
    state: Arc<State>,
    t: Arc<Traffic>,
    cw: ChatwootClient,
    ably: AblyClient,
    http: reqwest::Client,
    base: url::Url,
    conv: u64,
    contact: String,
    channel: String,
    client: String,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The simulated app's clients, shared by every customer.
#[derive(Clone)]
pub struct Clients {
    cw: ChatwootClient,
    ably: AblyClient,
    http: reqwest::Client,
    base: url::Url,
}

impl Clients {
    pub fn new(state: &State) -> Result<Clients, String> {
        let base = state.self_url();
        let timeout = state.opts.connect_timeout.max(Duration::from_secs(5));
        let cw = ChatwootClient::new(
            base.clone(),
            Some(state.inbox.clone()),
            Some(state.api_token.clone().into()),
            Some(state.opts.account_id),
            timeout,
        );
        let ably = AblyClient::new(base.clone(), Some(state.key.clone()), timeout).map_err(|e| e.to_string())?;
        Ok(Clients { cw, ably, http: crate::http::streaming_client(timeout), base })
    }
}

pub async fn run(state: Arc<State>, t: Arc<Traffic>, plan: Plan) {
    let Some(Clients { cw, ably, http, base }) = t.clients.get().cloned() else { return };
    let client = format!("customer-{}", plan.n);
    let contact = match cw.create_contact(&format!("sbx-traffic-{}", plan.n), &format!("Customer {}", plan.n)).await {
        Ok(c) => c,
        Err(e) => return super::super::lock(&t.truth).failed_early(format!("contact: {e}")),
    };
    let conv = match cw.create_conversation(&contact.source_id).await {
        Ok(c) => c,
        Err(e) => return super::super::lock(&t.truth).failed_early(format!("conversation: {e}")),
    };
    let channel = state.opts.contracts.channel_of(&conv.id.to_string());
    let ctx = Ctx { state, t, cw, ably, http, base, conv: conv.id, contact: contact.source_id, channel, client };
    ctx.truth().begin(Conv {
        id: conv.id,
        customer: plan.n,
        started_ms: now_ms(),
        ended_ms: None,
        transport: Transport::Polling,
        why: Why::FlagOff,
        subscribed: false,
        dashboard: plan.dashboard,
        timeline: Vec::new(),
        events: Default::default(),
        failure: None,
    });
    let mut rt = None;
    // The sandbox stopping ends every customer where it is (a reply awaited included).
    let failure = tokio::select! {
        r = ctx.turns(&plan, &mut rt) => r.err(),
        _ = ctx.t.stop.cancelled() => Some("stopped: the sandbox shut down".into()),
    };
    ctx.leave(&mut rt);
    ctx.truth().end(ctx.conv, now_ms(), failure);
}

impl Ctx {
    fn truth(&self) -> std::sync::MutexGuard<'_, super::Truth> {
        super::super::lock(&self.t.truth)
    }

    /// The app's choice now: the flag (or its absence), unless the app ignores it.
    async fn choose(&self) -> (Transport, Why) {
        if self.t.control.borrow().ignore_flag {
            return (Transport::Realtime, Why::IgnoringFlag);
        }
        let (on, why) = self.t.flag.read().await.decide(&self.conv.to_string());
        (if on { Transport::Realtime } else { Transport::Polling }, why)
    }

    /// Puts the conversation on the transport the app chooses now, connecting or disconnecting.
    async fn follow_flag(&self, plan: &Plan, rt: &mut Option<Realtime>) -> Result<(), String> {
        let (want, why) = self.choose().await;
        let now = match rt {
            Some(_) => Transport::Realtime,
            None => Transport::Polling,
        };
        let first = self.truth().live_timeline_empty(self.conv);
        if want != now || first {
            self.truth().put_on(self.conv, now_ms(), want, why);
        }
        match (want, rt.is_some()) {
            (Transport::Realtime, false) => *rt = Some(self.connect(plan).await?),
            (Transport::Polling, true) => self.leave(rt),
            _ => {}
        }
        Ok(())
    }

    async fn connect(&self, plan: &Plan) -> Result<Realtime, String> {
        let sub = || {
            realtime::subscribe(
                self.http.clone(),
                self.base.clone(),
                self.state.key.clone(),
                self.channel.clone(),
                self.state.opts.connect_timeout.max(Duration::from_secs(5)),
            )
        };
        let own = sub().await.map_err(|e| format!("subscribe: {e}"))?;
        self.truth().subscribed(self.conv, true);
        // A realtime connection enters presence (SSE cannot: the sandbox does it as Ably would
        // for the app's realtime client).
        super::super::lock(&self.state.channels).presence(&self.channel, &self.client, true, now_ms());
        self.truth().event(self.conv, Produced::PresenceEnter);
        let dashboard = match plan.dashboard {
            true => Some(sub().await.map_err(|e| format!("dashboard subscribe: {e}"))?),
            false => None,
        };
        Ok(Realtime { own, _dashboard: dashboard })
    }

    fn leave(&self, rt: &mut Option<Realtime>) {
        if rt.take().is_some() {
            super::super::lock(&self.state.channels).presence(&self.channel, &self.client, false, now_ms());
            self.truth().event(self.conv, Produced::PresenceLeave);
            self.truth().subscribed(self.conv, false);
        }
    }

    async fn turns(&self, plan: &Plan, rt: &mut Option<Realtime>) -> Result<(), String> {
        self.follow_flag(plan, rt).await?;
        let refresh = self.t.opts.flag_refresh;
        let mut next_look = Instant::now() + refresh;
        for (turn, think) in plan.thinks.iter().enumerate() {
            let until = Instant::now() + *think;
            // Thinking; the app looks at the flag again when its refresh comes round.
            while Instant::now() < until {
                let wake = until.min(next_look);
                tokio::select! {
                    _ = tokio::time::sleep_until(wake.into()) => {}
                    _ = self.t.stop.cancelled() => return Err("stopped".into()),
                }
                if Instant::now() >= next_look {
                    self.follow_flag(plan, rt).await?;
                    next_look += refresh;
                }
            }
            if rt.is_some() {
                self.publish(Extra::TypingStart, turn, None).await?;
                self.publish(Extra::TypingStop, turn, None).await?;
            }
            let text = format!("Hello, this is turn {} of customer {}", turn + 1, plan.n);
            let msg =
                self.cw.post_message(&self.contact, self.conv, &text, None).await.map_err(|e| format!("post: {e}"))?;
            self.truth().event(self.conv, Produced::Message);
            let reply = match rt {
                Some(r) => self.await_realtime(&mut r.own, msg.id).await?,
                None => self.await_poll(msg.id).await?,
            };
            self.truth().event(self.conv, Produced::Reply);
            if rt.is_some() {
                self.publish(Extra::Read, turn, reply).await?;
            }
        }
        Ok(())
    }

    /// Publishes a typing or read event over Ably REST, as the app does for its customer.
    async fn publish(&self, e: Extra, turn: usize, about: Option<u64>) -> Result<(), String> {
        let c = &self.state.opts.contracts;
        let mut data = json!({"conversationId": self.conv, "clientId": self.client});
        if let Some(m) = about {
            data["messageId"] = json!(m);
        }
        let body = json!({"id": format!("sbx-{}-{turn}-{}", self.client, e.key()), "name": c.extra_name(e),
                          "data": data.to_string(), "encoding": "json", "clientId": self.client});
        let path = format!("channels/{}/messages", self.channel);
        self.ably.post_json("publish", &path, &body).await.map_err(|err| format!("{}: {err}", e.key()))?;
        let p = match e {
            Extra::TypingStart => Produced::TypingStart,
            Extra::TypingStop => Produced::TypingStop,
            Extra::Read => Produced::Read,
        };
        self.truth().event(self.conv, p);
        Ok(())
    }

    /// The reply to `msg` on the customer's subscription; its message id.
    async fn await_realtime(&self, sub: &mut Subscription, msg: u64) -> Result<Option<u64>, String> {
        let c = &self.state.opts.contracts;
        let deadline = tokio::time::Instant::now() + self.t.opts.reply_timeout;
        loop {
            let ev = tokio::time::timeout_at(deadline, sub.rx.recv())
                .await
                .map_err(|_| "no reply: timed out".to_string())?;
            match ev {
                Some(RtEvent::Message(m, _))
                    if c.event_kind(m.name.as_deref().unwrap_or_default()) == Some(EventKind::Ai) =>
                {
                    let d = m.decoded_data();
                    // The reply field names our message; under `first-after`, any reply answers.
                    let answers = c.reply.field().is_none() || c.replied_to(&d) == Some(msg.to_string());
                    if answers {
                        return Ok(d.get("messageId").and_then(|v| v.as_u64()));
                    }
                }
                Some(RtEvent::Error(e)) => return Err(format!("realtime: {e}")),
                None => return Err("realtime: stream ended".into()),
                Some(_) => {}
            }
        }
    }

    /// Polls Chatwoot at the app's interval until an outgoing message newer than `msg`.
    async fn await_poll(&self, msg: u64) -> Result<Option<u64>, String> {
        let deadline = Instant::now() + self.t.opts.reply_timeout;
        loop {
            let list = self.cw.list_messages(&self.contact, self.conv).await.map_err(|e| format!("poll: {e}"))?;
            self.truth().event(self.conv, Produced::Poll);
            if let Some(m) = list.iter().find(|m| m.message_type == MESSAGE_OUTGOING && m.id > msg) {
                return Ok(Some(m.id));
            }
            if Instant::now() + self.t.opts.poll_interval > deadline {
                return Err("no reply: timed out".into());
            }
            tokio::time::sleep(self.t.opts.poll_interval).await;
        }
    }
}
