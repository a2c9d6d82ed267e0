//! One trust policy for every TLS connection the tool makes (HTTP to Ably, Chatwoot, Slack and
//! the web app; Redis; Postgres; SMTP): the operating system's roots, which `SSL_CERT_FILE` and
//! `SSL_CERT_DIR` replace as OpenSSL-based tools read them, plus the certificates of
//! `TLS_CA_FILE` (a PEM file, several certificates allowed), added for every connection. The
//! binary installs the policy once, from the configuration, before the first connection.
//!
//! A refused certificate is said in one line, in words: which dependency, where, and why.

use std::sync::OnceLock;

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// The extra roots (`TLS_CA_FILE`) in force, and the file they came from.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    pub extra: Vec<CertificateDer<'static>>,
    pub ca_file: Option<String>,
    /// The client certificate and key shown to a Redis or Postgres that asks for one
    /// (`TLS_CLIENT_CERT`, `TLS_CLIENT_KEY`).
    pub client: Option<ClientIdentity>,
}

/// A client certificate chain and its private key: their files, and their PEM text.
#[derive(Clone)]
pub struct ClientIdentity {
    pub cert_file: String,
    pub key_file: String,
    pub cert_pem: Vec<u8>,
    pub key_pem: secrecy::SecretSlice<u8>,
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClientIdentity({}, key {})", self.cert_file, self.key_file)
    }
}

impl ClientIdentity {
    /// Reads and checks both files: the certificate holds a certificate, the key a private key.
    pub fn read(cert_file: &str, key_file: &str) -> Result<ClientIdentity, String> {
        use rustls::pki_types::PrivateKeyDer;
        let read = |p: &str| std::fs::read(p).map_err(|e| format!("{p}: {e}"));
        let cert_pem = read(cert_file)?;
        read_pem_certificates(&cert_pem).map_err(|e| format!("TLS_CLIENT_CERT {cert_file}: {e}"))?;
        let key_pem = read(key_file)?;
        PrivateKeyDer::from_pem_slice(&key_pem)
            .map_err(|e| format!("TLS_CLIENT_KEY {key_file}: not a PEM private key ({e})"))?;
        Ok(ClientIdentity {
            cert_file: cert_file.to_string(),
            key_file: key_file.to_string(),
            cert_pem,
            key_pem: key_pem.into(),
        })
    }
}

static TRUST: OnceLock<Trust> = OnceLock::new();
static PROVIDER: std::sync::Once = std::sync::Once::new();

/// Installs rustls' ring provider as the process default. reqwest, redis and lettre are built
/// without a provider of their own so that exactly one is linked in; this must run before the
/// first TLS connection.
pub fn ensure_crypto_provider() {
    PROVIDER.call_once(|| {
        // Err means another provider was installed first (by an embedding program); that one
        // serves equally well.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Installs the trust policy; the first call wins (the binary makes it once, before any
/// connection).
pub fn install(trust: Trust) {
    let _ = TRUST.set(trust);
}

/// The policy in force (no extra roots when none was installed).
pub fn trust() -> &'static Trust {
    TRUST.get_or_init(Trust::default)
}

/// The certificates of a PEM file: one or more `CERTIFICATE` blocks, nothing else counted.
pub fn read_pem_certificates(text: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let mut out = Vec::new();
    for c in CertificateDer::pem_slice_iter(text) {
        out.push(c.map_err(|e| format!("not a PEM certificate file: {e}"))?);
    }
    if out.is_empty() {
        return Err("no PEM certificate in it (expected -----BEGIN CERTIFICATE-----)".into());
    }
    Ok(out)
}

/// Every trusted root: the platform's (or `SSL_CERT_FILE`/`SSL_CERT_DIR`'s), then the extra
/// ones. A platform store that cannot be read leaves the extra roots alone in force.
fn certificates() -> Vec<CertificateDer<'static>> {
    let native = rustls_native_certs::load_native_certs();
    for e in &native.errors {
        tracing::debug!("trust store: {e}");
    }
    native.certs.into_iter().chain(trust().extra.iter().cloned()).collect()
}

/// The trusted roots as rustls takes them.
pub fn roots() -> RootCertStore {
    let mut store = RootCertStore::empty();
    let (added, ignored) = store.add_parsable_certificates(certificates());
    tracing::debug!("trust store: {added} roots ({ignored} unusable)");
    store
}

/// A rustls client configuration under the policy: the trusted roots, and the client
/// certificate (`TLS_CLIENT_CERT`, `TLS_CLIENT_KEY`) when one is set.
pub fn client_config() -> std::io::Result<rustls::ClientConfig> {
    use rustls::pki_types::PrivateKeyDer;
    use secrecy::ExposeSecret;
    ensure_crypto_provider();
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots());
    let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, e);
    match &trust().client {
        None => Ok(builder.with_no_client_auth()),
        Some(c) => {
            let chain = read_pem_certificates(&c.cert_pem).map_err(invalid)?;
            let key = PrivateKeyDer::from_pem_slice(c.key_pem.expose_secret())
                .map_err(|e| invalid(format!("TLS_CLIENT_KEY {}: {e}", c.key_file)))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| invalid(format!("TLS_CLIENT_CERT {}: {e}", c.cert_file)))
        }
    }
}

