//! The real Karmada layer against two fake API servers (the host MicroK8s and the Karmada API) and a
//! scripted karmadactl: what a user would notice in the plan, the commands, the log and the errors.

mod support;

use std::sync::Arc;
use std::time::Duration;

use support::*;
use testbed_command::{Output, Reply};
use testbed_karmada::OWNER_LABEL;
use testbed_kube::fake::{unused_url, FakeCluster, FakeDeployment, FakeKube, FakeNamespace, FakeState, FakeTls};
use testbed_kube::KARMADA_NAMESPACE;
use testbed_plan::{Address, Health, Kind, Op, Owner, PlanError};
use testbed_provider::{ErrorKind, Provider, Providers};

fn karmada_with(clusters: Vec<FakeCluster>) -> FakeState {
    let mut s = FakeState::karmada_apiserver();
    for c in clusters {
        s.put_cluster(c);
    }
    s
}

#[tokio::test]
async fn a_fresh_machine_has_no_control_plane_and_no_memberships() {
    let lab = Lab::start(FakeState::host_cluster(), FakeState::karmada_apiserver()).await;
    std::fs::remove_file(lab.karmada_kubeconfig()).unwrap();
    let config = lab.config(&[MEMBER1, MEMBER2]);
    let provider = lab.provider(&config);

    let observed = lab.observe(&provider, &config).await.expect("a fresh machine is not an error");
    assert!(observed.resources.is_empty(), "{observed:?}");
    let plan = lab.plan(&provider, &config).await.unwrap();
    assert_eq!(
        lines(&plan),
        ["create karmada.control_plane", "create karmada_member.member1", "create karmada_member.member2"]
    );

    // Not even the host MicroK8s yet: the same.
    std::fs::remove_file(lab.host_kubeconfig()).unwrap();
    assert!(lab.observe(&provider, &config).await.unwrap().resources.is_empty());
    assert!(lab.runner.calls().is_empty(), "observation runs no command");
}

#[tokio::test]
async fn a_converged_machine_plans_no_changes() {
    let lab = Lab::start(host_with_testbed_karmada(), karmada_with(vec![joined(&MEMBER1), joined(&MEMBER2)])).await;
    let config = lab.config(&[MEMBER1, MEMBER2]);
    let provider = lab.provider(&config);

    let observed = lab.observe(&provider, &config).await.unwrap();
    let cp = observed.get(&Address::new(Kind::KarmadaControlPlane, &["control_plane"])).expect("the control plane");
    assert_eq!(cp.owner, Owner::Testbed);
    assert_eq!(cp.health, Health::Ok);
    let desired = karmada_desired(&config, &observed);
    let wanted_cp = desired.resources.values().find(|r| r.name == "control_plane").unwrap();
    assert_eq!(cp.spec, wanted_cp.spec, "every key of the control plane is read back as the file wants it");
    let m2 = observed.get(&Address::new(Kind::KarmadaMember, &["member2"])).unwrap();
    assert_eq!(m2.spec.get("mode").map(String::as_str), Some("push"));
    assert_eq!(m2.spec.get("api_endpoint").map(String::as_str), Some("https://127.0.0.12:16443"));

    let plan = lab.plan(&provider, &config).await.unwrap();
    assert!(plan.is_empty(), "No changes expected, got {:?}", lines(&plan));
    assert!(lab.runner.calls().is_empty());
}

#[tokio::test]
async fn a_cluster_that_is_not_ready_needs_repair_with_karmadas_reason() {
    let not_ready =
        FakeCluster { api_endpoint: "https://127.0.0.12:16443".into(), ..FakeCluster::not_reachable("member2") }
            .label(OWNER_LABEL, TESTBED);
    let lab = Lab::start(host_with_testbed_karmada(), karmada_with(vec![joined(&MEMBER1), not_ready])).await;
    let config = lab.config(&[MEMBER1, MEMBER2]);
    let provider = lab.provider(&config);

    let plan = lab.plan(&provider, &config).await.unwrap();
    let acts = actions(&plan);
    assert_eq!(lines(&plan), ["update karmada_member.member2"]);
    assert_eq!(acts[0].reason, "cluster member2 is not Ready (ClusterNotReachable: cluster is not reachable)");

    // Unknown (the controller lost contact) is also a repair, and says so.
    lab.karmada.update(|s| {
        let c = s.cluster_mut("member2").unwrap();
        c.ready =
            Some((testbed_kube::ConditionStatus::Unknown, "ClusterStatusUnknown".into(), "no status for 40s".into()));
    });
    let plan = lab.plan(&provider, &config).await.unwrap();
    assert_eq!(
        actions(&plan)[0].reason,
        "cluster member2 is in an unknown state (ClusterStatusUnknown: no status for 40s)"
    );
}

