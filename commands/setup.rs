//! The process around the commands: the allocator's purge, logging on stderr, the width tables
//! must fit.

use std::collections::HashMap;
use std::io::IsTerminal;

unsafe extern "C" {
    /// mimalloc's runtime options (`mimalloc.h`; the library is linked by the `mimalloc` crate).
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
}

/// `mi_option_purge_delay` in mimalloc 3's option enum.
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

/// mimalloc keeps freed pages for 10 ms and, in arenas it committed eagerly (the default on
/// Linux), often longer: a Redis backfill held 58-66 MiB where the same pages read to NDJSON
/// held 34 MiB. Returning them at once held it to about 40 MiB at the same speed
/// (docs/performance.md). The option is read at each purge, so setting it here is in time.
pub fn purge_at_once() {
    // SAFETY: a documented mimalloc option set to a documented value; no memory is touched.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
}

pub fn init_logging(verbose: u8, quiet: bool, env: &HashMap<String, String>) {
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
        // The TLS libraries' own lines (a refused certificate, logged by the platform verifier as
        // an ERROR) stay out of the default output: the error that ends the command says it in
        // one line, in words. `-vv` shows them.
        .unwrap_or_else(|| {
            let quiet_tls = if verbose >= 2 { "" } else { ",rustls=off,rustls_platform_verifier=off" };
            tracing_subscriber::EnvFilter::new(format!("{level}{quiet_tls}"))
        });
    let color = std::io::stderr().is_terminal() && !env.contains_key("NO_COLOR");
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(color).init();
}

/// The width tables must fit: `COLUMNS` when set (as shells and `less` set it), else the
/// terminal's when stdout is one; none for a pipe or a file, which keep whole lines.
pub fn table_width(env: &HashMap<String, String>) -> Option<u16> {
    let columns = env.get("COLUMNS").and_then(|c| c.trim().parse::<u16>().ok()).filter(|w| *w >= 20);
    columns
        .or_else(|| std::io::stdout().is_terminal().then(|| crossterm::terminal::size().ok().map(|(w, _)| w)).flatten())
}
