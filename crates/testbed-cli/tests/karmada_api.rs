//! `testbed plan` and `testbed status` with the Karmada layer REAL, reading an in-process fake Kubernetes API
//! (the host cluster and the Karmada API server, real-shaped objects), while the layers below it run on a
//! converged simulated machine. What a user sees when clusters are Ready, one is NotReady, one is missing, the
//! API does not answer, TLS fails, or someone else registered a cluster under a member's name.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use testbed_kube::fake::{unused_url, FakeCluster, FakeDeployment, FakeKube, FakeNamespace, FakeState, FakeTls};
use testbed_kube::{CONTROL_PLANE_DEPLOYMENTS, KARMADA_NAMESPACE};

const NAME: &str = "lab";
const MEMBERS: [(&str, &str); 4] =
    [("member1", "127.0.0.11"), ("member2", "127.0.0.12"), ("member3", "127.0.0.13"), ("member4", "127.0.0.14")];

struct Lab {
    dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
    _servers: Vec<FakeKube>,
}

fn kubeconfig(server: &str, ca_file: Option<&Path>) -> String {
    let ca = ca_file.map(|f| format!("\n    certificate-authority: {}", f.display())).unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: k\n  cluster:\n    server: {server}{ca}\ncontexts:\n- name: k\n  context:\n    cluster: k\n    user: admin\ncurrent-context: k\nusers:\n- name: admin\n  user:\n    token: not-a-real-credential\n"
    )
}

/// The host cluster after testbed's `karmadactl init` v1.19.0 from the local registry.
fn host_cluster() -> FakeState {
    let mut s = FakeState::host_with_karmada();
    for name in CONTROL_PLANE_DEPLOYMENTS {
        let image = if name.starts_with("karmada-") {
            format!("localhost:32000/{name}:v1.19.0")
        } else {
            format!("localhost:32000/{name}:v1.31.3")
        };
        let mut d = FakeDeployment::available(KARMADA_NAMESPACE, name);
        d.image = Some(image);
        s.put_deployment(d);
    }
    s.put_namespace(FakeNamespace::new(KARMADA_NAMESPACE).label("testbed/owner", NAME));
    s
}

/// A Cluster as testbed's join leaves it.
fn joined(name: &str, ip: &str) -> FakeCluster {
    FakeCluster { api_endpoint: format!("https://{ip}:16443"), ..FakeCluster::ready(name) }.label("testbed/owner", NAME)
}

