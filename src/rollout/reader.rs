//! The flag as the web app reads it: the flag's row and the overrides in force, refreshed on an
//! interval and decided per conversation exactly as docs/rollout.md's `realtimeFor` does. The
//! sandbox's simulated customers choose their transport through it, so a rollout acts on them as
//! it acts on customers.

use std::collections::HashMap;
use std::time::Duration;

use super::bucket::{self, InForce, Reason};
use super::store::Db;
use super::{Flag, RolloutError};

/// What the app read last.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub flag: Option<Flag>,
    pub overrides: HashMap<String, InForce>,
    pub kill_switch: bool,
    /// Why the flag could not be read (the table missing, the database down): the app then
    /// falls back to the kill switch's answer, polling.
    pub unreadable: Option<String>,
}

/// Why the app put a conversation on its transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Why {
    KillSwitch,
    FlagOff,
    Override,
    Bucket,
    /// The flag could not be read: polling, as under the kill switch.
    FlagUnreadable,
    /// The app does not read the flag at all (a deployment that ignores it): real-time.
    IgnoringFlag,
}

impl From<Reason> for Why {
    fn from(r: Reason) -> Why {
        match r {
            Reason::KillSwitch => Why::KillSwitch,
            Reason::FlagOff => Why::FlagOff,
            Reason::Override => Why::Override,
            Reason::Bucket => Why::Bucket,
        }
    }
}

impl Snapshot {
    /// What the app has when the flag could not be read (`why`): the kill switch's answer.
    pub fn unreadable(kill_switch: bool, why: String) -> Snapshot {
        Snapshot { flag: None, overrides: HashMap::new(), kill_switch, unreadable: Some(why) }
    }

    /// Real-time or not for conversation `id`, and why.
    pub fn decide(&self, id: &str) -> (bool, Why) {
        if self.kill_switch {
            return (false, Why::KillSwitch);
        }
        match &self.flag {
            None => (false, Why::FlagUnreadable),
            Some(f) => {
                let d = bucket::decide(f, false, self.overrides.get(id).copied(), id);
                (d.enabled, d.reason.into())
            }
        }
    }
}

/// Reads the flag `name` and its overrides from `db` (a failure becomes an unreadable snapshot,
/// never an error: the app keeps serving).
pub async fn read(db: Option<&Db>, name: &str, kill_switch: bool) -> Snapshot {
    let unreadable =
        |why: String| Snapshot { flag: None, overrides: HashMap::new(), kill_switch, unreadable: Some(why) };
    let Some(db) = db else { return unreadable("no database configured".into()) };
    let both = async {
        let flag = db.flag(name).await?;
        let overrides = db.overrides(name, None).await?;
        Ok::<_, RolloutError>((flag, overrides))
    };
    match tokio::time::timeout(db.limit.max(Duration::from_millis(100)), both).await {
        Ok(Ok((flag, overrides))) => Snapshot { flag: Some(flag), overrides, kill_switch, unreadable: None },
        Ok(Err(e)) => unreadable(e.to_string()),
        Err(_) => unreadable(format!("reading the flag timed out ({})", db.addr)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_app_decides_as_the_rollout_does_and_falls_back_to_polling() {
        let mut f = Flag::new("ENABLE_ABLY_REALTIME");
        f.enabled = true;
        f.percent = 50;
        let s = Snapshot { flag: Some(f.clone()), overrides: HashMap::new(), kill_switch: false, unreadable: None };
        for id in ["1", "2", "3", "4711"] {
            let d = bucket::decide(&f, false, None, id);
            assert_eq!(s.decide(id), (d.enabled, Why::Bucket));
        }
        let ks = Snapshot { kill_switch: true, ..s.clone() };
        assert_eq!(ks.decide("1"), (false, Why::KillSwitch));
        let gone = Snapshot { flag: None, unreadable: Some("no table".into()), ..s };
        assert_eq!(gone.decide("1"), (false, Why::FlagUnreadable));
    }
}
