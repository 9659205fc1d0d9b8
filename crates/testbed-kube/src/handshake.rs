//! Whether a TLS server answers at an address: the check between "a port is open" and "the API answers with
//! these credentials". An LXD proxy device accepts every connection on its host port whether or not anything
//! listens behind it, so an accepted connection proves nothing; a TLS handshake that completes does.
//!
//! The handshake trusts any certificate and sends no credential: it asks only whether TLS is spoken there.
//! Whether the certificate is the cluster's is the API check's business (with the kubeconfig's CA).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::config::Network;

/// A handshake that completed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    /// The protocol agreed (`TLSv1_3`).
    pub version: String,
    /// How many certificates the server presented.
    pub certificates: usize,
}

/// Why no handshake completed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeFailure {
    /// Nothing listens there: the connection was refused.
    #[error("connection refused")]
    Refused,
    /// The connection was accepted, then closed before the server said anything (an LXD proxy with nothing
    /// listening behind it in the container does this).
    #[error("accepted, then closed before any TLS answer")]
    Closed,
    /// The connection was accepted, and nothing came back in time (a server that waits for something else
    /// than TLS).
    #[error("accepted, then no TLS answer within {0} s")]
    Silent(u64),
    /// No connection in time.
    #[error("no connection within {0} s")]
    Timeout(u64),
    /// Something answered that is not a TLS server.
    #[error("the answer is not TLS: {0}")]
    NotTls(String),
    /// Anything else the network said.
    #[error("{0}")]
    Other(String),
}

/// Tries a TLS handshake with `host:port`, through `network` (a simulated machine's routed network, or
/// straight there), waiting at most `timeout` to connect and again for the handshake.
pub async fn tls_handshake(
    network: &Network,
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<Handshake, HandshakeFailure> {
    let to: SocketAddr = match network {
        Network::Routed(route) => route(host, port),
        Network::Direct => (host, port)
            .to_socket_addrs()
            .map_err(|e| HandshakeFailure::Other(format!("cannot resolve {host}: {e}")))?
            .next()
            .ok_or_else(|| HandshakeFailure::Other(format!("{host} has no address")))?,
    };
    let name = host.trim_matches(['[', ']']).to_owned();
    tokio::task::spawn_blocking(move || handshake_at(to, &name, timeout))
        .await
        .unwrap_or_else(|e| Err(HandshakeFailure::Other(format!("the handshake stopped: {e}"))))
}

fn handshake_at(to: SocketAddr, name: &str, timeout: Duration) -> Result<Handshake, HandshakeFailure> {
    let secs = timeout.as_secs().max(1);
    let mut sock = TcpStream::connect_timeout(&to, timeout).map_err(|e| match e.kind() {
        std::io::ErrorKind::ConnectionRefused => HandshakeFailure::Refused,
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => HandshakeFailure::Timeout(secs),
        _ => HandshakeFailure::Other(format!("connecting failed: {e}")),
    })?;
    let io = |e: std::io::Error| HandshakeFailure::Other(e.to_string());
    sock.set_read_timeout(Some(timeout)).map_err(io)?;
    sock.set_write_timeout(Some(timeout)).map_err(io)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| HandshakeFailure::Other(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    let server_name = ServerName::try_from(name.to_owned())
        .map_err(|e| HandshakeFailure::Other(format!("{name} is not a server name: {e}")))?;
    let mut conn = rustls::ClientConnection::new(Arc::new(config), server_name)
        .map_err(|e| HandshakeFailure::Other(e.to_string()))?;
    while conn.is_handshaking() {
        match conn.complete_io(&mut sock) {
            Ok((0, 0)) if conn.is_handshaking() => return Err(HandshakeFailure::Closed),
            Ok(_) => {}
            Err(e) => {
                return Err(match e.kind() {
                    std::io::ErrorKind::UnexpectedEof
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe => HandshakeFailure::Closed,
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => HandshakeFailure::Silent(secs),
                    std::io::ErrorKind::InvalidData => HandshakeFailure::NotTls(e.to_string()),
                    _ => HandshakeFailure::Other(e.to_string()),
                })
            }
        }
    }
    let version = conn.protocol_version().map(|v| format!("{v:?}")).unwrap_or_else(|| "TLS".into());
    let certificates = conn.peer_certificates().map(<[_]>::len).unwrap_or(0);
    // Say goodbye; what the server does next does not matter.
    conn.send_close_notify();
    let _ = conn.write_tls(&mut sock);
    let _ = sock.flush();
    let _ = sock.read(&mut [0u8; 1]);
    Ok(Handshake { version, certificates })
}

/// Takes any certificate: the handshake only asks whether TLS is spoken, and sends nothing after it.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_closing_listener_a_silent_one_and_no_listener_are_told_apart() {
        let t = Duration::from_millis(500);
        // Accepts and closes, as LXD's proxy does with nothing behind it.
        let closing = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let at = closing.local_addr().unwrap();
        std::thread::spawn(move || {
            for s in closing.incoming() {
                drop(s);
            }
        });
        let got = tls_handshake(&Network::Direct, "127.0.0.1", at.port(), t).await;
        assert_eq!(got, Err(HandshakeFailure::Closed));

        // Accepts and says nothing (another program that is not a TLS server).
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let silent_at = silent.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut kept = Vec::new();
            for s in silent.incoming() {
                kept.push(s);
            }
        });
        let got = tls_handshake(&Network::Direct, "127.0.0.1", silent_at.port(), t).await;
        assert_eq!(got, Err(HandshakeFailure::Silent(1)));

        // Answers in plain text.
        let plain = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let plain_at = plain.local_addr().unwrap();
        std::thread::spawn(move || {
            for mut s in plain.incoming().flatten() {
                let _ = s.write_all(b"HTTP/1.0 400 Bad Request\r\n\r\n");
            }
        });
        let got = tls_handshake(&Network::Direct, "127.0.0.1", plain_at.port(), t).await;
        assert!(matches!(got, Err(HandshakeFailure::NotTls(_))), "{got:?}");

        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let nowhere = free.local_addr().unwrap();
        drop(free);
        assert_eq!(
            tls_handshake(&Network::Direct, "127.0.0.1", nowhere.port(), t).await,
            Err(HandshakeFailure::Refused)
        );

        // A TLS server: the handshake completes, whatever its certificate.
        let tls = crate::fake::FakeTls::generate("some-ca");
        let server = crate::fake::FakeKube::start_tls(crate::fake::FakeState::default(), &tls).await.unwrap();
        let served: SocketAddr = server.url().trim_start_matches("https://").parse().unwrap();
        let done = tls_handshake(&Network::Direct, "127.0.0.1", served.port(), t).await.unwrap();
        assert!(done.certificates >= 1, "{done:?}");

        // A routed network sends the connection elsewhere.
        let routed = Network::routed(move |_, _| at);
        assert_eq!(tls_handshake(&routed, "10.0.0.1", 16443, t).await, Err(HandshakeFailure::Closed));
    }
}
