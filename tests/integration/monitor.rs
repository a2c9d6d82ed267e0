//! `broker-ops monitor` as cron runs it: the sandbox broken and healed through `/_sandbox/faults`
//! between sweeps, rule and alert state in the real Redis (a key prefix per test), Slack to a
//! local receiver, email to the pinned maildev, the ping to a local receiver, the textfile read
//! back with a Prometheus parser.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{
    Env, Hang, MailDev, Recorder, bin, free_port, post_json, prefix, redis, redis_url, run, sandbox, schema_check,
    until,
};

/// Two critical rules on Ably being unreachable (grouped into one notice) and a warning one that never
/// fails (no warning notice).
const RULES: &str = r#"
[[rules]]
name = "ably-down"
check = "ably_health.latency"
condition = "state >= CRITICAL"
severity = "critical"
for = 2
recover = 1
runbook = "https://wiki.example/runbooks/ably"

[[rules]]
name = "ably-clock-unknown"
check = "ably_health.skew"
condition = "state >= UNKNOWN"
severity = "critical"
for = 2
recover = 1

[[rules]]
name = "ably-slow"
check = "ably_health.latency"
condition = "value > 60s"
severity = "warning"
"#;

struct Setup {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    prefix: String,
}

impl Setup {
    fn new(name: &str, sandbox: Option<&Env>) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("rules.toml"), RULES).unwrap();
        let prefix = prefix(name);
        let mut env = vec![("REDIS_URL".to_string(), redis_url()), ("REDIS_KEY_PREFIX".to_string(), prefix.clone())];
        if let Some(e) = sandbox {
            env.push(("ABLY_REST_URL".into(), e.base.clone()));
            env.push(("ABLY_API_KEY".into(), e.key.clone()));
        }
        Setup { dir, env, prefix }
    }

    fn env(mut self, k: &str, v: &str) -> Setup {
        self.env.push((k.into(), v.into()));
        self
    }

    fn cmd(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = bin(self.dir.path());
        cmd.envs(self.env.iter().cloned()).env("BROKER_OPS_STATE_DIR", self.dir.path().join("state"));
        cmd.args(["monitor", "--rules", "rules.toml"]).args(args);
        cmd
    }

    fn lock_key(&self) -> String {
        format!("{}broker-ops:monitor:lock", self.prefix)
    }

    async fn lock_held(&self) -> bool {
        redis::cmd("EXISTS").arg(self.lock_key()).query_async::<i64>(&mut redis().await).await.unwrap() == 1
    }

    async fn sweep(&self, args: &[&str]) -> (i32, Value) {
        let r = run(self.cmd(&[&["-o", "json"], args].concat())).await;
        let doc: Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}\n{}", r.stdout, r.stderr));
        schema_check("monitor", &doc);
        (r.code, doc)
    }
}

/// A sandbox that mirrors into the test Redis under the setup's prefix, with its BullMQ queue
/// there too, so that every probe has something real to read: healthy means exit 0.
async fn mirrored(s: &mut Setup) -> (broker_ops::sandbox::Sandbox, Env) {
    mirrored_with(s, |o| o).await
}

async fn mirrored_with(
    s: &mut Setup,
    tune: impl FnOnce(broker_ops::sandbox::SandboxOptions) -> broker_ops::sandbox::SandboxOptions,
) -> (broker_ops::sandbox::Sandbox, Env) {
    let opts = broker_ops::sandbox::SandboxOptions {
        redis_url: Some(secrecy::SecretString::from(redis_url())),
        contracts: broker_ops::contracts::Contracts::with_redis_prefix(&s.prefix),
        bull_prefix: format!("{}bull", s.prefix),
        ..crate::support::options()
    };
    let (sb, env) = crate::support::start(tune(opts)).await;
    // The worker's queue, idle, made by the real `bullmq` as the worker would make it.
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop");
    let out = tokio::process::Command::new("node")
        .args(["bullmq-state.js", &redis_url(), &format!("{}bull", s.prefix), "broker", "empty"])
        .current_dir(dir)
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "bullmq-state.js: {}", String::from_utf8_lossy(&out.stderr));
    s.env.push(("ABLY_REST_URL".into(), env.base.clone()));
    s.env.push(("ABLY_API_KEY".into(), env.key.clone()));
    s.env.push(("BULL_PREFIX".into(), format!("{}bull", s.prefix)));
    (sb, env)
}

/// A setup whose Ably accepts connections and never answers: a run there lasts its whole probe
/// time-out (and holds its lock as long).
async fn hung_ably(name: &str) -> (Hang, Setup) {
    let hang = Hang::start().await;
    let s = Setup::new(name, None)
        .env("ABLY_REST_URL", &format!("http://{}", hang.addr))
        .env("ABLY_API_KEY", "app.key:secret");
    (hang, s)
}

fn rule<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["rules"].as_array().unwrap().iter().find(|r| r["name"] == name).unwrap()
}

async fn faults(env: &Env, body: Value) {
    post_json(format!("{}/_sandbox/faults", env.base), &body).await;
}

fn slack_texts(r: &Recorder) -> Vec<String> {
    r.seen()
        .iter()
        .map(|s| serde_json::from_str::<Value>(&s.body).unwrap()["text"].as_str().unwrap().to_string())
        .collect()
}

