//! TLS as production has it: certificates made here (a private CA, a server certificate for
//! 127.0.0.1 and localhost, an expired one, one for another name), the sandbox over HTTPS and a
//! real `redis-server --tls-port`. Each works with `TLS_CA_FILE`, works with `SSL_CERT_FILE`,
//! and fails without either in one line that says why, with no TLS library line on stderr.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use serde_json::Value;

use crate::support::{self, bin, run};

struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "broker-ops test CA");
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca_cert.pem()).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        // Expiring `days` from now (`None`: rcgen's far future; negative: expired).
        let leaf = |name: &str, sans: Vec<String>, days: Option<i64>| {
            let key = KeyPair::generate().unwrap();
            let mut p = CertificateParams::new(sans).unwrap();
            p.distinguished_name.push(DnType::CommonName, name);
            if let Some(days) = days {
                use chrono::Datelike;
                let at =
                    |d: chrono::DateTime<chrono::Utc>| rcgen::date_time_ymd(d.year(), d.month() as u8, d.day() as u8);
                let now = chrono::Utc::now();
                (p.not_before, p.not_after) =
                    (at(now - chrono::Duration::days(400)), at(now + chrono::Duration::days(days)));
            }
            let cert = p.signed_by(&key, &issuer).unwrap();
            std::fs::write(dir.path().join(format!("{name}.pem")), cert.pem()).unwrap();
            std::fs::write(dir.path().join(format!("{name}.key")), key.serialize_pem()).unwrap();
        };
        let here = || vec!["127.0.0.1".to_string(), "localhost".to_string()];
        leaf("server", here(), None);
        leaf("expired", here(), Some(-30));
        leaf("other", vec!["chat.example.com".into()], None);
        leaf("renew-soon", here(), Some(15));
        leaf("renew-now", here(), Some(4));
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// The sandbox over HTTPS with the named certificate, as its own process (as an operator runs it).
async fn https_sandbox(pki: &Pki, cert: &str) -> (tokio::process::Child, String) {
    let mut cmd = bin(pki.dir.path());
    cmd.args(["sandbox", "--listen", "127.0.0.1:0", "--tls-cert"])
        .arg(pki.path(&format!("{cert}.pem")))
        .arg("--tls-key")
        .arg(pki.path(&format!("{cert}.key")))
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().unwrap();
    let mut out = tokio::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    tokio::io::AsyncBufReadExt::read_line(&mut out, &mut line).await.unwrap();
    assert!(line.starts_with("export "), "{line}");
    (child, line)
}

fn env_of(exports: &str) -> Vec<(String, String)> {
    exports
        .trim()
        .trim_start_matches("export ")
        .split(' ')
        .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect()
}

async fn health(dir: &Path, exports: &str, extra: &[(&str, PathBuf)]) -> support::Run {
    let mut cmd = bin(dir);
    cmd.envs(env_of(exports)).env_remove("SSL_CERT_FILE").env_remove("SSL_CERT_DIR");
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd.args(["--timeout", "5s", "-o", "json", "ably", "health", "--no-status"]);
    run(cmd).await
}

#[tokio::test]
async fn https_to_the_sandbox_trusts_tls_ca_file_or_ssl_cert_file_and_says_why_not() {
    let pki = Pki::new();
    let (_sb, exports) = https_sandbox(&pki, "server").await;
    assert!(exports.contains("ABLY_REST_URL=https://127.0.0.1:"), "{exports}");
    let d = pki.dir.path();
    let ok = health(d, &exports, &[("TLS_CA_FILE", pki.path("ca.pem"))]).await;
    assert_eq!(ok.code, 0, "{}{}", ok.stdout, ok.stderr);
    let doc: Value = serde_json::from_str(&ok.stdout).unwrap();
    assert_eq!(doc["state"], "OK", "{doc:#}");
    let ok = health(d, &exports, &[("SSL_CERT_FILE", pki.path("ca.pem"))]).await;
    assert_eq!(ok.code, 0, "SSL_CERT_FILE as OpenSSL reads it: {}{}", ok.stdout, ok.stderr);
    let refused = health(d, &exports, &[]).await;
    assert_eq!(refused.code, 2, "{}{}", refused.stdout, refused.stderr);
    assert!(refused.stdout.contains("set TLS_CA_FILE to the CA that signed it"), "{}", refused.stdout);
    assert!(!refused.stderr.contains("rustls"), "no TLS library line on stderr: {}", refused.stderr);
    let bad = health(d, &exports, &[("TLS_CA_FILE", pki.path("server.key"))]).await;
    assert_eq!(bad.code, 3, "a CA file that holds no certificate is refused first: {}", bad.stderr);
    assert!(bad.stderr.contains("TLS_CA_FILE") && bad.stderr.contains("no PEM certificate"), "{}", bad.stderr);
}

#[tokio::test]
async fn expired_and_wrong_name_certificates_are_named_as_such() {
    let pki = Pki::new();
    let ca = [("TLS_CA_FILE", pki.path("ca.pem"))];
    let (_old, exports) = https_sandbox(&pki, "expired").await;
    let r = health(pki.dir.path(), &exports, &ca).await;
    let on = (chrono::Utc::now() - chrono::Duration::days(30)).format("%Y-%m-%d").to_string();
    assert!(r.stdout.contains(&format!("certificate has expired on {on}")), "{}", r.stdout);
    let (_other, exports) = https_sandbox(&pki, "other").await;
    let r = health(pki.dir.path(), &exports, &ca).await;
    assert!(r.stdout.contains("for another name") && r.stdout.contains("chat.example.com"), "{}", r.stdout);
    assert!(!r.stderr.contains("rustls"), "{}", r.stderr);
}

