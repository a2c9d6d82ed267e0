//! `broker-ops sla report`: the window from the arguments, one library call, the report
//! rendered (and the chart and report files written when asked).

use broker_ops::analytics::{self, ReportError, ReportRequest, SourceChoice, Window, parse_when};
use broker_ops::config::sla::Sla;
use broker_ops::exit::Exit;
use broker_ops::output::escape;

use crate::Ctx;
use crate::sla_args::{FromArg, ReportArgs};

async fn by_cohort(flag: &str, mut req: ReportRequest, ctx: &Ctx) -> anyhow::Result<i32> {
    req.source = SourceChoice::Postgres;
    match broker_ops::rollout::cohorts::reports(&ctx.config, flag, &req).await {
        Ok(r) => {
            ctx.render(&r)?;
            Ok(Exit::Ok.code())
        }
        Err(e) if e.exit() == Exit::Usage => usage(&e.to_string()),
        Err(e) => Err(e.into()),
    }
}

fn usage(m: &str) -> anyhow::Result<i32> {
    eprintln!("error: {m}");
    Ok(Exit::Usage.code())
}

pub async fn run(a: ReportArgs, ctx: &Ctx) -> anyhow::Result<i32> {
    let now = chrono::Utc::now();
    let since = parse_when(&a.since, now).map_err(|e| format!("--since: {e}"));
    let until = parse_when(&a.until, now).map_err(|e| format!("--until: {e}"));
    let window = match since.and_then(|s| Window::new(s, until?, a.by)) {
        Ok(w) => w,
        Err(m) => return usage(&m),
    };
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
    let report = match analytics::run(&ctx.config, &req).await {
        Ok(r) => r,
        Err(e @ ReportError::BeyondRedis(_)) => return usage(&e.to_string()),
        Err(e) => return Err(e.into()),
    };
    if let Some(n) = &report.note {
        eprintln!("{n}");
    }
    ctx.render(&report)?;
    if let Some(path) = &a.chart {
        analytics::files::write_chart(&report, path)?;
    }
    if let Some(dir) = &a.report_dir {
        let written = analytics::files::write_report(&report, dir)?;
        eprintln!("report: {}", escape(&written.display().to_string()));
    }
    Ok(Exit::Ok.code())
}
