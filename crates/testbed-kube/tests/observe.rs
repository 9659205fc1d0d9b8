//! The observation code against the in-process fake Kubernetes API: real-shaped answers, real HTTP and
//! TLS, a real client (`kube`).

use std::time::Duration;

use base64::Engine as _;
use testbed_kube::fake::{
    unused_url, DroppingListener, FakeCluster, FakeDeployment, FakeFailure, FakeKube, FakeNode, FakeState, FakeTls,
    SilentListener,
};
use testbed_kube::{
    cluster, clusters, control_plane, describe_cluster, nodes_ready, server_version, ApiConfig, ConditionStatus,
    Credentials, KubeClient, KubeObserveError, SyncMode, KARMADA_NAMESPACE,
};

const TOKEN: &str = "abcdef.0123456789abcdef-very-secret-token";

fn karmada_with_members() -> FakeState {
    let mut state = FakeState::karmada_apiserver();
    state.put_cluster(FakeCluster::ready("member1").label("testbed.io/member", "member1"));
    state.put_cluster(FakeCluster::ready("member2").pull());
    state.put_cluster(FakeCluster::not_reachable("member3"));
    state
}

fn client(config: &ApiConfig) -> KubeClient {
    KubeClient::new(config).expect("client")
}

/// Asserts that neither the error's Display nor its Debug shows the token.
fn assert_no_token(error: &KubeObserveError) {
    let shown = format!("{error} // {error:?}");
    assert!(!shown.contains(TOKEN), "the token leaked: {shown}");
    assert!(!shown.contains("very-secret"), "part of the token leaked: {shown}");
}

#[tokio::test]
async fn clusters_ready_not_ready_and_missing_are_observed_exactly() {
    let fake = FakeKube::start(karmada_with_members()).await.unwrap();
    let client = client(&fake.config());

    let member1 = cluster(&client, "member1").await.unwrap().expect("member1 exists");
    assert_eq!(member1.name, "member1");
    assert!(member1.is_ready());
    assert_eq!(member1.ready_reason(), Some("ClusterReady"));
    let ready = member1.ready.as_ref().unwrap();
    assert_eq!(ready.status, ConditionStatus::True);
    assert_eq!(ready.message.as_deref(), Some("cluster is healthy and ready to accept workloads"));
    assert_eq!(ready.last_transition_time.as_deref(), Some("2026-01-05T09:01:30Z"));
    assert_eq!(member1.sync_mode, Some(SyncMode::Push));
    let fake_member1 = FakeCluster::ready("member1");
    assert_eq!(member1.api_endpoint.as_deref(), Some(fake_member1.api_endpoint.as_str()));
    assert_eq!(member1.id.as_deref(), Some(fake_member1.id.as_str()));
    assert_eq!(member1.labels.get("testbed.io/member").map(String::as_str), Some("member1"));
    assert_eq!(member1.kubernetes_version.as_deref(), Some("v1.32.3"));
    assert!(member1.taints.is_empty());
    assert!(member1.uid.is_some());

    let member2 = cluster(&client, "member2").await.unwrap().expect("member2 exists");
    assert!(member2.is_ready());
    assert_eq!(member2.sync_mode, Some(SyncMode::Pull));
    assert_eq!(member2.api_endpoint, None);

    let member3 = cluster(&client, "member3").await.unwrap().expect("member3 exists");
    assert!(!member3.is_ready());
    let ready = member3.ready.as_ref().unwrap();
    assert_eq!(ready.status, ConditionStatus::False);
    assert_eq!(ready.reason.as_deref(), Some("ClusterNotReachable"));
    assert_eq!(ready.message.as_deref(), Some("cluster is not reachable"));
    assert_eq!(member3.taints.len(), 1);
    assert_eq!(member3.taints[0].key, "cluster.karmada.io/unreachable");
    assert_eq!(member3.taints[0].effect, "NoSchedule");

    let member4 = cluster(&client, "member4").await.unwrap();
    assert_eq!(member4, None, "member4 is not registered");

    // Shown: one line each.
    assert_eq!(
        describe_cluster("member1", Some(&member1)),
        format!("cluster member1: Ready, Push mode, endpoint {}, Kubernetes v1.32.3", fake_member1.api_endpoint)
    );
    assert_eq!(describe_cluster("member2", Some(&member2)), "cluster member2: Ready, Pull mode, Kubernetes v1.32.3");
    assert_eq!(
        describe_cluster("member3", Some(&member3)),
        format!(
            "cluster member3: NotReady (ClusterNotReachable: cluster is not reachable), Push mode, endpoint {}, Kubernetes v1.32.3, taint cluster.karmada.io/unreachable:NoSchedule",
            FakeCluster::ready("member3").api_endpoint
        )
    );
    assert_eq!(describe_cluster("member4", None), "cluster member4: not registered with Karmada");

    // The list sees the same three, sorted.
    let all = clusters(&client).await.unwrap();
    let names: Vec<&str> = all.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["member1", "member2", "member3"]);
    assert_eq!(all[2], member3);

    // The client asked the documented paths.
    let requests = fake.requests();
    assert!(requests.iter().any(|r| r == "GET /apis/cluster.karmada.io/v1alpha1/clusters/member1"));
    assert!(requests.iter().any(|r| r.starts_with("GET /apis/cluster.karmada.io/v1alpha1/clusters?")
        || r == "GET /apis/cluster.karmada.io/v1alpha1/clusters"));
}

