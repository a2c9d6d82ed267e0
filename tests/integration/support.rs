//! Shared helpers: an in-process sandbox on port 0, a unique Redis key prefix per test, SSE
//! reading with a real parser, and the binary with a clean environment.

#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use broker_ops::sandbox::{Faults, LatencyModel, Sandbox, SandboxOptions};
use eventsource_stream::{Event, Eventsource};
use futures::StreamExt;
use serde_json::{Value, json};

pub struct Env {
    pub base: String,
    pub key: String,
    pub inbox: String,
    pub token: String,
}

impl Env {
    pub fn of(sb: &Sandbox) -> Env {
        let get = |name: &str| sb.env().into_iter().find(|(k, _)| *k == name).map(|(_, v)| v).unwrap();
        Env {
            base: sb.base_url(),
            key: get("ABLY_API_KEY"),
            inbox: get("CHATWOOT_INBOX_IDENTIFIER"),
            token: get("CHATWOOT_API_TOKEN"),
        }
    }

    /// Points the binary at this sandbox: Ably, and Chatwoot with its application API.
    pub fn apply<'c>(&self, cmd: &'c mut tokio::process::Command) -> &'c mut tokio::process::Command {
        cmd.env("ABLY_REST_URL", &self.base)
            .env("ABLY_API_KEY", &self.key)
            .env("CHATWOOT_BASE_URL", &self.base)
            .env("CHATWOOT_INBOX_IDENTIFIER", &self.inbox)
            .env("CHATWOOT_API_TOKEN", &self.token)
            .env("CHATWOOT_ACCOUNT_ID", "1")
    }

    pub fn key_name(&self) -> &str {
        self.key.split(':').next().unwrap()
    }

    pub fn key_secret(&self) -> &str {
        self.key.split(':').nth(1).unwrap()
    }
}

/// Options for a fast, repeatable sandbox on a free port.
pub fn options() -> SandboxOptions {
    SandboxOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        faults: Faults { ai_latency: LatencyModel::Fixed(Duration::from_millis(50)), ..Faults::default() },
        sse_keepalive: Duration::from_millis(200),
        seed: Some(7),
        ..SandboxOptions::default()
    }
}

/// `opts` with its faults (at start) changed by `set`.
pub fn faulted(mut opts: SandboxOptions, set: impl FnOnce(&mut Faults)) -> SandboxOptions {
    set(&mut opts.faults);
    opts
}

pub async fn sandbox() -> (Sandbox, Env) {
    start(options()).await
}

pub async fn start(opts: SandboxOptions) -> (Sandbox, Env) {
    let sb = Sandbox::start(opts).await.expect("sandbox starts");
    let env = Env::of(&sb);
    (sb, env)
}

pub fn http() -> reqwest::Client {
    broker_ops::http::client(Duration::from_secs(10))
}

/// Sends a request and reads its JSON answer, whatever the status.
pub async fn json_of(rb: reqwest::RequestBuilder) -> Value {
    rb.send().await.expect("request sent").json().await.expect("a JSON answer")
}

pub async fn post_json(url: impl reqwest::IntoUrl, body: &Value) -> Value {
    json_of(http().post(url).json(body)).await
}

pub async fn get_json(url: impl reqwest::IntoUrl) -> Value {
    json_of(http().get(url)).await
}

/// A Redis key prefix no other test uses.
pub fn prefix(name: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("test:{name}:{}:{}:{nanos}:", std::process::id(), N.fetch_add(1, Ordering::SeqCst))
}

/// Deletes every Redis key under `prefix` (what a test's sandbox mirrored and queued), so that a
/// machine's Redis does not fill up run after run.
pub async fn forget_prefix(prefix: &str) {
    let mut r = redis().await;
    let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{prefix}*")).query_async(&mut r).await.unwrap_or_default();
    for chunk in keys.chunks(500) {
        let _: Result<(), _> = redis::cmd("DEL").arg(chunk).query_async(&mut r).await;
    }
}

pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

pub async fn redis() -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis_url()).unwrap().get_multiplexed_async_connection().await.expect("Redis at REDIS_URL")
}

