//! The two cohorts of a flag: the conversations with events in a window, split into those on
//! real-time and those polling by the same decision the app makes (kill switch, flag off,
//! override, bucket), and `sla report` over each. `rollout advance` judges the split;
//! `sla report --by-cohort FLAG` shows it.

use std::collections::HashMap;
use std::io::{self, Write};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::bucket::{self, InForce};
use super::store::Db;
use super::switch::kill_switch;
use super::{Flag, RolloutError};
use crate::analytics::{self, ReportRequest, SlaReport};
use crate::config::Config;
use crate::output::{Render, Style, escape};

/// The conversations with events in `[since, until)`: (real-time, polling).
pub async fn split(
    config: &Config,
    db: &Db,
    flag: &Flag,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<(Vec<String>, Vec<String>), RolloutError> {
    let active = db.active(&config.contracts, since, until).await?;
    let overrides = db.overrides(&flag.name, None).await?;
    Ok(partition(flag, kill_switch(config, &flag.name), &overrides, active))
}

/// Conversations split by the decision: (real-time, polling).
pub fn partition(
    flag: &Flag,
    kill_switch: bool,
    overrides: &HashMap<String, InForce>,
    ids: Vec<String>,
) -> (Vec<String>, Vec<String>) {
    ids.into_iter().partition(|id| bucket::decide(flag, kill_switch, overrides.get(id).copied(), id).enabled)
}

/// `sla report` of the conversations `ids` only (none: an empty report, not every conversation).
pub async fn report(config: &Config, req: &ReportRequest, ids: &[String]) -> Result<SlaReport, RolloutError> {
    if ids.is_empty() {
        // The report reads an empty list as "every conversation": an empty cohort is read from
        // nothing (a NUL id as a stand-in reached Postgres, which refuses it in text).
        return Ok(analytics::empty(config, req, analytics::Source::Postgres)?);
    }
    let mut r = req.clone();
    r.conversations = ids.to_vec();
    Ok(analytics::run(config, &r).await?)
}

/// `sla report --by-cohort FLAG`.
pub struct CohortReports {
    pub flag: Flag,
    pub realtime: (usize, SlaReport),
    pub polling: (usize, SlaReport),
}

pub async fn reports(config: &Config, flag: &str, req: &ReportRequest) -> Result<CohortReports, RolloutError> {
    let db = Db::open(config).await?;
    let f = db.flag(flag).await?;
    let (on, off) = split(config, &db, &f, req.window.since, req.window.until).await?;
    let realtime = (on.len(), report(config, req, &on).await?);
    let polling = (off.len(), report(config, req, &off).await?);
    Ok(CohortReports { flag: f, realtime, polling })
}

impl Render for CohortReports {
    fn table(&self, w: &mut dyn Write, style: Style) -> io::Result<()> {
        let f = &self.flag;
        let state = if f.enabled { format!("on at {} %", f.percent) } else { "off".into() };
        for (name, (n, r)) in [("real-time", &self.realtime), ("polling", &self.polling)] {
            writeln!(w, "== {name} cohort of {} ({state}): {n} conversations ==", escape(&f.name))?;
            r.table(w, style)?;
            writeln!(w)?;
        }
        Ok(())
    }

    fn json(&self) -> Value {
        let f = &self.flag;
        let c = |(n, r): &(usize, SlaReport)| json!({"conversations": n, "report": r.json()});
        json!({"schema_version": 1, "kind": "sla_report_by_cohort", "flag": f.name, "enabled": f.enabled,
               "percent": f.percent, "cohorts": {"realtime": c(&self.realtime), "polling": c(&self.polling)}})
    }
}