#[tokio::test]
async fn a_missing_cluster_is_created_and_a_moved_endpoint_is_updated() {
    let moved = FakeCluster { api_endpoint: "https://127.0.0.99:16443".into(), ..FakeCluster::ready("member1") }
        .label(OWNER_LABEL, TESTBED);
    let lab = Lab::start(host_with_testbed_karmada(), karmada_with(vec![moved])).await;
    let config = lab.config(&[MEMBER1, MEMBER2]);
    let provider = lab.provider(&config);

    let plan = lab.plan(&provider, &config).await.unwrap();
    assert_eq!(lines(&plan), ["update karmada_member.member1", "create karmada_member.member2"]);
    assert_eq!(actions(&plan)[0].reason, "api_endpoint: \"https://127.0.0.99:16443\" → \"https://127.0.0.11:16443\"");

    // Applying the update patches spec.apiEndpoint and waits for Ready; nothing is run.
    provider.apply(actions(&plan)[0], &lab.action_log()).await.unwrap();
    assert_eq!(lab.karmada.state().cluster_mut("member1").unwrap().api_endpoint, "https://127.0.0.11:16443");
    assert!(lab.runner.calls().is_empty());
    assert!(lab
        .karmada
        .requests()
        .iter()
        .any(|r| r.starts_with("PATCH /apis/cluster.karmada.io/v1alpha1/clusters/member1")));
}

#[tokio::test]
async fn an_unreachable_karmada_api_and_a_tls_failure_cannot_be_observed_and_say_why() {
    let lab = Lab::start(host_with_testbed_karmada(), FakeState::karmada_apiserver()).await;
    let config = lab.config(&[MEMBER1]);
    let provider = lab.provider(&config);

    // Nothing listens where the kubeconfig points.
    let nowhere = unused_url().await.unwrap();
    lab.write_karmada_kubeconfig(nowhere.url(), None);
    let unreachable = lab.observe(&provider, &config).await.unwrap_err();
    assert_eq!(unreachable.kind(), ErrorKind::StateUnknown, "{unreachable:?}");
    let (message, hint) = (&unreachable.report().to_string(), unreachable.hint());
    assert!(
        message.starts_with("the Karmada API could not be read: the Kubernetes API at http://127.0.0.1:"),
        "{message}"
    );
    assert!(message.contains("is unreachable: the connection was refused"), "{message}");
    let hint = hint.unwrap();
    assert!(hint.contains("karmada-system/karmada-apiserver (port 32443)"), "{hint}");
    assert!(
        hint.contains(&format!(
            "kubectl --kubeconfig {} -n karmada-system get pods,svc",
            lab.host_kubeconfig().display()
        )),
        "{hint}"
    );

    // A server whose certificate another CA signed (a kubeconfig from an earlier init).
    let tls = FakeTls::generate("karmada-ca");
    let other = FakeTls::generate("an-earlier-karmada-ca");
    let served = FakeKube::start_tls(FakeState::karmada_apiserver(), &tls).await.unwrap();
    let ca_file = lab.dir.path().join("old-ca.crt");
    std::fs::write(&ca_file, &other.ca_pem).unwrap();
    lab.write_karmada_kubeconfig(served.url(), Some(&ca_file.display().to_string()));
    let tls_error = lab.observe(&provider, &config).await.unwrap_err();
    assert_eq!(tls_error.kind(), ErrorKind::StateUnknown, "{tls_error:?}");
    let (tls_message, tls_hint) = (&tls_error.report().to_string(), tls_error.hint());
    assert!(tls_message.contains("TLS with the Kubernetes API at https://127.0.0.1:"), "{tls_message}");
    assert!(tls_message.contains("not signed by the configured CA"), "{tls_message}");
    assert!(tls_hint.unwrap().contains("karmadactl init makes a new CA each time"), "{tls_hint:?}");
    assert_ne!(message, tls_message);

    // Through the providers, the planner says the layer could not be observed.
    let providers = Providers::new().with(Arc::new(provider));
    let desired = karmada_desired(&config, &Default::default());
    let wanted: Vec<_> = desired.resources.values().cloned().collect();
    let observed = providers.observe(&wanted).await;
    let plan = testbed_plan::plan(&desired, &observed).unwrap();
    assert!(plan.is_empty(), "no second init or join while Karmada cannot be read: {:?}", lines(&plan));
    assert!(
        plan.notes
            .iter()
            .any(|n| n.starts_with("karmada could not be observed (the Karmada API could not be read: TLS")),
        "{:?}",
        plan.notes
    );
}

