//! Kubeconfig files: `microk8s config` (scripted) rewritten for people and Karmada, written 0600, checked
//! through a fake Kubernetes API over TLS whose port is the member's API port, observed back.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use testbed_command::{Reply, ScriptedRunner};
use testbed_config::Config;
use testbed_kube::fake::{FakeKube, FakeNode, FakeState, FakeTls};
use testbed_microk8s::Microk8sProvider;
use testbed_plan::{Action, Health, Kind, Op, Owner, PlanError};
use testbed_provider::{ActionLog, ErrorKind, Provider};
use testbed_steps::Where;

const TOKEN: &str = "YWRtaW4tdG9rZW4tc2VjcmV0LTQyNDI0Mg";

struct Lab {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    config: Config,
    runner: ScriptedRunner,
    containers: Arc<Containers>,
    fake: FakeKube,
    tls: FakeTls,
}

impl Lab {
    /// member1's API port is the fake API server's port, so `https://127.0.0.1:<api_port>` reaches it.
    async fn new(node: FakeNode) -> Lab {
        let tls = FakeTls::generate("microk8s-ca");
        let state = FakeState { nodes: vec![node], required_token: Some(TOKEN.into()), ..FakeState::default() };
        let fake = FakeKube::start_tls(state, &tls).await.unwrap();
        let port: u16 = fake.url().rsplit(':').next().unwrap().parse().unwrap();
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().to_path_buf();
        let config = config(&dir, &[("member1", port)], "\"dns\"");
        let runner = ScriptedRunner::new();
        inside(
            &runner,
            Where::Host,
            Some("1.35/stable"),
            status_running(&["dns", "hostpath-storage"]),
            &["dns", "hostpath-storage"],
        );
        inside(&runner, member1(), Some("1.35/stable"), status_running(&["dns"]), &["dns"]);
        // `microk8s config` prints the server at the container's default address, as the real one does.
        let admin = admin_kubeconfig(&tls.ca_pem, "https://10.123.45.10:16443", &token_user(TOKEN));
        runner.on_at(member1(), &["microk8s", "config"], Reply::ok(&admin));
        let containers = Arc::new(Containers::default());
        containers.0.lock().unwrap().push(container("member1", true, true));
        mark_host(&dir, "lab");
        Lab { _dir: d, dir, config, runner, containers, fake, tls }
    }

    fn provider(&self) -> Microk8sProvider {
        provider(&self.runner, &self.containers, &self.config, &self.dir)
            .with_ready_timeout(Duration::from_secs(1))
            .with_poll_interval(Duration::from_millis(100))
            .with_observe_api_timeout(Duration::from_secs(1))
    }

    fn people(&self) -> PathBuf {
        self.dir.join("kubeconfigs/member1.config")
    }

    fn karmada(&self) -> PathBuf {
        self.dir.join("kubeconfigs/member1-karmada.config")
    }

    fn port(&self) -> &str {
        self.fake.url().rsplit(':').next().unwrap()
    }

    /// The plan's kubeconfig action for member1.
    async fn action(&self) -> Result<Action, PlanError> {
        let desired = testbed_plan::desired::build(&self.config, &Default::default());
        let state = observed_with_the_rest(&self.provider(), &desired).await;
        let plan = testbed_plan::plan(&desired, &state)?;
        Ok(plan.actions().into_iter().find(|a| a.kind == Kind::Kubeconfig).expect("a kubeconfig action").clone())
    }

    async fn plan(&self) -> Vec<String> {
        let desired = testbed_plan::desired::build(&self.config, &Default::default());
        let state = observed_with_the_rest(&self.provider(), &desired).await;
        testbed_plan::plan(&desired, &state)
            .unwrap()
            .actions()
            .iter()
            .map(|a| format!("{} {}: {}", a.address, a.op.name(), a.reason))
            .collect()
    }
}

