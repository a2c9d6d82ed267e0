//! The probes held to docs/probes.md's table of failure classes → states (the monitoring-plugins
//! guidelines): the service refusing, resetting, hanging, not resolving or answering 5xx is
//! CRITICAL (exit 2); our own key refused (401) or a missing setting is UNKNOWN (exit 3).

use serde_json::Value;

use crate::support::{self, Hang, bin, run};

/// A server that accepts every connection and closes it at once (a reset before any answer).
struct Reset {
    addr: std::net::SocketAddr,
    _task: tokio::task::JoinHandle<()>,
}

impl Reset {
    async fn start() -> Reset {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                // SO_LINGER 0: the close is a RST, as a crashing server's is.
                let _ = socket.set_zero_linger();
                drop(socket);
            }
        });
        Reset { addr, _task: task }
    }
}

/// A port nothing listens on.
fn refused() -> String {
    format!("127.0.0.1:{}", support::free_port())
}

/// What, the probe's arguments, its environment, the check that says it, its state, the exit code.
type Case<'a> = (&'a str, Vec<&'a str>, Vec<(&'a str, String)>, &'a str, &'a str, i32);

async fn probe(args: &[&str], env: &[(&str, String)]) -> (i32, Value) {
    let dir = tempfile::tempdir().unwrap();
    let mut c = bin(dir.path());
    c.args(["-o", "json", "--timeout", "1s"]).args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = run(c).await;
    let doc = serde_json::from_str(&out.stdout).unwrap_or(Value::Null);
    (out.code, doc)
}

fn state_of(doc: &Value, check: &str) -> String {
    doc["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == check))
        .and_then(|c| c["state"].as_str())
        .unwrap_or("-")
        .to_string()
}

#[tokio::test]
async fn every_probe_gives_each_failure_class_the_state_of_the_table() {
    let hang = Hang::start().await;
    let reset = Reset::start().await;
    let (_sb, env) = support::start(support::faulted(support::options(), |f| f.http_error_rate = 1.0)).await;
    let (_ok, good) = support::sandbox().await;
    let wrong_key = format!("{}:wrong-secret", good.key_name());
    let ably = |url: String, key: String| vec![("ABLY_REST_URL", url), ("ABLY_API_KEY", key)];
    let key = || env.key.clone();
    let cases: Vec<Case> = vec![
        (
            "ably refused",
            vec!["ably", "health"],
            ably(format!("http://{}", refused()), key()),
            "latency",
            "CRITICAL",
            2,
        ),
        ("ably reset", vec!["ably", "health"], ably(format!("http://{}", reset.addr), key()), "latency", "CRITICAL", 2),
        ("ably hangs", vec!["ably", "health"], ably(format!("http://{}", hang.addr), key()), "latency", "CRITICAL", 2),
        ("ably DNS", vec!["ably", "health"], ably("https://ably.invalid".into(), key()), "latency", "CRITICAL", 2),
        ("ably 5xx", vec!["ably", "health"], ably(env.base.clone(), key()), "messages", "CRITICAL", 2),
        ("ably 401", vec!["ably", "health"], ably(good.base.clone(), wrong_key.clone()), "messages", "UNKNOWN", 3),
        (
            "redis refused",
            vec!["ably", "backlog"],
            vec![("REDIS_URL", format!("redis://{}", refused()))],
            "waiting",
            "CRITICAL",
            2,
        ),
        (
            "redis reset",
            vec!["ably", "backlog"],
            vec![("REDIS_URL", format!("redis://{}", reset.addr))],
            "waiting",
            "CRITICAL",
            2,
        ),
        (
            "redis hangs",
            vec!["ably", "backlog"],
            vec![("REDIS_URL", format!("redis://{}", hang.addr))],
            "waiting",
            "CRITICAL",
            2,
        ),
        (
            "redis DNS",
            vec!["ably", "backlog"],
            vec![("REDIS_URL", "redis://redis.invalid".into())],
            "waiting",
            "CRITICAL",
            2,
        ),
        (
            "redis password refused",
            vec!["ably", "backlog"],
            vec![(
                "REDIS_URL",
                format!("redis://nobody:wrong@{}", support::redis_url().trim_start_matches("redis://")),
            )],
            "waiting",
            "UNKNOWN",
            3,
        ),
        (
            "canary: ably 5xx",
            vec!["mirror", "canary"],
            [ably(env.base.clone(), key()), vec![("REDIS_URL", support::redis_url())]].concat(),
            "publish_latency",
            "CRITICAL",
            2,
        ),
        (
            "canary: our key refused",
            vec!["mirror", "canary"],
            [ably(good.base.clone(), wrong_key.clone()), vec![("REDIS_URL", support::redis_url())]].concat(),
            "publish_latency",
            "UNKNOWN",
            3,
        ),
        (
            "canary: redis refused",
            vec!["mirror", "canary"],
            [ably(good.base.clone(), good.key.clone()), vec![("REDIS_URL", format!("redis://{}", refused()))]].concat(),
            "redis_latency",
            "CRITICAL",
            2,
        ),
    ];
    let mut wrong = Vec::new();
    for (what, args, vars, check, want, code) in &cases {
        let (got_code, doc) = probe(args, vars).await;
        let got = state_of(&doc, check);
        if (got.as_str(), got_code) != (*want, *code) {
            wrong.push(format!("{what}: {check} {got} exit {got_code}, want {want} exit {code}: {doc}"));
        }
    }
    // A missing setting: UNKNOWN, naming it.
    for args in [&["ably", "health"][..], &["ably", "backlog"], &["mirror", "canary"]] {
        let dir = tempfile::tempdir().unwrap();
        let mut c = bin(dir.path());
        c.args(args);
        let out = run(c).await;
        let said = format!("{}{}", out.stdout, out.stderr);
        if out.code != 3 || !(said.contains("ABLY_API_KEY") || said.contains("REDIS_URL")) {
            wrong.push(format!("{args:?} without settings: exit {} {}", out.code, out.stderr));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