#[tokio::test]
async fn changes_in_the_served_state_are_observed() {
    let fake = FakeKube::start(karmada_with_members()).await.unwrap();
    let client = client(&fake.config());

    fake.update(|state| {
        state.put_cluster(FakeCluster::not_ready("member1"));
        state.put_cluster(FakeCluster::ready("member3"));
        state.put_cluster(FakeCluster::ready("member4"));
        state.remove_cluster("member2");
    });

    let member1 = cluster(&client, "member1").await.unwrap().unwrap();
    assert_eq!(member1.ready_reason(), Some("ClusterNotReady"));
    assert_eq!(
        member1.ready.as_ref().unwrap().message.as_deref(),
        Some("cluster is reachable but health endpoint responded without ok")
    );
    assert!(cluster(&client, "member2").await.unwrap().is_none());
    assert!(cluster(&client, "member3").await.unwrap().unwrap().is_ready());
    assert!(cluster(&client, "member4").await.unwrap().unwrap().is_ready());

    // A cluster Karmada has not posted status for yet.
    fake.update(|state| {
        let c = state.cluster_mut("member4").unwrap();
        c.ready = None;
        c.kubernetes_version = None;
    });
    let member4 = cluster(&client, "member4").await.unwrap().unwrap();
    assert!(!member4.is_ready());
    assert_eq!(member4.ready, None);
    assert!(describe_cluster("member4", Some(&member4)).starts_with("cluster member4: no Ready condition yet"));
}

#[tokio::test]
async fn asking_a_host_cluster_for_karmada_clusters_says_it_is_the_wrong_api_server() {
    let fake = FakeKube::start(FakeState::host_cluster()).await.unwrap();
    let client = client(&fake.config());

    let error = cluster(&client, "member1").await.unwrap_err();
    assert!(matches!(error, KubeObserveError::NotServed { .. }), "{error:?}");
    let shown = error.to_string();
    assert!(shown.contains(fake.url()), "{shown}");
    assert!(shown.contains("karmada-apiserver.config"), "{shown}");

    let error = clusters(&client).await.unwrap_err();
    assert!(matches!(error, KubeObserveError::NotServed { .. }), "{error:?}");
}

