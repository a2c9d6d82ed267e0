//! The figures a smoke report and a soak's intervals share: percentiles of a histogram, and the
//! errors counted by kind.

use serde::Serialize;

use super::LatencyHistogram;
use crate::histogram::r3;

#[derive(Debug, Clone, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub min: f64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

impl Percentiles {
    pub fn of(h: &LatencyHistogram) -> Option<Self> {
        (!h.is_empty()).then(|| Percentiles {
            count: h.count(),
            min: r3(h.min_ms()),
            p50: r3(h.percentile_ms(50.0)),
            p90: r3(h.percentile_ms(90.0)),
            p95: r3(h.percentile_ms(95.0)),
            p99: r3(h.percentile_ms(99.0)),
            max: r3(h.max_ms()),
            mean: r3(h.mean_ms()),
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ErrorCount {
    pub kind: String,
    pub count: usize,
    pub example: String,
}
