//! Running the binary against the project's test environment (`cargo xtask testenv up`): the test LXD daemon
//! (and, for a real registry layer, the loopback registries), with the layers named in `simulate` simulated
//! at full speed. A missing test daemon is a failure that says how to start it, never a skip.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

pub const LXD_DIR: &str = "/var/lib/testbed-testenv/lxd";

/// `testbed -c DIR/testbed.toml --simulate SIMULATE ARGS...` on the test LXD daemon.
pub fn testbed(dir: &Path, simulate: &str, args: &[&str]) -> Output {
    command(dir, simulate, args).stdin(std::process::Stdio::null()).output().expect("run testbed")
}

/// The command [`testbed`] runs, to start it yourself.
pub fn command(dir: &Path, simulate: &str, args: &[&str]) -> Command {
    let lxd_dir = std::env::var("LXD_DIR").unwrap_or_else(|_| LXD_DIR.to_owned());
    assert!(
        Path::new(&lxd_dir).join("unix.socket").exists(),
        "no LXD test daemon at {lxd_dir}: run `cargo xtask testenv up`"
    );
    let mut command = Command::new(env!("CARGO_BIN_EXE_testbed"));
    command
        .arg("-c")
        .arg(dir.join("testbed.toml"))
        .args(["--simulate", simulate])
        .args(args)
        .env("LXD_DIR", lxd_dir)
        .env_remove("LXD_SOCKET")
        .env("TESTBED_SIM_SPEED", "0")
        // The tests share the test daemon, and so its lock: each waits for the others' runs.
        .env("TESTBED_LOCK_TIMEOUT", "10m");
    command
}

/// stdout and stderr together, for messages.
pub fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// An example file from `examples/`.
pub fn example(name: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples").join(name)).unwrap()
}