/// The trusted roots as one PEM bundle, for clients that take their roots as PEM (Redis).
pub fn roots_pem() -> Vec<u8> {
    use base64::Engine;
    let mut out = String::new();
    for der in certificates() {
        let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        for chunk in b64.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
    }
    out.into_bytes()
}

/// The number right after `marker` in `text`.
fn after(text: &str, marker: &str) -> Option<i64> {
    let rest = &text[text.find(marker)? + marker.len()..];
    rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// `text` with the refused certificate's reason in words before it, when it is one.
pub fn with_reason(text: &str) -> String {
    match explain(text) {
        Some(why) => format!("{why} ({text})"),
        None => text.to_string(),
    }
}

/// What a TLS library's words for a refused certificate mean, and what to do, when `text` (an
/// error and its causes) holds one; `None` for any other error.
pub fn explain(text: &str) -> Option<String> {
    let t = text;
    if t.contains("UnknownIssuer") || t.contains("unable to get local issuer") || t.contains("self-signed") {
        return Some(
            "the server's certificate was signed by a CA this host does not trust: set TLS_CA_FILE to the CA that \
             signed it (PEM)"
                .into(),
        );
    }
    if t.contains("Expired") || t.contains("certificate expired") || t.contains("certificate has expired") {
        let on = after(t, "not valid after ")
            .and_then(|secs| chrono::DateTime::from_timestamp(secs, 0))
            .map(|d| format!(" on {}", d.format("%Y-%m-%d")))
            .unwrap_or_default();
        return Some(format!("the server's certificate has expired{on} (or this host's clock is wrong)"));
    }
    if t.contains("NotValidYet") || t.contains("not valid yet") {
        return Some("the server's certificate is not valid yet (or this host's clock is wrong)".into());
    }
    if t.contains("NotValidForName") || t.contains("not valid for name") || t.contains("hostname mismatch") {
        return Some("the server's certificate is for another name than the one connected to".into());
    }
    if t.contains("invalid peer certificate") || t.contains("InvalidCertificate") {
        return Some("the server's certificate was refused".into());
    }
    None
}

/// What a TLS server presented: the protocol agreed, the leaf certificate's issuer and subject,
/// and when it expires.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Peer {
    pub protocol: String,
    pub issuer: String,
    pub subject: String,
    pub not_after: chrono::DateTime<chrono::Utc>,
}

impl Peer {
    /// Whole days left before the certificate expires (negative once it has).
    pub fn days_left(&self, now: chrono::DateTime<chrono::Utc>) -> i64 {
        (self.not_after - now).num_days()
    }
}

/// Connects to `host:port` under the trust policy, completes the handshake and reads the leaf
/// certificate; the refusal in words when the certificate is not trusted.
pub async fn inspect(host: &str, port: u16, timeout: std::time::Duration) -> Result<Peer, String> {
    use rustls::pki_types::ServerName;
    ensure_crypto_provider();
    let config = rustls::ClientConfig::builder().with_root_certificates(roots()).with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let name = ServerName::try_from(host.trim_matches(['[', ']']).to_string()).map_err(|e| format!("{host}: {e}"))?;
    let handshake = async {
        let tcp = tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port)).await?;
        connector.connect(name, tcp).await
    };
    let tls = match tokio::time::timeout(timeout, handshake).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => return Err(format!("TLS to {host}:{port}: {}", with_reason(&e.to_string()))),
        Err(_) => {
            let waited = crate::duration::format_duration(timeout);
            return Err(format!("TLS to {host}:{port}: no answer within {waited}"));
        }
    };
    let (_, conn) = tls.get_ref();
    let protocol = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_string(),
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_string(),
        Some(v) => format!("{v:?}"),
        None => "unknown".to_string(),
    };
    let leaf = conn.peer_certificates().and_then(|c| c.first()).ok_or(format!("{host}:{port}: no certificate"))?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| format!("{host}:{port}: the certificate does not parse: {e}"))?;
    let not_after = chrono::DateTime::from_timestamp(cert.validity().not_after.timestamp(), 0)
        .ok_or(format!("{host}:{port}: the certificate's expiry is out of range"))?;
    Ok(Peer { protocol, issuer: cert.issuer().to_string(), subject: cert.subject().to_string(), not_after })
}

/// `host` and port of an `https` URL (`None` for any other scheme).
pub fn https_target(url: &url::Url) -> Option<(String, u16)> {
    (url.scheme() == "https")
        .then(|| (url.host_str().unwrap_or_default().to_string(), url.port_or_known_default().unwrap_or(443)))
}
