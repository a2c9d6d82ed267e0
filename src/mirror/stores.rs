//! The mirror's two stores opened once: Redis and Postgres side by side, each `None` when not
//! configured, or the reason it could not be opened. The probes of one `monitor` sweep share
//! them, so a production database sees one pool per run rather than one per probe (every new
//! Postgres connection is a forked backend, and Supabase counts them).

use sqlx::PgPool;

use crate::config::Config;
use crate::redis_handle::Redis;

#[derive(Clone, Default)]
pub struct Opened {
    pub redis: Option<Result<Redis, String>>,
    pub postgres: Option<Result<(PgPool, String), String>>,
}

impl Opened {
    /// Both configured stores, opened at the same time.
    pub async fn open(config: &Config) -> Opened {
        Self::open_only(config, true, true).await
    }

    /// Only the stores asked for (and configured).
    pub async fn open_only(config: &Config, redis: bool, postgres: bool) -> Opened {
        let r = async { if redis { Redis::from_config(config).await } else { Ok(None) } };
        let p = async { if postgres { super::postgres::from_config(config).await } else { Ok(None) } };
        let (r, p) = tokio::join!(r, p);
        Opened { redis: r.map_err(|e| e.to_string()).transpose(), postgres: p.map_err(|e| e.to_string()).transpose() }
    }
}
