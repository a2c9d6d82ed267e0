//! `broker-ops rollout`: arguments in, one library call (a change is one workflow: read, show
//! and confirm, apply, and for a rollback its notice and verify), the report rendered.

use std::io::{BufRead, Read};

use broker_ops::config::sla::Sla;
use broker_ops::exit::Outcome;
use broker_ops::rollout::advance::AdvanceRequest;
use broker_ops::rollout::ops::{self, OverrideTo};
use broker_ops::rollout::staging::StagingRequest;
use broker_ops::rollout::workflow::{self, OverrideRequest};
use broker_ops::rollout::{self, Actor, RolloutError};

use crate::Ctx;
pub use crate::rollout_args::*;

pub async fn run(cmd: RolloutCommand, by: Option<String>, ctx: &Ctx) -> anyhow::Result<Outcome> {
    let c = &ctx.config;
    let actor = Actor::resolve(c, by.as_deref(), ctx.command_line());
    if let Some(note) = rollout::switch::kill_switch_note(c) {
        eprintln!("{note}");
    }
    match cmd {
        RolloutCommand::Status(a) => ctx.render(&ops::status(c, &a.flag.flag, a.active_window).await?)?,
        RolloutCommand::Which(a) => ctx.render(&ops::which(c, &a.flag.flag, ids(a.conversations)?).await?)?,
        RolloutCommand::History(a) => ctx.render(&ops::history(c, &a.flag.flag, a.limit).await?)?,
        RolloutCommand::Observe(a) => {
            let req = a.observe.request(&a.flag.flag);
            let report = rollout::observe::observe(c, &req).await?;
            ctx.render(&report)?;
            return Ok(Outcome::Probe(report.state()));
        }
        RolloutCommand::Export(a) => {
            ctx.render(&rollout::export::unleash(c, &a.flag.flag, &a.project, &a.environment).await?)?
        }
        RolloutCommand::Set(a) => {
            let mut ask = asker(a.change.yes);
            let (flag, reason) = (&a.flag.flag, &a.change.reason);
            ctx.render(&workflow::set(c, flag, a.percent, a.create, reason, &actor, &mut ask).await?)?
        }
        RolloutCommand::Rollback(a) => {
            let mut ask = asker(a.change.yes);
            let (flag, reason) = (&a.flag.flag, &a.change.reason);
            let report = workflow::rollback(c, flag, reason, a.verify.then_some(a.converge), &actor, &mut ask).await?;
            ctx.render(&report)?;
            return Ok(Outcome::passed(report.passed()));
        }
        RolloutCommand::Override(a) => {
            let to = match a.to {
                OverrideValue::On => OverrideTo::On,
                OverrideValue::Off => OverrideTo::Off,
                OverrideValue::Clear => OverrideTo::Clear,
            };
            let req = OverrideRequest {
                flag: &a.flag.flag,
                conversation: &a.conversation,
                to,
                duration: a.for_,
                reason: &a.change.reason,
            };
            let done = workflow::override_one(c, req, &actor, &mut asker(a.change.yes)).await?;
            eprintln!("before: {}", rollout::render_why(&done.before));
            let off =
                if done.flag_enabled { "" } else { "; the flag is off, so it decides nothing until the flag is on" };
            eprintln!("saved: {} (audited){off}", done.what);
            ctx.render(&done.which)?;
        }
        RolloutCommand::Advance(a) => return advance(a, actor, ctx).await,
    }
    Ok(Outcome::Done)
}

/// Confirms with `--yes`, else by asking on the terminal (no terminal: no).
fn asker(yes: bool) -> impl FnMut(&str) -> std::io::Result<bool> + Send {
    move |what: &str| if yes { Ok(true) } else { crate::confirmed(what) }
}

async fn advance(a: AdvanceArgs, actor: Actor, ctx: &Ctx) -> anyhow::Result<Outcome> {
    let sla = &ctx.config.sla;
    let slo = Sla::or_flag(&sla.slo, "--slo", a.slo);
    let min_replies = Sla::or_flag(&sla.min_replies, "--min-replies", a.min_replies);
    eprintln!(
        "gates from the SLA: P95 within {} ({}), at least {} replies ({})",
        broker_ops::duration::format_duration(slo.value),
        slo.source,
        min_replies.value,
        min_replies.source
    );
    let req = AdvanceRequest {
        flag: a.flag.flag.clone(),
        steps: rollout::steps(&a.steps)?,
        min_soak: a.min_soak,
        window: a.window,
        slo: slo.value,
        max_regression: a.max_regression,
        min_replies: min_replies.value,
        smoke: a.smoke,
        observe: a.observe.request(&a.flag.flag),
        staging: StagingRequest { report: a.staging_report, min_soak: a.min_staging_soak, max_age: a.max_staging_age },
        waive: a.waive.into_iter().map(Into::into).collect(),
        waive_reason: a.reason,
    };
    let report = workflow::advance(&ctx.config, &req, a.dry_run, &actor, &mut asker(a.yes)).await?;
    ctx.render(&report)?;
    Ok(Outcome::passed(report.passed()))
}

/// The ids given, with `-` replaced by stdin's lines.
fn ids(given: Vec<String>) -> Result<Vec<String>, RolloutError> {
    let mut out = Vec::with_capacity(given.len());
    for id in given {
        if id == "-" {
            read_ids(&mut std::io::stdin().lock(), &mut out)?;
        } else {
            out.push(rollout::conversation_id(&id).map_err(RolloutError::Usage)?);
        }
    }
    Ok(out)
}

/// One id a line; a line is read at most an id's length (and its line end) at a time, so a
/// file without line ends cannot fill memory.
fn read_ids(input: &mut impl BufRead, out: &mut Vec<String>) -> Result<(), RolloutError> {
    let cap = rollout::MAX_CONVERSATION_ID as u64 + 2;
    let mut line = Vec::new();
    for n in 1.. {
        line.clear();
        let read = input
            .take(cap)
            .read_until(b'\n', &mut line)
            .map_err(|e| RolloutError::Usage(format!("reading conversation ids from stdin: {e}")))?;
        if read == 0 {
            return Ok(());
        }
        if !line.ends_with(b"\n") && read as u64 == cap {
            return Err(RolloutError::Usage(format!("stdin line {n}: longer than a conversation id can be")));
        }
        let text = String::from_utf8_lossy(&line);
        let t = text.trim();
        if !t.is_empty() {
            out.push(rollout::conversation_id(t).map_err(|e| RolloutError::Usage(format!("stdin line {n}: {e}")))?);
        }
    }
    Ok(())
}