/// Broken for `for` sweeps: one grouped notice (Slack and mail); quiet while it lasts; a reminder
/// after the repeat interval; healed: one resolved notice after `recover` sweeps, then nothing.
#[tokio::test]
async fn a_fault_fires_once_grouped_reminds_and_resolves_once() {
    let slack = Recorder::start().await;
    let mail = MailDev::start().await;
    let mut s = Setup::new("monitor-fire", None);
    let (_sb, env) = mirrored(&mut s).await;
    let s = s
        .env("SLACK_WEBHOOK_URL", &slack.url("/services/T0/B0/monitor"))
        .env("SMTP_URL", &mail.smtp_url())
        .env("ALERT_EMAIL_FROM", "monitor@example.com")
        .env("ALERT_EMAIL_TO", "oncall@example.com");
    let args = ["--repeat-interval", "3s", "--probe-timeout", "10s"];
    let (code, doc) = s.sweep(&args).await;
    assert_eq!(rule(&doc, "ably-down")["verdict"], "passing", "{doc:#}");
    assert_eq!((code, doc["state"].as_str()), (0, Some("OK")), "a healthy stack: {doc:#}");
    // Every probe ran but the flag's, which needs the rollout's database.
    let ran = |p: &&Value| p["status"] == if p["probe"] == "rollout" { "skipped" } else { "ran" };
    assert!(doc["probes"].as_array().unwrap().iter().all(|p| ran(&p)), "{doc:#}");

    faults(&env, json!({"http_error_rate": 1.0})).await;
    let (code, doc) = s.sweep(&args).await;
    assert_eq!(code, 2, "Ably CRITICAL: {doc:#}");
    assert_eq!(
        (rule(&doc, "ably-down")["failing_sweeps"].as_u64(), rule(&doc, "ably-down")["firing"].as_bool()),
        (Some(1), Some(false))
    );
    assert!(slack.seen().is_empty(), "nothing before `for` sweeps");
    let (_, doc) = s.sweep(&args).await;
    assert_eq!(rule(&doc, "ably-down")["transition"], "fired", "{doc:#}");
    let texts = slack_texts(&slack);
    assert_eq!(texts.len(), 1, "{texts:?}");
    assert!(
        texts[0].starts_with("CRITICAL: broker-ops monitor: 2 critical rules firing: ably-down, ably-clock-unknown"),
        "{texts:?}"
    );
    until("one mail", || async { mail.emails().await.len() == 1 }).await;
    let (_, doc) = s.sweep(&args).await;
    assert_eq!(doc["alerts"][0]["decision"], "quiet", "{doc:#}");
    assert_eq!(slack.seen().len(), 1, "still one notice while it lasts");

    // Cron keeps sweeping; the reminder comes once the repeat interval has passed.
    let started = Instant::now();
    while slack.seen().len() < 2 {
        assert!(started.elapsed() < Duration::from_secs(60), "no reminder");
        s.sweep(&args).await;
    }
    let texts = slack_texts(&slack);
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(texts[1].starts_with("Still open: CRITICAL: broker-ops monitor: 2 critical rules firing"), "{texts:?}");

    faults(&env, json!({"http_error_rate": 0.0})).await;
    let (_, doc) = s.sweep(&args).await;
    assert_eq!(rule(&doc, "ably-down")["transition"], "resolved", "{doc:#}");
    assert_eq!(doc["state"], "OK", "healed: {doc:#}");
    s.sweep(&args).await;
    let texts = slack_texts(&slack);
    assert_eq!(texts.len(), 3, "{texts:?}");
    assert!(texts[2].starts_with("RESOLVED: broker-ops monitor: no critical rule is firing"), "{texts:?}");
    until("three mails", || async { mail.emails().await.len() == 3 }).await;
    let subjects: Vec<String> =
        mail.emails().await.iter().map(|m| m["subject"].as_str().unwrap_or_default().to_string()).collect();
    assert!(subjects.iter().all(|s| s.contains("broker-ops-monitor:critical")), "{subjects:?}");
    assert!(!texts.iter().any(|t| t.contains("WARNING")), "the warning rule never failed: {texts:?}");
}

/// Two runs at once: the one that holds the lock acts, the other exits 0 saying who holds it.
#[tokio::test]
async fn a_second_run_is_locked_out_and_says_who_holds_the_lock() {
    let (_hang, s) = hung_ably("monitor-lock").await;
    let first = s.cmd(&["--probe-timeout", "5s"]).spawn().unwrap();
    until("the first run holds the lock", || s.lock_held()).await;
    let hc = Recorder::start().await;
    let second = run(s.cmd(&["--ping", &hc.url("/ping/0d338dcc-a054-11ec-b909-0242ac120002")])).await;
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert!(hc.seen().is_empty(), "a run locked out pings nothing: the holder does");
    assert!(second.stderr.contains("another monitor run holds the lock (host="), "{}", second.stderr);
    assert!(second.stderr.contains("this run did nothing") && second.stdout.is_empty(), "{}", second.stderr);
    // In a machine's format, the locked-out result is on stdout too, not silence.
    let json = run(s.cmd(&["-o", "json"])).await;
    let doc: Value = serde_json::from_str(&json.stdout).unwrap_or_else(|_| panic!("{}", json.stdout));
    assert_eq!((json.code, doc["locked_out"].as_bool()), (0, Some(true)), "{doc}");
    let nagios = run(s.cmd(&["-o", "nagios"])).await;
    assert!(nagios.stdout.starts_with("MONITOR OK - another monitor run holds the lock"), "{}", nagios.stdout);
    let out = first.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(2), "the hung Ably probe is CRITICAL");
    assert!(!s.lock_held().await, "released by its owner");
}

