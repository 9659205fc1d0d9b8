//! The images `karmadactl init` pulls, by karmadactl release.
//!
//! Read from karmadactl's own defaults (see docs/reference.md): the Karmada component images carry the
//! karmadactl version as their tag; kube-apiserver, kube-controller-manager, etcd and (until v1.17) the
//! alpine image used by etcd's init container have tags fixed per release. Patch releases within a minor
//! share the minor's table.

/// One image the control plane (or a pull-mode member) needs, by its upstream reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseImage {
    /// Short name: the last path component of the repository (`karmada-scheduler`, `etcd`, ...).
    pub name: &'static str,
    /// Full upstream reference, `registry/repository:tag`.
    pub source: String,
    /// Needed only when members join in pull mode (the karmada-agent).
    pub pull_mode_only: bool,
}

struct Defaults {
    minor: &'static str,
    kube: &'static str,
    etcd: &'static str,
    alpine: Option<&'static str>,
}

const TABLE: &[Defaults] = &[
    Defaults { minor: "v1.11", kube: "v1.29.6", etcd: "3.5.13-0", alpine: Some("3.19.1") },
    Defaults { minor: "v1.12", kube: "v1.31.3", etcd: "3.5.16-0", alpine: Some("3.19.1") },
    Defaults { minor: "v1.13", kube: "v1.31.3", etcd: "3.5.16-0", alpine: Some("3.21.0") },
    Defaults { minor: "v1.14", kube: "v1.31.3", etcd: "3.5.16-0", alpine: Some("3.21.3") },
    Defaults { minor: "v1.15", kube: "v1.31.3", etcd: "3.5.16-0", alpine: Some("3.21.3") },
    Defaults { minor: "v1.16", kube: "v1.34.1", etcd: "3.6.0-0", alpine: Some("3.21.3") },
];

/// Versions with a table entry, for messages.
pub fn known_minors() -> Vec<&'static str> {
    TABLE.iter().map(|d| d.minor).collect()
}

/// Whether `version` looks like a karmadactl release tag: `vMAJOR.MINOR.PATCH`.
pub fn is_release_tag(version: &str) -> bool {
    let Some(rest) = version.strip_prefix('v') else {
        return false;
    };
    let parts: Vec<&str> = rest.split('.').collect();
    parts.len() == 3 && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// The images `karmadactl init` at `version` pulls, or `None` if the release has no table entry.
pub fn images(version: &str) -> Option<Vec<ReleaseImage>> {
    if !is_release_tag(version) {
        return None;
    }
    let minor = version.rsplit_once('.').map(|(m, _)| m)?;
    let d = TABLE.iter().find(|d| d.minor == minor)?;
    let karmada = |name: &'static str| ReleaseImage {
        name,
        source: format!("docker.io/karmada/{name}:{version}"),
        pull_mode_only: false,
    };
    let mut out = vec![
        karmada("karmada-controller-manager"),
        karmada("karmada-scheduler"),
        karmada("karmada-webhook"),
        karmada("karmada-aggregated-apiserver"),
        ReleaseImage {
            name: "kube-apiserver",
            source: format!("registry.k8s.io/kube-apiserver:{}", d.kube),
            pull_mode_only: false,
        },
        ReleaseImage {
            name: "kube-controller-manager",
            source: format!("registry.k8s.io/kube-controller-manager:{}", d.kube),
            pull_mode_only: false,
        },
        ReleaseImage { name: "etcd", source: format!("registry.k8s.io/etcd:{}", d.etcd), pull_mode_only: false },
    ];
    if let Some(alpine) = d.alpine {
        out.push(ReleaseImage {
            name: "alpine",
            source: format!("docker.io/library/alpine:{alpine}"),
            pull_mode_only: false,
        });
    }
    out.push(ReleaseImage {
        name: "karmada-agent",
        source: format!("docker.io/karmada/karmada-agent:{version}"),
        pull_mode_only: true,
    });
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_15_uses_kube_1_31_and_the_binary_version_for_karmada_images() {
        let imgs = images("v1.15.9").unwrap();
        let src: Vec<&str> = imgs.iter().map(|i| i.source.as_str()).collect();
        assert!(src.contains(&"docker.io/karmada/karmada-scheduler:v1.15.9"));
        assert!(src.contains(&"registry.k8s.io/kube-apiserver:v1.31.3"));
        assert!(src.contains(&"registry.k8s.io/etcd:3.5.16-0"));
        assert!(src.contains(&"docker.io/library/alpine:3.21.3"));
    }

    #[test]
    fn unknown_or_malformed_versions_have_no_table() {
        assert!(images("v1.99.0").is_none());
        assert!(images("1.15.9").is_none());
        assert!(images("v1.15").is_none());
        assert!(images("latest").is_none());
    }
}
