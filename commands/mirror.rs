//! `broker-ops mirror canary | webhook-test`: the Ably webhook → Redis → Postgres pipeline,
//! end to end. Arguments in, one library call, the result rendered; `canary` exits with the
//! monitoring-plugins state, `webhook-test` with 0 (every case passed) or 1.

use std::time::Duration;

use clap::{Args, Subcommand};

use broker_ops::duration::parse_positive_duration;
use broker_ops::exit::{Outcome, UsageError};
use broker_ops::mirror::canary::{self, CanaryRequest};
use broker_ops::mirror::webhook_route::{self, WebhookTestRequest};

use crate::Ctx;
use crate::ably::ProbeArgs;

#[derive(Debug, Subcommand)]
pub enum MirrorCommand {
    /// Publish one canary message through Ably and time its arrival in Redis and Postgres
    /// (a probe: exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN).
    Canary(CanaryArgs),
    /// Check the app's webhook route: a signed batch is taken and mirrored; a wrong signature,
    /// no signature and an altered body are refused and not mirrored (exit 1 if not).
    WebhookTest(WebhookTestArgs),
}

#[derive(Debug, Args)]
pub struct CanaryArgs {
    /// How long to wait for the canary in each store before it is CRITICAL.
    #[arg(long = "wait", default_value = "30s", value_parser = parse_positive_duration, value_name = "DUR")]
    pub wait: Duration,
    #[command(flatten)]
    pub probe: ProbeArgs,
}

#[derive(Debug, Args)]
pub struct WebhookTestArgs {
    /// The app's webhook route, e.g. https://app.example.com/api/ably/events.
    pub url: url::Url,
    /// How long to wait for the signed item to be mirrored.
    #[arg(long = "wait", default_value = "30s", value_parser = parse_positive_duration, value_name = "DUR")]
    pub wait: Duration,
}

pub async fn run(cmd: MirrorCommand, ctx: &Ctx) -> anyhow::Result<Outcome> {
    match cmd {
        MirrorCommand::Canary(a) => {
            let req = CanaryRequest { timeout: a.wait, warn: a.probe.warn.clone(), crit: a.probe.crit.clone() };
            let report = canary::run(&ctx.config, req).await?;
            crate::ably::finish(&report, &a.probe, ctx)
        }
        MirrorCommand::WebhookTest(a) => {
            if !matches!(a.url.scheme(), "http" | "https") {
                let url = broker_ops::redact::url(a.url.as_str());
                return Err(UsageError(format!("webhook-test: {url} is not an http(s) URL")).into());
            }
            let report = webhook_route::run(&ctx.config, WebhookTestRequest { url: a.url, timeout: a.wait }).await?;
            ctx.render(&report)?;
            Ok(Outcome::passed(report.passed()))
        }
    }
}
