//! What testbed made in the registry layer, and so may change or delete: the registry addon (if testbed
//! enabled it), each image it copied (with the digest it wrote) and each image it side-loaded.
//!
//! A registry has nowhere to write an owner on a tag without changing the manifest, and so its digest:
//! ownership is kept in a record file instead (`.testbed/registry.json` beside the config). A tag that is
//! not in the record is someone else's: used as it is, never overwritten or deleted. A lost record makes
//! testbed treat its own images as someone else's, which is the safe side.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// One image testbed copied into the local registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopiedImage {
    pub source: String,
    /// `localhost:PORT/REPOSITORY:TAG`.
    pub target: String,
    pub platforms: String,
    /// The digest testbed tagged: deleting removes only this manifest, and only while the tag still has it.
    pub digest: String,
}

/// One image testbed side-loaded into one member's MicroK8s.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SideloadedImage {
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<String>,
    /// The image names the import created in containerd (what `microk8s ctr images ls` lists).
    #[serde(default)]
    pub imported: Vec<String>,
    /// The container's identity (LXD `volatile.uuid`) when the image was imported: a container re-created
    /// under the same name has lost it.
    #[serde(default)]
    pub container: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contents {
    /// testbed ran `microk8s enable registry`.
    #[serde(default)]
    pub registry_enabled: bool,
    /// By image name (`image.NAME`).
    #[serde(default)]
    pub images: BTreeMap<String, CopiedImage>,
    /// By member, then image name (`sideload.MEMBER.NAME`).
    #[serde(default)]
    pub sideloads: BTreeMap<String, BTreeMap<String, SideloadedImage>>,
}

/// The record file; every change is written at once (atomically: a temporary file renamed over it).
#[derive(Debug)]
pub struct Record {
    path: PathBuf,
    lock: Mutex<()>,
}

impl Record {
    pub fn at(path: impl Into<PathBuf>) -> Record {
        Record { path: path.into(), lock: Mutex::new(()) }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What the record holds; an absent file is an empty record.
    pub fn read(&self) -> Result<Contents, String> {
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.load()
    }

    /// Changes the record and writes it.
    pub fn update<R>(&self, f: impl FnOnce(&mut Contents) -> R) -> Result<R, String> {
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut c = self.load()?;
        let r = f(&mut c);
        self.store(&c)?;
        Ok(r)
    }

    fn load(&self) -> Result<Contents, String> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| format!("{}: {e}", self.path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Contents::default()),
            Err(e) => Err(format!("{}: {e}", self.path.display())),
        }
    }

    fn store(&self, c: &Contents) -> Result<(), String> {
        let err = |e: std::io::Error| format!("{}: {e}", self.path.display());
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let tmp = self.path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(c).map_err(|e| e.to_string())?;
        std::fs::write(&tmp, text + "\n").map_err(err)?;
        std::fs::rename(&tmp, &self.path).map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_absent_record_is_empty_and_updates_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let r = Record::at(dir.path().join("sub/registry.json"));
        assert_eq!(r.read().unwrap(), Contents::default());
        r.update(|c| {
            c.registry_enabled = true;
            c.images.insert(
                "etcd".into(),
                CopiedImage {
                    source: "registry.k8s.io/etcd:3.5.16-0".into(),
                    target: "localhost:32000/etcd:3.5.16-0".into(),
                    platforms: "linux/amd64".into(),
                    digest: "sha256:ab".into(),
                },
            );
        })
        .unwrap();
        let again = Record::at(dir.path().join("sub/registry.json")).read().unwrap();
        assert!(again.registry_enabled);
        assert_eq!(again.images["etcd"].digest, "sha256:ab");
    }

    #[test]
    fn a_corrupt_record_is_an_error_not_an_empty_one() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("registry.json"), "{not json").unwrap();
        let r = Record::at(dir.path().join("registry.json"));
        assert!(r.read().unwrap_err().contains("registry.json"));
        assert!(r.update(|c| c.registry_enabled = true).is_err(), "a corrupt record is never overwritten");
    }
}
