//! The registries of the simulated world, as the OCI distribution API serves them
//! ([distribution-spec v1.1](https://github.com/opencontainers/distribution-spec/blob/v1.1.0/spec.md)):
//!
//! - **The local registry**: the host MicroK8s `registry` addon (MicroK8s core addons,
//!   `addons/registry/enable`: CNCF distribution 2.8 behind the `registry` Service's NodePort 32000, plain
//!   HTTP, no authentication, `REGISTRY_STORAGE_DELETE_ENABLED=true`). It answers while the host MicroK8s
//!   runs with the addon enabled, and holds exactly what was pushed to it: blobs by digest, linked into the
//!   repositories that received or mounted them, manifests by digest, tags. Its content is part of the
//!   world (saved with it) and goes with the addon.
//! - **The public registries** (`registry-1.docker.io`, `registry.k8s.io`, `ghcr.io`, `quay.io`, ...):
//!   read-only, over TLS, every `REPOSITORY:TAG` there (see [`upstream_image`]). Docker Hub wants a Bearer
//!   token from `auth.docker.io` (its `WWW-Authenticate` challenge), as the real one does for anonymous
//!   pulls.
//!
//! What is served is decided here as a pure function of the world and the request ([`handle`]); the
//! sockets and TLS are in [`crate::registry_server`].

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest as _, Sha256};

use crate::world::SimWorld;

/// The NodePort of the registry addon's Service.
pub const ADDON_PORT: u16 = 32000;

pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// The public registries the simulated internet has, by API host. Anything else does not resolve.
pub(crate) const PUBLIC_REGISTRIES: [&str; 6] =
    ["registry-1.docker.io", "registry.k8s.io", "ghcr.io", "quay.io", "gcr.io", "public.ecr.aws"];
/// Docker Hub's token service.
pub(crate) const DOCKER_AUTH: &str = "auth.docker.io";
const DOCKER_HUB: &str = "registry-1.docker.io";

/// The local registry's content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalRegistry {
    pub repositories: BTreeMap<String, Repository>,
    /// Every blob pushed, by digest.
    pub blobs: BTreeMap<String, Blob>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Repository {
    /// Tag → manifest digest.
    pub tags: BTreeMap<String, String>,
    /// Digest → manifest.
    pub manifests: BTreeMap<String, Manifest>,
    /// The blobs linked into this repository (pushed or mounted here).
    pub blobs: BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub media_type: String,
    /// The exact bytes pushed (manifests are JSON).
    pub body: String,
}

/// A blob's bytes, base64 in the state file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob(pub Vec<u8>);

impl Serialize for Blob {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use base64::Engine as _;
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Blob {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Blob, D::Error> {
        use base64::Engine as _;
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD.decode(s).map(Blob).map_err(serde::de::Error::custom)
    }
}

impl LocalRegistry {
    /// Whether `repository:reference` (a tag or a digest) is there: what a pull from it needs.
    pub fn has(&self, repository: &str, reference: &str) -> bool {
        self.repositories.get(repository).is_some_and(|r| {
            r.tags.contains_key(reference) || (reference.starts_with("sha256:") && r.manifests.contains_key(reference))
        })
    }

    /// Every `repository:tag`.
    pub fn tags(&self) -> Vec<String> {
        self.repositories.iter().flat_map(|(name, r)| r.tags.keys().map(move |t| format!("{name}:{t}"))).collect()
    }
}

pub(crate) fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// Who answers at an address of the simulated network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Site {
    /// The host MicroK8s registry addon.
    Local,
    /// A public registry, by API host.
    Public(String),
    /// Docker Hub's token service.
    DockerAuth,
}

/// The mirrors a file names (`[registry.mirrors]`), as `(https, host:port)`: the simulated world has
/// them, each serving what the public registries serve.
pub(crate) fn mirrors(settings: &testbed_config::Registry) -> Vec<(bool, String)> {
    settings
        .mirrors
        .values()
        .filter_map(|m| m.endpoint_parts())
        .map(|(https, host)| {
            let with_port = if host.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
                host
            } else {
                format!("{host}:{}", if https { 443 } else { 80 })
            };
            (https, with_port)
        })
        .collect()
}

