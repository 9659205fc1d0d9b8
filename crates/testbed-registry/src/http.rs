//! HTTP to registries: one reqwest client over rustls (ring), the registry's auth challenge answered
//! (Bearer tokens fetched from the realm it names, or Basic), failures classified by registry and role.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{HeaderValue, AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::{RequestBuilder, Response, StatusCode};

use std::path::PathBuf;

use crate::error::{Error, ErrorKind, Role};
use crate::network::Network;
use crate::registry::{Credentials, Registry};

/// What a request is for, to answer auth challenges and to word errors.
pub(crate) struct Ctx<'a> {
    pub image: &'a str,
    pub role: Role,
    pub registry: &'a Registry,
    /// The token scope this request needs (`repository:NAME:pull` or `...:pull,push`).
    pub scope: String,
    /// What is asked, for messages: "manifest karmada/x:v1", "blob sha256:... of karmada/x".
    pub what: String,
}

impl Ctx<'_> {
    pub fn err(&self, kind: ErrorKind) -> Error {
        Error::new(self.image, kind)
    }

    pub fn transport(&self, e: &reqwest::Error, mid_transfer: bool) -> Error {
        let detail = chain(e);
        let (role, registry) = (self.role, self.registry.host().to_owned());
        if e.is_connect() && !mid_transfer {
            self.err(ErrorKind::Unreachable { role, registry, detail })
        } else {
            self.err(ErrorKind::Interrupted { role, registry, detail })
        }
    }

    /// An error for an unexpected status, with the registry's error code and message when it sent JSON.
    pub async fn status(&self, resp: Response) -> Error {
        let status = resp.status();
        let body = resp.bytes().await.unwrap_or_default();
        let (code, message) = error_body(&body);
        let (role, registry, what) = (self.role, self.registry.host().to_owned(), self.what.clone());
        match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => self.err(ErrorKind::Unauthorized {
                role,
                registry,
                status: status.as_u16(),
                what,
                had_credentials: self.registry.credentials().is_some(),
            }),
            StatusCode::NOT_FOUND => {
                self.err(ErrorKind::NotFound { role, registry, what, code: code.unwrap_or_else(|| "404".into()) })
            }
            _ => self.err(ErrorKind::Registry {
                role,
                registry,
                status: status.as_u16(),
                what,
                message: match (code, message) {
                    (Some(c), Some(m)) => format!("{c}: {m}"),
                    (Some(c), None) => c,
                    (None, Some(m)) => m,
                    (None, None) => String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
                },
            }),
        }
    }
}

/// An error's message with its sources (`error sending request for url (...): connection refused`). URLs
/// here never carry credentials: testbed puts none in them.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(src) = cur {
        let part = src.to_string();
        if !s.contains(&part) {
            s.push_str(": ");
            s.push_str(&part);
        }
        cur = src.source();
    }
    s
}

fn error_body(body: &[u8]) -> (Option<String>, Option<String>) {
    let v: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => return (None, None),
    };
    let first = &v["errors"][0];
    (first["code"].as_str().map(str::to_owned), first["message"].as_str().map(str::to_owned))
}

/// The clients, with the tokens they were given, by registry host and scope.
pub(crate) struct Http {
    /// For plain-http registries: no TLS roots to load.
    plain: reqwest::Client,
    /// For https registries, built on first use: loading the system's roots costs milliseconds that a run
    /// against loopback registries only would pay for nothing.
    tls: std::sync::OnceLock<Result<reqwest::Client, String>>,
    timeout: Duration,
    tokens: Mutex<HashMap<(String, String), Arc<HeaderValue>>>,
    network: Network,
    /// Over a routed network: one client per socket (and whether it speaks TLS).
    routed: Mutex<HashMap<(PathBuf, bool), reqwest::Client>>,
}

fn client(
    roots: rustls::RootCertStore,
    timeout: Duration,
    socket: Option<&std::path::Path>,
) -> Result<reqwest::Client, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut builder = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(timeout)
        .pool_max_idle_per_host(32)
        .user_agent(concat!("testbed-registry/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = socket {
        builder = builder.unix_socket(path);
    }
    builder.build().map_err(|e| chain(&e))
}

