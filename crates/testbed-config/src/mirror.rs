//! Registry mirrors (`[registry.mirrors]`): which endpoint the images of a source registry are read from.

use crate::model::Registry;

/// Where the images of one source registry are read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceEndpoint {
    /// `host[:port]` to connect to.
    pub host: String,
    /// HTTPS (`true`) or plain HTTP (`false`, only for a mirror the file marks `insecure`).
    pub https: bool,
    /// Whether `host` is a mirror from `[registry.mirrors]` rather than the registry itself.
    pub mirrored: bool,
}

/// Docker Hub's registry API host: image references say `docker.io`, the API answers here.
pub const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";

/// The endpoint for images whose reference names registry `source_host` (`docker.io`, `registry.k8s.io`,
/// `localhost:5000`, ...): its mirror when `[registry.mirrors]` has one for exactly that host; otherwise the
/// registry itself over HTTPS, Docker Hub (`docker.io`) at [`DOCKER_HUB_API_HOST`].
pub fn source_endpoint(registry: &Registry, source_host: &str) -> SourceEndpoint {
    if let Some((https, host)) = registry.mirrors.get(source_host).and_then(|m| m.endpoint_parts()) {
        return SourceEndpoint { host, https, mirrored: true };
    }
    let host = if source_host == "docker.io" { DOCKER_HUB_API_HOST } else { source_host };
    SourceEndpoint { host: host.to_owned(), https: true, mirrored: false }
}

/// What is wrong with an endpoint, for validation: the message's tail, the label and a hint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EndpointProblem {
    pub why: String,
    pub label: &'static str,
    pub hint: String,
    /// The endpoint holds credentials: messages must not repeat its value.
    pub secret: bool,
}

