//! `broker-ops monitor`: one sweep over every probe (each under its own time-out), rules that
//! turn check results into alerts after `for` failing sweeps and resolve them after `recover`
//! passing ones, one grouped alert per severity through the alert capability, and a lock so
//! that overlapping cron runs do not both act.
//!
//! - [`rules`]: the rules file and conditions;
//! - [`machine`]: the for/recover state machine;
//! - [`sweep`]: the probes at once, each timed;
//! - [`engine`]: verdicts, rule results and grouped alerts (no input or output);
//! - [`run`]: a cron run (lock, state, sweep, alerts);
//! - [`report`]: every output format, and the textfile;
//! - [`ping`]: the dead-man's switch;
//! - [`watch`]: the live view's history and frame;
//! - [`history`]: the cron runs' recent sweeps, kept with the rule states;
//! - [`status`]: the status page (`--status-page`).

pub mod engine;
pub mod history;
pub mod machine;
pub mod once;
pub mod ping;
pub mod report;
pub mod rules;
pub mod silences;
pub mod status;
pub mod sweep;
pub mod watch;

pub use machine::{RuleState, Transition};
pub use once::{MonitorError, MonitorReport, MonitorRequest, Ran};
pub use rules::{Eval, Probe, Rule, RuleSet, RulesError, Severity};
