//! Objects of any kind (server-side apply, get, list by label, delete) and Karmada ResourceBindings, against
//! the in-process fake API and its object store.

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use serde_json::{json, Value};
use testbed_kube::fake::{unused_url, FakeKube, FakeNamespace, FakeState, FakeTls, FakeWrite, StateSink, StateSource};
use testbed_kube::{
    apply_object, binding_of, control_plane, delete_object, get_object, list_objects, namespace_labels,
    resource_bindings, ApiConfig, ConditionStatus, Credentials, KubeClient, KubeObserveError, ObjectRef,
    KARMADA_NAMESPACE,
};

const TOKEN: &str = "abcdef.0123456789abcdef-very-secret-token";

fn client(config: &ApiConfig) -> KubeClient {
    KubeClient::new(config).expect("client")
}

fn namespace(name: &str) -> (ObjectRef, Value) {
    (
        ObjectRef::new("v1", "Namespace", "namespaces", None, name),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": {"testbed/owner": "lab"}}}),
    )
}

fn deployment_ref(namespace: &str, name: &str) -> ObjectRef {
    ObjectRef::new("apps/v1", "Deployment", "deployments", Some(namespace), name)
}

/// A Deployment as a workload's manifest has it: labelled by testbed, two containers (one tagged, one
/// not), an env list.
fn deployment(namespace: &str, name: &str, replicas: i32) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app": name, "tier": "front", "testbed/owner": "lab", "testbed/workload": "web"},
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {
                            "name": "nginx",
                            "image": "nginx:1.27",
                            "ports": [{"containerPort": 80}],
                            "env": [{"name": "MODE", "value": "lab"}, {"name": "DEBUG", "value": "1"}],
                        },
                        {"name": "sidecar", "image": "busybox", "command": ["sleep", "infinity"]},
                    ],
                },
            },
        },
    })
}

fn config_map(namespace: &str, name: &str, workload: Option<&str>) -> (ObjectRef, Value) {
    let mut labels = json!({});
    if let Some(workload) = workload {
        labels = json!({"testbed/owner": "lab", "testbed/workload": workload});
    }
    (
        ObjectRef::new("v1", "ConfigMap", "configmaps", Some(namespace), name),
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "data": {"greeting": "hello"},
        }),
    )
}

