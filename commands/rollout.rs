//! `broker-ops rollout`: arguments in, one library call (a change: plan, confirm, apply), the
//! result rendered. Exit 0 done, 1 a change refused (someone changed the flag since it was read,
//! or not confirmed), 2 bad input, 3 could not run.

use std::io::{BufRead, Read};
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};

use broker_ops::config::sla::{Sla, parse_share};
use broker_ops::contracts::DEFAULT_FLAG;
use broker_ops::duration::{parse_duration, parse_positive_duration};
use broker_ops::exit::Exit;
use broker_ops::rollout::advance::{self, AdvanceRequest};
use broker_ops::rollout::ops::{self, OverrideTo, Planned};
use broker_ops::rollout::{self, Actor, RolloutError};

use crate::Ctx;

#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// The flag: on/off, percentage, since when, active conversations on and off, last changes.
    Status(StatusArgs),
    /// Whether each conversation is on real-time, and why (kill switch, flag off, override, bucket).
    Which(WhichArgs),
    /// Switch the flag on at a percentage.
    Set(SetArgs),
    /// Force one conversation on or off (or clear its override), optionally for a while.
    Override(OverrideArgs),
    /// The audit: every change, who, when, from, to, why.
    History(HistoryArgs),
    /// Switch the flag off: every conversation back to polling. No gate; needs only Postgres.
    Rollback(RollbackArgs),
    /// Move to the next step of the plan, only when every gate passes (soak, replies, P95 within
    /// the SLO, no regression against polling); says which gate failed otherwise (exit 1).
    Advance(AdvanceArgs),
    /// The flag in Unleash's feature import format (percentage, group id, overrides), as JSON.
    Export(ExportArgs),
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub flag: FlagArg,
    /// Unleash's import format (the only one).
    #[arg(long, required = true)]
    pub unleash: bool,
    /// The Unleash project to import into.
    #[arg(long, default_value = "default")]
    pub project: String,
    /// The Unleash environment the flag's state goes to.
    #[arg(long, default_value = "production")]
    pub environment: String,
}

#[derive(Debug, Args)]
pub struct AdvanceArgs {
    #[command(flatten)]
    pub flag: FlagArg,
    /// The plan's percentages, increasing.
    #[arg(long, default_value = advance::DEFAULT_STEPS)]
    pub steps: String,
    /// The current step must have lasted this long (from the audit).
    #[arg(long, default_value = "24h", value_parser = parse_duration, value_name = "DUR")]
    pub min_soak: Duration,
    /// The cohorts are measured over this window, ending now.
    #[arg(long, default_value = "1h", value_parser = parse_positive_duration, value_name = "DUR")]
    pub window: Duration,
    /// The reply-time objective the real-time cohort's P95 must meet [default: the SLA's slo, 5s].
    #[arg(long, value_parser = parse_positive_duration, value_name = "DUR")]
    pub slo: Option<Duration>,
    /// How much higher the real-time cohort's breach rate may be than polling's (e.g. 1%).
    #[arg(long, default_value = "1%", value_parser = parse_share)]
    pub max_regression: f64,
    /// The real-time cohort needs at least this many replies in the window [default: the SLA's
    /// min_replies, 100].
    #[arg(long)]
    pub min_replies: Option<u64>,
    /// Also require three smoke chats on Ably (SSE) against the configured Chatwoot to pass.
    #[arg(long)]
    pub smoke: bool,
    /// Show the gates and their figures; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask (needed without a terminal).
    #[arg(long)]
    pub yes: bool,
}

/// A reason for the audit: something a reader can act on, not empty, not a page long.
fn parse_reason(s: &str) -> Result<String, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("the reason must not be empty: say why, it is kept in the audit".into());
    }
    if t.chars().count() > 1000 {
        return Err("the reason is longer than 1,000 characters".into());
    }
    if t.chars().any(char::is_control) {
        return Err("the reason must be one line without control characters".into());
    }
    Ok(t.to_string())
}

#[derive(Debug, Args, Clone)]
pub struct FlagArg {
    /// The flag.
    #[arg(long, default_value = DEFAULT_FLAG, value_parser = rollout::flag_name)]
    pub flag: String,
}

#[derive(Debug, Args, Clone)]
pub struct ChangeArgs {
    /// Why (kept in the audit; not empty, at most 1,000 characters).
    #[arg(long, value_name = "TEXT", value_parser = parse_reason)]
    pub reason: String,
    /// Do not ask (needed without a terminal).
    #[arg(long)]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub flag: FlagArg,
    /// Conversations with an event this recent count as active.
    #[arg(long, default_value = "15m", value_parser = parse_positive_duration, value_name = "DUR")]
    pub active_window: Duration,
}

