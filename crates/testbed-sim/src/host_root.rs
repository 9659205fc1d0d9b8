//! The simulated host's files: a directory laid out like a freshly installed Ubuntu 24.04 server, which
//! the real host provider reads through its `HostSystem` root (`/etc/os-release`, `/proc/sys`, programs on
//! the search path) and writes its markers into, and which the simulated programs change as the real ones
//! would (`apt-get install` puts a program on the path, `sysctl -w` changes `/proc/sys`).
//!
//! The directory lives beside the state file (`sim.json` → `sim-host/`) and carries a marker file; a
//! state file that is missing means a fresh machine, so its directory is laid out afresh (only a directory
//! with the marker is ever emptied).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The file that says a directory is a simulated host's (and may be emptied by testbed).
pub const MARKER: &str = ".testbed-simulated-host";

/// Packages a fresh Ubuntu 24.04 server has (in the simulated package database).
pub const PREINSTALLED: [&str; 5] = ["snapd", "curl", "tar", "procps", "iptables"];

/// Programs of the preinstalled packages, where Ubuntu puts them.
const PROGRAMS: [&str; 6] =
    ["/usr/bin/apt-get", "/usr/bin/snap", "/usr/bin/curl", "/usr/bin/tar", "/usr/sbin/sysctl", "/usr/sbin/iptables"];

/// Makes sure the programs of essential packages (coreutils) are on the simulated host: no host lacks
/// them, and hosts laid out by older versions of the simulation did not have them yet.
pub fn ensure_essential(root: &Path) -> std::io::Result<()> {
    for name in crate::coreutils::PROGRAMS {
        let path = format!("/usr/bin/{name}");
        if !under(root, &path).is_file() {
            write(root, &path, &program_bytes(name, "(coreutils, essential)"), 0o755)?;
        }
    }
    Ok(())
}

/// What a simulated program file holds: not a script (`#!`), so the host provider takes it for a real
/// program, and says what it is to anyone who looks.
pub fn program_bytes(name: &str, detail: &str) -> Vec<u8> {
    format!("\u{7f}ELF testbed simulated program {name} {detail}\n").into_bytes()
}

/// The directory of the simulated host whose state file is `state`.
pub fn root_for(state: &Path) -> PathBuf {
    let stem = state.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "sim".into());
    state.with_file_name(format!("{stem}-host"))
}

/// Lays out a fresh host at `root`, replacing what a previous simulated host left there. A directory
/// without [`MARKER`] that is not empty is refused: it is not testbed's.
pub fn lay_out(root: &Path) -> std::io::Result<()> {
    if root.exists() {
        let empty = std::fs::read_dir(root)?.next().is_none();
        if !empty && !root.join(MARKER).exists() {
            return Err(std::io::Error::other(format!(
                "{} exists and is not a simulated host's (no {MARKER} in it); move it away",
                root.display()
            )));
        }
        std::fs::remove_dir_all(root)?;
    }
    std::fs::create_dir_all(root)?;
    write(root, MARKER, b"the files of testbed's simulated host; nothing here exists on a real host\n", 0o644)?;
    write(
        root,
        "/etc/os-release",
        b"PRETTY_NAME=\"Ubuntu 24.04.3 LTS\"\nNAME=\"Ubuntu\"\nVERSION_ID=\"24.04\"\nVERSION=\"24.04.3 LTS (Noble Numbat)\"\nID=ubuntu\nID_LIKE=debian\n",
        0o644,
    )?;
    write(root, "/proc/sys/kernel/osrelease", b"6.8.0-testbed-simulated\n", 0o444)?;
    // Linux's own defaults.
    write(root, "/proc/sys/fs/inotify/max_user_instances", b"128\n", 0o644)?;
    write(root, "/proc/sys/fs/inotify/max_user_watches", b"8192\n", 0o644)?;
    for p in PROGRAMS {
        let name = p.rsplit('/').next().unwrap_or(p);
        write(root, p, &program_bytes(name, "(preinstalled)"), 0o755)?;
    }
    // Ubuntu's lxd-installer: shell-script stand-ins that install the LXD snap on first use.
    for p in ["/usr/sbin/lxd", "/usr/sbin/lxc"] {
        write(
            root,
            p,
            b"#!/bin/sh\n# lxd-installer: installs the lxd snap on first use\nexec /snap/bin/lxd \"$@\"\n",
            0o755,
        )?;
    }
    Ok(())
}

/// Writes `content` at the absolute host path `path` under `root`, with its directories.
pub fn write(root: &Path, path: &str, content: &[u8], mode: u32) -> std::io::Result<()> {
    let full = under(root, path);
    if let Some(dir) = full.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&full, content)?;
    std::fs::set_permissions(&full, std::fs::Permissions::from_mode(mode))
}

/// An absolute host path under `root`.
pub fn under(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}
