//! The report from the Postgres mirror: the statement of [`crate::contracts::report_sql`] run
//! once per partition of the conversations, concurrently, each on its own connection in a
//! read-only transaction; the rows merge into one [`Tally`].

use futures::TryStreamExt;
use futures::future::try_join_all;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};

use super::tally::{Tally, Worst};
use super::{ReportError, ReportRequest};
use crate::contracts::report_sql::Pairing;
use crate::contracts::{Contracts, Extra};
use crate::store::MirrorError;
use crate::store::postgres::{Deadline, limit_of};

/// Each partition's statement runs in a transaction with these: read-only; enough memory for
/// the final grouping (a few thousand groups) to stay in memory; parallel workers off when the
/// partitions already use the server's cores; and a server-side limit matching ours.
fn settings(req: &ReportRequest) -> Vec<String> {
    let mut s = vec![
        "SET TRANSACTION READ ONLY".to_string(),
        "SET LOCAL work_mem = '64MB'".to_string(),
        format!("SET LOCAL statement_timeout = {}", req.query_timeout.as_millis()),
    ];
    if req.partitions > 1 {
        s.push("SET LOCAL max_parallel_workers_per_gather = 0".into());
    }
    s
}

pub async fn tally(
    pool: &PgPool,
    addr: &str,
    contracts: &Contracts,
    req: &ReportRequest,
) -> Result<Tally, ReportError> {
    crate::store::postgres::require_table(pool, addr, &contracts.table).await?;
    let parts = req.partitions.max(1);
    let runs = (0..parts).map(|i| partition(pool, addr, contracts, req, parts, i));
    let work = try_join_all(runs);
    let tallies = tokio::time::timeout(req.query_timeout, work)
        .await
        .map_err(|_| ReportError::QueryTimeout { addr: addr.to_string(), after: req.query_timeout })??;
    let mut all = Tally::new(req.window.buckets(), req.top);
    for t in tallies {
        all.merge(t).map_err(ReportError::Histogram)?;
    }
    extras(pool, addr, contracts, req, &mut all).await?;
    Ok(all.finish())
}

/// Counts the typing and read events of the window into `t`.
async fn extras(
    pool: &PgPool,
    addr: &str,
    c: &Contracts,
    req: &ReportRequest,
    t: &mut Tally,
) -> Result<(), ReportError> {
    let names: Vec<String> = Extra::ALL.iter().map(|e| c.extra_name(*e).to_string()).collect();
    let convs = (!req.conversations.is_empty()).then(|| req.conversations.clone());
    let rows: Vec<(String, bool, i64)> = crate::store::postgres::statement_as(&c.table.extras_sql())
        .bind(req.window.since)
        .bind(req.window.until)
        .bind(req.test_prefix(c).map(|_| c.synthetic_like()))
        .bind(&c.event_user)
        .bind(names)
        .bind(convs)
        .fetch_all(pool)
        .within(limit_of(pool))
        .await
        .map_err(MirrorError::pg("sla report typing and read events", addr))?;
    for (name, synthetic, n) in rows {
        if let Some(e) = c.extra_kind(&name) {
            t.extra(e, synthetic, n.max(0) as u64);
        }
    }
    Ok(())
}

