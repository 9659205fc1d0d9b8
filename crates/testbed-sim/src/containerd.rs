//! A member MicroK8s' containerd, as `microk8s images import` and `microk8s ctr images ...` see it.
//!
//! - `microk8s images import FILE` (MicroK8s `scripts/wrappers/images.py` and `distributed_op.py`, 1.32):
//!   reads the whole archive and posts it to each node's cluster agent (port 25000), which runs
//!   `ctr image import`. It prints "Pushing OCI images to ADDR" per node, and "Failed to import images on
//!   ADDR: ..." when the import failed, or "Failed to reach ADDR: ..." when the agent does not answer, and
//!   **exits 0 either way** (real-tools.md behaviour 10).
//! - An archive is a docker-archive (`docker save`: `manifest.json` with `RepoTags`) or an OCI layout
//!   (`index.json`, names in the `io.containerd.image.name` or `org.opencontainers.image.ref.name`
//!   annotations). Its images are named as containerd names them (`flask-demo:2.0` is
//!   `docker.io/library/flask-demo:2.0`).
//! - `microk8s ctr images ls -q` lists the names; `microk8s ctr images rm NAME...` removes them (ctr 1.7).
//! - A pod's image is pulled as the kubelet and containerd's CRI pull it ([`pull`]): by its pull policy,
//!   through the member's `certs.d/<name>/hosts.toml`, from what answers at each endpoint seen from the
//!   member.

use std::collections::{BTreeMap, BTreeSet};

use testbed_config::image_ref::ImageRef;
use testbed_steps::REGISTRY_CERTS_DIR;

use crate::coreutils::Entry;
use crate::programs::{fail, ok, Ran};
use crate::world::{MemberMicrok8s, SimWorld, Waiting};

pub(crate) fn run(m: &mut MemberMicrok8s, files: &BTreeMap<String, Entry>, a: &[&str], agent: &str) -> Ran {
    const NO_CONTAINERD: &str = "ctr: failed to dial \"/var/snap/microk8s/common/run/containerd.sock\": connection error: desc = \"transport: error while dialing: dial unix /var/snap/microk8s/common/run/containerd.sock: connect: connection refused\"\n";
    match a {
        ["images", "import", file] => {
            let mut out = format!("Pushing OCI images to {agent}\n");
            if !m.running {
                out.push_str(&format!(
                    "Failed to reach {agent}: HTTPSConnectionPool(host='{}', port=25000): Max retries exceeded\n",
                    agent.trim_end_matches(":25000")
                ));
                return ok(out, 1);
            }
            let Some(bytes) = crate::coreutils::file_bytes(files, file) else {
                return fail(1, format!("Error: Invalid value for 'IMAGE': Path '{file}' does not exist.\n"));
            };
            match archive_images(bytes) {
                Ok(names) => {
                    m.images.extend(names);
                    ok(out, 5)
                }
                Err(why) => {
                    out.push_str(&format!("Failed to import images on {agent}: ctr: {why}\n"));
                    ok(out, 2)
                }
            }
        }
        ["ctr", "images", "ls", "-q"] | ["ctr", "image", "ls", "-q"] => {
            if !m.running {
                return fail(1, NO_CONTAINERD);
            }
            let listed: String = m.images.iter().map(|i| format!("{i}\n")).collect();
            ok(listed, 1)
        }
        ["ctr", "images" | "image", "rm" | "remove" | "del" | "delete", names @ ..] if !names.is_empty() => {
            if !m.running {
                return fail(1, NO_CONTAINERD);
            }
            let mut out = String::new();
            let mut missing = String::new();
            for n in names {
                if m.images.remove(*n) {
                    out.push_str(&format!("{n}\n"));
                } else {
                    missing.push_str(&format!("ctr: image \"{n}\": not found\n"));
                }
            }
            if missing.is_empty() {
                ok(out, 1)
            } else {
                Ran {
                    out: testbed_command::Output { code: 1, stdout: out, stderr: missing },
                    took: std::time::Duration::from_secs(1),
                }
            }
        }
        _ => fail(1, format!("Error: the simulated microk8s does not model `microk8s {}`\n", a.join(" "))),
    }
}