#[tokio::test]
async fn a_foreign_cluster_under_a_member_name_is_a_conflict_and_is_never_touched() {
    let foreign = FakeCluster::ready("member2");
    let lab = Lab::start(host_with_testbed_karmada(), karmada_with(vec![joined(&MEMBER1), foreign])).await;
    let config = lab.config(&[MEMBER1, MEMBER2]);
    let provider = lab.provider(&config);

    let err = lab.plan(&provider, &config).await.unwrap_err();
    let PlanError::Conflicts(conflicts) = &err else { panic!("{err:?}") };
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0].address.to_string(), "karmada_member.member2");
    assert_eq!(conflicts[0].found, "a cluster named member2 registered in Karmada without testbed's label");

    // Another testbed's cluster is not this one's either.
    lab.karmada.update(|s| s.put_cluster(FakeCluster::ready("member2").label(OWNER_LABEL, "other-lab")));
    let PlanError::Conflicts(conflicts) = lab.plan(&provider, &config).await.unwrap_err() else { panic!() };
    assert!(
        conflicts[0].found.contains("belongs to another testbed (label testbed/owner=other-lab)"),
        "{}",
        conflicts[0].found
    );

    // Even asked directly (defence in depth), the provider refuses to unjoin or re-point it.
    lab.karmada.update(|s| s.put_cluster(FakeCluster::ready("member2")));
    let observed = lab.observe(&provider, &config).await.unwrap();
    let o = observed.get(&Address::new(Kind::KarmadaMember, &["member2"])).unwrap().clone();
    let delete = testbed_plan::Action {
        address: o.address.clone(),
        kind: o.kind,
        member: o.member.clone(),
        op: Op::Delete,
        reason: String::new(),
        changes: vec![],
        desired: None,
        observed: Some(o.clone()),
        cascade: None,
        replace: false,
    };
    let refused = provider.apply(&delete, &lab.action_log()).await.unwrap_err();
    assert!(
        refused
            .report()
            .to_string()
            .contains("testbed will not remove a cluster named member2 registered in Karmada without testbed's label"),
        "{refused}",
        refused = refused.report()
    );
    let desired = karmada_desired(&config, &observed);
    let update = testbed_plan::Action { op: Op::Update, desired: desired.resources.get(&o.address).cloned(), ..delete };
    let refused = provider.apply(&update, &lab.action_log()).await.unwrap_err();
    assert!(refused.report().to_string().contains("testbed will not change"), "{refused}", refused = refused.report());
    assert!(lab.runner.calls().is_empty(), "no command ran");
    assert!(!lab.karmada.requests().iter().any(|r| r.starts_with("PATCH")), "nothing was patched");
    assert_eq!(
        lab.karmada.state().cluster_mut("member2").unwrap().api_endpoint,
        FakeCluster::ready("member2").api_endpoint
    );
}

#[tokio::test]
async fn push_join_end_to_end() {
    let lab = Lab::start(host_with_testbed_karmada(), karmada_with(vec![joined(&MEMBER1)])).await;
    let config = lab.config(&[MEMBER1, MEMBER2]);
    let provider = lab.provider(&config);
    // karmadactl join creates the Cluster; Karmada posts its Ready condition a little later.
    let mut fresh = FakeCluster { api_endpoint: "https://127.0.0.12:16443".into(), ..FakeCluster::ready("member2") };
    fresh.ready = None;
    lab.script_join(&MEMBER2, fresh);
    let karmada = lab.karmada.clone();
    let turns_ready = std::thread::spawn(move || {
        while karmada.state().cluster_mut("member2").is_none() {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(150));
        karmada.update(|s| {
            let c = s.cluster_mut("member2").unwrap();
            c.ready = FakeCluster::ready("member2").ready;
        });
    });

    let plan = lab.plan(&provider, &config).await.unwrap();
    assert_eq!(lines(&plan), ["create karmada_member.member2"]);
    lab.apply(&provider, &plan).await.unwrap();
    turns_ready.join().unwrap();

    let dir = lab.dir.path().display();
    assert_eq!(
        lab.runner.transcript(),
        [format!(
            "host$ karmadactl join member2 --kubeconfig {dir}/karmada/karmada-apiserver.config --cluster-kubeconfig {dir}/kubeconfigs/member2-karmada.config"
        )]
    );
    let member2 = lab.karmada.state().cluster_mut("member2").unwrap().clone();
    assert_eq!(member2.labels.get(OWNER_LABEL).map(String::as_str), Some(TESTBED), "testbed labelled its cluster");
    let logged = lab.logged();
    assert!(logged.contains("cluster(member2) is joined successfully"), "{logged}");
    assert!(logged.contains("labelled cluster member2 testbed/owner=lab"), "{logged}");
    assert!(logged.contains("cluster member2: Ready, Push mode, endpoint https://127.0.0.12:16443"), "{logged}");

    let again = lab.plan(&provider, &config).await.unwrap();
    assert!(again.is_empty(), "converged: {:?}", lines(&again));
}