/// `host:port` of an http(s) URL, the port always written, and whether it is https.
fn authority(url: &str) -> Option<(String, bool)> {
    let u = reqwest::Url::parse(url).ok()?;
    let https = u.scheme() == "https";
    // An IPv6 host is written in brackets here, as in the URL.
    Some((format!("{}:{}", u.host_str()?, u.port_or_known_default()?), https))
}

impl Http {
    pub fn new(timeout: Duration, network: Network) -> Result<Http, String> {
        Ok(Http {
            plain: client(rustls::RootCertStore::empty(), timeout, None)?,
            tls: std::sync::OnceLock::new(),
            timeout,
            tokens: Mutex::new(HashMap::new()),
            network,
            routed: Mutex::new(HashMap::new()),
        })
    }

    /// The client for `registry` (or for a URL: a token realm).
    fn for_url(&self, ctx: &Ctx<'_>, url: &str) -> Result<reqwest::Client, Error> {
        if let Network::Routed(route) = &self.network {
            let (authority, https) = authority(url)
                .ok_or_else(|| ctx.err(ErrorKind::Client(format!("{url} is not an http(s) URL with a host"))))?;
            let socket = route.socket(&authority, https);
            let mut clients = self.routed.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(c) = clients.get(&(socket.clone(), https)) {
                return Ok(c.clone());
            }
            let mut roots = rustls::RootCertStore::empty();
            for der in route.roots() {
                let _ = roots.add(rustls::pki_types::CertificateDer::from(der));
            }
            let c = client(roots, self.timeout, Some(&socket)).map_err(|e| ctx.err(ErrorKind::Client(e)))?;
            clients.insert((socket, https), c.clone());
            return Ok(c);
        }
        if url.starts_with("http://") {
            return Ok(self.plain.clone());
        }
        let tls = self.tls.get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
            client(roots, self.timeout, None)
        });
        tls.as_ref().cloned().map_err(|e| ctx.err(ErrorKind::Client(e.clone())))
    }

    fn cached(&self, ctx: &Ctx<'_>) -> Option<Arc<HeaderValue>> {
        if let Some(Credentials::Bearer(token)) = ctx.registry.credentials() {
            return HeaderValue::from_str(&format!("Bearer {token}")).ok().map(|mut h| {
                h.set_sensitive(true);
                Arc::new(h)
            });
        }
        self.tokens.lock().ok()?.get(&(ctx.registry.host().to_owned(), ctx.scope.clone())).cloned()
    }

    /// Sends a request (built by `make`, which may be called twice: once more after an auth challenge is
    /// answered). Answers 401 once; a second 401, or a 401 without a way to answer it, is returned as the
    /// response for the caller to report.
    pub async fn send(
        &self,
        ctx: &Ctx<'_>,
        make: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<Response, Error> {
        let mut auth = self.cached(ctx);
        let mut answered = false;
        loop {
            let mut rb = make(&self.for_url(ctx, &ctx.registry.base_url())?);
            if let Some(h) = &auth {
                rb = rb.header(AUTHORIZATION, h.as_ref().clone());
            }
            let resp = rb.send().await.map_err(|e| ctx.transport(&e, false))?;
            if resp.status() != StatusCode::UNAUTHORIZED || answered {
                return Ok(resp);
            }
            answered = true;
            let challenge = resp.headers().get(WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()).map(Challenge::parse);
            let header = match (challenge, ctx.registry.credentials()) {
                (_, Some(Credentials::Bearer(_))) => None,
                (Some(Challenge::Bearer { realm, service, scope }), creds) => {
                    let scope = scope.unwrap_or_else(|| ctx.scope.clone());
                    Some(self.token(ctx, &realm, service.as_deref(), &scope, creds).await?)
                }
                (Some(Challenge::Basic), Some(Credentials::Basic { username, password })) => {
                    Some(basic(username, password))
                }
                _ => None,
            };
            match header {
                Some(h) => {
                    let h = Arc::new(h);
                    if let Ok(mut t) = self.tokens.lock() {
                        t.insert((ctx.registry.host().to_owned(), ctx.scope.clone()), Arc::clone(&h));
                    }
                    auth = Some(h);
                }
                None => return Ok(resp),
            }
        }
    }

    /// A token from the realm a Bearer challenge named, asked with the registry's Basic credentials if any.
    async fn token(
        &self,
        ctx: &Ctx<'_>,
        realm: &str,
        service: Option<&str>,
        scope: &str,
        creds: Option<&Credentials>,
    ) -> Result<HeaderValue, Error> {
        let mut query: Vec<(&str, &str)> = Vec::new();
        if let Some(s) = service {
            query.push(("service", s));
        }
        for s in scope.split(' ').filter(|s| !s.is_empty()) {
            query.push(("scope", s));
        }
        let mut rb = self.for_url(ctx, realm)?.get(realm).query(&query);
        if let Some(Credentials::Basic { username, password }) = creds {
            rb = rb.header(AUTHORIZATION, basic(username, password));
        }
        let resp = rb.send().await.map_err(|e| ctx.transport(&e, false))?;
        if !resp.status().is_success() {
            let token_ctx = Ctx {
                image: ctx.image,
                role: ctx.role,
                registry: ctx.registry,
                scope: ctx.scope.clone(),
                what: format!("a token for {} (from its token service)", ctx.what),
            };
            return Err(token_ctx.status(resp).await);
        }
        let body: serde_json::Value = resp.json().await.map_err(|e| ctx.transport(&e, true))?;
        let token = body["token"].as_str().or_else(|| body["access_token"].as_str()).ok_or_else(|| {
            ctx.err(ErrorKind::Malformed {
                what: format!("the token service's answer for {}", ctx.registry.host()),
                detail: "no token in it".into(),
            })
        })?;
        let mut h = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
            ctx.err(ErrorKind::Malformed {
                what: format!("the token service's answer for {}", ctx.registry.host()),
                detail: "the token is not a valid header value".into(),
            })
        })?;
        h.set_sensitive(true);
        Ok(h)
    }
}

