//! What differs between the Karmada releases testbed knows: the single source of it.
//!
//! For each supported minor ([`Release`]): the images `karmadactl init` deploys and their fixed tags, the init
//! flags that exist, the `purgeMode` values the PropagationPolicy API accepts, and how cluster failover is
//! switched on. Read from Karmada's own sources at each minor's latest tag (docs/karmada-versions.md), not
//! from the website, whose table is stale. The Karmada component images carry the karmadactl version as their
//! tag; kube-apiserver, kube-controller-manager and etcd have tags fixed per minor. Patch releases within a
//! minor share the minor's entry (checked for every patch tag). A version without an entry works when the
//! file lists the images itself ([`control_plane_images`]); testbed then knows none of its other facts.

use crate::model::{Image, JoinMode, TestbedFile};

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

/// What `karmadactl init --etcd-init-image` does in a release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EtcdInitImage {
    /// etcd's pod has an init container running this alpine tag; the flag sets its image.
    Used { alpine: &'static str },
    /// The init container is gone; the flag is accepted, warned about as deprecated and ignored (v1.16).
    Ignored,
    /// The flag no longer exists: passing it is an "unknown flag" error (v1.17 on).
    Removed,
}

/// How cluster failover is switched on in a release. In every known release it takes the
/// karmada-controller-manager flags [`FAILOVER_CONTROLLER_MANAGER_ARGS`] (the `Failover` gate is Beta and off
/// by default; without no-execute eviction a NoExecute taint evicts nothing) and a ClusterTaintPolicy that
/// taints a cluster NoExecute (the cluster controller itself only adds NoSchedule taints).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailoverSwitch {
    /// `karmadactl init --karmada-controller-manager-extra-args=ARG`, once per argument (v1.16 on).
    InitExtraArgs,
    /// init has no way to pass them (v1.15): the karmada-controller-manager Deployment is patched after init.
    PatchControllerManager,
}

/// The karmada-controller-manager arguments that switch cluster failover on, in every known release.
pub const FAILOVER_CONTROLLER_MANAGER_ARGS: &[&str] =
    &["--feature-gates=Failover=true", "--enable-no-execute-taint-eviction=true"];

/// One Karmada minor as testbed knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// `v1.19`.
    pub minor: &'static str,
    /// `--kube-image-tag`'s default: the kube-apiserver and kube-controller-manager tag.
    pub kube: &'static str,
    /// The etcd image's tag.
    pub etcd: &'static str,
    pub etcd_init_image: EtcdInitImage,
    /// Whether init has the `--<component>-extra-args` flags (v1.16 on).
    pub extra_args: bool,
    /// The values `failover.application.purgeMode` accepts in the PropagationPolicy CRD.
    pub purge_modes: &'static [&'static str],
    pub failover: FailoverSwitch,
}

const PURGE_MODES_UP_TO_1_18: &[&str] = &["Directly", "Gracefully", "Never", "Immediately", "Graciously"];
/// v1.19 removed the deprecated `Immediately` and `Graciously`.
const PURGE_MODES_FROM_1_19: &[&str] = &["Directly", "Gracefully", "Never"];

const V1_17: Release = Release {
    minor: "v1.17",
    kube: "v1.35.2",
    etcd: "3.6.6-0",
    etcd_init_image: EtcdInitImage::Removed,
    extra_args: true,
    purge_modes: PURGE_MODES_UP_TO_1_18,
    failover: FailoverSwitch::InitExtraArgs,
};

const TABLE: &[Release] = &[
    Release {
        minor: "v1.15",
        kube: "v1.31.3",
        etcd: "3.5.16-0",
        etcd_init_image: EtcdInitImage::Used { alpine: "3.21.3" },
        extra_args: false,
        purge_modes: PURGE_MODES_UP_TO_1_18,
        failover: FailoverSwitch::PatchControllerManager,
    },
    Release {
        minor: "v1.16",
        kube: "v1.34.1",
        etcd: "3.6.0-0",
        etcd_init_image: EtcdInitImage::Ignored,
        extra_args: true,
        purge_modes: PURGE_MODES_UP_TO_1_18,
        failover: FailoverSwitch::InitExtraArgs,
    },
    V1_17,
    // v1.18 changed nothing of this from v1.17 (docs/karmada-versions.md).
    Release { minor: "v1.18", ..V1_17 },
    // Read at v1.19.0-rc.0 and master (the same there): the sources read hold no v1.19.0 tag yet.
    Release {
        minor: "v1.19",
        kube: "v1.36.2",
        etcd: "3.6.8-0",
        etcd_init_image: EtcdInitImage::Removed,
        extra_args: true,
        purge_modes: PURGE_MODES_FROM_1_19,
        failover: FailoverSwitch::InitExtraArgs,
    },
];

