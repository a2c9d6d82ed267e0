//! The one way broker-ops sends mail (alerts, resume links): lettre's SMTP transport with a
//! time-out on every read and write, and the whole exchange of one attempt bounded as well, so
//! a server that accepts the connection and then says nothing (at the greeting, at AUTH, after
//! DATA) cannot hold the command. A password is never sent over a connection without TLS to a
//! host that is not loopback, unless `SMTP_ALLOW_PLAINTEXT_AUTH` says so.

use std::time::Duration;

use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::Config;

/// An SMTP server to send through. The URL (which may hold a password) never leaves this type
/// unredacted.
#[derive(Clone)]
pub struct Smtp {
    url: String,
    /// The address shown in errors and reports, password removed.
    pub addr: String,
    pub timeout: Duration,
}

impl std::fmt::Debug for Smtp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.addr)
    }
}

/// How one attempt ended, when it did not deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmtpFailure {
    /// The server refused for good (5xx): retrying will not help.
    Rejected(String),
    /// A 4xx, a time-out, a refused connection, a failed handshake: worth another attempt.
    Transient(String),
}

impl Smtp {
    /// Checks the URL as lettre reads it, and refuses plain-text AUTH to a remote host.
    pub fn new(url: &str, timeout: Duration, allow_plaintext_auth: bool) -> Result<Smtp, String> {
        let addr = crate::redact::url(url);
        AsyncSmtpTransport::<Tokio1Executor>::from_url(url).map_err(|e| format!("SMTP_URL {addr}: {e}"))?;
        let u = url::Url::parse(url).map_err(|e| format!("SMTP_URL {addr}: {e}"))?;
        let tls = u.scheme() == "smtps" || u.query_pairs().any(|(k, v)| k == "tls" && v == "required");
        let loopback = match u.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            // smtp is not a special scheme to the URL parser: an IP address comes as a name.
            Some(url::Host::Domain(d)) => {
                d == "localhost"
                    || d.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
            }
            None => false,
        };
        if u.password().is_some() && !tls && !loopback && !allow_plaintext_auth {
            return Err(format!(
                "SMTP_URL {addr}: refusing to send the password without TLS to a host that is not loopback; \
                 use smtps:// or ?tls=required, or set SMTP_ALLOW_PLAINTEXT_AUTH=true"
            ));
        }
        Ok(Smtp { url: url.to_string(), addr, timeout })
    }

    /// The configured server, `None` when `SMTP_URL` is unset.
    pub fn from_config(config: &Config) -> Result<Option<Smtp>, String> {
        use secrecy::ExposeSecret;
        match &config.smtp_url {
            None => Ok(None),
            Some(u) => {
                let s = Smtp::new(u.value.expose_secret(), config.timeout.value, config.smtp_allow_plaintext_auth)?;
                Ok(Some(s))
            }
        }
    }

    /// The transport the URL describes, its TLS under the trust policy ([`crate::tls`]): with
    /// `TLS_CA_FILE` set, its roots are added to the platform's for STARTTLS (`?tls=required`,
    /// or opportunistic) and for SMTPS alike.
    fn transport(&self) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
        use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::from_url(&self.url)
            .map_err(|e| format!("invalid SMTP_URL: {e}"))?
            .timeout(Some(self.timeout));
        let extra = &crate::tls::trust().extra;
        let u = url::Url::parse(&self.url).map_err(|e| format!("invalid SMTP_URL: {e}"))?;
        if let (false, Some(host)) = (extra.is_empty(), u.host_str()) {
            let mut p = TlsParameters::builder(host.trim_matches(['[', ']']).to_string());
            for c in extra {
                p = p.add_root_certificate(Certificate::from_der(c.to_vec()).map_err(|e| format!("TLS_CA_FILE: {e}"))?);
            }
            let params = p.build_rustls().map_err(|e| format!("SMTP TLS: {e}"))?;
            let required = u.query_pairs().any(|(k, v)| k == "tls" && v == "required");
            b = match (u.scheme(), required) {
                ("smtps", _) => b.tls(Tls::Wrapper(params)),
                (_, true) => b.tls(Tls::Required(params)),
                _ if u.query_pairs().any(|(k, v)| k == "tls" && v == "opportunistic") => {
                    b.tls(Tls::Opportunistic(params))
                }
                _ => b,
            };
        }
        Ok(b.build())
    }

    /// One attempt: connect, greet, (STARTTLS, AUTH,) send. Each read and write has the
    /// time-out, and the whole attempt at most twice it (a server that answers each step just
    /// in time cannot stretch it further).
    pub async fn send(&self, msg: Message) -> Result<(), SmtpFailure> {
        crate::http::ensure_crypto_provider();
        let transport = self.transport().map_err(SmtpFailure::Rejected)?;
        let whole = self.timeout * 2;
        match tokio::time::timeout(whole, transport.send(msg)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) if e.is_permanent() => Err(SmtpFailure::Rejected(e.to_string())),
            // A refused certificate is said in words (and retrying will not change it).
            Ok(Err(e)) if crate::tls::explain(&e.to_string()).is_some() => {
                Err(SmtpFailure::Rejected(crate::tls::with_reason(&e.to_string())))
            }
            Ok(Err(e)) => Err(SmtpFailure::Transient(e.to_string())),
            Err(_) => Err(SmtpFailure::Transient(format!(
                "the server did not finish the exchange within {}",
                crate::duration::format_duration(whole)
            ))),
        }
    }

    /// EHLO and NOOP, within the time-out (for `doctor`).
    pub async fn check(&self) -> Result<(), String> {
        crate::http::ensure_crypto_provider();
        let transport = self.transport()?;
        match tokio::time::timeout(self.timeout, transport.test_connection()).await {
            Ok(Ok(true)) => Ok(()),
            Ok(Ok(false)) => Err("the server did not answer NOOP".into()),
            Ok(Err(e)) => Err(format!("SMTP {}: {}", self.addr, crate::tls::with_reason(&e.to_string()))),
            Err(_) => Err(format!(
                "SMTP {}: no answer within {}",
                self.addr,
                crate::duration::format_duration(self.timeout * 2)
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_go_only_over_tls_or_to_loopback() {
        let t = Duration::from_secs(1);
        let e = Smtp::new("smtp://u:pw@mail.example.com:587", t, false).unwrap_err();
        assert!(e.contains("refusing to send the password") && !e.contains("pw@"), "{e}");
        assert!(Smtp::new("smtp://u:pw@mail.example.com:587", t, true).is_ok());
        assert!(Smtp::new("smtp://u:pw@mail.example.com:587?tls=required", t, false).is_ok());
        assert!(Smtp::new("smtps://u:pw@mail.example.com", t, false).is_ok());
        assert!(Smtp::new("smtp://u:pw@127.0.0.1:2525", t, false).is_ok());
        assert!(Smtp::new("smtp://mail.example.com:25", t, false).is_ok(), "no password, nothing to protect");
    }
}
