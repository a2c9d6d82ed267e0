//! The fault matrix: every command family pointed at a server that accepts connections and never
//! answers (and an SMTP server that stalls at AUTH). Each run must end by itself within its
//! documented budget (the time-out, or the delivery budget for alerts) plus a margin for the
//! process itself, with a message that names the dependency, the operation and the address.
//! The figures (cases, clear errors, exits within budget) are printed for the closing notes.

use std::time::{Duration, Instant};

use futures::StreamExt;

use crate::support::{Hang, SmtpStallAtAuth, bin, run};

const TIMEOUT: &str = "2s";
/// Start-up, connection set-up and scheduling on a busy 2-core machine; smaller than one
/// time-out, so a call that quietly takes twice its time-out is caught.
const MARGIN: Duration = Duration::from_millis(1500);

struct Case {
    name: &'static str,
    args: Vec<String>,
    env: Vec<(&'static str, String)>,
    /// The exit codes that are right (1 where a notice is queued; 2 a probe's service that does
    /// not answer, CRITICAL; 3 could not run).
    codes: &'static [i32],
    /// What the output must name: the dependency, the operation and the address.
    names: Vec<String>,
    budget: Duration,
    /// The alert state directory (cases that share one name the same).
    state: &'static str,
}

fn case(name: &'static str, args: &[&str], env: Vec<(&'static str, String)>) -> Case {
    Case {
        name,
        args: args.iter().map(|a| a.to_string()).collect(),
        env,
        codes: &[3],
        names: Vec::new(),
        budget: Duration::from_secs(2),
        state: name,
    }
}

impl Case {
    fn codes(mut self, c: &'static [i32]) -> Self {
        self.codes = c;
        self
    }
    fn names(mut self, n: &[&str]) -> Self {
        self.names = n.iter().map(|s| s.to_string()).collect();
        self
    }
    fn state(mut self, s: &'static str) -> Self {
        self.state = s;
        self
    }
    fn budget(mut self, secs: u64) -> Self {
        self.budget = Duration::from_secs(secs);
        self
    }
}

