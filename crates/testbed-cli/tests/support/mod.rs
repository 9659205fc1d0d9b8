//! Shared by the law tests and the benchmarks: files, a simulated machine, and the observe → plan → apply
//! loop exactly as the CLI runs it.

#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use testbed_config::Config;
use testbed_exec::{execute, ExecOptions, Interrupt, Report};
use testbed_plan::{desired, DesiredState, ObservedState, Plan};
use testbed_provider::ActionRunner;
use testbed_sim::{SimMachine, SimOptions};

/// Three members: the file most command-line tests run.
pub const THREE: &str = r#"
[[members]]
name = "member1"
api_port = 16441

[[members]]
name = "member2"
api_port = 16442

[[members]]
name = "member3"
api_port = 16444
"#;

/// Two members; Prometheus runs on member1, and a proxy on host port 9091 follows its pod.
pub const PROMETHEUS_FILE: &str = r#"
[[members]]
name = "member1"
api_port = 16441

[[members]]
name = "member2"
api_port = 16442

[[workloads]]
name = "prometheus"
manifests = ["prometheus.yaml"]
members = ["member1"]

[[proxies]]
name = "prometheus"
member = "member1"
host_port = 9091
pod = { namespace = "monitoring", selector = "app.kubernetes.io/name=prometheus", port = 9090 }
"#;

/// The manifest [`PROMETHEUS_FILE`] names: a namespace and a Deployment of one Prometheus pod.
pub const PROMETHEUS_MANIFEST: &str = "apiVersion: v1
kind: Namespace
metadata:
  name: monitoring
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: prometheus
  namespace: monitoring
spec:
  replicas: 1
  selector:
    matchLabels:
      app.kubernetes.io/name: prometheus
  template:
    metadata:
      labels:
        app.kubernetes.io/name: prometheus
    spec:
      containers:
      - name: prometheus
        image: quay.io/prometheus/prometheus:v3.5.0
        ports:
        - containerPort: 9090
";

/// A temporary directory with a `testbed.toml`, for running the command in.
pub struct Lab {
    dir: tempfile::TempDir,
}