fn member1() -> Where {
    Where::Member("member1".into())
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn apply_writes_both_files_0600_checks_the_nodes_and_then_plans_nothing() {
    let lab = Lab::new(FakeNode::ready("member1")).await;
    let create = lab.action().await.unwrap();
    assert_eq!(create.op, Op::Create);
    let (log, seen) = capture();
    lab.provider().apply(&create, &log).await.unwrap();

    for (path, server) in [
        (lab.people(), format!("https://127.0.0.1:{}", lab.port())),
        (lab.karmada(), "https://10.123.45.10:16443".into()),
    ] {
        assert_eq!(mode(&path), 0o600, "{}", path.display());
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# managed-by: testbed name=lab address=kubeconfig.member1 use="), "{text}");
        let k = kube::config::Kubeconfig::from_yaml(&text).unwrap();
        assert_eq!(k.clusters[0].cluster.as_ref().unwrap().server.as_deref(), Some(server.as_str()));
        assert_eq!(k.current_context.as_deref(), Some("member1"));
        assert_eq!((k.clusters[0].name.as_str(), k.auth_infos[0].name.as_str()), ("member1", "member1"));
        assert!(text.contains(TOKEN), "the credentials are in the file");
    }
    assert_eq!(mode(&lab.dir.join("kubeconfigs")), 0o700);
    assert!(lab.fake.requests().iter().any(|r| r.starts_with("GET /api/v1/nodes")), "{:?}", lab.fake.requests());

    let logged = seen.text();
    assert!(!logged.contains(TOKEN), "{logged}");
    assert!(logged.contains("`microk8s config` printed"), "{logged}");
    assert!(logged.contains("member1: every node Ready (member1)"), "{logged}");
    assert!(lab.runner.transcript().contains(&"member1$ microk8s config".to_owned()));

    // Observed back: the same settings the file wants, testbed's, healthy. Nothing left to do.
    let desired = testbed_plan::desired::build(&lab.config, &Default::default());
    let state = observed_with_the_rest(&lab.provider(), &desired).await;
    let o = state.get(&addr("kubeconfig.member1")).unwrap();
    assert_eq!(o.owner, Owner::Testbed);
    assert_eq!(o.health, Health::Ok);
    assert_eq!(o.spec, desired.resources[&addr("kubeconfig.member1")].spec);
    assert_eq!(lab.plan().await, Vec::<String>::new(), "a converged machine plans no changes");
}

#[tokio::test]
async fn nodes_not_ready_are_waited_for_then_named() {
    let lab = Lab::new(FakeNode::not_ready("member1")).await;
    let create = lab.action().await.unwrap();
    let (log, seen) = capture();
    let started = Instant::now();
    let e = lab.provider().apply(&create, &log).await.unwrap_err();
    assert!(started.elapsed() >= Duration::from_secs(1), "it waited");
    assert!(e.kind() == ErrorKind::Failed, "{e:?}");
    assert!(
        e.report().to_string().starts_with(
            "member1: nodes not Ready after 1 s: member1 (KubeletNotReady: container runtime network not ready"
        ),
        "{e}",
        e = e.report()
    );
    let hint = e.hint().unwrap();
    assert!(hint.contains("describe nodes") && hint.contains("lxc exec member1 -- microk8s inspect"), "{hint}");
    assert!(
        seen.text().contains("member1: waiting for nodes to be Ready: member1 (KubeletNotReady"),
        "{}",
        seen.text()
    );
    assert!(!e.report().to_string().contains(TOKEN) && !seen.text().contains(TOKEN));
}

#[tokio::test]
async fn a_node_that_turns_ready_during_the_wait_is_fine() {
    let lab = Lab::new(FakeNode::not_ready("member1")).await;
    let create = lab.action().await.unwrap();
    let provider = lab.provider().with_ready_timeout(Duration::from_secs(5));
    let log = ActionLog::discard();
    let apply = provider.apply(&create, &log);
    let flip = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        lab.fake.update(|s| s.put_node(FakeNode::ready("member1")));
    };
    let (result, ()) = tokio::join!(apply, flip);
    result.unwrap();
}

#[tokio::test]
async fn observation_reports_not_ready_nodes_on_the_members_microk8s() {
    let lab = Lab::new(FakeNode::ready("member1")).await;
    lab.provider().apply(&lab.action().await.unwrap(), &ActionLog::discard()).await.unwrap();
    lab.fake.update(|s| s.put_node(FakeNode::not_ready("member1")));
    let plan = lab.plan().await;
    assert_eq!(plan.len(), 1, "{plan:#?}");
    assert!(plan[0].starts_with("microk8s.member1 update: nodes not Ready (seen through "), "{plan:#?}");
    assert!(plan[0].contains("member1 (KubeletNotReady: container runtime network not ready"), "{plan:#?}");
}