/// A probe that hangs is CRITICAL at its own time-out (a service that times out is down, by the
/// monitoring-plugins guidelines); the sweep ends long before the network time-out would have.
#[tokio::test]
async fn a_hanging_probe_is_critical_at_its_time_out() {
    let (_hang, s) = hung_ably("monitor-hang").await;
    let s = s.env("BROKER_OPS_TIMEOUT", "120s");
    let started = Instant::now();
    let (code, doc) = s.sweep(&["--probe-timeout", "1s"]).await;
    assert!(started.elapsed() < Duration::from_secs(60), "ended by the probe time-out, not the 120 s network one");
    assert_eq!(code, 2, "{doc:#}");
    let health = doc["probes"].as_array().unwrap().iter().find(|p| p["probe"] == "ably_health").unwrap();
    assert_eq!((health["status"].as_str(), health["state"].as_str()), (Some("timed_out"), Some("CRITICAL")), "{doc:#}");
    assert!(health["reason"].as_str().unwrap().contains("within 1.00s"), "{health:#}");
    let sla = doc["probes"].as_array().unwrap().iter().find(|p| p["probe"] == "sla").unwrap();
    assert_eq!(sla["status"], "ran", "the others still count: {doc:#}");
    assert!(doc["notes"][0].as_str().unwrap().contains("no alert channel is configured"), "{doc:#}");
}

/// The ping sees start then success (or fail) with the same run id, the summary as the body.
#[tokio::test]
async fn the_ping_brackets_each_run_with_one_run_id() {
    let hc = Recorder::start().await;
    let mut s = Setup::new("monitor-ping", None);
    let (_sb, env) = mirrored(&mut s).await;
    let url = hc.url("/ping/0d338dcc-a054-11ec-b909-0242ac120002");
    let ok = run(s.cmd(&["--ping", &url])).await;
    assert_eq!(ok.code, 0, "{}", ok.stdout);
    faults(&env, json!({"http_error_rate": 1.0})).await;
    let bad = run(s.cmd(&["--ping", &url, "--probe-timeout", "5s"])).await;
    assert_eq!(bad.code, 2, "{}", bad.stdout);
    let seen = hc.seen();
    let paths: Vec<&str> = seen.iter().map(|r| r.path.as_str()).collect();
    let base = "/ping/0d338dcc-a054-11ec-b909-0242ac120002";
    assert_eq!(paths, [format!("{base}/start"), base.to_string(), format!("{base}/start"), format!("{base}/fail")]);
    for pair in seen.chunks(2) {
        assert!(pair[0].query.starts_with("rid=") && pair[0].query == pair[1].query, "{pair:?}");
    }
    assert_ne!(seen[0].query, seen[2].query, "each run its own id");
    assert_eq!(seen[1].body, "MONITOR OK - every probe OK; firing: none");
    assert!(seen[3].body.starts_with("MONITOR CRITICAL - ably_health CRITICAL"), "{:?}", seen[3].body);
}

/// The textfile is whole Prometheus text, read back with a Prometheus parser.
#[tokio::test]
async fn the_textfile_parses_as_prometheus_text() {
    let mut s = Setup::new("monitor-textfile", None);
    let _stack = mirrored(&mut s).await;
    let path = s.dir.path().join("broker_ops.prom");
    let r = run(s.cmd(&["--textfile", path.to_str().unwrap()])).await;
    assert_eq!(r.code, 0, "{}", r.stdout);
    let text = std::fs::read_to_string(&path).unwrap();
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).unwrap();
    let value = |name: &str, label: (&str, &str)| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && s.labels.get(label.0) == Some(label.1))
            .map(|s| s.value.clone())
    };
    assert!(
        matches!(value("broker_ops_check_state", ("probe", "ably_health")), Some(prometheus_parse::Value::Gauge(v)) if v == 0.0),
        "{text}"
    );
    assert!(
        matches!(value("broker_ops_monitor_rule_firing", ("rule", "ably-down")), Some(prometheus_parse::Value::Gauge(v)) if v == 0.0),
        "{text}"
    );
    assert!(scrape.samples.iter().any(|s| s.metric == "broker_ops_monitor_last_run_timestamp_seconds"), "{text}");
    assert!(
        matches!(value("broker_ops_probe_state", ("probe", "mirror_canary")), Some(prometheus_parse::Value::Gauge(v)) if v == 0.0),
        "{text}"
    );
    let left: Vec<_> = std::fs::read_dir(s.dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(!left.iter().any(|n| n.to_string_lossy().contains(".tmp")), "no temporary file left: {left:?}");
}

/// A rules file with a mistake is refused at start with its line and column (exit 3); `monitor
/// rules` prints the set in force.
#[tokio::test]
async fn bad_rules_are_refused_with_line_and_column_and_the_rules_print() {
    let s = Setup::new("monitor-rules", None);
    let bad = "[[rules]]\nname = \"x\"\ncheck = \"ably_health.latncy\"\ncondition = \"state >= CRITICAL\"\nseverity = \"critical\"\n";
    std::fs::write(s.dir.path().join("bad.toml"), bad).unwrap();
    let mut cmd = bin(s.dir.path());
    cmd.args(["monitor", "--rules", "bad.toml"]);
    let r = run(cmd).await;
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        r.stderr.contains("bad.toml:3:9: check \"ably_health.latncy\": ably_health has no check \"latncy\""),
        "{}",
        r.stderr
    );
    let zero =
        "[[rules]]\nname = \"x\"\ncheck = \"sla.p95\"\ncondition = \"value > 5s\"\nseverity = \"critical\"\nfor = 0\n";
    std::fs::write(s.dir.path().join("zero.toml"), zero).unwrap();
    let mut cmd = bin(s.dir.path());
    cmd.args(["monitor", "rules", "--rules", "zero.toml"]);
    let r = run(cmd).await;
    assert_eq!(r.code, 3);
    assert!(r.stderr.contains("zero.toml:6:7: for = 0"), "{}", r.stderr);
    let r = run(s.cmd(&["rules"])).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("ably-down") && r.stdout.contains("3 rule(s) from rules.toml"), "{}", r.stdout);
    let mut cmd = bin(s.dir.path());
    cmd.args(["monitor", "rules", "-o", "json"]);
    let doc: Value = serde_json::from_str(&run(cmd).await.stdout).unwrap();
    assert_eq!(doc["origin"], "built-in");
    assert!(doc["rules"].as_array().unwrap().iter().any(|r| r["name"] == "sla-p95-over-budget"), "{doc:#}");
}

