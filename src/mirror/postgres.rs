//! The Postgres side of the mirror: table `chat_events`, inserts idempotent on the Ably id.
//! Queries are generic over an executor and use unnamed statements (`persistent(false)`) so that
//! they work through a transaction-mode pooler (Supavisor, PgBouncer).

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgExecutor, PgPool};

use super::{MirrorError, MirroredEvent};

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

pub async fn connect(url: &str, timeout: std::time::Duration) -> Result<PgPool, MirrorError> {
    crate::http::ensure_crypto_provider();
    let addr = crate::redact::url(url);
    let opts: PgConnectOptions =
        url.parse().map_err(|source| MirrorError::Postgres { op: "parse URL", addr: addr.clone(), source })?;
    PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(timeout)
        // A replay streams long queries on purpose: no "slow statement" warnings on stderr.
        .connect_with(opts.statement_cache_capacity(0).log_slow_statements(log::LevelFilter::Off, timeout))
        .await
        .map_err(|source| MirrorError::Postgres { op: "connect", addr, source })
}

/// Creates the mirror table (the project's migration) when it is missing.
pub async fn migrate(pool: &PgPool, addr: &str) -> Result<(), MirrorError> {
    MIGRATOR.run(pool).await.map_err(|source| MirrorError::Migrate { addr: addr.to_string(), source })
}

/// Inserts events; ids already mirrored are skipped. Returns how many rows were new.
pub async fn insert<'e, E: PgExecutor<'e>>(exec: E, addr: &str, events: &[MirroredEvent]) -> Result<u64, MirrorError> {
    if events.is_empty() {
        return Ok(0);
    }
    let mut ids = Vec::with_capacity(events.len());
    let mut convs = Vec::with_capacity(events.len());
    let mut channels = Vec::with_capacity(events.len());
    let mut names = Vec::with_capacity(events.len());
    let mut datas = Vec::with_capacity(events.len());
    let mut clients = Vec::with_capacity(events.len());
    let mut times = Vec::with_capacity(events.len());
    for e in events {
        ids.push(e.id.clone());
        convs.push(e.conversation_id.clone());
        channels.push(e.channel.clone());
        names.push(e.name.clone());
        datas.push(e.data.clone());
        clients.push(e.client_id.clone());
        times.push(chrono::DateTime::from_timestamp_millis(e.timestamp_ms).unwrap_or_default());
    }
    let done = sqlx::query(
        "INSERT INTO chat_events (id, conversation_id, channel, name, data, client_id, occurred_at) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::jsonb[], $6::text[], $7::timestamptz[]) \
         ON CONFLICT (id) DO NOTHING",
    )
    .persistent(false)
    .bind(&ids)
    .bind(&convs)
    .bind(&channels)
    .bind(&names)
    .bind(&datas)
    .bind(&clients)
    .bind(&times)
    .execute(exec)
    .await
    .map_err(|source| MirrorError::Postgres { op: "INSERT chat_events", addr: addr.to_string(), source })?;
    Ok(done.rows_affected())
}