/// Who answers at `authority` (`host:port`) over plain HTTP or TLS, from the host: `None` when nothing
/// does (the connection is refused, or the name does not resolve).
pub(crate) fn site(world: &SimWorld, mirrors: &[(bool, String)], authority: &str, tls: bool) -> Option<Site> {
    if mirrors.iter().any(|(https, m)| *https == tls && m == authority) {
        return Some(Site::Public(authority.to_owned()));
    }
    let (host, port) = authority.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    if tls {
        if port != 443 {
            return None;
        }
        return match host {
            DOCKER_AUTH => Some(Site::DockerAuth),
            h if PUBLIC_REGISTRIES.contains(&h) => Some(Site::Public(h.to_owned())),
            _ => None,
        };
    }
    // The NodePort answers on every address of the host: loopback and the bridges' gateways.
    let gateway = |n: &crate::lxd_daemon::state::Network| n.subnet().is_some_and(|(ip, _)| ip.to_string() == host);
    let local_name = matches!(host, "127.0.0.1" | "localhost") || world.lxd_daemon.networks.values().any(gateway);
    let serves = world.host.microk8s.as_ref().is_some_and(|m| m.running && m.registry.is_some());
    (local_name && port == ADDON_PORT && serves).then_some(Site::Local)
}

/// One request, as the server read it.
pub(crate) struct Request<'a> {
    pub method: &'a str,
    /// The path, without the query.
    pub path: &'a str,
    pub query: &'a str,
    pub content_type: Option<&'a str>,
    pub authorization: Option<&'a str>,
    pub body: &'a [u8],
}

/// One answer.
#[derive(Debug, Default)]
pub(crate) struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    fn json(status: u16, body: serde_json::Value) -> Reply {
        Reply {
            status,
            headers: vec![("content-type", "application/json".into())],
            body: serde_json::to_vec(&body).unwrap_or_default(),
        }
    }

    /// A distribution error (`{"errors":[{"code":...,"message":...}]}`).
    fn error(status: u16, code: &str, message: &str) -> Reply {
        Reply::json(status, json!({"errors": [{"code": code, "message": message, "detail": null}]}))
    }

    /// A fault injected by `TESTBED_SIM_FAIL`, as distribution answers a storage failure.
    pub(crate) fn injected(address: &str) -> Reply {
        Reply::internal(&format!("simulated failure injected by TESTBED_SIM_FAIL ({address})"))
    }

    pub(crate) fn internal(message: &str) -> Reply {
        Reply::error(500, "UNKNOWN", &format!("unknown error: {message}"))
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }

    fn content(status: u16, media_type: &str, digest: &str, body: Vec<u8>) -> Reply {
        Reply {
            status,
            headers: vec![("content-type", media_type.into()), ("docker-content-digest", digest.into())],
            body,
        }
    }
}

/// What a path under `/v2/` asks for.
#[derive(Debug, PartialEq, Eq)]
enum Route<'a> {
    Base,
    /// `GET /v2/_catalog`: every repository.
    Catalog,
    /// `GET /v2/NAME/tags/list`.
    Tags {
        repository: &'a str,
    },
    Manifest {
        repository: &'a str,
        reference: &'a str,
    },
    Blob {
        repository: &'a str,
        digest: &'a str,
    },
    /// `POST /v2/NAME/blobs/uploads/`.
    Uploads {
        repository: &'a str,
    },
    /// `PUT /v2/NAME/blobs/uploads/SESSION`.
    Upload {
        repository: &'a str,
    },
}

fn route(path: &str) -> Option<Route<'_>> {
    let rest = path.strip_prefix("/v2/")?;
    if rest.is_empty() {
        return Some(Route::Base);
    }
    if rest == "_catalog" {
        return Some(Route::Catalog);
    }
    if let Some(repository) = rest.strip_suffix("/tags/list") {
        return Some(Route::Tags { repository });
    }
    if let Some((repository, session)) = rest.rsplit_once("/blobs/uploads/") {
        return Some(if session.is_empty() { Route::Uploads { repository } } else { Route::Upload { repository } });
    }
    if let Some((repository, reference)) = rest.rsplit_once("/manifests/") {
        return Some(Route::Manifest { repository, reference });
    }
    let (repository, digest) = rest.rsplit_once("/blobs/")?;
    Some(Route::Blob { repository, digest })
}