#[tokio::test]
async fn nodes_ready_not_ready_and_unknown() {
    let mut state = FakeState::host_cluster();
    state.put_node(FakeNode::not_ready("worker-b"));
    state.put_node(FakeNode::unknown("worker-a"));
    let fake = FakeKube::start(state).await.unwrap();
    let client = client(&fake.config());

    let report = nodes_ready(&client).await.unwrap();
    let names: Vec<&str> = report.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["host", "worker-a", "worker-b"]);
    let host = report.get("host").unwrap();
    assert!(host.is_ready());
    assert_eq!(host.ready.as_ref().unwrap().reason.as_deref(), Some("KubeletReady"));
    assert_eq!(host.kubelet_version.as_deref(), Some("v1.32.3"));
    let worker_a = report.get("worker-a").unwrap();
    assert_eq!(worker_a.ready.as_ref().unwrap().status, ConditionStatus::Unknown);
    let worker_b = report.get("worker-b").unwrap();
    assert_eq!(worker_b.ready.as_ref().unwrap().status, ConditionStatus::False);
    assert_eq!(worker_b.ready.as_ref().unwrap().reason.as_deref(), Some("KubeletNotReady"));
    assert!(!report.all_ready());
    assert_eq!(report.not_ready(), ["worker-a", "worker-b"]);
    assert_eq!(
        report.to_string(),
        "node host: Ready, kubelet v1.32.3\n\
         node worker-a: Unknown (NodeStatusUnknown: Kubelet stopped posting node status.), kubelet v1.32.3\n\
         node worker-b: NotReady (KubeletNotReady: container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized), kubelet v1.32.3"
    );

    // The node recovers; a node with no Ready condition yet is not Ready.
    fake.update(|state| {
        state.put_node(FakeNode::ready("worker-a"));
        state.put_node(FakeNode::ready("worker-b"));
    });
    assert!(nodes_ready(&client).await.unwrap().all_ready());
    fake.update(|state| state.node_mut("worker-b").unwrap().ready = None);
    let report = nodes_ready(&client).await.unwrap();
    assert_eq!(report.not_ready(), ["worker-b"]);
    assert!(report.to_string().contains("node worker-b: no Ready condition yet"));

    // No nodes at all is not "all ready".
    fake.update(|state| state.nodes.clear());
    let report = nodes_ready(&client).await.unwrap();
    assert!(!report.all_ready());
    assert_eq!(report.to_string(), "no nodes");
}

/// The answer to a plain-HTTP GET of `path`: its status line and its body.
fn raw_get(url: &str, path: &str) -> (String, String) {
    use std::io::{Read as _, Write as _};
    let authority = url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(authority).expect("connect");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n").expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read");
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    (head.lines().next().unwrap_or_default().to_owned(), body.to_owned())
}

#[tokio::test]
async fn a_failing_request_is_a_500_status_that_reaches_the_client_with_its_message() {
    let fake = FakeKube::start(FakeState::host_cluster()).await.unwrap();
    fake.fail_requests(std::sync::Arc::new(|method, path| {
        (method == "GET" && path.starts_with("/api/v1/nodes"))
            .then(|| FakeFailure::unconverted("etcdserver: request timed out (a test's fault)"))
    }));
    let client = client(&fake.config());

    let error = nodes_ready(&client).await.unwrap_err();
    assert!(matches!(error, KubeObserveError::Other { .. }), "{error:?}");
    assert!(
        error.to_string().ends_with("failed to list nodes: HTTP 500: etcdserver: request timed out (a test's fault)"),
        "{error}"
    );
    // Other requests are served as before.
    assert_eq!(server_version(&client).await.unwrap(), "v1.32.3");

    // On the wire: kube-apiserver's Status for an error its storage did not convert, without a reason.
    let url = fake.url().to_owned();
    let (status, body) = tokio::task::spawn_blocking(move || raw_get(&url, "/api/v1/nodes")).await.unwrap();
    assert!(status.starts_with("HTTP/1.1 500"), "{status}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": "etcdserver: request timed out (a test's fault)",
            "code": 500,
        })
    );
}

