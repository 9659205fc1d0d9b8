//! `pods` against the fake API server: the pods a label selector matches in a namespace, with their pod IP,
//! readiness and phase, read from real-shaped PodLists.

use testbed_kube::fake::{FakeContainer, FakeKube, FakePod, FakeState};
use testbed_kube::{pods, ContainerWaiting, KubeClient, KubeObserveError, PodReport};

fn prometheus(name: &str, ip: &str) -> FakePod {
    FakePod::ready("monitoring", name, ip)
        .label("app.kubernetes.io/name", "prometheus")
        .label("app.kubernetes.io/instance", "k8s")
}

fn member_state() -> FakeState {
    let mut state = FakeState::host_cluster();
    state.put_pod(prometheus("prometheus-k8s-1", "10.1.33.12"));
    state.put_pod(prometheus("prometheus-k8s-0", "10.1.33.11"));
    state.put_pod(
        FakePod::ready("monitoring", "grafana-5d4c9b7f8-x2x9q", "10.1.33.20")
            .label("app.kubernetes.io/name", "grafana"),
    );
    // The same labels in another namespace: not matched from `monitoring`.
    state
        .put_pod(FakePod::ready("default", "prometheus-0", "10.1.33.30").label("app.kubernetes.io/name", "prometheus"));
    state
}

#[tokio::test]
async fn the_selector_picks_the_pods_of_its_namespace_sorted_by_name() {
    let fake = FakeKube::start(member_state()).await.unwrap();
    let client = KubeClient::new(&fake.config()).unwrap();
    let found = pods(&client, "monitoring", "app.kubernetes.io/name=prometheus").await.unwrap();
    let expect = |name: &str, ip: &str| PodReport {
        name: name.into(),
        ip: Some(ip.into()),
        ready: true,
        phase: Some("Running".into()),
        waiting: Vec::new(),
    };
    assert_eq!(found, [expect("prometheus-k8s-0", "10.1.33.11"), expect("prometheus-k8s-1", "10.1.33.12")]);
    // Both terms must hold; `==` is the same as `=`.
    let both =
        pods(&client, "monitoring", "app.kubernetes.io/name==prometheus,app.kubernetes.io/instance=k8s").await.unwrap();
    assert_eq!(both.len(), 2);
    let none = pods(&client, "monitoring", "app.kubernetes.io/name=prometheus,app.kubernetes.io/instance=other")
        .await
        .unwrap();
    assert!(none.is_empty(), "{none:?}");
    // The request names the namespace and carries the selector, as kubectl's does.
    let asked = fake.requests();
    assert!(
        asked.iter().any(|r| r.starts_with("GET /api/v1/namespaces/monitoring/pods?")
            && r.contains("labelSelector=app.kubernetes.io%2Fname%3Dprometheus")),
        "{asked:?}"
    );
}

#[tokio::test]
async fn readiness_and_addresses_are_read_from_the_status() {
    let mut state = FakeState::host_cluster();
    state.put_pod(FakePod::not_ready("monitoring", "prometheus-0", "10.1.33.11").label("app", "prometheus"));
    state.put_pod(FakePod::pending("monitoring", "prometheus-1").label("app", "prometheus"));
    let fake = FakeKube::start(state).await.unwrap();
    let client = KubeClient::new(&fake.config()).unwrap();
    let found = pods(&client, "monitoring", "app=prometheus").await.unwrap();
    assert_eq!(
        found,
        [
            PodReport {
                name: "prometheus-0".into(),
                ip: Some("10.1.33.11".into()),
                ready: false,
                phase: Some("Running".into()),
                waiting: Vec::new(),
            },
            PodReport {
                name: "prometheus-1".into(),
                ip: None,
                ready: false,
                phase: Some("Pending".into()),
                waiting: Vec::new()
            },
        ]
    );

    // The pod becomes Ready, then is recreated elsewhere: each read sees the state of its moment.
    fake.update(|s| s.put_pod(FakePod::ready("monitoring", "prometheus-0", "10.1.33.11").label("app", "prometheus")));
    let ready = pods(&client, "monitoring", "app=prometheus").await.unwrap();
    assert!(ready[0].ready && ready[0].ip.as_deref() == Some("10.1.33.11"), "{ready:?}");
    fake.update(|s| {
        s.remove_pod("monitoring", "prometheus-0");
        s.put_pod(FakePod::ready("monitoring", "prometheus-0", "10.1.33.12").label("app", "prometheus"));
    });
    let moved = pods(&client, "monitoring", "app=prometheus").await.unwrap();
    assert_eq!(moved[0].ip.as_deref(), Some("10.1.33.12"));
}