/// The `purgeMode` values every release in the table accepts: what testbed takes for a version it does not
/// know.
pub const PURGE_MODES_EVERY_RELEASE: &[&str] = &["Directly", "Gracefully", "Never"];

/// What is wrong with `purgeMode` value `mode` on Karmada `version`, as `(message, help)`: the message
/// names the version and the values it accepts (for a version without a table entry, the values every
/// known release accepts). `None` when the value is accepted.
pub fn purge_mode_problem(version: &str, mode: &str) -> Option<(String, String)> {
    let accepted = release(version).map_or(PURGE_MODES_EVERY_RELEASE, |r| r.purge_modes);
    if accepted.contains(&mode) {
        return None;
    }
    let message = match release(version) {
        Some(r) => format!(
            "purge mode {mode:?} is not accepted by Karmada {version}: {} accepts {}",
            r.minor,
            accepted.join(", ")
        ),
        None => format!(
            "purge mode {mode:?} is not accepted by every Karmada release testbed knows, and testbed does not know {version}: it accepts only {} there",
            accepted.join(", ")
        ),
    };
    let renamed = match mode {
        "Graciously" => "Karmada v1.15 renamed Graciously to Gracefully: write \"Gracefully\"",
        "Immediately" => "Karmada v1.15 renamed Immediately to Directly: write \"Directly\"",
        _ => "write one of the values listed (the names are case-sensitive)",
    };
    Some((message, renamed.to_owned()))
}

/// The newest release testbed knows, and the default `[karmada] version`.
pub const DEFAULT_VERSION: &str = "v1.19.0";

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

/// The table entry of `version`'s minor, or `None` for a version testbed does not know.
pub fn release(version: &str) -> Option<&'static Release> {
    if !is_release_tag(version) {
        return None;
    }
    let minor = version.rsplit_once('.').map(|(m, _)| m)?;
    TABLE.iter().find(|d| d.minor == minor)
}

/// The images `karmadactl init` at `version` pulls, or `None` if the release has no table entry.
pub fn images(version: &str) -> Option<Vec<ReleaseImage>> {
    let d = release(version)?;
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
    if let EtcdInitImage::Used { alpine } = d.etcd_init_image {
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

/// The images `karmadactl init` deploys the control plane from, by name. A file whose `[karmada] version` has
/// no table entry lists each of them in `[[images]]` itself.
pub const CONTROL_PLANE_IMAGES: &[&str] = &[
    "karmada-controller-manager",
    "karmada-scheduler",
    "karmada-webhook",
    "karmada-aggregated-apiserver",
    "kube-apiserver",
    "kube-controller-manager",
    "etcd",
];
/// The image of etcd's init container (karmadactl v1.15 and older): optional in a file's own list.
pub const ETCD_INIT_IMAGE: &str = "alpine";
/// The karmada-agent that pull-mode members run.
pub const AGENT_IMAGE: &str = "karmada-agent";

/// One image the control plane (or a pull-mode member) runs, as testbed copies it into the local registry:
/// from the release table, or, for a version without one, from the file's own `[[images]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlPlaneImage {
    /// The component's image name (`etcd`, `karmada-scheduler`, ...): the resource is `image.NAME`, and the
    /// copy in the local registry is the repository NAME.
    pub name: String,
    /// Full source reference.
    pub source: String,
    /// The karmada-agent, needed by pull-mode members only (not by the control plane).
    pub pull_mode_only: bool,
}

impl ControlPlaneImage {
    /// Where the copy lives in a registry reached as `registry` (`localhost:32000` on the host,
    /// `10.123.45.1:32000` from a member): `REGISTRY/NAME:TAG` with the source's tag, or `REGISTRY/NAME@DIGEST`
    /// for a source pinned by digest alone.
    pub fn target(&self, registry: &str) -> String {
        let reference = match crate::image_ref::ImageRef::parse(&self.source) {
            Ok(crate::image_ref::ImageRef { tag: Some(t), .. }) => format!(":{t}"),
            Ok(crate::image_ref::ImageRef { digest: Some(d), .. }) => format!("@{d}"),
            _ => ":latest".to_owned(),
        };
        format!("{registry}/{}{reference}", self.name)
    }
}

fn any_pull(file: &TestbedFile) -> bool {
    file.members.iter().any(|m| m.join_mode.unwrap_or(file.karmada.join_mode) == JoinMode::Pull)
}

/// The file's registry entries (not side-loaded) named `name`.
fn listed<'f>(file: &'f TestbedFile, name: &str) -> Option<&'f Image> {
    file.images.iter().find(|i| !i.sideload && crate::image_name(i) == name)
}