#[tokio::test]
async fn control_plane_available_unavailable_and_missing() {
    let fake = FakeKube::start(FakeState::host_with_karmada()).await.unwrap();
    let client = client(&fake.config());

    let report = control_plane(&client).await.unwrap();
    assert!(report.is_healthy(), "{report}");
    assert_eq!(report.components.len(), 6);
    assert!(report.components.iter().all(|c| c.present && c.available && c.available_replicas == Some(1)));
    assert_eq!(
        report.to_string(),
        "karmada-apiserver: available (1/1)\n\
         karmada-aggregated-apiserver: available (1/1)\n\
         karmada-controller-manager: available (1/1)\n\
         karmada-scheduler: available (1/1)\n\
         karmada-webhook: available (1/1)\n\
         kube-controller-manager: available (1/1)"
    );

    fake.update(|state| {
        state.put_deployment(FakeDeployment::unavailable(KARMADA_NAMESPACE, "karmada-scheduler"));
        state.remove_deployment(KARMADA_NAMESPACE, "karmada-webhook");
        // Two wanted, one available: the Available condition is False in the fake, replicas say no.
        let cm = state.deployment_mut(KARMADA_NAMESPACE, "karmada-controller-manager").unwrap();
        cm.replicas = 2;
        cm.available_replicas = 1;
        // The same name in another namespace is not the control plane.
        state.put_deployment(FakeDeployment::available("default", "karmada-webhook"));
    });
    let report = control_plane(&client).await.unwrap();
    assert!(!report.is_healthy());
    assert_eq!(report.missing(), ["karmada-webhook"]);
    assert_eq!(report.unavailable(), ["karmada-controller-manager", "karmada-scheduler"]);
    let scheduler = report.get("karmada-scheduler").unwrap();
    assert_eq!(scheduler.desired_replicas, Some(1));
    assert_eq!(scheduler.available_replicas, Some(0));
    assert_eq!(
        scheduler.to_string(),
        "karmada-scheduler: not available (0/1 replicas available; Available=False (MinimumReplicasUnavailable: Deployment does not have minimum availability.))"
    );
    assert_eq!(report.get("karmada-webhook").unwrap().to_string(), "karmada-webhook: missing");
    assert!(!report.is_absent());
}

#[tokio::test]
async fn control_plane_on_a_host_without_karmada_is_absent() {
    let fake = FakeKube::start(FakeState::host_cluster()).await.unwrap();
    let report = control_plane(&client(&fake.config())).await.unwrap();
    assert!(report.is_absent());
    assert_eq!(report.missing().len(), 6);
    assert!(!report.is_healthy());
}

#[tokio::test]
async fn server_version_comes_from_version() {
    let fake = FakeKube::start(FakeState::karmada_apiserver()).await.unwrap();
    let version = server_version(&client(&fake.config())).await.unwrap();
    assert_eq!(version, "v1.31.3");
}

#[tokio::test]
async fn an_unreachable_api_is_unreachable_and_names_the_url() {
    let nowhere = unused_url().await.unwrap();
    let url = nowhere.url().to_owned();
    let config = ApiConfig::new(url.clone()).with_credentials(Credentials::token(TOKEN));
    let client = client(&config);

    for error in [
        cluster(&client, "member1").await.unwrap_err(),
        nodes_ready(&client).await.unwrap_err(),
        control_plane(&client).await.unwrap_err(),
    ] {
        assert!(error.is_unreachable(), "{error:?}");
        assert_eq!(error.server(), url);
        let shown = error.to_string();
        assert!(shown.contains(&url), "{shown}");
        assert!(shown.contains("connection was refused"), "{shown}");
        assert_no_token(&error);
    }
}

#[tokio::test]
async fn a_port_that_accepts_and_drops_is_unreachable() {
    let listener = DroppingListener::start().await.unwrap();
    for scheme in ["http", "https"] {
        let url = format!("{scheme}://{}", listener.addr());
        let client = client(
            &ApiConfig::new(url.clone())
                .with_credentials(Credentials::token(TOKEN))
                .with_timeouts(Duration::from_secs(5), Duration::from_secs(5)),
        );
        let error = nodes_ready(&client).await.unwrap_err();
        assert!(error.is_unreachable(), "{scheme}: {error:?}");
        let shown = error.to_string();
        assert!(shown.contains(&url), "{shown}");
        assert!(shown.contains("closed before an answer"), "{shown}");
        assert!(shown.contains("LXD proxy"), "{shown}");
        assert_no_token(&error);
    }
}