/// What a member's kubelet gets for one container's image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Pull {
    /// In the member's containerd already (imported, or pulled before), and the policy does not pull.
    Present,
    /// Pulled now: containerd keeps it under this name.
    Pulled(String),
    /// Not had: the container waits, with the kubelet's reason and message.
    Failed(Waiting),
}

/// An endpoint of a registry name, as containerd's `hosts.toml` lists them: `(scheme, host:port)`.
type Endpoint = (String, String);

/// `http://10.0.0.1:32000` → (`http`, `10.0.0.1:32000`); a server without a scheme is HTTPS.
fn endpoint(url: &str) -> Endpoint {
    let (scheme, rest) = url.split_once("://").unwrap_or(("https", url));
    (scheme.to_owned(), rest.split('/').next().unwrap_or_default().to_owned())
}

/// Whether `host` is the member itself: its loopback names.
fn loopback(host: &str) -> bool {
    matches!(host, "localhost" | "::1" | "[::1]") || host.starts_with("127.")
}

fn host_and_port(authority: &str, scheme: &str) -> (String, u16) {
    match authority.rsplit_once(':').and_then(|(h, p)| Some((h, p.parse().ok()?))) {
        Some((h, p)) => (h.to_owned(), p),
        None => (authority.to_owned(), if scheme == "http" { 80 } else { 443 }),
    }
}

/// Where containerd looks for `name`'s images, in order, from the member's files: the `[host."..."]`
/// entries of `certs.d/<name>/hosts.toml` (else `certs.d/_default/hosts.toml`) as listed, then `server`
/// (containerd `core/remotes/docker/config/hosts.go`: the hosts first, the server appended last). Without a
/// `server` (or without a file) the last is the name's own: `registry-1.docker.io` for `docker.io`, plain
/// HTTP for a loopback name with a port other than 443, HTTPS otherwise. The other keys of the file
/// (capabilities, ca, ...) are not read: testbed's files give every host pull and resolve.
fn endpoints(files: &BTreeMap<String, Entry>, name: &str) -> Vec<Endpoint> {
    let read = |dir: &str| {
        crate::coreutils::file_bytes(files, &format!("{REGISTRY_CERTS_DIR}/{dir}/hosts.toml"))
            .map(|b| String::from_utf8_lossy(b).into_owned())
    };
    let mut hosts = Vec::new();
    let mut server = None;
    if let Some(text) = read(name).or_else(|| read("_default")) {
        let mut in_table = false;
        for line in text.lines().map(str::trim) {
            if let Some(header) = line.strip_prefix('[') {
                in_table = true;
                if let Some(url) = header.strip_prefix("host.\"").and_then(|h| h.split('"').next()) {
                    if !header.contains("\".") {
                        hosts.push(endpoint(url));
                    }
                }
            } else if let (false, Some(value)) = (in_table, line.strip_prefix("server")) {
                let value = value.trim_start().trim_start_matches('=').trim().trim_matches('"');
                server = Some(endpoint(value));
            }
        }
    }
    let own = || {
        let (host, port) = host_and_port(name, "https");
        if name == "docker.io" {
            ("https".to_owned(), "registry-1.docker.io".to_owned())
        } else if loopback(&host) && port != 443 && name.contains(':') {
            ("http".to_owned(), name.to_owned())
        } else {
            ("https".to_owned(), name.to_owned())
        }
    };
    hosts.push(server.unwrap_or_else(own));
    hosts
}

