//! `broker-ops db migrate`: the one command that creates the mirror table (and, with the
//! contracts, its schema and indexes) and the rollout's tables (flags, overrides, append-only
//! audit, and the default flag off at 0 %) in the configured Postgres. Nothing else does it for
//! a production database; `--dry-run` prints the SQL and connects to nothing.

use std::io::{self, Write};

use serde::Serialize;
use serde_json::{Value, json};

use crate::config::{Config, ConfigError};
use crate::output::{Render, Style, escape};
use crate::store::MirrorError;

#[derive(Debug, Clone, Serialize)]
pub struct MigrateReport {
    pub table: String,
    /// The rollout's flag table (its overrides and audit tables beside it).
    pub flag_table: String,
    /// The database, password removed; `None` on a dry run.
    pub database: Option<String>,
    pub dry_run: bool,
    pub statements: Vec<String>,
    /// Whether the table existed before (`None` on a dry run).
    pub existed: Option<bool>,
    /// What the run created and what it found in place, each `(kind, name)` (empty on a dry run).
    pub created: Vec<(String, String)>,
    pub found: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Mirror(#[from] MirrorError),
    /// A table exists in a shape broker-ops cannot use: nothing was created around it.
    #[error("Postgres at {addr}: {} (nothing was created; fix or rename the table, or point contracts.table / contracts.flag_table at the right one)", differences.join("; "))]
    Shape { addr: String, differences: Vec<String> },
}

pub async fn run(config: &Config, dry_run: bool) -> Result<MigrateReport, MigrateError> {
    let table = &config.contracts.table;
    let flag_table = config.contracts.flags.flags.to_string();
    let mut statements = crate::store::postgres::migration(table);
    statements.extend(config.contracts.flags.migration());
    if dry_run {
        return Ok(MigrateReport {
            table: table.to_string(),
            flag_table,
            database: None,
            dry_run,
            statements,
            existed: None,
            created: Vec::new(),
            found: Vec::new(),
        });
    }
    let crate::store::postgres::Pg { pool, addr } = crate::store::postgres::Pg::required(config).await?;
    let existed = crate::store::postgres::table_exists(&pool, &addr, table).await?;
    let flags = &config.contracts.flags;
    let mut differences = Vec::new();
    for (t, shape) in [
        (table, crate::contracts::MIRROR_SHAPE),
        (&flags.flags, crate::contracts::FLAGS_SHAPE),
        (&flags.overrides, crate::contracts::OVERRIDES_SHAPE),
        (&flags.audit, crate::contracts::AUDIT_SHAPE),
    ] {
        differences.extend(crate::store::postgres::shape_of(&pool, &addr, t, shape).await?.unwrap_or_default());
    }
    if !differences.is_empty() {
        return Err(MigrateError::Shape { addr, differences });
    }
    let done = crate::store::postgres::run_migration(&pool, &addr, statements).await?;
    pool.close().await;
    Ok(MigrateReport {
        table: table.to_string(),
        flag_table,
        database: Some(addr),
        dry_run,
        statements: done.statements,
        existed: Some(existed),
        created: done.created,
        found: done.found,
    })
}

impl Render for MigrateReport {
    /// A dry run prints the SQL; a real run says what it created and what it found in place
    /// (the SQL it ran is in `-o json`).
    fn table(&self, w: &mut dyn Write, style: Style) -> io::Result<()> {
        let Some(db) = &self.database else {
            for s in &self.statements {
                writeln!(w, "{s};")?;
            }
            return writeln!(w, "-- dry run: nothing was sent to any database");
        };
        let mut t = crate::output::table(&["", "kind", "name"]);
        for (kind, name) in &self.created {
            t.add_row(vec![style.good("created"), kind.clone(), escape(name)]);
        }
        for (kind, name) in &self.found {
            t.add_row(vec!["in place".to_string(), kind.clone(), escape(name)]);
        }
        writeln!(w, "{t}")?;
        let verdict = if self.created.is_empty() { "nothing to create, everything was in place" } else { "done" };
        writeln!(
            w,
            "db migrate at {}: {} created, {} in place: {verdict}",
            escape(db),
            self.created.len(),
            self.found.len()
        )
    }

    fn json(&self) -> Value {
        json!({"schema_version": 1, "kind": "db_migrate", "table": self.table, "flag_table": self.flag_table, "database": self.database,
               "dry_run": self.dry_run, "existed": self.existed, "statements": self.statements,
               "created": self.created.iter().map(|(k, n)| json!({"kind": k, "name": n})).collect::<Vec<_>>(),
               "found": self.found.iter().map(|(k, n)| json!({"kind": k, "name": n})).collect::<Vec<_>>()})
    }
}
