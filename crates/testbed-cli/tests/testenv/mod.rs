//! Running the binary against the project's test environment (`cargo xtask testenv up`): the test LXD or
//! Incus daemon (and, for a real registry layer, the loopback registries), with the layers named in
//! `simulate` simulated at full speed. A missing test daemon is a failure that says how to start it, never a
//! skip.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

pub const LXD_DIR: &str = "/var/lib/testbed-testenv/lxd";
pub const INCUS_DIR: &str = "/var/lib/testbed-testenv/incus";

/// One of the test environment's daemons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Daemon {
    Lxd,
    Incus,
}

impl Daemon {
    /// The variables that point testbed at its directory and at its socket, and where testenv puts it.
    fn vars(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Daemon::Lxd => ("LXD_DIR", "LXD_SOCKET", LXD_DIR),
            Daemon::Incus => ("INCUS_DIR", "INCUS_SOCKET", INCUS_DIR),
        }
    }

    /// Its directory (the variable overrides), checked to hold a socket.
    pub fn dir(self) -> String {
        let (dir_var, _, default) = self.vars();
        let dir = std::env::var(dir_var).unwrap_or_else(|_| default.to_owned());
        assert!(
            Path::new(&dir).join("unix.socket").exists(),
            "no {self:?} test daemon at {dir}: run `cargo xtask testenv up`"
        );
        dir
    }

    /// Which of the two it is, as the LXD layer names it (`name()`: `LXD`; `command()`: `lxc`).
    pub fn flavor(self) -> testbed_lxd::Flavor {
        match self {
            Daemon::Lxd => testbed_lxd::Flavor::Lxd,
            Daemon::Incus => testbed_lxd::Flavor::Incus,
        }
    }

    /// The file's `[lxd] backend` for it.
    pub fn backend(self) -> &'static str {
        match self {
            Daemon::Lxd => "lxd",
            Daemon::Incus => "incus",
        }
    }

    /// A client of its socket, for what a test does to the daemon behind testbed's back.
    pub fn client(self) -> testbed_lxd::Client {
        testbed_lxd::Client::at(Path::new(&self.dir()).join("unix.socket"), self.flavor())
    }
}

/// `testbed -c DIR/testbed.toml --simulate SIMULATE ARGS...` on the test LXD daemon.
pub fn testbed(dir: &Path, simulate: &str, args: &[&str]) -> Output {
    testbed_on(Daemon::Lxd, dir, simulate, args)
}

/// [`testbed`] on one of the test daemons.
pub fn testbed_on(daemon: Daemon, dir: &Path, simulate: &str, args: &[&str]) -> Output {
    command_on(daemon, dir, simulate, args).stdin(std::process::Stdio::null()).output().expect("run testbed")
}

/// The command [`testbed`] runs, to start it yourself.
pub fn command(dir: &Path, simulate: &str, args: &[&str]) -> Command {
    command_on(Daemon::Lxd, dir, simulate, args)
}

/// The command [`testbed_on`] runs.
pub fn command_on(daemon: Daemon, dir: &Path, simulate: &str, args: &[&str]) -> Command {
    let (dir_var, socket_var, _) = daemon.vars();
    let mut command = Command::new(env!("CARGO_BIN_EXE_testbed"));
    command
        .arg("-c")
        .arg(dir.join("testbed.toml"))
        .args(["--simulate", simulate])
        .args(args)
        .env(dir_var, daemon.dir())
        .env_remove(socket_var)
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
