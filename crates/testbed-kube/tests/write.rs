//! The writes (merge patches) and the namespace/Service reads against the in-process fake API.

use testbed_kube::fake::{FakeCluster, FakeDeployment, FakeFailure, FakeKube, FakeState};
use testbed_kube::{
    add_cluster_taint, cluster, control_plane, namespace_labels, remove_cluster_taint, service_node_ports,
    set_cluster_api_endpoint, set_cluster_label, set_namespace_label, ClusterTaint, KubeClient, KARMADA_NAMESPACE,
};

#[tokio::test]
async fn a_namespace_label_is_set_and_removed_and_other_labels_stay() {
    let fake = FakeKube::start(FakeState::host_with_karmada()).await.unwrap();
    let client = KubeClient::new(&fake.config()).unwrap();

    let before = namespace_labels(&client, KARMADA_NAMESPACE).await.unwrap().expect("karmada-system exists");
    assert_eq!(before.get("kubernetes.io/metadata.name").map(String::as_str), Some("karmada-system"));
    assert!(!before.contains_key("testbed/owner"));
    assert_eq!(namespace_labels(&client, "nope").await.unwrap(), None, "a missing namespace is None");

    let after = set_namespace_label(&client, KARMADA_NAMESPACE, "testbed/owner", Some("lab")).await.unwrap();
    assert_eq!(after.get("testbed/owner").map(String::as_str), Some("lab"));
    assert_eq!(after.get("kubernetes.io/metadata.name").map(String::as_str), Some("karmada-system"));
    let read = namespace_labels(&client, KARMADA_NAMESPACE).await.unwrap().unwrap();
    assert_eq!(read, after, "the patch is what a later read sees");

    let removed = set_namespace_label(&client, KARMADA_NAMESPACE, "testbed/owner", None).await.unwrap();
    assert!(!removed.contains_key("testbed/owner"));

    let requests = fake.requests();
    assert!(requests
        .iter()
        .any(|r| r == "PATCH /api/v1/namespaces/karmada-system?" || r == "PATCH /api/v1/namespaces/karmada-system"));

    let missing = set_namespace_label(&client, "nope", "testbed/owner", Some("lab")).await.unwrap_err();
    assert!(missing.to_string().contains("404"), "{missing}");
}

#[tokio::test]
async fn a_cluster_label_and_endpoint_are_patched_and_the_rest_is_kept() {
    let mut state = FakeState::karmada_apiserver();
    state.put_cluster(FakeCluster::not_reachable("member1").label("team", "blue"));
    let fake = FakeKube::start(state).await.unwrap();
    let client = KubeClient::new(&fake.config()).unwrap();

    let labelled = set_cluster_label(&client, "member1", "testbed/owner", Some("lab")).await.unwrap();
    assert_eq!(labelled.labels.get("testbed/owner").map(String::as_str), Some("lab"));
    assert_eq!(labelled.labels.get("team").map(String::as_str), Some("blue"));
    assert_eq!(labelled.ready_reason(), Some("ClusterNotReachable"), "status is untouched");

    let moved = set_cluster_api_endpoint(&client, "member1", "https://10.20.30.40:16443").await.unwrap();
    assert_eq!(moved.api_endpoint.as_deref(), Some("https://10.20.30.40:16443"));
    let read = cluster(&client, "member1").await.unwrap().unwrap();
    assert_eq!(read.api_endpoint.as_deref(), Some("https://10.20.30.40:16443"));
    assert_eq!(read.labels.get("testbed/owner").map(String::as_str), Some("lab"));

    let missing = set_cluster_label(&client, "member9", "testbed/owner", Some("lab")).await.unwrap_err();
    assert!(missing.to_string().contains("not found"), "{missing}");
}

#[tokio::test]
async fn a_failing_patch_changes_nothing_and_says_why() {
    let mut state = FakeState::karmada_apiserver();
    state.put_cluster(FakeCluster::ready("member1"));
    let fake = FakeKube::start(state).await.unwrap();
    fake.fail_requests(std::sync::Arc::new(|method, path| {
        (method == "PATCH").then(|| FakeFailure::unconverted(format!("etcdserver: request timed out ({path})")))
    }));
    let client = KubeClient::new(&fake.config()).unwrap();

    let error = set_cluster_label(&client, "member1", "testbed/owner", Some("lab")).await.unwrap_err();
    let shown = error.to_string();
    assert!(
        shown.contains("HTTP 500: etcdserver: request timed out (/apis/cluster.karmada.io/v1alpha1/clusters/member1)"),
        "{shown}"
    );
    let read = cluster(&client, "member1").await.unwrap().unwrap();
    assert!(!read.labels.contains_key("testbed/owner"), "the failed patch wrote nothing");
}

