//! The AI worker's reply latency (`--ai-latency`) and the stall fault (`--stall DUR@AFTER`).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use rand::Rng;
use rand_distr::{Distribution, LogNormal};

use crate::duration::{format_duration, parse_duration};

/// `fixed:800ms`, `uniform:200ms..2s`, `lognormal:p50=800ms,p95=2500ms[,max=4s]`.
#[derive(Debug, Clone, PartialEq)]
pub enum LatencyModel {
    Fixed(Duration),
    Uniform(Duration, Duration),
    /// A log-normal distribution with the given median and 95th percentile, cut at `max` when
    /// given (the sandbox's default is cut at 4 s, so a default run never breaches the 5 s SLA
    /// unless a fault asks for it).
    LogNormal {
        p50: Duration,
        p95: Duration,
        max: Option<Duration>,
    },
}

/// z of the standard normal at 0.95.
const Z95: f64 = 1.644_853_626_951_472_2;

impl LatencyModel {
    pub fn sample(&self, rng: &mut impl Rng) -> Duration {
        match self {
            LatencyModel::Fixed(d) => *d,
            LatencyModel::Uniform(lo, hi) => {
                let (lo, hi) = (lo.as_secs_f64(), hi.as_secs_f64());
                Duration::from_secs_f64(rng.random_range(lo..=hi))
            }
            LatencyModel::LogNormal { p50, p95, max } => {
                let mu = p50.as_secs_f64().ln();
                let sigma = (p95.as_secs_f64().ln() - mu) / Z95;
                // The parameters were validated at parse time (p95 > p50 > 0), so sigma > 0.
                let dist = LogNormal::new(mu, sigma).expect("validated log-normal parameters");
                // A draw far in the tail can exceed what a Duration holds: cap it first.
                let drawn = Duration::from_secs_f64(dist.sample(rng).min(86_400.0));
                max.map_or(drawn, |m| drawn.min(m))
            }
        }
    }
}

impl FromStr for LatencyModel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (kind, rest) = s.split_once(':').ok_or_else(|| {
            format!("invalid latency {s:?}: expected fixed:DUR, uniform:MIN..MAX or lognormal:p50=DUR,p95=DUR")
        })?;
        match kind {
            "fixed" => Ok(LatencyModel::Fixed(parse_duration(rest)?)),
            "uniform" => {
                let (lo, hi) = rest
                    .split_once("..")
                    .ok_or_else(|| format!("invalid uniform latency {rest:?}: expected MIN..MAX"))?;
                let (lo, hi) = (parse_duration(lo)?, parse_duration(hi)?);
                if lo > hi {
                    return Err(format!("invalid uniform latency {rest:?}: MIN is above MAX"));
                }
                Ok(LatencyModel::Uniform(lo, hi))
            }
            "lognormal" => {
                let (mut p50, mut p95, mut max) = (None, None, None);
                for part in rest.split(',') {
                    match part.split_once('=') {
                        Some(("p50", v)) => p50 = Some(parse_duration(v)?),
                        Some(("p95", v)) => p95 = Some(parse_duration(v)?),
                        Some(("max", v)) => max = Some(parse_duration(v)?),
                        _ => {
                            return Err(format!(
                                "invalid lognormal parameter {part:?}: expected p50=DUR, p95=DUR or max=DUR"
                            ));
                        }
                    }
                }
                let (Some(p50), Some(p95)) = (p50, p95) else {
                    return Err("lognormal latency needs both p50= and p95=".into());
                };
                if p50.is_zero() || p95 <= p50 {
                    return Err("lognormal latency needs 0 < p50 < p95".into());
                }
                if max.is_some_and(|m| m < p95) {
                    return Err("lognormal latency needs max >= p95".into());
                }
                Ok(LatencyModel::LogNormal { p50, p95, max })
            }
            other => Err(format!("unknown latency model {other:?}: expected fixed, uniform or lognormal")),
        }
    }
}

impl fmt::Display for LatencyModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LatencyModel::Fixed(d) => write!(f, "fixed:{}", format_duration(*d)),
            LatencyModel::Uniform(a, b) => write!(f, "uniform:{}..{}", format_duration(*a), format_duration(*b)),
            LatencyModel::LogNormal { p50, p95, max } => {
                write!(f, "lognormal:p50={},p95={}", format_duration(*p50), format_duration(*p95))?;
                match max {
                    Some(m) => write!(f, ",max={}", format_duration(*m)),
                    None => Ok(()),
                }
            }
        }
    }
}

/// `--stall DUR@AFTER`: starting AFTER after the sandbox starts, nothing answers for DUR.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stall {
    pub duration: Duration,
    pub after: Duration,
}

impl FromStr for Stall {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (d, a) =
            s.split_once('@').ok_or_else(|| format!("invalid stall {s:?}: expected DUR@AFTER, e.g. 3s@10s"))?;
        Ok(Stall { duration: parse_duration(d)?, after: parse_duration(a)? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn parses_every_model_and_rejects_nonsense() {
        assert_eq!("fixed:800ms".parse::<LatencyModel>().unwrap(), LatencyModel::Fixed(Duration::from_millis(800)));
        assert!(matches!("uniform:200ms..2s".parse::<LatencyModel>().unwrap(), LatencyModel::Uniform(..)));
        assert!("lognormal:p50=800ms,p95=2500ms".parse::<LatencyModel>().is_ok());
        assert!("lognormal:p50=2s,p95=1s".parse::<LatencyModel>().is_err());
        assert!("uniform:2s..1s".parse::<LatencyModel>().is_err());
        assert!("gaussian:1s".parse::<LatencyModel>().is_err());
        assert!("lognormal:p50=800ms,p95=2500ms,max=2s".parse::<LatencyModel>().is_err(), "max below p95");
        let capped: LatencyModel = "lognormal:p50=800ms,p95=2500ms,max=4s".parse().unwrap();
        assert_eq!(capped.to_string().parse::<LatencyModel>().unwrap(), capped, "{capped} reads back");
        assert_eq!("3s@10s".parse::<Stall>().unwrap().after, Duration::from_secs(10));
    }

    #[test]
    fn lognormal_has_the_asked_percentiles() {
        let m: LatencyModel = "lognormal:p50=800ms,p95=2500ms".parse().unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut v: Vec<f64> = (0..100_000).map(|_| m.sample(&mut rng).as_secs_f64()).collect();
        v.sort_by(|a, b| a.total_cmp(b));
        let p50 = v[50_000];
        let p95 = v[95_000];
        assert!((p50 - 0.8).abs() < 0.02, "p50 {p50}");
        assert!((p95 - 2.5).abs() < 0.08, "p95 {p95}");
        assert!(v[99_999] > 5.0, "uncut, the tail passes the 5 s SLA");
        // The sandbox's default is cut at 4 s: a default run never breaches the SLA by chance.
        let default = crate::sandbox::Faults::default().ai_latency;
        assert!((0..100_000).all(|_| default.sample(&mut rng) <= Duration::from_secs(4)));
    }
}