#[tokio::test]
async fn an_apply_creates_the_object_with_what_the_server_defaults() {
    let fake = FakeKube::start(FakeState::karmada_apiserver()).await.unwrap();
    let client = client(&fake.config());

    let (ns_ref, ns) = namespace("web");
    let created = apply_object(&client, &ns_ref, &ns).await.unwrap();
    assert_eq!(created["metadata"]["labels"]["testbed/owner"], "lab");
    assert_eq!(created["metadata"]["labels"]["kubernetes.io/metadata.name"], "web");
    assert_eq!(created["status"]["phase"], "Active");
    assert!(created["metadata"].get("generation").is_none(), "a core kind has no generation: {created}");

    let r = deployment_ref("web", "nginx");
    let applied = apply_object(&client, &r, &deployment("web", "nginx", 3)).await.unwrap();
    let meta = &applied["metadata"];
    assert_eq!(applied["apiVersion"], "apps/v1");
    assert_eq!(applied["kind"], "Deployment");
    assert_eq!(meta["namespace"], "web");
    assert_eq!(meta["generation"], 1);
    assert!(meta["uid"].as_str().is_some_and(|u| u.len() == 36), "{meta}");
    assert!(meta["resourceVersion"].as_str().is_some_and(|v| v.parse::<u64>().is_ok()), "{meta}");
    assert!(meta["creationTimestamp"].is_string());
    let managed = meta["managedFields"].as_array().expect("managedFields");
    assert_eq!(managed.len(), 1);
    assert_eq!(managed[0]["manager"], "testbed");
    assert_eq!(managed[0]["operation"], "Apply");
    assert!(managed[0]["fieldsV1"]["f:spec"]["f:replicas"].is_object(), "{}", managed[0]);

    let spec = &applied["spec"];
    assert_eq!(spec["replicas"], 3);
    assert_eq!(spec["revisionHistoryLimit"], 10);
    assert_eq!(spec["progressDeadlineSeconds"], 600);
    assert_eq!(
        spec["strategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
    );
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Always");
    assert_eq!(pod["dnsPolicy"], "ClusterFirst");
    let nginx = &pod["containers"][0];
    assert_eq!(nginx["imagePullPolicy"], "IfNotPresent", "a tagged image");
    assert_eq!(nginx["terminationMessagePath"], "/dev/termination-log");
    assert_eq!(nginx["terminationMessagePolicy"], "File");
    assert_eq!(nginx["ports"][0]["protocol"], "TCP");
    assert_eq!(pod["containers"][1]["imagePullPolicy"], "Always", "an untagged image");
    assert!(applied.get("status").is_none(), "no controller runs in the fake");

    // What a later read sees is what the apply answered.
    assert_eq!(get_object(&client, &r).await.unwrap(), Some(applied.clone()));
    assert!(fake.requests().iter().any(|q| q.starts_with("PATCH /apis/apps/v1/namespaces/web/deployments/nginx?")
        && q.contains("fieldManager=testbed")
        && q.contains("force=true")));
    assert!(fake.state().objects.contains_key("/apis/apps/v1/namespaces/web/deployments/nginx"));

    // A Service gets its type and a cluster IP; a NodePort one its node port.
    let svc = ObjectRef::new("v1", "Service", "services", Some("web"), "nginx");
    let service = apply_object(
        &client,
        &svc,
        &json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "nginx", "namespace": "web"},
            "spec": {"selector": {"app": "nginx"}, "ports": [{"name": "http", "port": 80}]},
        }),
    )
    .await
    .unwrap();
    assert_eq!(service["spec"]["type"], "ClusterIP");
    let ip = service["spec"]["clusterIP"].as_str().unwrap().to_owned();
    assert!(ip.starts_with("10.152.183."), "{ip}");
    assert_eq!(service["spec"]["clusterIPs"], json!([ip]));
    assert_eq!(service["spec"]["ports"][0], json!({"name": "http", "port": 80, "protocol": "TCP", "targetPort": 80}));
    let node_port = ObjectRef::new("v1", "Service", "services", Some("web"), "nginx-np");
    let exposed = apply_object(
        &client,
        &node_port,
        &json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "nginx-np", "namespace": "web"},
            "spec": {"type": "NodePort", "selector": {"app": "nginx"}, "ports": [{"port": 80}]},
        }),
    )
    .await
    .unwrap();
    assert_ne!(exposed["spec"]["clusterIP"].as_str(), Some(ip.as_str()), "each Service has its own IP");
    let port = exposed["spec"]["ports"][0]["nodePort"].as_i64().unwrap();
    assert!((30000..=32767).contains(&port), "{port}");

    // A custom resource (a Karmada PropagationPolicy) has a generation, and its kind in lists.
    let pp =
        ObjectRef::new("policy.karmada.io/v1alpha1", "PropagationPolicy", "propagationpolicies", Some("web"), "nginx");
    let policy = apply_object(
        &client,
        &pp,
        &json!({
            "apiVersion": "policy.karmada.io/v1alpha1", "kind": "PropagationPolicy",
            "metadata": {"name": "nginx", "namespace": "web", "labels": {"testbed/owner": "lab"}},
            "spec": {
                "resourceSelectors": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "nginx"}],
                "placement": {"clusterAffinity": {"clusterNames": ["member1", "member2"]}},
            },
        }),
    )
    .await
    .unwrap();
    assert_eq!(policy["metadata"]["generation"], 1);
    let policies =
        list_objects(&client, "policy.karmada.io", "v1alpha1", "PropagationPolicy", "propagationpolicies", "")
            .await
            .unwrap();
    assert_eq!(policies.len(), 1);
    assert_eq!(policies[0]["kind"], "PropagationPolicy");
}

#[tokio::test]
async fn applying_the_same_body_again_changes_nothing() {
    let fake = FakeKube::start(FakeState::karmada_apiserver()).await.unwrap();
    let client = client(&fake.config());
    let r = deployment_ref("web", "nginx");
    let first = apply_object(&client, &r, &deployment("web", "nginx", 3)).await.unwrap();
    let again = apply_object(&client, &r, &deployment("web", "nginx", 3)).await.unwrap();
    assert_eq!(again, first, "the same object, the same resourceVersion and generation");
    assert_eq!(again["metadata"]["generation"], 1);
}