/// What one endpoint answers to the manifest's `HEAD`, seen from a member: the host's local registry at
/// a bridge gateway (plain HTTP; its content is what [`crate::karmadactl::pullable`] says), nothing on the
/// member's own loopback, anything else the internet, which has every image (the simulation does not
/// model other registries' content).
fn ask(
    world: &SimWorld,
    (scheme, authority): &Endpoint,
    name: &str,
    repository: &str,
    reference: &str,
) -> Result<bool, String> {
    // containerd adds the image's name to a request to another host (`?ns=`, resolver.go `addNamespace`).
    let ns = if authority != name && !(name == "docker.io" && authority == "registry-1.docker.io") {
        format!("?ns={}", name.replace(':', "%3A").replace('/', "%2F"))
    } else {
        String::new()
    };
    let url = format!("{scheme}://{authority}/v2/{repository}/manifests/{reference}{ns}");
    let (host, port) = host_and_port(authority, scheme);
    let refused = |ip: &str| {
        Err(format!("failed to do request: Head \"{url}\": dial tcp {ip}:{port}: connect: connection refused"))
    };
    if loopback(&host) {
        return refused("127.0.0.1");
    }
    let gateway = world.lxd_daemon.networks.values().any(|n| n.subnet().is_some_and(|(ip, _)| ip.to_string() == host));
    if !gateway {
        return Ok(true);
    }
    let simulated = matches!(crate::registry::site(world, &[], authority, false), Some(crate::registry::Site::Local));
    let real = world.real_registry_images.is_some() && port == crate::registry::ADDON_PORT;
    if !(simulated || real) {
        return refused(&host);
    }
    if scheme != "http" {
        return Err(format!("failed to do request: Head \"{url}\": http: server gave HTTP response to HTTPS client"));
    }
    Ok(crate::karmadactl::pullable(world, &format!("{authority}/{repository}:{reference}")))
}

/// Pulls `image` for a container in a member whose files are `files` and whose containerd holds `present`,
/// with the container's `imagePullPolicy` (`None`: the API server's default, `Always` for `:latest` or no
/// tag, else `IfNotPresent`), as the kubelet (`pkg/kubelet/images/image_manager.go`) and containerd's CRI
/// do: the endpoints of the image's registry name ([`endpoints`]) are tried in order; one that does not
/// have it is passed over, one that fails is remembered, and with none having it the first failure is the
/// answer (containerd resolver.go), else "not found". The kubelet's message is the CRI error:
/// `rpc error: code = ... desc = failed to pull and unpack image "REF": failed to resolve reference "REF": ...`.
pub(crate) fn pull(
    world: &SimWorld,
    files: &BTreeMap<String, Entry>,
    present: &BTreeSet<String>,
    image: &str,
    policy: Option<&str>,
) -> Pull {
    let r = match ImageRef::parse(image) {
        Ok(r) => r,
        Err(_) => {
            return Pull::Failed(Waiting {
                reason: "InvalidImageName".into(),
                message: format!(
                    "Failed to apply default image tag \"{image}\": couldn't parse image reference \"{image}\": invalid reference format"
                ),
            })
        }
    };
    let tag = r.tag.clone().or_else(|| r.digest.is_none().then(|| "latest".to_owned()));
    let full = format!(
        "{}/{}{}{}",
        r.registry,
        r.repository,
        tag.as_ref().map(|t| format!(":{t}")).unwrap_or_default(),
        r.digest.as_ref().map(|d| format!("@{d}")).unwrap_or_default()
    );
    let policy = policy
        .filter(|p| !p.is_empty())
        .unwrap_or(if tag.as_deref() == Some("latest") && r.digest.is_none() { "Always" } else { "IfNotPresent" });
    let have = present.contains(&full);
    match (policy, have) {
        ("Never", true) | ("IfNotPresent", true) => return Pull::Present,
        ("Never", false) => {
            return Pull::Failed(Waiting {
                reason: "ErrImageNeverPull".into(),
                message: format!("Container image \"{image}\" is not present with pull policy of Never"),
            })
        }
        _ => {}
    }
    let reference = r.digest.clone().or(tag).unwrap_or_default();
    let mut first_error = None;
    for e in endpoints(files, &r.registry) {
        match ask(world, &e, &r.registry, &r.repository, &reference) {
            Ok(true) => return Pull::Pulled(full),
            Ok(false) => {}
            Err(why) => {
                first_error.get_or_insert(why);
            }
        }
    }
    let (code, why) = match first_error {
        Some(why) => ("Unknown", why),
        None => ("NotFound", format!("{full}: not found")),
    };
    Pull::Failed(Waiting {
        reason: "ErrImagePull".into(),
        message: format!(
            "rpc error: code = {code} desc = failed to pull and unpack image \"{full}\": failed to resolve reference \"{full}\": {why}"
        ),
    })
}