impl Lab {
    /// A file with four members, and a simulated machine on which everything below Karmada is in place.
    fn new() -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let mut text = format!(
            "name = \"{NAME}\"\n[lxd]\nipv4_address = \"127.0.0.1/8\"\n[karmada]\ndata_dir = \"{}\"\n",
            dir.path().join("karmada").display()
        );
        for ((m, ip), port) in MEMBERS.iter().zip([16441, 16442, 16444, 16445]) {
            text.push_str(&format!("[[members]]\nname = \"{m}\"\napi_port = {port}\nipv4 = \"{ip}\"\n"));
        }
        std::fs::write(dir.path().join("testbed.toml"), text).unwrap();
        let lab = Lab { dir, rt, _servers: Vec::new() };
        let out = lab.run("all", &["apply", "--yes"]);
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        lab
    }

    fn karmada_kubeconfig(&self) -> PathBuf {
        self.dir.path().join("karmada/karmada-apiserver.config")
    }

    fn host_kubeconfig(&self) -> PathBuf {
        self.dir.path().join("host.config")
    }

    /// Serves `host` and `karmada` and points the kubeconfigs at them.
    fn serve(&mut self, host: FakeState, karmada: FakeState) {
        let h = self.rt.block_on(FakeKube::start(host)).unwrap();
        let k = self.rt.block_on(FakeKube::start(karmada)).unwrap();
        std::fs::write(self.host_kubeconfig(), kubeconfig(h.url(), None)).unwrap();
        std::fs::create_dir_all(self.karmada_kubeconfig().parent().unwrap()).unwrap();
        std::fs::write(self.karmada_kubeconfig(), kubeconfig(k.url(), None)).unwrap();
        self._servers = vec![h, k];
    }

    /// Runs testbed with `simulate` layers simulated.
    fn run(&self, simulate: &str, args: &[&str]) -> Output {
        let _guard = self.rt.enter();
        Command::new(env!("CARGO_BIN_EXE_testbed"))
            .arg("-c")
            .arg(self.dir.path().join("testbed.toml"))
            .args(["--simulate", simulate])
            .args(args)
            .env("TESTBED_SIM_SPEED", "0")
            .env("TESTBED_HOST_KUBECONFIG", self.host_kubeconfig())
            .env_remove("TESTBED_SIM_FAIL")
            .env_remove("RUST_LOG")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    }

    /// Runs testbed with only the Karmada layer real.
    fn real_karmada(&self, args: &[&str]) -> Output {
        self.run("host,lxd,microk8s,registry", args)
    }

    /// `plan --json`: (address, action, reason) of every action, and the notes.
    fn plan(&self) -> (Vec<(String, String, String)>, Vec<String>) {
        let out = self.real_karmada(&["plan", "--json"]);
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let actions = v["actions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["address"].as_str().unwrap().to_owned(),
                    a["action"].as_str().unwrap().to_owned(),
                    a["reason"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        let notes = v["notes"].as_array().unwrap().iter().map(|n| n.as_str().unwrap().to_owned()).collect();
        (actions, notes)
    }

    /// `status --json`: address → (state, detail) for the Karmada layer's resources.
    fn status(&self) -> Vec<(String, String, Option<String>)> {
        let out = self.real_karmada(&["status", "--json"]);
        // 0 or 2 (as the file wants or not), never an error.
        assert!(matches!(out.status.code(), Some(0 | 2)), "{}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["resources"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["address"].as_str().unwrap().starts_with("karmada"))
            .map(|r| {
                (
                    r["address"].as_str().unwrap().to_owned(),
                    r["state"].as_str().unwrap().to_owned(),
                    r["detail"].as_str().map(str::to_owned),
                )
            })
            .collect()
    }
}

fn state<'a>(status: &'a [(String, String, Option<String>)], address: &str) -> (&'a str, Option<&'a str>) {
    let (_, s, d) = status.iter().find(|(a, _, _)| a == address).unwrap_or_else(|| panic!("{address} in {status:?}"));
    (s.as_str(), d.as_deref())
}

#[test]
fn ready_not_ready_and_missing_clusters_are_planned_and_shown_as_they_are() {
    let mut lab = Lab::new();
    let mut karmada = FakeState::karmada_apiserver();
    karmada.put_cluster(joined("member1", "127.0.0.11"));
    karmada.put_cluster(joined("member2", "127.0.0.12"));
    karmada.put_cluster(
        FakeCluster { api_endpoint: "https://127.0.0.13:16443".into(), ..FakeCluster::not_reachable("member3") }
            .label("testbed/owner", NAME),
    );
    lab.serve(host_cluster(), karmada);

    let (actions, notes) = lab.plan();
    assert_eq!(
        actions,
        [
            (
                "karmada_member.member3".to_owned(),
                "update".to_owned(),
                "cluster member3 is not Ready (ClusterNotReachable: cluster is not reachable)".to_owned()
            ),
            ("karmada_member.member4".to_owned(), "create".to_owned(), "not present".to_owned()),
        ],
        "the Ready members and the control plane are left alone; notes: {notes:?}"
    );

    let status = lab.status();
    assert_eq!(state(&status, "karmada.control_plane"), ("ok", None));
    assert_eq!(state(&status, "karmada_member.member1"), ("ok", None));
    assert_eq!(state(&status, "karmada_member.member2"), ("ok", None));
    assert_eq!(
        state(&status, "karmada_member.member3"),
        ("needs repair", Some("cluster member3 is not Ready (ClusterNotReachable: cluster is not reachable)"))
    );
    assert_eq!(state(&status, "karmada_member.member4"), ("missing", None));

    // The text forms say the same.
    let text = String::from_utf8(lab.real_karmada(&["plan"]).stdout).unwrap();
    assert!(text.contains("~ karmada_member.member3"), "{text}");
    assert!(text.contains("+ karmada_member.member4"), "{text}");
    assert!(!text.contains("member1"), "{text}");
    let out = lab.real_karmada(&["status"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("karmada_member.member3"), "{text}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("real: karmada"), "the banner names the real layer");
}

#[test]
fn an_unreachable_karmada_api_holds_the_layer_and_says_why() {
    let mut lab = Lab::new();
    lab.serve(host_cluster(), FakeState::karmada_apiserver());
    let nowhere = lab.rt.block_on(unused_url()).unwrap();
    std::fs::write(lab.karmada_kubeconfig(), kubeconfig(nowhere.url(), None)).unwrap();

    let (actions, notes) = lab.plan();
    assert!(actions.is_empty(), "nothing is joined or re-initialised on a guess: {actions:?}");
    assert!(
        notes.iter().any(|n| n.starts_with("karmada could not be observed (the Karmada API could not be read")
            && n.contains("unreachable")
            && n.contains("its resources are left out of this plan")),
        "{notes:?}"
    );
    let status = lab.status();
    assert_eq!(state(&status, "karmada_member.member1"), ("unknown", Some("karmada could not be observed")));
}

#[test]
fn a_karmada_api_with_a_certificate_from_another_ca_is_a_tls_error_not_an_absence() {
    let mut lab = Lab::new();
    lab.serve(host_cluster(), FakeState::karmada_apiserver());
    let tls = FakeTls::generate("karmada-ca");
    let other = FakeTls::generate("an-earlier-karmada-ca");
    let served = lab.rt.block_on(FakeKube::start_tls(FakeState::karmada_apiserver(), &tls)).unwrap();
    let ca_file = lab.dir.path().join("old-ca.crt");
    std::fs::write(&ca_file, &other.ca_pem).unwrap();
    std::fs::write(lab.karmada_kubeconfig(), kubeconfig(served.url(), Some(&ca_file))).unwrap();

    let (actions, notes) = lab.plan();
    assert!(actions.is_empty(), "{actions:?}");
    assert!(
        notes.iter().any(|n| n.contains("TLS with the Kubernetes API at https://127.0.0.1:")
            && n.contains("not signed by the configured CA")),
        "{notes:?}"
    );
    let status = lab.status();
    assert_eq!(state(&status, "karmada.control_plane").0, "unknown");
    lab._servers.push(served);
}

#[test]
fn a_cluster_someone_else_registered_under_a_member_name_is_reported_and_left_alone() {
    let mut lab = Lab::new();
    let mut karmada = FakeState::karmada_apiserver();
    for (m, ip) in &MEMBERS[..3] {
        karmada.put_cluster(joined(m, ip));
    }
    // Registered by hand (the seeds' scripts): no testbed label.
    karmada.put_cluster(FakeCluster { api_endpoint: "https://10.0.0.7:6443".into(), ..FakeCluster::ready("member4") });
    lab.serve(host_cluster(), karmada);

    let out = lab.real_karmada(&["plan"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("karmada_member.member4"), "{err}");
    assert!(err.contains("without testbed's label"), "{err}");
    assert!(err.contains("nothing was changed"), "{err}");
    let status = lab.status();
    assert_eq!(state(&status, "karmada_member.member4").0, "not testbed's");

    // apply refuses the same way, before asking anything or running anything.
    let out = lab.real_karmada(&["apply", "--yes"]);
    assert_eq!(out.status.code(), Some(1));
    let requests = lab._servers[1].requests();
    assert!(requests.iter().all(|r| r.starts_with("GET ")), "only reads reached the Karmada API: {requests:?}");
}