/// Whether a `PUT` to `path` pushes the manifest of `target` (`localhost:PORT/REPOSITORY:TAG` or
/// `...@DIGEST`).
pub(crate) fn pushed_to(path: &str, target: &str) -> bool {
    let Some(Route::Manifest { repository, reference }) = route(path) else { return false };
    let Some((_, rest)) = target.split_once('/') else { return false };
    let (repo, want) = match rest.split_once('@') {
        Some((repo, digest)) => (repo, digest),
        None => rest.rsplit_once(':').unwrap_or((rest, "latest")),
    };
    repo == repository && want == reference
}

fn query_value<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query.split('&').filter_map(|kv| kv.split_once('=')).find(|(k, _)| *k == key).map(|(_, v)| v)
}

/// `%3A` back to `:` (digests in query strings are percent-encoded by clients).
fn unescape(value: &str) -> String {
    value.replace("%3A", ":").replace("%3a", ":").replace("%2F", "/").replace("%2f", "/")
}

/// How long a request takes on a real machine: the public registries are across the internet (a layer of
/// tens of megabytes takes seconds), the local one is on loopback (writing a layer to its volume takes a
/// moment).
pub(crate) fn took(site: &Site, req: &Request<'_>) -> std::time::Duration {
    let ms = match (site, route(req.path)) {
        (Site::Local, Some(Route::Upload { .. })) => 500,
        (Site::Local, _) => 10,
        (Site::DockerAuth, _) => 300,
        (Site::Public(_), Some(Route::Blob { .. })) if req.method == "GET" => 2000,
        (Site::Public(_), _) => 300,
    };
    std::time::Duration::from_millis(ms)
}