#[tokio::test]
async fn a_field_no_longer_applied_goes_and_what_another_writer_set_stays() {
    let fake = FakeKube::start(FakeState::karmada_apiserver()).await.unwrap();
    let client = client(&fake.config());
    let r = deployment_ref("web", "nginx");
    let first = apply_object(&client, &r, &deployment("web", "nginx", 3)).await.unwrap();

    // Another writer labels the Deployment, annotates it, and adds a container of its own.
    fake.update(|state| {
        let live = state.objects.get_mut(&r.api_path()).unwrap();
        live["metadata"]["labels"]["team"] = json!("blue");
        live["metadata"]["annotations"] = json!({"kubectl.kubernetes.io/restartedAt": "2026-01-05T10:00:00Z"});
        live["spec"]["template"]["spec"]["containers"].as_array_mut().unwrap().push(json!({
            "name": "injected", "image": "envoy:v1.30", "imagePullPolicy": "IfNotPresent",
        }));
    });

    // The manifest loses its `tier` label, the DEBUG variable and the sidecar; it wants 2 replicas.
    let mut next = deployment("web", "nginx", 2);
    next["metadata"]["labels"].as_object_mut().unwrap().remove("tier");
    let containers = next["spec"]["template"]["spec"]["containers"].as_array_mut().unwrap();
    containers.retain(|c| c["name"] != "sidecar");
    containers[0]["env"].as_array_mut().unwrap().retain(|e| e["name"] != "DEBUG");

    let applied = apply_object(&client, &r, &next).await.unwrap();
    let labels = applied["metadata"]["labels"].as_object().unwrap();
    assert!(!labels.contains_key("tier"), "the label testbed no longer applies is gone: {labels:?}");
    assert_eq!(labels["team"], "blue", "another writer's label stays");
    assert_eq!(labels["testbed/workload"], "web");
    assert_eq!(applied["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"], "2026-01-05T10:00:00Z");
    assert_eq!(applied["spec"]["replicas"], 2);
    let names: Vec<&str> = applied["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["nginx", "injected"], "the sidecar testbed dropped is gone, the injected one stays");
    assert_eq!(applied["spec"]["template"]["spec"]["containers"][0]["env"], json!([{"name": "MODE", "value": "lab"}]));
    assert_eq!(applied["spec"]["revisionHistoryLimit"], 10, "defaults stay");
    assert_eq!(applied["metadata"]["generation"], 2, "the spec changed");
    assert_ne!(applied["metadata"]["resourceVersion"], first["metadata"]["resourceVersion"]);
    assert_eq!(applied["metadata"]["uid"], first["metadata"]["uid"], "the same object");
}

#[tokio::test]
async fn a_forced_apply_undoes_drift() {
    let fake = FakeKube::start(FakeState::karmada_apiserver()).await.unwrap();
    let client = client(&fake.config());
    let r = deployment_ref("web", "nginx");
    apply_object(&client, &r, &deployment("web", "nginx", 3)).await.unwrap();

    // Someone scales it and changes the image by hand.
    fake.update(|state| {
        let live = state.objects.get_mut(&r.api_path()).unwrap();
        live["spec"]["replicas"] = json!(7);
        live["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.25");
        live["metadata"]["labels"]["testbed/owner"] = json!("someone-else");
    });
    let drifted = get_object(&client, &r).await.unwrap().unwrap();
    assert_eq!(drifted["spec"]["replicas"], 7);

    let applied = apply_object(&client, &r, &deployment("web", "nginx", 3)).await.unwrap();
    assert_eq!(applied["spec"]["replicas"], 3);
    assert_eq!(applied["spec"]["template"]["spec"]["containers"][0]["image"], "nginx:1.27");
    assert_eq!(applied["metadata"]["labels"]["testbed/owner"], "lab");
    assert_eq!(applied["metadata"]["generation"], 2);
}

#[tokio::test]
async fn objects_are_listed_by_label_across_namespaces() {
    let fake = FakeKube::start(FakeState::karmada_apiserver()).await.unwrap();
    let client = client(&fake.config());
    for (r, body) in [
        config_map("a", "one", Some("w1")),
        config_map("b", "two", Some("w2")),
        config_map("b", "three", Some("w1")),
        config_map("a", "theirs", None),
    ] {
        apply_object(&client, &r, &body).await.unwrap();
    }
    let names = |items: &[Value]| -> Vec<String> {
        items
            .iter()
            .map(|o| {
                format!("{}/{}", o["metadata"]["namespace"].as_str().unwrap(), o["metadata"]["name"].as_str().unwrap())
            })
            .collect()
    };

    let owned = list_objects(&client, "", "v1", "ConfigMap", "configmaps", "testbed/owner=lab").await.unwrap();
    assert_eq!(names(&owned), ["a/one", "b/three", "b/two"]);
    assert!(owned.iter().all(|o| o["apiVersion"] == "v1" && o["kind"] == "ConfigMap"), "{owned:?}");

    let w1 = list_objects(&client, "", "v1", "ConfigMap", "configmaps", "testbed/owner=lab,testbed/workload=w1")
        .await
        .unwrap();
    assert_eq!(names(&w1), ["a/one", "b/three"]);

    let labelled = list_objects(&client, "", "v1", "ConfigMap", "configmaps", "testbed/workload").await.unwrap();
    assert_eq!(labelled.len(), 3, "the existence of a key");
    let everything = list_objects(&client, "", "v1", "ConfigMap", "configmaps", "").await.unwrap();
    assert_eq!(everything.len(), 4);

    assert!(fake.requests().iter().any(|q| q.starts_with("GET /api/v1/configmaps?")
        && q.contains("labelSelector=testbed%2Fowner%3Dlab%2Ctestbed%2Fworkload%3Dw1")));

    // The raw list is a ConfigMapList whose items, of a built-in kind, carry no apiVersion and kind.
    let url = fake.url().to_owned();
    let (status, body) = tokio::task::spawn_blocking(move || {
        raw(&url, "GET", "/api/v1/namespaces/b/configmaps?labelSelector=testbed%2Fworkload%3Dw1", None, "")
    })
    .await
    .unwrap();
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let list: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(list["kind"], "ConfigMapList");
    assert_eq!(list["apiVersion"], "v1");
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert!(list["items"][0].get("kind").is_none());
}

#[tokio::test]
async fn a_deleted_object_is_gone_and_deleting_it_again_finds_nothing() {
    let fake = FakeKube::start(FakeState::karmada_apiserver()).await.unwrap();
    let client = client(&fake.config());
    let (ns_ref, ns) = namespace("web");
    apply_object(&client, &ns_ref, &ns).await.unwrap();
    let (cm, body) = config_map("web", "settings", Some("w1"));
    apply_object(&client, &cm, &body).await.unwrap();
    let r = deployment_ref("web", "nginx");
    apply_object(&client, &r, &deployment("web", "nginx", 1)).await.unwrap();

    assert!(delete_object(&client, &cm).await.unwrap(), "it existed");
    assert_eq!(get_object(&client, &cm).await.unwrap(), None);
    assert!(!delete_object(&client, &cm).await.unwrap(), "nothing left to delete");
    assert!(fake.requests().iter().any(|q| q.starts_with("DELETE /api/v1/namespaces/web/configmaps/settings")));

    // On the wire: 404 with the Status naming the object.
    let url = fake.url().to_owned();
    let (status, answer) =
        tokio::task::spawn_blocking(move || raw(&url, "GET", "/api/v1/namespaces/web/configmaps/settings", None, ""))
            .await
            .unwrap();
    assert!(status.starts_with("HTTP/1.1 404"), "{status}");
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["reason"], "NotFound");
    assert_eq!(answer["message"], "configmaps \"settings\" not found");
    assert_eq!(answer["details"]["name"], "settings");

    // A Deployment's deletion is answered with a Status, as kube-apiserver answers it.
    let url = fake.url().to_owned();
    let (status, answer) = tokio::task::spawn_blocking(move || {
        raw(&url, "DELETE", "/apis/apps/v1/namespaces/web/deployments/nginx", None, "")
    })
    .await
    .unwrap();
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["kind"], "Status");
    assert_eq!(answer["status"], "Success");
    assert_eq!(answer["details"]["name"], "nginx");
    assert_eq!(answer["details"]["kind"], "deployments");
    assert_eq!(answer["details"]["group"], "apps");

    // A namespace's deletion takes what is in it along.
    apply_object(&client, &cm, &body).await.unwrap();
    assert!(delete_object(&client, &ns_ref).await.unwrap());
    assert_eq!(get_object(&client, &ns_ref).await.unwrap(), None);
    assert_eq!(get_object(&client, &cm).await.unwrap(), None, "the namespace's content went with it");
    assert!(fake.state().objects.is_empty());
}

