//! Where alert state lives between cron runs: open incidents and the outbox.
//!
//! Redis when `REDIS_URL` is set, so that several cron hosts share one view; otherwise (or when
//! Redis does not answer) a state directory. Every run holds one lock while it reads and
//! writes, so two runs never both send the same notice.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::Kind;
use super::email::Mail;
pub use super::error::StateError;
use super::model::Severity;
use crate::redis_handle::Redis;

/// The open incident of one dedup key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub dedup_key: String,
    pub incident_id: String,
    pub severity: Severity,
    pub summary: String,
    pub opened_at: DateTime<Utc>,
    pub last_sent_at: DateTime<Utc>,
    /// Notices sent (or queued) so far; the next mail is number `notices + 1`.
    pub notices: u32,
    /// The Slack message the thread hangs on (bot-token target only).
    pub slack_ts: Option<String>,
    /// The last outcome per channel.
    pub results: BTreeMap<String, String>,
    /// The alert's members as last notified.
    #[serde(default)]
    pub members: Vec<String>,
    /// Someone said "I have it": no reminders until it escalates, grows or resolves.
    #[serde(default)]
    pub ack: Option<Ack>,
}

/// An acknowledgement of an open incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ack {
    pub by: String,
    pub at: DateTime<Utc>,
    pub reason: String,
}

impl Incident {
    /// The short id shown in notices and lists (the first 8 characters of the incident id).
    pub fn short_id(&self) -> &str {
        self.incident_id.get(..8).unwrap_or(&self.incident_id)
    }
}

/// A rendered notice waiting to be delivered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxEntry {
    /// Sorts in queue order: milliseconds, then a per-run sequence, then a random part.
    pub id: String,
    pub queued_at: DateTime<Utc>,
    pub dedup_key: String,
    pub incident_id: String,
    pub kind: Kind,
    pub delivery: Delivery,
    pub last_error: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "channel", rename_all = "lowercase")]
pub enum Delivery {
    Slack {
        payload: Value,
        thread_ts: Option<String>,
        broadcast: bool,
    },
    Email {
        mail: Mail,
    },
    /// An alert that could not be decided because another run held the lock: the next run
    /// that holds it decides and delivers it, in its turn.
    Alert {
        alert: Box<super::Alert>,
        repeat_interval_secs: u64,
    },
}

/// Where a notice goes: a channel, or (an alert queued while another run held the lock) the
/// next run's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Slack,
    Email,
    Alert,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Slack => "slack",
            Channel::Email => "email",
            Channel::Alert => "alert",
        }
    }
}

impl std::fmt::Display for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl Delivery {
    pub fn channel(&self) -> Channel {
        match self {
            Delivery::Slack { .. } => Channel::Slack,
            Delivery::Email { .. } => Channel::Email,
            Delivery::Alert { .. } => Channel::Alert,
        }
    }
}

impl OutboxEntry {
    pub fn new(dedup_key: &str, incident_id: &str, kind: Kind, delivery: Delivery, last_error: String) -> Self {
        let now = Utc::now();
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = format!("{:013}-{seq:06}-{}", now.timestamp_millis(), &uuid::Uuid::new_v4().simple().to_string()[..8]);
        OutboxEntry {
            id,
            queued_at: now,
            dedup_key: dedup_key.into(),
            incident_id: incident_id.into(),
            kind,
            delivery,
            last_error,
        }
    }
}

pub enum Store {
    /// `ttl`: how long the run lock outlives a run killed while holding it.
    Redis {
        redis: Redis,
        lock: Option<super::lock::RedisLock>,
        ttl: std::time::Duration,
    },
    Dir {
        root: PathBuf,
        lock: Option<std::fs::File>,
    },
}

impl Store {
    /// The configured Redis when it answers; else the directory. The second value says why the
    /// directory was used although Redis was configured.
    pub async fn open(
        redis: Option<Result<Redis, String>>,
        dir: &Path,
        ttl: std::time::Duration,
    ) -> Result<(Store, Option<String>), StateError> {
        if let Some(connected) = redis {
            match connected {
                Ok(redis) => return Ok((Store::Redis { redis, lock: None, ttl }, None)),
                Err(e) => {
                    let why = format!(
                        "Redis did not answer ({e}); alert state is kept in {} on this host, \
                         so other cron hosts do not see it until Redis is back",
                        dir.display()
                    );
                    return Ok((Store::dir(dir)?, Some(why)));
                }
            }
        }
        Ok((Store::dir(dir)?, None))
    }

    pub fn dir(root: &Path) -> Result<Store, StateError> {
        for sub in ["incidents", "outbox"] {
            std::fs::create_dir_all(root.join(sub)).map_err(|source| StateError::Dir {
                path: root.join(sub).display().to_string(),
                op: "create",
                source,
            })?;
        }
        Ok(Store::Dir { root: root.to_path_buf(), lock: None })
    }