#[tokio::test]
async fn a_server_that_never_answers_is_unreachable_after_the_timeout() {
    let listener = SilentListener::start().await.unwrap();
    for scheme in ["http", "https"] {
        let url = format!("{scheme}://{}", listener.addr());
        let client =
            client(&ApiConfig::new(url.clone()).with_timeouts(Duration::from_millis(500), Duration::from_millis(500)));
        let started = std::time::Instant::now();
        let error = nodes_ready(&client).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        assert!(error.is_unreachable(), "{scheme}: {error:?}");
        assert!(error.to_string().contains("no answer in time"), "{error}");
        assert!(error.to_string().contains(&url), "{error}");
    }
}

#[tokio::test]
async fn plain_http_to_an_https_server_says_to_use_https() {
    let tls = FakeTls::generate("fake-kube-ca");
    let fake = FakeKube::start_tls(FakeState::host_cluster(), &tls).await.unwrap();
    let url = fake.url().replacen("https://", "http://", 1);
    let error = nodes_ready(&client(&ApiConfig::new(url.clone()))).await.unwrap_err();
    assert!(matches!(error, KubeObserveError::Other { .. }), "{error:?}");
    assert!(error.to_string().contains("use an https:// URL"), "{error}");
}

#[tokio::test]
async fn a_server_certificate_from_another_ca_is_a_tls_error() {
    let server_tls = FakeTls::generate("fake-kube-ca");
    let other_ca = FakeTls::generate("some-other-ca");
    let fake = FakeKube::start_tls(karmada_with_members(), &server_tls).await.unwrap();
    let config =
        ApiConfig::new(fake.url()).with_ca_pem(other_ca.ca_pem.clone()).with_credentials(Credentials::token(TOKEN));
    let client = client(&config);

    let error = cluster(&client, "member1").await.unwrap_err();
    assert!(error.is_tls(), "{error:?}");
    let KubeObserveError::Tls { server, cause, hint } = &error else { unreachable!() };
    assert_eq!(server, fake.url());
    assert!(cause.contains("not trusted"), "{cause}");
    assert!(cause.contains("unknown issuer"), "{cause}");
    assert!(hint.contains("certificate-authority-data"), "{hint}");
    let shown = error.to_string();
    assert!(shown.contains(fake.url()), "{shown}");
    assert!(shown.contains("certificate was not trusted"), "{shown}");
    assert_no_token(&error);

    // No CA at all: the platform's roots do not know the fake's CA either.
    let error = nodes_ready(&KubeClient::new(&ApiConfig::new(fake.url())).unwrap()).await.unwrap_err();
    assert!(error.is_tls(), "{error:?}");

    // A certificate that does not cover the name asked for.
    let mut config = fake.config();
    config.tls_server_name = Some("member9.example".to_string());
    let error = nodes_ready(&client_for(&config)).await.unwrap_err();
    let KubeObserveError::Tls { cause, hint, .. } = &error else { panic!("{error:?}") };
    assert!(cause.contains("does not cover member9.example (it covers 127.0.0.1, localhost)"), "{cause}");
    assert!(hint.contains("insecure-skip-tls-verify"), "{hint}");

    // insecure-skip-tls-verify accepts it.
    let skip = ApiConfig::new(fake.url()).with_ca_pem(other_ca.ca_pem).with_insecure_skip_tls_verify(true);
    assert!(cluster(&client_for(&skip), "member1").await.unwrap().unwrap().is_ready());
}

fn client_for(config: &ApiConfig) -> KubeClient {
    KubeClient::new(config).expect("client")
}

