//! `broker-ops alert`: Slack against a local receiver that answers as each test asks (200,
//! 429 + Retry-After, 500, 400 invalid_payload, or never), email against a real maildev, state
//! in the real Redis (a key prefix per test) or a temporary state directory.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::support::{MailDev, bin, free_port, prefix, redis_url, run, schema_check};

/// What the receiver answers to the next request.
#[derive(Clone, Debug)]
enum Answer {
    Ok,
    TooMany(u64),
    ServerError,
    InvalidPayload,
    Hang,
}

#[derive(Clone, Debug)]
struct Seen {
    at: Instant,
    body: Value,
    auth: Option<String>,
}

#[derive(Clone, Default)]
struct Receiver {
    script: Arc<Mutex<Vec<Answer>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Answer as chat.postMessage ({"ok":true,"ts":...}) instead of an incoming webhook ("ok").
    api: bool,
}

const SECRET_PATH: &str = "services/T0SECRET/B0SECRET/xoxsecretwebhookpath";

impl Receiver {
    async fn start(script: Vec<Answer>) -> (Receiver, u16) {
        Self::start_on(free_port(), script, false).await
    }

    async fn start_on(port: u16, script: Vec<Answer>, api: bool) -> (Receiver, u16) {
        let r = Receiver { script: Arc::new(Mutex::new(script)), api, ..Receiver::default() };
        let app = axum::Router::new().route("/{*path}", axum::routing::post(answer)).with_state(r.clone());
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (r, port)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn answer(State(r): State<Receiver>, headers: HeaderMap, body: String) -> Response {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string);
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let n = r.seen.lock().unwrap().len();
    r.seen.lock().unwrap().push(Seen { at: Instant::now(), body, auth });
    let next = {
        let mut s = r.script.lock().unwrap();
        if s.is_empty() { Answer::Ok } else { s.remove(0) }
    };
    match next {
        Answer::Ok if r.api => {
            axum::Json(json!({"ok": true, "channel": "C1", "ts": format!("1700000000.00010{n}")})).into_response()
        }
        Answer::Ok => (StatusCode::OK, "ok").into_response(),
        Answer::TooMany(secs) => {
            (StatusCode::TOO_MANY_REQUESTS, [("retry-after", secs.to_string())], "rate_limited").into_response()
        }
        Answer::ServerError => (StatusCode::INTERNAL_SERVER_ERROR, "rollup_error").into_response(),
        Answer::InvalidPayload => (StatusCode::BAD_REQUEST, "invalid_payload").into_response(),
        Answer::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::OK.into_response()
        }
    }
}

/// The binary with the alert environment of one test: its own Redis key prefix and state dir.
struct Setup {
    dir: tempfile::TempDir,
    prefix: String,
    env: Vec<(String, String)>,
}

impl Setup {
    fn new(name: &str) -> Setup {
        let prefix = prefix(name);
        let env = vec![("REDIS_URL".into(), redis_url()), ("REDIS_KEY_PREFIX".into(), prefix.clone())];
        Setup { dir: tempfile::tempdir().unwrap(), prefix, env }
    }

    fn slack(mut self, port: u16) -> Setup {
        self.env.push(("SLACK_WEBHOOK_URL".into(), format!("http://127.0.0.1:{port}/{SECRET_PATH}")));
        self
    }

    fn env(mut self, k: &str, v: &str) -> Setup {
        self.env.retain(|(name, _)| name != k);
        self.env.push((k.into(), v.into()));
        self
    }

    async fn alert(&self, args: &[&str]) -> crate::support::Run {
        let mut cmd = bin(self.dir.path());
        cmd.envs(self.env.iter().cloned()).env("BROKER_OPS_STATE_DIR", self.dir.path().join("state"));
        cmd.arg("alert").args(args);
        run(cmd).await
    }

    async fn json(&self, args: &[&str]) -> (i32, Value) {
        let mut all = vec!["-o", "json"];
        all.extend_from_slice(args);
        let r = self.alert(&all).await;
        let doc = serde_json::from_str(&r.stdout)
            .unwrap_or_else(|_| panic!("JSON from {args:?}: {} / {}", r.stdout, r.stderr));
        (r.code, doc)
    }
}

