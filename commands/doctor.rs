//! `broker-ops doctor`: one library call, one report; exit 0 only when all configured
//! dependencies answer.

use broker_ops::exit::Outcome;

use crate::Ctx;

pub async fn run(ctx: &Ctx) -> anyhow::Result<Outcome> {
    let report = broker_ops::doctor::run(&ctx.config).await;
    ctx.render(&report)?;
    Ok(if report.healthy() { Outcome::Done } else { Outcome::CouldNotRun })
}
