//! The `broker-ops` binary: runtime, logging, argument parsing, dispatch, and the one place
//! where errors become exit codes. Each command lives in its own file and makes one library call.

mod ably;
mod alert;
mod alert_args;
mod cli;
mod db;
mod doctor;
mod events;
mod events_args;
mod exits;
mod mirror;
mod monitor;
mod monitor_watch;
mod progress;
mod rollout;
mod rollout_args;
mod sandbox;
mod setup;
mod sla;
mod sla_args;
mod sla_report;
mod soak;
mod token;

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{IsTerminal, Write};

use clap::{CommandFactory, Parser};

use broker_ops::config::{Config, Layers};
use broker_ops::exit::{self, Convention, ErrorKind, Outcome};
use broker_ops::output::{self, Format, Render, Style};

use cli::{Cli, Command};

// Token batches, smoke runs and replays allocate many small objects; mimalloc does that several
// times faster than the system allocator (see docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// What every command gets: the resolved configuration and how to render.
pub struct Ctx {
    pub config: Config,
    pub format: Format,
    pub style: Style,
    pub argv: Vec<String>,
}

impl Ctx {
    /// The command line as typed, for reports. No flag takes a secret, but a URL flag could
    /// still carry a password by mistake: those are redacted.
    pub fn command_line(&self) -> String {
        self.argv
            .iter()
            .map(|a| if a.contains("://") && a.contains('@') { broker_ops::redact::url(a) } else { a.clone() })
            .collect::<Vec<_>>()
            .join(" ")
    }

    pub fn render(&self, r: &dyn Render) -> anyhow::Result<()> {
        // Buffered: stdout is line-buffered, and a million NDJSON lines would be a million writes.
        let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock());
        output::write(r, self.format, self.style, &mut out)?;
        out.flush()?;
        Ok(())
    }
}

/// Asks `question? [y/N]` on the terminal; without one, the answer is no.
pub fn confirmed(question: &str) -> std::io::Result<bool> {
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() {
        return Ok(false);
    }
    eprint!("{question}? [y/N] ");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes"))
}

pub fn print_json(w: &mut dyn Write, doc: &serde_json::Value, format: Format) -> anyhow::Result<()> {
    if format == Format::Ndjson {
        writeln!(w, "{}", serde_json::to_string(doc)?)?;
    } else {
        writeln!(w, "{}", serde_json::to_string_pretty(doc)?)?;
    }
    w.flush()?;
    Ok(())
}

pub use progress::{cancel_on_ctrl_c, wait_for_shutdown};

async fn dispatch(cli: Cli, env: HashMap<String, String>, argv: Vec<String>) -> anyhow::Result<Outcome> {
    let mut out = std::io::stdout().lock();
    match &cli.command {
        Command::Completions { shell } => {
            clap_complete::generate(*shell, &mut Cli::command(), "broker-ops", &mut out);
            return Ok(Outcome::Done);
        }
        Command::Man => {
            clap_mangen::Man::new(Cli::command()).render(&mut out)?;
            return Ok(Outcome::Done);
        }
        _ => {}
    }
    drop(out);
    let mut layers = Layers::new(env.clone(), cli.global.config.as_deref())?;
    layers.flag("BROKER_OPS_TIMEOUT", "--timeout", cli.global.timeout.clone());
    let config = Config::resolve(layers)?;
    let style = Style { color: std::io::stdout().is_terminal() && !env.contains_key("NO_COLOR") };
    broker_ops::output::set_table_width(setup::table_width(&env));
    let mut trust = config.tls_ca_file.as_ref().map(|s| s.value.clone()).unwrap_or_default();
    trust.client = config.tls_client.as_ref().map(|s| s.value.clone());
    broker_ops::tls::install(trust);
    let ctx = Ctx { config, format: cli.global.output, style, argv };
    match cli.command {
        Command::Sandbox(args) => sandbox::run(*args, &ctx).await,
        Command::Doctor => doctor::run(&ctx).await,
        Command::Db { command } => db::run(command, &ctx).await,
        Command::Events { command } => events::run(command, &ctx).await,
        Command::Ably { command } => ably::run(command, &ctx).await,
        Command::Mirror { command } => mirror::run(command, &ctx).await,
        Command::Monitor(args) => monitor::run(*args, &ctx).await,
        Command::Rollout { by, command } => rollout::run(command, by, &ctx).await,
        Command::Alert { command } => alert::run(command, &ctx).await,
        Command::Sla { command } => sla::run(command, &ctx).await,
        Command::Token { command } => token::run(command, &ctx).await,
        Command::Completions { .. } | Command::Man => unreachable!("handled above"),
    }
}

fn main() -> std::process::ExitCode {
    setup::purge_at_once();
    let argv: Vec<OsString> = std::env::args_os().collect();
    let convention = if exits::is_probe(&argv) { Convention::Probe } else { Convention::Ordinary };
    let end = |ended: Result<Outcome, ErrorKind>| std::process::ExitCode::from(exit::code(ended, convention) as u8);
    let cli = match Cli::try_parse_from(&argv) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // --help and --version are "errors" that print to stdout and exit 0.
            return end(if e.use_stderr() { Err(ErrorKind::Usage) } else { Ok(Outcome::Done) });
        }
    };
    // Before anything runs: a format the command cannot render changes nothing.
    let formats = exits::formats(&argv);
    if !formats.contains(&cli.global.output) {
        let names: Vec<String> = formats.iter().map(|f| format!("{f:?}").to_lowercase()).collect();
        eprintln!(
            "error: -o {} is not a format this command renders (it renders: {}); nothing was done",
            format!("{:?}", cli.global.output).to_lowercase(),
            names.join(", ")
        );
        return end(Err(ErrorKind::Usage));
    }
    let env: HashMap<String, String> = std::env::vars().collect();
    setup::init_logging(cli.global.verbose, cli.global.quiet, &env);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return end(Err(ErrorKind::CouldNotRun));
        }
    };
    let argv: Vec<String> = argv.iter().map(|a| a.to_string_lossy().into_owned()).collect();
    let ended = match runtime.block_on(dispatch(cli, env, argv)) {
        Ok(outcome) => Ok(outcome),
        // A reader that went away (`| head`) is not an error worth a message, as in ripgrep.
        Err(e) if exits::is_broken_pipe(&e) => Ok(Outcome::Done),
        Err(e) => {
            let kind = exits::kind_of(&e);
            // "Nothing to change" is an answer, not an error.
            let prefix = if kind == ErrorKind::NothingToChange { "" } else { "error: " };
            eprintln!("{prefix}{}", exits::error_text(&e));
            Err(kind)
        }
    };
    // Background tasks (open SSE streams, pools) must not hold the process open.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    end(ended)
}