/// The answer to a plain-HTTP request: its status line and its body.
fn raw(url: &str, method: &str, path: &str, content_type: Option<&str>, body: &str) -> (String, String) {
    use std::io::{Read as _, Write as _};
    let authority = url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(authority).expect("connect");
    let content_type = content_type.map(|c| format!("Content-Type: {c}\r\n")).unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\n{content_type}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read");
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    (head.lines().next().unwrap_or_default().to_owned(), body.to_owned())
}

#[tokio::test]
async fn an_apply_without_a_field_manager_is_refused_as_kube_apiserver_refuses_it() {
    let fake = FakeKube::start(FakeState::karmada_apiserver()).await.unwrap();
    let (_, body) = config_map("web", "settings", None);
    let url = fake.url().to_owned();
    let text = body.to_string();
    let (status, answer) = tokio::task::spawn_blocking(move || {
        raw(
            &url,
            "PATCH",
            "/api/v1/namespaces/web/configmaps/settings?force=true",
            Some("application/apply-patch+yaml"),
            &text,
        )
    })
    .await
    .unwrap();
    assert!(status.starts_with("HTTP/1.1 422"), "{status}");
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["reason"], "Invalid");
    assert_eq!(
        answer["message"],
        "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"
    );
    assert_eq!(answer["details"]["causes"][0]["field"], "fieldManager");
    assert!(fake.state().objects.is_empty(), "nothing was written");

    // With a manager, the same request creates it; a body naming another object is refused.
    let url = fake.url().to_owned();
    let (status, _) = tokio::task::spawn_blocking(move || {
        raw(
            &url,
            "PATCH",
            "/api/v1/namespaces/web/configmaps/settings?fieldManager=someone",
            Some("application/apply-patch+yaml"),
            &body.to_string(),
        )
    })
    .await
    .unwrap();
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let client = client(&fake.config());
    let other = ObjectRef::new("v1", "ConfigMap", "configmaps", Some("web"), "other");
    let (_, named_settings) = config_map("web", "settings", None);
    let error = apply_object(&client, &other, &named_settings).await.unwrap_err();
    assert!(error.to_string().contains("does not match the name on the URL"), "{error}");
    let (_, elsewhere) = config_map("db", "other", None);
    let error = apply_object(&client, &other, &elsewhere).await.unwrap_err();
    assert!(error.to_string().contains("namespace of the provided object does not match"), "{error}");
}