#[tokio::test]
async fn an_api_that_does_not_answer_through_the_file_is_reported_on_the_kubeconfig() {
    let lab = Lab::new(FakeNode::ready("member1")).await;
    lab.provider().apply(&lab.action().await.unwrap(), &ActionLog::discard()).await.unwrap();
    let server = format!("https://127.0.0.1:{}", lab.port());
    // The proxy is gone: nothing listens on the port any more, while MicroK8s inside runs.
    let Lab { _dir, dir, config, runner, containers, fake, .. } = lab;
    drop(fake);
    let p = provider(&runner, &containers, &config, &dir)
        .with_observe_api_timeout(Duration::from_secs(1))
        .with_ready_timeout(Duration::from_secs(1))
        .with_poll_interval(Duration::from_millis(100));
    let desired = testbed_plan::desired::build(&config, &Default::default());
    let state = observed_with_the_rest(&p, &desired).await;
    assert_eq!(state.get(&addr("microk8s.member1")).unwrap().health, Health::Ok);
    let o = state.get(&addr("kubeconfig.member1")).unwrap();
    let Health::NeedsRepair(why) = &o.health else { panic!("{o:?}") };
    assert!(why.contains(&format!("the Kubernetes API at {server} is unreachable")), "{why}");
    assert!(why.ends_with("will be rewritten from microk8s config and checked again"), "{why}");

    let plan = testbed_plan::plan(&desired, &state).unwrap();
    let update = plan.actions().into_iter().find(|a| a.kind == Kind::Kubeconfig).unwrap().clone();
    assert_eq!(update.op, Op::Update);
    let e = p.apply(&update, &ActionLog::discard()).await.unwrap_err();
    assert!(
        e.report().to_string().starts_with(&format!("member1: the API did not answer through {server} within 1 s")),
        "{e}",
        e = e.report()
    );
    assert!(e.hint().unwrap().contains("proxy.member1.api"), "{e:?}");
}

#[tokio::test]
async fn a_file_testbed_did_not_write_is_never_overwritten() {
    let lab = Lab::new(FakeNode::ready("member1")).await;
    std::fs::create_dir_all(lab.people().parent().unwrap()).unwrap();
    let mine = "apiVersion: v1\nkind: Config\nclusters: []\n# my own notes\n";
    std::fs::write(lab.people(), mine).unwrap();

    let desired = testbed_plan::desired::build(&lab.config, &Default::default());
    let state = observed_with_the_rest(&lab.provider(), &desired).await;
    let o = state.get(&addr("kubeconfig.member1")).unwrap();
    assert!(matches!(&o.owner, Owner::Other(w) if w.contains("testbed did not write (no marker line)")), "{o:?}");
    let Err(PlanError::Conflicts(conflicts)) = testbed_plan::plan(&desired, &state) else { panic!("a conflict") };
    assert_eq!(conflicts[0].address, addr("kubeconfig.member1"));

    // Asked anyway, apply refuses before it runs anything.
    let r = desired.resources[&addr("kubeconfig.member1")].clone();
    let create = Action {
        address: r.address.clone(),
        kind: Kind::Kubeconfig,
        member: r.member.clone(),
        op: Op::Update,
        reason: String::new(),
        changes: vec![],
        desired: Some(r),
        observed: Some(o.clone()),
        cascade: None,
        replace: false,
    };
    let e = lab.provider().apply(&create, &ActionLog::discard()).await.unwrap_err();
    assert!(e.kind() == ErrorKind::Precondition, "{e:?}");
    assert!(
        e.report().to_string().starts_with(&format!("refusing to overwrite {}", lab.people().display())),
        "{e}",
        e = e.report()
    );
    assert_eq!(std::fs::read_to_string(lab.people()).unwrap(), mine);
    assert!(!lab.runner.transcript().iter().any(|l| l.contains("microk8s config")));

    // Once the user moves it away, a later apply converges.
    std::fs::remove_file(lab.people()).unwrap();
    let create = lab.action().await.unwrap();
    lab.provider().apply(&create, &ActionLog::discard()).await.unwrap();
    assert_eq!(lab.plan().await, Vec::<String>::new());
}