#[tokio::test]
async fn https_against_a_plain_http_server_is_a_tls_error() {
    let fake = FakeKube::start(FakeState::host_cluster()).await.unwrap();
    let url = fake.url().replacen("http://", "https://", 1);
    let error = nodes_ready(&client_for(&ApiConfig::new(url.clone()))).await.unwrap_err();
    assert!(error.is_tls(), "{error:?}");
    assert!(error.to_string().contains("did not speak TLS"), "{error}");
    assert!(error.to_string().contains(&url), "{error}");
}

#[tokio::test]
async fn https_with_the_right_ca_observes_everything() {
    let tls = FakeTls::generate("fake-kube-ca");
    let mut state = karmada_with_members();
    state.nodes = vec![FakeNode::ready("karmada-host")];
    state.required_token = Some(TOKEN.to_string());
    let fake = FakeKube::start_tls(state, &tls).await.unwrap();

    // Token.
    let client = client_for(&fake.authorized_config());
    assert!(fake.url().starts_with("https://127.0.0.1:"));
    assert!(cluster(&client, "member1").await.unwrap().unwrap().is_ready());
    assert_eq!(cluster(&client, "member3").await.unwrap().unwrap().ready_reason(), Some("ClusterNotReachable"));
    assert!(cluster(&client, "member4").await.unwrap().is_none());
    assert!(nodes_ready(&client).await.unwrap().all_ready());

    // Client certificate signed by the cluster's CA.
    let by_cert = fake
        .config()
        .with_credentials(Credentials::client_certificate(tls.client_cert_pem.clone(), tls.client_key_pem.clone()));
    assert_eq!(clusters(&client_for(&by_cert)).await.unwrap().len(), 3);
}

#[tokio::test]
async fn rejected_credentials_are_unauthorized_and_never_shown() {
    let mut state = karmada_with_members();
    state.required_token = Some("the-right-token".to_string());
    let fake = FakeKube::start(state).await.unwrap();

    let config = fake.config().with_credentials(Credentials::token(TOKEN));
    let client = client_for(&config);
    let error = cluster(&client, "member1").await.unwrap_err();
    assert!(matches!(error, KubeObserveError::Unauthorized { .. }), "{error:?}");
    let shown = error.to_string();
    assert!(shown.contains(fake.url()), "{shown}");
    assert!(shown.contains("did not accept the credentials"), "{shown}");
    assert_no_token(&error);

    // No credentials at all.
    let error = nodes_ready(&client_for(&fake.config())).await.unwrap_err();
    assert!(matches!(error, KubeObserveError::Unauthorized { .. }), "{error:?}");

    // The config and the client do not show it either.
    for shown in [format!("{config:?}"), format!("{client:?}")] {
        assert!(!shown.contains(TOKEN), "{shown}");
        assert!(!shown.contains("very-secret"), "{shown}");
    }
    assert!(format!("{config:?}").contains("Token(<redacted>)"));
}

#[tokio::test]
async fn a_denied_read_is_forbidden() {
    let mut state = FakeState::host_with_karmada();
    state.forbidden_paths = vec!["/api/v1/nodes".to_string()];
    let fake = FakeKube::start(state).await.unwrap();
    let client = client(&fake.config());
    let error = nodes_ready(&client).await.unwrap_err();
    assert!(matches!(error, KubeObserveError::Forbidden { .. }), "{error:?}");
    let shown = error.to_string();
    assert!(shown.contains("forbids the credentials to list nodes"), "{shown}");
    assert!(shown.contains("cannot list resource \"nodes\""), "{shown}");
    assert!(shown.contains(fake.url()), "{shown}");
    // Other reads still work.
    assert!(control_plane(&client).await.unwrap().is_healthy());
}

