//! The simulated machine's state file: compact JSON with a format number, saved atomically (a temporary
//! file in the same directory, then a rename) after every change (compact: it is saved
//! often, and indenting it showed in a profile of the laws; `jq .` shows it indented).

use std::io::ErrorKind;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::world::SimWorld;
use crate::SimError;

/// The state file format this crate reads and writes.
pub const FORMAT: u32 = 2;

const NOTE: &str = "State of a SIMULATED machine for testbed --simulate. Nothing in it exists on a real host.";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    /// Checked before the rest is read.
    #[serde(rename = "format")]
    _format: u32,
    #[serde(rename = "note", default)]
    _note: String,
    world: SimWorld,
}

#[derive(Serialize)]
struct StateFileRef<'a> {
    format: u32,
    note: &'a str,
    world: &'a SimWorld,
}

/// Reads the state at `path`: a missing file is a bare host.
pub(crate) fn load(path: &Path) -> Result<SimWorld, SimError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(SimWorld::bare_host()),
        Err(source) => return Err(SimError::Read { path: path.to_path_buf(), source }),
    };
    let corrupted = |detail: String| SimError::Corrupted { path: path.to_path_buf(), detail };
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| corrupted(format!("not valid JSON: {e}")))?;
    let format = value
        .get("format")
        .ok_or_else(|| corrupted("no \"format\" field: this is not a testbed simulated machine".into()))?;
    if format.as_u64() != Some(u64::from(FORMAT)) {
        return Err(SimError::UnsupportedFormat {
            path: path.to_path_buf(),
            found: format.to_string(),
            expected: FORMAT,
        });
    }
    let file: StateFile = serde_json::from_value(value).map_err(|e| corrupted(format!("unexpected content: {e}")))?;
    Ok(file.world)
}

/// Writes the state to `path` atomically, creating its directory.
pub(crate) fn save(path: &Path, world: &SimWorld) -> Result<(), SimError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let err = |source| SimError::Save { path: path.to_path_buf(), source };
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(err)?;
    let file = StateFileRef { format: FORMAT, note: NOTE, world };
    let text = serde_json::to_string(&file).map_err(|e| err(std::io::Error::other(e)))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "sim-state".into());
    let tmp = dir.join(format!(".{name}.{}.{}.tmp", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed)));
    // It holds the simulated clusters' keys: readable by its owner only, like any file of credentials.
    let write = |tmp: &Path| -> std::io::Result<()> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(tmp)?;
        f.write_all(text.as_bytes())
    };
    if let Err(e) = write(&tmp).and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(err(e));
    }
    Ok(())
}
