//! The run lock of the alert state: one run at a time reads and writes incidents and the outbox.
//!
//! In Redis, `SET key token NX PX <ttl>` (`ALERT_LOCK_TTL`, 15 s by default), renewed every third
//! of it by a task of its own while held, and released by compare-and-delete: a run killed with
//! `kill -9` blocks the others for at most the TTL, and a run never deletes a lock another run
//! took after its own expired. In the state
//! directory, an advisory file lock, which the kernel releases when the process dies. A run that
//! cannot get the lock within [`LOCK_WAIT`] does not drop its notice: `send` queues it.

use std::path::Path;
use std::time::Duration;

use redis::aio::ConnectionManager;

use super::error::StateError;

/// How long a run waits for another run's lock: at most 5 s, and at most a third of a Redis
/// lock's life (a shorter-lived lock is one the operator wants to stop blocking soon).
pub const LOCK_WAIT: Duration = Duration::from_secs(5);

fn wait_for(ttl: Duration) -> Duration {
    LOCK_WAIT.min(ttl / 3)
}

const RELEASE: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";
const RENEW: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end";

/// A held Redis lock: its key, token and renewing task.
#[derive(Debug)]
pub struct RedisLock {
    key: String,
    token: String,
    renewer: tokio::task::JoinHandle<()>,
}

impl RedisLock {
    /// Waits at most [`LOCK_WAIT`] (a third of `ttl` when shorter) for the lock; `ttl` is how
    /// long it lives without renewal.
    pub async fn take(
        conn: &mut ConnectionManager,
        addr: &str,
        key: &str,
        ttl: Duration,
    ) -> Result<RedisLock, StateError> {
        let waited = wait_for(ttl);
        let deadline = tokio::time::Instant::now() + waited;
        let token = uuid::Uuid::new_v4().to_string();
        loop {
            if let Some(lock) = Self::try_take(conn, addr, key, &token, ttl).await? {
                return Ok(lock);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(StateError::Locked { place: addr.to_string(), waited });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// One `SET NX PX` with `token` as the value (which says who holds it): the lock, or `None`
    /// when another holder has it.
    pub async fn try_take(
        conn: &mut ConnectionManager,
        addr: &str,
        key: &str,
        token: &str,
        ttl: Duration,
    ) -> Result<Option<RedisLock>, StateError> {
        let set: Option<String> = redis::cmd("SET")
            .arg(key)
            .arg(token)
            .arg("NX")
            .arg("PX")
            .arg(ttl.as_millis() as u64)
            .query_async(conn)
            .await
            .map_err(|source| StateError::Redis { addr: addr.to_string(), op: "SET lock", source })?;
        Ok(set.map(|_| {
            let renewer = tokio::spawn(renew(conn.clone(), key.to_string(), token.to_string(), ttl));
            RedisLock { key: key.to_string(), token: token.to_string(), renewer }
        }))
    }

    pub async fn release(self, conn: &mut ConnectionManager, addr: &str) -> Result<(), StateError> {
        self.renewer.abort();
        let _: i64 = redis::Script::new(RELEASE)
            .key(&self.key)
            .arg(&self.token)
            .invoke_async(conn)
            .await
            .map_err(|source| StateError::Redis { addr: addr.to_string(), op: "release lock", source })?;
        Ok(())
    }
}

impl Drop for RedisLock {
    /// A lock dropped without `release` (an early return, a panic) stops being renewed, so it
    /// expires within its TTL.
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

async fn renew(mut conn: ConnectionManager, key: String, token: String, ttl: Duration) {
    let mut tick = tokio::time::interval(ttl / 3);
    tick.tick().await;
    loop {
        tick.tick().await;
        let renewed: Result<i64, _> =
            redis::Script::new(RENEW).key(&key).arg(&token).arg(ttl.as_millis() as u64).invoke_async(&mut conn).await;
        if !matches!(renewed, Ok(1)) {
            // Lost (expired and taken) or Redis gone: nothing more to renew.
            tracing::warn!("alert state: the run lock {key} could not be renewed");
            return;
        }
    }
}

/// The state directory's lock file, waited for at most [`LOCK_WAIT`].
pub async fn dir_lock(root: &Path) -> Result<std::fs::File, StateError> {
    let deadline = tokio::time::Instant::now() + LOCK_WAIT;
    let path = root.join("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| StateError::Dir { path: path.display().to_string(), op: "open lock", source })?;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StateError::Locked { place: root.display().to_string(), waited: LOCK_WAIT });
            }
            Err(std::fs::TryLockError::Error(source)) => {
                return Err(StateError::Dir { path: path.display().to_string(), op: "lock", source });
            }
        }
    }
}
