//! A soak's intervals as they close: a line each on stderr, a record each appended to the
//! report directory's `{stem}.intervals.ndjson`.

use std::path::Path;

use broker_ops::sla::soak::{IntervalRecord, SoakPlan};

use crate::sla_args::SmokeArgs;

/// The soak plan of `args` (none without `--duration`) and the task that shows and writes its
/// intervals; the task ends when the run drops the plan.
pub fn start(args: &SmokeArgs, stem: Option<&Path>) -> (Option<SoakPlan>, Option<tokio::task::JoinHandle<()>>) {
    let Some(duration) = args.duration else { return (None, None) };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<IntervalRecord>();
    let stem = stem.map(Path::to_path_buf);
    let task = tokio::spawn(async move {
        while let Some(r) = rx.recv().await {
            eprintln!("{}", r.line());
            if let Some(stem) = &stem
                && let Err(e) = broker_ops::sla::files::append_interval(stem, &r)
            {
                eprintln!("warning: {e}");
            }
        }
    });
    let plan = SoakPlan {
        duration,
        interval: args.interval,
        interval_thresholds: args.interval_thresholds,
        records: Some(tx),
    };
    (Some(plan), Some(task))
}
