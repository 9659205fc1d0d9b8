//! karmadactl as karmada-io releases it: its version line, the published checksum, the archive's hash.
//!
//! Every release of karmada-io/karmada carries, for each CLI archive, a file next to it named after it
//! with `.sha256` appended: `karmadactl-linux-amd64.tgz.sha256`, written by the release workflow
//! (`hack/release.sh`: `sha256sum "${tar_file}" > "${tar_file}.sha256"`), so its one line is the hex digest,
//! two spaces and the archive's name. The archive holds `LICENSE` and `karmadactl` at its top level
//! (`tar czf ... LICENSE -C _output/bin/<os>/<arch> karmadactl`). Archives are published for linux amd64 and
//! arm64 (and darwin).

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

/// The version karmadactl reports. `karmadactl version` prints one line,
/// `karmadactl version: version.Info{GitVersion:"v1.15.9", GitCommit:"...", ...}`: Go's `%#v` of karmada's
/// `version.Info` (fields GitVersion, GitCommit, from v1.14 GitShortCommit, GitTreeState, BuildDate,
/// GoVersion, Compiler, Platform). `None` when the output is not that (another program of the same name).
pub fn parse_version(stdout: &str) -> Option<String> {
    let line = stdout.lines().find(|l| l.contains("version.Info{"))?;
    let rest = &line[line.find("GitVersion:\"")? + "GitVersion:\"".len()..];
    let v = &rest[..rest.find('"')?];
    (!v.is_empty()).then(|| v.to_owned())
}

/// The digest in a `.sha256` file for `asset`: the first word, 64 hex digits; a second word, when there
/// is one, must name the asset (`sha256sum` writes `*name` in binary mode).
pub fn parse_checksum(text: &str, asset: &str) -> Result<String, String> {
    let line = text.lines().find(|l| !l.trim().is_empty()).ok_or("the checksum file is empty")?;
    let mut words = line.split_whitespace();
    let digest = words.next().unwrap_or_default();
    if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("the checksum file does not start with a SHA-256 digest: {:?}", short(line)));
    }
    if let Some(name) = words.next() {
        let name = name.trim_start_matches('*');
        if name.rsplit('/').next() != Some(asset) {
            return Err(format!("the checksum file is for {name}, not {asset}"));
        }
    }
    Ok(digest.to_ascii_lowercase())
}

fn short(s: &str) -> String {
    s.chars().take(80).collect()
}

/// The SHA-256 of a file, lowercase hex.
pub fn sha256_of(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// The release's name for the architecture (`x86_64` → `amd64`), if karmada publishes karmadactl for it.
pub fn release_arch(arch: &str) -> Option<&'static str> {
    match arch {
        "x86_64" | "amd64" => Some("amd64"),
        "aarch64" | "arm64" => Some("arm64"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_lines_of_old_and_new_releases() {
        let v115 = "karmadactl version: version.Info{GitVersion:\"v1.15.9\", GitCommit:\"0123456789abcdef0123456789abcdef01234567\", GitShortCommit:\"01234567\", GitTreeState:\"clean\", BuildDate:\"2025-09-30T03:05:43Z\", GoVersion:\"go1.23.12\", Compiler:\"gc\", Platform:\"linux/amd64\"}\n";
        assert_eq!(parse_version(v115).as_deref(), Some("v1.15.9"));
        let v111 = "karmadactl version: version.Info{GitVersion:\"v1.11.0\", GitCommit:\"abc\", GitTreeState:\"clean\", BuildDate:\"2024-08-30T09:12:01Z\", GoVersion:\"go1.21.13\", Compiler:\"gc\", Platform:\"linux/amd64\"}";
        assert_eq!(parse_version(v111).as_deref(), Some("v1.11.0"));
        assert_eq!(parse_version("karmadactl 2.0 (a shell script)"), None);
        assert_eq!(parse_version("karmadactl version: version.Info{GitVersion:\"\"}"), None);
    }

    #[test]
    fn checksum_files_as_sha256sum_writes_them() {
        let d = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        let ok = format!("{d}  karmadactl-linux-amd64.tgz\n");
        assert_eq!(parse_checksum(&ok, "karmadactl-linux-amd64.tgz").unwrap(), d);
        assert_eq!(parse_checksum(&format!("{}\n", d.to_uppercase()), "x.tgz").unwrap(), d);
        assert!(parse_checksum(&ok, "karmadactl-linux-arm64.tgz").unwrap_err().contains("not karmadactl-linux-arm64"));
        assert!(parse_checksum("<html>Not Found</html>", "x").is_err());
        assert!(parse_checksum("", "x").is_err());
    }

    #[test]
    fn hashing_matches_a_known_digest() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        std::fs::write(&p, b"test").unwrap();
        assert_eq!(sha256_of(&p).unwrap(), "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08");
    }
}