/// Redis down: the lock and the state fall back to the state directory, with one note; the next
/// run there remembers the rules' counts.
#[tokio::test]
async fn without_redis_the_state_directory_keeps_lock_and_state() {
    let (_sb, env) = sandbox().await;
    let mut s = Setup::new("monitor-noredis", Some(&env));
    // Without Redis the canary has no store to watch and is not published.
    s.env.retain(|(k, _)| k != "REDIS_URL");
    s.env.push(("REDIS_URL".into(), "redis://127.0.0.1:1".into()));
    faults(&env, json!({"http_error_rate": 1.0})).await;
    let (_, first) = s.sweep(&["--probe-timeout", "10s"]).await;
    let notes: Vec<&str> = first["notes"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert_eq!(notes.iter().filter(|n| n.contains("Redis did not answer")).count(), 1, "{notes:?}");
    assert!(first["store"].as_str().unwrap().starts_with("dir "), "{first:#}");
    let (_, second) = s.sweep(&["--probe-timeout", "10s"]).await;
    assert_eq!(rule(&second, "ably-down")["transition"], "fired", "{second:#}");
    assert!(Path::new(&s.dir.path().join("state/monitor-rules.json")).exists());
}

/// `kill -9` mid-sweep: the Redis lock is gone once its time to live runs out (never renewed by
/// a dead run), and the textfile is the previous whole one, with no temporary file left over.
#[tokio::test]
async fn a_run_killed_mid_sweep_leaves_no_lock_past_expiry_and_no_half_textfile() {
    let (_hang, s) = hung_ably("monitor-kill").await;
    let s = s.env("ALERT_LOCK_TTL", "3s");
    let path = s.dir.path().join("broker_ops.prom");
    std::fs::write(&path, "# the previous run's file\n").unwrap();
    let mut victim = s.cmd(&["--probe-timeout", "60s", "--textfile", path.to_str().unwrap()]).spawn().unwrap();
    until("the run holds the lock", || s.lock_held()).await;
    victim.start_kill().unwrap();
    victim.wait().await.unwrap();
    let ttl: i64 = redis::cmd("PTTL").arg(s.lock_key()).query_async(&mut redis().await).await.unwrap();
    assert!(ttl > 0 && ttl <= 3_000, "the lock expires on its own, after ALERT_LOCK_TTL: PTTL {ttl}");
    until("the dead run's lock expired", || async { !s.lock_held().await }).await;
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "# the previous run's file\n");
    let names: Vec<String> = std::fs::read_dir(s.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.contains("tmp")), "{names:?}");
}

/// Slack down: the notice waits in the outbox and the exit code still says what the checks found;
/// the next run with Slack back delivers it before anything else.
#[tokio::test]
async fn with_the_channel_down_the_notice_waits_in_the_outbox() {
    let mut s = Setup::new("monitor-outbox", None);
    let (_sb, env) = mirrored(&mut s).await;
    let rules = "[[rules]]\nname = \"ably-down\"\ncheck = \"ably_health.latency\"\ncondition = \"state >= UNKNOWN\"\nseverity = \"critical\"\n";
    std::fs::write(s.dir.path().join("rules.toml"), rules).unwrap();
    faults(&env, json!({"http_error_rate": 1.0})).await;
    let down = Setup {
        env: [
            s.env.clone(),
            vec![("SLACK_WEBHOOK_URL".into(), format!("http://127.0.0.1:{}/services/T/B/x", free_port()))],
        ]
        .concat(),
        ..s
    };
    let (code, doc) = down.sweep(&["--retry-for", "1s", "--probe-timeout", "5s"]).await;
    assert_eq!(code, 2, "the checks decide the exit code: {doc:#}");
    let alert = &doc["alerts"][0];
    assert_eq!(
        (alert["decision"].as_str(), alert["deliveries"][0]["outcome"].as_str()),
        (Some("open"), Some("queued")),
        "{doc:#}"
    );
    assert_eq!(alert["outbox"].as_array().unwrap().len(), 1, "{doc:#}");
    let slack = Recorder::start().await;
    let mut up = down;
    up.env.retain(|(k, _)| k != "SLACK_WEBHOOK_URL");
    up.env.push(("SLACK_WEBHOOK_URL".into(), slack.url("/services/T/B/x")));
    let (_, doc) = up.sweep(&["--probe-timeout", "5s"]).await;
    let texts = slack_texts(&slack);
    assert_eq!(texts.len(), 1, "the queued notice, once: {texts:?}");
    assert!(texts[0].starts_with("CRITICAL: broker-ops monitor: 1 critical rule firing: ably-down"), "{texts:?}");
    assert_eq!(doc["alerts"][0]["deliveries"][0]["from_outbox"], true, "{doc:#}");
    assert_eq!(doc["alerts"][0]["decision"], "quiet", "{doc:#}");
}