/// `karmadactl token create --print-register-command` as it prints the register command.
fn script_token_create(lab: &Lab) {
    lab.runner.on(
        &["karmadactl", "token", "create"],
        Reply::ok(&format!(
            "karmadactl register 127.0.0.1:32443 --token {TOKEN} --discovery-token-ca-cert-hash {CA_HASH}\n"
        )),
    );
}

#[tokio::test]
async fn pull_register_end_to_end_keeps_the_token_secret() {
    let lab = Lab::start(host_with_testbed_karmada(), karmada_with(vec![joined(&MEMBER1)])).await;
    let pull2 = Member("member2", "127.0.0.12", "pull");
    let config = lab.config(&[MEMBER1, pull2]);
    let provider = lab.provider(&config);
    script_token_create(&lab);
    let karmada = lab.karmada.clone();
    lab.runner.on(
        &["karmadactl", "register"],
        Reply::effect(move |_, argv| {
            assert!(argv.iter().any(|a| a == TOKEN), "the program gets the real token: {argv:?}");
            karmada.update(|s| s.put_cluster(FakeCluster::ready("member2").pull()));
            Ok(Output::ok(
                "[preflight] Running pre-flight checks\n[preflight] All pre-flight checks were passed\n[karmada-agent-start] Waiting to perform the TLS Bootstrap\n[karmada-agent-start] Waiting to construct karmada-agent kubeconfig\n[karmada-agent-start] Waiting the necessary secret and RBAC\n[karmada-agent-start] Waiting karmada-agent Deployment\n\ncluster(member2) is joined successfully\n",
            ))
        }),
    );

    let plan = lab.plan(&provider, &config).await.unwrap();
    assert_eq!(lines(&plan), ["create karmada_member.member2"]);
    lab.apply(&provider, &plan).await.unwrap();

    let dir = lab.dir.path().display();
    let t = lab.runner.transcript();
    assert_eq!(t[0], format!("host$ karmadactl token create --print-register-command --kubeconfig {dir}/karmada/karmada-apiserver.config"));
    assert_eq!(
        t[1],
        format!(
            "host$ karmadactl register 127.0.0.1:32443 --token {TOKEN} --discovery-token-ca-cert-hash {CA_HASH} --kubeconfig {dir}/kubeconfigs/member2-karmada.config --cluster-name member2 --karmada-agent-image 127.0.0.1:32000/karmada-agent:v1.19.0"
        ),
        "the runner's record is what the program received"
    );
    assert_eq!(
        lab.karmada.state().cluster_mut("member2").unwrap().labels.get(OWNER_LABEL).map(String::as_str),
        Some(TESTBED)
    );

    // register waits up to 5 minutes for discovery and 5 more for the agent's rollout (karmada v1.15.9
    // pkg/karmadactl/register: DefaultDiscoveryTimeout, and its rollout wait): testbed lets it give up by
    // itself, so a slow image pull is not cut halfway with a message of testbed's.
    let limits = lab.runner.limits();
    let register = limits.iter().find(|(argv, _)| argv.get(1).map(String::as_str) == Some("register")).unwrap();
    assert!(register.1 > std::time::Duration::from_secs(600), "register is cut after {:?}", register.1);

    let logged = lab.logged();
    assert!(!logged.contains(TOKEN) && !logged.contains("0a1b2c3d4e5f6g7h"), "the token reached the log: {logged}");
    assert!(logged.contains("--token <secret:join-token>"), "{logged}");
    assert!(logged.contains(CA_HASH), "the CA hash is not secret: {logged}");
    assert!(!format!("{provider:?}").contains(TOKEN));
    let again = lab.plan(&provider, &config).await.unwrap();
    assert!(again.is_empty(), "converged: {:?}", lines(&again));

    // A register that fails quoting the token: the error does not carry it.
    lab.karmada.update(|s| s.remove_cluster("member2"));
    lab.runner.on(
        &["karmadactl", "register"],
        Reply::exit(1, &format!("error: token id \"k3x9q2\" is invalid for this cluster or it has expired ({TOKEN})")),
    );
    let plan = lab.plan(&provider, &config).await.unwrap();
    let err = lab.apply(&provider, &plan).await.unwrap_err();
    let shown = format!("{} {err:?} {:?}", err.report(), err.hint());
    assert!(!shown.contains("0a1b2c3d4e5f6g7h"), "{shown}");
    assert!(
        err.report().to_string().starts_with("karmada_member.member2: `karmadactl register"),
        "{err}",
        err = err.report()
    );
    assert!(err.hint().unwrap().contains("the next apply creates a new one"), "{:?}", err.hint());
    assert!(!lab.logged().contains("0a1b2c3d4e5f6g7h"));
}

