//! Making secrets safe to show: URLs lose their passwords, webhook URLs their paths.

use url::Url;

/// A URL with its password (and query string, which may hold tokens) replaced by `***`.
/// Text that does not parse as a URL is not shown at all: it may be a secret typed in the
/// wrong variable.
pub fn url(text: &str) -> String {
    match Url::parse(text) {
        Ok(mut u) => {
            if u.password().is_some() {
                // set_password only fails for URLs that cannot have one, which we just saw has one.
                let _ = u.set_password(Some("***"));
            }
            if u.query().is_some() {
                u.set_query(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "<unparsable URL>".to_string(),
    }
}

/// A URL whose whole path is secret (Slack incoming webhooks): only scheme and host remain.
pub fn secret_path_url(text: &str) -> String {
    match Url::parse(text) {
        Ok(u) => match u.port() {
            Some(p) => format!("{}://{}:{p}/***", u.scheme(), u.host_str().unwrap_or("?")),
            None => format!("{}://{}/***", u.scheme(), u.host_str().unwrap_or("?")),
        },
        Err(_) => "<unparsable URL>".to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_and_paths_are_hidden() {
        assert_eq!(
            super::url("redis://default:hunter2hunter2@cache.example:6379/0"),
            "redis://default:***@cache.example:6379/0"
        );
        assert_eq!(super::url("postgres://u:pw@db/x?sslmode=require&password=pw"), "postgres://u:***@db/x?***");
        assert_eq!(super::secret_path_url("https://hooks.slack.com/services/T0/B0/XYZ"), "https://hooks.slack.com/***");
        assert_eq!(super::url("not a url with secret"), "<unparsable URL>");
        assert_eq!(super::secret_path_url("http://127.0.0.1:8080/services/x"), "http://127.0.0.1:8080/***");
        assert_eq!(super::url("http://user:pw@chat.example.com/"), "http://user:***@chat.example.com/");
    }
}
