//! The `broker-ops` binary: runtime, logging, argument parsing, dispatch, and the one place
//! where errors become exit codes. Each command lives in its own file and makes one library call.

mod ably;
mod alert;
mod cli;
mod db;
mod doctor;
mod events;
mod progress;
mod sandbox;
mod sla;
mod token;

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{IsTerminal, Write};

use clap::{CommandFactory, Parser};

use broker_ops::config::{Config, Layers};
use broker_ops::exit::{Exit, PROBE_USAGE};
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
        let mut out = std::io::stdout().lock();
        output::write(r, self.format, self.style, &mut out)?;
        out.flush()?;
        Ok(())
    }
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

/// Probe commands exit UNKNOWN (3) on usage errors, as monitoring plugins do. The words of
/// argv are walked through the real command tree, skipping the values of options that take one
/// (`-o nagios ably health --warn x` is `ably health`).
fn is_probe(argv: &[OsString]) -> bool {
    let path = subcommand_path(argv);
    let words: Vec<&str> = path.iter().map(String::as_str).collect();
    matches!(words.as_slice(), ["monitor", ..] | ["ably", "health" | "backlog", ..])
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

fn init_logging(verbose: u8, quiet: bool, env: &HashMap<String, String>) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        _ => "trace",
    };
    let filter = env
        .get("BROKER_OPS_LOG")
        .and_then(|f| tracing_subscriber::EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new(level));
    let color = std::io::stderr().is_terminal() && !env.contains_key("NO_COLOR");
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(color).init();
}

pub use progress::{cancel_on_ctrl_c, wait_for_shutdown};

async fn dispatch(cli: Cli, env: HashMap<String, String>, argv: Vec<String>) -> anyhow::Result<i32> {
    let mut out = std::io::stdout().lock();
    match &cli.command {
        Command::Completions { shell } => {
            clap_complete::generate(*shell, &mut Cli::command(), "broker-ops", &mut out);
            return Ok(Exit::Ok.code());
        }
        Command::Man => {
            clap_mangen::Man::new(Cli::command()).render(&mut out)?;
            return Ok(Exit::Ok.code());
        }
        _ => {}
    }
    drop(out);
    let mut layers = Layers::new(env.clone(), cli.global.config.as_deref())?;
    layers.flag("BROKER_OPS_TIMEOUT", "--timeout", cli.global.timeout.clone());
    let config = Config::resolve(layers)?;
    let style = Style { color: std::io::stdout().is_terminal() && !env.contains_key("NO_COLOR") };
    let ctx = Ctx { config, format: cli.global.output, style, argv };
    match cli.command {
        Command::Sandbox(args) => sandbox::run(*args, &ctx).await,
        Command::Doctor => doctor::run(&ctx).await,
        Command::Db { command } => db::run(command, &ctx).await,
        Command::Events { command } => events::run(command, &ctx).await,
        Command::Ably { command } => ably::run(command, &ctx).await,
        Command::Alert { command } => alert::run(command, &ctx).await,
        Command::Sla { command } => sla::run(command, &ctx).await,
        Command::Token { command } => token::run(command, &ctx).await,
        Command::Completions { .. } | Command::Man => unreachable!("handled above"),
    }
}

/// The error and its causes on one line, each cause once: an error whose message already quotes
/// its cause (as most here do, to name the dependency and address) does not repeat it.
fn error_text(e: &anyhow::Error) -> String {
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

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || c.downcast_ref::<output::OutputError>().is_some_and(
                |o| matches!(o, output::OutputError::Io(io) if io.kind() == std::io::ErrorKind::BrokenPipe),
            )
    })
}

fn main() -> std::process::ExitCode {
    let argv: Vec<OsString> = std::env::args_os().collect();
    let cli = match Cli::try_parse_from(&argv) {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are "errors" that print to stdout and exit 0.
            let _ = e.print();
            let code = match (e.use_stderr(), is_probe(&argv)) {
                (false, _) => 0,
                (true, true) => PROBE_USAGE,
                (true, false) => Exit::Usage.code(),
            };
            return std::process::ExitCode::from(code as u8);
        }
    };
    let env: HashMap<String, String> = std::env::vars().collect();
    init_logging(cli.global.verbose, cli.global.quiet, &env);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::from(Exit::CouldNotRun.code() as u8);
        }
    };
    let argv: Vec<String> = argv.iter().map(|a| a.to_string_lossy().into_owned()).collect();
    let code = match runtime.block_on(dispatch(cli, env, argv)) {
        Ok(code) => code,
        // A reader that went away (`| head`) is not an error worth a message, as in ripgrep.
        Err(e) if is_broken_pipe(&e) => Exit::Ok.code(),
        Err(e) => {
            eprintln!("error: {}", error_text(&e));
            Exit::CouldNotRun.code()
        }
    };
    // Background tasks (open SSE streams, pools) must not hold the process open.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    std::process::ExitCode::from(code as u8)
}
