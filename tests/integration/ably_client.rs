//! The Ably REST client: fallback hosts only where a conforming client uses them (RSC15), the
//! error envelope kept as a typed error, and the plain-HTTP Basic-auth guard.

use std::time::Duration;

use broker_ops::ably::AblyClient;
use broker_ops::config::AblyKey;
use broker_ops::sandbox::SandboxOptions;
use serde_json::Value;

use crate::support::{self, Env};

fn client(env: &Env, key: &str) -> AblyClient {
    AblyClient::new(url::Url::parse(&env.base).unwrap(), Some(AblyKey::parse(key).unwrap()), Duration::from_secs(5))
        .unwrap()
}

#[tokio::test]
async fn a_5xx_primary_falls_back_to_another_host_and_an_explicit_url_has_no_fallbacks() {
    let (_bad, bad) = support::start(support::faulted(
        SandboxOptions { key: Some("app.k:s3cret".to_string().into()), ..support::options() },
        |f| f.http_error_rate = 1.0,
    ))
    .await;
    let (_good, good) =
        support::start(SandboxOptions { key: Some("app.k:s3cret".to_string().into()), ..support::options() }).await;
    let explicit = client(&bad, "app.k:s3cret");
    let e = explicit.time().await.unwrap_err();
    assert_eq!(e.code(), Some(50000), "an explicit URL is never retried elsewhere: {e}");
    let with = client(&bad, "app.k:s3cret").with_fallbacks(vec![url::Url::parse(&good.base).unwrap()]);
    let (ms, _) = with.time().await.expect("answered by the fallback");
    assert!(ms > 0);
    let page = with
        .get_page::<Value>("GET /stats", with.url("stats?limit=1"))
        .await
        .expect("authenticated calls fall back too");
    assert!(page.items.len() <= 1);
}

#[tokio::test]
async fn a_4xx_is_an_answer_not_a_reason_to_try_another_host() {
    let (_sb, env) = support::sandbox().await;
    let (_other, other) = support::sandbox().await;
    let wrong =
        client(&env, &format!("{}:nope", env.key_name())).with_fallbacks(vec![url::Url::parse(&other.base).unwrap()]);
    let e = wrong.get_page::<Value>("GET /stats", wrong.url("stats")).await.unwrap_err();
    assert_eq!(e.code(), Some(40101));
    assert!(e.to_string().contains(&env.base), "the error names the host that answered: {e}");
}

#[test]
fn basic_auth_over_plain_http_is_refused_except_to_loopback() {
    let key = Some(AblyKey::parse("a.b:c").unwrap());
    assert!(AblyClient::new("http://ably.example.com".parse().unwrap(), key.clone(), Duration::from_secs(1)).is_err());
    assert!(AblyClient::new("http://127.0.0.1:9".parse().unwrap(), key.clone(), Duration::from_secs(1)).is_ok());
    assert!(AblyClient::new("http://localhost:9".parse().unwrap(), key.clone(), Duration::from_secs(1)).is_ok());
    assert!(AblyClient::new("https://ably.example.com".parse().unwrap(), key, Duration::from_secs(1)).is_ok());
}