    /// What the reports show: `redis redis://host:6379` or `dir /var/lib/...`.
    pub fn describe(&self) -> String {
        match self {
            Store::Redis { redis, .. } => format!("redis {}", redis.addr),
            Store::Dir { root, .. } => format!("dir {}", root.display()),
        }
    }

    fn key(prefix: &str, tail: &str) -> String {
        format!("{prefix}broker-ops:alert:{tail}")
    }

    fn file_of(root: &Path, dedup_key: &str) -> PathBuf {
        let digest = Sha256::digest(dedup_key.as_bytes());
        let name: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        root.join("incidents").join(format!("{name}.json"))
    }

    /// Takes the run lock, waiting at most [`super::lock::LOCK_WAIT`] for another run.
    pub async fn lock(&mut self) -> Result<(), StateError> {
        match self {
            Store::Redis { redis: Redis { conn, addr, prefix, .. }, lock, ttl } => {
                *lock = Some(super::lock::RedisLock::take(conn, addr, &Self::key(prefix, "lock"), *ttl).await?);
                Ok(())
            }
            Store::Dir { root, lock } => {
                *lock = Some(super::lock::dir_lock(root).await?);
                Ok(())
            }
        }
    }

    /// Releases the run lock (only our own: a Redis lock that expired and was taken by another
    /// run is left alone). Every run calls it on every way out, error or not.
    pub async fn unlock(&mut self) -> Result<(), StateError> {
        match self {
            Store::Redis { redis: Redis { conn, addr, .. }, lock, .. } => match lock.take() {
                Some(l) => l.release(conn, addr).await,
                None => Ok(()),
            },
            Store::Dir { lock, .. } => {
                // Closing the file releases the lock.
                lock.take();
                Ok(())
            }
        }
    }

