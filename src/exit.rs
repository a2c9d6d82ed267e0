//! Process exit codes: every code the binary can return is defined here and nowhere else.
//!
//! Two conventions exist side by side (see docs/exit-codes.md):
//! - ordinary commands: 0 OK, 1 the check ran and failed, 2 usage error, 3 could not run;
//! - probe commands (`ably health`, `ably backlog`) follow the monitoring-plugins
//!   convention: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (usage errors included).

use serde::Serialize;

/// Exit codes of ordinary commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Everything asked for was done and every check passed.
    Ok = 0,
    /// The check ran and failed: SLA breach, invalid token, alert not delivered.
    Failed = 1,
    /// The command line was wrong (clap's own convention).
    Usage = 2,
    /// The command could not run: bad configuration or an unreachable dependency.
    CouldNotRun = 3,
}

impl Exit {
    pub fn code(self) -> i32 {
        self as i32
    }
}

/// States of a probe, ordered so that `max` gives the worst one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ProbeState {
    Ok = 0,
    Warning = 1,
    Unknown = 2,
    Critical = 3,
}

impl ProbeState {
    /// The monitoring-plugins exit code. Note that the order of severity (UNKNOWN below
    /// CRITICAL) is not the order of the codes (CRITICAL is 2, UNKNOWN is 3).
    pub fn code(self) -> i32 {
        match self {
            ProbeState::Ok => 0,
            ProbeState::Warning => 1,
            ProbeState::Critical => 2,
            ProbeState::Unknown => 3,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            ProbeState::Ok => "OK",
            ProbeState::Warning => "WARNING",
            ProbeState::Critical => "CRITICAL",
            ProbeState::Unknown => "UNKNOWN",
        }
    }
}

/// Whose failure it was when a check could not get its value, by the monitoring-plugins
/// guidelines: a service that refuses, resets, times out, cannot be resolved or answers 5xx is
/// CRITICAL (customers are affected); UNKNOWN is only for what stopped the check on our side
/// (missing or invalid configuration, our own credentials refused, our own error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Fault {
    /// The service failed: CRITICAL.
    Service,
    /// The check could not be made: UNKNOWN.
    Ours,
}

impl Fault {
    pub fn state(self) -> ProbeState {
        match self {
            Fault::Service => ProbeState::Critical,
            Fault::Ours => ProbeState::Unknown,
        }
    }

    /// An HTTP answer: 5xx and 429 (the service refusing work) are the service's; any other
    /// 4xx means our request or credentials were refused.
    pub fn of_http_status(status: u16) -> Fault {
        if status >= 500 || status == 429 { Fault::Service } else { Fault::Ours }
    }
}

/// Usage errors of probe commands exit UNKNOWN, as monitoring plugins do.
pub const PROBE_USAGE: i32 = 3;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worst_state_wins_but_codes_follow_the_plugin_convention() {
        let worst = [ProbeState::Ok, ProbeState::Unknown, ProbeState::Critical].into_iter().max().unwrap();
        assert_eq!(worst, ProbeState::Critical);
        assert_eq!(ProbeState::Critical.code(), 2);
        assert_eq!(ProbeState::Unknown.code(), 3);
        assert_eq!(Exit::CouldNotRun.code(), 3);
        assert_eq!(Fault::of_http_status(503).state(), ProbeState::Critical);
        assert_eq!(Fault::of_http_status(429).state(), ProbeState::Critical);
        assert_eq!(Fault::of_http_status(401).state(), ProbeState::Unknown);
    }
}