async fn partition(
    pool: &PgPool,
    addr: &str,
    c: &Contracts,
    req: &ReportRequest,
    parts: usize,
    part: usize,
) -> Result<Tally, ReportError> {
    let pg = |op: &str| MirrorError::pg(format!("sla report {op}"), addr);
    let limit = limit_of(pool);
    let mut tx = pool.begin().within(limit).await.map_err(pg("begin"))?;
    for s in settings(req) {
        crate::store::postgres::statement(&s).execute(&mut *tx).within(limit).await.map_err(pg("settings"))?;
    }
    let pairing = match c.reply.field() {
        Some(_) => Pairing::Field,
        None => Pairing::FirstAfter,
    };
    let sql = c.table.report_sql(pairing);
    let w = &req.window;
    let convs = (!req.conversations.is_empty()).then(|| req.conversations.clone());
    let mut q = crate::store::postgres::statement(&sql)
        .bind(w.since)
        .bind(w.until)
        .bind(w.by.as_secs_f64())
        .bind(req.reply_timeout.as_secs_f64())
        .bind(req.slo.as_micros() as i64)
        .bind(req.test_prefix(c).map(|_| c.synthetic_like()))
        .bind(convs)
        .bind(parts as i32)
        .bind(part as i32)
        .bind(&c.event_user)
        .bind(&c.event_ai)
        .bind(&c.event_sla_warning)
        .bind(&c.event_sla_violation)
        .bind(req.top as i64);
    if let Some(field) = c.reply.field() {
        q = q.bind(field);
    }
    let mut t = Tally::new(w.buckets(), req.top);
    {
        // Streamed: a row at a time into the tally, whatever the number of rows.
        let mut rows = q.fetch(&mut *tx);
        while let Some(row) = rows.try_next().await.map_err(pg("query"))? {
            add_row(&mut t, &row).map_err(pg("decode"))?;
        }
    }
    tx.rollback().within(limit).await.map_err(pg("rollback"))?;
    Ok(t)
}

fn add_row(t: &mut Tally, row: &PgRow) -> Result<(), sqlx::Error> {
    let n = |name: &str| -> Result<u64, sqlx::Error> { Ok(row.try_get::<i64, _>(name)?.max(0) as u64) };
    let synthetic: bool = row.try_get("synthetic")?;
    match row.try_get::<i32, _>("kind")? {
        0 => {
            let b: i32 = row.try_get("b")?;
            let v: Option<i64> = row.try_get("v")?;
            let acc = t.acc(synthetic, b as i64);
            acc.counts.over_slo += n("over")?;
            if let Some(v) = v {
                acc.latency.record_us(v.max(1) as u64, n("answered")?);
            }
        }
        3 => {
            let b: i32 = row.try_get("b")?;
            let acc = t.acc(synthetic, b as i64);
            let c = &mut acc.counts;
            c.messages += n("messages")?;
            c.duplicates += n("duplicates")?;
            c.replies += n("replies")?;
            c.unpaired += n("unpaired")?;
            c.unanswered += n("unanswered")?;
            c.pending += n("pending")?;
            c.warnings += n("warnings")?;
            c.violations += n("violations")?;
            c.keyless_messages += n("keyless_messages")?;
            c.keyless_replies += n("keyless_replies")?;
            // The histogram rows are rounded to their buckets; the bucket's maximum is exact.
            if let Some(m) = row.try_get::<Option<i64>, _>("max_us")? {
                acc.latency.note_max_us(m.max(1) as u64);
            }
            t.copies += n("copies")?;
        }
        1 if synthetic => t.excluded_conversations += n("answered")?,
        1 => t.conversations += n("answered")?,
        _ => t.offer(Worst {
            conversation: row.try_get("c")?,
            slowest_us: row.try_get::<Option<i64>, _>("max_us")?.map(|v| v.max(0) as u64),
            unanswered: n("unanswered")?,
            over_slo: n("over")?,
            messages: n("messages")?,
        }),
    }
    Ok(())
}

/// Conversations with an event in the last `--active-window`: (customers, test traffic).
pub async fn active_now(
    pool: &PgPool,
    addr: &str,
    c: &Contracts,
    req: &ReportRequest,
) -> Result<(u64, u64), ReportError> {
    let now = chrono::Utc::now();
    let since = now - chrono::Duration::from_std(req.active_window).unwrap_or(chrono::Duration::MAX);
    let rows: Vec<(bool, i64)> = crate::store::postgres::statement_as(&c.table.active_sql())
        .bind(since)
        .bind(now)
        .bind(req.test_prefix(c).map(|_| c.synthetic_like()))
        .bind(&c.event_user)
        .fetch_all(pool)
        .within(limit_of(pool))
        .await
        .map_err(MirrorError::pg("sla report active conversations", addr))?;
    let get = |s: bool| rows.iter().find(|r| r.0 == s).map_or(0, |r| r.1.max(0) as u64);
    Ok((get(false), get(true)))
}
