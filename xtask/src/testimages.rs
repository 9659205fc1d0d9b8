//! The test images in the upstream registry, built offline in code (no docker, no network): gzip tarball
//! layers generated from a fixed seed, image configs and manifests as JSON, pushed over the distribution API
//! (`POST` + `PUT` blob uploads, `PUT` manifest). The content is deterministic, so the digests are the same on
//! every machine that builds them with the same crates.
//!
//! The set mirrors what `karmadactl init` v1.15.9 pulls (real-tools.md), as an upstream mirror of docker.io and
//! registry.k8s.io would hold it:
//!
//! | repository:tag | kind |
//! |---|---|
//! | karmada/karmada-controller-manager:v1.15.9 | OCI manifest |
//! | karmada/karmada-scheduler:v1.15.9 | Docker v2 schema 2 manifest |
//! | karmada/karmada-webhook:v1.15.9 | OCI manifest |
//! | karmada/karmada-aggregated-apiserver:v1.15.9 | OCI manifest |
//! | karmada/karmada-agent:v1.15.9 | OCI index: linux/amd64 and linux/arm64 |
//! | kube-apiserver:v1.31.3 | Docker v2 schema 2 manifest |
//! | kube-controller-manager:v1.31.3 | Docker v2 schema 2 manifest |
//! | etcd:3.5.16-0 | OCI manifest |
//! | library/alpine:3.21.3 | Docker v2 schema 2 manifest |
//!
//! Every amd64 image has the same base layer (as real images share a distroless base) plus a layer of its own;
//! the arm64 instance of karmada-agent has its own base. The tests in crates/testbed-registry name the same set.

use std::time::Duration;

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::registries::http;

/// Bumped whenever the recipe below changes, so that `testenv up` seeds again.
const RECIPE: &str = "testimages v2";

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// What a client accepts for manifests: without it, distribution converts Docker v2 manifests to schema 1
/// (another digest) and answers 404 for OCI manifests.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

#[derive(Clone, Copy, PartialEq)]
enum Format {
    Oci,
    Docker,
}

struct Blob {
    digest: String,
    bytes: Vec<u8>,
}

impl Blob {
    fn new(bytes: Vec<u8>) -> Blob {
        Blob { digest: sha256(&bytes), bytes }
    }
}

fn sha256(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    let mut s = String::from("sha256:");
    for b in d {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// A layer: its gzip tarball and the digest of the uncompressed tar (the config's diff_id).
struct Layer {
    blob: Blob,
    diff_id: String,
}

/// Deterministic filler: three blocks of pseudo-random bytes, then a text-like one, so that the layers compress
/// a little, as real binaries do.
fn filler(seed: &str, len: usize) -> Vec<u8> {
    let mut x: u64 = 0xcbf2_9ce4_8422_2325;
    for b in seed.bytes() {
        x = (x ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    let mut out = Vec::with_capacity(len);
    const TEXT: &[u8] = b"karmada testbed layer content 0123456789\n";
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let block = out.len() / 4096;
        if block % 4 != 3 {
            out.extend_from_slice(&x.to_le_bytes());
        } else {
            let at = (x % TEXT.len() as u64) as usize;
            out.extend_from_slice(&TEXT[at..]);
        }
    }
    out.truncate(len);
    out
}

fn layer(files: &[(String, Vec<u8>)]) -> Layer {
    let mut tar = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o755);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, path, data.as_slice()).expect("tar in memory");
    }
    let raw = tar.into_inner().expect("tar in memory");
    let mut gz = flate2::GzBuilder::new().mtime(0).write(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &raw).expect("gzip in memory");
    Layer { blob: Blob::new(gz.finish().expect("gzip in memory")), diff_id: sha256(&raw) }
}

fn base(arch: &str) -> Layer {
    layer(&[
        ("etc/os-release".into(), format!("NAME=\"testbed base\"\nID=testbed\nARCH={arch}\n").into_bytes()),
        ("usr/lib/libbase.so".into(), filler(&format!("base-{arch}"), 8 << 20)),
    ])
}