/// The local registry's answer; `changed` says whether a manifest or tag changed (the world is saved
/// then). A blob pushed or mounted is kept in memory until then: one that no manifest refers to yet is
/// what a registry may lose anyway (distribution's garbage collection removes unreferenced blobs), and a
/// copy that did not finish is sent again, which is what the engine does with a registry that lost it.
pub(crate) fn handle_local(
    reg: &mut LocalRegistry,
    req: &Request<'_>,
    session: impl FnOnce() -> String,
) -> (Reply, bool) {
    let Some(route) = route(req.path) else { return (Reply::error(404, "NOT_FOUND", "page not found"), false) };
    let head = req.method == "HEAD";
    match (req.method, route) {
        ("GET" | "HEAD", Route::Base) => (Reply::json(200, json!({})), false),
        // distribution 2.8 lists every repository, also one whose tags were all deleted.
        ("GET", Route::Catalog) => {
            (Reply::json(200, json!({ "repositories": reg.repositories.keys().collect::<Vec<_>>() })), false)
        }
        ("GET", Route::Tags { repository }) => match reg.repositories.get(repository) {
            Some(r) => {
                (Reply::json(200, json!({ "name": repository, "tags": r.tags.keys().collect::<Vec<_>>() })), false)
            }
            None => (Reply::error(404, "NAME_UNKNOWN", "repository name not known to registry"), false),
        },
        ("GET" | "HEAD", Route::Manifest { repository, reference }) => {
            let found = reg.repositories.get(repository).and_then(|r| {
                let digest = if reference.starts_with("sha256:") { reference } else { r.tags.get(reference)? };
                Some((digest.to_owned(), r.manifests.get(digest)?.clone()))
            });
            match found {
                Some((digest, m)) => {
                    let body = if head { Vec::new() } else { m.body.clone().into_bytes() };
                    let reply = Reply::content(200, &m.media_type, &digest, body);
                    (reply.header("content-length", m.body.len().to_string()), false)
                }
                None => (Reply::error(404, "MANIFEST_UNKNOWN", "manifest unknown"), false),
            }
        }
        ("PUT", Route::Manifest { repository, reference }) => put_manifest(reg, repository, reference, req),
        ("DELETE", Route::Manifest { repository, reference }) => {
            if !reference.starts_with("sha256:") {
                return (Reply::error(400, "UNSUPPORTED", "The operation is unsupported."), false);
            }
            let Some(r) = reg.repositories.get_mut(repository) else {
                return (Reply::error(404, "MANIFEST_UNKNOWN", "manifest unknown"), false);
            };
            if r.manifests.remove(reference).is_none() {
                return (Reply::error(404, "MANIFEST_UNKNOWN", "manifest unknown"), false);
            }
            r.tags.retain(|_, d| d != reference);
            (Reply { status: 202, ..Default::default() }, true)
        }
        ("GET" | "HEAD", Route::Blob { repository, digest }) => {
            let linked = reg.repositories.get(repository).is_some_and(|r| r.blobs.contains(digest));
            match reg.blobs.get(digest).filter(|_| linked) {
                Some(b) => {
                    let body = if head { Vec::new() } else { b.0.clone() };
                    let reply = Reply::content(200, "application/octet-stream", digest, body);
                    (reply.header("content-length", b.0.len().to_string()), false)
                }
                None => (Reply::error(404, "BLOB_UNKNOWN", "blob unknown to registry"), false),
            }
        }
        ("POST", Route::Uploads { repository }) => {
            if let (Some(digest), Some(from)) = (query_value(req.query, "mount"), query_value(req.query, "from")) {
                let (digest, from) = (unescape(digest), unescape(from));
                let there = reg.repositories.get(&from).is_some_and(|r| r.blobs.contains(&digest));
                if there {
                    reg.repositories.entry(repository.to_owned()).or_default().blobs.insert(digest.clone());
                    let reply = Reply { status: 201, ..Default::default() }
                        .header("location", format!("/v2/{repository}/blobs/{digest}"))
                        .header("docker-content-digest", digest);
                    return (reply, false);
                }
            }
            let reply = Reply { status: 202, ..Default::default() }
                .header("location", format!("/v2/{repository}/blobs/uploads/{}", session()))
                .header("range", "0-0");
            (reply, false)
        }
        ("PUT", Route::Upload { repository }) => {
            let Some(digest) = query_value(req.query, "digest").map(unescape) else {
                return (Reply::error(400, "DIGEST_INVALID", "provided digest did not match uploaded content"), false);
            };
            if digest_of(req.body) != digest {
                return (Reply::error(400, "DIGEST_INVALID", "provided digest did not match uploaded content"), false);
            }
            reg.blobs.insert(digest.clone(), Blob(req.body.to_vec()));
            reg.repositories.entry(repository.to_owned()).or_default().blobs.insert(digest.clone());
            let reply = Reply { status: 201, ..Default::default() }
                .header("location", format!("/v2/{repository}/blobs/{digest}"))
                .header("docker-content-digest", digest);
            (reply, false)
        }
        _ => (Reply::error(405, "UNSUPPORTED", "The operation is unsupported."), false),
    }
}

fn put_manifest(reg: &mut LocalRegistry, repository: &str, reference: &str, req: &Request<'_>) -> (Reply, bool) {
    let invalid = |why: &str| (Reply::error(400, "MANIFEST_INVALID", &format!("manifest invalid: {why}")), false);
    let Ok(body) = std::str::from_utf8(req.body) else { return invalid("not UTF-8") };
    let Ok(parsed) = serde_json::from_str::<serde_json::Value>(body) else { return invalid("not JSON") };
    let digest = digest_of(req.body);
    if reference.starts_with("sha256:") && reference != digest {
        return (Reply::error(400, "DIGEST_INVALID", "provided digest did not match uploaded content"), false);
    }
    let media_type = req.content_type.map(str::to_owned).or_else(|| parsed["mediaType"].as_str().map(str::to_owned));
    let Some(media_type) = media_type else { return invalid("no media type") };
    let repo = reg.repositories.entry(repository.to_owned()).or_default();
    // What the manifest refers to must be in the repository first.
    let missing = match parsed["manifests"].as_array() {
        Some(children) => children
            .iter()
            .filter_map(|c| c["digest"].as_str())
            .find(|d| !repo.manifests.contains_key(*d))
            .map(|d| ("MANIFEST_BLOB_UNKNOWN", d.to_owned())),
        None => std::iter::once(&parsed["config"])
            .chain(parsed["layers"].as_array().into_iter().flatten())
            .filter_map(|d| d["digest"].as_str())
            .find(|d| !repo.blobs.contains(*d))
            .map(|d| ("MANIFEST_BLOB_UNKNOWN", d.to_owned())),
    };
    if let Some((code, what)) = missing {
        return (Reply::error(400, code, &format!("blob unknown to registry: {what}")), false);
    }
    repo.manifests.insert(digest.clone(), Manifest { media_type, body: body.to_owned() });
    if !reference.starts_with("sha256:") {
        repo.tags.insert(reference.to_owned(), digest.clone());
    }
    let reply = Reply { status: 201, ..Default::default() }
        .header("location", format!("/v2/{repository}/manifests/{digest}"))
        .header("docker-content-digest", digest);
    (reply, true)
}

