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
    pub fn start(planned: usize) -> Chats {
        if !std::io::stderr().is_terminal() {
            return Chats { bar: None };
        }
        let (tx, mut rx) = tokio::sync::watch::channel(sla::Progress::default());
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
