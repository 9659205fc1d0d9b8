//! Against the project's own LXD daemon (`cargo xtask testenv up`): never skipped. A test that cannot reach
//! LXD fails and says how to start it.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use testbed_config::Config;
use testbed_exec::{execute, ExecOptions, Interrupt, Report};
use testbed_lxd::{Client, Flavor, LxdProvider};
use testbed_plan::{desired, DesiredState, Layer, ObservedState, Plan};
use testbed_provider::{ActionRunner, Providers};
use testbed_sim::{SimMachine, SimOptions};

/// The test daemon's directory, as `cargo xtask testenv up` makes it (LXD_DIR overrides).
pub const TESTENV_LXD_DIR: &str = "/var/lib/testbed-testenv/lxd";
pub const IMAGE: &str = "testbed-busybox";

pub fn client() -> Client {
    let dir = std::env::var("LXD_DIR").unwrap_or_else(|_| TESTENV_LXD_DIR.to_owned());
    let socket = Path::new(&dir).join("unix.socket");
    assert!(
        socket.exists(),
        "no LXD socket at {}: start the project's test daemon with `cargo xtask testenv up`",
        socket.display()
    );
    Client::at(socket, Flavor::Lxd)
}

/// A file for an isolated test: its own bridge, subnet, profile and members.
pub fn file(tag: &str, subnet: u8, members: &[(&str, u16)]) -> String {
    let mut s = format!(
        "name = \"{tag}\"\n\n[lxd]\nbridge = \"tb{tag}\"\nipv4_address = \"10.199.{subnet}.1/24\"\nstorage_pool = \"default\"\nimage = \"{IMAGE}\"\nprofile = \"tb{tag}-member\"\n\n[lxd.profile_config]\n\"linux.kernel_modules\" = \"overlay,nf_conntrack\"\n\n"
    );
    for (name, port) in members {
        s.push_str(&format!("[[members]]\nname = \"{name}\"\napi_port = {port}\n\n"));
    }
    s
}

pub fn config(text: &str) -> Config {
    testbed_config::parse(Path::new("testbed.toml"), text).expect("valid test file")
}

/// Real LXD, everything above it simulated in `dir`.
pub struct Stack {
    pub lxd: Arc<LxdProvider>,
    pub sim: SimMachine,
    _dir: tempfile::TempDir,
}

impl Stack {
    /// A stack for the testbed named `name` (the file's `name`).
    pub fn new(name: &str) -> Stack {
        let dir = tempfile::tempdir().expect("temp dir");
        let sim = SimMachine::open(dir.path().join("sim.json"), SimOptions::instant()).expect("sim");
        Stack { lxd: Arc::new(LxdProvider::new(client(), name)), sim, _dir: dir }
    }

    pub fn providers(&self) -> Providers {
        let mut p = Providers::new().with(self.lxd.clone());
        for layer in [Layer::Host, Layer::Microk8s, Layer::Registry, Layer::Karmada] {
            p = p.with(self.sim.provider(layer));
        }
        p
    }

    pub async fn observe(&self, c: &Config) -> ObservedState {
        let skeleton = desired::build(c, &ObservedState::default());
        let wanted: Vec<_> = skeleton.resources.values().cloned().collect();
        let o = self.providers().observe(&wanted).await;
        assert!(o.unobservable.is_empty(), "{:?}", o.unobservable);
        o
    }

    /// The plan for the LXD part of the file (the layers above LXD are rehearsed elsewhere).
    pub async fn plan(&self, c: &Config) -> Plan {
        let o = self.observe(c).await;
        let d = desired::build(c, &o);
        testbed_plan::plan(&d, &o).expect("plan").targeted(&lxd_targets())
    }

    pub async fn destroy_plan(&self, c: &Config) -> Plan {
        let o = self.observe(c).await;
        testbed_plan::plan(&DesiredState::nothing(), &o).expect("plan").targeted(&lxd_targets())
    }

    pub async fn run(&self, p: &Plan, parallelism: usize) -> Report {
        let runner: Arc<dyn ActionRunner> = Arc::new(self.providers());
        execute(p, runner, &ExecOptions::new(parallelism), &Interrupt::new(), |_| {}).await
    }
}

pub fn lxd_targets() -> Vec<String> {
    ["lxd_network", "lxd_storage_pool", "lxd_profile", "lxd_instance", "proxy"].into_iter().map(String::from).collect()
}

pub fn addresses(p: &Plan) -> Vec<String> {
    p.actions().iter().map(|a| a.address.to_string()).collect()
}

pub fn ops(p: &Plan) -> BTreeSet<(String, String)> {
    p.actions().iter().map(|a| (a.address.to_string(), a.op.name().to_owned())).collect()
}

/// `GET /` on a host port; the body, or None if nothing answered within `timeout`.
pub fn http_get(port: u16, timeout: Duration) -> Option<String> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            if s.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n").is_ok() {
                let mut buf = String::new();
                if s.read_to_string(&mut buf).is_ok() && buf.starts_with("HTTP/") {
                    return Some(buf);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    None
}

pub fn lxd_dir() -> PathBuf {
    PathBuf::from(std::env::var("LXD_DIR").unwrap_or_else(|_| TESTENV_LXD_DIR.to_owned()))
}

/// Removes what an earlier, interrupted run of a test may have left: its instances, profile and bridge.
pub async fn clear(cl: &Client, instances: &[&str], tag: &str) {
    let wait = Duration::from_secs(60);
    for name in instances {
        let path = format!("/1.0/instances/{name}");
        if cl.get_opt::<serde_json::Value>(&path).await.ok().flatten().is_some() {
            let _ = cl.put(&format!("{path}/state"), &serde_json::json!({"action": "stop", "force": true}), wait).await;
            let _ = cl.delete(&path, wait).await;
        }
    }
    let _ = cl.delete(&format!("/1.0/profiles/tb{tag}-member"), wait).await;
    let _ = cl.delete(&format!("/1.0/networks/tb{tag}"), wait).await;
}
