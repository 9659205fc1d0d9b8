//! How to reach an API server: a kubeconfig-like [`ApiConfig`], and the [`KubeClient`] built from it.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::CertificateDer;
use secrecy::{ExposeSecret as _, SecretString};

use crate::error::{classify, KubeObserveError, Redactor};

/// Where an API server is and how to authenticate to it: the parts of a kubeconfig that matter.
///
/// `Debug` never shows a credential: the token and the private key are printed as `<redacted>`.
#[derive(Clone)]
pub struct ApiConfig {
    /// The server URL, as in a kubeconfig's `clusters[].cluster.server` (`https://10.0.0.1:16443`).
    pub server: String,
    /// The CA certificate(s) that signed the server's certificate, PEM (`certificate-authority-data`,
    /// decoded). `None` trusts the platform's roots.
    pub ca_pem: Option<String>,
    /// Who we are.
    pub credentials: Credentials,
    /// Accept any server certificate (`insecure-skip-tls-verify`).
    pub insecure_skip_tls_verify: bool,
    /// The name the server certificate must cover, when it differs from the URL's host (`tls-server-name`).
    pub tls_server_name: Option<String>,
    /// How long to wait for a connection (TCP and TLS).
    pub connect_timeout: Duration,
    /// How long to wait for an answer once connected.
    pub request_timeout: Duration,
    /// Where connections to the server's address go ([`Network::Direct`] on a real host).
    pub network: Network,
}

/// Where a connection to an API server's `host:port` goes: straight there on a real host, or wherever a
/// simulated world serves that address (the simulated machine's API servers listen on loopback ports of
/// their own; the client still checks the server's certificate against the URL's host).
#[derive(Clone, Default)]
pub enum Network {
    #[default]
    Direct,
    Routed(Route),
}

/// Where a connection to `(host, port)` goes instead.
pub type Route = Arc<dyn Fn(&str, u16) -> std::net::SocketAddr + Send + Sync>;

impl Network {
    /// A network whose connections to `host:port` go to `route(host, port)`.
    pub fn routed(route: impl Fn(&str, u16) -> std::net::SocketAddr + Send + Sync + 'static) -> Network {
        Network::Routed(Arc::new(route))
    }
}

impl fmt::Debug for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Network::Direct => f.write_str("Direct"),
            Network::Routed(_) => f.write_str("Routed"),
        }
    }
}

/// The client's credentials.
#[derive(Clone, Default)]
pub enum Credentials {
    /// None (the server decides what an anonymous client may read).
    #[default]
    None,
    /// A bearer token (`users[].user.token`).
    Token(SecretString),
    /// A client certificate and its private key, both PEM (`client-certificate-data`, `client-key-data`,
    /// decoded).
    ClientCertificate {
        /// The certificate (chain), PEM.
        cert_pem: String,
        /// The private key, PEM.
        key_pem: SecretString,
    },
}

impl Credentials {
    /// A bearer token.
    pub fn token(token: impl Into<String>) -> Self {
        Credentials::Token(SecretString::from(token.into()))
    }

    /// A client certificate and key, both PEM.
    pub fn client_certificate(cert_pem: impl Into<String>, key_pem: impl Into<String>) -> Self {
        Credentials::ClientCertificate { cert_pem: cert_pem.into(), key_pem: SecretString::from(key_pem.into()) }
    }

    fn secrets(&self) -> Vec<SecretString> {
        match self {
            Credentials::None => Vec::new(),
            Credentials::Token(token) => vec![token.clone()],
            Credentials::ClientCertificate { key_pem, .. } => vec![key_pem.clone()],
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::None => f.write_str("None"),
            Credentials::Token(_) => f.write_str("Token(<redacted>)"),
            Credentials::ClientCertificate { cert_pem, .. } => f
                .debug_struct("ClientCertificate")
                .field("cert_pem", &format_args!("<{} bytes>", cert_pem.len()))
                .field("key_pem", &format_args!("<redacted>"))
                .finish(),
        }
    }
}

