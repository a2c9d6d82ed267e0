//! Email: a plain-text and an HTML part, a subject that starts with the severity and the dedup
//! key, and threading headers so that reminders and the resolved mail join the first one.

use std::ops::ControlFlow;

use lettre::Message;
use lettre::message::{Mailbox, Mailboxes, MultiPart, header};
use serde::{Deserialize, Serialize};

use super::model::truncate;
use super::{Kind, Notice};
use crate::retry::{Attempt, RetryPolicy, Retrying};
use crate::smtp::{Smtp, SmtpFailure};

/// Where alert mail goes: the SMTP server and the addresses.
#[derive(Clone)]
pub struct EmailTarget {
    pub smtp: Smtp,
    pub from: Mailbox,
    pub to: Vec<Mailbox>,
}

impl std::fmt::Debug for EmailTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.address())
    }
}

impl EmailTarget {
    /// Parses the addresses; `to` is a comma-separated list.
    pub fn new(smtp: Smtp, from: &str, to: &str) -> Result<EmailTarget, String> {
        let from: Mailbox = from.trim().parse().map_err(|e| format!("ALERT_EMAIL_FROM {from:?}: {e}"))?;
        let to: Mailboxes = to.parse().map_err(|e| format!("ALERT_EMAIL_TO {to:?}: {e}"))?;
        let to: Vec<Mailbox> = to.into_iter().collect();
        if to.is_empty() {
            return Err("ALERT_EMAIL_TO holds no address".into());
        }
        Ok(EmailTarget { smtp, from, to })
    }

    pub fn address(&self) -> String {
        self.smtp.addr.clone()
    }
}

/// A rendered mail, kept as data so that the outbox can hold it and `--dry-run` can show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    pub subject: String,
    pub message_id: String,
    pub in_reply_to: Option<String>,
    pub text: String,
    pub html: String,
}

/// The Message-ID of the n-th mail of an incident (n = 1 is the first, which the others answer).
pub fn message_id(incident_id: &str, n: u32, host: &str) -> String {
    let host: String = host.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.').collect();
    let host = if host.is_empty() { "localhost".to_string() } else { host };
    format!("<{incident_id}.{n}@broker-ops.{host}>")
}