#[tokio::test]
async fn a_secrets_string_data_is_folded_into_its_data() {
    let fake = FakeKube::start(FakeState::karmada_apiserver()).await.unwrap();
    let client = client(&fake.config());
    let b64 = base64::engine::general_purpose::STANDARD;
    let r = ObjectRef::new("v1", "Secret", "secrets", Some("web"), "credentials");
    let body = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "credentials", "namespace": "web"},
        "data": {"user": b64.encode("admin")},
        "stringData": {"password": "hunter2"},
    });
    let applied = apply_object(&client, &r, &body).await.unwrap();
    assert_eq!(applied["data"], json!({"user": b64.encode("admin"), "password": b64.encode("hunter2")}));
    assert!(applied.get("stringData").is_none(), "stringData is never served: {applied}");
    assert_eq!(applied["type"], "Opaque");
    let read = get_object(&client, &r).await.unwrap().unwrap();
    assert_eq!(read, applied);
    // Re-applied, nothing changes; without the password, it goes.
    assert_eq!(apply_object(&client, &r, &body).await.unwrap(), applied);
    let mut without = body.clone();
    without.as_object_mut().unwrap().remove("stringData");
    let applied = apply_object(&client, &r, &without).await.unwrap();
    assert_eq!(applied["data"], json!({"user": b64.encode("admin")}));
}

/// Three ResourceBindings as karmada-controller-manager and karmada-scheduler leave them (shape from karmada
/// `pkg/apis/work/v1alpha2/binding_types.go`; reasons and messages from its scheduler and
/// `pkg/util/helper/workstatus.go`): a Deployment divided over two healthy members, a ConfigMap applied on one
/// member and failing on the other, and a Deployment no cluster fits.
fn bindings() -> Vec<Value> {
    vec![
        json!({
            "apiVersion": "work.karmada.io/v1alpha2",
            "kind": "ResourceBinding",
            "metadata": {
                "name": "nginx-deployment",
                "namespace": "web",
                "uid": "5f0c3c1e-2d4b-4f0e-9a57-1b2c3d4e5f60",
                "resourceVersion": "4242",
                "generation": 2,
                "creationTimestamp": "2026-01-05T09:02:00Z",
                "labels": {"propagationpolicy.karmada.io/permanent-id": "0d2f6c4e-8b1a-4c3d-9e5f-6a7b8c9d0e1f"},
                "annotations": {
                    "propagationpolicy.karmada.io/name": "nginx",
                    "propagationpolicy.karmada.io/namespace": "web",
                },
                "finalizers": ["karmada.io/binding-controller"],
                "ownerReferences": [{
                    "apiVersion": "apps/v1", "kind": "Deployment", "name": "nginx",
                    "uid": "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d", "controller": true, "blockOwnerDeletion": true,
                }],
            },
            "spec": {
                "resource": {
                    "apiVersion": "apps/v1", "kind": "Deployment", "namespace": "web", "name": "nginx",
                    "uid": "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d", "resourceVersion": "4200",
                },
                "replicas": 3,
                "replicaRequirements": {"resourceRequest": {"cpu": "100m", "memory": "64Mi"}},
                "clusters": [{"name": "member1", "replicas": 2}, {"name": "member2", "replicas": 1}],
                "placement": {
                    "clusterAffinity": {"clusterNames": ["member1", "member2"]},
                    "replicaScheduling": {
                        "replicaSchedulingType": "Divided",
                        "replicaDivisionPreference": "Weighted",
                        "weightPreference": {"staticWeightList": [
                            {"targetCluster": {"clusterNames": ["member1"]}, "weight": 2},
                            {"targetCluster": {"clusterNames": ["member2"]}, "weight": 1},
                        ]},
                    },
                },
                "schedulerName": "default-scheduler",
                "conflictResolution": "Abort",
            },
            "status": {
                "schedulerObservedGeneration": 2,
                "lastScheduledTime": "2026-01-05T09:02:01Z",
                "conditions": [
                    {"type": "Scheduled", "status": "True", "reason": "Success",
                     "message": "Binding has been scheduled successfully.", "lastTransitionTime": "2026-01-05T09:02:01Z"},
                    {"type": "FullyApplied", "status": "True", "reason": "FullyAppliedSuccess",
                     "message": "All works have been successfully applied", "lastTransitionTime": "2026-01-05T09:02:03Z"},
                ],
                "aggregatedStatus": [
                    {"clusterName": "member1", "applied": true, "health": "Healthy",
                     "status": {"replicas": 2, "readyReplicas": 2, "availableReplicas": 2, "updatedReplicas": 2,
                                "generation": 1, "observedGeneration": 1, "resourceTemplateGeneration": 2}},
                    {"clusterName": "member2", "applied": true, "health": "Healthy",
                     "status": {"replicas": 1, "readyReplicas": 1, "availableReplicas": 1, "updatedReplicas": 1,
                                "generation": 1, "observedGeneration": 1, "resourceTemplateGeneration": 2}},
                ],
            },
        }),
        json!({
            "apiVersion": "work.karmada.io/v1alpha2",
            "kind": "ResourceBinding",
            "metadata": {"name": "settings-configmap", "namespace": "web", "generation": 1},
            "spec": {
                "resource": {"apiVersion": "v1", "kind": "ConfigMap", "namespace": "web", "name": "settings"},
                "clusters": [{"name": "member1"}, {"name": "member2"}],
            },
            "status": {
                "schedulerObservedGeneration": 1,
                "conditions": [
                    {"type": "Scheduled", "status": "True", "reason": "Success",
                     "message": "Binding has been scheduled successfully.", "lastTransitionTime": "2026-01-05T09:02:01Z"},
                    {"type": "FullyApplied", "status": "False", "reason": "FullyAppliedFailed",
                     "message": "Failed to apply all works, see status.aggregatedStatus for details",
                     "lastTransitionTime": "2026-01-05T09:02:03Z"},
                ],
                "aggregatedStatus": [
                    {"clusterName": "member1", "applied": true, "health": "Healthy"},
                    {"clusterName": "member2", "appliedMessage": "Failed to apply all manifests (0/1): namespaces \"web\" not found",
                     "health": "Unknown"},
                ],
            },
        }),
        json!({
            "apiVersion": "work.karmada.io/v1alpha2",
            "kind": "ResourceBinding",
            "metadata": {"name": "db-deployment", "namespace": "data", "generation": 3},
            "spec": {
                "resource": {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "data", "name": "db"},
                "replicas": 1,
            },
            "status": {
                "schedulerObservedGeneration": 2,
                "conditions": [
                    {"type": "Scheduled", "status": "False", "reason": "NoClusterFit",
                     "message": "0/2 clusters are available: 2 cluster(s) did not match the placement cluster affinity constraint.",
                     "lastTransitionTime": "2026-01-05T09:05:00Z"},
                ],
            },
        }),
    ]
}