impl fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiConfig")
            .field("server", &self.server)
            .field("ca_pem", &self.ca_pem.as_ref().map(|pem| format!("<{} bytes>", pem.len())))
            .field("credentials", &self.credentials)
            .field("insecure_skip_tls_verify", &self.insecure_skip_tls_verify)
            .field("tls_server_name", &self.tls_server_name)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("network", &self.network)
            .finish()
    }
}

impl ApiConfig {
    /// Default time to wait for a connection.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
    /// Default time to wait for an answer.
    pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

    /// A config for `server` with no CA, no credentials and the default timeouts.
    pub fn new(server: impl Into<String>) -> Self {
        ApiConfig {
            server: server.into(),
            ca_pem: None,
            credentials: Credentials::None,
            insecure_skip_tls_verify: false,
            tls_server_name: None,
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            request_timeout: Self::DEFAULT_REQUEST_TIMEOUT,
            network: Network::Direct,
        }
    }

    /// Connect through `network`.
    pub fn with_network(mut self, network: Network) -> Self {
        self.network = network;
        self
    }

    /// Trust this CA (PEM).
    pub fn with_ca_pem(mut self, ca_pem: impl Into<String>) -> Self {
        self.ca_pem = Some(ca_pem.into());
        self
    }

    /// Authenticate with these credentials.
    pub fn with_credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = credentials;
        self
    }

    /// Accept any server certificate (`insecure-skip-tls-verify: true`).
    pub fn with_insecure_skip_tls_verify(mut self, skip: bool) -> Self {
        self.insecure_skip_tls_verify = skip;
        self
    }

    /// Wait at most this long for a connection and at most this long for each answer.
    pub fn with_timeouts(mut self, connect: Duration, request: Duration) -> Self {
        self.connect_timeout = connect;
        self.request_timeout = request;
        self
    }

    /// Reads a kubeconfig (YAML): the `context` given, else its `current-context`, else its only context.
    ///
    /// Understands `server`, `certificate-authority-data`, `certificate-authority` (a file),
    /// `insecure-skip-tls-verify`, `tls-server-name`, and a user's `token`, `token-file`,
    /// `client-certificate(-data)` and `client-key(-data)`. Exec and auth-provider plugins are not supported.
    pub fn from_kubeconfig_yaml(yaml: &str, context: Option<&str>) -> Result<Self, KubeObserveError> {
        let invalid = |problem: String| KubeObserveError::Config { server: "(kubeconfig)".to_string(), problem };
        // The parser's message can quote the text around the fault, which may be a credential: keep only
        // where the fault is.
        let kubeconfig = kube::config::Kubeconfig::from_yaml(yaml)
            .map_err(|e| invalid(format!("the kubeconfig is not valid{}", fault_location(&e.to_string()))))?;
        let context_name = match context {
            Some(name) => name.to_string(),
            None => match (&kubeconfig.current_context, kubeconfig.contexts.as_slice()) {
                (Some(current), _) if !current.is_empty() => current.clone(),
                (_, [only]) => only.name.clone(),
                _ => {
                    return Err(invalid(
                        "the kubeconfig has no current-context and more than one context: name one".to_string(),
                    ))
                }
            },
        };
        let ctx = kubeconfig
            .contexts
            .iter()
            .find(|c| c.name == context_name)
            .and_then(|c| c.context.clone())
            .ok_or_else(|| invalid(format!("the kubeconfig has no context {context_name:?}")))?;
        let cluster =
            kubeconfig.clusters.iter().find(|c| c.name == ctx.cluster).and_then(|c| c.cluster.clone()).ok_or_else(
                || {
                    invalid(format!(
                        "context {context_name:?} names cluster {:?}, which the kubeconfig does not define",
                        ctx.cluster
                    ))
                },
            )?;
        let server = cluster
            .server
            .clone()
            .ok_or_else(|| invalid(format!("cluster {:?} in the kubeconfig has no server", ctx.cluster)))?;
        let config_error = |problem: String| KubeObserveError::Config { server: server.clone(), problem };

        let ca_pem = match (&cluster.certificate_authority_data, &cluster.certificate_authority) {
            (Some(data), _) => Some(
                decode_base64_pem(data)
                    .map_err(|e| config_error(format!("certificate-authority-data is not valid: {e}")))?,
            ),
            (None, Some(path)) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| config_error(format!("cannot read certificate-authority {path}: {e}")))?,
            ),
            (None, None) => None,
        };

        let user = match &ctx.user {
            Some(user) => kubeconfig
                .auth_infos
                .iter()
                .find(|a| &a.name == user)
                .and_then(|a| a.auth_info.clone())
                .ok_or_else(|| {
                    config_error(format!(
                        "context {context_name:?} names user {user:?}, which the kubeconfig does not define"
                    ))
                })
                .map(Some)?,
            None => None,
        };
        let credentials = match user {
            None => Credentials::None,
            Some(user) => {
                if user.exec.is_some() || user.auth_provider.is_some() {
                    return Err(config_error(
                        "the kubeconfig's user authenticates through an exec or auth-provider plugin, which testbed does not run: use a token or a client certificate".to_string(),
                    ));
                }
                let cert = match (&user.client_certificate_data, &user.client_certificate) {
                    (Some(data), _) => Some(
                        decode_base64_pem(data)
                            .map_err(|e| config_error(format!("client-certificate-data is not valid: {e}")))?,
                    ),
                    (None, Some(path)) => Some(
                        std::fs::read_to_string(path)
                            .map_err(|e| config_error(format!("cannot read client-certificate {path}: {e}")))?,
                    ),
                    (None, None) => None,
                };
                let key = match (&user.client_key_data, &user.client_key) {
                    (Some(data), _) => Some(
                        decode_base64_pem(data.expose_secret())
                            .map_err(|_| config_error("client-key-data is not valid base64-encoded PEM".to_string()))?,
                    ),
                    (None, Some(path)) => Some(
                        std::fs::read_to_string(path)
                            .map_err(|e| config_error(format!("cannot read client-key {path}: {}", e.kind())))?,
                    ),
                    (None, None) => None,
                };
                let token = match (&user.token, &user.token_file) {
                    (Some(token), _) => Some(token.expose_secret().to_string()),
                    (None, Some(path)) => Some(
                        std::fs::read_to_string(path)
                            .map_err(|e| config_error(format!("cannot read token-file {path}: {}", e.kind())))?
                            .trim()
                            .to_string(),
                    ),
                    (None, None) => None,
                };
                match (cert, key, token) {
                    (Some(cert_pem), Some(key_pem), _) => {
                        Credentials::client_certificate(cert_pem, key_pem)
                    }
                    (Some(_), None, _) | (None, Some(_), _) => {
                        return Err(config_error(
                            "the kubeconfig's user has a client certificate without its key, or a key without its certificate".to_string(),
                        ))
                    }
                    (None, None, Some(token)) => Credentials::token(token),
                    (None, None, None) => Credentials::None,
                }
            }
        };

        Ok(ApiConfig {
            ca_pem,
            credentials,
            insecure_skip_tls_verify: cluster.insecure_skip_tls_verify.unwrap_or(false),
            tls_server_name: cluster.tls_server_name.clone(),
            ..ApiConfig::new(server)
        })
    }
}