#[tokio::test]
async fn every_command_family_ends_in_time_against_a_hanging_server_and_names_it() {
    let hang = Hang::start().await;
    let stall = SmtpStallAtAuth::start().await;
    let h = hang.addr.to_string();
    let s = stall.addr.to_string();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let slack = || ("SLACK_WEBHOOK_URL", format!("http://{h}/services/T0/B0/secret"));
    let mail = |at: &str| {
        vec![
            ("SMTP_URL", format!("smtp://ops:pw@{at}")),
            ("ALERT_EMAIL_FROM", "ops@example.com".to_string()),
            ("ALERT_EMAIL_TO", "oncall@example.com".to_string()),
        ]
    };
    let secret = ("RESUME_TOKEN_SECRET", "0123456789abcdef0123456789abcdef-faults".to_string());
    let token = broker_ops::token::codec::sign(
        &serde_json::json!({"alg": "HS256", "kid": "default"}),
        &serde_json::json!({"iss": "ai-broker", "aud": "chat-resume", "conversationId": 1, "email": "a@example.com",
            "iat": 1, "exp": 4_000_000_000i64, "jti": "j"}),
        secret.1.as_bytes(),
    );
    let cases = vec![
        case("doctor, Redis hangs", &["doctor"], vec![("REDIS_URL", format!("redis://{h}"))])
            .names(&["redis", &format!("redis://{h}")]),
        case("doctor, Postgres hangs", &["doctor"], vec![("DATABASE_URL", format!("postgres://u@{h}/db"))])
            .names(&["postgres", &h]),
        case("doctor, Slack hangs", &["doctor"], vec![slack()]).names(&["slack", "no answer within", &h]),
        case("doctor, SMTP greeting stalls", &["doctor"], mail(&h)).names(&["smtp", &h]),
        case("doctor, SMTP stalls at AUTH", &["doctor"], mail(&s)).names(&["smtp", &s]),
        case(
            "doctor, Ably hangs",
            &["doctor"],
            vec![("ABLY_API_KEY", "a.b:c".into()), ("ABLY_REST_URL", format!("http://{h}"))],
        )
        .names(&["ably", &h]),
        case(
            "ably health",
            &["ably", "health"],
            vec![("ABLY_API_KEY", "a.b:c".into()), ("ABLY_REST_URL", format!("http://{h}"))],
        )
        .names(&["latency", "timed out"])
        .codes(&[2])
        .budget(3),
        case("ably backlog, Redis hangs", &["ably", "backlog"], vec![("REDIS_URL", format!("redis://{h}"))])
            .names(&["Redis", "connect", &format!("redis://{h}")])
            .codes(&[2]),
        case(
            "sla smoke, Chatwoot hangs",
            &["sla", "smoke", "--chats", "2", "--no-report"],
            vec![("CHATWOOT_BASE_URL", format!("http://{h}")), ("CHATWOOT_INBOX_IDENTIFIER", "x".into())],
        )
        .names(&["Chatwoot", "create contact", &h, "could not use the target"]),
        case(
            "mirror canary, Ably hangs",
            &["mirror", "canary"],
            vec![
                ("ABLY_API_KEY", "a.b:c".into()),
                ("ABLY_REST_URL", format!("http://{h}")),
                ("REDIS_URL", crate::support::redis_url()),
            ],
        )
        .codes(&[2])
        .names(&["publish", "CRITICAL", &h])
        .budget(3),
        case(
            "mirror canary, Redis hangs",
            &["mirror", "canary"],
            vec![("ABLY_API_KEY", "a.b:c".into()), ("REDIS_URL", format!("redis://{h}"))],
        )
        .codes(&[2])
        .names(&["Redis", "connect", &h]),
        case(
            "mirror webhook-test, the route hangs",
            &["mirror", "webhook-test", &format!("http://{h}/api/ably/events")],
            vec![("ABLY_API_KEY", "a.b:c".into())],
        )
        .names(&["webhook route", "no request got an answer", &h])
        .budget(8),
        case(
            "rollout status, Postgres hangs",
            &["rollout", "status"],
            vec![("DATABASE_URL", format!("postgres://u@{h}/db"))],
        )
        .names(&["Postgres", "connect", &h]),
        case(
            "events replay, Redis hangs",
            &["events", "replay", "--conversation", "1"],
            vec![("REDIS_URL", format!("redis://{h}"))],
        )
        .names(&["Redis", "connect", &format!("redis://{h}")]),
        case(
            "events replay, Postgres hangs",
            &["events", "replay", "--conversation", "1", "--from", "postgres"],
            vec![("DATABASE_URL", format!("postgres://u@{h}/db"))],
        )
        .names(&["Postgres", "connect", &h]),
        case(
            "token verify, Redis hangs",
            &["token", "verify", &token],
            vec![
                secret.clone(),
                ("REDIS_URL", format!("redis://{h}")),
                ("BROKER_OPS_CONTRACT_REVOCATION_KEY", "resume:revoked:{jti}".into()),
            ],
        )
        .names(&["Redis", "connect", &h]),
        case(
            "token resume-test, the route hangs",
            &["token", "resume-test", &format!("http://{h}/api/chat/resume")],
            vec![secret.clone()],
        )
        .names(&["resume route", "valid: no answer", &h]),
        case(
            "token issue --send, SMTP greeting stalls",
            &["token", "issue", "--conversation", "1", "--email", "a@example.com", "--send"],
            [vec![secret.clone(), ("APP_BASE_URL", "https://chat.example.com".into())], mail(&h)].concat(),
        )
        .names(&["SMTP", &h, "sending to a@example.com"])
        .budget(4),
        case(
            "token issue --send, SMTP stalls at AUTH",
            &["token", "issue", "--conversation", "1", "--email", "a@example.com", "--send"],
            [vec![secret.clone(), ("APP_BASE_URL", "https://chat.example.com".into())], mail(&s)].concat(),
        )
        .names(&["SMTP", &s])
        .budget(4),
        case("alert test, SMTP greeting stalls", &["alert", "test", "--retry-for", "4s", "--attempts", "2"], mail(&h))
            .codes(&[1])
            .names(&["smtp", &h])
            .budget(6),
        case(
            "alert send, SMTP stalls at AUTH",
            &["alert", "send", "--severity", "critical", "--summary", "x", "--retry-for", "4s", "--attempts", "2"],
            mail(&s),
        )
        .codes(&[1])
        .names(&["smtp", "queued", &s])
        .budget(4),
        case(
            "alert send, Slack hangs",
            &["alert", "send", "--severity", "critical", "--summary", "y", "--retry-for", "4s", "--attempts", "2"],
            vec![slack()],
        )
        .codes(&[1])
        .names(&["slack", "queued", "timed out", &h])
        .budget(5),
        case("alert flush, Slack hangs", &["alert", "flush", "--retry-for", "4s", "--attempts", "2"], vec![slack()])
            .codes(&[1])
            .names(&["slack", &h])
            .state("alert send, Slack hangs")
            .budget(5),
        case(
            "alert send, Redis state hangs",
            &["alert", "send", "--severity", "info", "--summary", "z", "--retry-for", "4s", "--attempts", "2"],
            vec![slack(), ("REDIS_URL", format!("redis://{h}"))],
        )
        .codes(&[1])
        .names(&["Redis did not answer", &h])
        .budget(7),
    ];
    let total = cases.len();
    // Independent cases run side by side (each has its own state directory); a case that reads
    // another's state runs after it.
    let (first, after): (Vec<Case>, Vec<Case>) = cases.into_iter().partition(|c| c.state == c.name);
    let mut ran: Vec<Ran> = futures::stream::iter(first.into_iter().map(|c| run_case(c, dir.path(), &state)))
        .buffer_unordered(6)
        .collect()
        .await;
    for c in after {
        ran.push(run_case(c, dir.path(), &state).await);
    }
    let clear = ran.iter().filter(|r| r.clear).count();
    let in_time = ran.iter().filter(|r| r.in_time).count();
    let failures: Vec<String> = ran.into_iter().flat_map(|r| r.failures).collect();
    println!("fault matrix: {total} cases, {clear} with a clear error, {in_time} within budget");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

struct Ran {
    clear: bool,
    in_time: bool,
    failures: Vec<String>,
}

async fn run_case(c: Case, dir: &std::path::Path, state: &std::path::Path) -> Ran {
    let mut cmd = bin(dir);
    cmd.arg("--timeout").arg(TIMEOUT).args(&c.args).env("BROKER_OPS_STATE_DIR", state.join(c.state.replace(' ', "-")));
    for (k, v) in &c.env {
        cmd.env(k, v);
    }
    let started = Instant::now();
    let r = run(cmd).await;
    let took = started.elapsed();
    let out = format!("{}{}", r.stdout, r.stderr);
    let clear = c.names.iter().all(|n| out.contains(n.as_str())) && c.codes.contains(&r.code);
    let mut failures = Vec::new();
    if !clear {
        failures.push(format!("{}: exit {} (want {:?}); names {:?} in:\n{out}", c.name, r.code, c.codes, c.names));
    }
    println!("{:<45} exit {}  {:>6} ms (budget {} ms)", c.name, r.code, took.as_millis(), c.budget.as_millis());
    let in_time = took <= c.budget + MARGIN;
    if !in_time {
        failures.push(format!("{}: took {took:?}, budget {:?} + {MARGIN:?}", c.name, c.budget));
    }
    assert!(!out.contains(":pw@"), "{}: the SMTP password was shown:\n{out}", c.name);
    Ran { clear, in_time, failures }
}

/// A Postgres that stalls after the connection is made: every Postgres-using command ends within
/// 2 x its time-out + 1 s, exit 3, naming what stalled; the emergency rollback among them.
#[sqlx::test(migrations = false)]
async fn a_postgres_that_stalls_after_connecting_ends_every_command_in_time(pool: sqlx::PgPool) {
    let dir = tempfile::tempdir().unwrap();
    let db = crate::support::url_of(&pool);
    let migrate = {
        let mut c = crate::support::bin(dir.path());
        c.args(["db", "migrate"]).env("DATABASE_URL", &db);
        crate::support::run(c).await
    };
    assert_eq!(migrate.code, 0, "{}", migrate.stderr);
    // On at 10 %, so that the rollback and a new percentage each have something to write.
    let mut c = crate::support::bin(dir.path());
    c.args(["rollout", "set", "--percent", "10", "--reason", "stall drill", "--yes"]).env("DATABASE_URL", &db);
    assert_eq!(crate::support::run(c).await.code, 0);
    // (command, a statement text the proxy stalls on)
    let prefix = crate::support::prefix("stall");
    let cases: [(&'static [&'static str], &'static str); 12] = [
        (&["rollout", "rollback", "--reason", "x", "--yes"], "UPDATE"),
        (&["rollout", "status"], "feature_flags"),
        (&["rollout", "which", "c-1"], "feature_flags"),
        (&["rollout", "override", "c-1", "on", "--reason", "x", "--yes"], "overrides"),
        (&["rollout", "set", "--percent", "50", "--reason", "x", "--yes"], "UPDATE"),
        (&["rollout", "advance", "--dry-run"], "feature_flags_audit"),
        (&["sla", "report", "--from", "postgres", "--query-timeout", "2s"], "SELECT"),
        (&["mirror", "canary", "--wait", "2s"], "SELECT"),
        (&["events", "replay", "--all", "--from", "postgres", "--since", "-1h"], "SELECT"),
        (&["events", "replay", "--all", "--from", "postgres", "--to", "redis", "--since", "-1h", "--yes"], "SELECT"),
        (&["db", "migrate"], "CREATE"),
        (&["doctor"], "SELECT"),
    ];
    // Each case has its own stalling proxy, and nothing they start is ever written: side by side.
    let one = |(args, stall_on): (&'static [&'static str], &'static str)| {
        let (dir, db, prefix) = (dir.path(), db.clone(), prefix.clone());
        async move {
            let proxy = crate::support::StallingProxy::start(stall_on).await;
            let mut c = crate::support::bin(dir);
            c.args(["--timeout", "2s"])
                .args(args)
                .env("DATABASE_URL", proxy.url(&db))
                .env("REDIS_URL", crate::support::redis_url())
                .env("REDIS_KEY_PREFIX", &prefix);
            let _sandbox = if args[0] == "mirror" {
                let (sb, env) = crate::support::sandbox().await;
                env.apply(&mut c);
                Some(sb)
            } else {
                None
            };
            let started = std::time::Instant::now();
            let r = tokio::time::timeout(Duration::from_secs(30), crate::support::run(c)).await;
            (args, r.ok(), started.elapsed())
        }
    };
    let ran: Vec<_> = futures::stream::iter(cases.into_iter().map(one)).buffer_unordered(6).collect().await;
    let mut slow = Vec::new();
    for (args, r, took) in ran {
        // A probe says CRITICAL (a stalled service), every other command could not run.
        check(&mut slow, args, if args[0] == "mirror" { 2 } else { 3 }, r, took);
    }
    assert!(slow.is_empty(), "{}", slow.join("\n"));
}

fn check(slow: &mut Vec<String>, args: &[&str], code: i32, r: Option<crate::support::Run>, took: Duration) {
    match r {
        None => slow.push(format!("{args:?}: still running at 30 s")),
        // 2 x the time-out + 1 s.
        Some(r) if took > Duration::from_secs(5) || r.code != code || !names_the_stall(&r) => {
            slow.push(format!("{args:?}: exit {} after {took:?}: {}{}", r.code, r.stdout, r.stderr))
        }
        Some(r) => println!("{args:?}: exit {} after {took:?}", r.code),
    }
}

fn names_the_stall(r: &crate::support::Run) -> bool {
    let said = format!("{}{}", r.stdout, r.stderr);
    said.contains("stalled after the connection was made") || said.contains("no answer within 2.00s")
}