#[tokio::test]
async fn resource_bindings_are_read_as_karmada_writes_them() {
    let mut state = FakeState::karmada_apiserver();
    state.resource_bindings = bindings();
    let fake = FakeKube::start(state).await.unwrap();
    let client = client(&fake.config());

    let all = resource_bindings(&client).await.unwrap();
    let names: Vec<String> = all.iter().map(|b| format!("{}/{}", b.namespace, b.name)).collect();
    assert_eq!(names, ["data/db-deployment", "web/nginx-deployment", "web/settings-configmap"], "sorted");
    assert!(fake.requests().iter().any(|q| q.starts_with("GET /apis/work.karmada.io/v1alpha2/resourcebindings")));

    let nginx = &all[1];
    assert_eq!(nginx.generation, Some(2));
    assert_eq!(nginx.resource.api_version, "apps/v1");
    assert_eq!(nginx.resource.kind, "Deployment");
    assert_eq!(nginx.resource.namespace.as_deref(), Some("web"));
    assert_eq!(nginx.resource.name, "nginx");
    assert_eq!(nginx.replicas, Some(3));
    let clusters: Vec<(&str, Option<i32>)> = nginx.clusters.iter().map(|c| (c.name.as_str(), c.replicas)).collect();
    assert_eq!(clusters, [("member1", Some(2)), ("member2", Some(1))]);
    let scheduled = nginx.scheduled.as_ref().unwrap();
    assert_eq!(scheduled.status, ConditionStatus::True);
    assert_eq!(scheduled.reason.as_deref(), Some("Success"));
    assert_eq!(scheduled.message.as_deref(), Some("Binding has been scheduled successfully."));
    assert_eq!(nginx.fully_applied.as_ref().unwrap().reason.as_deref(), Some("FullyAppliedSuccess"));
    assert!(nginx.is_scheduled() && nginx.is_scheduled_current() && nginx.is_fully_applied() && nginx.is_healthy());
    let member1 = nginx.health_on("member1").unwrap();
    assert!(member1.applied && member1.health == "Healthy" && member1.message.is_none());
    assert_eq!(member1.status.as_ref().unwrap()["readyReplicas"], 2);

    let settings = &all[2];
    assert_eq!(settings.replicas, None);
    assert!(settings.clusters.iter().all(|c| c.replicas.is_none()), "a kind without replicas");
    assert!(settings.is_scheduled());
    assert!(!settings.is_fully_applied());
    assert!(!settings.is_healthy());
    let member2 = settings.health_on("member2").unwrap();
    assert!(!member2.applied, "Karmada leaves applied out when false");
    assert_eq!(member2.health, "Unknown");
    assert_eq!(member2.message.as_deref(), Some("Failed to apply all manifests (0/1): namespaces \"web\" not found"));
    assert_eq!(member2.status, None);

    let db = &all[0];
    assert!(!db.is_scheduled());
    assert!(!db.is_scheduled_current());
    assert_eq!(db.scheduled.as_ref().unwrap().reason.as_deref(), Some("NoClusterFit"));
    assert!(db.clusters.is_empty());
    assert!(db.fully_applied.is_none());
    assert!(!db.is_healthy());

    let r = deployment_ref("web", "nginx");
    assert_eq!(binding_of(&all, &r).map(|b| b.name.as_str()), Some("nginx-deployment"));
    assert!(binding_of(&all, &deployment_ref("web", "other")).is_none());

    // The namespaced list and one binding are served too.
    let url = fake.url().to_owned();
    let (status, body) = tokio::task::spawn_blocking(move || {
        raw(&url, "GET", "/apis/work.karmada.io/v1alpha2/namespaces/web/resourcebindings", None, "")
    })
    .await
    .unwrap();
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let list: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(list["kind"], "ResourceBindingList");
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    let one = ObjectRef::new(
        "work.karmada.io/v1alpha2",
        "ResourceBinding",
        "resourcebindings",
        Some("data"),
        "db-deployment",
    );
    let got = get_object(&client, &one).await.unwrap().unwrap();
    assert_eq!(got["status"]["conditions"][0]["reason"], "NoClusterFit");

    // A host cluster does not serve them.
    let host = FakeKube::start(FakeState::host_cluster()).await.unwrap();
    let error = resource_bindings(&self::client(&host.config())).await.unwrap_err();
    assert!(matches!(error, KubeObserveError::NotServed { .. }), "{error:?}");
    assert!(error.to_string().contains("work.karmada.io/v1alpha2 resourcebindings"), "{error}");
}