/// real-tools.md behaviour 4: register's failed pre-flight prints "Some fatal errors occurred" and exits 0.
#[tokio::test]
async fn a_register_whose_preflight_failed_is_a_failure_although_it_exited_0() {
    let lab = Lab::start(host_with_testbed_karmada(), karmada_with(vec![])).await;
    let pull1 = Member("member1", "127.0.0.11", "pull");
    let config = lab.config(&[pull1]);
    let provider = lab.provider(&config).with_wait(Duration::from_millis(300), Duration::from_millis(20));
    script_token_create(&lab);
    // karmada v1.15.9 register.go: the pre-flight's errors are printed, then the command returns nil.
    lab.runner.on(
        &["karmadactl", "register"],
        Reply::ok("[preflight] Running pre-flight checks\nerror execution phase preflight: [preflight] Some fatal errors occurred:\n\t[ERROR]: karmada-system/karmada-kubeconfig already exists\n"),
    );
    let plan = lab.plan(&provider, &config).await.unwrap();
    let err = lab.apply(&provider, &plan).await.unwrap_err();
    assert!(err.report().to_string().contains("exited 0 but its pre-flight failed"), "{err}", err = err.report());
    assert!(err.report().to_string().contains("karmada-kubeconfig already exists"), "{err}", err = err.report());
    assert!(lab.karmada.state().cluster_mut("member1").is_none());
}

/// real-tools.md behaviour 6: `karmadactl unregister` deletes /etc/karmada/pki/ca.crt where it runs: on the
/// host that is the control plane's CA (here the lab's data directory stands for /etc/karmada).
#[tokio::test]
async fn unregister_leaves_the_control_planes_ca_in_place() {
    use std::os::unix::fs::PermissionsExt;
    let lab = Lab::start(
        host_with_testbed_karmada(),
        karmada_with(vec![FakeCluster::ready("member1").pull().label(OWNER_LABEL, TESTBED)]),
    )
    .await;
    let config = lab.config(&[]);
    let provider = lab.provider(&config);
    let ca = lab.karmada_kubeconfig().parent().unwrap().join("pki").join("ca.crt");
    std::fs::create_dir_all(ca.parent().unwrap()).unwrap();
    std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\ninit's CA\n-----END CERTIFICATE-----\n").unwrap();
    std::fs::set_permissions(&ca, std::fs::Permissions::from_mode(0o644)).unwrap();
    let karmada = lab.karmada.clone();
    let deleted = ca.clone();
    lab.runner.on(
        &["karmadactl", "unregister"],
        Reply::effect(move |_, _| {
            let _ = std::fs::remove_file(&deleted);
            karmada.update(|s| s.remove_cluster("member1"));
            Ok(Output::ok("cluster \"member1\" is unregistered\n"))
        }),
    );
    let plan = lab.plan(&provider, &config).await.unwrap();
    assert_eq!(lines(&plan), ["delete karmada_member.member1"]);
    lab.apply(&provider, &plan).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(&ca).unwrap(),
        "-----BEGIN CERTIFICATE-----\ninit's CA\n-----END CERTIFICATE-----\n"
    );
    assert_eq!(std::fs::metadata(&ca).unwrap().permissions().mode() & 0o777, 0o644);
    assert!(lab.logged().contains("restored"), "{}", lab.logged());
}

/// real-tools.md behaviour 3: the agent creates its Cluster some time after register returned; testbed
/// waits for it (bounded) before labelling it.
#[tokio::test]
async fn a_pull_member_is_labelled_once_its_agent_has_created_the_cluster() {
    let lab = Lab::start(host_with_testbed_karmada(), karmada_with(vec![])).await;
    let pull1 = Member("member1", "127.0.0.11", "pull");
    let config = lab.config(&[pull1]);
    let provider = lab.provider(&config).with_wait(Duration::from_secs(5), Duration::from_millis(20));
    script_token_create(&lab);
    let karmada = lab.karmada.clone();
    lab.runner.on(
        &["karmadactl", "register"],
        Reply::effect(move |_, _| {
            let karmada = karmada.clone();
            // The agent starts, then registers its cluster.
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(200));
                karmada.update(|s| s.put_cluster(FakeCluster::ready("member1").pull()));
            });
            Ok(Output::ok("cluster(member1) is joined successfully\n"))
        }),
    );
    let plan = lab.plan(&provider, &config).await.unwrap();
    lab.apply(&provider, &plan).await.unwrap();
    let labels = lab.karmada.state().cluster_mut("member1").map(|c| c.labels.clone()).unwrap_or_default();
    assert_eq!(labels.get(OWNER_LABEL).map(String::as_str), Some(TESTBED));
}

