//! The rollout's changes as one workflow each: read → show and confirm → apply (under the
//! version read) → what follows (the rollback's notice and verify). The command supplies how to
//! ask; the workflow returns one report with every step, so `-o json` carries them all.

use std::time::Duration;

use super::advance::{self, AdvanceReport, AdvanceRequest};
use super::aftermath::{self, RollbackReport};
use super::ops::{self, OverrideTo, Planned};
use super::{Actor, ChangeReport, RolloutError, bucket};
use crate::config::Config;
use crate::exit::NotConfirmed;

/// Asked once before anything is written, with the change as it will be shown to the operator;
/// `Ok(false)` leaves everything as it was ([`RolloutError::NotConfirmed`]).
pub type Confirm<'a> = &'a mut (dyn FnMut(&str) -> std::io::Result<bool> + Send);

/// Asks, and turns a no into the error every command reports the same way.
fn ask(confirm: Confirm<'_>, what: String) -> Result<(), RolloutError> {
    match confirm(&what) {
        Ok(true) => Ok(()),
        Ok(false) => Err(NotConfirmed { what }.into()),
        Err(e) => Err(RolloutError::Usage(format!("asking to confirm {what}: {e}"))),
    }
}

/// A change of the flag: shown, confirmed, applied under the version read. A change that would
/// change nothing is refused before asking ([`RolloutError::NothingToChange`]): a write that
/// changes nothing would bump the version and make a concurrent operator's real change lose.
async fn confirm_and_apply(
    planned: Planned,
    actor: &Actor,
    confirm: Confirm<'_>,
) -> Result<ChangeReport, RolloutError> {
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
        return Err(RolloutError::NothingToChange(what));
    }
    ask(confirm, what)?;
    planned.apply(actor).await
}

/// `rollout set`: on at `percent` (the flag created first when `create`).
pub async fn set(
    config: &Config,
    flag: &str,
    percent: i64,
    create: bool,
    reason: &str,
    actor: &Actor,
    confirm: Confirm<'_>,
) -> Result<ChangeReport, RolloutError> {
    let p = super::percent(percent)?;
    let planned = ops::plan_set(config, flag, p, reason, create.then_some(actor)).await?;
    confirm_and_apply(planned, actor, confirm).await
}

/// Real-time conversations a verified rollback watches leave real-time, at most.
const WATCHED: usize = 200;

/// `rollout rollback`: the flag off, then the notice, then (with `verify`, the time allowed for
/// customers to converge) the polling smoke and the watch of the real-time customers leaving.
/// The rollback stands whatever follows it: a notice that cannot be sent waits in the outbox,
/// and a failed verify is a failed step of a rollback that is done.
pub async fn rollback(
    config: &Config,
    flag: &str,
    reason: &str,
    verify: Option<Duration>,
    actor: &Actor,
    confirm: Confirm<'_>,
) -> Result<RollbackReport, RolloutError> {
    let planned = ops::plan_rollback(config, flag, reason).await?;
    // The customers on real-time now: with --verify, the rollback waits to see them leave it.
    let watched = match (verify, &config.ably_api_key) {
        (Some(_), Some(_)) => {
            Some(super::observe::realtime_sample(config, flag, WATCHED, Duration::from_secs(300)).await?)
        }
        _ => None,
    };
    let change = confirm_and_apply(planned, actor, confirm).await?;
    Ok(aftermath::after_rollback(config, change, &actor.command, verify, watched).await)
}

/// What `rollout override` asks for.
pub struct OverrideRequest<'a> {
    pub flag: &'a str,
    pub conversation: &'a str,
    pub to: OverrideTo,
    pub duration: Option<Duration>,
    pub reason: &'a str,
}

/// An override saved: the decision before and after, and whether the flag is on to use it.
pub struct OverrideReport {
    pub what: String,
    pub flag_enabled: bool,
    pub before: bucket::Decision,
    pub which: super::WhichReport,
}

/// `rollout override`: shown, confirmed, saved under the flag's version as read (the same check
/// as `set`: refused when the flag changed since it was shown).
pub async fn override_one(
    config: &Config,
    req: OverrideRequest<'_>,
    actor: &Actor,
    confirm: Confirm<'_>,
) -> Result<OverrideReport, RolloutError> {
    let to = format!("{:?}", req.to).to_lowercase();
    let what = format!("override {} of conversation {} -> {to}", req.flag, req.conversation).to_lowercase();
    let read = ops::read_override(config, req.flag, req.conversation).await?;
    if matches!(req.to, OverrideTo::Clear) && read.existing.is_none() {
        // Nothing to clear: nothing written, no audit row.
        let msg = format!("conversation {} has no override of {}", req.conversation, req.flag);
        return Err(RolloutError::NothingToChange(msg));
    }
    ask(confirm, what.clone())?;
    let (flag, before, after) = read.save(req.to, req.duration, req.reason, actor).await?;
    let which = super::WhichReport { flag: flag.name.clone(), decisions: vec![after] };
    Ok(OverrideReport { what, flag_enabled: flag.enabled, before, which })
}

/// `rollout advance`: the gates, then (when every one passes, not a dry run) the next step,
/// confirmed and applied. The report says what was applied.
pub async fn advance(
    config: &Config,
    req: &AdvanceRequest,
    dry_run: bool,
    actor: &Actor,
    confirm: Confirm<'_>,
) -> Result<AdvanceReport, RolloutError> {
    let mut report = advance::evaluate(config, req).await?;
    let Some(planned) = report.take_planned().filter(|_| !dry_run) else {
        return Ok(report);
    };
    let ch = &planned.change;
    let what = format!(
        "advance {}: {} % -> {} % (version {})",
        ch.before.name, ch.before.percent, ch.percent, ch.before.version
    );
    ask(confirm, what)?;
    report.applied = Some(planned.apply(actor).await?.after);
    Ok(report)
}