/// Splits `http[s]://host[:port]` into `(https, "host[:port]")`. Nothing else is accepted: no path (not even
/// a trailing `/`), query, fragment or credentials.
pub(crate) fn parse_endpoint(endpoint: &str) -> Result<(bool, String), EndpointProblem> {
    let example = "write the scheme, host and port only, e.g. \"https://mirror.example:5000\"";
    let (https, rest) = if let Some(rest) = endpoint.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = endpoint.strip_prefix("http://") {
        (false, rest)
    } else {
        return Err(EndpointProblem {
            why: "does not start with http:// or https://".into(),
            label: "not an http(s) endpoint",
            hint: example.into(),
            secret: false,
        });
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    if rest[..authority_end].contains('@') {
        return Err(EndpointProblem {
            why: "contains credentials (user@ or user:password@)".into(),
            label: "credentials in a URL",
            hint: "remove them: credentials are not read from the file".into(),
            secret: true,
        });
    }
    let scheme = if https { "https" } else { "http" };
    if let Some(at) = rest.find(['/', '?', '#']) {
        let authority = &rest[..at];
        let what = match rest.as_bytes()[at] {
            b'/' => "a path",
            b'?' => "a query",
            _ => "a fragment",
        };
        let hint = if host_port_problem(authority).is_none() {
            format!("write \"{scheme}://{authority}\": a mirror serves the registry API (/v2/) at its root")
        } else {
            example.to_owned()
        };
        return Err(EndpointProblem {
            why: format!("has {what} after the host"),
            label: "not just host[:port]",
            hint,
            secret: false,
        });
    }
    if let Some(why) = host_port_problem(rest) {
        return Err(EndpointProblem {
            why: format!("has host {rest:?}, which {why}"),
            label: "invalid host",
            hint: example.into(),
            secret: false,
        });
    }
    Ok((https, rest.to_owned()))
}

/// A registry host as image references and mirror keys write it: `name[:port]`, the name of lowercase letters,
/// digits, dots and hyphens (dot-separated labels that neither start nor end with a hyphen, or an IPv4
/// address), the port 1-65535.
pub(crate) fn host_port_problem(s: &str) -> Option<&'static str> {
    if s.contains("://") {
        return Some("is a URL, not a host");
    }
    if s.contains('/') {
        return Some("has a path after the host");
    }
    let (name, port) = match s.rsplit_once(':') {
        Some((n, p)) => (n, Some(p)),
        None => (s, None),
    };
    if name.is_empty() {
        return Some("has no host name");
    }
    if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-') {
        return Some("may contain only lowercase letters, digits, '.' and '-' (and a :port)");
    }
    if name.len() > 253
        || name.split('.').any(|l| l.is_empty() || l.len() > 63 || l.starts_with('-') || l.ends_with('-'))
    {
        return Some("is not a host name (empty labels, or labels that start or end with '-')");
    }
    if let Some(p) = port {
        let ok = !p.is_empty()
            && p.len() <= 5
            && p.bytes().all(|b| b.is_ascii_digit())
            && p.parse::<u32>().is_ok_and(|n| (1..=65535).contains(&n));
        if !ok {
            return Some("has a port that is not a number from 1 to 65535");
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Mirror;

    fn registry(mirrors: &[(&str, &str, bool)]) -> Registry {
        let mut r = Registry::default();
        for (host, endpoint, insecure) in mirrors {
            r.mirrors.insert((*host).to_owned(), Mirror { endpoint: (*endpoint).to_owned(), insecure: *insecure });
        }
        r
    }

    fn endpoint(host: &str, https: bool, mirrored: bool) -> SourceEndpoint {
        SourceEndpoint { host: host.to_owned(), https, mirrored }
    }

    #[test]
    fn without_a_mirror_each_registry_is_reached_over_https_and_docker_hub_at_its_api_host() {
        let r = Registry::default();
        assert_eq!(source_endpoint(&r, "docker.io"), endpoint("registry-1.docker.io", true, false));
        assert_eq!(source_endpoint(&r, "registry.k8s.io"), endpoint("registry.k8s.io", true, false));
        assert_eq!(source_endpoint(&r, "ghcr.io"), endpoint("ghcr.io", true, false));
        assert_eq!(source_endpoint(&r, "localhost:5000"), endpoint("localhost:5000", true, false));
    }

    #[test]
    fn a_mirror_replaces_exactly_its_own_host() {
        let r = registry(&[
            ("docker.io", "http://127.0.0.1:5000", true),
            ("registry.k8s.io", "https://mirror.example", false),
        ]);
        assert_eq!(source_endpoint(&r, "docker.io"), endpoint("127.0.0.1:5000", false, true));
        assert_eq!(source_endpoint(&r, "registry.k8s.io"), endpoint("mirror.example", true, true));
        // Not a prefix or suffix match, and Docker Hub's API host is not docker.io.
        assert_eq!(source_endpoint(&r, "registry-1.docker.io"), endpoint("registry-1.docker.io", true, false));
        assert_eq!(source_endpoint(&r, "k8s.io"), endpoint("k8s.io", true, false));
        assert_eq!(source_endpoint(&r, "quay.io"), endpoint("quay.io", true, false));
    }

    #[test]
    fn a_mirror_whose_endpoint_does_not_parse_is_not_used() {
        // Only an unvalidated model can hold one; the registry itself is used rather than a guess.
        let r = registry(&[("docker.io", "127.0.0.1:5000", true)]);
        assert_eq!(source_endpoint(&r, "docker.io"), endpoint("registry-1.docker.io", true, false));
    }

    #[test]
    fn endpoints_are_scheme_host_and_port_only() {
        assert_eq!(parse_endpoint("http://127.0.0.1:5000").unwrap(), (false, "127.0.0.1:5000".to_owned()));
        assert_eq!(parse_endpoint("https://mirror.example").unwrap(), (true, "mirror.example".to_owned()));
        assert_eq!(parse_endpoint("https://localhost:443").unwrap(), (true, "localhost:443".to_owned()));
        for bad in [
            "127.0.0.1:5000",
            "ftp://mirror.example",
            "HTTPS://mirror.example",
            "https://",
            "https://mirror.example/",
            "https://mirror.example/v2",
            "https://mirror.example?x=1",
            "https://mirror.example#x",
            "https://user:secret@mirror.example",
            "https://Mirror.example",
            "https://mirror.example:0",
            "https://mirror.example:65536",
            "https://mirror.example:",
            "https://mirror.example:50a",
            "https://mirror..example",
            "https://-mirror.example",
            "https://mirror.example ",
            "https://[::1]:5000",
        ] {
            assert!(parse_endpoint(bad).is_err(), "{bad:?} was accepted");
        }
        let creds = parse_endpoint("https://user:secret@mirror.example").unwrap_err();
        assert!(!creds.why.contains("secret") && !creds.hint.contains("secret"), "{creds:?}");
        assert_eq!(
            parse_endpoint("http://127.0.0.1:5000/v2/").unwrap_err().hint,
            "write \"http://127.0.0.1:5000\": a mirror serves the registry API (/v2/) at its root"
        );
    }

    #[test]
    fn registry_hosts() {
        for ok in ["docker.io", "registry.k8s.io", "ghcr.io", "quay.io", "localhost:5000", "127.0.0.1:5000", "a-b.c"] {
            assert_eq!(host_port_problem(ok), None, "{ok}");
        }
        for bad in [
            "",
            "Docker.io",
            "docker_io",
            "docker.io:",
            ":5000",
            "docker.io/library",
            "https://docker.io",
            "a..b",
            "-a.b",
            "a.b-",
            "host:99999",
        ] {
            assert!(host_port_problem(bad).is_some(), "{bad:?} was accepted");
        }
    }
}
