//! What a careless or hostile operator could do: terminal escape sequences in tokens, keys and
//! arguments; zero and absurd values; passwords in URLs; a finished replay run again; counts that
//! would wrap; a closed Postgres port. Plus a property test of the escaping and the parsers.

use rand::{Rng, SeedableRng};

use crate::support::{self, bin, run};

const ESC: &str = "\u{1b}]0;PWN\u{7}\u{1b}[2J";

fn no_raw_controls(what: &str, text: &str) {
    assert!(
        !text.chars().any(|c| c == '\u{1b}' || c == '\u{7}' || c == '\u{9b}'),
        "{what} printed a raw control:\n{text:?}"
    );
}

#[tokio::test]
async fn untrusted_text_never_reaches_the_terminal_raw_and_json_stays_exact() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "0123456789abcdef0123456789abcdef-escapes";
    let forged = broker_ops::token::codec::sign(
        &serde_json::json!({"alg": "HS256", "kid": format!("k{ESC}")}),
        &serde_json::json!({"iss": ESC, "email": format!("{ESC}@x"), "conversationId": ESC, "exp": 1, "jti": ESC}),
        secret.as_bytes(),
    );
    for args in [vec!["token", "inspect", forged.as_str()], vec!["token", "verify", forged.as_str()]] {
        let mut c = bin(dir.path());
        c.args(&args).env("RESUME_TOKEN_SECRET", secret);
        let r = run(c).await;
        no_raw_controls(&args.join(" "), &format!("{}{}", r.stdout, r.stderr));
        let mut c = bin(dir.path());
        c.args(&args).args(["-o", "json"]).env("RESUME_TOKEN_SECRET", secret);
        let doc: serde_json::Value = serde_json::from_str(&run(c).await.stdout).unwrap();
        let claims = if args[1] == "inspect" { &doc["claims"]["decoded"] } else { &doc["claims"] };
        assert_eq!(claims["iss"], ESC, "JSON keeps the exact value");
    }
    let mut c = bin(dir.path());
    c.args(["alert", "send", "--severity", "critical", "--summary", ESC, "--dedup-key", ESC, "--attempts", "1"])
        .args(["--retry-for", "1s", "--label", &format!("x={ESC}")])
        .env("SLACK_WEBHOOK_URL", "http://127.0.0.1:1/services/x")
        .env("BROKER_OPS_STATE_DIR", dir.path().join("state"));
    let r = run(c).await;
    assert_eq!(r.code, 1, "queued: {}", r.stderr);
    no_raw_controls("alert send", &format!("{}{}", r.stdout, r.stderr));
    for args in [vec!["alert", "outbox"], vec!["alert", "send", "--severity", "info", "--summary", ESC, "--dry-run"]] {
        let mut c = bin(dir.path());
        c.args(&args)
            .env("SLACK_WEBHOOK_URL", "http://127.0.0.1:1/services/x")
            .env("BROKER_OPS_STATE_DIR", dir.path().join("state"));
        let r = run(c).await;
        no_raw_controls(&args.join(" "), &format!("{}{}", r.stdout, r.stderr));
    }
    let mut c = bin(dir.path());
    c.args(["--config", &format!("{ESC}.toml"), "doctor"]);
    no_raw_controls("--config", &run(c).await.stderr);
    let mut c = bin(dir.path());
    c.args(["events", "replay", "--conversation", ESC]).env("REDIS_URL", support::redis_url());
    let r = run(c).await;
    no_raw_controls("--conversation", &format!("{}{}", r.stdout, r.stderr));
}

