//! Where images are: registries (with their scheme and credentials), image locations, platforms.

use std::fmt;
use std::sync::Arc;

/// A registry endpoint: a host (with port) spoken to over HTTPS, or over plain HTTP only when the caller
/// said so ([`Registry::insecure`], or [`Registry::endpoint`] with `insecure_allowed`).
#[derive(Clone)]
pub struct Registry {
    host: String,
    insecure: bool,
    credentials: Option<Credentials>,
}

/// Credentials for a registry. They are sent only to that registry (and to the token service its
/// `WWW-Authenticate` challenge names), and never appear in errors, logs or `Debug` output.
#[derive(Clone)]
pub enum Credentials {
    /// A user name and password (or token used as a password): sent as HTTP Basic to a registry that asks
    /// for Basic, or to the token service of one that asks for Bearer.
    Basic { username: String, password: String },
    /// A ready bearer token, sent as it is.
    Bearer(String),
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
            Credentials::Bearer(_) => write!(f, "Bearer(<redacted>)"),
        }
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("host", &self.host)
            .field("insecure", &self.insecure)
            .field("credentials", &self.credentials)
            .finish()
    }
}

/// Why an endpoint was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EndpointError {
    #[error("registry endpoint {0} is plain http: allow it explicitly (insecure) or use https")]
    InsecureNotAllowed(String),
    #[error("registry endpoint {0:?} is not a host[:port] with an optional http:// or https:// scheme")]
    Malformed(String),
}

impl Registry {
    /// A registry spoken to over HTTPS, its certificate checked against the system's roots.
    pub fn https(host: impl Into<String>) -> Registry {
        Registry { host: host.into(), insecure: false, credentials: None }
    }

    /// A registry spoken to over plain HTTP. Only for registries the user marked insecure (a loopback test
    /// registry, a mirror on a trusted network).
    pub fn insecure(host: impl Into<String>) -> Registry {
        Registry { host: host.into(), insecure: true, credentials: None }
    }

    /// Parses `host[:port]`, `https://host[:port]` or `http://host[:port]`; plain http only if
    /// `insecure_allowed`.
    pub fn endpoint(endpoint: &str, insecure_allowed: bool) -> Result<Registry, EndpointError> {
        let (insecure, rest) = if let Some(rest) = endpoint.strip_prefix("http://") {
            (true, rest)
        } else if let Some(rest) = endpoint.strip_prefix("https://") {
            (false, rest)
        } else {
            (false, endpoint)
        };
        let host = rest.trim_end_matches('/');
        if host.is_empty() || host.contains(['/', '@', '?', '#', ' ']) {
            return Err(EndpointError::Malformed(endpoint.to_owned()));
        }
        if insecure && !insecure_allowed {
            return Err(EndpointError::InsecureNotAllowed(endpoint.to_owned()));
        }
        Ok(Registry { host: host.to_owned(), insecure, credentials: None })
    }

    pub fn with_credentials(mut self, credentials: Credentials) -> Registry {
        self.credentials = Some(credentials);
        self
    }

    /// `host[:port]`, as written in image references.
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn is_insecure(&self) -> bool {
        self.insecure
    }

    pub(crate) fn credentials(&self) -> Option<&Credentials> {
        self.credentials.as_ref()
    }

    pub(crate) fn base_url(&self) -> String {
        format!("{}://{}", if self.insecure { "http" } else { "https" }, self.host)
    }
}

/// An image in a registry: a repository and a tag or digest.
#[derive(Clone, Debug)]
pub struct Location {
    pub registry: Arc<Registry>,
    pub repository: String,
    /// A tag (`v1.15.9`) or a digest (`sha256:...`).
    pub reference: String,
}

impl Location {
    pub fn new(registry: Arc<Registry>, repository: impl Into<String>, reference: impl Into<String>) -> Location {
        Location { registry, repository: repository.into(), reference: reference.into() }
    }

    /// The same repository at another reference (a digest of a platform's manifest).
    pub fn at(&self, reference: impl Into<String>) -> Location {
        Location {
            registry: Arc::clone(&self.registry),
            repository: self.repository.clone(),
            reference: reference.into(),
        }
    }