/// Polls `check` every 10 ms until it holds, failing after 30 s (a limit for a hang, not a
/// timing claim: timings are the benchmarks' business).
pub async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    until_value(what, || {
        let checked = check();
        async move { checked.await.then_some(()) }
    })
    .await
}

/// Polls `get` until it yields a value (within 30 s), and returns it.
pub async fn until_value<T, F, Fut>(what: &str, mut get: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        if let Some(v) = get().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never happened within 30 s: {what}");
}

/// The library's Redis handle on the test Redis, with `prefix`.
pub async fn redis_handle(prefix: &str) -> broker_ops::redis_handle::Redis {
    broker_ops::redis_handle::Redis::connect(&redis_url(), prefix, Duration::from_secs(10))
        .await
        .expect("Redis at REDIS_URL")
}

/// A customer's chat: contact, conversation. Returns (contact source_id, conversation id).
pub async fn new_chat(env: &Env) -> (String, u64) {
    let contact = post_json(
        format!("{}/public/api/v1/inboxes/{}/contacts", env.base, env.inbox),
        &json!({"identifier": format!("t-{}", prefix("c")), "name": "Test Customer"}),
    )
    .await;
    let source = contact["source_id"].as_str().unwrap().to_string();
    let conv = post_json(
        format!("{}/public/api/v1/inboxes/{}/contacts/{source}/conversations", env.base, env.inbox),
        &json!({}),
    )
    .await;
    (source, conv["id"].as_u64().unwrap())
}

