//! The binary: help for every command, exit codes, configuration precedence, `NAME_FILE`
//! secrets, secrets never printed, and the sandbox command's start and clean stop.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::support::{self, bin, run};

/// The subcommands listed under "Commands:" in a help text.
fn subcommands(help: &str) -> Vec<String> {
    let Some(section) = help.split("Commands:\n").nth(1) else { return Vec::new() };
    section
        .lines()
        .take_while(|l| l.starts_with("  "))
        // Wrapped descriptions are indented further than the command names.
        .filter(|l| !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn every_command_in_the_real_tree_has_help_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    // Walk the binary's own command tree, from its help, breadth first.
    let mut queue: Vec<Vec<String>> = vec![vec![]];
    let mut seen = Vec::new();
    while let Some(path) = queue.pop() {
        let mut cmd = bin(dir.path());
        cmd.args(&path).arg("--help");
        let r = run(cmd).await;
        assert_eq!(r.code, 0, "{path:?}: {}", r.stderr);
        assert!(r.stdout.contains("Usage: broker-ops"), "{path:?}: {}", r.stdout);
        for sub in subcommands(&r.stdout) {
            let mut p = path.clone();
            p.push(sub);
            queue.push(p);
        }
        seen.push(path.join(" "));
    }
    for expected in [
        "sla smoke",
        "sla merge",
        "ably health",
        "ably backlog",
        "events replay",
        "alert send",
        "db migrate",
        "token revoke",
        "doctor",
        "sandbox",
        "completions",
        "man",
    ] {
        assert!(seen.iter().any(|s| s == expected), "{expected} not in the tree: {seen:?}");
    }
    let mut version = bin(dir.path());
    version.arg("--version");
    assert_eq!(run(version).await.stdout.trim(), format!("broker-ops {}", env!("CARGO_PKG_VERSION")));
}

#[tokio::test]
async fn probe_usage_errors_exit_unknown_even_after_flags_with_values() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["-o", "nagios", "ably", "health", "--warn", "x"][..],
        &["--timeout", "2s", "ably", "backlog", "--crit", "latency>NaN"],
        &["ably", "health", "--no-such-flag"],
        &["--config", "x.toml", "-o", "json", "ably", "backlog", "--top", "0"],
    ] {
        let mut cmd = bin(dir.path());
        cmd.args(args);
        assert_eq!(run(cmd).await.code, 3, "{args:?}");
    }
    let mut cmd = bin(dir.path());
    cmd.args(["-o", "nagios", "doctor", "--bogus"]);
    assert_eq!(run(cmd).await.code, 2, "not a probe: clap's usage code");
    let mut cmd = bin(dir.path());
    cmd.args(["ably", "health", "--warn", "foo>1"]).env("ABLY_API_KEY", "a.b:c");
    let r = run(cmd).await;
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("unknown metric \"foo\" (this probe has: latency, skew,"), "{}", r.stderr);
}

#[tokio::test]
async fn usage_errors_exit_2_and_configuration_errors_exit_3_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = bin(dir.path());
    cmd.args(["doctor", "--no-such-flag"]);
    let r = run(cmd).await;
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("unexpected argument '--no-such-flag'"), "{}", r.stderr);

    let mut cmd = bin(dir.path());
    cmd.arg("doctor").env("REDIS_URL", "http://user:pw@example.com");
    let r = run(cmd).await;
    assert_eq!(r.code, 3);
    assert_eq!(
        r.stderr.trim(),
        "error: REDIS_URL from environment variable REDIS_URL: unsupported scheme \"http\" (expected one of redis, rediss, valkey, valkeys, unix, redis+unix)"
    );

    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "chatwoot_account_id = \"abc\"\n").unwrap();
    let mut cmd = bin(dir.path());
    cmd.args(["doctor", "--config", file.to_str().unwrap()]);
    let r = run(cmd).await;
    assert_eq!(r.code, 3);
    assert!(
        r.stderr.starts_with(&format!(
            "error: CHATWOOT_ACCOUNT_ID from config file {}: expected a positive integer",
            file.display()
        )),
        "{}",
        r.stderr
    );

    let mut cmd = bin(dir.path());
    cmd.args(["sandbox", "--mirror", "--listen", "127.0.0.1:0"]);
    let r = run(cmd).await;
    assert_eq!(r.code, 3);
    assert!(r.stderr.contains("--mirror needs REDIS_URL or DATABASE_URL"), "{}", r.stderr);

    let mut cmd = bin(dir.path());
    cmd.args(["sandbox", "--listen", "127.0.0.1:0", "--redis-url", "redis://:pw@127.0.0.1:6379"]);
    let r = run(cmd).await;
    assert_eq!(r.code, 3, "no flag takes a secret");
    assert!(r.stderr.contains("--redis-url must not carry a password"), "{}", r.stderr);
}

