//! `broker-ops doctor` against the sandbox and this machine's Redis and Postgres.

use serde_json::Value;

use crate::support::{self, bin, run};

fn database_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

#[sqlx::test(migrations = false)]
async fn all_green_against_the_sandbox_redis_and_postgres(pool: sqlx::PgPool) {
    let db = crate::support::url_of(&pool);
    let table = broker_ops::contracts::Contracts::default().table;
    broker_ops::store::postgres::migrate(&pool, "test", &table).await.unwrap();
    let prefix = support::prefix("doctor");
    let (_sb, env) = support::sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = bin(dir.path());
    env.apply(cmd.args(["doctor", "-o", "json"]))
        .env("REDIS_URL", support::redis_url())
        .env("REDIS_KEY_PREFIX", &prefix)
        .env("DATABASE_URL", &db);
    let r = run(cmd).await;
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let doc: Value = serde_json::from_str(&r.stdout).unwrap();
    support::schema_check("doctor", &doc);
    assert_eq!(doc["schema_version"], 1);
    assert_eq!(doc["healthy"], true);
    let checks = doc["checks"].as_array().unwrap();
    let names: Vec<&str> = checks.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["ably", "chatwoot", "redis", "postgres", "slack", "smtp"]);
    for c in &checks[..4] {
        assert_eq!(c["configured"], true, "{c}");
        assert_eq!(c["reachable"], true, "{c}");
        assert!(c["latency_ms"].as_f64().unwrap() >= 0.0);
    }
    assert!(checks[2]["detail"].as_str().unwrap().starts_with("Redis "));
    assert!(checks[3]["detail"].as_str().unwrap().starts_with("PostgreSQL "));
    assert_eq!(checks[4]["configured"], false);
}

#[tokio::test]
async fn an_unreachable_redis_is_named_with_its_address_and_the_exit_code_is_3() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = bin(dir.path());
    cmd.args(["doctor", "--timeout", "2s"]).env("REDIS_URL", "redis://127.0.0.1:1").env("DATABASE_URL", database_url());
    let r = run(cmd).await;
    assert_eq!(r.code, 3, "{}", r.stdout);
    let redis_row = r.stdout.lines().find(|l| l.contains("redis")).expect("a redis row");
    assert!(redis_row.contains("NO"), "{redis_row}");
    assert!(redis_row.contains("redis://127.0.0.1:1"), "{redis_row}");
    assert!(redis_row.to_lowercase().contains("connect"), "the error says what failed: {redis_row}");
    let pg_row = r.stdout.lines().find(|l| l.contains("postgres")).unwrap();
    assert!(pg_row.contains("yes"), "the others still run: {pg_row}");
    assert!(r.stdout.contains("some configured dependencies are NOT reachable"));
}

#[tokio::test]
async fn basic_auth_over_plain_http_to_a_remote_host_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = bin(dir.path());
    cmd.args(["doctor", "-o", "json"]).env("ABLY_REST_URL", "http://ably.example.com").env("ABLY_API_KEY", "a.b:c");
    let r = run(cmd).await;
    assert_eq!(r.code, 3);
    let doc: Value = serde_json::from_str(&r.stdout).unwrap();
    support::schema_check("doctor", &doc);
    let err = doc["checks"][0]["error"].as_str().unwrap();
    assert!(err.contains("refusing to send Basic auth over plain HTTP"), "{err}");
}
