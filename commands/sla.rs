//! `broker-ops sla smoke` and `sla merge`: arguments in, one library call, reports out.

use broker_ops::config::sla::Sla;
use broker_ops::exit::Outcome;
use broker_ops::sandbox::Sandbox;
use broker_ops::sla::{self, Scenario, Schedule, SmokeReport, Target, Threshold, Transport, Verdict};

use crate::Ctx;
pub use crate::sla_args::*;

pub async fn run(cmd: SlaCommand, ctx: &Ctx) -> anyhow::Result<Outcome> {
    match cmd {
        SlaCommand::Smoke(args) => smoke(*args, ctx).await,
        SlaCommand::Report(args) => crate::sla_report::run(*args, ctx).await,
        SlaCommand::Merge(args) => {
            let report = sla::merge::merge(&args.files, &thresholds(&args.outputs, ctx), ctx.command_line())?;
            finish(&report, &args.outputs, "merged", ctx)
        }
    }
}

/// The `--threshold`s given, else the configured SLA's (`[sla]`), said on stderr.
fn thresholds(o: &Outputs, ctx: &Ctx) -> Vec<Threshold> {
    if !o.thresholds.is_empty() {
        return o.thresholds.clone();
    }
    let s = &ctx.config.sla;
    eprintln!(
        "thresholds from the SLA: p95 < {} ({}), error_rate < {} ({})",
        broker_ops::duration::format_duration(s.slo.value),
        s.slo.source,
        broker_ops::config::sla::percent(s.error_budget.value),
        s.error_budget.source
    );
    sla::threshold::of_sla(s.slo.value, s.error_budget.value)
}

async fn smoke(args: SmokeArgs, ctx: &Ctx) -> anyhow::Result<Outcome> {
    let c = &ctx.config;
    let scenario = args.scenario.as_deref().map(Scenario::load).transpose()?.unwrap_or_default();
    let reply_timeout = Sla::or_flag(&c.sla.reply_timeout, "--reply-timeout", args.reply_timeout);
    eprintln!(
        "reply time-out: {} ({})",
        broker_ops::duration::format_duration(reply_timeout.value),
        reply_timeout.source
    );
    let sandbox = match args.sandbox {
        true => Some(Sandbox::start(args.behaviour.options(c).with_free_port()).await?),
        false => None,
    };
    let options = |target| smoke_options(&args, ctx, target, scenario, reply_timeout.value);
    let progress = crate::progress::Chats::start(args.chats.get());
    let (cancel, sender) = (crate::cancel_on_ctrl_c(), progress.sender());
    let report = match sandbox {
        Some(sb) => sla::smoke_owning(Box::new(sb), c.timeout.value, options, cancel, sender).await,
        None => sla::smoke(options(Target::from_config(c)?), cancel, sender).await,
    };
    progress.finish().await;
    let report = report?;
    if let Some(path) = &args.histogram_out {
        sla::merge::write_log(path, &report)?;
    }
    let slug = if args.sandbox { "sandbox".to_string() } else { report.target.clone() };
    let code = finish(&report, &args.outputs, &slug, ctx)?;
    match &report.driver {
        Some(d) if d.saturated && args.strict => anyhow::bail!("--strict: {}", d.line()),
        _ => Ok(code),
    }
}

fn smoke_options(
    args: &SmokeArgs,
    ctx: &Ctx,
    target: Target,
    scenario: Scenario,
    reply_timeout: std::time::Duration,
) -> sla::SmokeOptions {
    let c = &ctx.config;
    sla::SmokeOptions {
        cleanup_allowed: !args.no_cleanup,
        target,
        chats: args.chats.get(),
        schedule: match args.rate {
            Some(rate_per_s) => Schedule::Open { rate_per_s, max_in_flight: args.max_in_flight.get() },
            None => Schedule::Closed { concurrency: args.concurrency.get() },
        },
        turns: args.turns.get(),
        scenario,
        transport: match args.transport {
            TransportArg::Sse => Transport::Sse,
            TransportArg::Poll => Transport::Poll,
        },
        reply_timeout,
        poll_interval: args.poll_interval,
        thresholds: thresholds(&args.outputs, ctx),
        abort_on_fail: args.abort_on_fail,
        timeout: c.timeout.value,
        contracts: c.contracts.clone(),
        max_driver_lag: args.max_driver_lag,
        command: ctx.command_line(),
    }
}

/// Renders, writes the report files and the JUnit file, and picks the exit code.
fn finish(report: &SmokeReport, outputs: &Outputs, slug: &str, ctx: &Ctx) -> anyhow::Result<Outcome> {
    ctx.render(report)?;
    if let Some(path) = &outputs.junit {
        sla::files::write_junit(report, path)?;
    }
    if !outputs.no_report {
        let written = sla::files::write_report(report, &outputs.report_dir, slug)?;
        eprintln!("report: {}", broker_ops::output::escape(&written.display().to_string()));
    }
    match report.verdict() {
        Verdict::Passed => Ok(Outcome::Done),
        Verdict::Failed => Ok(Outcome::Failed),
        Verdict::CouldNotRun(why) => anyhow::bail!("{why}"),
    }
}