fn app(name: &str, arch: &str, mib: usize) -> Layer {
    let bin = name.rsplit('/').next().unwrap_or(name);
    layer(&[(format!("usr/bin/{bin}"), filler(&format!("{name}-{arch}"), mib << 20))])
}

/// One platform's image: its config, layers and manifest.
struct Image {
    blobs: Vec<Blob>,
    manifest: Blob,
    media_type: &'static str,
}

fn image(format: Format, name: &str, arch: &str, layers: Vec<Layer>) -> Image {
    let (manifest_type, config_type, layer_type) = match format {
        Format::Oci => (OCI_MANIFEST, OCI_CONFIG, OCI_LAYER),
        Format::Docker => (DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER),
    };
    let bin = name.rsplit('/').next().unwrap_or(name);
    let config = json!({
        "architecture": arch,
        "os": "linux",
        "created": "2025-01-01T00:00:00Z",
        "config": {"Entrypoint": [format!("/usr/bin/{bin}")], "Env": ["PATH=/usr/bin"]},
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>()},
    });
    let config = Blob::new(serde_json::to_vec(&config).expect("json"));
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": {"mediaType": config_type, "digest": config.digest, "size": config.bytes.len()},
        "layers": layers.iter().map(|l| json!({"mediaType": layer_type, "digest": l.blob.digest, "size": l.blob.bytes.len()})).collect::<Vec<_>>(),
    });
    let manifest = Blob::new(serde_json::to_vec_pretty(&manifest).expect("json"));
    let mut blobs = vec![config];
    blobs.extend(layers.into_iter().map(|l| l.blob));
    Image { blobs, manifest, media_type: manifest_type }
}

/// A tag in the upstream registry: one image, or an index over several platforms' images.
struct Tagged {
    repository: &'static str,
    tag: &'static str,
    images: Vec<Image>,
    /// The index over `images`, if it is a multi-platform tag.
    index: Option<Blob>,
}

fn build() -> Vec<Tagged> {
    let single = |format, repository: &'static str, tag, mib| Tagged {
        repository,
        tag,
        images: vec![image(format, repository, "amd64", vec![base("amd64"), app(repository, "amd64", mib)])],
        index: None,
    };
    let mut set = vec![
        single(Format::Oci, "karmada/karmada-controller-manager", "v1.15.9", 6),
        single(Format::Docker, "karmada/karmada-scheduler", "v1.15.9", 4),
        single(Format::Oci, "karmada/karmada-webhook", "v1.15.9", 3),
        single(Format::Oci, "karmada/karmada-aggregated-apiserver", "v1.15.9", 5),
        single(Format::Docker, "kube-apiserver", "v1.31.3", 5),
        single(Format::Docker, "kube-controller-manager", "v1.31.3", 4),
        single(Format::Oci, "etcd", "3.5.16-0", 3),
        single(Format::Docker, "library/alpine", "3.21.3", 1),
    ];
    let agent = "karmada/karmada-agent";
    let images: Vec<Image> = ["amd64", "arm64"]
        .into_iter()
        .map(|arch| image(Format::Oci, agent, arch, vec![base(arch), app(agent, arch, 4)]))
        .collect();
    let index = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": images.iter().zip(["amd64", "arm64"]).map(|(i, arch)| json!({
            "mediaType": i.media_type,
            "digest": i.manifest.digest,
            "size": i.manifest.bytes.len(),
            "platform": {"architecture": arch, "os": "linux"},
        })).collect::<Vec<_>>(),
    });
    let index = Blob::new(serde_json::to_vec_pretty(&index).expect("json"));
    set.insert(4, Tagged { repository: agent, tag: "v1.15.9", images, index: Some(index) });
    set
}

const T: Duration = Duration::from_secs(30);

fn check(
    r: Result<crate::registries::Response, String>,
    want: &[u16],
    what: &str,
) -> Result<crate::registries::Response, String> {
    let r = r?;
    if want.contains(&r.status) {
        Ok(r)
    } else {
        Err(format!("{what}: HTTP {} {}", r.status, String::from_utf8_lossy(&r.body)))
    }
}