/// `--smoke N` runs N real chats through the sandbox as one more probe.
#[tokio::test]
async fn a_short_smoke_is_one_more_probe() {
    let mut s = Setup::new("monitor-smoke", None);
    let (_sb, env) = mirrored(&mut s).await;
    let s = s
        .env("CHATWOOT_BASE_URL", &env.base)
        .env("CHATWOOT_INBOX_IDENTIFIER", &env.inbox)
        .env("CHATWOOT_API_TOKEN", &env.token)
        .env("CHATWOOT_ACCOUNT_ID", "1");
    let (code, doc) = s.sweep(&["--smoke", "3"]).await;
    assert_eq!(code, 0, "{doc:#}");
    let smoke = doc["probes"].as_array().unwrap().iter().find(|p| p["probe"] == "smoke").unwrap();
    assert_eq!((smoke["status"].as_str(), smoke["state"].as_str()), (Some("ran"), Some("OK")), "{smoke:#}");
    let names: Vec<&str> = smoke["checks"].as_array().unwrap().iter().filter_map(|c| c["name"].as_str()).collect();
    assert_eq!(names, ["p50", "p95", "p99", "error_rate"]);
    assert!(smoke["checks"][1]["value"].as_f64().unwrap() > 0.0, "{smoke:#}");
    assert_eq!(smoke["checks"][3]["detail"], "3 chats, 0 failed", "{smoke:#}");
}

/// `--watch` with stdout not a terminal: plain lines, one per check per sweep; it takes no lock,
/// keeps no state and publishes no canary; below its 5 s floor it is refused; SIGTERM ends it
/// with 0.
#[tokio::test]
async fn watch_without_a_terminal_prints_plain_lines_each_sweep() {
    use tokio::io::AsyncBufReadExt;
    let mut s = Setup::new("monitor-watch", None);
    let _stack = mirrored(&mut s).await;
    let fast = run(s.cmd(&["--watch", "1ms"])).await;
    assert_eq!(fast.code, 3, "below the floor: {}", fast.stderr);
    assert!(fast.stderr.contains("shorter than the live view's 5s floor"), "{}", fast.stderr);
    let mut child = s.cmd(&["--watch", "5s"]).stdout(std::process::Stdio::piped()).spawn().unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut latency = Vec::new();
    while latency.len() < 2 {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await.unwrap().unwrap().unwrap();
        if line.contains(" ably_health latency ") {
            latency.push(line);
        }
    }
    for l in &latency {
        let words: Vec<&str> = l.split(' ').collect();
        assert_eq!(&words[1..4], ["ably_health", "latency", "OK"], "{l}");
        assert!(words[0].ends_with('Z') && words[4].ends_with("ms"), "{l}");
    }
    let mut conn = redis().await;
    let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{}*", s.prefix)).query_async(&mut conn).await.unwrap();
    let ours = |k: &String| k.trim_start_matches(&s.prefix).starts_with("broker-ops:");
    assert!(!keys.iter().any(ours), "the view keeps no lock and no state: {keys:?}");
    assert!(!keys.iter().any(|k| k.contains("broker-ops-canary")), "the view publishes no canary: {keys:?}");
    let pid = child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait()).await.unwrap().unwrap();
    assert_eq!(status.code(), Some(0));
}

/// The built-in rules against what customers get: a subscriber that receives nothing fires
/// `realtime-delivery-broken` (only the canary's `deliver` leg CRITICAL, the stores measured), and
/// an `sla:violation` the worker published pages once, naming the conversation.
#[tokio::test]
async fn the_built_in_rules_page_for_realtime_delivery_and_sla_violations() {
    let slack = Recorder::start().await;
    let mut s = Setup::new("monitor-builtin", None);
    let strict = |o| broker_ops::sandbox::SandboxOptions {
        sla_warning: Duration::from_millis(1),
        sla_violation: Duration::from_millis(2),
        ..o
    };
    let (_sb, env) = mirrored_with(&mut s, strict).await;
    let s = s.env("SLACK_WEBHOOK_URL", &slack.url("/services/T0/B0/builtin"));
    let builtin = || {
        let mut cmd = bin(s.dir.path());
        cmd.envs(s.env.iter().cloned()).env("BROKER_OPS_STATE_DIR", s.dir.path().join("state"));
        cmd.args(["-o", "json", "monitor", "--probe-timeout", "4s"]);
        cmd
    };
    let sweep = || async {
        let r = run(builtin()).await;
        let doc: Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}\n{}", r.stdout, r.stderr));
        schema_check("monitor", &doc);
        (r.code, doc)
    };
    let (code, doc) = sweep().await;
    assert_eq!(code, 0, "healthy under the built-in rules: {doc:#}");

    faults(&env, json!({"deliver_drop_rate": 1.0})).await;
    let (code, doc) = sweep().await;
    assert_eq!(code, 2, "{doc:#}");
    let canary = doc["probes"].as_array().unwrap().iter().find(|p| p["probe"] == "mirror_canary").unwrap();
    let states = crate::support::check_states(canary);
    assert_eq!(
        states,
        [("publish_latency", "OK"), ("deliver_latency", "CRITICAL"), ("redis_latency", "OK")],
        "{canary:#}"
    );
    sweep().await;
    let texts = slack_texts(&slack);
    assert_eq!(texts.len(), 1, "{texts:?}");
    assert!(texts[0].contains("realtime-delivery-broken"), "{texts:?}");
    faults(&env, json!({"deliver_drop_rate": 0.0})).await;
    sweep().await;
    assert_eq!(slack_texts(&slack).len(), 2, "resolved");

    // A customer's reply later than the sandbox's violation threshold (1 ms): the worker
    // publishes sla:violation, the mirror keeps it, and one warning notice names the chat.
    faults(&env, json!({"ai_latency": "fixed:20ms"})).await;
    let (contact, conv) = crate::support::new_chat(&env).await;
    crate::support::say(&env, &contact, conv, "hello").await;
    let conv = conv.to_string();
    until("the violation is mirrored", || async {
        let key = format!("{}chat:events:{conv}", s.prefix);
        let entries: Vec<(String, Vec<(String, String)>)> =
            redis::cmd("XRANGE").arg(&key).arg("-").arg("+").query_async(&mut redis().await).await.unwrap();
        entries.iter().any(|(_, f)| f.iter().any(|(_, v)| v == "sla:violation"))
    })
    .await;
    let (_, doc) = sweep().await;
    assert_eq!(rule(&doc, "sla-violations")["transition"], "fired", "{doc:#}");
    let texts = slack_texts(&slack);
    assert_eq!(texts.len(), 3, "{texts:?}");
    assert!(texts[2].contains("sla-violations") && texts[2].contains(&conv), "{texts:?}");
}