#[derive(Debug, Args)]
pub struct WhichArgs {
    #[command(flatten)]
    pub flag: FlagArg,
    /// Conversation ids; `-` reads more from stdin, one a line.
    #[arg(required = true, value_name = "CONVERSATION")]
    pub conversations: Vec<String>,
}

#[derive(Debug, Args)]
pub struct SetArgs {
    #[command(flatten)]
    pub flag: FlagArg,
    /// Percentage of conversations on real-time (0 to 100).
    #[arg(long, allow_negative_numbers = true)]
    pub percent: i64,
    /// Create the flag (off at 0 %) when it does not exist.
    #[arg(long)]
    pub create: bool,
    #[command(flatten)]
    pub change: ChangeArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OverrideValue {
    On,
    Off,
    Clear,
}

#[derive(Debug, Args)]
pub struct OverrideArgs {
    #[command(flatten)]
    pub flag: FlagArg,
    #[arg(value_parser = rollout::conversation_id)]
    pub conversation: String,
    #[arg(value_enum)]
    pub to: OverrideValue,
    /// The override ends after this long (default: until cleared).
    #[arg(long = "for", value_parser = parse_positive_duration, value_name = "DUR")]
    pub for_: Option<Duration>,
    #[command(flatten)]
    pub change: ChangeArgs,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    #[command(flatten)]
    pub flag: FlagArg,
    /// How many changes, newest first.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(i64).range(1..=10_000))]
    pub limit: i64,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    #[command(flatten)]
    pub flag: FlagArg,
    /// Then run three smoke chats on the polling transport against Chatwoot: does the fallback answer?
    #[arg(long)]
    pub verify: bool,
    #[command(flatten)]
    pub change: ChangeArgs,
}

pub async fn run(cmd: RolloutCommand, by: Option<String>, ctx: &Ctx) -> anyhow::Result<i32> {
    match execute(cmd, actor(ctx, by.as_deref()), ctx).await {
        Ok(code) => Ok(code),
        Err(e) => match e.downcast::<RolloutError>() {
            Ok(r) if r.exit() == Exit::Ok => {
                eprintln!("{r}");
                Ok(r.exit().code())
            }
            Ok(r) if r.exit() != Exit::CouldNotRun => {
                eprintln!("error: {r}");
                Ok(r.exit().code())
            }
            Ok(r) => Err(r.into()),
            Err(e) => Err(e),
        },
    }
}

async fn execute(cmd: RolloutCommand, actor: Actor, ctx: &Ctx) -> anyhow::Result<i32> {
    let c = &ctx.config;
    if let Some(note) = rollout::switch::kill_switch_note(c) {
        eprintln!("{note}");
    }
    match cmd {
        RolloutCommand::Status(a) => ctx.render(&ops::status(c, &a.flag.flag, a.active_window).await?)?,
        RolloutCommand::Which(a) => ctx.render(&ops::which(c, &a.flag.flag, ids(a.conversations)?).await?)?,
        RolloutCommand::History(a) => ctx.render(&ops::history(c, &a.flag.flag, a.limit).await?)?,
        RolloutCommand::Set(a) => {
            let p = rollout::percent(a.percent)?;
            let planned = ops::plan_set(c, &a.flag.flag, p, &a.change.reason, a.create.then_some(&actor)).await?;
            return apply(planned, &a.change, &actor, ctx).await;
        }
        RolloutCommand::Advance(a) => return advance(a, actor, ctx).await,
        RolloutCommand::Export(a) => {
            let doc = rollout::export::unleash(c, &a.flag.flag, &a.project, &a.environment).await?;
            crate::print_json(&mut std::io::stdout().lock(), &doc, broker_ops::output::Format::Json)?;
        }
        RolloutCommand::Rollback(a) => return rollback(a, actor, ctx).await,
        RolloutCommand::Override(a) => {
            let to = match a.to {
                OverrideValue::On => OverrideTo::On,
                OverrideValue::Off => OverrideTo::Off,
                OverrideValue::Clear => OverrideTo::Clear,
            };
            let what =
                format!("override {} of conversation {} -> {:?}", a.flag.flag, a.conversation, a.to).to_lowercase();
            if !a.change.yes && !crate::confirmed(&what)? {
                eprintln!("error: not confirmed: {what}: pass --yes (no terminal to ask on)");
                return Ok(Exit::Failed.code());
            }
            let (flag, before, after) =
                ops::set_override(c, &a.flag.flag, &a.conversation, to, a.for_, &a.change.reason, &actor).await?;
            let report = rollout::WhichReport { flag: a.flag.flag, decisions: vec![after] };
            eprintln!("before: {}", rollout::render_why(&before));
            let saved = format!("saved: {what} (audited)");
            if flag.enabled {
                eprintln!("{saved}");
            } else {
                eprintln!("{saved}; the flag is off, so it decides nothing until the flag is on");
            }
            ctx.render(&report)?;
        }
    }
    Ok(Exit::Ok.code())
}

/// The flag off, then the notice, then (with `--verify`) the polling smoke, shown together
/// once every step has run. The rollback stands whatever follows it: a notice that cannot be
/// sent waits in the outbox, and a failed verify exits 1 with the rollback done.
async fn rollback(a: RollbackArgs, actor: Actor, ctx: &Ctx) -> anyhow::Result<i32> {
    let c = &ctx.config;
    let planned = ops::plan_rollback(c, &a.flag.flag, &a.change.reason).await?;
    let Some(change) = confirm_and_apply(planned, &a.change, &actor).await? else {
        return Ok(Exit::Failed.code());
    };
    let report = rollout::aftermath::after_rollback(c, change, &ctx.command_line(), a.verify).await;
    ctx.render(&report)?;
    Ok(if report.passed() { Exit::Ok } else { Exit::Failed }.code())
}

async fn advance(a: AdvanceArgs, actor: Actor, ctx: &Ctx) -> anyhow::Result<i32> {
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
        flag: a.flag.flag,
        steps: rollout::steps(&a.steps)?,
        min_soak: a.min_soak,
        window: a.window,
        slo: slo.value,
        max_regression: a.max_regression,
        min_replies: min_replies.value,
        smoke: a.smoke,
    };
    let mut report = advance::evaluate(&ctx.config, &req).await?;
    let planned = report.take_planned();
    let Some(planned) = planned.filter(|_| !a.dry_run) else {
        ctx.render(&report)?;
        return Ok(if report.passed() { Exit::Ok } else { Exit::Failed }.code());
    };
    let ch = &planned.change;
    let what = format!(
        "advance {}: {} % -> {} % (version {})",
        ch.before.name, ch.before.percent, ch.percent, ch.before.version
    );
    if !a.yes && !crate::confirmed(&what)? {
        ctx.render(&report)?;
        eprintln!("error: not confirmed: {what}: pass --yes (no terminal to ask on)");
        return Ok(Exit::Failed.code());
    }
    report.applied = Some(planned.apply(&actor).await?.after);
    ctx.render(&report)?;
    Ok(Exit::Ok.code())
}

