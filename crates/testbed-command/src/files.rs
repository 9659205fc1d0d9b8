//! Files holding credentials: written 0600 inside a 0700 directory, replaced atomically (a reader sees the
//! old file or the new one, never a half-written one, and never a moment with wider permissions).

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Writes `content` to `path` with mode 0600, creating missing parent directories with mode 0700.
pub fn write_private(path: &Path, content: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    // Unique per call: two writers of one path in one process must not share a temporary file.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.testbed-{}-{n}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        // The mode above is masked by the umask, which can only take bits away; set it exactly anyway.
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        f.write_all(content)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The permission bits of a file, if it exists.
pub fn mode(path: &Path) -> Option<u32> {
    std::fs::metadata(path).ok().map(|m| m.permissions().mode() & 0o7777)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_0600_in_a_0700_directory_and_replaced_whole() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("kubeconfigs/member1.config");
        write_private(&p, b"first").unwrap();
        assert_eq!(mode(&p), Some(0o600));
        assert_eq!(mode(p.parent().unwrap()), Some(0o700));
        // An existing file with wider permissions is replaced by a 0600 one.
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&p, b"second").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"second");
        assert_eq!(mode(&p), Some(0o600));
        let leftovers: Vec<_> = std::fs::read_dir(p.parent().unwrap()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left behind");
    }
}
