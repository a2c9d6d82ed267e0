//! The backfill's plain writes (streams that do not exist yet take `XADD`s on a second, raw
//! connection, not the script): they go on across pages with the run's own ids; a writer that
//! comes in between, after a page or between the question and the write, sends that part
//! through the script, and no event is written twice; the bulk connection authenticates and
//! selects the database the URL names.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use broker_ops::contracts::Contracts;
use broker_ops::mirror::MirroredEvent;
use broker_ops::redis_handle::Redis;
use broker_ops::replay::RedisTarget;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support;

/// `n` events of conversation `conv`, one second apart, ending a minute ago.
fn events(conv: &str, n: usize) -> Vec<MirroredEvent> {
    let end = chrono::Utc::now().timestamp_millis() - 60_000;
    (0..n)
        .map(|i| MirroredEvent {
            id: format!("msg-{conv}-{i}"),
            conversation_id: conv.to_string(),
            channel: format!("conversation:{conv}"),
            name: "message:user".into(),
            data: json!({"content": format!("text {i}"), "messageId": i}),
            client_id: Some(format!("contact-{conv}")),
            timestamp_ms: end - ((n - i) as i64) * 1000,
        })
        .collect()
}

/// The stream's entries: (stream id, Ably id, timestamp), in stream order.
async fn entries(url: &str, key: &str) -> Vec<(String, String, i64)> {
    let mut conn = redis::Client::open(url).unwrap().get_multiplexed_async_connection().await.unwrap();
    let raw: Vec<(String, std::collections::HashMap<String, String>)> =
        redis::cmd("XRANGE").arg(key).arg("-").arg("+").query_async(&mut conn).await.unwrap();
    raw.into_iter().map(|(sid, f)| (sid, f["id"].clone(), f["timestamp"].parse().unwrap())).collect()
}

fn each_once(st: &[(String, String, i64)]) -> bool {
    st.iter().map(|(_, id, _)| id).collect::<HashSet<_>>().len() == st.len()
}

/// A live mirror's write of one event (`XADD *`), through the mirror's own writer.
async fn live_write(prefix: &str, e: &MirroredEvent) {
    let mut redis = support::redis_handle(prefix).await;
    broker_ops::store::redis::append(&mut redis, &Contracts::with_redis_prefix(prefix), std::slice::from_ref(e))
        .await
        .unwrap();
}

async fn target(url: &str, prefix: &str) -> RedisTarget {
    let redis = Redis::connect(url, prefix, Duration::from_secs(10)).await.unwrap();
    RedisTarget::bulk(redis, Contracts::with_redis_prefix(prefix), false).await.unwrap()
}

#[tokio::test]
async fn plain_writes_go_on_across_pages_and_a_writer_in_between_sends_the_rest_through_the_script() {
    let prefix = support::prefix("plain");
    let url = support::redis_url();
    let key = Contracts::with_redis_prefix(&prefix).stream_key("c1");
    let ev = events("c1", 10);
    let mut t = target(&url, &prefix).await;

    let w = t.write(&ev[0..5]).await.unwrap();
    assert_eq!((w.written, w.skipped, w.expired), (5, 0, 0));
    let w = t.write(&ev[5..8]).await.unwrap();
    assert_eq!((w.written, w.skipped), (3, 0));
    // One run of explicit ids: Redis's clock when the stream was found absent, then 0, 1, 2...
    let st = entries(&url, &key).await;
    let ids: Vec<(&str, &str)> = st.iter().map(|(sid, ..)| sid.split_once('-').unwrap()).collect();
    assert!(ids.iter().all(|(ms, _)| *ms == ids[0].0), "{ids:?}");
    assert_eq!(ids.iter().map(|(_, seq)| seq.parse::<u64>().unwrap()).collect::<Vec<_>>(), (0..8).collect::<Vec<_>>());
    let now_ms = chrono::Utc::now().timestamp_millis();
    assert!((now_ms - ids[0].0.parse::<i64>().unwrap()).abs() < 60_000, "a write time: {ids:?}");

    // The live mirror writes in between, one of the next page's events among them.
    live_write(&prefix, &ev[8]).await;
    let w = t.write(&ev[8..10]).await.unwrap();
    assert_eq!((w.written, w.skipped), (1, 1), "the refused page went through the script");
    let st = entries(&url, &key).await;
    assert_eq!(st.len(), 10);
    assert!(each_once(&st), "{st:?}");
    assert!(st.windows(2).all(|p| p[0].2 <= p[1].2), "time order: {st:?}");

    // The same events again: a stream that exists goes through the script, which skips them all.
    let mut again = target(&url, &prefix).await;
    let w = again.write(&ev).await.unwrap();
    assert_eq!((w.written, w.skipped), (0, 10));
    let mut conn = support::redis().await;
    let ttl: i64 = redis::cmd("PTTL").arg(&key).query_async(&mut conn).await.unwrap();
    assert!(ttl > 23 * 3600 * 1000, "expires 24 h after its newest event: {ttl} ms");
    let score: f64 = redis::cmd("ZSCORE")
        .arg(Contracts::with_redis_prefix(&prefix).active_key())
        .arg("c1")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(score as i64, ev[9].timestamp_ms);
    support::forget_prefix(&prefix).await;
}

