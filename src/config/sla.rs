//! The one SLA of the product (`[sla]` in the config file, `BROKER_OPS_SLA_<KEY>` in the
//! environment): the reply-time objective, the error budget, how long a message may wait before
//! it counts as unanswered, and how many replies a judgement needs. `sla smoke` (CI), `sla
//! report`, the monitor (cron) and `rollout advance` all start from it, so CI, cron and the
//! rollout cannot judge the same customers by different numbers. A command's own flag still
//! wins, and each command says which value it used and where it came from.

use std::path::PathBuf;
use std::time::Duration;

use super::{ConfigError, Layers, Setting, Source};

/// Every key of the `[sla]` table, with its default.
pub const SLA_KEYS: &[(&str, &str)] =
    &[("slo", "5s"), ("error_budget", "1%"), ("reply_timeout", "30s"), ("min_replies", "100")];

#[derive(Debug, Clone)]
pub struct Sla {
    /// AI replies within this, at P95.
    pub slo: Setting<Duration>,
    /// The share of messages that may go unanswered (0..1).
    pub error_budget: Setting<f64>,
    /// A message without a reply after this long is unanswered.
    pub reply_timeout: Setting<Duration>,
    /// The fewest replies a judgement of the SLA may rest on.
    pub min_replies: Setting<u64>,
}

impl Default for Sla {
    fn default() -> Self {
        // The defaults are constants that parse; a test below proves it.
        let raw = SLA_KEYS.iter().map(|(k, v)| (*k, v.to_string(), Source::Default)).collect();
        build(raw).expect("default SLA parses")
    }
}

impl Sla {
    /// A flag's value when given (`Source::Flag`), else the configured one.
    pub fn or_flag<T: Clone>(s: &Setting<T>, flag: &str, given: Option<T>) -> Setting<T> {
        match given {
            Some(value) => Setting { value, source: Source::Flag(flag.to_string()) },
            None => s.clone(),
        }
    }

    /// One line saying which values are in force and where each came from.
    pub fn describe(slo: &Setting<Duration>, budget: &Setting<f64>, timeout: &Setting<Duration>) -> String {
        let d = crate::duration::format_duration;
        format!(
            "SLA: P95 within {} ({}), error budget {} ({}), unanswered after {} ({})",
            d(slo.value),
            slo.source,
            percent(budget.value),
            budget.source,
            d(timeout.value),
            timeout.source
        )
    }
}

/// `0.01` as `1%`.
pub fn percent(share: f64) -> String {
    let p = share * 100.0;
    if p.fract() == 0.0 { format!("{p:.0}%") } else { format!("{p}%") }
}

/// The environment variable of an `[sla]` key.
pub fn env_var(key: &str) -> String {
    format!("BROKER_OPS_SLA_{}", key.to_ascii_uppercase())
}

pub(super) fn resolve(layers: &Layers) -> Result<Sla, ConfigError> {
    let table = file_table(layers)?;
    let mut raw = Vec::with_capacity(SLA_KEYS.len());
    for (key, default) in SLA_KEYS {
        let var = env_var(key);
        let found = match layers.env.get(&var).filter(|v| !v.is_empty()) {
            Some(v) => Some((v.clone(), Source::Env(var))),
            None => match &table {
                Some((path, t)) => file_value(path, t, key)?.map(|v| (v, Source::File(path.clone()))),
                None => None,
            },
        };
        let (value, source) = found.unwrap_or_else(|| (default.to_string(), Source::Default));
        raw.push((*key, value, source));
    }
    build(raw)
}