#[tokio::test]
async fn a_join_that_does_not_turn_ready_fails_with_what_to_check_then_a_later_apply_converges() {
    let lab = Lab::start(host_with_testbed_karmada(), karmada_with(vec![joined(&MEMBER1)])).await;
    let config = lab.config(&[MEMBER1, MEMBER2]);
    let provider = lab.provider(&config).with_wait(Duration::from_millis(300), Duration::from_millis(20));
    let unreachable =
        FakeCluster { api_endpoint: "https://127.0.0.12:16443".into(), ..FakeCluster::not_reachable("member2") };
    lab.script_join(&MEMBER2, unreachable);

    let plan = lab.plan(&provider, &config).await.unwrap();
    let err = lab.apply(&provider, &plan).await.unwrap_err();
    assert_eq!(
        err.report().to_string(),
        "karmada_member.member2: member2 did not turn Ready within 300 ms: cluster member2: NotReady (ClusterNotReachable: cluster is not reachable), Push mode, endpoint https://127.0.0.12:16443, Kubernetes v1.32.3, taint cluster.karmada.io/unreachable:NoSchedule"
    );
    let hint = err.hint().unwrap();
    assert!(
        hint.starts_with("karmada-controller-manager dials https://127.0.0.12:16443 from a pod on the host cluster"),
        "{hint}"
    );
    assert!(
        hint.contains(&format!("kubectl --kubeconfig {} get clusters", lab.karmada_kubeconfig().display())),
        "{hint}"
    );
    assert!(hint.contains("logs deploy/karmada-controller-manager"), "{hint}");
    assert!(hint.contains("curl -k https://127.0.0.12:16443/livez"), "{hint}");

    // The cluster carries testbed's label, so the next plan repairs it instead of calling it foreign.
    let plan = lab.plan(&provider, &config).await.unwrap();
    assert_eq!(lines(&plan), ["update karmada_member.member2"]);
    assert_eq!(
        actions(&plan)[0].reason,
        "cluster member2 is not Ready (ClusterNotReachable: cluster is not reachable)"
    );

    // The user fixes the network; the next apply waits for Ready and converges without joining again.
    let karmada = lab.karmada.clone();
    let fixed = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        karmada.update(|s| {
            let c = s.cluster_mut("member2").unwrap();
            c.ready = FakeCluster::ready("member2").ready;
            c.taints.clear();
        });
    });
    lab.apply(&provider, &plan).await.unwrap();
    fixed.join().unwrap();
    assert_eq!(lab.runner.transcript().len(), 1, "one join only: {:?}", lab.runner.transcript());
    let again = lab.plan(&provider, &config).await.unwrap();
    assert!(again.is_empty(), "converged: {:?}", lines(&again));
}

#[tokio::test]
async fn removing_a_member_unjoins_only_that_member() {
    let someone_elses = FakeCluster::ready("member3");
    let lab =
        Lab::start(host_with_testbed_karmada(), karmada_with(vec![joined(&MEMBER1), joined(&MEMBER2), someone_elses]))
            .await;
    let config = lab.config(&[MEMBER1]);
    let provider = lab.provider(&config);
    lab.script_unjoin("member2");

    let plan = lab.plan(&provider, &config).await.unwrap();
    assert_eq!(lines(&plan), ["delete karmada_member.member2"], "member3 is not testbed's: not even shown");
    lab.apply(&provider, &plan).await.unwrap();

    let dir = lab.dir.path().display();
    assert_eq!(
        lab.runner.transcript(),
        [format!(
            "host$ karmadactl unjoin member2 --kubeconfig {dir}/karmada/karmada-apiserver.config --cluster-kubeconfig {dir}/kubeconfigs/member2-karmada.config --wait 60s"
        )]
    );
    let left: Vec<String> = lab.karmada.state().clusters.iter().map(|c| c.name.clone()).collect();
    assert_eq!(left, ["member1", "member3"]);
    assert!(lab.plan(&provider, &config).await.unwrap().is_empty());
}

