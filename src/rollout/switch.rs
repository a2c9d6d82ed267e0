//! The app's environment kill switch (`ENABLE_ABLY_REALTIME=false`), read as the app reads it:
//! below the operations and the cohorts that both consult it.

use crate::config::Config;

/// Whether the environment's kill switch holds for `flag`: `ENABLE_ABLY_REALTIME=false` as the
/// app's environment has it (set here too, so that this tool tells the truth), read exactly as
/// the app's code reads it: only the string `false` is the switch (`0`, `no` or `FALSE` are not).
pub fn kill_switch(config: &Config, flag: &str) -> bool {
    flag == crate::contracts::DEFAULT_FLAG && config.enable_ably_realtime.as_ref().is_some_and(|s| s.value == "false")
}

/// What was read of the kill switch when it is set but is not the switch: the operator meant
/// "off" and the app will still use the bucket.
pub fn kill_switch_note(config: &Config) -> Option<String> {
    let s = config.enable_ably_realtime.as_ref().filter(|s| s.value != "false")?;
    Some(format!(
        "note: ENABLE_ABLY_REALTIME={:?} ({}) is not the kill switch: the app's code treats only the exact string \
         \"false\" as off, so the flag and its buckets decide",
        crate::output::escape(&s.value),
        s.source
    ))
}
