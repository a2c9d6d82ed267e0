//! Why the alert state (incidents, outbox, locks) could not be read or written: shared by the
//! store and its locks, below both.

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("alert state: redis {addr}: {op}: {source}")]
    Redis { addr: String, op: &'static str, source: redis::RedisError },
    #[error("alert state: {path}: {op}: {source}")]
    Dir { path: String, op: &'static str, source: std::io::Error },
    #[error("alert state: {place}: entry {entry} is not valid: {reason}")]
    Corrupt { place: String, entry: String, reason: String },
    #[error("alert state: {place}: another run held the lock for more than {}s", waited.as_secs())]
    Locked { place: String, waited: std::time::Duration },
}
