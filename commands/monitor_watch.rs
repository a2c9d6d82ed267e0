//! `monitor --watch`: sweeps on a timer, redrawn in place on a terminal (q or Ctrl-C quits),
//! plain lines otherwise. The view only reads: no alert, no lock, no rule state.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use broker_ops::exit::Outcome;
use broker_ops::monitor::sweep::{self, SweepRequest};
use broker_ops::monitor::watch::{History, plain_lines};

use crate::Ctx;

pub async fn run(req: &SweepRequest, every: Duration, ctx: &Ctx) -> anyhow::Result<Outcome> {
    let every_text = broker_ops::duration::format_duration(every);
    let screen = if std::io::stdout().is_terminal() { Some(Screen::enter()?) } else { None };
    let quit = match &screen {
        Some(_) => keys(),
        None => {
            let (tx, rx) = tokio::sync::mpsc::channel(1);
            tokio::spawn(async move {
                crate::wait_for_shutdown().await;
                let _ = tx.send(()).await;
            });
            rx
        }
    };
    let result = sweep_loop(req, every, &every_text, screen.is_some(), quit, ctx).await;
    drop(screen);
    result
}

async fn sweep_loop(
    req: &SweepRequest,
    every: Duration,
    every_text: &str,
    redraw: bool,
    mut quit: tokio::sync::mpsc::Receiver<()>,
    ctx: &Ctx,
) -> anyhow::Result<Outcome> {
    let mut history = History::default();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = quit.recv() => return Ok(Outcome::Done),
            _ = tick.tick() => {}
        }
        if redraw {
            draw(&history.frame(every_text, chrono::Utc::now(), ctx.style))?;
        }
        let at = chrono::Utc::now();
        let started = std::time::Instant::now();
        let probes = tokio::select! {
            _ = quit.recv() => return Ok(Outcome::Done),
            p = sweep::sweep_alone(&ctx.config, req) => p,
        };
        history.add(&probes, at, started.elapsed().as_secs_f64() * 1000.0);
        if redraw {
            draw(&history.frame(every_text, chrono::Utc::now(), ctx.style))?;
        } else {
            let mut out = std::io::stdout().lock();
            for line in plain_lines(&probes, at) {
                writeln!(out, "{line}")?;
            }
            out.flush()?;
        }
    }
}

/// The frame drawn from the top left, in place (raw mode needs \r\n).
fn draw(frame: &str) -> anyhow::Result<()> {
    use crossterm::{
        cursor::MoveTo,
        execute,
        terminal::{Clear, ClearType},
    };
    let mut out = std::io::stdout().lock();
    execute!(out, MoveTo(0, 0), Clear(ClearType::All))?;
    for line in frame.lines() {
        write!(out, "{line}\r\n")?;
    }
    out.flush()?;
    Ok(())
}

/// q, Esc or Ctrl-C (a key in raw mode, not a signal), read on a thread of its own.
fn keys() -> tokio::sync::mpsc::Receiver<()> {
    use crossterm::event::{self, Event, KeyCode, KeyModifiers};
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    std::thread::spawn(move || {
        loop {
            if tx.is_closed() {
                return;
            }
            if !event::poll(Duration::from_millis(200)).unwrap_or(false) {
                continue;
            }
            if let Ok(Event::Key(k)) = event::read() {
                let ctrl_c = k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL);
                if matches!(k.code, KeyCode::Char('q') | KeyCode::Esc) || ctrl_c {
                    let _ = tx.blocking_send(());
                    return;
                }
            }
        }
    });
    rx
}

/// The terminal in raw mode on the alternate screen, restored on every way out.
struct Screen;

impl Screen {
    fn enter() -> anyhow::Result<Screen> {
        use crossterm::{cursor::Hide, execute, terminal::EnterAlternateScreen};
        crossterm::terminal::enable_raw_mode()?;
        execute!(std::io::stdout(), EnterAlternateScreen, Hide)?;
        Ok(Screen)
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        use crossterm::{cursor::Show, execute, terminal::LeaveAlternateScreen};
        let _ = execute!(std::io::stdout(), LeaveAlternateScreen, Show);
        let _ = crossterm::terminal::disable_raw_mode();
    }
}