type Raw = Vec<(&'static str, String, Source)>;

fn build(raw: Raw) -> Result<Sla, ConfigError> {
    fn field<T>(
        raw: &Raw,
        key: &'static str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Setting<T>, ConfigError> {
        // Every key of SLA_KEYS is in `raw` by construction.
        let (_, v, s) = raw.iter().find(|(k, ..)| *k == key).expect("every SLA key resolved");
        parse(v).map(|value| Setting { value, source: s.clone() }).map_err(|reason| ConfigError::Invalid {
            name: key,
            source_: s.clone(),
            reason: format!("sla.{key}: {reason}"),
        })
    }
    let positive = |v: &str| match crate::duration::parse_duration(v) {
        Ok(d) if d.is_zero() => Err("must be longer than 0".to_string()),
        Ok(d) if d > Duration::from_secs(24 * 3600) => Err("must be at most 24 h".to_string()),
        other => other,
    };
    Ok(Sla {
        slo: field(&raw, "slo", positive)?,
        error_budget: field(&raw, "error_budget", crate::compare::share)?,
        reply_timeout: field(&raw, "reply_timeout", positive)?,
        min_replies: field(&raw, "min_replies", |v| {
            v.trim().parse::<u64>().map_err(|_| format!("expected a whole number, got {v:?}"))
        })?,
    })
}

type FileTable<'a> = Option<(PathBuf, &'a toml::Table)>;

/// The `[sla]` table, with every key in it known.
fn file_table(layers: &Layers) -> Result<FileTable<'_>, ConfigError> {
    let Some((path, table)) = &layers.file else { return Ok(None) };
    let err = |reason: String| ConfigError::File { path: path.clone(), reason };
    let t = match table.get("sla") {
        None => return Ok(None),
        Some(toml::Value::Table(t)) => t,
        Some(other) => return Err(err(format!("`sla` must be a table, found {}", other.type_str()))),
    };
    if let Some(unknown) = t.keys().find(|k| !SLA_KEYS.iter().any(|(s, _)| s == k)) {
        let known: Vec<&str> = SLA_KEYS.iter().map(|(k, _)| *k).collect();
        return Err(err(format!("unknown key `sla.{unknown}` (known: {})", known.join(", "))));
    }
    Ok(Some((path.clone(), t)))
}

fn file_value(path: &std::path::Path, t: &toml::Table, key: &'static str) -> Result<Option<String>, ConfigError> {
    match t.get(key) {
        None => Ok(None),
        Some(toml::Value::String(s)) => Ok(Some(s.clone())),
        Some(toml::Value::Integer(i)) => Ok(Some(i.to_string())),
        Some(toml::Value::Float(f)) => Ok(Some(f.to_string())),
        Some(other) => Err(ConfigError::Invalid {
            name: key,
            source_: Source::File(path.to_path_buf()),
            reason: format!("sla.{key} must be a string or a number, found {}", other.type_str()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_the_products_sla() {
        let s = Sla::default();
        assert_eq!(s.slo.value, Duration::from_secs(5));
        assert_eq!(s.error_budget.value, 0.01);
        assert_eq!(s.reply_timeout.value, Duration::from_secs(30));
        assert_eq!(s.min_replies.value, 100);
        assert_eq!(percent(0.005), "0.5%");
        assert!(crate::compare::share("101%").is_err() && crate::compare::share("x").is_err());
    }

    #[test]
    fn the_environment_beats_the_file_and_typos_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[sla]\nslo = \"3s\"\nerror_budget = \"2%\"\n").unwrap();
        let env = [("BROKER_OPS_SLA_SLO".to_string(), "4s".to_string())].into_iter().collect();
        let l = Layers::new(env, Some(&path)).unwrap();
        let s = resolve(&l).unwrap();
        assert_eq!((s.slo.value, &s.slo.source), (Duration::from_secs(4), &Source::Env("BROKER_OPS_SLA_SLO".into())));
        assert_eq!((s.error_budget.value, &s.error_budget.source), (0.02, &Source::File(path.clone())));
        std::fs::write(&path, "[sla]\nsol = \"3s\"\n").unwrap();
        let e = resolve(&Layers::new(Default::default(), Some(&path)).unwrap()).unwrap_err().to_string();
        assert!(e.contains("unknown key `sla.sol`"), "{e}");
    }
}