#[tokio::test]
async fn flags_beat_environment_which_beats_the_config_file() {
    let (_sb, env) = support::sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    // The file's value is broken; the environment's wins, so the file's is never used.
    std::fs::write(dir.path().join("broker-ops.toml"), "ably_rest_url = \"ftp://nowhere\"\nbroker_queue = \"q\"\n")
        .unwrap();
    let mut cmd = bin(dir.path());
    cmd.args(["doctor", "-o", "json"]).env("ABLY_REST_URL", &env.base).env("ABLY_API_KEY", &env.key);
    let r = run(cmd).await;
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    // Without the environment, ./broker-ops.toml is read and its bad value reported.
    let mut cmd = bin(dir.path());
    cmd.arg("doctor");
    let r = run(cmd).await;
    assert_eq!(r.code, 3);
    assert!(r.stderr.contains("ABLY_REST_URL from config file broker-ops.toml"), "{}", r.stderr);
    // --timeout (a flag) beats BROKER_OPS_TIMEOUT (environment): the bad env value is never read.
    let mut cmd = bin(dir.path());
    cmd.args(["doctor", "--timeout", "2s"]).env("BROKER_OPS_TIMEOUT", "soon").env("ABLY_REST_URL", &env.base);
    assert_eq!(run(cmd).await.code, 0);
    let mut cmd = bin(dir.path());
    cmd.args(["doctor"]).env("BROKER_OPS_TIMEOUT", "soon").env("ABLY_REST_URL", &env.base);
    let r = run(cmd).await;
    assert_eq!(r.code, 3);
    assert!(r.stderr.contains("BROKER_OPS_TIMEOUT from environment variable BROKER_OPS_TIMEOUT"), "{}", r.stderr);
}

#[tokio::test]
async fn secrets_come_from_name_file() {
    let (_sb, env) = support::sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("ably.key");
    std::fs::write(&key_file, format!("{}\n", env.key)).unwrap();
    let mut cmd = bin(dir.path());
    cmd.args(["doctor", "-o", "json"]).env("ABLY_REST_URL", &env.base).env("ABLY_API_KEY_FILE", &key_file);
    let r = run(cmd).await;
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(doc["checks"][0]["name"], "ably");
    assert_eq!(doc["checks"][0]["reachable"], true);
    assert!(!r.stdout.contains(env.key_secret()));
}