impl Lab {
    pub fn new(config: &str) -> Lab {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("testbed.toml"), config).expect("write config");
        Lab { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn config(&self) -> std::path::PathBuf {
        self.path().join("testbed.toml")
    }
}

/// A file with the given members (name, api_port) and join mode.
pub fn file(members: &[(String, u16)], pull: bool) -> String {
    let mut text = String::from("[lxd]\nipv4_address = \"10.100.0.1/16\"\n\n");
    if pull {
        text.push_str("[karmada]\njoin_mode = \"pull\"\n\n");
    }
    for (name, port) in members {
        text.push_str(&format!("[[members]]\nname = \"{name}\"\napi_port = {port}\n\n"));
    }
    text
}

/// The file `text` as if it were `dir/testbed.toml`: what it writes beside itself (the members'
/// kubeconfigs) goes under `dir`.
pub fn config(dir: &Path, text: &str) -> Config {
    testbed_config::parse(&dir.join("testbed.toml"), text).expect("test file is valid")
}

pub fn numbered(n: usize) -> Vec<(String, u16)> {
    (1..=n).map(|i| (format!("member{i}"), 20000 + i as u16)).collect()
}

/// A fresh simulated machine in `dir`.
pub fn machine(dir: &Path, speed: f64, fail_once: &[&str]) -> SimMachine {
    let options = SimOptions { speed, ..SimOptions::instant() }.failing_once(fail_once.iter().copied());
    SimMachine::open(dir.join("sim.json"), options).expect("open simulated machine")
}

/// Observes the machine for `config` (or for nothing, when destroying); the machine is driven with that
/// file from now on, as the CLI drives it.
pub async fn observe(m: &SimMachine, config: &Config) -> ObservedState {
    m.use_file(testbed_steps::Context::new(config));
    let skeleton = desired::build(config, &ObservedState::default());
    let wanted: Vec<_> = skeleton.resources.values().cloned().collect();
    m.providers().observe(&wanted).await
}

/// The plan `testbed plan` would show.
pub async fn plan(m: &SimMachine, config: &Config) -> (DesiredState, ObservedState, Plan) {
    let observed = observe(m, config).await;
    let d = desired::build(config, &observed);
    let p = testbed_plan::plan(&d, &observed).expect("plan");
    (d, observed, p)
}

/// The plan `testbed destroy` would show.
pub async fn destroy_plan(m: &SimMachine, config: &Config) -> Plan {
    let observed = observe(m, config).await;
    testbed_plan::plan(&DesiredState::nothing(), &observed).expect("plan")
}

pub async fn run(m: &SimMachine, p: &Plan, parallelism: usize) -> Report {
    let runner: Arc<dyn ActionRunner> = Arc::new(m.providers());
    let options = ExecOptions { parallelism, ..ExecOptions::default() };
    execute(p, runner, &options, &Interrupt::new(), |_| {}).await
}

/// Runs `p` and drops the run once `events` of its events (actions started, logged, finished) have been
/// seen, as when the process dies mid-way: actions still running are cancelled where they wait. `None`
/// when it was killed; the report when it finished first.
pub async fn run_killed_after(m: &SimMachine, p: &Plan, parallelism: usize, events: usize) -> Option<Report> {
    let runner: Arc<dyn ActionRunner> = Arc::new(m.providers());
    let options = ExecOptions { parallelism, ..ExecOptions::default() };
    let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let kill = Arc::new(tokio::sync::Notify::new());
    let (counter, trigger) = (seen.clone(), kill.clone());
    let on_event = move |_| {
        if counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 == events.max(1) {
            trigger.notify_one();
        }
    };
    let interrupt = Interrupt::new();
    tokio::select! {
        report = execute(p, runner, &options, &interrupt, on_event) => Some(report),
        () = kill.notified() => None,
    }
}

/// `testbed apply --yes`.
pub async fn apply(m: &SimMachine, config: &Config, parallelism: usize) -> Report {
    let (_, _, p) = plan(m, config).await;
    run(m, &p, parallelism).await
}

/// Addresses of everything testbed owns on the machine, as the providers observe it (nothing wanted).
pub async fn owned(m: &SimMachine) -> Vec<String> {
    let observed = m.providers().observe(&[]).await;
    observed
        .resources
        .values()
        .filter(|o| o.owner == testbed_plan::Owner::Testbed)
        .map(|o| o.address.to_string())
        .collect()
}

/// How long each action of a run took, by address.
pub fn measured(r: &Report) -> std::collections::BTreeMap<String, std::time::Duration> {
    r.actions.iter().map(|a| (a.address.to_string(), a.duration.unwrap_or_default())).collect()
}

/// A run's summary line and, for each failed action, its address and error: what a failing law prints.
pub fn failures(r: &Report) -> String {
    let mut text = r.summary_line("Apply");
    for a in &r.actions {
        if let testbed_exec::Outcome::Failed { error } = &a.outcome {
            text.push_str(&format!("\n  {}: {error}", a.address, error = error.report()));
        }
    }
    text
}

/// Addresses of a plan's actions.
pub fn addresses(p: &Plan) -> Vec<String> {
    p.actions().iter().map(|a| a.address.to_string()).collect()
}

/// The examples' workload manifests (`examples/workloads`), copied to `to/workloads`: an example copied
/// elsewhere names them relative to itself.
pub fn copy_example_workloads(to: &Path) {
    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).expect("mkdir");
        for e in std::fs::read_dir(from).expect("read dir") {
            let e = e.expect("entry");
            if e.path().is_dir() {
                copy_dir(&e.path(), &to.join(e.file_name()));
            } else {
                std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
            }
        }
    }
    copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/workloads"), &to.join("workloads"));
}

/// A lab directory holding the example `example` (`failover.toml`) as its testbed.toml, with the examples'
/// manifests beside it.
pub fn example_lab(example: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    std::fs::copy(examples.join(example), dir.path().join("testbed.toml")).expect("copy the example");
    copy_example_workloads(dir.path());
    dir
}

/// `testbed` on the simulated machine in `dir`, against its `testbed.toml`, at full speed and without
/// injected faults.
pub fn simulated(dir: &Path, args: &[&str]) -> std::process::Output {
    simulated_with(dir, args, &[])
}

/// [`simulated`] with these variables set (`TESTBED_SIM_FAIL`, `KUBECONFIG`).
pub fn simulated_with(dir: &Path, args: &[&str], vars: &[(&str, &str)]) -> std::process::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_testbed"));
    command
        .current_dir(dir)
        .args(["-c", "testbed.toml", "--simulate", "all"])
        .args(args)
        .env("TESTBED_SIM_SPEED", "0")
        .env_remove("TESTBED_SIM_FAIL");
    for (k, v) in vars {
        command.env(k, v);
    }
    command.stdin(std::process::Stdio::null()).output().expect("run testbed")
}

/// A command's stdout and stderr, as one text.
pub fn said(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}