#[tokio::test]
async fn init_labels_the_namespace_and_destroy_deinits_only_testbeds_control_plane() {
    let lab = Lab::start(FakeState::host_cluster(), FakeState::karmada_apiserver()).await;
    std::fs::remove_file(lab.karmada_kubeconfig()).unwrap();
    let config = lab.config(&[]);
    let provider = lab.provider(&config);
    // karmadactl init installs the control plane on the host and writes the Karmada kubeconfig.
    let (host, karmada_url, kubeconfig) = (lab.host.clone(), lab.karmada.url().to_owned(), lab.karmada_kubeconfig());
    lab.runner.on(
        &["karmadactl", "init"],
        Reply::effect(move |_, _| {
            host.update(|s| *s = FakeState::host_with_karmada());
            std::fs::write(&kubeconfig, kubeconfig_yaml(&karmada_url, None)).unwrap();
            Ok(Output::ok("Karmada is installed successfully.\n"))
        }),
    );
    let plan = lab.plan(&provider, &config).await.unwrap();
    assert_eq!(lines(&plan), ["create karmada.control_plane"]);
    lab.apply(&provider, &plan).await.unwrap();
    let dir = lab.dir.path().display();
    assert_eq!(
        lab.runner.transcript(),
        [format!("host$ mkdir -p {dir}/downloads"), format!(
            "host$ karmadactl init --kubeconfig /var/snap/microk8s/current/credentials/client.config --private-image-registry localhost:32000 --karmada-controller-manager-image localhost:32000/karmada-controller-manager:v1.19.0 --karmada-scheduler-image localhost:32000/karmada-scheduler:v1.19.0 --karmada-webhook-image localhost:32000/karmada-webhook:v1.19.0 --karmada-aggregated-apiserver-image localhost:32000/karmada-aggregated-apiserver:v1.19.0 --karmada-apiserver-image localhost:32000/kube-apiserver:v1.36.2 --karmada-kube-controller-manager-image localhost:32000/kube-controller-manager:v1.36.2 --etcd-image localhost:32000/etcd:3.6.8-0 --crds {dir}/downloads/karmada-crds-v1.19.0.tar.gz --port 32443 --karmada-data {dir}/karmada --karmada-pki {dir}/karmada/pki --karmada-apiserver-advertise-address 127.0.0.1 --cert-external-ip 127.0.0.1 --wait-component-ready-timeout 300"
        )]
    );
    let ns = lab.host.state().namespaces.into_iter().find(|n| n.name == KARMADA_NAMESPACE).unwrap();
    assert_eq!(ns.labels.get(OWNER_LABEL).map(String::as_str), Some(TESTBED));
    assert!(lab.plan(&provider, &config).await.unwrap().is_empty(), "converged after init");

    // destroy: deinit runs for testbed's control plane.
    let host = lab.host.clone();
    lab.runner.on(
        &["karmadactl", "deinit"],
        Reply::effect(move |_, _| {
            host.update(FakeState::remove_karmada);
            Ok(Output::ok(""))
        }),
    );
    lab.runner.on(&["rm", "-rf"], Reply::ok(""));
    let observed = lab.observe(&provider, &config).await.unwrap();
    let destroy = testbed_plan::plan(&testbed_plan::DesiredState::nothing(), &observed).unwrap();
    assert_eq!(lines(&destroy), ["delete karmada.control_plane"]);
    lab.apply(&provider, &destroy).await.unwrap();
    // deinit keeps etcd's data (real-tools.md behaviour 7): testbed removes it after its own deinit.
    let t = lab.runner.transcript();
    assert_eq!(
        t[t.len() - 3..],
        [
            "host$ karmadactl deinit --kubeconfig /var/snap/microk8s/current/credentials/client.config --purge-namespace -f".to_owned(),
            "host$ rm -rf -- /var/lib/karmada-etcd".to_owned(),
            format!("host$ rm -rf -- {}", lab.data_dir().display()),
        ]
    );
    // The kubeconfig deinit leaves behind does not make a control plane appear.
    assert!(lab.karmada_kubeconfig().exists());
    assert!(lab.observe(&provider, &config).await.unwrap().resources.is_empty());

    // Someone else's control plane: a conflict, and deinit refuses.
    lab.host.update(|s| {
        *s = FakeState::host_with_karmada();
        s.put_namespace(FakeNamespace::new(KARMADA_NAMESPACE));
    });
    let PlanError::Conflicts(c) = lab.plan(&provider, &config).await.unwrap_err() else { panic!() };
    assert_eq!(
        c[0].found,
        "a Karmada control plane on the host cluster without testbed's label on the karmada-system namespace"
    );
    let refused = lab.apply(&provider, &destroy).await.unwrap_err();
    assert!(refused.report().to_string().contains("testbed will not deinit"), "{refused}", refused = refused.report());
    assert_eq!(lab.runner.transcript().len(), 5, "no second deinit, and the etcd data left alone");
}

