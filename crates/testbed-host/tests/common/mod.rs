//! A fake host laid out in a directory (os-release, /proc/sys, programs on the search path) and scripted
//! replies shaped like the real programs' output.
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use testbed_command::{Output, Reply, ScriptedRunner};
use testbed_host::{HostProvider, HostSystem};
use testbed_plan::{Action, ObservedState, Op, Resource};
use testbed_provider::{ActionLog, LogEntry};

pub const UBUNTU_2404: &str = "PRETTY_NAME=\"Ubuntu 24.04.2 LTS\"\nNAME=\"Ubuntu\"\nVERSION_ID=\"24.04\"\nVERSION=\"24.04.2 LTS (Noble Numbat)\"\nVERSION_CODENAME=noble\nID=ubuntu\nID_LIKE=debian\n";
/// This machine's own /etc/os-release.
pub const DEBIAN_12: &str = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nVERSION=\"12 (bookworm)\"\nVERSION_CODENAME=bookworm\nID=debian\n";
pub const FEDORA_41: &str =
    "NAME=\"Fedora Linux\"\nVERSION_ID=41\nID=fedora\nPRETTY_NAME=\"Fedora Linux 41 (Server Edition)\"\n";

/// `karmadactl version` of a release build (karmada's `version.Info` printed with `%#v`).
pub fn karmadactl_version_line(v: &str) -> String {
    format!(
        "karmadactl version: version.Info{{GitVersion:\"{v}\", GitCommit:\"5f3ad3ef2b8e0b3c4b8e6d1c7a9e2f1d0c9b8a77\", GitShortCommit:\"5f3ad3ef\", GitTreeState:\"clean\", BuildDate:\"2025-09-30T03:05:43Z\", GoVersion:\"go1.23.12\", Compiler:\"gc\", Platform:\"linux/amd64\"}}\n"
    )
}

/// What `iptables -C` prints when no rule matches (iptables 1.8.9, exit code 1).
pub const IPTABLES_NO_RULE: &str = "iptables: Bad rule (does a matching rule exist in that chain?).\n";
/// `iptables -t raw -S PREROUTING` with testbed's NodePort rule, as iptables 1.8.9 (nf_tables) printed it.
#[allow(dead_code)]
pub const RAW_WITH_NODE_PORTS: &str = "-P PREROUTING ACCEPT\n-A PREROUTING ! -i lxdbr0 -p tcp -m multiport --dports 32000,32443 -m addrtype --dst-type LOCAL -m addrtype ! --src-type LOCAL -m comment --comment \"testbed:testbed\" -j DROP\n";

pub struct FakeHost {
    pub dir: tempfile::TempDir,
}

impl FakeHost {
    pub fn new(os_release: &str) -> FakeHost {
        let h = FakeHost { dir: tempfile::tempdir().unwrap() };
        h.file("/etc/os-release", os_release);
        h
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn at(&self, abs: &str) -> PathBuf {
        self.dir.path().join(abs.trim_start_matches('/'))
    }

    pub fn file(&self, abs: &str, content: &str) {
        let p = self.at(abs);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }

    /// An executable binary (an ELF header is enough for what testbed reads).
    pub fn program(&self, abs: &str) {
        self.file(abs, "\x7fELF fake");
        std::fs::set_permissions(self.at(abs), std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    pub fn script(&self, abs: &str) {
        self.file(abs, "#!/bin/sh\nexec snap install lxd\n");
        std::fs::set_permissions(self.at(abs), std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    pub fn sysctl(&self, key: &str, value: &str) {
        self.file(&format!("/proc/sys/{}", key.replace('.', "/")), &format!("{value}\n"));
    }

    pub fn read(&self, abs: &str) -> Option<String> {
        std::fs::read_to_string(self.at(abs)).ok()
    }

    pub fn system(&self) -> HostSystem {
        HostSystem::at(self.root())
    }
}

pub fn config(text: &str) -> testbed_config::Config {
    testbed_config::parse(Path::new("/srv/lab/testbed.toml"), text).unwrap()
}

pub fn provider(host: &FakeHost, runner: &ScriptedRunner, cfg: &testbed_config::Config) -> HostProvider {
    HostProvider::new(Arc::new(runner.clone()), testbed_steps::Context::new(cfg), host.system())
}

/// The file's resource at `address`.
pub fn wanted(cfg: &testbed_config::Config, address: &str) -> Resource {
    let d = testbed_plan::desired::build(cfg, &ObservedState::default());
    d.resources.values().find(|r| r.address.as_str() == address).cloned().unwrap()
}

pub fn action(op: Op, r: Resource) -> Action {
    Action {
        address: r.address.clone(),
        kind: r.kind,
        member: None,
        op,
        reason: String::new(),
        changes: vec![],
        desired: Some(r),
        observed: None,
        cascade: None,
        replace: false,
    }
}

pub fn capture() -> (ActionLog, Arc<Mutex<Vec<LogEntry>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    (ActionLog::new(move |e| s.lock().unwrap().push(e)), seen)
}

/// A reply that creates `abs` as a program under the fake root, then succeeds with `stdout`.
pub fn installs(root: &Path, abs: &'static str, stdout: &'static str) -> Reply {
    let p = root.join(abs.trim_start_matches('/'));
    Reply::effect(move |_, _| {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, "\x7fELF").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        Ok(Output::ok(stdout))
    })
}