/// The images the control plane needs, plus the karmada-agent when a member joins in pull mode: the release
/// table's for a version that has one; otherwise the file's own `[[images]]` entries (not side-loaded)
/// named for a component ([`CONTROL_PLANE_IMAGES`], and `alpine` and `karmada-agent` when the file lists
/// them), in that order. Entries whose source does not parse are left out (validation reports them).
///
/// The desired state copies exactly these, and `karmadactl init` is pointed at exactly these copies.
pub fn control_plane_images(file: &TestbedFile) -> Vec<ControlPlaneImage> {
    if let Some(table) = images(&file.karmada.version) {
        let pull = any_pull(file);
        return table
            .into_iter()
            .filter(|i| pull || !i.pull_mode_only)
            .map(|i| ControlPlaneImage { name: i.name.to_owned(), source: i.source, pull_mode_only: i.pull_mode_only })
            .collect();
    }
    CONTROL_PLANE_IMAGES
        .iter()
        .chain([&ETCD_INIT_IMAGE, &AGENT_IMAGE])
        .filter_map(|name| listed(file, name).map(|img| (*name, img)))
        .filter(|(_, img)| crate::image_ref::ImageRef::parse(&img.source).is_ok())
        .map(|(name, img)| ControlPlaneImage {
            name: name.to_owned(),
            source: img.source.clone(),
            pull_mode_only: name == AGENT_IMAGE,
        })
        .collect()
}