pub fn render(notice: &Notice, target: &EmailTarget, n: u32) -> Mail {
    let a = &notice.alert;
    let subject = format!("[{}] {} {}{}", a.severity.upper(), a.dedup_key, notice.subject_marker(), a.summary);
    let subject = truncate(&subject.replace(['\r', '\n'], " "), 200);
    let opened = notice.opened_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut rows: Vec<(String, String)> = vec![
        ("Severity".into(), a.severity.upper()),
        ("Notice".into(), notice.kind.as_str().into()),
        ("Source".into(), format!("{} · {}", a.source.host, a.source.command)),
        ("Dedup key".into(), a.dedup_key.clone()),
        ("Opened".into(), opened),
    ];
    if notice.kind == Kind::Resolved {
        let lasted = (notice.at - notice.opened_at).to_std().unwrap_or_default();
        rows.push(("Lasted".into(), crate::duration::format_duration(lasted)));
    }
    rows.extend(a.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    let links: Vec<(&str, &String)> = [("Runbook", &a.links.runbook), ("Conversation", &a.links.conversation)]
        .into_iter()
        .filter_map(|(l, u)| u.as_ref().map(|u| (l, u)))
        .collect();

    let mut text = format!("{}\n\n", a.summary);
    if !a.details.trim().is_empty() {
        text.push_str(&format!("{}\n\n", a.details.trim_end()));
    }
    for (k, v) in &rows {
        text.push_str(&format!("{k}: {v}\n"));
    }
    for (l, u) in &links {
        text.push_str(&format!("{l}: {u}\n"));
    }
    text.push_str(&format!("\n-- \nbroker-ops {} · incident {}\n", crate::VERSION, notice.incident_id));

    let mut html = format!(
        "<!doctype html><html><body style=\"font-family:sans-serif\">\
         <h2 style=\"color:{}\">{}</h2>",
        a.severity.colour(),
        esc(&format!("{} {}", a.severity.upper(), a.summary))
    );
    if !a.details.trim().is_empty() {
        html.push_str(&format!("<pre style=\"white-space:pre-wrap\">{}</pre>", esc(a.details.trim_end())));
    }
    html.push_str("<table cellpadding=\"4\">");
    for (k, v) in &rows {
        html.push_str(&format!("<tr><th align=\"left\">{}</th><td>{}</td></tr>", esc(k), esc(v)));
    }
    html.push_str("</table>");
    for (l, u) in &links {
        html.push_str(&format!("<p><a href=\"{}\">{}</a></p>", esc(u), esc(l)));
    }
    html.push_str(&format!(
        "<p style=\"color:#888\">broker-ops {} · incident {}</p></body></html>",
        crate::VERSION,
        esc(&notice.incident_id)
    ));

    Mail {
        from: target.from.to_string(),
        to: target.to.iter().map(|m| m.to_string()).collect(),
        subject,
        message_id: message_id(&notice.incident_id, n, &a.source.host),
        in_reply_to: (n > 1).then(|| message_id(&notice.incident_id, 1, &a.source.host)),
        text,
        html,
    }
}

fn esc(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Builds the MIME message.
pub fn message(mail: &Mail) -> Result<Message, String> {
    let mut b = Message::builder()
        .from(mail.from.parse().map_err(|e| format!("from {:?}: {e}", mail.from))?)
        .subject(&mail.subject)
        .message_id(Some(mail.message_id.clone()))
        .header(header::Date::now());
    for to in &mail.to {
        b = b.to(to.parse().map_err(|e| format!("to {to:?}: {e}"))?);
    }
    if let Some(parent) = &mail.in_reply_to {
        b = b.in_reply_to(parent.clone()).references(parent.clone());
    }
    b.multipart(MultiPart::alternative_plain_html(mail.text.clone(), mail.html.clone()))
        .map_err(|e| format!("building the message: {e}"))
}

/// Sends one mail; SMTP 4xx, time-outs and connection failures are retried, 5xx is final.
pub async fn send(target: &EmailTarget, mail: &Mail, policy: &RetryPolicy) -> Result<u32, super::DeliveryError> {
    let address = target.address();
    let fail = |reason: String| super::DeliveryError {
        dependency: "smtp",
        operation: "send mail",
        address: address.clone(),
        reason,
        queueable: false,
        attempts: 0,
    };
    let msg = message(mail).map_err(fail)?;
    let mut retrying = Retrying::new(policy);
    loop {
        let outcome = match target.smtp.send(msg.clone()).await {
            Ok(()) => Attempt::Done(()),
            Err(SmtpFailure::Rejected(e)) => Attempt::Rejected(e),
            Err(SmtpFailure::Transient(e)) => Attempt::Transient(e),
        };
        if let ControlFlow::Break(result) = retrying.settle(outcome).await {
            let attempts = retrying.attempts();
            return result.map(|()| attempts).map_err(|f| f.into_error("smtp", "send mail", &address));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::model::{Alert, AlertSource, Severity};

    #[test]
    fn later_mails_answer_the_first_and_the_subject_leads_with_severity_and_key() {
        let smtp = Smtp::new("smtp://127.0.0.1:25", std::time::Duration::from_secs(1), false).unwrap();
        let target = EmailTarget::new(smtp, "ops@example.com", "a@example.com, b@example.com").unwrap();
        let a = Alert::new(
            Severity::Resolved,
            "Ably <down>",
            AlertSource { host: "cron-1".into(), command: "monitor".into() },
            Some("ably-health".into()),
        );
        let at = chrono::Utc::now();
        let n = Notice { alert: a, kind: Kind::Resolved, incident_id: "inc".into(), opened_at: at, at, test: false };
        let m = render(&n, &target, 3);
        assert!(m.subject.starts_with("[RESOLVED] ably-health "), "{}", m.subject);
        assert_eq!(m.to.len(), 2);
        assert_eq!(m.message_id, "<inc.3@broker-ops.cron-1>");
        assert_eq!(m.in_reply_to.as_deref(), Some("<inc.1@broker-ops.cron-1>"));
        assert!(m.html.contains("Ably &lt;down&gt;"));
        let raw = String::from_utf8(message(&m).unwrap().formatted()).unwrap();
        assert!(raw.contains("In-Reply-To: <inc.1@broker-ops.cron-1>"), "{raw}");
        assert!(raw.contains("multipart/alternative"));
    }

    #[test]
    fn bad_addresses_and_urls_are_named() {
        let smtp = Smtp::new("smtp://127.0.0.1", std::time::Duration::from_secs(1), false).unwrap();
        let e = EmailTarget::new(smtp, "not an address", "a@example.com").unwrap_err();
        assert!(e.contains("ALERT_EMAIL_FROM"), "{e}");
        let e = Smtp::new("smtp://u:pw@127.0.0.1?tls=bogus", std::time::Duration::from_secs(1), false).unwrap_err();
        assert!(e.contains("SMTP_URL") && !e.contains("pw"), "{e}");
    }
}
