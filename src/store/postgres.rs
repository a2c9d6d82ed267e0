//! The Postgres side of the mirror: the table of the contract, inserts idempotent on the Ably id.
//! Queries are generic over an executor and use unnamed statements (`persistent(false)`) so that
//! they work through a transaction-mode pooler (Supavisor, PgBouncer). Nothing here creates a
//! table unless [`migrate`] is called, which only `broker-ops db migrate` and the sandbox do.

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgExecutor, PgPool};

use super::MirrorError;
use crate::contracts::Table;
use crate::event::MirroredEvent;

/// Every statement broker-ops sends is made here, unnamed (`persistent(false)`): a
/// transaction-mode pooler (Supavisor, PgBouncer) hands each transaction another server
/// connection, where a named statement prepared on the last one does not exist. Held by
/// `tests/integration/layering.rs`: no `sqlx::query` anywhere else in `src/`.
pub fn statement(sql: &str) -> sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments> {
    sqlx::query(sql).persistent(false)
}

/// [`statement`] read into `O` (a row type or a tuple).
pub fn statement_as<'q, O>(sql: &'q str) -> sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>
where
    O: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>,
{
    sqlx::query_as(sql).persistent(false)
}

/// [`statement`] read as its first column.
pub fn scalar<'q, O>(sql: &'q str) -> sqlx::query::QueryScalar<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>
where
    (O,): for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>,
{
    sqlx::query_scalar(sql).persistent(false)
}

/// A deadline on one Postgres round trip. The connect is bounded by the pool; a server (or a
/// network, or a pooler) that stalls *after* the connection is made would otherwise hold a
/// statement, and the command, forever: `statement_timeout` is the server's own word, which a
/// stalled network never delivers. Past the deadline the statement's future is dropped (and its
/// connection with it) and the caller's error names the statement and the address.
pub trait Deadline<T>: std::future::Future<Output = Result<T, sqlx::Error>> + Sized {
    fn within(self, limit: std::time::Duration) -> impl std::future::Future<Output = Result<T, sqlx::Error>> {
        async move {
            match tokio::time::timeout(limit, self).await {
                Ok(r) => r,
                Err(_) => Err(stall(limit)),
            }
        }
    }
}

impl<T, F: std::future::Future<Output = Result<T, sqlx::Error>>> Deadline<T> for F {}

/// `work` (statements of its own, already naming what they do) within `limit`, or the stall
/// named with `op` and the address.
pub async fn stalled_after<T>(
    limit: std::time::Duration,
    op: &str,
    addr: &str,
    work: impl std::future::Future<Output = Result<T, MirrorError>>,
) -> Result<T, MirrorError> {
    match tokio::time::timeout(limit, work).await {
        Ok(r) => r,
        Err(_) => Err(MirrorError::pg(op.to_string(), addr)(stall(limit))),
    }
}

/// The error of a round trip that got no answer within `limit`.
fn stall(limit: std::time::Duration) -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!(
            "no answer within {}: the server or the network stalled after the connection was made",
            crate::duration::format_duration(limit)
        ),
    ))
}

/// The deadline of one round trip on `pool`: the command's time-out, which the pool was made with.
pub fn limit_of(pool: &PgPool) -> std::time::Duration {
    pool.options().get_acquire_timeout()
}

