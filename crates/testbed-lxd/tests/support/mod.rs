//! Against the project's own LXD and Incus daemons (`cargo xtask testenv up`): never skipped. A test that
//! cannot reach its daemon fails and says how to start it.

#![allow(dead_code, unused_macros)]

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use testbed_config::Config;
use testbed_exec::{execute, Event, ExecOptions, Interrupt, Outcome, Report};
use testbed_lxd::{Client, Flavor, LxdProvider};
use testbed_plan::{desired, DesiredState, Layer, ObservedState, Plan};
use testbed_provider::{ActionRunner, Providers};
use testbed_sim::{SimMachine, SimOptions};

/// The test daemons' directories, as `cargo xtask testenv up` makes them (LXD_DIR, INCUS_DIR override).
pub const TESTENV_LXD_DIR: &str = "/var/lib/testbed-testenv/lxd";
pub const TESTENV_INCUS_DIR: &str = "/var/lib/testbed-testenv/incus";
pub const IMAGE: &str = "testbed-busybox";

/// One of the test environment's daemons. Both run on this one host: a test that runs on both gives each its
/// own names, subnet and host ports (bridges are host interfaces, proxies listen on host ports), so the two
/// runs never meet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Daemon {
    Lxd,
    Incus,
}

impl Daemon {
    pub fn flavor(self) -> Flavor {
        match self {
            Daemon::Lxd => Flavor::Lxd,
            Daemon::Incus => Flavor::Incus,
        }
    }

    /// What `GET /1.0` says the server is (`environment.server`).
    pub fn server(self) -> &'static str {
        match self {
            Daemon::Lxd => "lxd",
            Daemon::Incus => "incus",
        }
    }

    pub fn dir(self) -> PathBuf {
        let (var, default) = match self {
            Daemon::Lxd => ("LXD_DIR", TESTENV_LXD_DIR),
            Daemon::Incus => ("INCUS_DIR", TESTENV_INCUS_DIR),
        };
        PathBuf::from(std::env::var(var).unwrap_or_else(|_| default.to_owned()))
    }

    pub fn client(self) -> Client {
        let socket = self.dir().join("unix.socket");
        assert!(
            socket.exists(),
            "no {} socket at {}: start the project's test daemons with `cargo xtask testenv up`",
            self.flavor().name(),
            socket.display()
        );
        Client::at(socket, self.flavor())
    }

    /// A test's tag (the prefix of its names) on this daemon: as written on LXD, `i` before it on Incus.
    pub fn tag(self, tag: &str) -> String {
        match self {
            Daemon::Lxd => tag.to_owned(),
            Daemon::Incus => format!("i{tag}"),
        }
    }

    /// A test's subnet (`10.199.N.0/24`) on this daemon: as written on LXD, 100 above it on Incus.
    pub fn subnet(self, n: u8) -> u8 {
        match self {
            Daemon::Lxd => n,
            Daemon::Incus => n + 100,
        }
    }

    /// A test's host port on this daemon: as written on LXD, 2000 above it on Incus.
    pub fn port(self, port: u16) -> u16 {
        match self {
            Daemon::Lxd => port,
            Daemon::Incus => port + 2000,
        }
    }
}

/// Held by each case the macro runs, on either daemon: the cases of a binary run one at a time. Incus 6.0.4
/// fails a bridge's creation when a veth it lists vanishes meanwhile ("Failed to delete bridge children
/// interfaces: ... ip -d -j link show vethXXXX: Device does not exist", HTTP 500), which a container of
/// another case (on LXD or Incus: the veths are the host's) going away at that moment causes; seen in CI
/// (docs/incus.md).
pub static DAEMON_CASES: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs each case on both test daemons: a module per case, a test per daemon.
macro_rules! on_both_daemons {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            #[test]
            fn lxd() {
                let _one_at_a_time = super::DAEMON_CASES.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                super::$case(super::Daemon::Lxd)
            }

            #[test]
            fn incus() {
                let _one_at_a_time = super::DAEMON_CASES.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                super::$case(super::Daemon::Incus)
            }
        }
    )*};
}

