//! How a command ends, and the one policy that turns that into an exit code.
//!
//! A command returns an [`Outcome`] or an error; an error says what kind it is through
//! [`Classified`] (the binary asks each cause in the chain). [`code`] maps both to the code, under
//! one of two conventions (see docs/exit-codes.md):
//! - ordinary commands: 0 OK, 1 the check ran and failed (or the change was not confirmed, or
//!   lost to a concurrent one), 2 usage error, 3 could not run;
//! - probe commands (`ably health`, `ably backlog`, `mirror canary`, `monitor`) follow the
//!   monitoring-plugins convention: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (usage errors included).

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
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

/// How a command that ran to its end came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything asked for was done and every check passed (or nothing needed doing).
    Done,
    /// The command ran and what it checked failed: an SLA breach, an invalid token, a notice
    /// left waiting, a gate that did not pass.
    Failed,
    /// A probe's verdict.
    Probe(ProbeState),
    /// The command ran to its end and reported that what it needs cannot be reached (`doctor`
    /// with anything red): it said why in its report, and exits as one that could not run.
    CouldNotRun,
}

impl Outcome {
    /// `Done` when the check passed, else `Failed`.
    pub fn passed(ok: bool) -> Outcome {
        if ok { Outcome::Done } else { Outcome::Failed }
    }
}

/// What kind of error ended a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The command line or an argument was wrong; nothing was done.
    Usage,
    /// A change needed a yes (`--yes`, or a terminal to ask on) and did not get one; nothing was done.
    NotConfirmed,
    /// Someone else changed what this command was changing since it was read; nothing was done.
    Conflict,
    /// What was asked is already in force; nothing was written. Said as a plain line, not an error.
    NothingToChange,
    /// Configuration, a dependency or our own environment stopped it.
    CouldNotRun,
}

/// An error that knows its kind. Library errors implement it; the binary asks every cause of an
/// error in turn, and an error no cause classifies could not run.
pub trait Classified {
    fn kind(&self) -> ErrorKind;
}

/// Bad input found by the library (a window that ends before it starts, a rules file refused).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

impl Classified for UsageError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Usage
    }
}

/// A change that was not confirmed: `what` is the change as it was shown.
#[derive(Debug, thiserror::Error)]
#[error("not confirmed: {what}: pass --yes (no terminal to ask on)")]
pub struct NotConfirmed {
    pub what: String,
}

impl Classified for NotConfirmed {
    fn kind(&self) -> ErrorKind {
        ErrorKind::NotConfirmed
    }
}

/// Which exit-code convention a command follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Convention {
    Ordinary,
    /// The monitoring-plugins convention: a usage error is UNKNOWN.
    Probe,
}

/// The exit code: the one place outcomes and errors become codes (the table in
/// docs/exit-codes.md, held to the binary by a test).
pub fn code(ended: Result<Outcome, ErrorKind>, convention: Convention) -> i32 {
    let probe = convention == Convention::Probe;
    match ended {
        Ok(Outcome::Done) | Err(ErrorKind::NothingToChange) => Exit::Ok.code(),
        Ok(Outcome::Failed) | Err(ErrorKind::NotConfirmed | ErrorKind::Conflict) => Exit::Failed.code(),
        Ok(Outcome::Probe(state)) => state.code(),
        Err(ErrorKind::Usage) if probe => ProbeState::Unknown.code(),
        Err(ErrorKind::Usage) => Exit::Usage.code(),
        Ok(Outcome::CouldNotRun) | Err(ErrorKind::CouldNotRun) if probe => ProbeState::Unknown.code(),
        Ok(Outcome::CouldNotRun) | Err(ErrorKind::CouldNotRun) => Exit::CouldNotRun.code(),
    }
}

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

    /// The policy, whole: every outcome and every kind of error under both conventions.
    #[test]
    fn one_table_for_every_command() {
        use Convention::*;
        use ErrorKind::*;
        let table: &[(Result<Outcome, ErrorKind>, i32, i32)] = &[
            (Ok(Outcome::Done), 0, 0),
            (Err(NothingToChange), 0, 0),
            (Ok(Outcome::Failed), 1, 1),
            (Err(NotConfirmed), 1, 1),
            (Err(Conflict), 1, 1),
            (Err(Usage), 2, 3),
            (Err(CouldNotRun), 3, 3),
            (Ok(Outcome::CouldNotRun), 3, 3),
            (Ok(Outcome::Probe(ProbeState::Ok)), 0, 0),
            (Ok(Outcome::Probe(ProbeState::Warning)), 1, 1),
            (Ok(Outcome::Probe(ProbeState::Critical)), 2, 2),
            (Ok(Outcome::Probe(ProbeState::Unknown)), 3, 3),
        ];
        for (ended, ordinary, probe) in table {
            assert_eq!(code(*ended, Ordinary), *ordinary, "{ended:?}");
            assert_eq!(code(*ended, Probe), *probe, "{ended:?} in a probe");
        }
    }
}