pub async fn connect(url: &str, timeout: std::time::Duration) -> Result<PgPool, MirrorError> {
    crate::http::ensure_crypto_provider();
    let addr = crate::redact::url(url);
    let opts: PgConnectOptions = url.parse().map_err(MirrorError::pg("parse URL", &addr))?;
    // A session left inside a transaction (its client stalled or gone) is ended by the server
    // rather than holding locks: nothing broker-ops does waits between a transaction's statements.
    let idle = (timeout * 3).max(std::time::Duration::from_secs(10)).as_millis().to_string();
    // The trust policy: the platform's roots, plus TLS_CA_FILE unless the URL's own
    // `sslrootcert` names the CA (Postgres' own parameters win for Postgres).
    let opts = match &crate::tls::trust().ca_file {
        Some(ca) if !url.contains("sslrootcert=") => opts.ssl_root_cert(ca),
        _ => opts,
    };
    // And the client certificate, for a server that asks for one, unless the URL names its own.
    let opts = match &crate::tls::trust().client {
        Some(c) if !url.contains("sslcert=") => opts.ssl_client_cert(&c.cert_file).ssl_client_key(&c.key_file),
        _ => opts,
    };
    let opts = opts
        .statement_cache_capacity(0)
        .log_slow_statements(log::LevelFilter::Off, timeout)
        .options([("idle_in_transaction_session_timeout", idle.as_str())]);
    // Connect once, directly, so that a refused port is reported at once as what it is, rather
    // than as "pool timed out" after the whole time-out.
    let first = tokio::time::timeout(timeout, opts.connect()).await;
    match first {
        Ok(Ok(conn)) => drop(conn),
        Ok(Err(e)) => return Err(MirrorError::pg("connect", &addr)(e)),
        Err(_) => return Err(MirrorError::pg("connect", &addr)(sqlx::Error::PoolTimedOut)),
    }
    PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(timeout)
        // A replay streams long queries on purpose: no "slow statement" warnings on stderr.
        .connect_with(opts)
        .await
        .map_err(MirrorError::pg("connect", &addr))
}

/// The one Postgres handle: a pool made with the command's time-out (every round trip is
/// bounded by it, see [`Deadline`]) and the address with the password removed, which every
/// error names.
#[derive(Clone)]
pub struct Pg {
    pub pool: PgPool,
    pub addr: String,
}

impl Pg {
    /// Connects to `url` within `timeout`.
    pub async fn connect(url: &str, timeout: std::time::Duration) -> Result<Pg, MirrorError> {
        Ok(Pg { pool: connect(url, timeout).await?, addr: crate::redact::url(url) })
    }

    /// The configured Postgres (`DATABASE_URL`, `--timeout`); `None` when unset.
    pub async fn from_config(config: &crate::config::Config) -> Result<Option<Pg>, MirrorError> {
        use secrecy::ExposeSecret;
        let Some(u) = &config.database_url else { return Ok(None) };
        Ok(Some(Pg::connect(u.value.expose_secret(), config.timeout.value).await?))
    }

    /// The configured Postgres, which the command needs: unset is the configuration error that
    /// says where it could have been set.
    pub async fn required(config: &crate::config::Config) -> Result<Pg, MirrorError> {
        use secrecy::ExposeSecret;
        let u = config.require("DATABASE_URL", &config.database_url)?;
        Pg::connect(u.value.expose_secret(), config.timeout.value).await
    }

    /// The deadline of one round trip.
    pub fn limit(&self) -> std::time::Duration {
        limit_of(&self.pool)
    }

    /// The error of statement `op` at this address.
    pub fn err(&self, op: &str) -> impl FnOnce(sqlx::Error) -> MirrorError + use<> {
        MirrorError::pg(op.to_string(), &self.addr)
    }
}

/// The statements `migrate` runs, for `db migrate --dry-run`.
pub fn migration(table: &Table) -> Vec<String> {
    table.migration()
}

/// Creates the mirror table of the contract (schema, table, indexes) when missing. Idempotent.
pub async fn migrate(pool: &PgPool, addr: &str, table: &Table) -> Result<Migrated, MirrorError> {
    run_migration(pool, addr, table.migration()).await
}

/// The advisory lock every `db migrate` takes ("broker-ops migrate" as a 64-bit key), so that
/// runs at the same time take turns instead of racing on the catalog.
pub const MIGRATION_LOCK: i64 = 0x6272_6f6b_6d69_6772;

/// Runs migration statements in one transaction, under [`MIGRATION_LOCK`]: all or nothing, one
/// run at a time.
/// What a migration did to each object it names: created, or found in place.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Migrated {
    pub statements: Vec<String>,
    /// `(kind, name)`: `("table", "<schema>.<table>")`, `("index", ...)`, `("trigger", ...)`.
    pub created: Vec<(String, String)>,
    pub found: Vec<(String, String)>,
}

/// Every table, index, sequence, view, trigger, function and schema outside Postgres' own,
/// as `(kind, schema-qualified name, bare name)`.
const CATALOG_SQL: &str = "\
SELECT CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'table' WHEN 'i' THEN 'index' WHEN 'S' THEN 'sequence' \
       WHEN 'v' THEN 'view' ELSE 'relation' END, n.nspname || '.' || c.relname, c.relname::text \
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' \
UNION ALL SELECT 'trigger', n.nspname || '.' || c.relname || ' ' || t.tgname, t.tgname::text \
  FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
 WHERE NOT t.tgisinternal \
