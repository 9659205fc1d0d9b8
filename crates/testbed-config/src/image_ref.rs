//! Image references as the file writes them: `[registry/]repository[:tag][@digest]`.

/// A parsed image reference, normalised the way container tools do (`nginx` is
/// `docker.io/library/nginx:latest`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl ImageRef {
    pub fn parse(s: &str) -> Result<ImageRef, String> {
        if s.is_empty() {
            return Err("is empty".into());
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("contains whitespace".into());
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                if !d.starts_with("sha256:") || d.len() != 71 {
                    return Err(format!("has digest {d:?}; expected sha256:<64 hex digits>"));
                }
                (r, Some(d.to_owned()))
            }
            None => (s, None),
        };
        let (name, tag) = match rest.rsplit_once(':') {
            Some((n, t)) if !t.contains('/') => (n, Some(t.to_owned())),
            _ => (rest, None),
        };
        let (registry, repository) = match name.split_once('/') {
            Some((first, path)) if first.contains('.') || first.contains(':') || first == "localhost" => {
                (first.to_owned(), path.to_owned())
            }
            _ if name.contains('/') => ("docker.io".to_owned(), name.to_owned()),
            _ => ("docker.io".to_owned(), format!("library/{name}")),
        };
        if let Some(why) = (registry != "docker.io" || name.starts_with("docker.io/"))
            .then(|| crate::mirror::host_port_problem(&registry))
            .flatten()
        {
            return Err(format!("has registry host {registry:?}, which {why}"));
        }
        let repo_ok = !repository.is_empty()
            && repository.split('/').all(|c| {
                !c.is_empty() && c.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
            });
        if !repo_ok {
            return Err(format!("has repository {repository:?}; use lowercase letters, digits, '.', '_', '-' and '/'"));
        }
        if let Some(t) = &tag {
            let ok =
                !t.is_empty() && t.len() <= 128 && t.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
            if !ok {
                return Err(format!("has tag {t:?}; use letters, digits, '.', '_' and '-'"));
            }
        }
        let tag = if tag.is_none() && digest.is_none() { Some("latest".to_owned()) } else { tag };
        Ok(ImageRef { registry, repository, tag, digest })
    }

    /// The last path component of the repository (`karmada-scheduler` for `docker.io/karmada/karmada-scheduler`).
    pub fn short_name(&self) -> &str {
        self.repository.rsplit('/').next().unwrap_or(&self.repository)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_like_container_tools() {
        let r = ImageRef::parse("nginx").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("docker.io", "library/nginx", Some("latest"))
        );
        let r = ImageRef::parse("localhost:32000/flask-demo:2").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("localhost:32000", "flask-demo", Some("2"))
        );
        assert_eq!(ImageRef::parse("registry.k8s.io/etcd:3.5.16-0").unwrap().short_name(), "etcd");
        assert!(ImageRef::parse("nginx; rm -rf /").is_err());
        assert!(ImageRef::parse("Nginx").is_err());
        // The registry host is a host: lowercase, a port from 1 to 65535.
        assert!(ImageRef::parse("Registry.Example/app:1").is_err());
        assert!(ImageRef::parse("registry.example:99999/app:1").is_err());
        assert!(ImageRef::parse("registry..example/app:1").is_err());
        assert!(ImageRef::parse("localhost:5000/app:1").is_ok());
    }
}
