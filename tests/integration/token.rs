//! Resume tokens: every bad input of the issue gives a precise reason and never a panic;
//! interop with the real `jsonwebtoken` and `jose`; revocation in the real Redis; exit codes.

use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use broker_ops::contracts::{Contracts, TokenContract};
use broker_ops::token::{self, IssueRequest, Keys, VerifyOptions};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::support::{self, bin, run};

const SECRET: &str = "0123456789abcdef0123456789abcdef-resume";
const OTHER: &str = "fedcba9876543210fedcba9876543210-other";

fn keys() -> Keys {
    Keys::from_pairs(&[("k1", SECRET), ("k0", OTHER)])
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A deployment that pins its issuer and audience and requires every claim (the defaults, the
/// product plan's, pin none of them: see the test of plan-shaped tokens).
static CONTRACT: std::sync::LazyLock<TokenContract> = std::sync::LazyLock::new(|| TokenContract {
    issuer: Some("ai-broker".into()),
    audience: Some("chat-resume".into()),
    required: ["conversationId", "email", "iat", "exp", "jti"].map(String::from).to_vec(),
    ..Contracts::default().token
});

fn opts() -> VerifyOptions<'static> {
    VerifyOptions { leeway: Duration::from_secs(30), now: now(), contract: &CONTRACT }
}

/// Issues for conversation `conv` to `email`, valid for `ttl`, under the default contract.
fn issue(conv: &str, email: &str, ttl: Duration, base: Option<&url::Url>) -> token::Issued {
    let req = IssueRequest { conversation_id: conv, email, ttl, now: now(), app_base_url: base };
    token::issue(&keys(), &CONTRACT, req).unwrap()
}

fn claims() -> Value {
    json!({"iss": "ai-broker", "aud": "chat-resume", "conversationId": 4711, "email": "ann@example.com",
           "iat": now(), "exp": now() + 3600, "jti": "j-1"})
}

fn sign(header: Value, claims: Value, secret: &str) -> String {
    token::codec::sign(&header, &claims, secret.as_bytes())
}

fn hs(kid: &str) -> Value {
    json!({"alg": "HS256", "typ": "JWT", "kid": kid})
}

/// Encodes raw header and payload text with a valid signature.
fn raw(header: &str, payload: &str, secret: &str) -> String {
    let input = format!("{}.{}", B64.encode(header), B64.encode(payload));
    let sig = token::codec::mac(secret.as_bytes(), input.as_bytes());
    format!("{input}.{}", B64.encode(sig))
}

fn reasons(t: &[u8]) -> Vec<String> {
    let v = token::verify(t, &keys(), opts());
    assert!(!v.valid, "expected invalid: {t:?}");
    v.reasons
}

fn has(reasons: &[String], needle: &str) {
    assert!(reasons.iter().any(|r| r.contains(needle)), "no reason contains {needle:?}: {reasons:#?}");
}

#[test]
fn a_good_token_is_valid_and_every_bad_input_has_a_precise_reason() {
    let good = sign(hs("k1"), claims(), SECRET);
    assert!(token::verify(good.as_bytes(), &keys(), opts()).valid);

    has(
        &reasons(raw(r#"{"alg":"none","kid":"k1"}"#, &claims().to_string(), SECRET).as_bytes()),
        "alg \"none\" is refused",
    );
    has(
        &reasons(sign(json!({"alg": "RS256", "kid": "k1"}), claims(), SECRET).as_bytes()),
        "alg \"RS256\" is not allowed",
    );
    has(
        &reasons(sign(json!({"alg": "HS512", "kid": "k1"}), claims(), SECRET).as_bytes()),
        "alg \"HS512\" is not allowed",
    );
    has(&reasons(sign(hs("k1"), claims(), OTHER).as_bytes()), "the signature does not match");
    has(&reasons(sign(hs("k9"), claims(), SECRET).as_bytes()), "signed with unknown key id k9");
    has(&reasons(sign(json!({"alg": "HS256"}), claims(), SECRET).as_bytes()), "no kid and several keys");

    // A flipped bit in each part.
    let parts: Vec<&str> = good.split('.').collect();
    for i in 0..3 {
        let mut bytes = B64.decode(parts[i]).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x01;
        let mut p: Vec<String> = parts.iter().map(|s| s.to_string()).collect();
        p[i] = B64.encode(bytes);
        let r = reasons(p.join(".").as_bytes());
        assert!(!r.is_empty(), "flipped bit in part {i}");
    }
    let padded = format!("{}=.{}.{}", parts[0], parts[1], parts[2]);
    has(&reasons(padded.as_bytes()), "base64 with padding");
    let illegal = format!("{}.{}*.{}", parts[0], parts[1], parts[2]);
    has(&reasons(illegal.as_bytes()), "a character base64url does not use: '*'");
    has(
        &reasons(format!("{}.{}.{}", B64.encode("nope"), B64.encode("[1]"), parts[2]).as_bytes()),
        "the header is not a JSON object",
    );
    has(&reasons(b"only.two"), "expected three dot-separated parts");

    let dup = raw(r#"{"alg":"HS256","kid":"k1"}"#, r#"{"iss":"ai-broker","iss":"evil","aud":"chat-resume"}"#, SECRET);
    has(&reasons(dup.as_bytes()), "duplicate key \"iss\"");
    let mut c = claims();
    c["exp"] = json!("2030-01-01");
    has(&reasons(sign(hs("k1"), c, SECRET).as_bytes()), "exp must be a number");
    let mut c = claims();
    c["conversationId"] = json!(["x"]);
    c["email"] = json!("not-an-email");
    let r = reasons(sign(hs("k1"), c, SECRET).as_bytes());
    has(&r, "conversationId must be");
    has(&r, "email \"not-an-email\" is not a valid address");
    let mut c = claims();
    c["iss"] = json!("someone-else");
    c["aud"] = json!("other");
    let r = reasons(sign(hs("k1"), c, SECRET).as_bytes());
    assert_eq!(r.len(), 2, "every reason, not only the first: {r:?}");

    let mut c = claims();
    c["exp"] = json!(now() - (3 * 3600 + 12 * 60));
    let r = reasons(sign(hs("k1"), c, SECRET).as_bytes());
    assert!(r[0].starts_with("expired 3h12m ago (exp 20"), "{r:?}");
    let mut c = claims();
    c["exp"] = json!(now() - 10);
    let within = token::verify(sign(hs("k1"), c, SECRET).as_bytes(), &keys(), opts());
    assert!(within.valid, "10 s past exp is within the 30 s leeway");
    assert!(within.notes[0].contains("within the 30s leeway"));
    let mut c = claims();
    c["nbf"] = json!(now() + 20);
    assert!(token::verify(sign(hs("k1"), c.clone(), SECRET).as_bytes(), &keys(), opts()).valid, "nbf within leeway");
    c["nbf"] = json!(now() + 600);
    has(&reasons(sign(hs("k1"), c, SECRET).as_bytes()), "not valid before");

    has(&reasons(b""), "the token is empty");
    has(&reasons(&vec![b'a'; 1 << 20]), "over the 8 KiB limit");
    has(&reasons(&[0xff, 0xfe, b'.', b'x']), "not UTF-8");
}

#[test]
fn a_resume_link_is_accepted_as_input() {
    let base: url::Url = "https://chat.example.com/".parse().unwrap();
    let issued = issue("4711", "ann@example.com", Duration::from_secs(60), Some(&base));
    let link = issued.link.clone().unwrap();
    assert_eq!(link, format!("https://chat.example.com/chat?resume={}", issued.token));
    assert!(token::verify(link.as_bytes(), &keys(), opts()).valid);
}

/// Runs the node interop peer with one request.
async fn node(req: Value) -> Value {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop");
    assert!(
        std::path::Path::new(dir).join("node_modules/jsonwebtoken").exists(),
        "the interop peers are not installed: run `npm ci` in tests/interop (scripts/test does)"
    );
    let mut child = tokio::process::Command::new("node")
        .arg("jwt.js")
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("node");
    child.stdin.take().unwrap().write_all(req.to_string().as_bytes()).await.unwrap();
    let out = child.wait_with_output().await.unwrap();
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).unwrap()
}

async fn peer_verify(lib: &str, t: &str) -> Value {
    node(json!({"op": "verify", "lib": lib, "secret": SECRET, "token": t, "issuer": "ai-broker", "audience": "chat-resume"})).await
}

#[tokio::test]
async fn tokens_interoperate_with_jsonwebtoken_and_jose_both_ways() {
    let issued = issue("4711", "ann@example.com", Duration::from_secs(3600), None);
    for lib in ["jsonwebtoken", "jose"] {
        let v = peer_verify(lib, &issued.token).await;
        assert_eq!(v["valid"], true, "{lib} accepts ours: {v}");
        assert_eq!(v["claims"]["conversationId"], 4711);
        assert_eq!(v["claims"]["jti"], issued.jti);

        let theirs = node(json!({"op": "sign", "lib": lib, "secret": SECRET, "kid": "k1", "claims": claims()})).await;
        let t = theirs["token"].as_str().unwrap();
        let verdict = token::verify(t.as_bytes(), &keys(), opts());
        assert!(verdict.valid, "we accept {lib}'s: {:?}", verdict.reasons);
    }
}

#[tokio::test]
async fn what_the_peers_reject_we_reject() {
    let mut expired = claims();
    expired["exp"] = json!(now() - 3600);
    let mut wrong_aud = claims();
    wrong_aud["aud"] = json!("somewhere-else");
    let mut wrong_iss = claims();
    wrong_iss["iss"] = json!("mallory");
    let cases = [
        ("expired", sign(hs("k1"), expired, SECRET)),
        ("wrong audience", sign(hs("k1"), wrong_aud, SECRET)),
        ("wrong issuer", sign(hs("k1"), wrong_iss, SECRET)),
        ("another secret", sign(hs("k1"), claims(), "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz")),
        ("alg none", format!("{}.{}.", B64.encode(r#"{"alg":"none","kid":"k1"}"#), B64.encode(claims().to_string()))),
        ("HS512", node(json!({"op": "sign", "lib": "jsonwebtoken", "secret": SECRET, "kid": "k1", "claims": claims(), "alg": "HS512"})).await["token"].as_str().unwrap().to_string()),
    ];
    for (name, t) in cases {
        for lib in ["jsonwebtoken", "jose"] {
            let v = peer_verify(lib, &t).await;
            assert_eq!(v["valid"], false, "{lib} rejects {name}");
        }
        assert!(!token::verify(t.as_bytes(), &keys(), opts()).valid, "we reject {name} too");
    }
}

/// The binary with the pinned contract and the app's revocation key.
fn cmd(dir: &std::path::Path) -> tokio::process::Command {
    let mut c = bin(dir);
    c.env("RESUME_TOKEN_KEYS", format!("k1:{SECRET},k0:{OTHER}")).env("APP_BASE_URL", "https://chat.example.com");
    c.env("BROKER_OPS_CONTRACT_TOKEN_ISSUER", "ai-broker")
        .env("BROKER_OPS_CONTRACT_TOKEN_AUDIENCE", "chat-resume")
        .env("BROKER_OPS_CONTRACT_TOKEN_REQUIRED", "conversationId,email,iat,exp,jti")
        .env("BROKER_OPS_CONTRACT_REVOCATION_KEY", "resume:revoked:{jti}");
    c
}

async fn with_stdin(mut c: tokio::process::Command, input: &[u8]) -> support::Run {
    c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input).await.unwrap();
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output()).await.unwrap().unwrap();
    support::Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test]
async fn the_binary_issues_verifies_and_exits_0_1_or_3() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cmd(dir.path());
    c.args(["token", "issue", "--conversation", "4711", "--email", "ann@example.com", "--ttl", "1h", "-o", "json"]);
    let r = run(c).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let issued: Value = serde_json::from_str(&r.stdout).unwrap();
    support::schema_check("token-issue", &issued);
    let t = issued["token"].as_str().unwrap().to_string();
    assert_eq!(issued["link"], format!("https://chat.example.com/chat?resume={t}"));
    assert_eq!(issued["jti"].as_str().unwrap().len(), 32, "128 random bits");

    let mut c = cmd(dir.path());
    c.args(["token", "verify", &t, "-o", "json"]);
    let r = run(c).await;
    assert_eq!(r.code, 0, "{}", r.stdout);
    let doc: Value = serde_json::from_str(&r.stdout).unwrap();
    support::schema_check("token-verify", &doc);
    assert_eq!((doc["valid"].as_bool(), doc["signature_ok"].as_bool()), (Some(true), Some(true)));

    let mut c = cmd(dir.path());
    c.args(["token", "verify", &format!("{t}x"), "-o", "json"]);
    let r = run(c).await;
    assert_eq!(r.code, 1);
    let doc: Value = serde_json::from_str(&r.stdout).unwrap();
    support::schema_check("token-verify", &doc);
    assert_eq!(
        doc["reasons"][0],
        "the signature does not match (signed with another secret, or the token was altered)"
    );

    let mut c = cmd(dir.path());
    c.args(["token", "verify", &t]);
    let r = run(c).await;
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(r.stdout.starts_with("VALID"));
    assert!(r.stdout.contains("revocation not checked: REDIS_URL is not set"), "{}", r.stdout);

    for (input, reason) in [
        (b"".to_vec(), "the token is empty"),
        (vec![b'x'; 1 << 20], "over the 8 KiB limit"),
        (vec![0xff, 0xfe, 0xfd], "not UTF-8"),
    ] {
        let mut c = cmd(dir.path());
        c.args(["token", "verify", "-"]);
        let r = with_stdin(c, &input).await;
        assert_eq!(r.code, 1, "{reason}: {}{}", r.stdout, r.stderr);
        assert!(r.stdout.contains(reason), "{reason}: {}", r.stdout);
    }
    let mut c = cmd(dir.path());
    c.args(["token", "inspect", &t, "-o", "json"]);
    let r = run(c).await;
    let doc: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(doc["status"], "UNVERIFIED");
    assert_eq!(doc["claims"]["decoded"]["conversationId"], 4711);

    let mut c = bin(dir.path());
    c.args(["token", "verify", &t]).env("RESUME_TOKEN_SECRET", "too-short");
    let r = run(c).await;
    assert_eq!(r.code, 3);
    assert!(
        r.stderr.contains(
            "RESUME_TOKEN_SECRET from environment variable RESUME_TOKEN_SECRET: the secret is 9 bytes; at least 32"
        ),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("too-short"), "the secret is never printed");
}

#[tokio::test]
async fn revocation_lives_in_redis_until_the_token_expires() {
    let prefix = support::prefix("revoke");
    let dir = tempfile::tempdir().unwrap();
    let issued = issue("4711", "ann@example.com", Duration::from_secs(3600), None);
    let with_redis = |args: &[&str]| {
        let mut c = cmd(dir.path());
        c.args(args).env("REDIS_URL", support::redis_url()).env("REDIS_KEY_PREFIX", &prefix);
        c
    };
    let r = run(with_redis(&["token", "verify", &issued.token])).await;
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let r = run(with_redis(&["token", "revoke", &issued.token, "-o", "json"])).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let first: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(first["already"], false);
    let r = run(with_redis(&["token", "revoke", &issued.token, "-o", "json"])).await;
    let second: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(second["already"], true, "revoking twice is harmless");
    assert_eq!(second["revoked_at"], first["revoked_at"]);

    let mut redis = support::redis().await;
    let ttl: i64 =
        redis::cmd("TTL").arg(format!("{prefix}resume:revoked:{}", issued.jti)).query_async(&mut redis).await.unwrap();
    assert!((3500..=3600).contains(&ttl), "lives until the token's exp: {ttl}");

    let r = run(with_redis(&["token", "verify", &issued.token])).await;
    assert_eq!(r.code, 1);
    assert!(r.stdout.contains(&format!("revoked at {}", first["revoked_at"].as_str().unwrap())), "{}", r.stdout);

    let r = run(with_redis(&["token", "revoked", "-o", "json"])).await;
    let list: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(list["revocations"][0]["jti"], issued.jti);

    let other = issue("4712", "bob@example.com", Duration::from_secs(3600), None);
    let mut c = with_redis(&["token", "verify", "--batch"]);
    c.env("RUST_LOG", "off");
    let r = with_stdin(c, format!("{}\n\n{}\nnot-a-token\n", issued.token, other.token).as_bytes()).await;
    assert_eq!(r.code, 1);
    let lines: Vec<Value> = r.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3, "blank lines are skipped");
    assert_eq!((lines[0]["line"].as_u64(), lines[0]["valid"].as_bool()), (Some(1), Some(false)));
    assert!(lines[0]["reasons"][0].as_str().unwrap().starts_with("revoked at"));
    assert_eq!((lines[1]["line"].as_u64(), lines[1]["valid"].as_bool()), (Some(3), Some(true)));
    assert_eq!(lines[2]["valid"], false);
    assert!(r.stderr.contains("3 tokens: 1 valid, 2 invalid"));

    let r = run(with_redis(&["token", "revoke", "--jti", "manual-1", "--until", "+1h", "-o", "json"])).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[tokio::test]
async fn send_emails_the_link_to_the_customer_through_a_real_smtp_server() {
    let mail = support::MailDev::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = cmd(dir.path());
    c.args(["token", "issue", "--conversation", "4711", "--email", "ann@example.com", "--send", "-o", "json"])
        .env("SMTP_URL", mail.smtp_url())
        .env("ALERT_EMAIL_FROM", "Broker Support <support@example.com>");
    let r = run(c).await;
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let issued: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(issued["sent_to"], "ann@example.com");
    let emails = mail.emails().await;
    assert_eq!(emails.len(), 1);
    let e = &emails[0];
    assert_eq!(e["to"][0]["address"], "ann@example.com");
    assert_eq!(e["from"][0]["address"], "support@example.com");
    assert_eq!(e["subject"], "Your link to continue the conversation");
    let text = e["text"].as_str().unwrap();
    assert!(text.contains(issued["link"].as_str().unwrap()), "the link is in the text: {text}");
    assert!(e.get("html").is_none_or(Value::is_null), "a plain text email");

    let mut c = cmd(dir.path());
    c.args(["token", "issue", "--conversation", "4711", "--email", "ann@example.com", "--send", "--timeout", "2s"])
        .env("SMTP_URL", format!("smtp://user:hunter2hunter2@127.0.0.1:{}", support::free_port()))
        .env("ALERT_EMAIL_FROM", "support@example.com");
    let r = run(c).await;
    assert_eq!(r.code, 3, "{}", r.stdout);
    assert!(r.stderr.contains("SMTP smtp://user:***@127.0.0.1:"), "{}", r.stderr);
    assert!(!r.stderr.contains("hunter2"));
}

/// The product plan's resume token (conversationId + email, with an expiry), made by Node's
/// `jsonwebtoken`, is VALID under the default contract; an `iss` it carries is noted with the
/// setting that would pin it; a contract that requires a claim the token lacks names both; and
/// without `contracts.revocation_key` verify says revocation is not configured and revoke refuses.
#[tokio::test]
async fn a_plan_shaped_token_is_valid_under_the_defaults_and_revocation_is_its_own_contract() {
    let plan = json!({"conversationId": 4711, "email": "ann@example.com", "exp": now() + 3600});
    let theirs = node(json!({"op": "sign", "lib": "jsonwebtoken", "secret": SECRET, "kid": "k1", "claims": plan,
                             "noTimestamp": true}))
    .await;
    let t = theirs["token"].as_str().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let plain = || {
        let mut c = bin(dir.path());
        c.env("RESUME_TOKEN_KEYS", format!("k1:{SECRET}")).env("REDIS_URL", support::redis_url());
        c
    };
    let mut c = plain();
    c.args(["token", "verify", &t, "-o", "json"]);
    let r = run(c).await;
    assert_eq!(r.code, 0, "{}", r.stdout);
    let doc: Value = serde_json::from_str(&r.stdout).unwrap();
    support::schema_check("token-verify", &doc);
    assert!(doc["claims"].get("iat").is_none(), "the plan's shape: no iat, no jti: {doc}");
    let notes = doc["notes"].to_string();
    assert!(notes.contains("revocation: not configured (the app must check a key"), "{notes}");

    let with_iss =
        sign(hs("k1"), json!({"conversationId": 1, "email": "a@example.com", "exp": now() + 60, "iss": "web"}), SECRET);
    let mut c = plain();
    c.args(["token", "verify", &with_iss]);
    let r = run(c).await;
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(r.stdout.contains("iss \"web\" is not checked: set contracts.token_issuer to pin it"), "{}", r.stdout);

    let mut c = plain();
    c.env("BROKER_OPS_CONTRACT_TOKEN_REQUIRED", "conversationId,email,exp,jti").args(["token", "verify", &t]);
    let r = run(c).await;
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stdout.contains("the jti claim is missing (required by contracts.token_required)"), "{}", r.stdout);

    let issued = issue("4711", "ann@example.com", Duration::from_secs(3600), None);
    let mut c = plain();
    c.args(["token", "revoke", &issued.token]);
    let r = run(c).await;
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("revocation: not configured"), "{}", r.stderr);
    let mut c = plain();
    c.args(["token", "revoked"]);
    assert_eq!(run(c).await.code, 3);
}

/// A sandbox whose reference resume route checks tokens with `SECRET` (kid `default`).
async fn resume_sandbox() -> (broker_ops::sandbox::Sandbox, support::Env) {
    let opts = broker_ops::sandbox::SandboxOptions {
        resume_keys: Some(Keys::from_pairs(&[("default", SECRET)])),
        ..support::options()
    };
    support::start(opts).await
}

async fn resume_test(base: &str, extra: &[&str]) -> (i32, Value, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut c = bin(dir.path());
    c.args(["-o", "json", "token", "resume-test"])
        .args(extra)
        .env("RESUME_TOKEN_SECRET", SECRET)
        .env("APP_BASE_URL", base);
    let r = run(c).await;
    let doc: Value = serde_json::from_str(&r.stdout).unwrap_or(Value::Null);
    (r.code, doc, r.stderr)
}

fn failing(doc: &Value) -> Vec<String> {
    doc["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["pass"] == false)
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

/// Every case passes against the strict route; each careless mode fails exactly its own case(s),
/// with the reason; the token and the cookie's value are never printed.
#[tokio::test]
async fn resume_test_passes_a_strict_route_and_names_what_each_careless_one_does() {
    let (_sb, env) = resume_sandbox().await;
    let (code, doc, err) = resume_test(&env.base, &[]).await;
    assert_eq!(code, 0, "{doc:#}{err}");
    support::schema_check("token-resume-test", &doc);
    assert_eq!(doc["cases"].as_array().unwrap().len(), 10, "{doc:#}");
    let valid = &doc["cases"][0];
    assert_eq!((valid["name"].as_str(), valid["status"].as_u64()), (Some("valid"), Some(303)), "{doc:#}");
    assert_eq!(valid["cookie"]["http_only"], true);
    let (code, doc, _) = resume_test(&env.base, &["--method", "json"]).await;
    assert_eq!(code, 0, "a POST with a JSON body too: {doc:#}");
    for (mode, cases, says) in [
        ("resume_accept_expired", vec!["expired"], "accepted: answered 303"),
        ("resume_accept_none", vec!["alg_none"], "accepted: answered 303"),
        ("resume_cookie_scriptable", vec!["valid"], "is not HttpOnly"),
        ("resume_token_in_location", vec!["valid"], "put the token in Location"),
        ("resume_cacheable", vec!["valid"], "a shared cache may keep the answer"),
    ] {
        support::post_json(format!("{}/_sandbox/faults", env.base), &json!({ mode: true })).await;
        let (code, doc, _) = resume_test(&env.base, &["--method", "form"]).await;
        assert_eq!(code, 1, "{mode}: {doc:#}");
        assert_eq!(failing(&doc), cases, "{mode}: {doc:#}");
        assert!(doc.to_string().contains(says), "{mode}: {doc:#}");
        support::post_json(format!("{}/_sandbox/faults", env.base), &json!({ mode: false })).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut c = bin(dir.path());
    c.args(["token", "resume-test"]).env("RESUME_TOKEN_SECRET", SECRET).env("APP_BASE_URL", &env.base);
    let r = run(c).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("9 of 9 case(s) pass, 1 skipped"), "revoked needs revocation configured: {}", r.stdout);
    assert!(
        !r.stdout.contains("eyJ") && !r.stdout.contains("broker_session="),
        "no token, no cookie value: {}",
        r.stdout
    );
}

/// A route that says 200 to everything fails every negative case as "accepted"; one that never
/// answers ends the run within the time-out naming the route and the case; a URL that is not
/// http(s) is a usage error; no secret, could not run.
#[tokio::test]
async fn a_careless_or_hanging_route_and_bad_input_are_told_apart() {
    let yes = crate::support::Recorder::start().await;
    let (code, doc, err) =
        resume_test("http://unused.invalid", &["--method", "json", &yes.url("/api/chat/resume")]).await;
    assert_eq!(code, 1, "{doc:#}{err}");
    let f = failing(&doc);
    assert!(f.len() >= 8 && f.iter().all(|n| n != "revoked"), "{f:?}");
    assert!(doc.to_string().contains("accepted: answered 200"), "{doc:#}");
    let hang = support::Hang::start().await;
    let started = std::time::Instant::now();
    let (code, _, err) =
        resume_test("http://unused.invalid", &["--timeout", "1s", &format!("http://{}/r", hang.addr)]).await;
    assert_eq!(code, 3, "{err}");
    assert!(err.contains(&format!("resume route http://{}/r: valid: no answer", hang.addr)), "{err}");
    assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
    let (code, _, err) = resume_test("http://unused.invalid", &["ftp://example.com/r"]).await;
    assert!(code == 2 && err.contains("is not an http(s) URL"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let mut c = bin(dir.path());
    c.args(["token", "resume-test", "http://127.0.0.1:9/r"]);
    let r = run(c).await;
    assert!(r.code == 3 && r.stderr.contains("RESUME_TOKEN_SECRET"), "{}", r.stderr);
}

/// The cases' tokens are what they say, by Node's own `jsonwebtoken`: the valid one verifies with
/// every claim, the broken ones fail for exactly their reason (or, where the flaw is in the claims
/// or the size, verify and show the flaw), so the test proves the cases and not only the command.
#[tokio::test]
async fn the_resume_cases_tokens_are_what_they_claim_by_jsonwebtoken() {
    use broker_ops::token::resume_test::{CaseName, tokens};
    let env = std::collections::HashMap::from([("RESUME_TOKEN_SECRET".to_string(), SECRET.to_string())]);
    let config = broker_ops::config::Config::resolve(broker_ops::config::Layers::new(env, None).unwrap()).unwrap();
    let keys = Keys::from_config(&config).unwrap();
    for (name, token, _) in tokens(&config, &keys, now()) {
        let v = node(json!({"op": "verify", "lib": "jsonwebtoken", "secret": SECRET, "token": token})).await;
        let (valid, error, claims) = (v["valid"] == true, v["error"].as_str().unwrap_or(""), &v["claims"]);
        match name {
            CaseName::Valid | CaseName::Revoked => {
                assert!(
                    valid && claims["conversationId"] == "broker-ops-resume-test" && claims["email"].is_string(),
                    "{v}"
                )
            }
            CaseName::Expired => assert!(error.starts_with("TokenExpiredError"), "{v}"),
            CaseName::SignatureAltered | CaseName::OtherKey => {
                assert!(error.contains("invalid signature"), "{name:?}: {v}")
            }
            CaseName::AlgNone => assert!(!valid && error.contains("signature is required"), "{v}"),
            CaseName::ConversationIdMissing => assert!(valid && claims.get("conversationId").is_none(), "{v}"),
            CaseName::EmailMissing => assert!(valid && claims.get("email").is_none(), "{v}"),
            CaseName::ConversationIdWrongType => assert!(valid && claims["conversationId"].is_boolean(), "{v}"),
            CaseName::Oversized => assert!(valid && token.len() > 16 * 1024, "{}", token.len()),
        }
    }
}
