//! One apply or destroy at a time per config: a lock file in `.testbed/`.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::CliError;

/// Held while an apply or destroy runs; removed on drop.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
}

impl RunLock {
    /// Takes the lock at `dir/lock`, or says who holds it. A lock left by a process that no longer exists
    /// is taken over (and reported).
    pub fn acquire(dir: &Path, what: &str) -> Result<(RunLock, Option<String>), CliError> {
        std::fs::create_dir_all(dir).map_err(|e| CliError::io(dir, e))?;
        let path = dir.join("lock");
        let mut note = None;
        for _ in 0..2 {
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut f) => {
                    writeln!(f, "{} {what}", std::process::id()).map_err(|e| CliError::io(&path, e))?;
                    return Ok((RunLock { path }, note));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let content = std::fs::read_to_string(&path).unwrap_or_default();
                    let mut parts = content.split_whitespace();
                    let pid: Option<u32> = parts.next().and_then(|p| p.parse().ok());
                    let holder = parts.next().unwrap_or("testbed").to_owned();
                    match pid {
                        Some(pid) if process_alive(pid) => {
                            return Err(CliError::Locked { path: path.clone(), pid, holder });
                        }
                        _ => {
                            note = Some(format!(
                                "took over a stale lock left by {} (process {}), which is no longer running",
                                holder,
                                pid.map(|p| p.to_string()).unwrap_or_else(|| "unknown".into())
                            ));
                            std::fs::remove_file(&path).map_err(|e| CliError::io(&path, e))?;
                        }
                    }
                }
                Err(e) => return Err(CliError::io(&path, e)),
            }
        }
        Err(CliError::Locked { path, pid: 0, holder: "another testbed".into() })
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn process_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    Path::new("/proc").join(pid.to_string()).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_and_the_lock_goes_with_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let (first, note) = RunLock::acquire(dir.path(), "apply").unwrap();
        assert!(note.is_none());
        let err = RunLock::acquire(dir.path(), "destroy").unwrap_err();
        assert!(err.to_string().contains("already running"), "{err}");
        drop(first);
        assert!(RunLock::acquire(dir.path(), "apply").is_ok());
    }

    #[test]
    fn a_stale_lock_is_taken_over_with_a_note() {
        let dir = tempfile::tempdir().unwrap();
        // PID 0 is never a user process; /proc/0 does not exist.
        std::fs::write(dir.path().join("lock"), "0 apply\n").unwrap();
        let (_lock, note) = RunLock::acquire(dir.path(), "apply").unwrap();
        assert!(note.unwrap().contains("stale lock"));
    }
}