fn outcomes(doc: &Value) -> Vec<(String, String)> {
    doc["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["kind"].as_str().unwrap().to_string(), d["outcome"].as_str().unwrap().to_string()))
        .collect()
}

fn header(seen: &Seen) -> String {
    seen.body["attachments"][0]["blocks"][0]["text"]["text"].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn one_notice_per_incident_a_reminder_after_the_interval_and_one_resolved_notice() {
    let (rx, port) = Receiver::start(vec![]).await;
    let s = Setup::new("alert-dedup").slack(port);
    let crit = ["send", "--severity", "critical", "--summary", "Ably health failing", "--dedup-key", "ably-health"];

    let (code, doc) = s.json(&crit).await;
    assert_eq!(code, 0, "{doc:#}");
    schema_check("alert", &doc);
    assert_eq!(doc["decision"], "open");
    assert_eq!(outcomes(&doc), [("opened".into(), "delivered".into())]);
    assert_eq!(rx.seen().len(), 1);
    assert_eq!(header(&rx.seen()[0]), "CRITICAL: Ably health failing");
    assert_eq!(rx.seen()[0].body["attachments"][0]["color"], "#d00000");

    // The same alert again within the repeat interval: nothing is sent.
    let (code, doc) = s.json(&crit).await;
    assert_eq!((code, doc["decision"].as_str()), (0, Some("quiet")));
    assert!(doc["next_reminder_at"].is_string());
    assert_eq!(rx.seen().len(), 1);

    // After the interval (here: zero), a reminder.
    let mut remind = crit.to_vec();
    remind.extend(["--repeat-interval", "0s"]);
    let (code, doc) = s.json(&remind).await;
    assert_eq!((code, doc["decision"].as_str()), (0, Some("remind")));
    assert_eq!(rx.seen().len(), 2);
    assert!(header(&rx.seen()[1]).starts_with("Still open: CRITICAL"), "{}", header(&rx.seen()[1]));

    let resolved = ["send", "--severity", "resolved", "--summary", "Ably health failing", "--dedup-key", "ably-health"];
    let (code, doc) = s.json(&resolved).await;
    assert_eq!((code, doc["decision"].as_str()), (0, Some("resolve")));
    assert_eq!(rx.seen().len(), 3);
    assert_eq!(rx.seen()[2].body["attachments"][0]["color"], "#2eb886");

    // Resolved again: nothing is open, nothing is sent.
    let (code, doc) = s.json(&resolved).await;
    assert_eq!((code, doc["decision"].as_str()), (0, Some("nothing-open")));
    assert_eq!(rx.seen().len(), 3);
}

#[tokio::test]
async fn an_escalation_is_sent_at_once() {
    let (rx, port) = Receiver::start(vec![]).await;
    let s = Setup::new("alert-escalate").slack(port);
    let (_, doc) =
        s.json(&["send", "--severity", "warning", "--summary", "Queue backing up", "--dedup-key", "q"]).await;
    assert_eq!(doc["decision"], "open");
    let (code, doc) =
        s.json(&["send", "--severity", "critical", "--summary", "Queue backing up", "--dedup-key", "q"]).await;
    assert_eq!((code, doc["decision"].as_str()), (0, Some("escalate")));
    assert_eq!(rx.seen().len(), 2);
    assert!(header(&rx.seen()[1]).starts_with("Escalated: CRITICAL"));
}

#[tokio::test]
async fn slack_429_is_honoured_with_retry_after_and_500_is_retried() {
    let (rx, port) = Receiver::start(vec![Answer::TooMany(1), Answer::ServerError]).await;
    let s = Setup::new("alert-429").slack(port);
    let (code, doc) = s.json(&["send", "--severity", "warning", "--summary", "slow", "--dedup-key", "k429"]).await;
    assert_eq!(code, 0, "{doc:#}");
    assert_eq!(doc["deliveries"][0]["attempts"], 3);
    let seen = rx.seen();
    assert_eq!(seen.len(), 3);
    // The second attempt waited for Retry-After: 1.
    assert!(seen[1].at - seen[0].at >= Duration::from_millis(990), "{:?}", seen[1].at - seen[0].at);
    assert_eq!(seen[0].body, seen[2].body, "the retried payload is the same message");
}

#[tokio::test]
async fn slack_invalid_payload_is_reported_and_not_retried_nor_queued() {
    let (rx, port) = Receiver::start(vec![Answer::InvalidPayload]).await;
    let s = Setup::new("alert-400").slack(port);
    let (code, doc) = s.json(&["send", "--severity", "critical", "--summary", "x", "--dedup-key", "k400"]).await;
    assert_eq!(code, 1);
    assert_eq!(doc["deliveries"][0]["outcome"], "rejected");
    let detail = doc["deliveries"][0]["detail"].as_str().unwrap();
    assert!(detail.contains("400 invalid_payload") && detail.contains("slack"), "{detail}");
    assert_eq!(rx.seen().len(), 1);
    assert_eq!(doc["outbox"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn an_undeliverable_notice_waits_in_the_outbox_and_the_next_run_delivers_it_once_in_order() {
    let port = free_port();
    let s = Setup::new("alert-outbox").slack(port).env("BROKER_OPS_TIMEOUT", "500ms");
    let quick = ["--retry-for", "1s", "--attempts", "2"];
    let mut first = vec!["send", "--severity", "critical", "--summary", "Redis down", "--dedup-key", "redis"];
    first.extend(quick);
    // Nothing listens on the port: the first run queues and exits 1.
    let r = s.alert(&first).await;
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("queued") && r.stdout.contains("outbox    1 waiting"), "{}", r.stdout);
    let (code, doc) = s.json(&["outbox"]).await;
    assert_eq!(code, 0);
    schema_check("alert", &doc);
    assert_eq!(doc["outbox"][0]["kind"], "opened");
    assert_eq!(doc["outbox"][0]["delivery"]["channel"], "slack");

    // Slack is back; the next alert run delivers the waiting notice first, then its own.
    let (rx, _) = Receiver::start_on(port, vec![], false).await;
    let mut second = vec!["send", "--severity", "warning", "--summary", "Queue slow", "--dedup-key", "queue"];
    second.extend(quick);
    let (code, doc) = s.json(&second).await;
    assert_eq!(code, 0, "{doc:#}");
    assert_eq!(doc["deliveries"][0]["from_outbox"], true);
    assert_eq!(doc["outbox"].as_array().unwrap().len(), 0);
    let headers: Vec<String> = rx.seen().iter().map(header).collect();
    assert_eq!(headers, ["CRITICAL: Redis down", "WARNING: Queue slow"]);

    // Nothing is delivered twice.
    let (code, doc) = s.json(&["flush"]).await;
    assert_eq!(code, 0);
    assert_eq!(doc["deliveries"].as_array().unwrap().len(), 0);
    assert_eq!(rx.seen().len(), 2);
}

#[tokio::test]
async fn flush_delivers_what_waits_and_a_hanging_slack_is_a_time_out() {
    let (rx, port) = Receiver::start(vec![Answer::Hang, Answer::Hang]).await;
    let s = Setup::new("alert-hang").slack(port).env("BROKER_OPS_TIMEOUT", "300ms");
    let started = Instant::now();
    let r = s
        .alert(&[
            "send",
            "--severity",
            "critical",
            "--summary",
            "hang",
            "--dedup-key",
            "h",
            "--retry-for",
            "5s",
            "--attempts",
            "2",
        ])
        .await;
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("timed out"), "{}", r.stdout);
    assert!(started.elapsed() < Duration::from_secs(20));
    let (code, doc) = s.json(&["flush"]).await;
    assert_eq!(code, 0, "{doc:#}");
    assert_eq!(outcomes(&doc), [("opened".into(), "delivered".into())]);
    assert_eq!(rx.seen().len(), 3);
    let (_, doc) = s.json(&["outbox"]).await;
    assert_eq!(doc["outbox"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn two_processes_sharing_redis_send_one_notice() {
    let (rx, port) = Receiver::start(vec![]).await;
    let a = Setup::new("alert-shared").slack(port);
    // A second host: another state directory, the same Redis and prefix.
    let b = Setup { dir: tempfile::tempdir().unwrap(), prefix: a.prefix.clone(), env: a.env.clone() };
    let args = ["send", "--severity", "critical", "--summary", "Ably down", "--dedup-key", "shared"];
    let (ra, rb) = tokio::join!(a.json(&args), b.json(&args));
    let mut decisions = [ra.1["decision"].as_str().unwrap(), rb.1["decision"].as_str().unwrap()];
    decisions.sort();
    assert_eq!(decisions, ["open", "quiet"]);
    assert_eq!(rx.seen().len(), 1);
    // The state is in Redis, not in either directory.
    let mut conn = crate::support::redis().await;
    let stored: Option<String> =
        redis::AsyncCommands::get(&mut conn, format!("{}broker-ops:alert:incident:shared", a.prefix)).await.unwrap();
    assert!(stored.unwrap().contains("\"severity\":\"critical\""));
}

#[tokio::test]
async fn redis_down_falls_back_to_the_state_directory_and_says_so() {
    let (rx, port) = Receiver::start(vec![]).await;
    let s = Setup::new("alert-fallback")
        .slack(port)
        .env("REDIS_URL", "redis://127.0.0.1:1")
        .env("BROKER_OPS_TIMEOUT", "1s");
    let args = ["send", "--severity", "warning", "--summary", "x", "--dedup-key", "fb"];
    let (code, doc) = s.json(&args).await;
    assert_eq!(code, 0, "{doc:#}");
    assert!(doc["state"].as_str().unwrap().starts_with("dir "), "{doc:#}");
    assert!(doc["warnings"][0].as_str().unwrap().contains("Redis did not answer"), "{doc:#}");
    let (_, doc) = s.json(&args).await;
    assert_eq!(doc["decision"], "quiet", "the directory kept the incident");
    assert_eq!(rx.seen().len(), 1);
}

#[tokio::test]
async fn no_channel_configured_is_exit_3_naming_the_variables() {
    let s = Setup::new("alert-none");
    let r = s.alert(&["send", "--severity", "critical", "--summary", "x"]).await;
    assert_eq!(r.code, 3, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("SLACK_WEBHOOK_URL") && r.stderr.contains("SMTP_URL"), "{}", r.stderr);
    let r = s.alert(&["test"]).await;
    assert_eq!(r.code, 3);
    let s = Setup::new("alert-half").env("SMTP_URL", "smtp://127.0.0.1:2525");
    let r = s.alert(&["send", "--severity", "critical", "--summary", "x"]).await;
    assert_eq!(r.code, 3);
    assert!(r.stderr.contains("ALERT_EMAIL_FROM"), "{}", r.stderr);
    let s = Setup::new("alert-badurl").env("SLACK_WEBHOOK_URL", "hooks.slack.com/services/x");
    let r = s.alert(&["send", "--severity", "critical", "--summary", "x"]).await;
    assert_eq!(r.code, 3);
    assert!(r.stderr.contains("SLACK_WEBHOOK_URL"), "{}", r.stderr);
}

#[tokio::test]
async fn the_webhook_url_and_smtp_password_never_show_even_at_trace_level() {
    let port = free_port();
    let s = Setup::new("alert-secret")
        .slack(port)
        .env("SMTP_URL", &format!("smtp://alerts:hunter2smtp@127.0.0.1:{}", free_port()))
        .env("ALERT_EMAIL_FROM", "ops@example.com")
        .env("ALERT_EMAIL_TO", "oncall@example.com")
        .env("BROKER_OPS_TIMEOUT", "300ms");
    for args in [
        vec!["-vvv", "send", "--severity", "critical", "--summary", "x", "--retry-for", "1s", "--attempts", "2"],
        vec!["-vvv", "test", "--retry-for", "1s", "--attempts", "1"],
        vec!["-vvv", "-o", "json", "flush", "--retry-for", "1s", "--attempts", "1"],
        vec!["-vvv", "-o", "json", "outbox"],
    ] {
        let r = s.alert(&args).await;
        assert_eq!(r.code, if args.contains(&"outbox") { 0 } else { 1 }, "{args:?}: {}{}", r.stdout, r.stderr);
        for secret in ["xoxsecretwebhookpath", "B0SECRET", "hunter2smtp"] {
            assert!(
                !r.stdout.contains(secret) && !r.stderr.contains(secret),
                "{secret} in {args:?}:\n{}\n{}",
                r.stdout,
                r.stderr
            );
        }
    }
}

#[tokio::test]
async fn dry_run_renders_both_channels_and_sends_nothing() {
    let (rx, port) = Receiver::start(vec![]).await;
    let s = Setup::new("alert-dry")
        .slack(port)
        .env("SMTP_URL", "smtp://127.0.0.1:1")
        .env("ALERT_EMAIL_FROM", "broker-ops <ops@example.com>")
        .env("ALERT_EMAIL_TO", "a@example.com,b@example.com");
    let args = [
        "send",
        "--severity",
        "critical",
        "--summary",
        "Ably down",
        "--dedup-key",
        "dry",
        "--runbook",
        "https://runbook.example/ably",
        "--label",
        "region=eu",
        "--dry-run",
    ];
    let (code, doc) = s.json(&args).await;
    assert_eq!(code, 0, "{doc:#}");
    schema_check("alert", &doc);
    assert_eq!(doc["dry_run"], true);
    assert_eq!(doc["preview"]["slack"]["attachments"][0]["color"], "#d00000");
    let email = &doc["preview"]["email"];
    assert!(email["subject"].as_str().unwrap().starts_with("[CRITICAL] dry "));
    assert_eq!(email["to"].as_array().unwrap().len(), 2);
    assert!(email["html"].as_str().unwrap().contains("https://runbook.example/ably"));
    let table = s.alert(&args).await;
    assert!(table.stdout.contains("--- slack payload ---") && table.stdout.contains("--- text/plain ---"));
    assert!(rx.seen().is_empty());
    // Nothing was recorded: the real send opens the incident.
    let s = s.env("SMTP_URL", "").env("ALERT_EMAIL_FROM", "").env("ALERT_EMAIL_TO", "");
    let (_, doc) = s.json(&args[..args.len() - 1]).await;
    assert_eq!(doc["decision"], "open");
}

#[tokio::test]
async fn a_long_summary_is_cut_to_slack_limits_not_rejected() {
    let (rx, port) = Receiver::start(vec![]).await;
    let s = Setup::new("alert-long").slack(port);
    let long = "queue depth over threshold ".repeat(40);
    let (code, _) =
        s.json(&["send", "--severity", "warning", "--summary", &long, "--details", &"d".repeat(4000)]).await;
    assert_eq!(code, 0);
    let h = header(&rx.seen()[0]);
    assert_eq!(h.chars().count(), 150);
    assert!(h.ends_with('…'));
}

#[tokio::test]
async fn with_a_bot_token_reminders_and_the_resolved_notice_reply_in_the_thread() {
    let port = free_port();
    let (rx, _) = Receiver::start_on(port, vec![], true).await;
    let s = Setup::new("alert-thread")
        .env("SLACK_BOT_TOKEN", "xoxb-secret-bot-token")
        .env("SLACK_CHANNEL", "C0ONCALL")
        .env("SLACK_API_URL", &format!("http://127.0.0.1:{port}/api"));
    let base = ["send", "--summary", "Ably down", "--dedup-key", "thr", "--severity"];
    let (code, out) = s.json(&[&base[..], &["critical"]].concat()).await;
    assert_eq!(code, 0, "{out:#}");
    let (code, _) = s.json(&[&base[..], &["resolved"]].concat()).await;
    assert_eq!(code, 0);
    let seen = rx.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].auth.as_deref(), Some("Bearer xoxb-secret-bot-token"));
    assert_eq!(seen[0].body["channel"], "C0ONCALL");
    assert!(seen[0].body.get("thread_ts").is_none());
    assert_eq!(seen[1].body["thread_ts"], "1700000000.000100");
    assert_eq!(seen[1].body["reply_broadcast"], true);
    assert!(!serde_json::to_string(&out).unwrap().contains("xoxb-secret"));
}

#[tokio::test]
async fn email_reaches_a_real_smtp_server_threaded_with_both_parts() {
    let mail = MailDev::start().await;
    let s = Setup::new("alert-mail")
        .env("SMTP_URL", &mail.smtp_url())
        .env("ALERT_EMAIL_FROM", "broker-ops <ops@example.com>")
        .env("ALERT_EMAIL_TO", "oncall@example.com, lead@example.com");
    let base = ["send", "--summary", "Ably health failing", "--dedup-key", "ably-mail", "--severity"];
    let (code, doc) = s.json(&[&base[..], &["critical", "--runbook", "https://runbook.example/ably"]].concat()).await;
    assert_eq!(code, 0, "{doc:#}");
    let (code, _) = s.json(&[&base[..], &["resolved"]].concat()).await;
    assert_eq!(code, 0);

    let emails = crate::support::until_value("both mails arrived", || async {
        let emails = mail.emails().await;
        (emails.len() >= 2).then_some(emails)
    })
    .await;
    assert_eq!(emails.len(), 2, "{emails:#?}");
    let (first, resolved) = (&emails[0], &emails[1]);
    let to: Vec<&str> = first["to"].as_array().unwrap().iter().map(|t| t["address"].as_str().unwrap()).collect();
    assert_eq!(to, ["oncall@example.com", "lead@example.com"]);
    assert!(first["subject"].as_str().unwrap().starts_with("[CRITICAL] ably-mail Ably health failing"));
    assert!(first["text"].as_str().unwrap().contains("Runbook: https://runbook.example/ably"));
    assert!(first["html"].as_str().unwrap().contains("<a href=\"https://runbook.example/ably\">"));
    assert!(resolved["subject"].as_str().unwrap().starts_with("[RESOLVED] ably-mail"));
    let first_id = first["headers"]["message-id"].as_str().unwrap();
    assert_eq!(resolved["headers"]["in-reply-to"].as_str(), Some(first_id));
    assert_eq!(resolved["headers"]["references"].as_str(), Some(first_id));
    assert!(resolved["text"].as_str().unwrap().contains("Lasted:"));

    // alert test reports each configured channel.
    let (rx, port) = Receiver::start(vec![]).await;
    let t = s.slack(port);
    let (code, doc) = t.json(&["test"]).await;
    assert_eq!(code, 0, "{doc:#}");
    let mut channels: Vec<&str> =
        doc["deliveries"].as_array().unwrap().iter().map(|d| d["channel"].as_str().unwrap()).collect();
    channels.sort();
    assert_eq!(channels, ["email", "slack"]);
    assert!(header(&rx.seen()[0]).starts_with("[TEST]"));
}

/// A scripted SMTP server that answers every RCPT TO with `rcpt_reply` (e.g. 550 or 451).
async fn refusing_smtp(rcpt_reply: &'static str) -> u16 {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let (r, mut w) = sock.into_split();
                let mut lines = BufReader::new(r).lines();
                w.write_all(b"220 refuser ESMTP\r\n").await.ok();
                while let Ok(Some(line)) = lines.next_line().await {
                    let cmd = line.to_ascii_uppercase();
                    let reply = if cmd.starts_with("EHLO") {
                        "250-refuser\r\n250 8BITMIME\r\n".to_string()
                    } else if cmd.starts_with("RCPT") {
                        format!("{rcpt_reply}\r\n")
                    } else if cmd.starts_with("QUIT") {
                        "221 bye\r\n".to_string()
                    } else {
                        "250 OK\r\n".to_string()
                    };
                    if w.write_all(reply.as_bytes()).await.is_err() || cmd.starts_with("QUIT") {
                        break;
                    }
                }
            });
        }
    });
    port
}

