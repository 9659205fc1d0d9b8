//! [`MemberPods`]: a member's pods, asked through the people kubeconfig testbed wrote for it, against the
//! fake API server over TLS with the admin's client certificate.

mod common;

use common::{admin_kubeconfig, cert_user};
use testbed_kube::fake::{FakeKube, FakePod, FakeState, FakeTls};
use testbed_microk8s::MemberPods;
use testbed_provider::{ErrorKind, PodLookup, PodMatch};

async fn member_api(tls: &FakeTls) -> FakeKube {
    let mut state = FakeState::host_cluster();
    state.required_token = Some("nobody-has-this".into());
    let prometheus =
        |name: &str, ip: &str| FakePod::ready("monitoring", name, ip).label("app.kubernetes.io/name", "prometheus");
    state.put_pod(prometheus("prometheus-1", "10.1.33.12"));
    state.put_pod(prometheus("prometheus-0", "10.1.33.11"));
    state.put_pod(
        FakePod::not_ready("monitoring", "prometheus-a", "10.1.33.10").label("app.kubernetes.io/name", "prometheus"),
    );
    FakeKube::start_tls(state, tls).await.unwrap()
}

#[tokio::test]
async fn the_first_ready_pod_by_name_is_found_through_the_members_kubeconfig() {
    let dir = tempfile::tempdir().unwrap();
    let tls = FakeTls::generate("10.152.183.1");
    let fake = member_api(&tls).await;
    let kubeconfig = admin_kubeconfig(&tls.ca_pem, fake.url(), &cert_user(&tls.client_cert_pem, &tls.client_key_pem));
    std::fs::write(dir.path().join("member1.config"), kubeconfig).unwrap();
    let lookup = MemberPods::new(dir.path());

    let pods = lookup.pods("member1", "monitoring", "app.kubernetes.io/name=prometheus").await.unwrap();
    let names: Vec<&str> = pods.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["prometheus-0", "prometheus-1", "prometheus-a"]);
    // prometheus-a sorts first by name among the not-ready ones, but it is not Ready: prometheus-0 is taken.
    let found = lookup.ready_pod("member1", "monitoring", "app.kubernetes.io/name=prometheus").await.unwrap();
    assert_eq!(found, Some(("prometheus-0".to_owned(), "10.1.33.11".to_owned())));
    assert_eq!(lookup.kubeconfig("member1"), dir.path().join("member1.config").display().to_string());

    // The pod is recreated at another address; the next question sees it.
    fake.update(|s| {
        s.remove_pod("monitoring", "prometheus-0");
        s.put_pod(
            FakePod::ready("monitoring", "prometheus-0", "10.1.33.13").label("app.kubernetes.io/name", "prometheus"),
        );
    });
    let found = lookup.ready_pod("member1", "monitoring", "app.kubernetes.io/name=prometheus").await.unwrap();
    assert_eq!(found, Some(("prometheus-0".to_owned(), "10.1.33.13".to_owned())));

    // Nothing matches in another namespace.
    assert_eq!(lookup.ready_pod("member1", "default", "app.kubernetes.io/name=prometheus").await.unwrap(), None);
}

#[tokio::test]
async fn a_member_without_a_kubeconfig_has_no_pods_and_an_unreachable_one_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let lookup = MemberPods::new(dir.path());
    assert_eq!(lookup.pods("member2", "monitoring", "app=x").await.unwrap(), Vec::<PodMatch>::new());

    let tls = FakeTls::generate("10.152.183.1");
    let nowhere = testbed_kube::fake::unused_url().await.unwrap();
    let server = nowhere.url().replace("http://", "https://");
    let kubeconfig = admin_kubeconfig(&tls.ca_pem, &server, &cert_user(&tls.client_cert_pem, &tls.client_key_pem));
    std::fs::write(dir.path().join("member2.config"), kubeconfig).unwrap();
    let error = lookup.pods("member2", "monitoring", "app=x").await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unavailable, "{}", error.report());
    let shown = error.report().to_string();
    assert!(shown.contains("member2's pods in monitoring") && shown.contains("member2.config"), "{shown}");
    assert!(!shown.contains("PRIVATE KEY"), "{shown}");
}

/// A container in a crash loop: the diagnosis reads the last lines its previous run wrote (`kubectl logs
/// --previous --tail 20`), and the pods that are Ready are not reported.
#[tokio::test]
async fn a_crashing_container_is_reported_with_the_last_lines_it_wrote() {
    use testbed_kube::fake::FakeContainer;
    let dir = tempfile::tempdir().unwrap();
    let tls = FakeTls::generate("10.152.183.1");
    let mut state = FakeState::host_cluster();
    state.required_token = Some("nobody-has-this".into());
    state.put_pod(FakePod::ready("mcapp", "web-0", "10.1.33.20"));
    let log: String = (1..=30).map(|i| format!("line {i}\n")).collect::<String>()
        + "FATAL: password authentication failed for user \"mcapp\"\n";
    state.put_pod(FakePod::not_ready("mcapp", "api-7d9f", "10.1.33.21").container(FakeContainer {
        name: "api".into(),
        image: "localhost:32000/mcapp-api:1.0".into(),
        init: false,
        waiting: Some(("CrashLoopBackOff".into(), "back-off 5m0s restarting failed container=api".into())),
        previous_log: Some(log),
        listens: Vec::new(),
        ports: Vec::new(),
    }));
    let fake = FakeKube::start_tls(state, &tls).await.unwrap();
    let kubeconfig = admin_kubeconfig(&tls.ca_pem, fake.url(), &cert_user(&tls.client_cert_pem, &tls.client_key_pem));
    std::fs::write(dir.path().join("member1.config"), kubeconfig).unwrap();
    let troubled = MemberPods::new(dir.path()).troubled("member1").await.unwrap();
    assert_eq!(troubled.len(), 1, "{troubled:?}");
    let t = &troubled[0];
    assert_eq!((t.namespace.as_str(), t.pod.name.as_str()), ("mcapp", "api-7d9f"));
    assert_eq!(t.pod.waiting[0].reason, "CrashLoopBackOff");
    let (container, text) = &t.last_lines[0];
    assert_eq!(container, "api");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), testbed_microk8s::LAST_LINES as usize, "{text}");
    assert_eq!(lines.last(), Some(&"FATAL: password authentication failed for user \"mcapp\""));
    assert_eq!(lines[0], "line 12");
    // The request was the one kubectl makes.
    assert!(
        fake.requests().iter().any(|r| r.starts_with("GET /api/v1/namespaces/mcapp/pods/api-7d9f/log?")
            && r.contains("previous=true")
            && r.contains("tailLines=20")
            && r.contains("container=api")),
        "{:?}",
        fake.requests()
    );
}

