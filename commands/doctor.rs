//! `broker-ops doctor`: one library call, one report; exit 0 only when all configured
//! dependencies answer.

use broker_ops::exit::Exit;

use crate::Ctx;

pub async fn run(ctx: &Ctx) -> anyhow::Result<i32> {
    let report = broker_ops::doctor::run(&ctx.config).await;
    ctx.render(&report)?;
    Ok(if report.healthy() { Exit::Ok } else { Exit::CouldNotRun }.code())
}