/// A TCP proxy to the real Redis that runs `hook` once, just before it passes on the first
/// bytes holding `MULTI`: a writer that comes between the backfill's question and its write.
async fn proxy_with_hook(hook: impl Fn() -> tokio::task::JoinHandle<()> + Send + Sync + 'static) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (hook, fired) = (Arc::new(hook), Arc::new(AtomicBool::new(false)));
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let (hook, fired) = (hook.clone(), fired.clone());
            tokio::spawn(async move {
                let upstream = tokio::net::TcpStream::connect("127.0.0.1:6379").await.unwrap();
                let (mut ci, mut co) = inbound.into_split();
                let (mut ui, mut uo) = upstream.into_split();
                tokio::spawn(async move { tokio::io::copy(&mut ui, &mut co).await });
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = match ci.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    if buf[..n].windows(5).any(|w| w == b"MULTI") && !fired.swap(true, Ordering::SeqCst) {
                        hook().await.unwrap();
                    }
                    if uo.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

#[tokio::test]
async fn a_stream_written_between_the_question_and_the_write_drops_the_page_to_the_script() {
    let prefix = support::prefix("plain-watch");
    let key = Contracts::with_redis_prefix(&prefix).stream_key("c2");
    let ev = events("c2", 3);
    let (p, first) = (prefix.clone(), ev[0].clone());
    let port = proxy_with_hook(move || {
        let (p, first) = (p.clone(), first.clone());
        tokio::spawn(async move { live_write(&p, &first).await })
    })
    .await;
    let mut t = target(&format!("redis://127.0.0.1:{port}"), &prefix).await;
    let w = t.write(&ev).await.unwrap();
    assert_eq!((w.written, w.skipped), (2, 1), "the transaction was dropped and the script skipped the live one");
    let st = entries(&support::redis_url(), &key).await;
    assert_eq!(st.len(), 3);
    assert!(each_once(&st), "{st:?}");
    support::forget_prefix(&prefix).await;
}

#[tokio::test]
async fn the_bulk_connection_authenticates_and_selects_the_database_of_the_url() {
    let r = support::OwnRedis::start(&["--requirepass", "s3cret"]);
    support::until("the guarded Redis listens", || async {
        tokio::net::TcpStream::connect(("127.0.0.1", r.port)).await.is_ok()
    })
    .await;
    let url = format!("redis://:s3cret@127.0.0.1:{}/3", r.port);
    let mut t = target(&url, "").await;
    let w = t.write(&events("c3", 4)).await.unwrap();
    assert_eq!(w.written, 4);
    let st = entries(&url, &Contracts::with_redis_prefix("").stream_key("c3")).await;
    assert_eq!(st.len(), 4, "in database 3");
    let db0 = format!("redis://:s3cret@127.0.0.1:{}/0", r.port);
    assert!(entries(&db0, &Contracts::with_redis_prefix("").stream_key("c3")).await.is_empty());
}