    pub async fn incident(&mut self, dedup_key: &str) -> Result<Option<Incident>, StateError> {
        let (raw, place) = match self {
            Store::Redis { redis: Redis { conn, addr, prefix, .. }, .. } => {
                let raw: Option<String> = conn
                    .get(Self::key(prefix, &format!("incident:{dedup_key}")))
                    .await
                    .map_err(|source| StateError::Redis { addr: addr.clone(), op: "GET incident", source })?;
                (raw, addr.clone())
            }
            Store::Dir { root, .. } => {
                let path = Self::file_of(root, dedup_key);
                match std::fs::read_to_string(&path) {
                    Ok(s) => (Some(s), path.display().to_string()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => (None, String::new()),
                    Err(source) => {
                        return Err(StateError::Dir { path: path.display().to_string(), op: "read", source });
                    }
                }
            }
        };
        raw.map(|r| {
            serde_json::from_str(&r).map_err(|e| StateError::Corrupt {
                place,
                entry: format!("incident {dedup_key}"),
                reason: e.to_string(),
            })
        })
        .transpose()
    }

    /// Every open incident, by dedup key.
    pub async fn incidents(&mut self) -> Result<Vec<Incident>, StateError> {
        let texts: Vec<(String, String)> = match self {
            Store::Redis { redis: Redis { conn, addr, prefix, .. }, .. } => {
                let pattern = format!("{}*", Self::key(prefix, "incident:"));
                let err = |op| {
                    let addr = addr.clone();
                    move |source| StateError::Redis { addr, op, source }
                };
                let mut keys: Vec<String> = Vec::new();
                let mut iter: redis::AsyncIter<String> =
                    conn.scan_match(&pattern).await.map_err(err("SCAN incidents"))?;
                while let Some(k) = iter.next_item().await {
                    keys.push(k.map_err(err("SCAN incidents"))?);
                }
                drop(iter);
                let mut out = Vec::with_capacity(keys.len());
                for k in keys {
                    let raw: Option<String> = conn.get(&k).await.map_err(err("GET incident"))?;
                    out.extend(raw.map(|r| (k, r)));
                }
                out
            }
            Store::Dir { root, .. } => {
                let dir = root.join("incidents");
                let list = |source| StateError::Dir { path: dir.display().to_string(), op: "list", source };
                let mut out = Vec::new();
                for e in std::fs::read_dir(&dir).map_err(list)? {
                    let p = e.map_err(list)?.path();
                    if p.extension().is_some_and(|x| x == "json") {
                        let read = |source| StateError::Dir { path: p.display().to_string(), op: "read", source };
                        out.push((p.display().to_string(), std::fs::read_to_string(&p).map_err(read)?));
                    }
                }
                out
            }
        };
        let mut all = texts
            .into_iter()
            .map(|(place, text)| {
                serde_json::from_str::<Incident>(&text).map_err(|e| StateError::Corrupt {
                    place,
                    entry: "incident".into(),
                    reason: e.to_string(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        all.sort_by(|a, b| a.dedup_key.cmp(&b.dedup_key));
        Ok(all)
    }

    pub async fn put_incident(&mut self, incident: &Incident) -> Result<(), StateError> {
        // Serialising plain data with string keys cannot fail.
        let doc = serde_json::to_string(incident).expect("incident serialises");
        match self {
            Store::Redis { redis: Redis { conn, addr, prefix, .. }, .. } => conn
                .set(Self::key(prefix, &format!("incident:{}", incident.dedup_key)), doc)
                .await
                .map_err(|source| StateError::Redis { addr: addr.clone(), op: "SET incident", source }),
            Store::Dir { root, .. } => write_state(&Self::file_of(root, &incident.dedup_key), &doc),
        }
    }

    pub async fn close_incident(&mut self, dedup_key: &str) -> Result<(), StateError> {
        match self {
            Store::Redis { redis: Redis { conn, addr, prefix, .. }, .. } => conn
                .del(Self::key(prefix, &format!("incident:{dedup_key}")))
                .await
                .map_err(|source| StateError::Redis { addr: addr.clone(), op: "DEL incident", source }),
            Store::Dir { root, .. } => {
                let path = Self::file_of(root, dedup_key);
                match std::fs::remove_file(&path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        Err(StateError::Dir { path: path.display().to_string(), op: "remove", source: e })
                    }
                    _ => Ok(()),
                }
            }
        }
    }

    /// The outbox in delivery order.
    pub async fn outbox(&mut self) -> Result<Vec<OutboxEntry>, StateError> {
        match self {
            Store::Redis { redis: Redis { conn, addr, prefix, .. }, .. } => {
                let raw: Vec<String> = conn
                    .lrange(Self::key(prefix, "outbox"), 0, -1)
                    .await
                    .map_err(|source| StateError::Redis { addr: addr.clone(), op: "LRANGE outbox", source })?;
                raw.iter()
                    .enumerate()
                    .map(|(i, r)| {
                        serde_json::from_str(r).map_err(|e| StateError::Corrupt {
                            place: addr.clone(),
                            entry: format!("outbox[{i}]"),
                            reason: e.to_string(),
                        })
                    })
                    .collect()
            }
            Store::Dir { root, .. } => {
                let dir = root.join("outbox");
                let read_err = |source| StateError::Dir { path: dir.display().to_string(), op: "list", source };
                let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
                    .map_err(read_err)?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "json"))
                    .collect();
                names.sort();
                names
                    .iter()
                    .map(|p| {
                        let raw = std::fs::read_to_string(p).map_err(|source| StateError::Dir {
                            path: p.display().to_string(),
                            op: "read",
                            source,
                        })?;
                        serde_json::from_str(&raw).map_err(|e| StateError::Corrupt {
                            place: p.display().to_string(),
                            entry: "outbox entry".into(),
                            reason: e.to_string(),
                        })
                    })
                    .collect()
            }
        }
    }

    pub async fn enqueue(&mut self, entry: &OutboxEntry) -> Result<(), StateError> {
        // Plain data with string keys: serialising cannot fail.
        let doc = serde_json::to_string(entry).expect("outbox entry serialises");
        match self {
            Store::Redis { redis: Redis { conn, addr, prefix, .. }, .. } => conn
                .rpush(Self::key(prefix, "outbox"), doc)
                .await
                .map_err(|source| StateError::Redis { addr: addr.clone(), op: "RPUSH outbox", source }),
            Store::Dir { root, .. } => write_state(&root.join("outbox").join(format!("{}.json", entry.id)), &doc),
        }
    }

    pub async fn remove(&mut self, entry: &OutboxEntry) -> Result<(), StateError> {
        match self {
            Store::Redis { redis: Redis { conn, addr, prefix, .. }, .. } => {
                let key = Self::key(prefix, "outbox");
                let raw: Vec<String> = conn.lrange(&key, 0, -1).await.map_err(|source| StateError::Redis {
                    addr: addr.clone(),
                    op: "LRANGE outbox",
                    source,
                })?;
                // Remove the stored bytes that carry this id (the stored form is what LREM compares).
                for r in raw {
                    if serde_json::from_str::<OutboxEntry>(&r).is_ok_and(|e| e.id == entry.id) {
                        let _: i64 = conn.lrem(&key, 1, r).await.map_err(|source| StateError::Redis {
                            addr: addr.clone(),
                            op: "LREM outbox",
                            source,
                        })?;
                    }
                }
                Ok(())
            }
            Store::Dir { root, .. } => {
                let path = root.join("outbox").join(format!("{}.json", entry.id));
                std::fs::remove_file(&path).map_err(|source| StateError::Dir {
                    path: path.display().to_string(),
                    op: "remove",
                    source,
                })
            }
        }
    }
}

fn write_state(path: &Path, doc: &str) -> Result<(), StateError> {
    crate::fsutil::write_private(path, doc).map_err(|source| StateError::Dir {
        path: path.display().to_string(),
        op: "write",
        source,
    })
}
