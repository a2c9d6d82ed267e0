//! `broker-ops events replay`: the mirror as a timeline on stdout, re-published to Ably, or
//! backfilled into the other mirror. Arguments in, one library call, the summary out.

use std::io::Write;
use std::num::NonZeroUsize;

use broker_ops::exit::{NotConfirmed, Outcome, UsageError};
use broker_ops::output::Format;
use broker_ops::replay::open::{self, Store as FromStore, To};
use broker_ops::replay::request::Ask;
use broker_ops::replay::timeline;

use crate::Ctx;
pub use crate::events_args::*;

pub async fn run(cmd: EventsCommand, ctx: &Ctx) -> anyhow::Result<Outcome> {
    match cmd {
        EventsCommand::Replay(a) => replay(a, ctx).await,
    }
}

fn ask(a: &ReplayArgs, ctx: &Ctx) -> Ask {
    Ask {
        from: a.from.map(|f| match f {
            Store::Redis => FromStore::Redis,
            Store::Postgres => FromStore::Postgres,
        }),
        to: match a.to {
            Target::Stdout => To::Stdout,
            Target::Ably => To::Ably,
            Target::Redis => To::Redis,
            Target::Postgres => To::Postgres,
        },
        conversations: a.conversations.clone(),
        all: a.all,
        since: a.since.clone(),
        until: a.until.clone(),
        name: a.name.clone(),
        page_size: a.page_size.map(NonZeroUsize::get),
        rate: a.rate,
        events: a.events.clone(),
        dry_run: a.dry_run,
        checkpoint: a.checkpoint.clone(),
        raw: ctx.format != Format::Table,
    }
}

async fn replay(a: ReplayArgs, ctx: &Ctx) -> anyhow::Result<Outcome> {
    let req = ask(&a, ctx).request(chrono::Utc::now(), ctx.config.timeout.value).map_err(UsageError)?;
    if let (Target::Ably, Some(w)) = (a.to, a.events.warning(&ctx.config.contracts)) {
        eprintln!("{w}");
    }
    let open::Opened { from, mut source, target, mut checkpoint, resumed } = open::open(&ctx.config, req).await?;
    let Some(mut target) = target else {
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        let summary = timeline::write(source, &ctx.config.contracts, ctx.format, &mut out).await?;
        out.flush()?;
        eprintln!("{}", summary.describe(from, &a.conversations));
        return Ok(Outcome::Done);
    };
    let left = source.estimate().await?;
    if !a.dry_run
        && !checkpoint.finished
        && left > a.confirm_over
        && !a.yes
        && !crate::confirmed(&format!("Write about {left} events to {}", target.name()))?
    {
        let what = format!("about {left} events would be written to {}", target.name());
        return Err(NotConfirmed { what }.into());
    }
    let bar = crate::progress::events(left + checkpoint.counts.read, checkpoint.counts.read);
    let mut on_progress = |c: &broker_ops::replay::Counts| bar.set_position(c.read);
    let ran = broker_ops::replay::Ran { dry_run: a.dry_run, resumed };
    let result = broker_ops::replay::run_replay(source, &mut target, &mut checkpoint, ran, &mut on_progress).await;
    bar.finish_and_clear();
    let summary = result?;
    ctx.render(&summary)?;
    Ok(Outcome::passed(summary.counts.failed == 0))
}