fn basic(username: &str, password: &str) -> HeaderValue {
    let mut h = HeaderValue::from_str(&format!("Basic {}", base64(format!("{username}:{password}").as_bytes())))
        .unwrap_or_else(|_| HeaderValue::from_static("Basic"));
    h.set_sensitive(true);
    h
}

fn base64(input: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A `WWW-Authenticate` challenge.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Challenge {
    Bearer { realm: String, service: Option<String>, scope: Option<String> },
    Basic,
    Other,
}

impl Challenge {
    pub fn parse(header: &str) -> Challenge {
        let (scheme, params) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
        if scheme.eq_ignore_ascii_case("basic") {
            return Challenge::Basic;
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Challenge::Other;
        }
        let mut realm = None;
        let (mut service, mut scope) = (None, None);
        // key="value" pairs separated by commas; values may contain commas inside quotes.
        let mut rest = params.trim();
        while !rest.is_empty() {
            let Some((key, after)) = rest.split_once('=') else { break };
            let key = key.trim().trim_start_matches(',').trim().to_ascii_lowercase();
            let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
                match quoted.find('"') {
                    Some(end) => (&quoted[..end], &quoted[end + 1..]),
                    None => (quoted, ""),
                }
            } else {
                match after.find(',') {
                    Some(end) => (&after[..end], &after[end..]),
                    None => (after, ""),
                }
            };
            match key.as_str() {
                "realm" => realm = Some(value.to_owned()),
                "service" => service = Some(value.to_owned()),
                "scope" => scope = Some(value.to_owned()),
                _ => {}
            }
            rest = remaining.trim_start_matches([',', ' ']);
        }
        match realm {
            Some(realm) => Challenge::Bearer { realm, service, scope },
            None => Challenge::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        assert_eq!(
            Challenge::parse(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:karmada/karmada-agent:pull""#
            ),
            Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:karmada/karmada-agent:pull".into())
            }
        );
        assert_eq!(
            Challenge::parse(r#"Bearer realm="http://h/t",scope="repository:a:pull,push repository:b:pull""#),
            Challenge::Bearer {
                realm: "http://h/t".into(),
                service: None,
                scope: Some("repository:a:pull,push repository:b:pull".into())
            }
        );
        assert_eq!(Challenge::parse(r#"Basic realm="registry""#), Challenge::Basic);
        assert_eq!(Challenge::parse("Negotiate"), Challenge::Other);
    }

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"user:pass"), "dXNlcjpwYXNz");
    }
}