#[tokio::test]
async fn zero_and_absurd_values_are_refused_when_parsed() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["sla", "smoke", "--sandbox", "--chats", "1", "--no-report", "--sse-keepalive", "0s"][..],
        &["sla", "smoke", "--sandbox", "--turns", "0"],
        &["sla", "smoke", "--sandbox", "--chats", "0"],
        &["sla", "smoke", "--sandbox", "--rate", "1/s", "--max-in-flight", "0"],
        &["sla", "smoke", "--sandbox", "--reply-timeout", "0s"],
        &["sla", "smoke", "--threshold", "error_rate<200%"],
        &["sla", "smoke", "--threshold", "error_rate<-1%"],
        &["alert", "send", "--severity", "info", "--summary", "x", "--attempts", "0"],
        &["alert", "send", "--severity", "info", "--summary", "x", "--retry-for", "0s"],
        &["alert", "send", "--severity", "info", "--summary", "x", "--runbook", "javascript:alert(1)"],
        &["events", "replay", "--all", "--page-size", "0"],
        &["token", "issue", "--conversation", "1", "--email", "a@example.com", "--ttl", "0s"],
        &["token", "issue", "--conversation", "1", "--email", "a@example.com", "--ttl", "999999999d"],
        &["sandbox", "--sse-keepalive", "0s"],
        &["sandbox", "--ai-error-rate", "2"],
    ] {
        let mut c = bin(dir.path());
        c.args(args);
        let r = run(c).await;
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
    }
    let mut c = bin(dir.path());
    c.args(["sandbox", "--listen", "0.0.0.0:0"]);
    let r = run(c).await;
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("is not a loopback address") && r.stderr.contains("--allow-remote"), "{}", r.stderr);
}

#[tokio::test]
async fn passwords_in_service_urls_are_never_shown() {
    let (_sb, env) = support::sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let with_pw = env.base.replace("http://", "http://user:hunter2pw@");
    let mut c = bin(dir.path());
    c.args(["sla", "smoke", "--chats", "1", "--report-dir", "reports"])
        .env("CHATWOOT_BASE_URL", &with_pw)
        .env("CHATWOOT_INBOX_IDENTIFIER", &env.inbox)
        .env("ABLY_REST_URL", &with_pw)
        .env("ABLY_API_KEY", &env.key);
    let r = run(c).await;
    let mut shown = format!("{}{}", r.stdout, r.stderr);
    for e in std::fs::read_dir(dir.path().join("reports")).unwrap() {
        let p = e.unwrap().path();
        shown.push_str(&p.display().to_string());
        shown.push_str(&std::fs::read_to_string(&p).unwrap());
    }
    let mut c = bin(dir.path());
    c.arg("doctor").env("CHATWOOT_BASE_URL", &with_pw).env("ABLY_REST_URL", &with_pw).env("ABLY_API_KEY", &env.key);
    let r = run(c).await;
    shown.push_str(&format!("{}{}", r.stdout, r.stderr));
    assert!(!shown.contains("hunter2pw"), "a password was shown:\n{shown}");
    assert!(shown.contains("user:***@"), "the redacted form is shown:\n{shown}");
}

#[tokio::test]
async fn a_closed_postgres_port_is_named_as_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = bin(dir.path());
    c.args(["--timeout", "20s", "events", "replay", "--conversation", "1", "--from", "postgres"])
        .env("DATABASE_URL", "postgres://u@127.0.0.1:1/db");
    let started = std::time::Instant::now();
    let r = run(c).await;
    assert_eq!(r.code, 3);
    assert!(r.stderr.contains("Postgres connect at postgres://u@127.0.0.1:1/db"), "{}", r.stderr);
    assert!(r.stderr.to_lowercase().contains("connection refused"), "{}", r.stderr);
    // Not the 20 s pool time-out: a hang detector, generous on a busy machine.
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "{:?}", started.elapsed());
}

#[tokio::test]
async fn merged_counts_that_would_wrap_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("a.hlog");
    let mut c = bin(dir.path());
    c.args(["sla", "smoke", "--sandbox", "--chats", "1", "--no-report", "--ai-latency", "fixed:10ms"])
        .args(["--histogram-out", log.to_str().unwrap()]);
    assert_eq!(run(c).await.code, 0);
    let text = std::fs::read_to_string(&log).unwrap();
    let huge = text.replacen("\"total\":1", &format!("\"total\":{}", u64::MAX), 1);
    assert_ne!(huge, text, "the meta line carries the total");
    let b = dir.path().join("b.hlog");
    std::fs::write(&b, &huge).unwrap();
    std::fs::write(&log, &huge).unwrap();
    let mut c = bin(dir.path());
    c.args(["sla", "merge", "--no-report", log.to_str().unwrap(), b.to_str().unwrap()]);
    let r = run(c).await;
    assert_eq!(r.code, 3, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("overflow"), "{}", r.stderr);
}