#[tokio::test]
async fn a_client_key_is_never_shown() {
    let tls = FakeTls::generate("fake-kube-ca");
    let config = ApiConfig::new("https://127.0.0.1:1")
        .with_credentials(Credentials::client_certificate(tls.client_cert_pem.clone(), tls.client_key_pem.clone()));
    let key_body = tls.client_key_pem.lines().nth(1).expect("a PEM body line").to_string();
    let shown = format!("{config:?}");
    assert!(!shown.contains(&key_body), "{shown}");
    assert!(!shown.contains("PRIVATE KEY"), "{shown}");

    // A key that does not go with anything: the error does not quote it.
    let broken = ApiConfig::new("https://127.0.0.1:1").with_credentials(Credentials::client_certificate(
        tls.client_cert_pem.clone(),
        "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n",
    ));
    let error = KubeClient::new(&broken).unwrap_err();
    let shown = format!("{error} // {error:?}");
    assert!(!shown.contains("bm90IGEga2V5"), "{shown}");
}

#[tokio::test]
async fn a_kubeconfig_is_understood() {
    let tls = FakeTls::generate("fake-kube-ca");
    let mut state = karmada_with_members();
    state.required_token = Some(TOKEN.to_string());
    let fake = FakeKube::start_tls(state, &tls).await.unwrap();
    let b64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    let kubeconfig = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: karmada-apiserver
  cluster:
    server: {url}
    certificate-authority-data: {ca}
- name: elsewhere
  cluster:
    server: https://192.0.2.1:6443
contexts:
- name: karmada-apiserver
  context:
    cluster: karmada-apiserver
    user: karmada-admin
- name: other
  context:
    cluster: elsewhere
    user: karmada-admin
current-context: karmada-apiserver
users:
- name: karmada-admin
  user:
    token: {TOKEN}
",
        url = fake.url(),
        ca = b64(&tls.ca_pem),
    );
    let config = ApiConfig::from_kubeconfig_yaml(&kubeconfig, None).unwrap();
    assert_eq!(config.server, fake.url());
    assert!(!format!("{config:?}").contains(TOKEN));
    let client = client_for(&config);
    assert_eq!(clusters(&client).await.unwrap().len(), 3);

    let other = ApiConfig::from_kubeconfig_yaml(&kubeconfig, Some("other")).unwrap();
    assert_eq!(other.server, "https://192.0.2.1:6443");
    let error = ApiConfig::from_kubeconfig_yaml(&kubeconfig, Some("nope")).unwrap_err();
    assert!(error.to_string().contains("no context \"nope\""), "{error}");

    // A client-certificate kubeconfig, as `microk8s config` writes it.
    let kubeconfig = format!(
        "apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: {ca}
    server: {url}
  name: microk8s-cluster
contexts:
- context:
    cluster: microk8s-cluster
    user: admin
  name: microk8s
current-context: microk8s
kind: Config
preferences: {{}}
users:
- name: admin
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
",
        url = fake.url(),
        ca = b64(&tls.ca_pem),
        cert = b64(&tls.client_cert_pem),
        key = b64(&tls.client_key_pem),
    );
    let config = ApiConfig::from_kubeconfig_yaml(&kubeconfig, None).unwrap();
    assert!(matches!(config.credentials, Credentials::ClientCertificate { .. }));
    assert!(cluster(&client_for(&config), "member2").await.unwrap().unwrap().is_ready());

    // Broken YAML: the message does not quote the file.
    let error = ApiConfig::from_kubeconfig_yaml(&format!("users: [{TOKEN}\n  : :"), None).unwrap_err();
    assert_no_token(&error);
}

#[tokio::test]
async fn bad_configs_are_config_errors() {
    let error = KubeClient::new(&ApiConfig::new("10.0.0.1:16443")).unwrap_err();
    assert!(matches!(error, KubeObserveError::Config { .. }), "{error:?}");
    let error = KubeClient::new(&ApiConfig::new("https://127.0.0.1:1").with_ca_pem("not a pem")).unwrap_err();
    assert!(matches!(error, KubeObserveError::Config { .. }), "{error:?}");
    assert!(error.to_string().contains("CA certificate"), "{error}");
}