/// The port-forward test: a pod asked directly, through the member API's port-forward (a WebSocket upgraded
/// over TLS, as `kubectl port-forward` opens it), answers when its application listens on the port on any
/// address the pod's loopback reaches; when nothing listens there, the kubelet's words say so.
#[tokio::test]
async fn a_pod_is_asked_directly_through_a_port_forward() {
    use testbed_kube::fake::{FakeContainer, PORT_FORWARD_ANSWER};
    use testbed_kube::PortForwardFailure;
    use testbed_microk8s::MemberApiError;
    let dir = tempfile::tempdir().unwrap();
    let tls = FakeTls::generate("10.152.183.1");
    let mut state = FakeState::host_cluster();
    state.required_token = Some("nobody-has-this".into());
    let listening = |name: &str, at: &str| FakeContainer {
        name: name.into(),
        image: format!("localhost:32000/{name}:1"),
        init: false,
        waiting: None,
        previous_log: None,
        listens: vec![at.parse().unwrap()],
        ports: Vec::new(),
    };
    state.put_pod(
        FakePod::ready("monitoring", "prometheus-0", "10.1.33.11").container(listening("prometheus", "0.0.0.0:9090")),
    );
    // The Flask development server's default: the pod's loopback only.
    state.put_pod(
        FakePod::ready("default", "flask-demo-0", "10.1.33.12").container(listening("flask", "127.0.0.1:5000")),
    );
    let fake = FakeKube::start_tls(state, &tls).await.unwrap();
    let kubeconfig = admin_kubeconfig(&tls.ca_pem, fake.url(), &cert_user(&tls.client_cert_pem, &tls.client_key_pem));
    std::fs::write(dir.path().join("member1.config"), kubeconfig).unwrap();
    let pods = MemberPods::new(dir.path());

    let n = pods.answers_directly("member1", "monitoring", "prometheus-0", 9090).await.unwrap();
    assert_eq!(n, PORT_FORWARD_ANSWER.len());
    let n = pods.answers_directly("member1", "default", "flask-demo-0", 5000).await.unwrap();
    assert_eq!(n, PORT_FORWARD_ANSWER.len());
    let asked = fake.requests();
    assert!(
        asked.iter().any(|r| r.starts_with("GET /api/v1/namespaces/monitoring/pods/prometheus-0/portforward?")
            && r.ends_with("ports=9090")),
        "{asked:?}"
    );

    // Nothing listens on 8080: containerd's words, through the kubelet's error channel.
    let refused = pods.answers_directly("member1", "monitoring", "prometheus-0", 8080).await.unwrap_err();
    let MemberApiError::PortForward(PortForwardFailure::Refused(words)) = &refused else {
        panic!("{refused:?}");
    };
    assert!(words.starts_with("error forwarding port 8080 to pod "), "{words}");
    assert!(
        words.contains("failed to connect to localhost:8080 inside namespace")
            && words.contains("IPv4: dial tcp4 127.0.0.1:8080: connect: connection refused"),
        "{words}"
    );

    // Through the seam the LXD layer and doctor use: the refusal, with what the pod declares (nothing here;
    // Prometheus' 9090 once its spec says so).
    use testbed_provider::DirectAnswer;
    let asked = pods.ask_directly("member1", "monitoring", "prometheus-0", 8080).await;
    assert!(matches!(&asked, DirectAnswer::Refused { declared: Some(d), .. } if d.is_empty()), "{asked:?}");
    assert_eq!(asked.declared(8080).as_deref(), Some("the pod declares no containerPort"));
    fake.update(|s| {
        s.remove_pod("monitoring", "prometheus-0");
        let mut c = listening("prometheus", "0.0.0.0:9090");
        c.ports = vec![9090];
        s.put_pod(FakePod::ready("monitoring", "prometheus-0", "10.1.33.11").container(c));
    });
    let asked = pods.ask_directly("member1", "monitoring", "prometheus-0", 8080).await;
    assert_eq!(asked.declared(8080).as_deref(), Some("the pod declares containerPort 9090"));
    assert_eq!(
        pods.ask_directly("member1", "monitoring", "prometheus-0", 9090).await,
        DirectAnswer::Answered(PORT_FORWARD_ANSWER.len())
    );

    // A pod that is not there: the API's 404, not a refusal inside a pod.
    let gone = pods.answers_directly("member1", "monitoring", "prometheus-9", 9090).await.unwrap_err();
    assert!(
        matches!(&gone, MemberApiError::PortForward(PortForwardFailure::Api(e)) if e.to_string().contains("prometheus-9")),
        "{gone:?}"
    );
}