/// Random text, with control characters, bidi overrides and multi-byte characters in it.
fn random_text(rng: &mut rand::rngs::StdRng) -> String {
    let n = rng.random_range(0..40);
    (0..n)
        .map(|_| match rng.random_range(0..6) {
            0 => char::from_u32(rng.random_range(0..0x20)).unwrap(),
            1 => char::from_u32(rng.random_range(0x7f..0xa0)).unwrap(),
            2 => ['\u{202e}', '\u{2066}', '\u{200f}', 'é', '→', '😀'][rng.random_range(0..6)],
            _ => char::from_u32(rng.random_range(0x20..0x7f)).unwrap(),
        })
        .collect()
}

#[test]
fn escaping_and_parsers_hold_on_random_input() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(12);
    for _ in 0..20_000 {
        let t = random_text(&mut rng);
        let e = broker_ops::output::escape(&t);
        assert!(!e.chars().any(|c| c.is_control() || ('\u{202a}'..='\u{202e}').contains(&c)), "{t:?} -> {e:?}");
        if !t.chars().any(|c| {
            c.is_control()
                || ('\u{2066}'..='\u{2069}').contains(&c)
                || matches!(c, '\u{202a}'..='\u{202e}' | '\u{200e}' | '\u{200f}')
        }) {
            assert_eq!(e, t, "plain text is unchanged");
        }
        // The parsers answer, never panic, and what they accept is sane.
        if let Ok(d) = broker_ops::duration::parse_positive_duration(&t) {
            assert!(!d.is_zero());
        }
        if let Ok(th) = t.parse::<broker_ops::sla::Threshold>() {
            assert!(th.limit.is_finite() && th.limit >= 0.0, "{t:?}");
        }
        if let Ok(r) = t.parse::<broker_ops::probe::Rule>() {
            assert!(r.limit.is_finite() && r.limit >= 0.0, "{t:?}");
        }
        let _ = broker_ops::contracts::Pattern::parse(&t);
        let _ = broker_ops::contracts::Table::parse(&t);
    }
    for (text, ok) in [("p95<5s", true), ("error_rate<100%", true), ("p95<-5s", false), ("error_rate<1e400%", false)] {
        assert_eq!(text.parse::<broker_ops::sla::Threshold>().is_ok(), ok, "{text}");
    }
}

/// A target that answers every request 500 (or refuses the key) never ran a chat: that is
/// "could not run" (3), not an SLA failure (1).
#[tokio::test]
async fn a_smoke_whose_target_refuses_everything_could_not_run() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = bin(dir.path());
    c.args(["sla", "smoke", "--sandbox", "--chats", "2", "--no-report", "--http-error-rate", "1"]);
    let r = run(c).await;
    assert_eq!(r.code, 3, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("every chat failed before its first message") && r.stderr.contains("HTTP 500"),
        "{}",
        r.stderr
    );
    let (_sb, env) = support::sandbox().await;
    let mut c = bin(dir.path());
    c.args(["sla", "smoke", "--chats", "2", "--no-report"])
        .env("CHATWOOT_BASE_URL", &env.base)
        .env("CHATWOOT_INBOX_IDENTIFIER", "no-such-inbox")
        .env("ABLY_REST_URL", &env.base)
        .env("ABLY_API_KEY", &env.key);
    let r = run(c).await;
    assert_eq!(r.code, 3, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("could not use the target"), "{}", r.stderr);
}

