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

use std::collections::BTreeMap;

use crate::coreutils::Entry;
use crate::programs::{fail, ok, Ran};
use crate::world::MemberMicrok8s;

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
}