#[tokio::test]
async fn no_secret_appears_in_any_output_even_at_trace_level() {
    let dir = tempfile::tempdir().unwrap();
    let secrets =
        ["SECRETABLY1234", "SECRETREDIS1234", "SECRETPG1234", "SECRETSLACK1234", "SECRETSMTP1234", "SECRETCW1234"];
    for format in ["table", "json", "ndjson"] {
        let mut cmd = bin(dir.path());
        cmd.args(["doctor", "-vvv", "--timeout", "2s", "-o", format])
            .env("ABLY_REST_URL", "http://127.0.0.1:1")
            .env("ABLY_API_KEY", "app.key:SECRETABLY1234")
            .env("REDIS_URL", "redis://default:SECRETREDIS1234@127.0.0.1:1")
            .env("DATABASE_URL", "postgres://u:SECRETPG1234@127.0.0.1:1/db")
            .env("SLACK_WEBHOOK_URL", "http://127.0.0.1:1/services/T0/B0/SECRETSLACK1234")
            .env("SMTP_URL", "smtp://u:SECRETSMTP1234@127.0.0.1:1")
            .env("CHATWOOT_BASE_URL", "http://127.0.0.1:1")
            .env("CHATWOOT_API_TOKEN", "SECRETCW1234");
        let r = run(cmd).await;
        assert_eq!(r.code, 3, "nothing is reachable: {}", r.stdout);
        for s in secrets {
            assert!(
                !r.stdout.contains(s) && !r.stderr.contains(s),
                "{s} leaked in {format}:\n{}\n{}",
                r.stdout,
                r.stderr
            );
        }
        assert!(r.stdout.contains("127.0.0.1:1"), "the addresses are named");
    }
}

#[tokio::test]
async fn completions_and_man_page_are_generated() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = bin(dir.path());
    cmd.args(["completions", "bash"]);
    let r = run(cmd).await;
    assert_eq!(r.code, 0);
    assert!(
        r.stdout.contains("_broker__ops()") && r.stdout.contains("broker-ops") && r.stdout.contains("sandbox"),
        "{}",
        &r.stdout[..200.min(r.stdout.len())]
    );
    let mut cmd = bin(dir.path());
    cmd.arg("man");
    let r = run(cmd).await;
    assert_eq!(r.code, 0);
    assert!(r.stdout.starts_with(".ie \\n(.g .ds Aq") || r.stdout.contains(".TH broker-ops"), "{}", &r.stdout[..200]);
}

#[tokio::test]
async fn sandbox_prints_its_environment_serves_and_stops_cleanly_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = bin(dir.path());
    cmd.args(["sandbox", "--listen", "127.0.0.1:0", "--ai-latency", "fixed:10ms"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(10), lines.next_line()).await.unwrap().unwrap().unwrap();
    let exports = first.strip_prefix("export ").expect("an export line");
    let vars: std::collections::HashMap<&str, &str> = exports.split(' ').filter_map(|kv| kv.split_once('=')).collect();
    for k in [
        "ABLY_REST_URL",
        "ABLY_API_KEY",
        "CHATWOOT_BASE_URL",
        "CHATWOOT_INBOX_IDENTIFIER",
        "CHATWOOT_API_TOKEN",
        "CHATWOOT_ACCOUNT_ID",
    ] {
        assert!(vars.contains_key(k), "{k} in {first}");
    }
    assert!(vars["ABLY_API_KEY"].starts_with("sandboxapp.keyid:"));
    let time = support::http().get(format!("{}/time", vars["ABLY_REST_URL"])).send().await.unwrap();
    assert_eq!(time.status(), 200);
    let pid = child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait()).await.expect("stops within 10 s").unwrap();
    assert_eq!(status.code(), Some(0));
}

/// Every setting the tool reads is in docs/configuration.md, and every contract key in
/// docs/contracts.md: docs that omit a setting are docs that lie by omission.
#[test]
fn the_docs_list_every_setting_and_contract() {
    let root = env!("CARGO_MANIFEST_DIR");
    let config = std::fs::read_to_string(format!("{root}/docs/configuration.md")).unwrap();
    for s in broker_ops::config::settings::SETTINGS {
        assert!(config.contains(&format!("`{}`", s.name)), "docs/configuration.md does not list {}", s.name);
    }
    let contracts = std::fs::read_to_string(format!("{root}/docs/contracts.md")).unwrap();
    for (key, default) in broker_ops::contracts::CONTRACT_KEYS {
        let shown = if default.is_empty() { "(empty)".to_string() } else { format!("`{default}`") };
        assert!(contracts.contains(&format!("| `{key}` | {shown} |")), "docs/contracts.md: {key} = {shown}");
    }
}