/// `" (at line 3 column 5)"` from a parser message that has one, else `""`.
fn fault_location(message: &str) -> String {
    let Some(at) = message.find("line ") else {
        return String::new();
    };
    let location: String =
        message[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == ' ' || *c == ',').collect();
    format!(" (at {})", location.trim().trim_end_matches(','))
}

fn decode_base64_pem(data: &str) -> Result<String, String> {
    let compact: String = data.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = base64::engine::general_purpose::STANDARD.decode(compact).map_err(|e| format!("not base64 ({e})"))?;
    String::from_utf8(bytes).map_err(|_| "not PEM text".to_string())
}

/// A client for one API server, ready to observe it.
///
/// Cheap to clone. `Debug` shows the server only.
#[derive(Clone)]
pub struct KubeClient {
    client: kube::Client,
    server: String,
    redactor: Arc<Redactor>,
}

impl fmt::Debug for KubeClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KubeClient").field("server", &self.server).finish_non_exhaustive()
    }
}

impl KubeClient {
    /// Builds a client for `config`. Nothing is sent until an observation runs.
    ///
    /// Must be called within a Tokio runtime (the client starts a background task).
    pub fn new(config: &ApiConfig) -> Result<Self, KubeObserveError> {
        let redactor = Arc::new(Redactor::new(config.credentials.secrets()));
        let server = redactor.redact(config.server.trim_end_matches('/'));
        let config_error =
            |problem: String| KubeObserveError::Config { server: server.clone(), problem: redactor.redact(&problem) };

        let uri: http::Uri =
            config.server.parse().map_err(|e| config_error(format!("the server URL is not valid: {e}")))?;
        match uri.scheme_str() {
            Some("https") | Some("http") => {}
            _ => return Err(config_error("the server URL must start with https:// (or http://)".to_string())),
        }
        if uri.host().is_none() {
            return Err(config_error("the server URL has no host".to_string()));
        }

        // On a routed network the connection goes elsewhere, and the certificate is still checked against
        // the URL's host.
        let (uri, routed_name) = match &config.network {
            Network::Direct => (uri, None),
            Network::Routed(route) => {
                let host = uri.host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_owned();
                let port = uri.port_u16().unwrap_or(if uri.scheme_str() == Some("http") { 80 } else { 443 });
                let to = route(&host, port);
                let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
                let rewritten = format!("{}://{to}{path}", uri.scheme_str().unwrap_or("https"));
                let uri: http::Uri =
                    rewritten.parse().map_err(|e| config_error(format!("the routed server URL is not valid: {e}")))?;
                (uri, Some(host))
            }
        };
        let mut kube_config = kube::Config::new(uri);
        kube_config.connect_timeout = Some(config.connect_timeout);
        kube_config.read_timeout = Some(config.request_timeout);
        kube_config.write_timeout = Some(config.request_timeout);
        kube_config.reset_reader_on_write = true;
        kube_config.accept_invalid_certs = config.insecure_skip_tls_verify;
        kube_config.tls_server_name = config.tls_server_name.clone().or(routed_name);
        if let Some(ca_pem) = &config.ca_pem {
            let certs = CertificateDer::pem_slice_iter(ca_pem.as_bytes())
                .map(|cert| cert.map(|der| der.to_vec()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| config_error(format!("the CA certificate is not valid PEM: {e}")))?;
            if certs.is_empty() {
                return Err(config_error("the CA certificate PEM holds no CERTIFICATE block".to_string()));
            }
            kube_config.root_cert = Some(certs);
        }
        match &config.credentials {
            Credentials::None => {}
            Credentials::Token(token) => kube_config.auth_info.token = Some(token.clone()),
            Credentials::ClientCertificate { cert_pem, key_pem } => {
                let b64 = base64::engine::general_purpose::STANDARD;
                kube_config.auth_info.client_certificate_data = Some(b64.encode(cert_pem));
                kube_config.auth_info.client_key_data =
                    Some(SecretString::from(b64.encode(key_pem.expose_secret().as_bytes())));
            }
        }

        let client = kube::Client::try_from(kube_config).map_err(|e| {
            // Building the client fails only on the TLS material (a bad certificate or key).
            config_error(format!("the TLS settings are not usable: {}", crate::error::chain_text(&e)))
        })?;
        Ok(KubeClient { client, server, redactor })
    }

    /// The server URL this client talks to.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The underlying `kube` client, for calls this crate does not wrap.
    pub fn kube(&self) -> &kube::Client {
        &self.client
    }

    /// Turns a `kube` error from doing `what` into a [`KubeObserveError`].
    pub(crate) fn error(&self, error: kube::Error, what: &str) -> KubeObserveError {
        classify(error, &self.server, what, &self.redactor)
    }
}