pub async fn say(env: &Env, contact: &str, conv: u64, text: &str) -> Value {
    let resp = http()
        .post(format!(
            "{}/public/api/v1/inboxes/{}/contacts/{contact}/conversations/{conv}/messages",
            env.base, env.inbox
        ))
        .json(&json!({"content": text}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

/// Opens an SSE subscription and returns the parsed event stream.
pub async fn subscribe(
    env: &Env,
    query: &str,
) -> impl futures::Stream<Item = Result<Event, eventsource_stream::EventStreamError<reqwest::Error>>> + Unpin + use<> {
    let resp = broker_ops::http::streaming_client(Duration::from_secs(5))
        .get(format!("{}/sse?v=1.2&key={}&{query}", env.base, env.key))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "SSE subscribe answered {}", resp.status());
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    Box::pin(resp.bytes_stream().eventsource())
}

/// Collects message events until `n` arrived or `within` passed.
pub async fn collect<S>(stream: &mut S, n: usize, within: Duration) -> Vec<Event>
where
    S: futures::Stream<Item = Result<Event, eventsource_stream::EventStreamError<reqwest::Error>>> + Unpin,
{
    let mut out = Vec::new();
    let _ = tokio::time::timeout(within, async {
        while out.len() < n {
            match stream.next().await {
                Some(Ok(e)) if e.event == "message" => out.push(e),
                Some(Ok(_)) => {}
                _ => break,
            }
        }
    })
    .await;
    out
}

/// The Ably message in an SSE event, with its JSON data decoded.
pub fn message(e: &Event) -> (String, Value) {
    let v: Value = serde_json::from_str(&e.data).unwrap();
    let data = match (&v["data"], v["encoding"].as_str()) {
        (Value::String(s), Some("json")) => serde_json::from_str(s).unwrap(),
        (d, _) => d.clone(),
    };
    (v["name"].as_str().unwrap_or_default().to_string(), data)
}

/// The binary with an empty environment (no stray settings) in an empty directory.
pub fn bin(dir: &std::path::Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_broker-ops"));
    cmd.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default()).env("NO_COLOR", "1").current_dir(dir);
    cmd.kill_on_drop(true);
    cmd
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub async fn run(mut cmd: tokio::process::Command) -> Run {
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output()).await.expect("binary finished").unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Validates `doc` against `docs/schemas/{name}.schema.json`, listing every violation.
/// A probe's checks as `(name, state)`, in their order.
/// A check's name, with `@target` when it was measured on one of several (as perfdata labels it).
pub fn check_label(c: &Value) -> String {
    match c["target"].as_str() {
        Some(t) => format!("{}@{t}", c["name"].as_str().unwrap()),
        None => c["name"].as_str().unwrap().to_string(),
    }
}

pub fn check_states(probe: &Value) -> Vec<(&str, &str)> {
    probe["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["state"].as_str().unwrap()))
        .collect()
}

pub fn schema_check(name: &str, doc: &Value) {
    let path = format!("{}/docs/schemas/{name}.schema.json", env!("CARGO_MANIFEST_DIR"));
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator.iter_errors(doc).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    assert!(errors.is_empty(), "{name} schema errors: {errors:#?}\n{doc:#}");
}

/// A free loopback port (bound and released; the caller binds it right after).
/// A Redis of its own (another port, started with `args`), so that its settings and keys touch
/// no other test; killed when dropped.
pub struct OwnRedis {
    child: std::process::Child,
    pub port: u16,
    pub url: String,
}

impl OwnRedis {
    pub fn start(args: &[&str]) -> OwnRedis {
        let port = free_port();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(args)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (scripts/test installs it)");
        OwnRedis { child, port, url: format!("redis://127.0.0.1:{port}") }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A real SMTP server: the pinned `maildev` from tests/interop, killed when dropped.
pub struct MailDev {
    pub smtp_port: u16,
    pub web_port: u16,
    _child: tokio::process::Child,
}

impl MailDev {
    pub async fn start() -> MailDev {
        Self::start_with(&[]).await
    }

    /// With more of maildev's options (`--incoming-secure`, `--incoming-cert`, ...).
    pub async fn start_with(extra: &[std::ffi::OsString]) -> MailDev {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop");
        let exe = std::path::Path::new(dir).join("node_modules/.bin/maildev");
        assert!(exe.exists(), "maildev is not installed: run `npm ci` in tests/interop (scripts/test does)");
        let (smtp_port, web_port) = (free_port(), free_port());
        let child = tokio::process::Command::new(exe)
            .args(["--smtp", &smtp_port.to_string(), "--web", &web_port.to_string(), "--ip", "127.0.0.1"])
            .args(extra)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("maildev starts");
        let m = MailDev { smtp_port, web_port, _child: child };
        // Node loads a few hundred modules first: on a busy 2-core machine that takes seconds.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while std::time::Instant::now() < deadline {
            let web = http().get(m.api()).send().await.is_ok_and(|r| r.status().is_success());
            if web && tokio::net::TcpStream::connect(("127.0.0.1", smtp_port)).await.is_ok() {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("maildev did not answer on 127.0.0.1:{web_port} / SMTP {smtp_port} within 60 s");
    }

    pub fn smtp_url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.smtp_port)
    }

    fn api(&self) -> String {
        format!("http://127.0.0.1:{}/api/email", self.web_port)
    }

    /// The emails received so far.
    pub async fn emails(&self) -> Vec<Value> {
        get_json(self.api()).await.as_array().cloned().unwrap_or_default()
    }
}

/// A server that accepts TCP connections and never answers (nor closes them), on port 0.
pub struct Hang {
    pub addr: std::net::SocketAddr,
    _task: tokio::task::JoinHandle<()>,
}

impl Hang {
    pub async fn start() -> Hang {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        Hang { addr, _task: task }
    }
}

/// An SMTP server that greets, answers EHLO offering AUTH, then says nothing more (a stall at
/// AUTH, or wherever the client goes next).
pub struct SmtpStallAtAuth {
    pub addr: std::net::SocketAddr,
    _task: tokio::task::JoinHandle<()>,
}

impl SmtpStallAtAuth {
    pub async fn start() -> SmtpStallAtAuth {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Each connection on its own task, so that clients at once do not queue behind one.
        let task = tokio::spawn(async move {
            let mut held = tokio::task::JoinSet::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.spawn(async move {
                    let (r, mut w) = socket.into_split();
                    let _ = w.write_all(b"220 stall.test ESMTP\r\n").await;
                    let mut lines = BufReader::new(r).lines();
                    if let Ok(Some(l)) = lines.next_line().await
                        && (l.starts_with("EHLO") || l.starts_with("HELO"))
                    {
                        let _ = w.write_all(b"250-stall.test\r\n250 AUTH PLAIN LOGIN\r\n").await;
                    }
                    // Then nothing more, for as long as the client waits.
                    let _keep = (lines, w);
                    std::future::pending::<()>().await;
                });
            }
        });
        SmtpStallAtAuth { addr, _task: task }
    }
}

/// One request a [`Recorder`] saw.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    pub body: String,
}

/// A local HTTP receiver on port 0 that answers every request `200 ok` and keeps it: a Slack
/// incoming webhook, a healthchecks.io ping endpoint.
#[derive(Clone, Default)]
pub struct Recorder {
    seen: std::sync::Arc<std::sync::Mutex<Vec<Recorded>>>,
    pub port: u16,
}

impl Recorder {
    pub async fn start() -> Recorder {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let r = Recorder { port: listener.local_addr().unwrap().port(), ..Recorder::default() };
        let seen = r.seen.clone();
        let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
            let seen = seen.clone();
            async move {
                let (parts, body) = req.into_parts();
                let body = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
                seen.lock().unwrap().push(Recorded {
                    method: parts.method.to_string(),
                    path: parts.uri.path().to_string(),
                    query: parts.uri.query().unwrap_or_default().to_string(),
                    body: String::from_utf8_lossy(&body).into_owned(),
                });
                "ok"
            }
        });
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        r
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn seen(&self) -> Vec<Recorded> {
        self.seen.lock().unwrap().clone()
    }
}

/// A TCP proxy in front of the local Postgres that forwards both ways until the client sends a
/// message containing `stall_on` (a statement's text), then forwards nothing more and keeps
/// both sockets open: a database (or a network) that stalls after the connection is made.
pub struct StallingProxy {
    pub addr: std::net::SocketAddr,
    _task: tokio::task::JoinHandle<()>,
}

impl StallingProxy {
    pub async fn start(stall_on: &'static str) -> StallingProxy {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect("127.0.0.1:5432").await else { return };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let stalled = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
                    let s2 = stalled.clone();
                    let up = tokio::spawn(async move {
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            let n = match cr.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            let hay = String::from_utf8_lossy(&buf[..n]);
                            if hay.contains(stall_on) {
                                s2.store(true, std::sync::atomic::Ordering::SeqCst);
                            }
                            if s2.load(std::sync::atomic::Ordering::SeqCst) {
                                // Hold the sockets; forward nothing more.
                                std::future::pending::<()>().await;
                            }
                            if sw.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    });
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match sr.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if stalled.load(std::sync::atomic::Ordering::SeqCst) {
                            std::future::pending::<()>().await;
                        }
                        if cw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = up.await;
                });
            }
        });
        StallingProxy { addr, _task: task }
    }

    /// `url` (a database on the local Postgres) through the proxy, without TLS so that the
    /// proxy can read the statements.
    pub fn url(&self, url: &str) -> String {
        let mut u = url::Url::parse(url).unwrap();
        u.set_port(Some(self.addr.port())).unwrap();
        u.query_pairs_mut().append_pair("sslmode", "disable");
        u.to_string()
    }
}