#[tokio::test]
async fn deployment_images_and_service_node_ports_are_read() {
    let mut state = FakeState::host_with_karmada();
    state.put_deployment(
        FakeDeployment::available(KARMADA_NAMESPACE, "karmada-scheduler")
            .image("localhost:32000/karmada-scheduler:v1.14.0"),
    );
    let command: Vec<String> =
        ["/bin/karmada-controller-manager", "--v=2", "--feature-gates=Failover=true"].map(str::to_owned).to_vec();
    state.put_deployment(
        FakeDeployment::available(KARMADA_NAMESPACE, "karmada-controller-manager").command(command.clone()),
    );
    let fake = FakeKube::start(state).await.unwrap();
    let client = KubeClient::new(&fake.config()).unwrap();

    let report = control_plane(&client).await.unwrap();
    assert_eq!(
        report.get("karmada-controller-manager").unwrap().images,
        ["localhost:32000/karmada-controller-manager:v1.19.0"]
    );
    assert_eq!(report.get("karmada-controller-manager").unwrap().command, command, "the container's command is read");
    assert_eq!(report.get("karmada-scheduler").unwrap().images, ["localhost:32000/karmada-scheduler:v1.14.0"]);

    assert_eq!(service_node_ports(&client, KARMADA_NAMESPACE, "karmada-apiserver").await.unwrap(), Some(vec![32443]));
    assert_eq!(service_node_ports(&client, KARMADA_NAMESPACE, "nope").await.unwrap(), None);
}

/// A drill's taint goes on beside the taints already there (which keep their times), once however often it
/// is added, and comes off alone: a taint with the same key and effect but no value (a ClusterTaintPolicy's)
/// stays.
#[tokio::test]
async fn a_cluster_taint_is_added_once_and_removed_alone() {
    let mut state = FakeState::karmada_apiserver();
    let mut member1 = FakeCluster::not_reachable("member1");
    member1.taints.push(testbed_kube::fake::FakeTaint {
        time_added: Some("2026-01-05T09:00:00Z".into()),
        ..testbed_kube::fake::FakeTaint::new("cluster.karmada.io/not-ready", "NoExecute")
    });
    state.put_cluster(member1);
    let fake = FakeKube::start(state).await.unwrap();
    let client = KubeClient::new(&fake.config()).unwrap();
    let drill = ClusterTaint::new("cluster.karmada.io/not-ready", Some("testbed-drill"), "NoExecute");

    let tainted = add_cluster_taint(&client, "member1", &drill).await.unwrap();
    let shown: Vec<String> = tainted.taints.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "cluster.karmada.io/unreachable:NoSchedule",
            "cluster.karmada.io/not-ready:NoExecute",
            "cluster.karmada.io/not-ready=testbed-drill:NoExecute"
        ]
    );
    assert_eq!(tainted.taints[1].time_added.as_deref(), Some("2026-01-05T09:00:00Z"), "kept its time");
    let again = add_cluster_taint(&client, "member1", &drill).await.unwrap();
    assert_eq!(again.taints, tainted.taints, "added once");
    assert_eq!(cluster(&client, "member1").await.unwrap().unwrap().taints, tainted.taints, "what a read sees");

    let untainted = remove_cluster_taint(&client, "member1", &drill).await.unwrap();
    let shown: Vec<String> = untainted.taints.iter().map(ToString::to_string).collect();
    assert_eq!(shown, ["cluster.karmada.io/unreachable:NoSchedule", "cluster.karmada.io/not-ready:NoExecute"]);
    let patches = fake
        .requests()
        .iter()
        .filter(|r| r.starts_with("PATCH /apis/cluster.karmada.io/v1alpha1/clusters/member1"))
        .count();
    assert_eq!(patches, 2, "nothing written when the taint is already there: {:?}", fake.requests());
    assert!(
        fake.requests().iter().any(|r| r.contains("fieldManager=testbed")),
        "written as testbed's: {:?}",
        fake.requests()
    );

    let missing = add_cluster_taint(&client, "member9", &drill).await.unwrap_err();
    assert!(missing.to_string().contains("404"), "{missing}");
}