/// The images an archive holds, by containerd name; why not, as `ctr image import` says it.
pub(crate) fn archive_images(bytes: &[u8]) -> Result<Vec<String>, String> {
    let entries = tar_entries(bytes).ok_or("unrecognized image format")?;
    let file = |name: &str| entries.iter().find(|(n, _)| n.trim_start_matches("./") == name).map(|(_, b)| *b);
    if let Some(manifest) = file("manifest.json") {
        let parsed: serde_json::Value = serde_json::from_slice(manifest).map_err(|e| format!("manifest.json: {e}"))?;
        let tags: Vec<String> = parsed
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|m| m["RepoTags"].as_array().cloned().unwrap_or_default())
            .filter_map(|t| t.as_str().map(testbed_steps::containerd_name))
            .collect();
        return Ok(tags);
    }
    if let Some(index) = file("index.json") {
        let parsed: serde_json::Value = serde_json::from_slice(index).map_err(|e| format!("index.json: {e}"))?;
        let names = parsed["manifests"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| {
                let a = &m["annotations"];
                a["io.containerd.image.name"].as_str().or_else(|| a["org.opencontainers.image.ref.name"].as_str())
            })
            .map(testbed_steps::containerd_name)
            .collect();
        return Ok(names);
    }
    Err("unrecognized image format".into())
}

/// The files of a tar archive (ustar and GNU headers), or `None` when it is not one.
fn tar_entries(bytes: &[u8]) -> Option<Vec<(String, &[u8])>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 512 <= bytes.len() {
        let header = &bytes[at..at + 512];
        if header.iter().all(|b| *b == 0) {
            break;
        }
        let text = |r: std::ops::Range<usize>| {
            let field = &header[r];
            let end = field.iter().position(|b| *b == 0).unwrap_or(field.len());
            String::from_utf8_lossy(&field[..end]).into_owned()
        };
        // A header's checksum: the sum of its bytes with the checksum field read as spaces.
        let sum: u32 =
            header.iter().enumerate().map(|(i, b)| if (148..156).contains(&i) { 32 } else { u32::from(*b) }).sum();
        let recorded = u32::from_str_radix(text(148..156).trim(), 8).ok()?;
        if sum != recorded {
            return None;
        }
        let size = usize::from_str_radix(text(124..136).trim(), 8).ok()?;
        let prefix = text(345..500);
        let name = if prefix.is_empty() { text(0..100) } else { format!("{prefix}/{}", text(0..100)) };
        let start = at + 512;
        let body = bytes.get(start..start + size)?;
        if matches!(header[156], b'0' | 0) {
            out.push((name, body));
        }
        at = start + size.div_ceil(512) * 512;
    }
    (!out.is_empty()).then_some(out)
}

/// A small docker-archive (`docker save` layout: `manifest.json`, a config, one layer) whose manifest
/// names `repo_tags`: what a side-load test pushes in.
pub fn docker_archive(repo_tags: &[&str]) -> Vec<u8> {
    let layer = tar(&[("app.py", format!("print('hello from {repo_tags:?}')\n").as_bytes())]);
    let config = br#"{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":[]}}"#;
    let manifest = serde_json::json!([{ "Config": "config.json", "RepoTags": repo_tags, "Layers": ["layer.tar"] }]);
    let manifest = manifest.to_string();
    tar(&[("manifest.json", manifest.as_bytes()), ("config.json", config), ("layer.tar", &layer)])
}