/// A Redis of its own speaking only TLS, its certificate signed by the test CA.
struct TlsRedis {
    child: std::process::Child,
    port: u16,
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl TlsRedis {
    async fn start(pki: &Pki) -> TlsRedis {
        let port = support::free_port();
        let child = std::process::Command::new("redis-server")
            .args(["--port", "0", "--tls-port", &port.to_string(), "--save", "", "--appendonly", "no"])
            .arg("--tls-cert-file")
            .arg(pki.path("server.pem"))
            .arg("--tls-key-file")
            .arg(pki.path("server.key"))
            .arg("--tls-ca-cert-file")
            .arg(pki.path("ca.pem"))
            .args(["--tls-auth-clients", "no", "--dir"])
            .arg(pki.dir.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (Debian's build has TLS)");
        let r = TlsRedis { child, port };
        support::until("the TLS Redis listens", || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok()
        })
        .await;
        r
    }
}

#[tokio::test]
async fn rediss_trusts_tls_ca_file_or_ssl_cert_file_and_says_why_not() {
    let pki = Pki::new();
    let redis = TlsRedis::start(&pki).await;
    let backlog = |extra: &[(&str, PathBuf)]| {
        let mut cmd = bin(pki.dir.path());
        cmd.env("REDIS_URL", format!("rediss://127.0.0.1:{}", redis.port))
            .env("REDIS_KEY_PREFIX", support::prefix("tls"))
            .env_remove("SSL_CERT_FILE")
            .env_remove("SSL_CERT_DIR");
        for (k, v) in extra {
            cmd.env(k, v);
        }
        cmd.args(["--timeout", "5s", "-o", "json", "ably", "backlog"]);
        run(cmd)
    };
    let waiting = |r: &support::Run| -> Value {
        let doc: Value = serde_json::from_str(&r.stdout).unwrap_or_else(|_| panic!("{}{}", r.stdout, r.stderr));
        doc["checks"].as_array().unwrap().iter().find(|c| c["name"] == "waiting").unwrap().clone()
    };
    let ok = backlog(&[("TLS_CA_FILE", pki.path("ca.pem"))]).await;
    let w = waiting(&ok);
    assert!(w["detail"].as_str().unwrap().contains("has no keys"), "reached over TLS: {w}");
    let ok = backlog(&[("SSL_CERT_FILE", pki.path("ca.pem"))]).await;
    assert!(waiting(&ok)["detail"].as_str().unwrap().contains("has no keys"), "{}", ok.stdout);
    let refused = backlog(&[]).await;
    let w = waiting(&refused);
    assert!(w["detail"].as_str().unwrap().contains("set TLS_CA_FILE to the CA that signed it"), "{w}");
    assert!(!refused.stderr.contains("rustls"), "{}", refused.stderr);
}

/// `cert_expiry` on the Ably endpoint: OK far from expiry, WARNING under 21 days, CRITICAL under
/// 7 (Gatus's use of `[CERTIFICATE_EXPIRATION]`), with the protocol and the issuer in the detail.
#[tokio::test]
async fn cert_expiry_warns_under_21_days_and_is_critical_under_7() {
    let pki = Pki::new();
    let ca = [("TLS_CA_FILE", pki.path("ca.pem"))];
    for (cert, code, state) in [("server", 0, "OK"), ("renew-soon", 1, "WARNING"), ("renew-now", 2, "CRITICAL")] {
        let (_sb, exports) = https_sandbox(&pki, cert).await;
        let r = health(pki.dir.path(), &exports, &ca).await;
        let doc: Value = serde_json::from_str(&r.stdout).unwrap_or_else(|_| panic!("{}{}", r.stdout, r.stderr));
        let c = doc["checks"].as_array().unwrap().iter().find(|c| c["name"] == "cert_expiry").unwrap();
        assert_eq!((r.code, c["state"].as_str()), (code, Some(state)), "{cert}: {c}");
        assert!(c["target"].as_str().unwrap().starts_with("127.0.0.1:"), "{c}");
        let detail = c["detail"].as_str().unwrap();
        assert!(detail.starts_with("TLSv1.3, issued by CN=broker-ops test CA"), "{detail}");
    }
}

/// `doctor` shows, per TLS dependency, the protocol, the issuer and the days left.
#[tokio::test]
async fn doctor_shows_each_tls_dependency_with_its_days_left() {
    let pki = Pki::new();
    let (_sb, exports) = https_sandbox(&pki, "renew-soon").await;
    let redis = TlsRedis::start(&pki).await;
    let mut cmd = bin(pki.dir.path());
    cmd.envs(env_of(&exports))
        .env("TLS_CA_FILE", pki.path("ca.pem"))
        .env("REDIS_URL", format!("rediss://127.0.0.1:{}", redis.port))
        .args(["--timeout", "5s", "-o", "json", "doctor"]);
    let r = run(cmd).await;
    let doc: Value = serde_json::from_str(&r.stdout).unwrap_or_else(|_| panic!("{}{}", r.stdout, r.stderr));
    support::schema_check("doctor", &doc);
    let row = |dep: &str| doc["tls"].as_array().unwrap().iter().find(|t| t["dependency"] == dep).cloned().unwrap();
    let ably = row("ably");
    assert_eq!(ably["protocol"], "TLSv1.3", "{ably}");
    assert!((13..=15).contains(&ably["days_left"].as_i64().unwrap()), "15 days from now, in whole days: {ably}");
    assert!(ably["issuer"].as_str().unwrap().contains("broker-ops test CA"), "{ably}");
    let redis_row = row("redis");
    assert!(redis_row["protocol"].as_str().is_some_and(|p| p.starts_with("TLSv1.")), "{redis_row}");
    assert!(redis_row["days_left"].as_i64().unwrap() > 1000, "{redis_row}");
}