/// The test LXD daemon's client.
pub fn client() -> Client {
    Daemon::Lxd.client()
}

/// A file for an isolated test on the test LXD daemon: its own bridge, subnet, profile and members.
pub fn file(tag: &str, subnet: u8, members: &[(&str, u16)]) -> String {
    file_on(Daemon::Lxd, tag, subnet, members)
}

/// [`file`] for one of the test daemons (`[lxd] backend` says which). The tag, subnet and ports are used as
/// given: [`Daemon::tag`], [`Daemon::subnet`] and [`Daemon::port`] make them the daemon's own.
pub fn file_on(daemon: Daemon, tag: &str, subnet: u8, members: &[(impl AsRef<str>, u16)]) -> String {
    let backend = daemon.server();
    let mut s = format!(
        "name = \"{tag}\"\n\n[lxd]\nbackend = \"{backend}\"\nbridge = \"tb{tag}\"\nipv4_address = \"10.199.{subnet}.1/24\"\nstorage_pool = \"default\"\nimage = \"{IMAGE}\"\nprofile = \"tb{tag}-member\"\n\n[lxd.profile_config]\n\"linux.kernel_modules\" = \"overlay,nf_conntrack\"\n\n"
    );
    for (name, port) in members {
        let name = name.as_ref();
        s.push_str(&format!("[[members]]\nname = \"{name}\"\napi_port = {port}\n\n"));
    }
    s
}

pub fn config(text: &str) -> Config {
    testbed_config::parse(Path::new("testbed.toml"), text).expect("valid test file")
}

/// A real daemon, everything above it simulated in `dir`.
pub struct Stack {
    pub lxd: Arc<LxdProvider>,
    pub sim: SimMachine,
    _dir: tempfile::TempDir,
}

impl Stack {
    /// A stack for the testbed named `name` (the file's `name`) on the test LXD daemon.
    pub fn new(name: &str) -> Stack {
        Stack::with_client(name, client())
    }

    /// A stack for the testbed named `name` on one of the test daemons.
    pub fn on(daemon: Daemon, name: &str) -> Stack {
        Stack::with_client(name, daemon.client())
    }

    pub fn providers(&self) -> Providers {
        let above = BTreeSet::from([Layer::Host, Layer::Microk8s, Layer::Registry, Layer::Karmada]);
        self.sim.clone().with_real_containers(self.lxd.clone()).providers_for(&above).with(self.lxd.clone())
    }

    pub async fn observe(&self, c: &Config) -> ObservedState {
        // The simulated host runs the file's catalogue.
        self.sim.use_file(testbed_steps::Context::new(c));
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
    Daemon::Lxd.dir()
}

/// Removes what an earlier, interrupted run of a test may have left: its instances, profile and bridge.
/// Waits first for LXD operations on those instances that the interrupted run left going, and fails the
/// test if something could not be removed.
pub async fn clear(cl: &Client, instances: &[&str], tag: &str) {
    let wait = Duration::from_secs(60);
    settle(cl, instances).await;
    for name in instances {
        let path = format!("/1.0/instances/{name}");
        if cl.get_opt::<serde_json::Value>(&path).await.ok().flatten().is_some() {
            let _ = cl.put(&format!("{path}/state"), &serde_json::json!({"action": "stop", "force": true}), wait).await;
            let _ = cl.delete(&path, wait).await;
        }
    }
    let _ = cl.delete(&format!("/1.0/profiles/tb{tag}-member"), wait).await;
    let _ = cl.delete(&format!("/1.0/networks/tb{tag}"), wait).await;
    let paths = instances.iter().map(|i| format!("/1.0/instances/{i}"));
    for path in paths.chain([format!("/1.0/profiles/tb{tag}-member"), format!("/1.0/networks/tb{tag}")]) {
        let left = cl.get_opt::<serde_json::Value>(&path).await.expect("LXD answers");
        assert!(left.is_none(), "could not remove {path}, left by an earlier run: remove it by hand");
    }
}

impl Stack {
    /// A stack for the testbed `name` whose real LXD layer talks through `client` (a missing socket, a
    /// proxy in front of the daemon).
    pub fn with_client(name: &str, client: Client) -> Stack {
        let dir = tempfile::tempdir().expect("temp dir");
        let sim = SimMachine::open(dir.path().join("sim.json"), SimOptions::instant()).expect("sim");
        Stack { lxd: Arc::new(LxdProvider::new(client, name)), sim, _dir: dir }
    }