    pub(crate) fn same_registry(&self, other: &Location) -> bool {
        self.registry.host == other.registry.host && self.registry.insecure == other.registry.insecure
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sep = if self.reference.contains(':') { '@' } else { ':' };
        write!(f, "{}/{}{sep}{}", self.registry.host, self.repository, self.reference)
    }
}

/// A platform of a multi-platform image: `os/architecture[/variant]`, as in an index's `platform` field.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    pub fn linux_amd64() -> Platform {
        Platform { os: "linux".into(), architecture: "amd64".into(), variant: None }
    }

    /// Parses `linux/amd64` or `linux/arm64/v8`.
    pub fn parse(s: &str) -> Option<Platform> {
        let mut parts = s.split('/');
        let os = parts.next().filter(|p| !p.is_empty())?;
        let architecture = parts.next().filter(|p| !p.is_empty())?;
        let variant = parts.next().map(str::to_owned);
        if parts.next().is_some() {
            return None;
        }
        Some(Platform { os: os.to_owned(), architecture: architecture.to_owned(), variant })
    }

    /// Whether an index entry's platform is this one. A wanted platform without a variant matches any
    /// variant (`linux/arm64` matches `linux/arm64/v8`).
    pub(crate) fn matches(&self, os: &str, architecture: &str, variant: Option<&str>) -> bool {
        self.os == os
            && self.architecture == architecture
            && (self.variant.is_none() || self.variant.as_deref() == variant)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// Which platforms of a multi-platform image to copy. See the crate docs for what each choice means for the
/// digest the target's tag gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Platforms {
    /// The whole index, every platform in it, unchanged.
    All,
    /// These platforms. One platform: its manifest alone is tagged in the target. Several: the whole index.
    Only(Vec<Platform>),
}

impl Default for Platforms {
    /// `linux/amd64`.
    fn default() -> Platforms {
        Platforms::Only(vec![Platform::linux_amd64()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_when_allowed() {
        assert_eq!(
            Registry::endpoint("http://127.0.0.1:5000", false).unwrap_err(),
            EndpointError::InsecureNotAllowed("http://127.0.0.1:5000".into())
        );
        let r = Registry::endpoint("http://127.0.0.1:5000/", true).unwrap();
        assert!(r.is_insecure());
        assert_eq!(r.base_url(), "http://127.0.0.1:5000");
        let r = Registry::endpoint("registry.k8s.io", false).unwrap();
        assert_eq!(r.base_url(), "https://registry.k8s.io");
        assert!(Registry::endpoint("https://user:pw@host", true).is_err());
        assert!(Registry::endpoint("", true).is_err());
    }

    #[test]
    fn credentials_never_in_debug() {
        let r = Registry::https("r.example")
            .with_credentials(Credentials::Basic { username: "u".into(), password: "s3cret".into() });
        let shown = format!("{r:?}");
        assert!(shown.contains("<redacted>") && !shown.contains("s3cret"), "{shown}");
        let shown = format!("{:?}", Credentials::Bearer("tok3n".into()));
        assert!(!shown.contains("tok3n"), "{shown}");
    }

    #[test]
    fn platforms() {
        let p = Platform::parse("linux/arm64/v8").unwrap();
        assert_eq!(p.to_string(), "linux/arm64/v8");
        assert!(Platform::parse("linux/arm64").unwrap().matches("linux", "arm64", Some("v8")));
        assert!(!p.matches("linux", "arm64", None));
        assert!(Platform::parse("linux").is_none());
        assert_eq!(Platforms::default(), Platforms::Only(vec![Platform::linux_amd64()]));
    }

    #[test]
    fn locations_display_tags_and_digests() {
        let r = Arc::new(Registry::insecure("127.0.0.1:5000"));
        assert_eq!(Location::new(r.clone(), "karmada/x", "v1").to_string(), "127.0.0.1:5000/karmada/x:v1");
        assert_eq!(Location::new(r, "x", "sha256:ab").to_string(), "127.0.0.1:5000/x@sha256:ab");
    }
}