#[tokio::test]
async fn a_kind_the_server_does_not_serve_is_not_served_not_missing() {
    let host = FakeKube::start(FakeState::host_cluster()).await.unwrap();
    let client = client(&host.config());
    let pp =
        ObjectRef::new("policy.karmada.io/v1alpha1", "PropagationPolicy", "propagationpolicies", Some("web"), "nginx");
    for error in [
        get_object(&client, &pp).await.unwrap_err(),
        delete_object(&client, &pp).await.unwrap_err(),
        apply_object(&client, &pp, &json!({"apiVersion": "policy.karmada.io/v1alpha1", "kind": "PropagationPolicy", "metadata": {"name": "nginx"}}))
            .await
            .unwrap_err(),
        list_objects(&client, "policy.karmada.io", "v1alpha1", "PropagationPolicy", "propagationpolicies", "")
            .await
            .unwrap_err(),
    ] {
        assert!(matches!(error, KubeObserveError::NotServed { .. }), "{error:?}");
        assert!(error.to_string().contains("Karmada API server"), "{error}");
    }
}

#[tokio::test]
async fn the_typed_state_and_the_store_are_served_together() {
    let fake = FakeKube::start(FakeState::host_with_karmada()).await.unwrap();
    let client = client(&fake.config());
    let (ns_ref, ns) = namespace("web");
    apply_object(&client, &ns_ref, &ns).await.unwrap();
    let r = deployment_ref(KARMADA_NAMESPACE, "extra");
    apply_object(&client, &r, &deployment(KARMADA_NAMESPACE, "extra", 1)).await.unwrap();

    // The typed namespace and the stored one.
    assert!(namespace_labels(&client, KARMADA_NAMESPACE).await.unwrap().is_some());
    let web = namespace_labels(&client, "web").await.unwrap().expect("the applied namespace");
    assert_eq!(web.get("testbed/owner").map(String::as_str), Some("lab"));
    let all = list_objects(&client, "", "v1", "Namespace", "namespaces", "").await.unwrap();
    let names: Vec<&str> = all.iter().map(|n| n["metadata"]["name"].as_str().unwrap()).collect();
    assert_eq!(names, [KARMADA_NAMESPACE, "web"]);
    let owned = list_objects(&client, "", "v1", "Namespace", "namespaces", "testbed/owner=lab").await.unwrap();
    assert_eq!(owned.len(), 1);

    // The typed control plane is unchanged, the stored Deployment is listed along.
    assert!(control_plane(&client).await.unwrap().is_healthy());
    let deployments = list_objects(&client, "apps", "v1", "Deployment", "deployments", "").await.unwrap();
    assert_eq!(deployments.len(), 7);
    let typed = deployment_ref(KARMADA_NAMESPACE, "karmada-scheduler");
    assert_eq!(get_object(&client, &typed).await.unwrap().unwrap()["spec"]["replicas"], 1);

    // A merge patch reaches a stored object too.
    testbed_kube::set_namespace_label(&client, "web", "team", Some("blue")).await.unwrap();
    let web = namespace_labels(&client, "web").await.unwrap().unwrap();
    assert_eq!(web.get("team").map(String::as_str), Some("blue"));
    assert_eq!(web.get("testbed/owner").map(String::as_str), Some("lab"));

    // The typed objects are the state's, not the store's: they are not deleted through the API.
    let error = delete_object(&client, &typed).await.unwrap_err();
    assert!(error.to_string().contains("405"), "{error}");
    fake.update(|state| state.put_namespace(FakeNamespace::new("other")));
    assert!(namespace_labels(&client, "other").await.unwrap().is_some());
}