/// What the public registries have served in this process: content by digest, and the tokens issued.
#[derive(Default)]
pub(crate) struct Internet {
    content: HashMap<String, (String, Vec<u8>)>,
    tokens: BTreeSet<String>,
}

/// A public image: an OCI index of linux/amd64 and linux/arm64, each with a config, a base layer every
/// image of that platform shares, and a layer of its own; all made from the repository and tag, so they
/// always have the same digests, wherever they are served from (a mirror serves what its upstream does).
/// Returns the index and everything under it.
pub(crate) fn upstream_image(repository: &str, tag: &str) -> Vec<(String, String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut entries = Vec::new();
    for arch in ["amd64", "arm64"] {
        let base = format!("simulated base layer for linux/{arch}\n").into_bytes();
        let own = format!("simulated layer of {repository}:{tag} for linux/{arch}\n").into_bytes();
        let config = serde_json::to_vec(&json!({
            "architecture": arch,
            "os": "linux",
            "config": {"Labels": {"org.opencontainers.image.ref.name": format!("{repository}:{tag}")}},
            "rootfs": {"type": "layers", "diff_ids": [digest_of(&base), digest_of(&own)]},
        }))
        .unwrap_or_default();
        let descriptor =
            |media: &str, bytes: &[u8]| json!({"mediaType": media, "digest": digest_of(bytes), "size": bytes.len()});
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(OCI_CONFIG, &config),
            "layers": [descriptor(OCI_LAYER, &base), descriptor(OCI_LAYER, &own)],
        }))
        .unwrap_or_default();
        entries.push(json!({
            "mediaType": OCI_MANIFEST,
            "digest": digest_of(&manifest),
            "size": manifest.len(),
            "platform": {"architecture": arch, "os": "linux"},
        }));
        for blob in [config, base, own] {
            out.push((digest_of(&blob), "application/octet-stream".to_owned(), blob));
        }
        out.push((digest_of(&manifest), OCI_MANIFEST.to_owned(), manifest));
    }
    let index = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}))
        .unwrap_or_default();
    out.insert(0, (digest_of(&index), OCI_INDEX.to_owned(), index));
    out
}

/// A public registry's answer (read-only). Docker Hub answers only with a token its service issued.
pub(crate) fn handle_public(net: &mut Internet, host: &str, req: &Request<'_>) -> Reply {
    if host == DOCKER_HUB {
        let token = req.authorization.and_then(|a| a.strip_prefix("Bearer "));
        if !token.is_some_and(|t| net.tokens.contains(t)) {
            let scope = match route(req.path) {
                Some(Route::Manifest { repository, .. } | Route::Blob { repository, .. }) => {
                    format!(",scope=\"repository:{repository}:pull\"")
                }
                _ => String::new(),
            };
            return Reply::error(401, "UNAUTHORIZED", "authentication required").header(
                "www-authenticate",
                format!("Bearer realm=\"https://{DOCKER_AUTH}/token\",service=\"registry.docker.io\"{scope}"),
            );
        }
    }
    let head = req.method == "HEAD";
    let found = |net: &Internet, digest: &str| net.content.get(digest).cloned();
    match (req.method, route(req.path)) {
        ("GET" | "HEAD", Some(Route::Base)) => Reply::json(200, json!({})),
        ("GET" | "HEAD", Some(Route::Manifest { repository, reference })) => {
            let hit = if reference.starts_with("sha256:") {
                found(net, reference).map(|(m, b)| (reference.to_owned(), m, b))
            } else {
                let all = upstream_image(repository, reference);
                let index = all.first().cloned();
                for (d, m, b) in all {
                    net.content.insert(d, (m, b));
                }
                index
            };
            match hit.filter(|(_, m, _)| m != "application/octet-stream") {
                Some((digest, media, body)) => {
                    let len = body.len();
                    Reply::content(200, &media, &digest, if head { Vec::new() } else { body })
                        .header("content-length", len.to_string())
                }
                None => Reply::error(404, "MANIFEST_UNKNOWN", "manifest unknown"),
            }
        }
        ("GET" | "HEAD", Some(Route::Blob { digest, .. })) => match found(net, digest) {
            Some((_, body)) => {
                let len = body.len();
                Reply::content(200, "application/octet-stream", digest, if head { Vec::new() } else { body })
                    .header("content-length", len.to_string())
            }
            None => Reply::error(404, "BLOB_UNKNOWN", "blob unknown to registry"),
        },
        ("GET" | "HEAD", _) => Reply::error(404, "NOT_FOUND", "page not found"),
        _ => Reply::error(401, "UNAUTHORIZED", "authentication required"),
    }
}

