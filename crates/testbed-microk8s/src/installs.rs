//! Which members' containers testbed installed MicroK8s in: `.testbed/microk8s.json` beside the config,
//! member → the container's identity (LXD `volatile.uuid`) when MicroK8s in it was installed and Ready.
//!
//! Nothing can be seen inside a stopped container, so its MicroK8s is taken to be as the file wants only
//! when this record says testbed finished installing it in that very container. A container created and
//! never started (an apply killed between the two), or re-created under the same name, has no such entry,
//! and its MicroK8s is planned as a create. A lost record costs one `snap install` that finds the snap
//! already there.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

#[derive(Debug)]
pub struct Installs {
    path: PathBuf,
    /// Actions for several members finish at once: one read-change-write at a time.
    lock: Mutex<()>,
}

impl Installs {
    pub fn new(path: impl Into<PathBuf>) -> Installs {
        Installs { path: path.into(), lock: Mutex::new(()) }
    }

    /// The record; a missing or unreadable file is an empty one (the safe side: nothing assumed).
    pub fn read(&self) -> BTreeMap<String, String> {
        read(&self.path)
    }

    /// Whether testbed finished installing MicroK8s in `member`'s container of this `identity`.
    pub fn has(&self, member: &str, identity: &str) -> bool {
        !identity.is_empty() && self.read().get(member).is_some_and(|i| i == identity)
    }

    pub fn set(&self, member: &str, identity: &str) -> std::io::Result<()> {
        self.change(|r| {
            r.insert(member.to_owned(), identity.to_owned());
        })
    }

    pub fn remove(&self, member: &str) -> std::io::Result<()> {
        self.change(|r| {
            r.remove(member);
        })
    }

    /// Where the record is kept.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn change(&self, f: impl FnOnce(&mut BTreeMap<String, String>)) -> std::io::Result<()> {
        let _held = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut record = read(&self.path);
        let before = record.clone();
        f(&mut record);
        if record == before {
            return Ok(());
        }
        let text = serde_json::to_string_pretty(&record).map_err(std::io::Error::other)?;
        // Replaced atomically, as testbed's other files beside the config are.
        testbed_command::files::write_private(&self.path, text.as_bytes())
    }
}

fn read(path: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(path).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_holds_for_its_container_only() {
        let dir = tempfile::tempdir().unwrap();
        let installs = Installs::new(dir.path().join(".testbed/microk8s.json"));
        assert!(!installs.has("member1", "uuid-1"), "nothing recorded yet");
        installs.set("member1", "uuid-1").unwrap();
        assert!(installs.has("member1", "uuid-1"));
        assert!(!installs.has("member1", "uuid-2"), "a container re-created under the same name");
        assert!(!installs.has("member1", ""), "a container whose identity is unknown");
        installs.remove("member1").unwrap();
        assert!(!installs.has("member1", "uuid-1"));
        std::fs::write(dir.path().join(".testbed/microk8s.json"), "not json").unwrap();
        assert!(!installs.has("member1", "uuid-1"), "an unreadable record assumes nothing");
    }
}