/// A wrong (or revoked) Ably key pages: `GET /time` needs no key and stays OK, but the stats
/// request and the canary's publish are refused with 40101, which is UNKNOWN (we could not
/// check). The first sweep says that nobody is paged yet and why; the second sends one notice
/// naming both built-in rules with Ably's code, since when, and runbook links under
/// `RUNBOOK_BASE_URL`.
#[tokio::test]
async fn a_refused_ably_key_pages_with_ablys_code() {
    let slack = Recorder::start().await;
    let mut s = Setup::new("monitor-key", None);
    let (_sb, env) = mirrored(&mut s).await;
    let wrong = format!("{}:wrong-secret", env.key_name());
    s.env.retain(|(k, _)| k != "ABLY_API_KEY");
    let s = s
        .env("ABLY_API_KEY", &wrong)
        .env("SLACK_WEBHOOK_URL", &slack.url("/services/T0/B0/key"))
        .env("RUNBOOK_BASE_URL", "https://git.example/acme/broker-ops/blob/main");
    let sweep = || {
        let mut cmd = bin(s.dir.path());
        cmd.envs(s.env.iter().cloned()).env("BROKER_OPS_STATE_DIR", s.dir.path().join("state"));
        cmd.args(["-o", "json", "monitor", "--probe-timeout", "4s"]);
        run(cmd)
    };
    let first = sweep().await;
    assert_ne!(first.code, 0, "{}", first.stdout);
    let doc: Value = serde_json::from_str(&first.stdout).unwrap();
    let notes = doc["notes"].to_string();
    assert!(
        notes.contains("nobody is paged") && notes.contains("ably-key-refused (1/2 sweeps)"),
        "a bad sweep with no rule firing says so: {notes}"
    );
    assert!(notes.contains("ably-publish-refused (1/2 sweeps)"), "{notes}");
    assert!(slack_texts(&slack).is_empty(), "nothing fires on the first sweep");
    let second = sweep().await;
    assert_ne!(second.code, 0, "{}", second.stdout);
    let texts = slack_texts(&slack);
    assert_eq!(texts.len(), 1, "{texts:?}");
    assert!(texts[0].contains("ably-key-refused") && texts[0].contains("ably-publish-refused"), "{texts:?}");
    let body = &slack.seen()[0].body;
    assert!(body.contains("40101"), "the notice carries Ably's code: {body}");
    assert!(body.contains("since 20") && body.contains(" UTC (2 sweep(s))"), "since when: {body}");
    assert!(
        body.contains("https://git.example/acme/broker-ops/blob/main/docs/monitor.md#ably-publish-refused"),
        "runbook links that open: {body}"
    );
}

/// One spelling: every check a sweep's table shows is accepted, as shown, in a rule; and the
/// table fits a 100-column terminal even when Ably's errors fill the detail.
#[tokio::test]
async fn table_names_are_rule_names_and_rows_fit_the_width() {
    let mut s = Setup::new("monitor-names", None);
    let (_sb, env) = mirrored(&mut s).await;
    faults(&env, json!({"http_error_rate": 1.0})).await;
    let mut cmd = bin(s.dir.path());
    cmd.envs(s.env.iter().cloned()).env("BROKER_OPS_STATE_DIR", s.dir.path().join("state")).env("COLUMNS", "100");
    cmd.args(["monitor", "--probe-timeout", "4s"]);
    let r = run(cmd).await;
    assert!(r.stdout.contains("HTTP 500"), "the errors are in the table: {}", r.stdout);
    let long: Vec<&str> = r.stdout.lines().filter(|l| l.chars().count() > 100).collect();
    assert!(long.is_empty(), "lines past 100 columns: {long:#?}\n{}", r.stdout);
    let probes = ["ably_health", "ably_backlog", "mirror_canary", "sla"];
    let shown: Vec<(String, String)> = r
        .stdout
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let (p, c) = (words.next()?, words.next()?);
            (probes.contains(&p) && c != "-").then(|| (p.to_string(), c.to_string()))
        })
        .collect();
    assert!(shown.iter().any(|(p, c)| p == "ably_backlog" && c == "waiting_children"), "{shown:?}");
    assert!(shown.iter().any(|(p, c)| p == "mirror_canary" && c == "publish_latency"), "{shown:?}");
    let rules: String = shown
        .iter()
        .enumerate()
        .map(|(i, (p, c))| {
            format!("[[rules]]\nname = \"r{i}\"\ncheck = \"{p}.{c}\"\ncondition = \"state >= CRITICAL\"\nseverity = \"warning\"\n")
        })
        .collect();
    std::fs::write(s.dir.path().join("shown.toml"), rules).unwrap();
    let mut check = bin(s.dir.path());
    check.args(["monitor", "rules", "--rules", "shown.toml"]);
    let r = run(check).await;
    assert_eq!(r.code, 0, "a rule copied from the table is accepted: {}{}", r.stdout, r.stderr);
}