    /// Observes without insisting that every layer could be observed.
    pub async fn observe_any(&self, c: &Config) -> ObservedState {
        self.sim.use_file(testbed_steps::Context::new(c));
        let skeleton = desired::build(c, &ObservedState::default());
        let wanted: Vec<_> = skeleton.resources.values().cloned().collect();
        self.providers().observe(&wanted).await
    }

    /// Like [`Stack::run`], with the executor's events.
    pub async fn run_with(
        &self,
        p: &Plan,
        parallelism: usize,
        on_event: impl Fn(Event) + Send + Sync + 'static,
    ) -> Report {
        let runner: Arc<dyn ActionRunner> = Arc::new(self.providers());
        execute(p, runner, &ExecOptions::new(parallelism), &Interrupt::new(), on_event).await
    }
}

/// The failures of a run as `(address, message, hint)`, for assertions and messages.
pub fn failures(r: &Report) -> Vec<(String, String, Option<String>)> {
    r.failures().map(|(a, e)| (a.to_string(), e.report().to_string(), e.hint().map(str::to_owned))).collect()
}

/// The outcome of one action in a run, by address.
pub fn outcome<'r>(r: &'r Report, address: &str) -> &'r Outcome {
    &r.actions
        .iter()
        .find(|a| a.address.as_str() == address)
        .unwrap_or_else(|| panic!("{address} is not in the run"))
        .outcome
}

