//! Why an observation failed, in terms a user can act on.

use std::error::Error as StdError;
use std::io;

use secrecy::{ExposeSecret as _, SecretString};

/// Why an observation through the Kubernetes API failed.
///
/// Every variant names the server. None carries a credential: messages from the server and from the
/// network stack are scrubbed of the configured token and key before they are stored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KubeObserveError {
    /// The configuration cannot be used (a bad URL, CA certificate, client certificate or kubeconfig).
    #[error("cannot use the Kubernetes API configuration for {server}: {problem}")]
    Config {
        /// The server URL (or `(kubeconfig)` when the kubeconfig itself is at fault).
        server: String,
        /// What is wrong.
        problem: String,
    },

    /// Nothing answered: the connection was refused, timed out, or was closed before an answer.
    #[error("the Kubernetes API at {server} is unreachable: {cause}. Check that the API server is running and that the address and port are right{hint}")]
    Unreachable {
        /// The server URL.
        server: String,
        /// What the network said (`connection refused`, ...).
        cause: String,
        /// More advice for this cause, starting with `"; "`, or empty.
        hint: String,
    },

    /// The TLS handshake failed, most often because the server's certificate was not trusted.
    #[error("TLS with the Kubernetes API at {server} failed: {cause}. {hint}")]
    Tls {
        /// The server URL.
        server: String,
        /// What went wrong in the handshake.
        cause: String,
        /// What to check.
        hint: String,
    },

    /// The server did not accept the credentials (HTTP 401).
    #[error("the Kubernetes API at {server} did not accept the credentials (HTTP 401: {message}). Check the token or client certificate in the kubeconfig: it may belong to another cluster, or to an earlier incarnation of this one, or have expired")]
    Unauthorized {
        /// The server URL.
        server: String,
        /// The server's message.
        message: String,
    },

    /// The credentials were accepted but may not do this (HTTP 403).
    #[error("the Kubernetes API at {server} forbids the credentials to {what} (HTTP 403: {message}). Use a kubeconfig with more rights (the admin kubeconfig)")]
    Forbidden {
        /// The server URL.
        server: String,
        /// What was attempted.
        what: String,
        /// The server's message.
        message: String,
    },

    /// The server does not serve the API asked for (for example a host cluster asked for Karmada
    /// `Cluster` objects).
    #[error("the Kubernetes API at {server} does not serve {api}. {hint}")]
    NotServed {
        /// The server URL.
        server: String,
        /// The API group/version and resource.
        api: String,
        /// What to check.
        hint: String,
    },

    /// Anything else: an error status from the server, or an answer that could not be read.
    #[error("the Kubernetes API at {server} failed to {what}: {cause}")]
    Other {
        /// The server URL.
        server: String,
        /// What was attempted.
        what: String,
        /// What happened.
        cause: String,
    },
}

impl KubeObserveError {
    /// The server the error is about.
    pub fn server(&self) -> &str {
        match self {
            KubeObserveError::Config { server, .. }
            | KubeObserveError::Unreachable { server, .. }
            | KubeObserveError::Tls { server, .. }
            | KubeObserveError::Unauthorized { server, .. }
            | KubeObserveError::Forbidden { server, .. }
            | KubeObserveError::NotServed { server, .. }
            | KubeObserveError::Other { server, .. } => server,
        }
    }

    /// Whether nothing answered at the server's address.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, KubeObserveError::Unreachable { .. })
    }

    /// Whether the TLS handshake failed.
    pub fn is_tls(&self) -> bool {
        matches!(self, KubeObserveError::Tls { .. })
    }
}

/// Removes credentials from text that may quote them.
pub(crate) struct Redactor {
    secrets: Vec<SecretString>,
}

impl Redactor {
    pub(crate) fn new(secrets: Vec<SecretString>) -> Self {
        Redactor { secrets: secrets.into_iter().filter(|s| !s.expose_secret().trim().is_empty()).collect() }
    }

    pub(crate) fn redact(&self, text: &str) -> String {
        let mut text = text.to_string();
        for secret in &self.secrets {
            let secret = secret.expose_secret();
            for needle in [secret, secret.trim()] {
                if !needle.is_empty() && text.contains(needle) {
                    text = text.replace(needle, "<redacted>");
                }
            }
        }
        text
    }
}