#[tokio::test]
async fn every_write_reaches_the_sink_and_a_world_that_keeps_it_serves_it_back() {
    // A world outside the fake, as the simulated one: it gives the state at each request and keeps writes.
    let world = Arc::new(Mutex::new(FakeState::karmada_apiserver()));
    let writes = Arc::new(Mutex::new(Vec::<FakeWrite>::new()));
    let source: StateSource = {
        let world = world.clone();
        Arc::new(move || Some(world.lock().unwrap().clone()))
    };
    let sink: StateSink = {
        let (world, writes) = (world.clone(), writes.clone());
        Arc::new(move |write: &FakeWrite| {
            if let FakeWrite::Object { path, object } = write {
                let mut world = world.lock().unwrap();
                match object {
                    Some(object) => world.objects.insert(path.clone(), object.clone()),
                    None => world.objects.remove(path),
                };
            }
            writes.lock().unwrap().push(write.clone());
        })
    };
    let tls = FakeTls::generate("world-ca");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let fake = FakeKube::serve_tls_with(listener, &tls, source, Some(sink)).unwrap();
    let client = client(&fake.config());

    let (cm, body) = config_map("web", "settings", Some("w1"));
    let created = apply_object(&client, &cm, &body).await.unwrap();
    let mut changed = body.clone();
    changed["data"]["greeting"] = json!("bonjour");
    let updated = apply_object(&client, &cm, &changed).await.unwrap();
    assert_eq!(apply_object(&client, &cm, &changed).await.unwrap(), updated, "the world kept the object");
    assert!(delete_object(&client, &cm).await.unwrap());
    assert_eq!(get_object(&client, &cm).await.unwrap(), None);

    let path = cm.api_path();
    assert_eq!(
        *writes.lock().unwrap(),
        [
            FakeWrite::Object { path: path.clone(), object: Some(created) },
            FakeWrite::Object { path: path.clone(), object: Some(updated) },
            FakeWrite::Object { path, object: None },
        ],
        "a create, an update (the no-op apply wrote nothing), a delete"
    );
}

/// Asserts that neither the error's Display nor its Debug shows the token.
fn assert_no_token(error: &KubeObserveError) {
    let shown = format!("{error} // {error:?}");
    assert!(!shown.contains(TOKEN), "the token leaked: {shown}");
    assert!(!shown.contains("very-secret"), "part of the token leaked: {shown}");
}

#[tokio::test]
async fn errors_from_an_unreachable_server_name_it_and_carry_no_credentials() {
    let nowhere = unused_url().await.unwrap();
    let url = nowhere.url().to_owned();
    let client = client(&ApiConfig::new(url.clone()).with_credentials(Credentials::token(TOKEN)));
    let r = deployment_ref("web", "nginx");
    for error in [
        apply_object(&client, &r, &deployment("web", "nginx", 1)).await.unwrap_err(),
        get_object(&client, &r).await.unwrap_err(),
        list_objects(&client, "apps", "v1", "Deployment", "deployments", "testbed/owner=lab").await.unwrap_err(),
        delete_object(&client, &r).await.unwrap_err(),
        resource_bindings(&client).await.unwrap_err(),
    ] {
        assert!(error.is_unreachable(), "{error:?}");
        assert_eq!(error.server(), url);
        assert!(error.to_string().contains("connection was refused"), "{error}");
        assert_no_token(&error);
    }

    // A server that refuses the token says so without showing it.
    let mut state = FakeState::karmada_apiserver();
    state.required_token = Some("the-right-token".into());
    let fake = FakeKube::start(state).await.unwrap();
    let wrong = self::client(&fake.config().with_credentials(Credentials::token(TOKEN)));
    let error = apply_object(&wrong, &r, &deployment("web", "nginx", 1)).await.unwrap_err();
    assert!(matches!(error, KubeObserveError::Unauthorized { .. }), "{error:?}");
    assert_no_token(&error);
}