/// Docker Hub's token service: a pull token for anyone (anonymous pulls).
pub(crate) fn handle_docker_auth(net: &mut Internet, req: &Request<'_>) -> Reply {
    if req.method != "GET" || req.path != "/token" {
        return Reply { status: 404, body: b"404 page not found\n".to_vec(), ..Default::default() };
    }
    let token = format!("sim-{:016x}", net.tokens.len() as u64 + 1);
    net.tokens.insert(token.clone());
    Reply::json(200, json!({"token": token, "access_token": token, "expires_in": 300}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_repositories_with_slashes() {
        assert_eq!(route("/v2/"), Some(Route::Base));
        assert_eq!(
            route("/v2/karmada/karmada-agent/manifests/v1.15.9"),
            Some(Route::Manifest { repository: "karmada/karmada-agent", reference: "v1.15.9" })
        );
        assert_eq!(route("/v2/a/b/blobs/sha256:00"), Some(Route::Blob { repository: "a/b", digest: "sha256:00" }));
        assert_eq!(route("/v2/a/blobs/uploads/"), Some(Route::Uploads { repository: "a" }));
        assert_eq!(route("/v2/a/blobs/uploads/123"), Some(Route::Upload { repository: "a" }));
        assert_eq!(route("/other"), None);
    }

    #[test]
    fn a_public_reference_always_has_the_same_digests() {
        let a = upstream_image("etcd", "3.5.16-0");
        let b = upstream_image("etcd", "3.5.16-0");
        let c = upstream_image("etcd", "3.5.17-0");
        assert_eq!(a.first().map(|x| &x.0), b.first().map(|x| &x.0));
        assert_ne!(a.first().map(|x| &x.0), c.first().map(|x| &x.0));
        // The base layers are shared between images of one platform.
        let blobs = |v: &[(String, String, Vec<u8>)]| v.iter().map(|x| x.0.clone()).collect::<BTreeSet<_>>();
        assert_eq!(blobs(&a).intersection(&blobs(&c)).count(), 2);
    }

    #[test]
    fn a_manifest_is_refused_until_its_blobs_are_there() {
        let mut reg = LocalRegistry::default();
        let all = upstream_image("x", "1");
        let (_, _, manifest) = all.iter().find(|(_, m, _)| m == OCI_MANIFEST).cloned().expect("a manifest");
        fn put(body: &[u8]) -> Request<'_> {
            Request {
                method: "PUT",
                path: "/v2/x/manifests/1",
                query: "",
                content_type: Some(OCI_MANIFEST),
                authorization: None,
                body,
            }
        }
        let (reply, changed) = handle_local(&mut reg, &put(&manifest), || "s".into());
        assert_eq!((reply.status, changed), (400, false));
        for (digest, _, blob) in all.iter().filter(|(_, m, _)| m == "application/octet-stream") {
            let req = Request {
                method: "PUT",
                path: "/v2/x/blobs/uploads/s",
                query: &format!("digest={digest}"),
                content_type: None,
                authorization: None,
                body: blob,
            };
            let _ = handle_local(&mut reg, &req, || "s".into());
        }
        let (reply, changed) = handle_local(&mut reg, &put(&manifest), || "s".into());
        assert_eq!((reply.status, changed), (201, true));
        assert!(reg.has("x", "1"));
    }
}