#[tokio::test]
async fn an_unhealthy_control_plane_is_repaired_by_waiting_and_the_wait_says_what_it_waited_for() {
    let mut host = host_with_testbed_karmada();
    host.put_deployment(FakeDeployment::unavailable(KARMADA_NAMESPACE, "karmada-scheduler"));
    let lab = Lab::start(host, karmada_with(vec![joined(&MEMBER1)])).await;
    let config = lab.config(&[MEMBER1]);
    let provider = lab.provider(&config).with_wait(Duration::from_millis(200), Duration::from_millis(20));

    let plan = lab.plan(&provider, &config).await.unwrap();
    assert_eq!(lines(&plan), ["update karmada.control_plane"]);
    assert!(
        actions(&plan)[0].reason.contains("karmada-scheduler: not available (0/1 replicas available"),
        "{}",
        actions(&plan)[0].reason
    );
    let err = lab.apply(&provider, &plan).await.unwrap_err();
    assert!(err.report().to_string().starts_with("karmada.control_plane: the Karmada control plane's Deployments in karmada-system were not all available within 200 ms"), "{err}", err = err.report());
    assert!(err.hint().unwrap().contains("-n karmada-system get pods"), "{:?}", err.hint());
    assert!(lab.runner.calls().is_empty(), "no deinit, no init: {:?}", lab.runner.transcript());
}

#[tokio::test]
async fn an_init_that_fails_half_way_is_labelled_and_repaired_but_a_foreign_leftover_is_not() {
    let lab = Lab::start(FakeState::host_cluster(), FakeState::karmada_apiserver()).await;
    std::fs::remove_file(lab.karmada_kubeconfig()).unwrap();
    let config = lab.config(&[]);
    let provider = lab.provider(&config).with_wait(Duration::from_millis(200), Duration::from_millis(20));
    // init creates everything, then gives up waiting for karmada-scheduler, whose image cannot be pulled.
    let (host, karmada_url, kubeconfig) = (lab.host.clone(), lab.karmada.url().to_owned(), lab.karmada_kubeconfig());
    lab.runner.on(
        &["karmadactl", "init"],
        Reply::effect(move |_, _| {
            host.update(|s| {
                *s = FakeState::host_with_karmada();
                s.put_deployment(FakeDeployment::unavailable(KARMADA_NAMESPACE, "karmada-scheduler"));
            });
            std::fs::write(&kubeconfig, kubeconfig_yaml(&karmada_url, None)).unwrap();
            Ok(Output::failed(
                1,
                "I1121 08:00:00.000000 init.go:100] wait for Deployment karmada-scheduler\nerror: context deadline exceeded",
            ))
        }),
    );
    let plan = lab.plan(&provider, &config).await.unwrap();
    let err = lab.apply(&provider, &plan).await.unwrap_err();
    assert!(
        err.report().to_string().starts_with("karmada.control_plane: `karmadactl init"),
        "{err}",
        err = err.report()
    );
    assert!(
        err.report().to_string().ends_with("failed (exit code 1): error: context deadline exceeded"),
        "{err}",
        err = err.report()
    );
    assert!(err.hint().unwrap().contains("an image could not be pulled from the local registry"), "{:?}", err.hint());
    let ns = lab.host.state().namespaces.into_iter().find(|n| n.name == KARMADA_NAMESPACE).unwrap();
    assert_eq!(ns.labels.get(OWNER_LABEL).map(String::as_str), Some(TESTBED), "labelled although init failed");
    let plan = lab.plan(&provider, &config).await.unwrap();
    assert_eq!(lines(&plan), ["update karmada.control_plane"], "repaired, not a conflict");

    // A karmada-system namespace someone else left (no control plane in it): init fails, nothing is labelled.
    lab.host.update(|s| {
        *s = FakeState::host_cluster();
        s.put_namespace(FakeNamespace::new(KARMADA_NAMESPACE));
    });
    std::fs::remove_file(lab.karmada_kubeconfig()).unwrap();
    lab.runner.on(&["karmadactl", "init"], Reply::exit(1, "error: namespaces \"karmada-system\" already exists"));
    let plan = lab.plan(&provider, &config).await.unwrap();
    assert_eq!(lines(&plan), ["create karmada.control_plane"]);
    lab.apply(&provider, &plan).await.unwrap_err();
    let ns = lab.host.state().namespaces.into_iter().find(|n| n.name == KARMADA_NAMESPACE).unwrap();
    assert!(ns.labels.is_empty(), "someone else's namespace was labelled: {:?}", ns.labels);
}
