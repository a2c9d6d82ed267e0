//! The stores every capability shares: the one Postgres handle (deadlines on every round trip,
//! the mirror table's SQL), the mirror's Redis stream, the stores a run opens once, and their
//! error, which names the store, the operation and the address.

pub mod opened;
pub mod postgres;
pub mod redis;

#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error(transparent)]
    Redis(#[from] crate::redis_handle::RedisError),
    #[error("Postgres {op} at {addr}: {}", crate::tls::with_reason(&source.to_string()))]
    Postgres {
        op: String,
        addr: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("replay checkpoint: {0}")]
    Cursor(String),
    #[error(
        "Postgres at {addr}: the mirror table {table} does not exist (create it with `broker-ops db migrate`, \
         or set contracts.table to the table the webhook writes)"
    )]
    NoTable { addr: String, table: String },
    /// A store the command needs is not configured.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

impl MirrorError {
    /// Whose failure this is (see [`crate::exit::Fault`]).
    pub fn fault(&self) -> crate::exit::Fault {
        match self {
            MirrorError::Redis(e) => e.fault(),
            MirrorError::Postgres { source, .. } => pg_fault(source),
            MirrorError::Cursor(_) | MirrorError::NoTable { .. } | MirrorError::Config(_) => crate::exit::Fault::Ours,
        }
    }

    /// A Postgres error of operation `op` at `addr`, for `map_err`.
    pub fn pg<O: Into<String>>(op: O, addr: &str) -> impl FnOnce(sqlx::Error) -> MirrorError + use<O> {
        let (op, addr) = (op.into(), addr.to_string());
        move |source| MirrorError::Postgres { op, addr, source }
    }
}

/// Whose failure a Postgres error is: a server that refuses, resets, times out, cannot be
/// resolved, is shutting down or out of connections is the service's; a password refused, a
/// database or table that does not exist, a permission or a URL we got wrong is ours.
pub fn pg_fault(e: &sqlx::Error) -> crate::exit::Fault {
    use crate::exit::Fault;
    match e {
        sqlx::Error::Configuration(_) => Fault::Ours,
        sqlx::Error::Database(db) => match db.code().as_deref().map(|c| c.get(..2).unwrap_or(c)) {
            // 08 connection exception, 53 insufficient resources, 57 operator intervention
            // (shutdown, statement time-out), 58 system error, XX internal error.
            Some("08" | "53" | "57" | "58" | "XX") => Fault::Service,
            _ => Fault::Ours,
        },
        _ => Fault::Service,
    }
}
