//! The list of every setting the tool reads: the config file's known keys come from it, and a
//! test checks that docs/configuration.md names each one.

/// One setting: its variable name (the config file key is the same in lower case).
#[derive(Debug, Clone, Copy)]
pub struct SettingInfo {
    pub name: &'static str,
    pub secret: bool,
}

const fn plain(name: &'static str) -> SettingInfo {
    SettingInfo { name, secret: false }
}

const fn secret(name: &'static str) -> SettingInfo {
    SettingInfo { name, secret: true }
}

pub const SETTINGS: &[SettingInfo] = &[
    secret("ABLY_API_KEY"),
    secret("ABLY_WEBHOOK_KEY"),
    plain("ABLY_REST_URL"),
    plain("CHATWOOT_BASE_URL"),
    plain("CHATWOOT_INBOX_IDENTIFIER"),
    secret("CHATWOOT_API_TOKEN"),
    plain("CHATWOOT_ACCOUNT_ID"),
    secret("REDIS_URL"),
    secret("DATABASE_URL"),
    secret("RESUME_TOKEN_SECRET"),
    secret("RESUME_TOKEN_KEYS"),
    plain("RESUME_TOKEN_KID"),
    plain("APP_BASE_URL"),
    plain("RUNBOOK_BASE_URL"),
    secret("SLACK_WEBHOOK_URL"),
    secret("SLACK_BOT_TOKEN"),
    plain("SLACK_CHANNEL"),
    plain("SLACK_API_URL"),
    secret("SMTP_URL"),
    plain("SMTP_ALLOW_PLAINTEXT_AUTH"),
    plain("ALERT_EMAIL_FROM"),
    plain("ALERT_EMAIL_TO"),
    plain("BROKER_OPS_STATE_DIR"),
    plain("ALERT_LOCK_TTL"),
    plain("ALERT_SILENCE_MAX"),
    plain("ENABLE_ABLY_REALTIME"),
    plain("BROKER_QUEUE"),
    plain("BULL_PREFIX"),
    plain("REDIS_KEY_PREFIX"),
    plain("BROKER_OPS_TIMEOUT"),
    secret("BROKER_OPS_SANDBOX_KEY"),
    plain("BROKER_OPS_SANDBOX_INBOX"),
    plain("BROKER_OPS_ACTOR"),
    plain("TLS_CA_FILE"),
    plain("TLS_CLIENT_CERT"),
    plain("TLS_CLIENT_KEY"),
];

pub fn is_secret(name: &str) -> bool {
    SETTINGS.iter().any(|s| s.name == name && s.secret)
}