#[tokio::test]
async fn credentials_stay_out_of_logs_errors_and_debug_output() {
    // A client certificate this time, as MicroK8s' install hook writes it (client-certificate-data and
    // client-key-data): first one the API's CA signed, then one from another CA, which the API refuses.
    let lab = Lab::new(FakeNode::ready("member1")).await;
    let create = lab.action().await.unwrap();
    let other = FakeTls::generate("another-cluster");
    for (cert, key, works) in [
        (&lab.tls.client_cert_pem, &lab.tls.client_key_pem, true),
        (&other.client_cert_pem, &other.client_key_pem, false),
    ] {
        let admin = admin_kubeconfig(&lab.tls.ca_pem, "https://10.123.45.10:16443", &cert_user(cert, key));
        lab.runner.on_at(member1(), &["microk8s", "config"], Reply::ok(&admin));
        let (log, seen) = capture();
        let result = lab.provider().apply(&create, &log).await;
        assert_eq!(result.is_ok(), works, "{result:?}");
        let key_b64 = admin.lines().find_map(|l| l.trim().strip_prefix("client-key-data: ")).unwrap().to_owned();
        let key_line = key.lines().nth(1).unwrap().to_owned();
        assert!(std::fs::read_to_string(lab.people()).unwrap().contains(&key_b64), "the file has the key");
        let mut shown = vec![seen.text(), format!("{:?}", lab.provider())];
        if let Err(e) = &result {
            assert!(e.report().to_string().starts_with("member1: "), "{e}", e = e.report());
            shown.extend([e.report().to_string(), format!("{e:?}"), e.hint().unwrap_or_default().to_owned()]);
        }
        for text in shown {
            assert!(!text.contains(&key_b64) && !text.contains(&key_line), "{text}");
        }
    }

    // `microk8s config` that fails after printing part of the credentials: the error quotes stderr only.
    lab.runner.on_at(
        member1(),
        &["microk8s", "config"],
        Reply::Output(testbed_command::Output {
            code: 1,
            stdout: format!("users:\n- name: admin\n  user:\n    token: {TOKEN}\n"),
            stderr: "Insufficient permissions to access MicroK8s.\n".into(),
        }),
    );
    let (log, seen) = capture();
    let e = lab.provider().apply(&create, &log).await.unwrap_err();
    assert!(
        e.report().to_string().ends_with("failed (exit code 1): Insufficient permissions to access MicroK8s."),
        "{e}",
        e = e.report()
    );
    assert!(
        !e.report().to_string().contains(TOKEN) && !seen.text().contains(TOKEN),
        "{e} {}",
        seen.text(),
        e = e.report()
    );

    // Garbage: described by size, never quoted.
    lab.runner.on_at(member1(), &["microk8s", "config"], Reply::ok(&format!("token: {TOKEN}\n  : [")));
    let e = lab.provider().apply(&create, &ActionLog::discard()).await.unwrap_err();
    assert!(e.report().to_string().contains("is not a kubeconfig"), "{e}", e = e.report());
    assert!(!e.report().to_string().contains(TOKEN), "{e}", e = e.report());
}

#[tokio::test]
async fn files_of_a_member_no_longer_in_the_file_are_found_and_removed() {
    let lab = Lab::new(FakeNode::ready("member1")).await;
    lab.provider().apply(&lab.action().await.unwrap(), &ActionLog::discard()).await.unwrap();
    // member1 leaves the file; someone's own file sits next to testbed's.
    let theirs = lab.dir.join("kubeconfigs/prod.config");
    std::fs::write(&theirs, "apiVersion: v1\nkind: Config\n").unwrap();
    let without = config(&lab.dir, &[], "");
    let desired = testbed_plan::desired::build(&without, &Default::default());
    let p = provider(&lab.runner, &lab.containers, &without, &lab.dir);
    let state = observed_with_the_rest(&p, &desired).await;
    let o = state.get(&addr("kubeconfig.member1")).expect("the orphan is observed");
    assert_eq!(o.owner, Owner::Testbed);
    assert!(state.get(&addr("kubeconfig.prod")).is_none());
    let plan = testbed_plan::plan(&desired, &state).unwrap();
    let delete = plan.actions().into_iter().find(|a| a.kind == Kind::Kubeconfig).unwrap().clone();
    assert_eq!(delete.op, Op::Delete);
    p.apply(&delete, &ActionLog::discard()).await.unwrap();
    assert!(!lab.people().exists() && !lab.karmada().exists());
    assert!(theirs.exists());
}