/// A ustar archive of regular files.
fn tar(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, content) in files {
        let mut header = [0u8; 512];
        header[..name.len().min(100)].copy_from_slice(&name.as_bytes()[..name.len().min(100)]);
        header[100..107].copy_from_slice(b"0000644");
        header[108..115].copy_from_slice(b"0000000");
        header[116..123].copy_from_slice(b"0000000");
        header[124..135].copy_from_slice(format!("{:011o}", content.len()).as_bytes());
        header[136..147].copy_from_slice(b"00000000000");
        header[156] = b'0';
        header[257..263].copy_from_slice(b"ustar\0");
        header[263..265].copy_from_slice(b"00");
        header[148..156].copy_from_slice(b"        ");
        let sum: u32 = header.iter().map(|b| u32::from(*b)).sum();
        header[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(content);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_archives_name_their_images_as_containerd_does() {
        let tar = docker_archive(&["flask-demo:2.0", "ghcr.io/a/b:1"]);
        assert_eq!(
            archive_images(&tar),
            Ok(vec!["docker.io/library/flask-demo:2.0".to_owned(), "ghcr.io/a/b:1".to_owned()])
        );
        assert_eq!(archive_images(b"not an archive"), Err("unrecognized image format".into()));
    }

    #[test]
    fn the_archives_made_here_are_read_by_gnu_tar() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("a.tar");
        std::fs::write(&path, docker_archive(&["x:1"])).expect("write");
        let out = std::process::Command::new("tar").arg("-tf").arg(&path).output().expect("tar runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "manifest.json\nconfig.json\nlayer.tar\n");
    }

    const GATEWAY: &str = "10.123.45.1:32000";

    /// A host whose MicroK8s runs the registry addon holding `nginx:1.27`, on a bridge at 10.123.45.1.
    fn world() -> SimWorld {
        let mut w = SimWorld::bare_host();
        let mut registry = crate::registry::LocalRegistry::default();
        registry.repositories.entry("nginx".into()).or_default().tags.insert("1.27".into(), "sha256:0".into());
        w.host.microk8s = Some(crate::world::HostMicrok8s {
            channel: "1.32/stable".into(),
            running: true,
            owner: None,
            addons: BTreeSet::from(["registry".to_owned()]),
            addons_owner: None,
            registry: Some(registry),
            karmada: None,
            karmada_namespace: None,
            pki: None,
        });
        let mut bridge = crate::lxd_daemon::state::Network::default();
        bridge.config.insert("ipv4.address".into(), "10.123.45.1/24".into());
        w.lxd_daemon.networks.insert("testbed0".into(), bridge);
        w
    }

    /// A member's files with `hosts.toml` for each `(name, content)`.
    fn files(hosts: &[(&str, String)]) -> BTreeMap<String, Entry> {
        hosts
            .iter()
            .map(|(name, content)| {
                (
                    format!("{REGISTRY_CERTS_DIR}/{name}/hosts.toml"),
                    Entry::File { content: content.clone(), mode: 0o644 },
                )
            })
            .collect()
    }

    fn testbeds() -> BTreeMap<String, Entry> {
        files(&[
            (GATEWAY, testbed_steps::registry_hosts_toml(GATEWAY)),
            ("localhost:32000", testbed_steps::localhost_hosts_toml("localhost:32000", GATEWAY)),
        ])
    }

    fn message(p: Pull) -> String {
        match p {
            Pull::Failed(w) => format!("{}: {}", w.reason, w.message),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn localhost_images_come_from_the_hosts_registry_only_through_testbeds_file() {
        let w = world();
        let none = BTreeSet::new();
        let image = "localhost:32000/nginx:1.27";
        assert_eq!(pull(&w, &testbeds(), &none, image, None), Pull::Pulled(image.into()));
        // MicroK8s' own file, or none: the member's own localhost:32000, where nothing listens.
        let own = "server = \"http://localhost:32000\"\n\n[host.\"http://localhost:32000\"]\n  capabilities = [\"pull\", \"resolve\"]\n";
        let refused = "ErrImagePull: rpc error: code = Unknown desc = failed to pull and unpack image \"localhost:32000/nginx:1.27\": failed to resolve reference \"localhost:32000/nginx:1.27\": failed to do request: Head \"http://localhost:32000/v2/nginx/manifests/1.27\": dial tcp 127.0.0.1:32000: connect: connection refused";
        assert_eq!(message(pull(&w, &files(&[("localhost:32000", own.to_owned())]), &none, image, None)), refused);
        assert_eq!(message(pull(&w, &BTreeMap::new(), &none, image, None)), refused);
        // Not in the registry: every endpoint (the host, then the server) says so.
        assert_eq!(
            message(pull(&w, &testbeds(), &none, "localhost:32000/missing:1.0", None)),
            "ErrImagePull: rpc error: code = NotFound desc = failed to pull and unpack image \"localhost:32000/missing:1.0\": failed to resolve reference \"localhost:32000/missing:1.0\": localhost:32000/missing:1.0: not found"
        );
        // The host's registry down: the gateway refuses, named with the query containerd adds for a mirror.
        let mut down = world();
        down.host.microk8s.as_mut().unwrap().running = false;
        let said = message(pull(&down, &testbeds(), &none, image, None));
        assert!(
            said.ends_with("Head \"http://10.123.45.1:32000/v2/nginx/manifests/1.27?ns=localhost%3A32000\": dial tcp 10.123.45.1:32000: connect: connection refused"),
            "{said}"
        );
    }

    #[test]
    fn the_gateways_name_needs_the_trust_file_for_plain_http() {
        let w = world();
        let none = BTreeSet::new();
        let image = format!("{GATEWAY}/nginx:1.27");
        assert_eq!(pull(&w, &testbeds(), &none, &image, None), Pull::Pulled(image.clone()));
        let said = message(pull(&w, &BTreeMap::new(), &none, &image, None));
        assert!(said.ends_with("http: server gave HTTP response to HTTPS client"), "{said}");
    }

    #[test]
    fn what_is_in_containerd_is_used_as_the_pull_policy_says_and_the_internet_has_the_rest() {
        let w = world();
        let side_loaded = BTreeSet::from(["docker.io/library/flask-demo:2.0".to_owned()]);
        // Side-loaded: nothing to resolve, whatever the files say.
        assert_eq!(pull(&w, &BTreeMap::new(), &side_loaded, "flask-demo:2.0", Some("IfNotPresent")), Pull::Present);
        assert_eq!(pull(&w, &BTreeMap::new(), &side_loaded, "flask-demo:2.0", Some("Never")), Pull::Present);
        assert_eq!(
            message(pull(&w, &BTreeMap::new(), &BTreeSet::new(), "flask-demo:2.0", Some("Never"))),
            "ErrImageNeverPull: Container image \"flask-demo:2.0\" is not present with pull policy of Never"
        );
        // Always pulls, and :latest (or no tag) defaults to Always.
        let latest = BTreeSet::from(["localhost:32000/app:latest".to_owned()]);
        assert!(matches!(pull(&w, &testbeds(), &latest, "localhost:32000/app", None), Pull::Failed(_)));
        assert_eq!(
            pull(&w, &BTreeMap::new(), &BTreeSet::new(), "nginx:1.27", None),
            Pull::Pulled("docker.io/library/nginx:1.27".into())
        );
        assert_eq!(
            message(pull(&w, &BTreeMap::new(), &BTreeSet::new(), "Not An Image", None)).split(':').next(),
            Some("InvalidImageName")
        );
    }
}