#[tokio::test]
async fn a_pod_that_cannot_pull_its_image_says_why_as_the_kubelet_wrote_it() {
    let pull_error = "failed to pull and unpack image \"localhost:32000/web:1\": failed to resolve reference: \
                      dial tcp 127.0.0.1:32000: connect: connection refused";
    let container = |name: &str, init: bool, waiting: Option<(&str, &str)>| FakeContainer {
        name: name.into(),
        image: format!("localhost:32000/{name}:1"),
        init,
        waiting: waiting.map(|(r, m)| (r.into(), m.into())),
        previous_log: None,
        listens: Vec::new(),
        ports: Vec::new(),
    };
    let mut state = FakeState::host_cluster();
    state.put_pod(
        FakePod::not_ready("default", "web-0", "10.1.20.4")
            .label("app", "web")
            .container(container("migrate", true, Some(("ErrImagePull", pull_error))))
            .container(container("web", false, Some(("PodInitializing", ""))))
            .container(container("sidecar", false, None)),
    );
    let fake = FakeKube::start(state).await.unwrap();
    let client = KubeClient::new(&fake.config()).unwrap();
    let found = pods(&client, "default", "app=web").await.unwrap();
    assert_eq!(found.len(), 1);
    assert!(!found[0].ready);
    assert_eq!(found[0].phase.as_deref(), Some("Pending"));
    // Init containers first; an empty message is none; a running container does not wait.
    assert_eq!(
        found[0].waiting,
        [
            ContainerWaiting {
                container: "migrate".into(),
                init: true,
                reason: "ErrImagePull".into(),
                message: Some(pull_error.into())
            },
            ContainerWaiting { container: "web".into(), init: false, reason: "PodInitializing".into(), message: None },
        ]
    );
    let body = raw_get(&fake, "/api/v1/namespaces/default/pods/web-0").await;
    let condition = |t: &str| body["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == t).cloned();
    assert_eq!(condition("Initialized").unwrap()["reason"], "ContainersNotInitialized");
    assert_eq!(condition("Ready").unwrap()["message"], "containers with unready status: [web sidecar]");
    assert_eq!(body["spec"]["initContainers"][0]["image"], "localhost:32000/migrate:1");
    // A container that has not run before has no previous log: the API server's 400, as kubectl shows it.
    let error = testbed_kube::previous_log(&client, "default", "web-0", "web", 20).await.unwrap_err();
    assert!(error.to_string().contains("previous terminated container \"web\" in pod \"web-0\" not found"), "{error}");
}

#[tokio::test]
async fn the_pod_list_is_shaped_as_a_real_server_sends_it() {
    let fake = FakeKube::start(member_state()).await.unwrap();
    let body =
        raw_get(&fake, "/api/v1/namespaces/monitoring/pods?labelSelector=app.kubernetes.io%2Fname%3Dprometheus").await;
    assert_eq!(body["kind"], "PodList");
    assert_eq!(body["apiVersion"], "v1");
    let item = &body["items"][0];
    assert!(
        item.get("kind").is_none() && item.get("apiVersion").is_none(),
        "a built-in list's items carry no type: {item}"
    );
    assert_eq!(item["metadata"]["namespace"], "monitoring");
    assert_eq!(item["status"]["phase"], "Running");
    assert_eq!(item["status"]["podIP"], "10.1.33.11");
    assert_eq!(item["status"]["podIPs"], serde_json::json!([{"ip": "10.1.33.11"}]));
    let types: Vec<&str> =
        item["status"]["conditions"].as_array().unwrap().iter().map(|c| c["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["Initialized", "Ready", "ContainersReady", "PodScheduled"]);
    // Across namespaces, and one pod by name (with its type, as a GET of one object has it).
    let all = raw_get(&fake, "/api/v1/pods?labelSelector=app.kubernetes.io%2Fname%3Dprometheus").await;
    assert_eq!(all["items"].as_array().unwrap().len(), 3);
    let one = raw_get(&fake, "/api/v1/namespaces/monitoring/pods/prometheus-k8s-0").await;
    assert_eq!((one["kind"].as_str(), one["metadata"]["name"].as_str()), (Some("Pod"), Some("prometheus-k8s-0")));
    let missing = raw_get(&fake, "/api/v1/namespaces/monitoring/pods/nope").await;
    assert_eq!((missing["code"].as_i64(), missing["details"]["name"].as_str()), (Some(404), Some("nope")));
}

#[tokio::test]
async fn an_unreachable_member_api_is_an_error_not_no_pods() {
    let nowhere = testbed_kube::fake::unused_url().await.unwrap();
    let client = KubeClient::new(&testbed_kube::ApiConfig::new(nowhere.url().to_owned())).unwrap();
    let error = pods(&client, "monitoring", "app=prometheus").await.unwrap_err();
    assert!(matches!(error, KubeObserveError::Unreachable { .. }), "{error:?}");
}

/// The body of a GET, as JSON, through a plain HTTP/1.0 exchange.
async fn raw_get(fake: &FakeKube, path: &str) -> serde_json::Value {
    let address = fake.url().trim_start_matches("http://").to_owned();
    let request = format!("GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n");
    let answer = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(&address).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
    })
    .await
    .unwrap();
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {answer}"))
}

/// What `kubectl get pods -A` and `kubectl describe pod` show: every namespace's pods, and the events about
/// one pod, oldest first, without the events of other pods.
#[tokio::test]
async fn every_namespaces_pods_and_one_pods_events_are_read() {
    use testbed_kube::fake::FakeEvent;
    use testbed_kube::{pod_events, pods_everywhere, EventReport};
    let mut state = member_state();
    let event = |pod: &str, type_: &str, reason: &str, message: &str| FakeEvent {
        namespace: "monitoring".into(),
        pod: pod.into(),
        type_: type_.into(),
        reason: reason.into(),
        message: message.into(),
        count: 1,
    };
    state.events = vec![
        event("prometheus-k8s-0", "Normal", "Pulling", "Pulling image \"quay.io/prometheus/prometheus:v3.5.0\""),
        event("grafana-5d4c9b7f8-x2x9q", "Normal", "Started", "Started container grafana"),
        event("prometheus-k8s-0", "Warning", "Failed", "Error: ErrImagePull"),
    ];
    let fake = FakeKube::start(state).await.unwrap();
    let client = KubeClient::new(&fake.config()).unwrap();
    let all = pods_everywhere(&client).await.unwrap();
    let names: Vec<(&str, &str)> = all.iter().map(|(ns, p)| (ns.as_str(), p.name.as_str())).collect();
    assert_eq!(
        names,
        [
            ("default", "prometheus-0"),
            ("monitoring", "grafana-5d4c9b7f8-x2x9q"),
            ("monitoring", "prometheus-k8s-0"),
            ("monitoring", "prometheus-k8s-1")
        ]
    );
    let events = pod_events(&client, "monitoring", "prometheus-k8s-0").await.unwrap();
    let reasons: Vec<(&str, &str)> = events.iter().map(|e| (e.type_.as_str(), e.reason.as_str())).collect();
    assert_eq!(reasons, [("Normal", "Pulling"), ("Warning", "Failed")]);
    assert_eq!(
        events[1],
        EventReport {
            type_: "Warning".into(),
            reason: "Failed".into(),
            message: "Error: ErrImagePull".into(),
            count: 1
        }
    );
    assert!(pod_events(&client, "default", "prometheus-0").await.unwrap().is_empty());
}

/// A port-forward is a WebSocket upgrade or nothing: a plain GET is the API server's 400, as is a request
/// without a port; an unknown pod is a 404.
#[tokio::test]
async fn a_port_forward_without_an_upgrade_or_a_port_is_refused() {
    let fake = FakeKube::start(member_state()).await.unwrap();
    let plain = raw_get(&fake, "/api/v1/namespaces/monitoring/pods/prometheus-k8s-0/portforward?ports=9090").await;
    assert_eq!((plain["code"].as_i64(), plain["message"].as_str()), (Some(400), Some("Upgrade request required")));
    let no_port = raw_get(&fake, "/api/v1/namespaces/monitoring/pods/prometheus-k8s-0/portforward").await;
    assert_eq!(no_port["message"], "at least one port must be specified");
    let gone = raw_get(&fake, "/api/v1/namespaces/monitoring/pods/nobody/portforward?ports=9090").await;
    assert_eq!((gone["code"].as_i64(), gone["details"]["name"].as_str()), (Some(404), Some("nobody")));
}
