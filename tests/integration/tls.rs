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
        leaf("client", vec!["broker-ops.client".into()], None);
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
        Self::start_asking(pki, false).await
    }

    /// With `ask`, the server requires a client certificate signed by the test CA.
    async fn start_asking(pki: &Pki, ask: bool) -> TlsRedis {
        let port = support::free_port();
        let child = std::process::Command::new("redis-server")
            .args(["--port", "0", "--tls-port", &port.to_string(), "--save", "", "--appendonly", "no"])
            .arg("--tls-cert-file")
            .arg(pki.path("server.pem"))
            .arg("--tls-key-file")
            .arg(pki.path("server.key"))
            .arg("--tls-ca-cert-file")
            .arg(pki.path("ca.pem"))
            .args(["--tls-auth-clients", if ask { "yes" } else { "no" }, "--dir"])
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

/// A second PostgreSQL cluster of its own with `ssl = on`, its certificate signed by the test CA
/// (started as the `postgres` user when the tests run as root: initdb refuses root).
struct TlsPostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
}

impl TlsPostgres {
    fn as_owner(&self, program: &str) -> std::process::Command {
        let path = self.bin.join(program);
        if nix_is_root() {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            std::process::Command::new(path)
        }
    }

    async fn start(pki: &Pki) -> TlsPostgres {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL's server binaries (Debian's postgresql package)")
            .map(|e| e.unwrap().path().join("bin"))
            .max()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let pg = TlsPostgres { dir, bin, port: support::free_port() };
        std::fs::copy(pki.path("server.pem"), pg.dir.path().join("server.crt")).unwrap();
        std::fs::copy(pki.path("server.key"), pg.dir.path().join("server.key")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(pg.dir.path().join("server.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
        if nix_is_root() {
            let chown =
                std::process::Command::new("chown").args(["-R", "postgres:postgres"]).arg(pg.dir.path()).status();
            assert!(chown.unwrap().success());
        }
        let init = pg.as_owner("initdb").args(["-U", "postgres", "--auth=trust", "-D"]).arg(&data).output().unwrap();
        assert!(init.status.success(), "initdb: {}", String::from_utf8_lossy(&init.stderr));
        let conf = format!(
            "port = {}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\n",
            pg.port,
            pg.dir.path().display(),
            pg.dir.path().join("server.crt").display(),
            pg.dir.path().join("server.key").display()
        );
        let mut c = std::fs::OpenOptions::new().append(true).open(data.join("postgresql.conf")).unwrap();
        std::io::Write::write_all(&mut c, conf.as_bytes()).unwrap();
        let log = pg.dir.path().join("log");
        let start =
            pg.as_owner("pg_ctl").args(["-w", "-D"]).arg(&data).arg("-l").arg(&log).arg("start").output().unwrap();
        assert!(start.status.success(), "pg_ctl start: {}", std::fs::read_to_string(&log).unwrap_or_default());
        pg
    }
}

impl Drop for TlsPostgres {
    fn drop(&mut self) {
        let _ = self
            .as_owner("pg_ctl")
            .args(["-m", "immediate", "-D"])
            .arg(self.dir.path().join("data"))
            .arg("stop")
            .output();
    }
}

fn nix_is_root() -> bool {
    std::process::Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Postgres with `ssl = on`: `sslmode=require` encrypts, `verify-full` checks the certificate
/// against `sslrootcert` (which wins for Postgres) or, without it, `TLS_CA_FILE`; without either
/// the refusal says why in one line.
#[tokio::test]
async fn postgres_over_tls_honours_sslmode_sslrootcert_and_tls_ca_file() {
    let pki = Pki::new();
    let pg = TlsPostgres::start(&pki).await;
    let migrate = |query: String, extra: &[(&str, PathBuf)]| {
        let mut cmd = bin(pki.dir.path());
        cmd.env("DATABASE_URL", format!("postgres://postgres@127.0.0.1:{}/postgres?{query}", pg.port))
            .env_remove("SSL_CERT_FILE")
            .env_remove("SSL_CERT_DIR");
        for (k, v) in extra {
            cmd.env(k, v);
        }
        cmd.args(["--timeout", "5s", "db", "migrate"]);
        run(cmd)
    };
    let r = migrate("sslmode=require".into(), &[]).await;
    assert_eq!(r.code, 0, "require: encrypted, not verified: {}", r.stderr);
    let root = format!("sslmode=verify-full&sslrootcert={}", pki.path("ca.pem").display());
    let r = migrate(root, &[]).await;
    assert_eq!(r.code, 0, "verify-full with sslrootcert: {}", r.stderr);
    let r = migrate("sslmode=verify-full".into(), &[("TLS_CA_FILE", pki.path("ca.pem"))]).await;
    assert_eq!(r.code, 0, "verify-full with TLS_CA_FILE: {}", r.stderr);
    let r = migrate("sslmode=verify-full".into(), &[]).await;
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("set TLS_CA_FILE to the CA that signed it"), "{}", r.stderr);
    assert_eq!(r.stderr.trim().lines().count(), 1, "one line: {}", r.stderr);
}

/// SMTP over implicit TLS (`smtps://`, maildev serving the test CA's certificate) and STARTTLS
/// (`?tls=required`, Debian's aiosmtpd requiring it): delivered with `TLS_CA_FILE` (or
/// `SSL_CERT_FILE`), refused without, saying why.
#[tokio::test]
async fn smtp_over_tls_and_starttls_trusts_the_same_roots() {
    let pki = Pki::new();
    let secure: Vec<std::ffi::OsString> = vec![
        "--incoming-secure".into(),
        "--incoming-cert".into(),
        pki.path("server.pem").into(),
        "--incoming-key".into(),
        pki.path("server.key").into(),
    ];
    let smtps = support::MailDev::start_with(&secure).await;
    let starttls_port = support::free_port();
    let log = std::fs::File::create(pki.path("aiosmtpd.log")).unwrap();
    let _aiosmtpd = tokio::process::Command::new("/usr/bin/python3")
        .args(["-u", "-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{starttls_port}"), "--tlscert"])
        .arg(pki.path("server.pem"))
        .arg("--tlskey")
        .arg(pki.path("server.key"))
        .stdout(log)
        .kill_on_drop(true)
        .spawn()
        .expect("aiosmtpd (Debian's python3-aiosmtpd; scripts/test installs it)");
    support::until("aiosmtpd listens", || async {
        tokio::net::TcpStream::connect(("127.0.0.1", starttls_port)).await.is_ok()
    })
    .await;
    let send = |url: String, extra: Vec<(&'static str, PathBuf)>, key: &'static str| {
        let mut cmd = bin(pki.dir.path());
        cmd.env("SMTP_URL", url)
            .env("ALERT_EMAIL_FROM", "ops@example.com")
            .env("ALERT_EMAIL_TO", "oncall@example.com")
            .env("BROKER_OPS_STATE_DIR", pki.dir.path().join(key))
            .env_remove("SSL_CERT_FILE")
            .env_remove("SSL_CERT_DIR")
            .envs(extra)
            .args(["--timeout", "5s", "-o", "json", "alert", "send", "--retry-for", "1s", "--severity", "critical"])
            .args(["--summary", &format!("tls drill {key}"), "--dedup-key", key]);
        run(cmd)
    };
    let implicit = format!("smtps://127.0.0.1:{}", smtps.smtp_port);
    let required = format!("smtp://127.0.0.1:{starttls_port}?tls=required");
    let ca = || vec![("TLS_CA_FILE", pki.path("ca.pem"))];
    let r = send(implicit.clone(), ca(), "smtps-ca").await;
    assert_eq!(r.code, 0, "smtps with TLS_CA_FILE: {}{}", r.stdout, r.stderr);
    let r = send(required.clone(), ca(), "starttls-ca").await;
    assert_eq!(r.code, 0, "STARTTLS with TLS_CA_FILE: {}{}", r.stdout, r.stderr);
    let r = send(required.clone(), vec![("SSL_CERT_FILE", pki.path("ca.pem"))], "starttls-ssl").await;
    assert_eq!(r.code, 0, "STARTTLS with SSL_CERT_FILE: {}{}", r.stdout, r.stderr);
    support::until("maildev got its mail", || async { smtps.emails().await.len() == 1 }).await;
    support::until("aiosmtpd got both", || async {
        let got = std::fs::read_to_string(pki.path("aiosmtpd.log")).unwrap_or_default();
        got.contains("tls drill starttls-ca") && got.contains("tls drill starttls-ssl")
    })
    .await;
    for (url, key) in [(implicit, "smtps-none"), (required, "starttls-none")] {
        let r = send(url.clone(), vec![], key).await;
        assert_ne!(r.code, 0, "{url}: {}", r.stdout);
        assert!(r.stdout.contains("set TLS_CA_FILE to the CA that signed it"), "{url}: {}{}", r.stdout, r.stderr);
        assert!(!r.stderr.contains("rustls"), "{}", r.stderr);
    }
}

/// A Redis that asks for a client certificate gets the one `TLS_CLIENT_CERT`/`TLS_CLIENT_KEY`
/// name; without it the handshake is refused. Half a pair is refused before anything connects.
#[tokio::test]
async fn a_client_certificate_is_shown_to_a_redis_that_asks() {
    let pki = Pki::new();
    let redis = TlsRedis::start_asking(&pki, true).await;
    let backlog = |extra: Vec<(&'static str, PathBuf)>| {
        let mut cmd = bin(pki.dir.path());
        cmd.env("REDIS_URL", format!("rediss://127.0.0.1:{}", redis.port))
            .env("REDIS_KEY_PREFIX", support::prefix("mtls"))
            .env("TLS_CA_FILE", pki.path("ca.pem"))
            .envs(extra)
            .args(["--timeout", "5s", "-o", "json", "ably", "backlog"]);
        run(cmd)
    };
    let detail = |r: &support::Run| -> String {
        let doc: Value = serde_json::from_str(&r.stdout).unwrap_or_else(|_| panic!("{}{}", r.stdout, r.stderr));
        doc["checks"].as_array().unwrap().iter().find(|c| c["name"] == "waiting").unwrap()["detail"].to_string()
    };
    let with =
        backlog(vec![("TLS_CLIENT_CERT", pki.path("client.pem")), ("TLS_CLIENT_KEY", pki.path("client.key"))]).await;
    assert!(detail(&with).contains("has no keys"), "reached with the client certificate: {}", with.stdout);
    let without = backlog(vec![]).await;
    assert!(!detail(&without).contains("has no keys"), "refused without: {}", without.stdout);
    let half = backlog(vec![("TLS_CLIENT_CERT", pki.path("client.pem"))]).await;
    assert_eq!(half.code, 3, "{}", half.stderr);
    assert!(
        half.stderr.contains("TLS_CLIENT_CERT") && half.stderr.contains("needs TLS_CLIENT_KEY too"),
        "{}",
        half.stderr
    );
}

/// A backfill writes through its second, bulk connection over TLS too, with the same trust and
/// the same client certificate as the main one: every event once, and the second run finds them.
#[sqlx::test(migrations = false)]
async fn a_backfill_to_a_tls_redis_that_asks_for_a_client_certificate_writes_each_event_once(pool: sqlx::PgPool) {
    let pki = Pki::new();
    let redis = TlsRedis::start_asking(&pki, true).await;
    crate::events_targets::to_postgres(&pool, &crate::events_targets::fixture(5, 30, 60_000)).await;
    let prefix = support::prefix("tls-backfill");
    let backfill = || {
        let mut cmd = bin(pki.dir.path());
        cmd.env("REDIS_URL", format!("rediss://127.0.0.1:{}", redis.port))
            .env("REDIS_KEY_PREFIX", &prefix)
            .env("DATABASE_URL", support::url_of(&pool))
            .env("TLS_CA_FILE", pki.path("ca.pem"))
            .env("TLS_CLIENT_CERT", pki.path("client.pem"))
            .env("TLS_CLIENT_KEY", pki.path("client.key"))
            .args(["--timeout", "5s", "-o", "json", "events", "replay", "--from", "postgres", "--to", "redis"])
            .args(["--all", "--yes", "--page-size", "40"]);
        run(cmd)
    };
    let counts = |r: &support::Run| -> (u64, u64) {
        let doc: Value = serde_json::from_str(&r.stdout).unwrap_or_else(|_| panic!("{}{}", r.stdout, r.stderr));
        (doc["counts"]["written"].as_u64().unwrap(), doc["counts"]["skipped"].as_u64().unwrap())
    };
    let first = backfill().await;
    assert_eq!((first.code, counts(&first)), (0, (150, 0)), "{}", first.stderr);
    let again = backfill().await;
    assert_eq!((again.code, counts(&again)), (0, (0, 150)), "{}", again.stderr);
}