/// `--textfile`, `--chart` and `--report-dir` files are written through one writer that replaces
/// only a regular file: a FIFO, a symlink and a character device at the path are still what they
/// were afterwards, and the command says why it refused (exit 3).
#[tokio::test]
async fn no_file_but_a_regular_one_is_ever_replaced() {
    let (_sb, env) = support::sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "untouched").unwrap();
    let fifo = dir.path().join("out.fifo");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let link = dir.path().join("out.link");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    // A character device of our own (the null device's numbers), as root can make one.
    let dev = dir.path().join("out.dev");
    let made = std::process::Command::new("mknod").arg(&dev).args(["c", "1", "3"]).status().unwrap().success();
    let mut targets = vec![(fifo.clone(), "a FIFO"), (link.clone(), "a symbolic link")];
    if made {
        targets.push((dev.clone(), "a character device"));
    }
    let kind = |p: &std::path::Path| std::fs::symlink_metadata(p).unwrap().file_type();
    let before: Vec<_> = targets.iter().map(|(p, _)| kind(p)).collect();
    for (path, what) in &targets {
        let p = path.to_str().unwrap();
        let mut c = bin(dir.path());
        env.apply(&mut c).args(["ably", "health", "--textfile", p]);
        let r = run(c).await;
        assert_eq!(r.code, 3, "--textfile {what}: {}{}", r.stdout, r.stderr);
        assert!(r.stderr.contains(&format!("is {what}, not a regular file: refusing to replace it")), "{}", r.stderr);
        assert!(r.stderr.contains("the checks themselves are"), "both said: {}", r.stderr);
        let mut c = bin(dir.path());
        c.args(["sla", "report", "--from", "redis", "--since", "1h", "--chart", p])
            .env("REDIS_URL", support::redis_url())
            .env("REDIS_KEY_PREFIX", support::prefix("no-clobber"));
        let r = run(c).await;
        assert_eq!(r.code, 3, "--chart {what}: {}{}", r.stdout, r.stderr);
        assert!(r.stderr.contains("refusing to replace it"), "{}", r.stderr);
    }
    let after: Vec<_> = targets.iter().map(|(p, _)| kind(p)).collect();
    assert_eq!(before, after, "every path still of its kind");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched");
}

/// Durations past 100 years are refused where they are typed, naming the limit: no panic on
/// overflow (exit 101 before), nothing sent to Postgres ("interval out of range" before). And a
/// window reads one way everywhere: `--since 3h` is three hours before now in `events replay`
/// as in `sla report`.
#[tokio::test]
async fn overflowing_durations_are_usage_errors_that_name_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[&str], i32); 11] = [
        (&["rollout", "override", "c1", "on", "--for", "300000y", "--reason", "x", "--yes"], 2),
        (&["sla", "report", "--since", "99999999999d"], 2),
        (&["sla", "report", "--by", "300000y"], 2),
        (&["sla", "report", "--active-window", "300000y"], 2),
        (&["sla", "report", "--reply-timeout", "300000y"], 2),
        (&["sla", "report", "--query-timeout", "300000y"], 2),
        (&["events", "replay", "--all", "--since", "-300000y"], 2),
        (&["rollout", "status", "--active-window", "300000y"], 2),
        (&["rollout", "advance", "--window", "300000y"], 2),
        (&["token", "issue", "--conversation", "1", "--email", "a@example.com", "--ttl", "300000y"], 2),
        // A probe: its usage errors are UNKNOWN, as monitoring plugins' are.
        (&["monitor", "--sla-window", "300000y"], 3),
    ];
    for (args, code) in cases {
        let mut c = bin(dir.path());
        c.args(args)
            .env("DATABASE_URL", "postgres://127.0.0.1:1/x")
            .env("RESUME_TOKEN_SECRET", "0123456789abcdef0123456789abcdef-x");
        let r = run(c).await;
        assert_eq!(r.code, code, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains("100 years") || r.stderr.contains("10 years"), "{args:?}: {}", r.stderr);
    }
    let mut c = bin(dir.path());
    c.args(["events", "replay", "--all", "--since", "3h", "--from", "redis"])
        .env("REDIS_URL", support::redis_url())
        .env("REDIS_KEY_PREFIX", support::prefix("one-reading"));
    let r = run(c).await;
    assert_eq!(r.code, 0, "--since 3h as sla report reads it: {}", r.stderr);
}