/// No doc names a command that does not exist: every `broker-ops WORD [WORD]` in the README and
/// docs/ is asked for its help.
#[tokio::test]
async fn every_command_the_docs_name_exists() {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut files = vec![format!("{root}/README.md")];
    for e in std::fs::read_dir(format!("{root}/docs")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "md") {
            files.push(p.display().to_string());
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let mut checked = std::collections::BTreeSet::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for (i, _) in text.match_indices("broker-ops ") {
            let words: Vec<&str> = text[i + "broker-ops ".len()..]
                .split(|c: char| !(c.is_ascii_lowercase() || c == '-'))
                .take(2)
                .collect();
            let command = words[0];
            // Prose ("broker-ops is one ...") is not a command line: only known first words.
            if ![
                "sandbox",
                "sla",
                "ably",
                "events",
                "alert",
                "token",
                "doctor",
                "db",
                "mirror",
                "rollout",
                "monitor",
                "completions",
                "man",
            ]
            .contains(&command)
            {
                continue;
            }
            let has_sub = !["doctor", "sandbox", "monitor", "completions", "man"].contains(&command);
            let path: Vec<&str> = if has_sub { words.clone() } else { vec![command] };
            if checked.insert(path.join(" ")) {
                let mut cmd = bin(dir.path());
                cmd.args(&path).arg("--help");
                let r = run(cmd).await;
                assert_eq!(r.code, 0, "{f} names `broker-ops {}`, which does not exist: {}", path.join(" "), r.stderr);
            }
        }
    }
}

/// One SLA: the same `[sla]` file sets the smoke's thresholds and reply time-out, the report's
/// SLO and time-out, and the monitor's built-in rules; each command says where its values came
/// from, and a flag still wins.
#[tokio::test]
async fn one_sla_file_sets_the_smoke_the_report_and_the_monitor_alike() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("broker-ops.toml");
    std::fs::write(&cfg, "[sla]\nslo = \"3s\"\nerror_budget = \"2%\"\nreply_timeout = \"45s\"\n").unwrap();
    let cmd = |args: &[&str]| {
        let mut c = bin(dir.path());
        c.arg("--config").arg(&cfg).args(args);
        c
    };
    let smoke =
        run(cmd(&["-o", "json", "sla", "smoke", "--sandbox", "--chats", "2", "--ai-latency", "fixed:10ms"])).await;
    assert_eq!(smoke.code, 0, "{}", smoke.stderr);
    let doc: serde_json::Value = serde_json::from_str(&smoke.stdout).unwrap();
    let exprs: Vec<&str> = doc["thresholds"].as_array().unwrap().iter().map(|t| t["expr"].as_str().unwrap()).collect();
    assert_eq!(exprs, ["p95<3s", "error_rate<2%"]);
    assert!(smoke.stderr.contains("reply time-out: 45.00s (config file"), "{}", smoke.stderr);

    let prefix = support::prefix("one-sla");
    let report = |extra: &[&str]| {
        let mut c = cmd(&[&["-o", "json", "sla", "report", "--from", "redis", "--since", "1h"], extra].concat());
        c.env("REDIS_URL", support::redis_url()).env("REDIS_KEY_PREFIX", &prefix);
        run(c)
    };
    let r = report(&[]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!((doc["slo_ms"].as_f64(), doc["reply_timeout_ms"].as_f64()), (Some(3000.0), Some(45000.0)));
    assert!(r.stderr.contains("P95 within 3.00s (config file"), "{}", r.stderr);
    let r = report(&["--reply-timeout", "10s"]).await;
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(doc["reply_timeout_ms"].as_f64(), Some(10000.0), "the flag wins");
    assert!(r.stderr.contains("unanswered after 10.00s (flag --reply-timeout)"), "{}", r.stderr);

    let rules = run(cmd(&["-o", "json", "monitor", "rules"])).await;
    let doc: serde_json::Value = serde_json::from_str(&rules.stdout).unwrap();
    let condition =
        |name: &str| doc["rules"].as_array().unwrap().iter().find(|r| r["name"] == name).unwrap()["condition"].clone();
    assert_eq!(condition("sla-p95-over-budget"), "value > 3000ms");
    assert_eq!(condition("sla-errors"), "value >= 2%");

    // The environment beats the file; a typo in the table is refused at start.
    let mut c = cmd(&["-o", "json", "monitor", "rules"]);
    c.env("BROKER_OPS_SLA_SLO", "2s");
    let doc: serde_json::Value = serde_json::from_str(&run(c).await.stdout).unwrap();
    assert!(doc.to_string().contains("value > 2000ms"), "{doc}");
    std::fs::write(&cfg, "[sla]\nslo_ms = 3000\n").unwrap();
    let bad = run(cmd(&["monitor", "rules"])).await;
    assert_eq!(bad.code, 3);
    assert!(bad.stderr.contains("unknown key `sla.slo_ms`"), "{}", bad.stderr);
}