/// Rehearsable queue trouble: with the sandbox's worker paused, customers' jobs wait in BullMQ's
/// `wait` list; past 500 for two sweeps the built-in `queue-backing-up` pages; resumed, the
/// worker takes them all and the queue drains.
#[tokio::test]
async fn a_paused_worker_grows_waiting_and_trips_queue_backing_up() {
    let slack = Recorder::start().await;
    let mut s = Setup::new("monitor-paused", None);
    let (_sb, env) = mirrored(&mut s).await;
    let s = s.env("SLACK_WEBHOOK_URL", &slack.url("/services/T0/B0/queue"));
    faults(&env, json!({"worker_paused": true})).await;
    let (contact, conv) = crate::support::new_chat(&env).await;
    for chunk in 0..11 {
        let texts: Vec<String> = (0..50).map(|i| format!("question {chunk}-{i}")).collect();
        futures::future::join_all(texts.iter().map(|t| crate::support::say(&env, &contact, conv, t))).await;
    }
    let sweep = || {
        let mut cmd = bin(s.dir.path());
        cmd.envs(s.env.iter().cloned()).env("BROKER_OPS_STATE_DIR", s.dir.path().join("state"));
        cmd.args(["-o", "json", "monitor", "--probe-timeout", "4s"]);
        run(cmd)
    };
    let waiting = |doc: &Value| {
        let backlog = doc["probes"].as_array().unwrap().iter().find(|p| p["probe"] == "ably_backlog").unwrap();
        backlog["checks"].as_array().unwrap().iter().find(|c| c["name"] == "waiting").unwrap()["value"].clone()
    };
    let first: Value = serde_json::from_str(&sweep().await.stdout).unwrap();
    assert_eq!(waiting(&first), 550.0, "every job waits for the paused worker");
    let second: Value = serde_json::from_str(&sweep().await.stdout).unwrap();
    assert_eq!(rule(&second, "queue-backing-up")["transition"], "fired", "{:#}", rule(&second, "queue-backing-up"));
    let texts = slack_texts(&slack);
    assert!(texts.iter().any(|t| t.contains("queue-backing-up")), "{texts:?}");
    faults(&env, json!({"worker_paused": false, "ai_latency": "fixed:1ms"})).await;
    until("the resumed worker drains the queue", || async {
        let doc: Value = serde_json::from_str(&sweep().await.stdout).unwrap();
        waiting(&doc) == 0.0
    })
    .await;
}

impl Setup {
    /// `broker-ops alert ARGS` on the same state as the sweeps.
    async fn alert(&self, args: &[&str]) -> crate::support::Run {
        let mut cmd = bin(self.dir.path());
        cmd.envs(self.env.iter().cloned()).env("BROKER_OPS_STATE_DIR", self.dir.path().join("state"));
        cmd.arg("alert").args(args);
        run(cmd).await
    }
}

/// Fired, then acknowledged: the ack is said in Slack and by mail, no reminder follows however
/// short the repeat interval, and the resolved notice still comes once.
#[tokio::test]
async fn an_acknowledged_incident_stops_reminding_and_still_resolves() {
    let slack = Recorder::start().await;
    let mail = MailDev::start().await;
    let mut s = Setup::new("monitor-ack", None);
    let (_sb, env) = mirrored(&mut s).await;
    let s = s
        .env("SLACK_WEBHOOK_URL", &slack.url("/services/T0/B0/ack"))
        .env("SMTP_URL", &mail.smtp_url())
        .env("ALERT_EMAIL_FROM", "monitor@example.com")
        .env("ALERT_EMAIL_TO", "oncall@example.com");
    faults(&env, json!({"http_error_rate": 1.0})).await;
    let args = ["--repeat-interval", "1ms", "--probe-timeout", "10s"];
    s.sweep(&args).await;
    let (_, doc) = s.sweep(&args).await;
    assert_eq!(rule(&doc, "ably-down")["transition"], "fired", "{doc:#}");
    assert_eq!(slack.seen().len(), 1);
    let r = s.alert(&["ack", "nope"]).await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("no open incident \"nope\" (open: broker-ops-monitor:critical ("), "{}", r.stderr);

    let r =
        s.alert(&["ack", "broker-ops-monitor:critical", "--reason", "restarting the worker", "--by", "alice"]).await;
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let texts = slack_texts(&slack);
    assert!(texts[1].starts_with("Acknowledged: CRITICAL: broker-ops monitor"), "{texts:?}");
    let body = &slack.seen()[1].body;
    assert!(body.contains("Acknowledged by alice: restarting the worker"), "{body}");
    until("the ack's mail", || async { mail.emails().await.len() == 2 }).await;
    let subject = mail.emails().await[1]["subject"].as_str().unwrap_or_default().to_string();
    assert!(subject.contains("broker-ops-monitor:critical acknowledged: "), "{subject}");
    let r = s.alert(&["ack", "broker-ops-monitor:critical"]).await;
    assert!(r.code == 2 && r.stderr.contains("already acknowledged by alice"), "{}", r.stderr);

    // A repeat interval of 1 ms would remind on every sweep: acknowledged, nothing is sent.
    for _ in 0..3 {
        let (_, doc) = s.sweep(&args).await;
        assert_eq!(doc["alerts"][0]["decision"], "acknowledged", "{doc:#}");
    }
    assert_eq!(slack.seen().len(), 2, "no reminder after the ack");

    faults(&env, json!({"http_error_rate": 0.0})).await;
    for _ in 0..3 {
        s.sweep(&args).await;
    }
    let texts = slack_texts(&slack);
    assert_eq!(texts.len(), 3, "{texts:?}");
    assert!(texts[2].starts_with("RESOLVED: broker-ops monitor: no critical rule is firing"), "{texts:?}");
    let r = s.alert(&["-o", "json", "history"]).await;
    let h: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(h["history"][0]["action"], "ack", "{h:#}");
    assert_eq!(h["history"][0]["by"], "alice", "{h:#}");
}

