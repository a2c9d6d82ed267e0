//! What the binary shows while a long command runs: progress bars on a terminal (stderr) only,
//! and Ctrl-C turned into a cancellation so a partial result is still reported.

use std::io::IsTerminal;

use tokio_util::sync::CancellationToken;

use broker_ops::sla;

/// The smoke's progress: chats done, failed, running P95.
pub struct Chats {
    bar: Option<(tokio::sync::watch::Sender<sla::Progress>, tokio::task::JoinHandle<()>)>,
}

impl Chats {
    /// A bar on a terminal; off one (CI, cron), a plain line every [`EVERY`], so a long run is
    /// never silent.
    pub fn start(planned: usize) -> Chats {
        let (tx, mut rx) = tokio::sync::watch::channel(sla::Progress::default());
        if !std::io::stderr().is_terminal() {
            let started = std::time::Instant::now();
            let task = tokio::spawn(async move {
                let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + EVERY, EVERY);
                loop {
                    tokio::select! {
                        changed = rx.changed() => if changed.is_err() { break },
                        _ = tick.tick() => {
                            let p = *rx.borrow();
                            eprintln!(
                                "sla smoke: {}/{planned} chats done, {} failed, p95 {:.0}ms, {}s elapsed",
                                p.done, p.failed, p.p95_ms, started.elapsed().as_secs()
                            );
                        }
                    }
                }
            });
            return Chats { bar: Some((tx, task)) };
        }
        let bar = indicatif::ProgressBar::new(planned as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} chats {msg} [{elapsed_precise}, ETA {eta}]")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let task = tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                let p = *rx.borrow();
                bar.set_position(p.done as u64);
                bar.set_message(format!("{} failed, p95 {:.0}ms", p.failed, p.p95_ms));
            }
            bar.finish_and_clear();
        });
        Chats { bar: Some((tx, task)) }
    }

    pub fn sender(&self) -> Option<tokio::sync::watch::Sender<sla::Progress>> {
        self.bar.as_ref().map(|(tx, _)| tx.clone())
    }

    pub async fn finish(self) {
        if let Some((tx, task)) = self.bar {
            drop(tx);
            let _ = task.await;
        }
    }
}

/// How often a long wait says it is still waiting when stderr is not a terminal.
pub const EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// While `what` runs: a spinner on a terminal, else a line every [`EVERY`] saying it is still
/// waiting and for how long each request may take. Stops when dropped.
pub struct Waiting(Option<tokio::task::JoinHandle<()>>, Option<indicatif::ProgressBar>);

impl Waiting {
    pub fn start(what: &'static str, per_request: std::time::Duration) -> Waiting {
        if std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new_spinner().with_message(format!("{what}…"));
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            return Waiting(None, Some(bar));
        }
        let started = std::time::Instant::now();
        let limit = broker_ops::duration::format_duration(per_request);
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + EVERY, EVERY);
            loop {
                tick.tick().await;
                eprintln!(
                    "{what}: still waiting after {}s (each request may take up to {limit}, BROKER_OPS_TIMEOUT)",
                    started.elapsed().as_secs()
                );
            }
        });
        Waiting(Some(task), None)
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Some(t) = self.0.take() {
            t.abort();
        }
        if let Some(b) = self.1.take() {
            b.finish_and_clear();
        }
    }
}

/// A bar of `total` events, `done` already (a resumed replay); hidden off a terminal.
pub fn events(total: u64, done: u64) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    // The template is a constant known to parse.
    let style = indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} events  {per_sec}  ETA {eta}")
        .expect("constant progress template");
    bar.set_style(style);
    bar.set_position(done);
    bar
}

/// Cancels on Ctrl-C or SIGTERM, so that the partial result is still reported.
pub fn cancel_on_ctrl_c() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        wait_for_shutdown().await;
        eprintln!("interrupted: finishing with the partial result");
        t.cancel();
    });
    token
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn wait_for_shutdown() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