/// Waits (up to two minutes) until no LXD operation that touches one of `instances` is still running: a
/// client that lost the daemon mid-request leaves the daemon's operation going, and the next plan must see
/// where it ended.
pub async fn settle(cl: &Client, instances: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let ops: serde_json::Value = cl.get("/1.0/operations?recursion=1").await.expect("list operations");
        let busy = ops
            .as_object()
            .into_iter()
            .flat_map(|by_status| by_status.values())
            .flat_map(|list| list.as_array().cloned().unwrap_or_default())
            .filter(|op| matches!(op["status"].as_str(), Some("Running" | "Pending")))
            .any(|op| {
                let resources = op["resources"].to_string();
                instances.iter().any(|i| resources.contains(&format!("/1.0/instances/{i}\"")))
            });
        if !busy {
            return;
        }
        assert!(Instant::now() < deadline, "LXD operations on {instances:?} still running after two minutes");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A unix-socket proxy in front of the LXD daemon's socket: a client pointed at it loses the daemon when the
/// proxy is stopped (connections in flight are cut, new ones are refused: the socket file stays, nobody
/// listens) and finds it again when it is restarted, exactly as a client of a restarted daemon does,
/// without stopping the shared daemon itself.
pub struct SocketProxy {
    pub path: PathBuf,
    upstream: PathBuf,
    /// Once set, the proxy stops right after forwarding the next operation-wait request (`GET
    /// /1.0/operations/ID/wait`): the daemon has the request, its client never gets the answer.
    cut_on_wait: Arc<std::sync::atomic::AtomicBool>,
    stop: tokio::sync::watch::Sender<bool>,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Connections cut mid-request so far.
    pub cut: Arc<std::sync::atomic::AtomicUsize>,
}

impl SocketProxy {
    /// Starts a proxy listening at `path` (which must not exist or be a stale socket) for `upstream`.
    pub fn start(path: PathBuf, upstream: PathBuf) -> SocketProxy {
        let (stop, _) = tokio::sync::watch::channel(false);
        let p = SocketProxy {
            path,
            upstream,
            cut_on_wait: Default::default(),
            stop,
            task: std::sync::Mutex::new(None),
            cut: Default::default(),
        };
        p.restart();
        p
    }

    pub fn client(&self) -> Client {
        self.client_as(Flavor::Lxd)
    }

    /// A client of the proxy for a daemon of `flavor` behind it.
    pub fn client_as(&self, flavor: Flavor) -> Client {
        Client::at(&self.path, flavor)
    }

    /// Arms the cut: see `cut_on_wait`.
    pub fn cut_on_next_wait(&self) {
        self.cut_on_wait.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn is_running(&self) -> bool {
        !*self.stop.borrow()
    }

    /// Stops listening and cuts every open connection. The socket file stays (connecting is refused), as
    /// after a daemon crash.
    pub fn stop(&self) {
        self.stop.send_replace(true);
        if let Some(t) = self.task.lock().unwrap().take() {
            t.abort();
        }
    }

    /// (Re)starts listening at the same path.
    pub fn restart(&self) {
        self.stop();
        let _ = std::fs::remove_file(&self.path);
        let listener = tokio::net::UnixListener::bind(&self.path).expect("bind the proxy socket");
        self.stop.send_replace(false);
        let mut stopped = self.stop.subscribe();
        let stop = self.stop.clone();
        let upstream = self.upstream.clone();
        let cut_on_wait = Arc::clone(&self.cut_on_wait);
        let cut = Arc::clone(&self.cut);
        let task = tokio::spawn(async move {
            // Dropping the set (when this task ends or is aborted) aborts every connection.
            let mut conns = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    _ = stopped.wait_for(|s| *s) => return,
                    accepted = listener.accept() => {
                        let Ok((down, _)) = accepted else { continue };
                        let upstream = upstream.clone();
                        let cut_on_wait = Arc::clone(&cut_on_wait);
                        let cut = Arc::clone(&cut);
                        let stop = stop.clone();
                        conns.spawn(async move {
                            let _ = forward(down, &upstream, &cut_on_wait, &cut, &stop).await;
                        });
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        });
        *self.task.lock().unwrap() = Some(task);
    }
}

impl Drop for SocketProxy {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn forward(
    down: tokio::net::UnixStream,
    upstream: &Path,
    cut_on_wait: &std::sync::atomic::AtomicBool,
    cut: &std::sync::atomic::AtomicUsize,
    stop: &tokio::sync::watch::Sender<bool>,
) -> std::io::Result<()> {
    use std::sync::atomic::Ordering;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = tokio::net::UnixStream::connect(upstream).await?;
    let (mut down_read, mut down_write) = down.into_split();
    let (mut up_read, mut up_write) = up.into_split();
    // Answers flow back untouched; dropped (and so cut) with this connection's task.
    let answers = tokio::spawn(async move { tokio::io::copy(&mut up_read, &mut down_write).await });
    let _answers = AbortOnDrop(answers);
    // The client keeps a connection for several requests and writes each whole (headers, small body) at
    // once: look at the start of each chunk it writes.
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = down_read.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        let head = String::from_utf8_lossy(&chunk[..n.min(256)]).into_owned();
        if head.starts_with("GET /1.0/operations/")
            && head.lines().next().is_some_and(|l| l.contains("/wait"))
            && cut_on_wait.swap(false, Ordering::SeqCst)
        {
            up_write.write_all(&chunk[..n]).await?;
            cut.fetch_add(1, Ordering::SeqCst);
            stop.send_replace(true);
            // Aborted with the accept loop; never answer.
            std::future::pending::<()>().await;
        }
        up_write.write_all(&chunk[..n]).await?;
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