/// Shows before → after, asks (or takes `--yes`), applies.
async fn apply(planned: Planned, change: &ChangeArgs, actor: &Actor, ctx: &Ctx) -> anyhow::Result<i32> {
    Ok(match confirm_and_apply(planned, change, actor).await? {
        Some(report) => {
            ctx.render(&report)?;
            Exit::Ok
        }
        None => Exit::Failed,
    }
    .code())
}

/// The change applied (the caller shows it); `None` when not confirmed (nothing changed).
async fn confirm_and_apply(
    planned: Planned,
    change: &ChangeArgs,
    actor: &Actor,
) -> anyhow::Result<Option<rollout::ChangeReport>> {
    let ch = &planned.change;
    let b = &ch.before;
    let show = |on: bool, p: u8| if on { format!("on at {p} %") } else { format!("off ({p} %)") };
    let what = format!(
        "{} {}: {} -> {} (version {})",
        ch.action.as_str(),
        b.name,
        show(b.enabled, b.percent),
        show(ch.enabled, ch.percent),
        b.version
    );
    if !planned.changes_anything() {
        // Nothing is written: a write that changes nothing would bump the version and make a
        // concurrent operator's real change lose.
        return Err(RolloutError::NothingToChange(what).into());
    }
    if !change.yes && !crate::confirmed(&what)? {
        eprintln!("error: not confirmed: {what}: pass --yes (no terminal to ask on)");
        return Ok(None);
    }
    Ok(Some(planned.apply(actor).await?))
}

/// Who runs this, for the audit: `--by`, else `BROKER_OPS_ACTOR`, else `$USER@host`; and the
/// command line.
fn actor(ctx: &Ctx, by: Option<&str>) -> Actor {
    let named = by.map(str::to_string).or_else(|| ctx.config.actor.as_ref().map(|s| s.value.clone()));
    let who = named.unwrap_or_else(|| {
        let user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "unknown".into());
        let host = hostname::get().map(|h| h.to_string_lossy().into_owned()).unwrap_or_else(|_| "unknown-host".into());
        format!("{user}@{host}")
    });
    Actor { who, command: ctx.command_line() }
}

/// `--by NAME`: one line, not empty, at most 200 characters.
pub fn parse_actor(s: &str) -> Result<String, String> {
    broker_ops::config::actor_name(s)
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