/// Visits `error` and everything under it, including what an `io::Error` wraps (its `source()` skips
/// the wrapped error itself, which is where rustls puts its errors).
fn walk<'a>(error: &'a (dyn StdError + 'static), visit: &mut dyn FnMut(&'a (dyn StdError + 'static))) {
    let mut current = Some(error);
    let mut depth = 0;
    while let Some(e) = current {
        visit(e);
        if let Some(inner) = e.downcast_ref::<io::Error>().and_then(|io| io.get_ref()) {
            walk(inner, visit);
        }
        depth += 1;
        if depth > 32 {
            break;
        }
        current = e.source();
    }
}

/// The messages of an error and its sources, deduplicated, joined with `": "`.
pub(crate) fn chain_text(error: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    walk(error, &mut |e| {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    });
    parts.join(": ")
}

pub(crate) fn classify(error: kube::Error, server: &str, what: &str, redactor: &Redactor) -> KubeObserveError {
    let server = server.to_string();
    if let kube::Error::Api(status) = &error {
        let message = redactor.redact(if status.message.is_empty() { &status.reason } else { &status.message });
        return match status.code {
            401 => KubeObserveError::Unauthorized { server, message },
            403 => KubeObserveError::Forbidden { server, what: what.to_string(), message },
            code => KubeObserveError::Other {
                server,
                what: what.to_string(),
                cause: if status.reason.is_empty() || message == status.reason {
                    format!("HTTP {code}: {message}")
                } else {
                    format!("HTTP {code} {}: {message}", status.reason)
                },
            },
        };
    }

    let mut tls: Option<rustls::Error> = None;
    let mut io_kind: Option<io::ErrorKind> = None;
    let mut connect = false;
    let mut closed_early = false;
    let mut not_http = false;
    walk(&error, &mut |e| {
        if let Some(rustls_error) = e.downcast_ref::<rustls::Error>() {
            tls.get_or_insert_with(|| rustls_error.clone());
        }
        if let Some(io_error) = e.downcast_ref::<io::Error>() {
            if io_kind.is_none() || io_kind == Some(io::ErrorKind::Other) {
                io_kind = Some(io_error.kind());
            }
        }
        if let Some(legacy) = e.downcast_ref::<hyper_util::client::legacy::Error>() {
            connect |= legacy.is_connect();
        }
        if let Some(hyper_error) = e.downcast_ref::<hyper::Error>() {
            closed_early |= hyper_error.is_incomplete_message();
            not_http |= hyper_error.is_parse();
        }
    });
    let detail = redactor.redact(&chain_text(&error));

    if let Some(tls_error) = tls {
        let (cause, hint) = describe_tls(&tls_error, &server);
        return KubeObserveError::Tls { server, cause: redactor.redact(&cause), hint };
    }

    let unreachable = |cause: &str, hint: &str| KubeObserveError::Unreachable {
        server: server.clone(),
        cause: cause.to_string(),
        hint: hint.to_string(),
    };
    match io_kind {
        Some(io::ErrorKind::ConnectionRefused) => {
            return unreachable("the connection was refused (nothing listens on that port)", "")
        }
        Some(io::ErrorKind::TimedOut) => {
            return unreachable(
                "no answer in time",
                "; a firewall may be dropping the packets, or the server is overloaded",
            )
        }
        Some(io::ErrorKind::HostUnreachable) | Some(io::ErrorKind::NetworkUnreachable) => {
            return unreachable("no route to the host", "; check the host's network and firewall")
        }
        Some(io::ErrorKind::ConnectionReset)
        | Some(io::ErrorKind::ConnectionAborted)
        | Some(io::ErrorKind::UnexpectedEof)
        | Some(io::ErrorKind::BrokenPipe) => return closed_before_answer(server),
        _ => {}
    }
    if closed_early {
        return closed_before_answer(server);
    }
    if not_http {
        let hint = if server.starts_with("http://") {
            " (an HTTPS server answers a plain HTTP request like this: use an https:// URL)"
        } else {
            ""
        };
        return KubeObserveError::Other {
            server,
            what: what.to_string(),
            cause: format!("the answer was not HTTP{hint}: {detail}"),
        };
    }
    if connect {
        return unreachable(&format!("could not connect ({detail})"), "");
    }
    if matches!(error, kube::Error::SerdeError(_)) {
        return KubeObserveError::Other {
            server,
            what: what.to_string(),
            cause: format!("the answer was not the expected object: {detail}"),
        };
    }
    KubeObserveError::Other { server, what: what.to_string(), cause: detail }
}

fn closed_before_answer(server: String) -> KubeObserveError {
    KubeObserveError::Unreachable {
        server,
        cause: "the connection was closed before an answer".to_string(),
        hint: "; an LXD proxy device whose container has nothing listening behind it accepts and then drops connections like this, so check that the API server inside is up".to_string(),
    }
}

/// `127.0.0.1` from `IpAddress(127.0.0.1)`, `localhost` from `DnsName("localhost")`.
fn presented_name(name: &str) -> String {
    let inner = match (name.find('('), name.rfind(')')) {
        (Some(open), Some(close)) if open < close => &name[open + 1..close],
        _ => name,
    };
    inner.trim_matches('"').to_string()
}

fn describe_tls(error: &rustls::Error, server: &str) -> (String, String) {
    use rustls::{AlertDescription, CertificateError};
    const CHECK_CA: &str = "Check that the CA certificate in the kubeconfig (certificate-authority-data) is the CA of this very API server: a re-created cluster has a new CA, so an older kubeconfig no longer matches (for MicroK8s, fetch it again with `microk8s config`). For a throwaway lab endpoint, insecure-skip-tls-verify: true skips the check";
    match error {
        rustls::Error::InvalidCertificate(cert_error) => match cert_error {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => (
                "the server's certificate was not trusted: it is not signed by the configured CA (unknown issuer)".to_string(),
                CHECK_CA.to_string(),
            ),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => (
                match cert_error {
                    CertificateError::NotValidForNameContext { expected, presented } => format!(
                        "the server's certificate was not trusted: it does not cover {} (it covers {})",
                        expected.to_str(),
                        presented.iter().map(|name| presented_name(name)).collect::<Vec<_>>().join(", ")
                    ),
                    _ => format!("the server's certificate was not trusted: it does not cover the host in {server}"),
                },
                "A MicroK8s API certificate covers 127.0.0.1, 10.152.183.1 and the node's own addresses, not a host address in front of a proxy: use the member's bridge address, add the name to /var/snap/microk8s/current/certs/csr.conf.template, set tls-server-name, or set insecure-skip-tls-verify: true".to_string(),
            ),
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => (
                format!("the server's certificate was not trusted: it is outside its validity period ({cert_error:?})"),
                "Check the clocks of this machine and of the server, or renew the server's certificates (`microk8s refresh-certs`)".to_string(),
            ),
            other => (
                format!("the server's certificate was not trusted ({other:?})"),
                CHECK_CA.to_string(),
            ),
        },
        rustls::Error::AlertReceived(
            alert @ (AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateRequired
            | AlertDescription::CertificateUnknown
            | AlertDescription::CertificateRevoked
            | AlertDescription::CertificateExpired
            | AlertDescription::AccessDenied),
        ) => (
            format!("the server rejected our client certificate (alert {alert:?})"),
            "Check that the client certificate in the kubeconfig (client-certificate-data) was issued by this cluster's CA and has not expired".to_string(),
        ),
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => (
            format!("the server did not speak TLS as expected ({error})"),
            format!("Check that {server} is an HTTPS endpoint of a Kubernetes API server (an http:// server, or another service on that port, answers like this)"),
        ),
        other => (
            format!("the TLS handshake failed ({other})"),
            format!("Check that {server} is the HTTPS endpoint of a Kubernetes API server and that the CA and client certificate in the kubeconfig belong to it"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_redactor_removes_every_configured_secret() {
        let redactor = Redactor::new(vec![
            SecretString::from("s3cr3t-token".to_string()),
            SecretString::from(String::new()),
            SecretString::from("  -----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".to_string()),
        ]);
        assert_eq!(
            redactor.redact("Bearer s3cr3t-token rejected; s3cr3t-token again"),
            "Bearer <redacted> rejected; <redacted> again"
        );
        assert_eq!(
            redactor.redact("key: -----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY----- end"),
            "key: <redacted> end"
        );
        assert_eq!(redactor.redact("nothing secret"), "nothing secret");
    }

    #[test]
    fn presented_names_are_shown_plainly() {
        assert_eq!(presented_name("IpAddress(127.0.0.1)"), "127.0.0.1");
        assert_eq!(presented_name("DnsName(\"localhost\")"), "localhost");
        assert_eq!(presented_name("plain"), "plain");
    }
}
