//! `sandbox --tls-cert FILE --tls-key FILE`: the sandbox over HTTPS, so that smoke, probes, the
//! canary and webhook-test run over TLS end to end, trusting what the trust policy trusts.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// The server's certificate chain and private key, as PEM.
#[derive(Debug, Clone)]
pub struct TlsIdentity {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

/// The acceptor for `identity`, or why it cannot serve.
pub fn acceptor(identity: &TlsIdentity) -> Result<TlsAcceptor, String> {
    crate::http::ensure_crypto_provider();
    let chain: Vec<CertificateDer<'static>> = crate::tls::read_pem_certificates(&identity.cert_pem)?;
    let key = PrivateKeyDer::from_pem_slice(&identity.key_pem).map_err(|e| format!("--tls-key: {e}"))?;
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("--tls-cert/--tls-key: {e}"))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// A TCP listener whose connections are served only once their TLS handshake is done; a client
/// that fails it (or says nothing for 10 s) is dropped without stopping the others.
pub struct TlsListener {
    pub inner: TcpListener,
    pub acceptor: TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (tcp, addr) = axum::serve::Listener::accept(&mut self.inner).await;
            // Small SSE frames must leave at once (see the plain listener).
            let _ = tcp.set_nodelay(true);
            match tokio::time::timeout(Duration::from_secs(10), self.acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => return (tls, addr),
                Ok(Err(e)) => tracing::debug!("sandbox: TLS handshake with {addr}: {e}"),
                Err(_) => tracing::debug!("sandbox: TLS handshake with {addr}: no answer within 10s"),
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}
