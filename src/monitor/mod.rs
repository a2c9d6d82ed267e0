//! `broker-ops monitor` (being built): one sweep over every probe, rules that turn check results
//! into alerts after `for` failing sweeps and resolve them after `recover` passing ones. This
//! module holds the rules and their state machine so far.

pub mod rules;

pub use rules::{Eval, Probe, Rule, RuleSet, RuleState, RulesError, Severity, Transition};
