//! Named documents and run locks kept with the alert state, for capabilities whose state lives
//! beside the incidents they open (the monitor's rule states and its run lock): one store, one
//! connection, and the same Redis-else-directory choice.

use std::io::{Read, Seek, Write};

use redis::AsyncCommands;

use super::lock::RedisLock;
use super::state::{StateError, Store};
use crate::redis_handle::Redis;

/// A run lock held under a name of its own.
#[derive(Debug)]
pub enum NamedLock {
    Redis(RedisLock),
    File(std::fs::File),
}

/// What a try for a named lock came to.
#[derive(Debug)]
pub enum TryLock {
    Held(NamedLock),
    /// Another run has it: what its holder wrote (host, pid, run id), and where.
    Busy {
        holder: String,
        place: String,
    },
}

impl Store {
    fn named_key(prefix: &str, name: &str) -> String {
        format!("{prefix}broker-ops:{name}")
    }

    /// Takes the lock `name` at once or not at all. `holder` is stored with it so that a run
    /// that finds it taken can say who has it. Redis: `SET NX PX` renewed while held, released
    /// only by its owner; directory: an advisory file lock the kernel drops with the process.
    pub async fn try_lock_named(&mut self, name: &str, holder: &str) -> Result<TryLock, StateError> {
        match self {
            Store::Redis { redis: Redis { conn, addr, prefix, .. }, ttl, .. } => {
                let key = Self::named_key(prefix, &format!("{name}:lock"));
                let token = format!("{holder} token={}", uuid::Uuid::new_v4().simple());
                if let Some(lock) = RedisLock::try_take(conn, addr, &key, &token, *ttl).await? {
                    return Ok(TryLock::Held(NamedLock::Redis(lock)));
                }
                let holder: Option<String> = conn.get(&key).await.map_err(|source| StateError::Redis {
                    addr: addr.clone(),
                    op: "GET lock",
                    source,
                })?;
                let holder = holder.map_or("a run whose lock expired just now".into(), |h| without_token(&h));
                Ok(TryLock::Busy { holder, place: format!("redis {addr} key {key}") })
            }
            Store::Dir { root, .. } => {
                let path = root.join(format!("{name}.lock"));
                let io = |op: &'static str| {
                    let path = path.display().to_string();
                    move |source| StateError::Dir { path, op, source }
                };
                let mut file = std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .read(true)
                    .write(true)
                    .open(&path)
                    .map_err(io("open lock"))?;
                match file.try_lock() {
                    Ok(()) => {
                        file.set_len(0).map_err(io("write lock holder"))?;
                        file.rewind().map_err(io("write lock holder"))?;
                        file.write_all(holder.as_bytes()).map_err(io("write lock holder"))?;
                        Ok(TryLock::Held(NamedLock::File(file)))
                    }
                    Err(std::fs::TryLockError::WouldBlock) => {
                        let mut text = String::new();
                        file.read_to_string(&mut text).map_err(io("read lock holder"))?;
                        let holder = if text.trim().is_empty() { "another run".into() } else { text };
                        Ok(TryLock::Busy { holder, place: path.display().to_string() })
                    }
                    Err(std::fs::TryLockError::Error(source)) => Err(io("lock")(source)),
                }
            }
        }
    }

    /// Releases a named lock: a Redis lock only if it is still ours.
    pub async fn release_named(&mut self, lock: NamedLock) -> Result<(), StateError> {
        match (self, lock) {
            (Store::Redis { redis: Redis { conn, addr, .. }, .. }, NamedLock::Redis(l)) => l.release(conn, addr).await,
            // Closing the file releases the lock; a Redis lock on a directory store cannot
            // happen (the store does not change during a run), and dropping it stops its renewal.
            (_, lock) => {
                drop(lock);
                Ok(())
            }
        }
    }

    /// The document `name` (JSON text), if one was saved.
    pub async fn doc(&mut self, name: &str) -> Result<Option<String>, StateError> {
        match self {
            Store::Redis { redis: Redis { conn, addr, prefix, .. }, .. } => conn
                .get(Self::named_key(prefix, name))
                .await
                .map_err(|source| StateError::Redis { addr: addr.clone(), op: "GET document", source }),
            Store::Dir { root, .. } => {
                let path = root.join(format!("{}.json", name.replace(':', "-")));
                match std::fs::read_to_string(&path) {
                    Ok(text) => Ok(Some(text)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(source) => Err(StateError::Dir { path: path.display().to_string(), op: "read", source }),
                }
            }
        }
    }

    /// Saves the document `name` whole (atomically in the directory).
    pub async fn put_doc(&mut self, name: &str, text: &str) -> Result<(), StateError> {
        match self {
            Store::Redis { redis: Redis { conn, addr, prefix, .. }, .. } => conn
                .set(Self::named_key(prefix, name), text)
                .await
                .map_err(|source| StateError::Redis { addr: addr.clone(), op: "SET document", source }),
            Store::Dir { root, .. } => {
                let path = root.join(format!("{}.json", name.replace(':', "-")));
                crate::fsutil::write_private(&path, text).map_err(|source| StateError::Dir {
                    path: path.display().to_string(),
                    op: "write",
                    source,
                })
            }
        }
    }
}

/// The holder as written, without the lock's secret-free but meaningless token.
fn without_token(value: &str) -> String {
    value.rsplit_once(" token=").map_or(value, |(h, _)| h).to_string()
}