#[tokio::test]
async fn a_refused_recipient_is_rejected_and_a_busy_server_is_queued() {
    let mail_env = |s: Setup, port: u16| {
        s.env("SMTP_URL", &format!("smtp://127.0.0.1:{port}"))
            .env("ALERT_EMAIL_FROM", "ops@example.com")
            .env("ALERT_EMAIL_TO", "nobody@example.com")
    };
    let s = mail_env(Setup::new("alert-550"), refusing_smtp("550 5.1.1 <nobody@example.com>: user unknown").await);
    let (code, doc) = s.json(&["send", "--severity", "critical", "--summary", "x", "--retry-for", "2s"]).await;
    assert_eq!(code, 1, "{doc:#}");
    assert_eq!(doc["deliveries"][0]["outcome"], "rejected");
    assert_eq!(doc["deliveries"][0]["attempts"], 1);
    assert!(doc["deliveries"][0]["detail"].as_str().unwrap().contains("user unknown"), "{doc:#}");
    assert_eq!(doc["outbox"].as_array().unwrap().len(), 0);

    let s = mail_env(Setup::new("alert-451"), refusing_smtp("451 4.3.0 try again later").await);
    let args = ["send", "--severity", "critical", "--summary", "x", "--retry-for", "2s", "--attempts", "2"];
    let (code, doc) = s.json(&args).await;
    assert_eq!(code, 1, "{doc:#}");
    assert_eq!(doc["deliveries"][0]["outcome"], "queued");
    assert_eq!(doc["deliveries"][0]["attempts"], 2);
    assert_eq!(doc["outbox"][0]["delivery"]["channel"], "email");

    let s = mail_env(Setup::new("alert-bad-to"), 25).env("ALERT_EMAIL_TO", "not an address");
    let r = s.alert(&["send", "--severity", "critical", "--summary", "x"]).await;
    assert_eq!(r.code, 3);
    assert!(r.stderr.contains("ALERT_EMAIL_TO"), "{}", r.stderr);
}