UNION ALL SELECT 'function', n.nspname || '.' || p.proname, p.proname::text \
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') \
UNION ALL SELECT 'schema', n.nspname, n.nspname::text FROM pg_namespace n \
 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_%'";

async fn catalog(
    tx: &mut sqlx::PgConnection,
    addr: &str,
    limit: std::time::Duration,
) -> Result<std::collections::BTreeSet<(String, String, String)>, MirrorError> {
    let rows: Vec<(String, String, String)> = statement_as(CATALOG_SQL)
        .fetch_all(tx)
        .within(limit)
        .await
        .map_err(MirrorError::pg("read the catalog", addr))?;
    Ok(rows.into_iter().collect())
}

/// Runs the migration in one transaction under its advisory lock, and says what it created and
/// what it found in place (the objects its statements name, read from the catalog before and
/// after).
pub async fn run_migration(pool: &PgPool, addr: &str, statements: Vec<String>) -> Result<Migrated, MirrorError> {
    let limit = limit_of(pool);
    let mut tx = pool.begin().within(limit).await.map_err(MirrorError::pg("BEGIN", addr))?;
    statement("SELECT pg_advisory_xact_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *tx)
        .within(limit)
        .await
        .map_err(MirrorError::pg("the migration's advisory lock", addr))?;
    let before = catalog(&mut tx, addr, limit).await?;
    for sql in &statements {
        let q = statement(sql);
        q.execute(&mut *tx).within(limit).await.map_err(MirrorError::pg("migrate", addr))?;
    }
    let after = catalog(&mut tx, addr, limit).await?;
    tx.commit().within(limit).await.map_err(MirrorError::pg("COMMIT", addr))?;
    let text = statements.join("\n");
    let mut done = Migrated { statements, ..Migrated::default() };
    for (kind, name, bare) in after {
        let key = (kind.clone(), name.clone(), bare.clone());
        if !before.contains(&key) {
            done.created.push((kind, name));
        } else if kind != "schema" && text.contains(bare.as_str()) {
            done.found.push((kind, name));
        }
    }
    Ok(done)
}

/// How `table` differs from `shape` (each difference named); `None` when it does not exist.
pub async fn shape_of(
    pool: &PgPool,
    addr: &str,
    table: &Table,
    shape: &[(&str, &str)],
) -> Result<Option<Vec<String>>, MirrorError> {
    let found: Vec<(String, String)> = statement_as(Table::columns_sql())
        .bind(&table.schema)
        .bind(&table.name)
        .fetch_all(pool)
        .within(limit_of(pool))
        .await
        .map_err(MirrorError::pg(format!("the columns of {table}"), addr))?;
    if found.is_empty() {
        return Ok(None);
    }
    Ok(Some(crate::contracts::shape_differences(table, &found, shape)))
}

/// Whether the table exists.
pub async fn table_exists(pool: &PgPool, addr: &str, table: &Table) -> Result<bool, MirrorError> {
    let found: Option<String> = scalar(&table.exists_sql())
        .fetch_one(pool)
        .within(limit_of(pool))
        .await
        .map_err(MirrorError::pg("to_regclass", addr))?;
    Ok(found.is_some())
}

/// An error naming `db migrate` when the table is missing.
pub async fn require_table(pool: &PgPool, addr: &str, table: &Table) -> Result<(), MirrorError> {
    if table_exists(pool, addr, table).await? {
        Ok(())
    } else {
        Err(MirrorError::NoTable { addr: addr.to_string(), table: table.to_string() })
    }
}

/// Inserts events; ids already mirrored are skipped. Returns how many rows were new.
pub async fn insert<'e, E: PgExecutor<'e>>(
    exec: E,
    addr: &str,
    table: &Table,
    events: &[MirroredEvent],
) -> Result<u64, MirrorError> {
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
    let done = statement(&table.insert_sql())
        .bind(&ids)
        .bind(&convs)
        .bind(&channels)
        .bind(&names)
        .bind(&datas)
        .bind(&clients)
        .bind(&times)
        .execute(exec)
        .await
        .map_err(MirrorError::pg(format!("INSERT {table}"), addr))?;
    Ok(done.rows_affected())
}
