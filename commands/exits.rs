//! How the binary ends: which commands are probes (whose usage errors exit UNKNOWN), which
//! formats each renders, what kind of error ended it (asked of the library's errors), an error
//! written as one line with each cause once, and a closed pipe that is not an error. The codes
//! themselves are `broker_ops::exit::code`'s.

use std::ffi::OsString;

use clap::CommandFactory;

use broker_ops::alert::AlertError;
use broker_ops::alert::silence::SilenceError;
use broker_ops::analytics::ReportError;
use broker_ops::exit::{Classified, ErrorKind, NotConfirmed, UsageError};
use broker_ops::output::{self, Format};
use broker_ops::probe::health::ProbeError;
use broker_ops::replay::open::OpenError;
use broker_ops::rollout::RolloutError;

use crate::cli::Cli;

/// Probe commands exit UNKNOWN (3) on usage errors, as monitoring plugins do. The words of
/// argv are walked through the real command tree, skipping the values of options that take one
/// (`-o nagios ably health --warn x` is `ably health`).
pub fn is_probe(argv: &[OsString]) -> bool {
    let path = subcommand_path(argv);
    let words: Vec<&str> = path.iter().map(String::as_str).collect();
    matches!(
        words.as_slice(),
        ["monitor", ..] | ["ably", "health" | "backlog", ..] | ["mirror", "canary", ..] | ["rollout", "observe", ..]
    )
}

/// The output formats a command can render. Checked before the command runs, so that a format
/// it cannot render is a usage error that changes nothing (a rollback must not switch the flag
/// off and then fail to say so).
pub fn formats(argv: &[OsString]) -> &'static [Format] {
    const ALL: &[Format] = &[Format::Table, Format::Json, Format::Ndjson, Format::Nagios, Format::Prometheus];
    const DOCS: &[Format] = &[Format::Table, Format::Json, Format::Ndjson];
    const REPORT: &[Format] = &[Format::Table, Format::Json, Format::Ndjson, Format::Prometheus];
    let path = subcommand_path(argv);
    let words: Vec<&str> = path.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["monitor", "rules", ..] => DOCS,
        // A list of failed jobs is not a probe's verdict.
        ["ably", "backlog", ..] if has(argv, "--failed") => DOCS,
        ["sla", "report", ..] => REPORT,
        // One verdict a line, as it reads them.
        ["token", "verify", ..] if has(argv, "--batch") => &[Format::Table, Format::Ndjson],
        _ if is_probe(argv) => ALL,
        _ => DOCS,
    }
}

/// Whether the long flag `name` is given (alone or as `name=value`).
fn has(argv: &[OsString], name: &str) -> bool {
    argv.iter().any(|a| a == name || a.to_string_lossy().strip_prefix(name).is_some_and(|r| r.starts_with('=')))
}

fn subcommand_path(argv: &[OsString]) -> Vec<String> {
    let mut root = Cli::command();
    root.build();
    let mut cur = &root;
    let mut path = Vec::new();
    let mut words = argv.iter().skip(1).filter_map(|a| a.to_str());
    let takes = |cmd: &clap::Command, hit: &dyn Fn(&clap::Arg) -> bool| {
        cmd.get_arguments().any(|a| hit(a) && a.get_action().takes_values())
    };
    while let Some(w) = words.next() {
        if w == "--" {
            break;
        }
        if let Some(long) = w.strip_prefix("--") {
            if !long.contains('=') && takes(cur, &|a| a.get_long() == Some(long)) {
                words.next();
            }
        } else if let Some(short) = w.strip_prefix('-').filter(|s| !s.is_empty()) {
            let mut chars = short.chars();
            let first = chars.next();
            if chars.next().is_none() && takes(cur, &|a| a.get_short() == first) {
                words.next();
            }
        } else if let Some(sub) = cur.find_subcommand(w) {
            path.push(sub.get_name().to_string());
            cur = sub;
        }
    }
    path
}

/// What kind of error this is: the first cause in the chain that knows (a library error that
/// implements `Classified`); an error none classifies could not run.
pub fn kind_of(e: &anyhow::Error) -> ErrorKind {
    e.chain().find_map(classified).unwrap_or(ErrorKind::CouldNotRun)
}

fn classified(cause: &(dyn std::error::Error + 'static)) -> Option<ErrorKind> {
    macro_rules! first_of {
        ($($t:ty),+) => {{
            $(if let Some(e) = cause.downcast_ref::<$t>() {
                return Some(Classified::kind(e));
            })+
            None
        }};
    }
    first_of!(UsageError, NotConfirmed, RolloutError, OpenError, ProbeError, ReportError, AlertError, SilenceError)
}

/// The error and its causes on one line, each cause once: an error whose message already quotes
/// its cause (as most here do, to name the dependency and address) does not repeat it.
pub fn error_text(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || c.downcast_ref::<output::OutputError>().is_some_and(
                |o| matches!(o, output::OutputError::Io(io) if io.kind() == std::io::ErrorKind::BrokenPipe),
            )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<OsString> {
        std::iter::once("broker-ops").chain(words.iter().copied()).map(OsString::from).collect()
    }

    #[test]
    fn probes_are_found_past_flags_and_their_values() {
        assert!(is_probe(&argv(&["-o", "nagios", "ably", "health", "--warn", "x"])));
        assert!(is_probe(&argv(&["--config", "ably", "ably", "backlog"])));
        assert!(is_probe(&argv(&["--timeout=2s", "ably", "health"])));
        assert!(is_probe(&argv(&["mirror", "canary", "--wait", "5s"])));
        assert!(!is_probe(&argv(&["mirror", "webhook-test", "http://x"])), "webhook-test is a test, not a probe");
        assert!(!is_probe(&argv(&["-o", "json", "doctor"])));
        assert!(!is_probe(&argv(&["--config", "ably", "doctor"])), "the value of --config is not a command");
    }

    #[test]
    fn causes_already_quoted_are_not_repeated() {
        let inner = anyhow::anyhow!("connection refused");
        let e = inner.context("Redis connect at redis://h: connection refused").context("replay stopped");
        assert_eq!(error_text(&e), "replay stopped: Redis connect at redis://h: connection refused");
    }

    #[test]
    fn probes_render_every_format_and_actions_only_documents() {
        assert!(formats(&argv(&["-o", "nagios", "ably", "health"])).contains(&Format::Nagios));
        assert!(formats(&argv(&["monitor", "--watch", "5s"])).contains(&Format::Prometheus));
        let rollback = argv(&["-o", "nagios", "rollout", "rollback", "--reason", "x", "--yes"]);
        assert!(!formats(&rollback).contains(&Format::Nagios));
        assert!(!formats(&argv(&["monitor", "rules"])).contains(&Format::Nagios));
        assert!(formats(&argv(&["sla", "report"])).contains(&Format::Prometheus));
        assert!(!formats(&argv(&["sla", "report"])).contains(&Format::Nagios));
    }
}