/// Planned work: while a silence matches, the rules are judged and shown as silenced (JSON,
/// Prometheus) and nothing is sent; when it ends with the rule still firing, one notice says so.
#[tokio::test]
async fn a_silence_holds_notices_while_it_lasts_and_one_notice_follows_its_end() {
    let slack = Recorder::start().await;
    let mut s = Setup::new("monitor-silence", None);
    let (_sb, env) = mirrored(&mut s).await;
    let s = s.env("SLACK_WEBHOOK_URL", &slack.url("/services/T0/B0/silence"));
    let silence = |m: &'static str, dur: &'static str| {
        let s = &s;
        async move {
            s.alert(&[
                "silence",
                "--match",
                m,
                "--for",
                dur,
                "--reason",
                "Ably migration",
                "--rules",
                "rules.toml",
                "--by",
                "bob",
            ])
            .await
        }
    };
    let r = silence("rule=no-such-rule", "1h").await;
    assert!(r.code == 2 && r.stderr.contains("matches no rule and no open incident"), "{}", r.stderr);
    let r = silence("severity=critical", "30d").await;
    assert!(r.code == 2 && r.stderr.contains("longer than the maximum"), "{}", r.stderr);
    let r = silence("severity=critical", "1h").await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let id = r.stdout.split_whitespace().nth(1).unwrap().trim_end_matches(':').to_string();

    faults(&env, json!({"http_error_rate": 1.0})).await;
    let args = ["--repeat-interval", "1ms", "--probe-timeout", "10s"];
    for _ in 0..3 {
        let (code, doc) = s.sweep(&args).await;
        assert_eq!(code, 2, "still CRITICAL: {doc:#}");
        assert!(rule(&doc, "ably-down")["silenced_until"].is_string(), "{doc:#}");
    }
    let (_, doc) = s.sweep(&args).await;
    assert_eq!(rule(&doc, "ably-down")["firing"], true, "{doc:#}");
    assert!(doc["notes"].to_string().contains("every firing rule is silenced, so nobody is paged"), "{doc:#}");
    let r = run(s.cmd(&[&["-o", "prometheus"], &args[..]].concat())).await;
    assert!(
        r.stdout.contains("broker_ops_monitor_rule_silenced{rule=\"ably-down\",severity=\"critical\"} 1"),
        "{}",
        r.stdout
    );
    assert!(slack.seen().is_empty(), "nothing sent while silenced");

    let r = s.alert(&["unsilence", &id, "--by", "bob"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    s.sweep(&args).await;
    let texts = slack_texts(&slack);
    assert_eq!(texts.len(), 1, "one notice once the silence ended: {texts:?}");
    let body = &slack.seen()[0].body;
    assert!(body.contains(&format!("silence {id} ended")), "{body}");
    let r = s.alert(&["silences"]).await;
    assert!(r.stdout.contains("ended early") && r.stdout.contains("Ably migration"), "{}", r.stdout);
    // Redis configured and not answering: refused, never kept on this host alone.
    let down = Setup {
        env: [s.env.clone(), vec![("REDIS_URL".into(), format!("redis://127.0.0.1:{}", free_port()))]].concat(),
        ..s
    };
    let r = down
        .alert(&["silence", "--match", "severity=critical", "--for", "1h", "--reason", "x", "--rules", "rules.toml"])
        .await;
    assert!(r.code == 3 && r.stderr.contains("refused: nothing was changed"), "{}", r.stderr);
}

/// `--status-page`: after each run a page with every check, the open incident and the rule that
/// fired, which reads in a browser (axe-core, 390 and 1280 px); a copy past its deadline says
/// it is stale. A page whose directory is missing is refused before the first sweep (UNKNOWN).
#[tokio::test]
async fn the_status_page_shows_a_firing_rule_and_says_when_it_is_stale() {
    let slack = Recorder::start().await;
    let mut s = Setup::new("monitor-status", None);
    let (_sb, env) = mirrored(&mut s).await;
    let s = s.env("SLACK_WEBHOOK_URL", &slack.url("/services/T0/B0/status"));
    let r = run(s.cmd(&["--status-page", "nowhere/status.html"])).await;
    assert_eq!(r.code, 3, "UNKNOWN, as a probe command says a usage error: {}", r.stderr);
    assert!(r.stderr.contains("nowhere") && r.stderr.contains("directory"), "{}", r.stderr);
    assert!(!s.lock_held().await && !s.dir.path().join("state").exists(), "refused before anything");
    std::fs::create_dir(s.dir.path().join("www")).unwrap();
    let args = ["--probe-timeout", "10s", "--status-page", "www/status.html"];
    faults(&env, json!({"http_error_rate": 1.0})).await;
    s.sweep(&args).await;
    let (_, doc) = s.sweep(&args).await;
    assert_eq!(rule(&doc, "ably-down")["transition"], "fired", "{doc:#}");
    let page = s.dir.path().join("www/status.html");
    let text = std::fs::read_to_string(&page).unwrap();
    assert!(text.contains("rule(s) firing: ably-down"), "the firing rule first");
    assert!(text.contains("the last 2 sweeps: 2 CRITICAL"), "the recent sweeps of Ably's latency");
    assert!(text.contains("Incidents open now") && text.contains("open"), "the open incident and its notice");
    let seen = crate::pages::check(&page, &s.dir.path().join("shots")).await;
    assert_eq!(seen["views"]["390-light"]["text"], "CRITICAL", "{seen}");
    assert!(seen["views"]["390-light"]["stale"].as_str().unwrap().starts_with("Made "), "{seen}");
    // The same page a day later: it says so.
    let made = text.split("data-stale-at=\"").nth(1).unwrap().split('"').next().unwrap();
    let old = s.dir.path().join("www/old.html");
    std::fs::write(&old, text.replace(made, "2000-01-01T00:00:00.000Z")).unwrap();
    let seen = crate::pages::check(&old, &s.dir.path().join("shots-old")).await;
    assert!(seen["views"]["1280-light"]["stale"].as_str().unwrap().starts_with("STALE"), "{seen}");
}