/// A misspelt `BROKER_OPS_*` variable is refused with a suggestion, as the same typo in the
/// config file is: ignoring it would run with the default the operator meant to change.
#[tokio::test]
async fn a_misspelt_broker_ops_variable_is_refused_with_a_suggestion() {
    let dir = tempfile::tempdir().unwrap();
    for (var, meant) in [
        ("BROKER_OPS_TIMEUOT", "BROKER_OPS_TIMEOUT"),
        ("BROKER_OPS_CONTRACT_CHANEL", "BROKER_OPS_CONTRACT_CHANNEL"),
        ("BROKER_OPS_SLA_SOL", "BROKER_OPS_SLA_SLO"),
    ] {
        let mut c = bin(dir.path());
        c.args(["monitor", "rules"]).env(var, "x");
        let r = run(c).await;
        assert_eq!(r.code, 3, "{var}: {}", r.stderr);
        assert!(
            r.stderr.contains(&format!("unknown environment variable {var} (did you mean {meant}?)")),
            "{}",
            r.stderr
        );
    }
    let mut c = bin(dir.path());
    c.args(["monitor", "rules"]).env("BROKER_OPS_LOG", "warn").env("BROKER_OPS_SLA_SLO", "4s");
    assert_eq!(run(c).await.code, 0, "the tool's own variables pass");
}

/// The commands a help text lists, with their one-line descriptions (continuation lines joined).
fn listed(help: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let section = help.split("\nCommands:\n").nth(1).unwrap_or("");
    for line in section.lines().take_while(|l| !l.is_empty()) {
        match line.strip_prefix("  ").filter(|l| !l.starts_with(' ')) {
            Some(entry) => {
                let (name, about) = entry.split_once(' ').unwrap_or((entry, ""));
                out.push((name.to_string(), about.trim().to_string()));
            }
            None => {
                if let Some(last) = out.last_mut() {
                    last.1.push(' ');
                    last.1.push_str(line.trim());
                }
            }
        }
    }
    out.retain(|(name, _)| name != "help");
    out
}

/// A test walks the command tree: every command with subcommands names each of them in the
/// description its parent's help shows, so `broker-ops --help` never hides one.
#[tokio::test]
async fn every_help_names_every_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let help = |path: Vec<String>| {
        let mut cmd = bin(dir.path());
        cmd.args(&path).arg("--help");
        run(cmd)
    };
    let mut queue = vec![(Vec::<String>::new(), String::new())];
    let mut walked = 0;
    while let Some((path, about)) = queue.pop() {
        let r = help(path.clone()).await;
        assert_eq!(r.code, 0, "{path:?}: {}", r.stderr);
        let children = listed(&r.stdout);
        if !path.is_empty() && !children.is_empty() {
            let words: Vec<&str> = about.split(|c: char| !c.is_alphanumeric() && c != '-').collect();
            for (child, _) in &children {
                assert!(
                    words.contains(&child.as_str()),
                    "`broker-ops {}` is described as {about:?}: it does not name `{child}`",
                    path.join(" ")
                );
            }
        }
        for (child, about) in children {
            queue.push(([path.clone(), vec![child]].concat(), about));
        }
        walked += 1;
    }
    assert!(walked > 30, "the whole tree was walked ({walked} commands)");
}
