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
            finish(&report, &args.outputs, "merged", None, ctx)
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
    let slug = match (args.sandbox, &c.chatwoot_base_url) {
        (true, _) | (false, None) => "sandbox".to_string(),
        (false, Some(u)) => broker_ops::redact::url(u.value.as_str()),
    };
    // A soak writes its intervals into the report directory as it goes: its files' name is
    // claimed before the first chat.
    let stem = match (args.duration, args.outputs.no_report) {
        (Some(_), false) => Some(sla::files::claim_stem(&args.outputs.report_dir, &slug)?),
        _ => None,
    };
    let (soak, intervals) = crate::soak::start(&args, stem.as_deref());
    let options = |target| smoke_options(&args, ctx, target, scenario, reply_timeout.value, soak);
    let progress = args.duration.is_none().then(|| crate::progress::Chats::start(args.chats.get()));
    let (cancel, sender) = (crate::cancel_on_ctrl_c(), progress.as_ref().and_then(|p| p.sender()));
    let report = match sandbox {
        Some(sb) => sla::smoke_owning(Box::new(sb), c.timeout.value, options, cancel, sender).await,
        None => sla::smoke(options(Target::from_config(c)?), cancel, sender).await,
    };
    if let Some(p) = progress {
        p.finish().await;
    }
    if let Some(t) = intervals {
        let _ = t.await;
    }
    let report = report?;
    if let Some(path) = &args.histogram_out {
        sla::merge::write_log(path, &report)?;
    }
    let code = finish(&report, &args.outputs, &slug, stem.as_deref(), ctx)?;
    // Every reason the figures are in doubt, not only the first.
    let doubts = report.doubts();
    match doubts.is_empty() || !args.strict {
        true => Ok(code),
        false => anyhow::bail!("--strict: {}", doubts.join("; ")),
    }
}

fn smoke_options(
    args: &SmokeArgs,
    ctx: &Ctx,
    target: Target,
    scenario: Scenario,
    reply_timeout: std::time::Duration,
    soak: Option<sla::soak::SoakPlan>,
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
        extras: !args.no_extras,
        soak,
    }
}

/// Renders, writes the report files and the JUnit file, and picks the exit code.
fn finish(
    report: &SmokeReport,
    outputs: &Outputs,
    slug: &str,
    stem: Option<&std::path::Path>,
    ctx: &Ctx,
) -> anyhow::Result<Outcome> {
    ctx.render(report)?;
    // The report directory first: a JUnit file asked for inside it needs it made.
    if !outputs.no_report {
        let junit = outputs.junit.as_deref();
        let written = match stem {
            Some(stem) => sla::files::write_report_to(report, stem, junit)?,
            None => sla::files::write_report(report, &outputs.report_dir, slug, junit)?,
        };
        let shown = |p: &std::path::Path| broker_ops::output::escape(&p.display().to_string());
        eprintln!("report: {} (open {} in a browser)", shown(&written.markdown), shown(&written.html));
    }
    if let Some(path) = &outputs.junit {
        sla::files::write_junit(report, path)?;
    }
    match report.verdict() {
        Verdict::Passed => Ok(Outcome::Done),
        Verdict::Failed => Ok(Outcome::Failed),
        Verdict::CouldNotRun(why) => anyhow::bail!("{why}"),
    }
}
