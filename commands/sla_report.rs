//! `broker-ops sla report`: the window from the arguments, one library call, the report
//! rendered (and the chart and report files written when asked).

use broker_ops::analytics::{self, ReportRequest, SourceChoice, Window, parse_when};
use broker_ops::config::sla::Sla;
use broker_ops::exit::{Outcome, UsageError};
use broker_ops::output::escape;

use crate::Ctx;
use crate::sla_args::{FromArg, ReportArgs};

async fn by_cohort(flag: &str, mut req: ReportRequest, ctx: &Ctx) -> anyhow::Result<Outcome> {
    req.source = SourceChoice::Postgres;
    ctx.render(&broker_ops::rollout::cohorts::reports(&ctx.config, flag, &req).await?)?;
    Ok(Outcome::Done)
}

pub async fn run(a: ReportArgs, ctx: &Ctx) -> anyhow::Result<Outcome> {
    let now = chrono::Utc::now();
    let since = parse_when(&a.since, now).map_err(|e| format!("--since: {e}"));
    let until = parse_when(&a.until, now).map_err(|e| format!("--until: {e}"));
    let window = since.and_then(|s| Window::new(s, until?, a.by)).map_err(UsageError)?;
    let sla = &ctx.config.sla;
    let slo = Sla::or_flag(&sla.slo, "--slo", a.slo);
    let reply_timeout = Sla::or_flag(&sla.reply_timeout, "--reply-timeout", a.reply_timeout);
    eprintln!("{}", Sla::describe(&slo, &sla.error_budget, &reply_timeout));
    let req = ReportRequest {
        window,
        source: match a.from {
            FromArg::Auto => SourceChoice::Auto,
            FromArg::Postgres => SourceChoice::Postgres,
            FromArg::Redis => SourceChoice::Redis,
        },
        conversations: a.conversations,
        slo: slo.value,
        reply_timeout: reply_timeout.value,
        active_window: a.active_window,
        top: a.top,
        partitions: a.parallel as usize,
        query_timeout: a.query_timeout,
        include_test_traffic: a.include_test_traffic,
    };
    if let Some(flag) = &a.by_cohort {
        return by_cohort(flag, req, ctx).await;
    }
    let report = analytics::run(&ctx.config, &req).await?;
    if let Some(n) = &report.note {
        eprintln!("{n}");
    }
    ctx.render(&report)?;
    if let Some(path) = &a.chart {
        analytics::files::write_chart(&report, path)?;
    }
    if let Some(dir) = &a.report_dir {
        let written = analytics::files::write_report(&report, dir)?;
        let shown = |p: &std::path::Path| escape(&p.display().to_string());
        eprintln!("report: {} (open {} in a browser)", shown(&written.markdown), shown(&written.html));
    }
    Ok(Outcome::Done)
}