#[tokio::test]
async fn a_failing_tls_handshake_is_retried_then_queued_and_named() {
    // Implicit TLS (smtps://, https://) against servers that speak plain text: the handshake fails.
    let smtp = refusing_smtp("250 OK").await;
    let (rx, port) = Receiver::start(vec![]).await;
    let s = Setup::new("alert-tls")
        .env("SMTP_URL", &format!("smtps://127.0.0.1:{smtp}"))
        .env("ALERT_EMAIL_FROM", "ops@example.com")
        .env("ALERT_EMAIL_TO", "oncall@example.com")
        .env("SLACK_WEBHOOK_URL", &format!("https://127.0.0.1:{port}/{SECRET_PATH}"))
        .env("BROKER_OPS_TIMEOUT", "1s");
    let (code, doc) =
        s.json(&["send", "--severity", "critical", "--summary", "x", "--retry-for", "2s", "--attempts", "2"]).await;
    assert_eq!(code, 1, "{doc:#}");
    let mut got: Vec<(String, String, u64)> = doc["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["channel"].as_str().unwrap().into(),
                d["outcome"].as_str().unwrap().into(),
                d["attempts"].as_u64().unwrap(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(got, [("email".into(), "queued".into(), 2), ("slack".into(), "queued".into(), 2)], "{doc:#}");
    let email = doc["deliveries"].as_array().unwrap().iter().find(|d| d["channel"] == "email").unwrap();
    assert!(
        email["detail"].as_str().unwrap().starts_with(&format!("smtp send mail smtps://127.0.0.1:{smtp}")),
        "{doc:#}"
    );
    assert_eq!(doc["outbox"].as_array().unwrap().len(), 2);
    assert!(rx.seen().is_empty(), "nothing readable reached the plain receiver");
}

/// Spawns `alert send` as a child (to be killed), with the setup's environment.
fn child(s: &Setup, args: &[&str]) -> tokio::process::Child {
    let mut cmd = bin(s.dir.path());
    cmd.envs(s.env.iter().cloned()).env("BROKER_OPS_STATE_DIR", s.dir.path().join("state"));
    cmd.args(["--timeout", "60s", "alert"]).args(args);
    cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    cmd.spawn().unwrap()
}

fn kill_9(c: &tokio::process::Child) {
    let pid = c.id().unwrap().to_string();
    assert!(std::process::Command::new("kill").args(["-9", &pid]).status().unwrap().success());
}

async fn outbox_len(prefix: &str) -> i64 {
    let mut r = crate::support::redis().await;
    redis::cmd("LLEN").arg(format!("{prefix}broker-ops:alert:outbox")).query_async(&mut r).await.unwrap()
}

#[tokio::test]
async fn a_run_killed_holding_the_lock_neither_blocks_alerting_nor_loses_a_notice() {
    let (rx, port) = Receiver::start(vec![Answer::Hang]).await;
    // A short-lived lock (the waiter waits a third of it): the expiry is seen in seconds.
    let s = Setup::new("killed").slack(port).env("ALERT_LOCK_TTL", "3s");
    let first =
        child(&s, &["send", "--severity", "critical", "--summary", "A down", "--dedup-key", "k1", "--attempts", "1"]);
    crate::support::until("the first run is stuck in Slack", || async { rx.seen().len() == 1 }).await;
    kill_9(&first);

    // The dead run's lock is still there: this run waits at most 1 s, then queues its alert.
    let (code, doc) = s.json(&["send", "--severity", "critical", "--summary", "B down", "--dedup-key", "k2"]).await;
    assert_eq!(code, 1, "{doc:#}");
    let d = &doc["deliveries"][0];
    assert_eq!((d["channel"].as_str(), d["outcome"].as_str()), (Some("alert"), Some("queued")), "{doc:#}");
    assert!(d["detail"].as_str().unwrap().contains("another run held the alert state's lock"), "{doc:#}");

    // Once the lock has expired (3 s without renewal), a flush sends both, each once.
    let deadline = Instant::now() + Duration::from_secs(60);
    while s.alert(&["flush"]).await.code != 0 {
        assert!(Instant::now() < deadline, "the dead run's lock never expired");
    }
    let headers: Vec<String> = rx.seen().iter().map(header).collect();
    assert_eq!(headers.len(), 3, "the hung attempt, then k1 from the outbox, then k2: {headers:?}");
    assert!(headers[1].contains("A down") && headers[2].contains("B down"), "{headers:?}");
    assert_eq!(outbox_len(&s.prefix).await, 0);
    // Both incidents are recorded: sending them again is quiet.
    for (key, summary) in [("k1", "A down"), ("k2", "B down")] {
        let (_, doc) = s.json(&["send", "--severity", "critical", "--summary", summary, "--dedup-key", key]).await;
        assert_eq!(doc["decision"], "quiet", "{key}: {doc:#}");
    }
    assert_eq!(rx.seen().len(), 3);
}

#[tokio::test]
async fn a_run_killed_while_smtp_stalls_never_sends_slack_twice() {
    let (rx, port) = Receiver::start(vec![]).await;
    let stall = crate::support::SmtpStallAtAuth::start().await;
    let s = Setup::new("stalled")
        .slack(port)
        .env("SMTP_URL", &format!("smtp://ops:pw@{}", stall.addr))
        .env("ALERT_EMAIL_FROM", "ops@example.com")
        .env("ALERT_EMAIL_TO", "oncall@example.com")
        .env("ALERT_LOCK_TTL", "3s");
    let run = child(
        &s,
        &["send", "--severity", "critical", "--summary", "Ably down", "--dedup-key", "ably", "--attempts", "1"],
    );
    // Slack accepted it and its outbox entry is gone; the mail waits on the stalled server.
    crate::support::until("Slack got it and only the mail waits", || async {
        rx.seen().len() == 1 && outbox_len(&s.prefix).await == 1
    })
    .await;
    kill_9(&run);
    let deadline = Instant::now() + Duration::from_secs(60);
    let decision = loop {
        let args = ["send", "--severity", "critical", "--summary", "Ably down", "--dedup-key", "ably"];
        // The stalled SMTP server is tried again by these runs: a short time-out each.
        let (_, doc) =
            s.json(&[&args[..], &["--retry-for", "1s", "--attempts", "1", "--timeout", "1s"]].concat()).await;
        // Until the dead run's lock expires, the alert is queued without a decision.
        if !doc["decision"].is_null() {
            break doc["decision"].clone();
        }
        assert!(Instant::now() < deadline, "the dead run's lock never expired");
    };
    assert_eq!(decision, "quiet", "the incident was recorded before any channel was tried");
    assert_eq!(rx.seen().len(), 1, "Slack was not sent the same notice again");
}