fn push_blob(addr: &str, repository: &str, blob: &Blob) -> Result<(), String> {
    let head = http(addr, "HEAD", &format!("/v2/{repository}/blobs/{}", blob.digest), &[], &[], T)?;
    if head.status == 200 {
        return Ok(());
    }
    let what = format!("upload {} to {repository}", blob.digest);
    let post = check(http(addr, "POST", &format!("/v2/{repository}/blobs/uploads/"), &[], &[], T), &[202], &what)?;
    let location = post.header("Location").ok_or_else(|| format!("{what}: no Location"))?;
    // The location may be absolute; keep its path and query.
    let path = match location.find("/v2/") {
        Some(i) => &location[i..],
        None => location,
    };
    let sep = if path.contains('?') { '&' } else { '?' };
    let put = format!("{path}{sep}digest={}", blob.digest);
    check(http(addr, "PUT", &put, &[("Content-Type", "application/octet-stream")], &blob.bytes, T), &[201], &what)?;
    Ok(())
}

fn push_manifest(addr: &str, repository: &str, reference: &str, media_type: &str, body: &Blob) -> Result<(), String> {
    let what = format!("manifest {repository}:{reference}");
    check(
        http(
            addr,
            "PUT",
            &format!("/v2/{repository}/manifests/{reference}"),
            &[("Content-Type", media_type)],
            &body.bytes,
            T,
        ),
        &[201],
        &what,
    )?;
    Ok(())
}

/// The tags of the set, for the presence check: `(repository, tag)`.
const TAGS: [(&str, &str); 9] = [
    ("karmada/karmada-controller-manager", "v1.15.9"),
    ("karmada/karmada-scheduler", "v1.15.9"),
    ("karmada/karmada-webhook", "v1.15.9"),
    ("karmada/karmada-aggregated-apiserver", "v1.15.9"),
    ("karmada/karmada-agent", "v1.15.9"),
    ("kube-apiserver", "v1.31.3"),
    ("kube-controller-manager", "v1.31.3"),
    ("etcd", "3.5.16-0"),
    ("library/alpine", "3.21.3"),
];

fn marker() -> std::path::PathBuf {
    std::path::Path::new(crate::testenv::DIR).join("registry-upstream").join("seeded")
}

/// Seeds the upstream registry at `addr` unless this recipe's images are already there.
pub fn seed(addr: &str) -> Result<(), String> {
    let seeded = std::fs::read_to_string(marker()).is_ok_and(|m| m.lines().next() == Some(RECIPE));
    if seeded
        && TAGS.iter().all(|(repo, tag)| {
            http(addr, "HEAD", &format!("/v2/{repo}/manifests/{tag}"), &[("Accept", ACCEPT)], &[], T)
                .is_ok_and(|r| r.status == 200)
        })
    {
        eprintln!("testenv: test images already in the upstream registry");
        return Ok(());
    }
    let started = std::time::Instant::now();
    let set = build();
    let mut summary = format!("{RECIPE}\n");
    let mut bytes = 0usize;
    let mut pushed = std::collections::BTreeSet::new();
    for t in &set {
        for i in &t.images {
            for b in &i.blobs {
                push_blob(addr, t.repository, b)?;
                if pushed.insert(b.digest.clone()) {
                    bytes += b.bytes.len();
                }
            }
            if t.index.is_some() {
                push_manifest(addr, t.repository, &i.manifest.digest, i.media_type, &i.manifest)?;
            }
        }
        let (media_type, top) = match &t.index {
            Some(index) => (OCI_INDEX, index),
            None => (t.images[0].media_type, &t.images[0].manifest),
        };
        push_manifest(addr, t.repository, t.tag, media_type, top)?;
        summary.push_str(&format!("{}:{} {}\n", t.repository, t.tag, top.digest));
    }
    std::fs::write(marker(), &summary).map_err(|e| format!("{}: {e}", marker().display()))?;
    eprintln!(
        "testenv: seeded the upstream registry with {} test images ({} MB of blobs) in {:.1} s",
        set.len(),
        bytes >> 20,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