/// The URL of the database `#[sqlx::test]` made for this test.
pub fn url_of(pool: &sqlx::PgPool) -> String {
    let db = pool.connect_options().get_database().unwrap().to_string();
    let mut u = url::Url::parse(&std::env::var("DATABASE_URL").expect("DATABASE_URL (scripts/test sets it)")).unwrap();
    u.set_path(&format!("/{db}"));
    u.to_string()
}

/// Sandbox options that mirror into this machine's Redis (keys under `prefix`) and into the
/// database `#[sqlx::test]` made for the test, with the BullMQ queue under `{prefix}bull`.
pub fn mirrored_options(pool: &sqlx::PgPool, prefix: &str) -> SandboxOptions {
    SandboxOptions {
        redis_url: Some(secrecy::SecretString::from(redis_url())),
        database_url: Some(secrecy::SecretString::from(url_of(pool))),
        contracts: broker_ops::contracts::Contracts::with_redis_prefix(prefix),
        bull_prefix: format!("{prefix}bull"),
        ..options()
    }
}

/// Waits until the sandbox has mirrored `n` events, failing on any mirror write error.
pub async fn wait_mirrored(sb: &broker_ops::sandbox::Sandbox, n: usize) {
    until("the mirror caught up", || async {
        let (written, errors) = sb.sink_counters();
        assert_eq!(errors, 0, "mirror writes failed");
        written >= n
    })
    .await;
}