/// For a version without a table entry, the images the file must list but does not: every one of
/// [`CONTROL_PLANE_IMAGES`], and the karmada-agent when a member joins in pull mode. Empty for a version
/// with a table entry.
pub fn missing_listed_images(file: &TestbedFile) -> Vec<&'static str> {
    if images(&file.karmada.version).is_some() {
        return vec![];
    }
    let agent = any_pull(file).then_some(AGENT_IMAGE);
    CONTROL_PLANE_IMAGES.iter().copied().chain(agent).filter(|name| listed(file, name).is_none()).collect()
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

    fn file(text: &str) -> TestbedFile {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn a_known_version_takes_the_table_and_the_agent_only_for_pull_mode() {
        let push = file("[[members]]\nname = \"m1\"\napi_port = 16441\n");
        let names: Vec<String> = control_plane_images(&push).into_iter().map(|i| i.name).collect();
        assert_eq!(
            names,
            [
                "karmada-controller-manager",
                "karmada-scheduler",
                "karmada-webhook",
                "karmada-aggregated-apiserver",
                "kube-apiserver",
                "kube-controller-manager",
                "etcd",
            ],
            "the default release has no etcd init container"
        );
        assert!(missing_listed_images(&push).is_empty());
        let pull = file("[[members]]\nname = \"m1\"\napi_port = 16441\njoin_mode = \"pull\"\n");
        let agent = control_plane_images(&pull).pop().unwrap();
        assert_eq!(agent.name, "karmada-agent");
        assert!(agent.pull_mode_only);
        assert_eq!(agent.target("10.123.45.1:32000"), "10.123.45.1:32000/karmada-agent:v1.19.0");
        let etcd = control_plane_images(&pull).into_iter().find(|i| i.name == "etcd").unwrap();
        assert_eq!(etcd.target("localhost:32000"), "localhost:32000/etcd:3.6.8-0");
    }

    #[test]
    fn an_unknown_version_takes_the_files_registry_entries_by_name() {
        let f = file(
            r#"[karmada]
version = "v1.99.0"

[[images]]
source = "registry.k8s.io/etcd:3.6.5-0"

[[images]]
name = "alpine"
source = "docker.io/library/alpine@sha256:0000000000000000000000000000000000000000000000000000000000000000"

[[images]]
source = "docker.io/karmada/karmada-scheduler:v1.99.0"
sideload = true

[[images]]
source = "docker.io/library/nginx:1.27"
"#,
        );
        let got: Vec<(String, String)> =
            control_plane_images(&f).into_iter().map(|i| (i.name.clone(), i.target("localhost:32000"))).collect();
        assert_eq!(
            got,
            [
                ("etcd".to_owned(), "localhost:32000/etcd:3.6.5-0".to_owned()),
                (
                    "alpine".to_owned(),
                    "localhost:32000/alpine@sha256:0000000000000000000000000000000000000000000000000000000000000000"
                        .to_owned()
                ),
            ]
        );
        // A side-loaded entry does not count.
        assert_eq!(
            missing_listed_images(&f),
            [
                "karmada-controller-manager",
                "karmada-scheduler",
                "karmada-webhook",
                "karmada-aggregated-apiserver",
                "kube-apiserver",
                "kube-controller-manager"
            ]
        );
    }

    #[test]
    fn each_minor_says_how_init_and_failover_differ() {
        let v115 = release("v1.15.9").unwrap();
        assert_eq!(v115.etcd_init_image, EtcdInitImage::Used { alpine: "3.21.3" });
        assert!(!v115.extra_args);
        assert_eq!(v115.failover, FailoverSwitch::PatchControllerManager);
        let v116 = release("v1.16.8").unwrap();
        assert_eq!((v116.etcd_init_image, v116.extra_args), (EtcdInitImage::Ignored, true));
        for v in ["v1.17.5", "v1.18.2", "v1.19.0"] {
            let r = release(v).unwrap();
            assert_eq!(
                (r.etcd_init_image, r.extra_args, r.failover),
                (EtcdInitImage::Removed, true, FailoverSwitch::InitExtraArgs),
                "{v}"
            );
        }
        assert!(release("v1.18.2").unwrap().purge_modes.contains(&"Graciously"));
        assert_eq!(release("v1.19.0").unwrap().purge_modes, ["Directly", "Gracefully", "Never"]);
        assert!(release(DEFAULT_VERSION).is_some());
        // Older minors are not supported: their facts were not read.
        assert!(release("v1.14.2").is_none());
    }

    #[test]
    fn the_purge_modes_of_an_unknown_version_are_those_every_release_accepts() {
        let every: Vec<&str> = PURGE_MODES_UP_TO_1_18
            .iter()
            .copied()
            .filter(|m| TABLE.iter().all(|r| r.purge_modes.contains(m)))
            .collect();
        assert_eq!(every, PURGE_MODES_EVERY_RELEASE);
        assert_eq!(purge_mode_problem("v1.15.9", "Graciously"), None);
        let (message, help) = purge_mode_problem("v1.19.0", "Graciously").unwrap();
        assert_eq!(
            message,
            "purge mode \"Graciously\" is not accepted by Karmada v1.19.0: v1.19 accepts Directly, Gracefully, Never"
        );
        assert!(help.contains("\"Gracefully\""), "{help}");
        assert!(purge_mode_problem("v1.20.0", "Immediately").unwrap().0.contains("Directly, Gracefully, Never"));
        assert_eq!(purge_mode_problem("v1.20.0", "Never"), None);
    }

    #[test]
    fn unknown_or_malformed_versions_have_no_table() {
        assert!(images("v1.99.0").is_none());
        assert!(images("1.15.9").is_none());
        assert!(images("v1.15").is_none());
        assert!(images("latest").is_none());
    }
}
