//! The command line: global flags and the command tree. Nothing here does work.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use broker_ops::output::Format;

#[derive(Debug, Parser)]
#[command(
    name = "broker-ops",
    version,
    about = "Operate an AI-assisted customer chat: Ably, Chatwoot, BullMQ, Redis and Postgres",
    long_about = "Operate an AI-assisted customer chat: Ably, Chatwoot, BullMQ, Redis and Postgres.\n\n\
        Settings come from flags, then the environment (NAME or NAME_FILE for secrets), then the \
        config file (--config, BROKER_OPS_CONFIG or ./broker-ops.toml). No flag takes a secret.",
    after_help = "Exit codes: 0 OK, 1 check failed, 2 usage error, 3 could not run. \
        Probe commands use 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN. See docs/exit-codes.md."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Output format.
    #[arg(short, long, global = true, value_enum, default_value = "table")]
    pub output: Format,
    /// Config file (TOML; keys are the variable names in lower case).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// More log output on stderr (-v info, -vv debug, -vvv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Time-out of each network call (e.g. 500ms, 5s).
    #[arg(long, global = true, value_name = "DUR")]
    pub timeout: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Local stand-in for Chatwoot + Ably + the AI worker (demo, tests, drills).
    Sandbox(Box<crate::sandbox::SandboxArgs>),
    /// Probes for on-call and cron: health, backlog (exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN).
    Ably {
        #[command(subcommand)]
        command: crate::ably::AblyCommand,
    },
    /// The Ably webhook -> Redis -> Postgres mirror, end to end: canary, webhook-test (the route's
    /// signature checks).
    Mirror {
        #[command(subcommand)]
        command: crate::mirror::MirrorCommand,
    },
    /// One cron-ready sweep of every probe: rules (`monitor rules` lists them), grouped alerts, a
    /// lock, metrics (exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN).
    Monitor(Box<crate::monitor::MonitorArgs>),
    /// The ENABLE_ABLY_REALTIME rollout: status, which, set, override, history, rollback, advance, export, observe.
    Rollout {
        /// Who makes the change, for the audit (default BROKER_OPS_ACTOR, else $USER@host): name
        /// the person or the pipeline when it runs from cron, CI or Kubernetes.
        #[arg(long, global = true, value_name = "NAME", value_parser = crate::rollout::parse_actor)]
        by: Option<String>,
        #[command(subcommand)]
        command: crate::rollout::RolloutCommand,
    },
    /// The SLA: smoke (chats end to end), report (what customers had), merge (several runs).
    Sla {
        #[command(subcommand)]
        command: crate::sla::SlaCommand,
    },
    /// Mirrored events: replay them as a timeline, re-published to Ably, or backfilled into the
    /// other mirror.
    Events {
        #[command(subcommand)]
        command: crate::events::EventsCommand,
    },
    /// Alerts to Slack and email: send, test, outbox, flush; once per incident, reminders,
    /// resolved notices; ack, silence, silences, unsilence, history for on-call.
    Alert {
        #[command(subcommand)]
        command: crate::alert::AlertCommand,
    },
    /// Resume tokens: issue, verify, inspect, revoke, revoked; resume-test checks the app's resume route.
    Token {
        #[command(subcommand)]
        command: crate::token::TokenCommand,
    },
    /// Check configuration, reach every configured dependency, and check the contracts
    /// (channel, event, key and table names) against what the stores really hold.
    Doctor,
    /// The Postgres tables: migrate creates them, only when asked.
    Db {
        #[command(subcommand)]
        command: crate::db::DbCommand,
    },
    /// Print shell completions.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff).
    Man,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn verify_cli() {
        super::Cli::command().debug_assert();
    }
}
