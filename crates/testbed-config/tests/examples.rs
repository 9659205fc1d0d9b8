//! The repository's `testbed.toml` and every file in `examples/` parse and validate, and say what their
//! comments say.

use std::path::{Path, PathBuf};

use testbed_config::{Config, JoinMode};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn load(rel: &str) -> Config {
    let path = repo().join(rel);
    testbed_config::load(&path).unwrap_or_else(|e| panic!("{rel} does not validate:\n{}", e.lines().join("\n")))
}

fn members(c: &Config) -> Vec<(&str, u16)> {
    c.file.members.iter().map(|m| (m.name.as_str(), m.api_port)).collect()
}

/// The `#:schema` directive on the first line must name the committed schema, relative to the file.
fn assert_schema_directive(rel: &str) {
    let path = repo().join(rel);
    let text = std::fs::read_to_string(&path).unwrap();
    let first = text.lines().next().unwrap_or_default();
    let target = first
        .strip_prefix("#:schema ")
        .unwrap_or_else(|| panic!("{rel}: the first line must be a `#:schema` directive, found {first:?}"));
    let schema = path.parent().unwrap().join(target);
    assert!(
        schema.canonicalize().ok() == repo().join("testbed.schema.json").canonicalize().ok(),
        "{rel}: `{first}` does not point at testbed.schema.json"
    );
}

#[test]
fn root_file_is_the_seeds_testbed() {
    let c = load("testbed.toml");
    assert_schema_directive("testbed.toml");
    assert_eq!(members(&c), [("member1", 16441), ("member2", 16442), ("member3", 16444)]);
    assert!(c.file.members.iter().all(|m| c.join_mode(m) == JoinMode::Push));
    assert_eq!(c.file.registry.port, 32000);
    assert_eq!(c.file.karmada.api_port, 32443);
    // The file spells out the defaults; keep it honest when a default changes.
    assert_eq!(c.file.host, testbed_config::Host::default());
    assert_eq!(c.file.lxd, testbed_config::Lxd::default());
    assert_eq!(c.file.registry, testbed_config::Registry::default());
    assert_eq!(c.file.karmada, testbed_config::Karmada::default());
    assert!(c.file.images.is_empty() && c.file.proxies.is_empty());
}

#[test]
fn every_example_validates() {
    let dir = repo().join("examples");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "custom-image.toml",
            "failover.toml",
            "four-members.toml",
            "monitoring.toml",
            "nginx-demo.toml",
            "pull-mode.toml",
            "testenv-incus.toml",
            "testenv.toml",
            "three-members.toml",
            "three-tier.toml"
        ]
    );
    for n in &names {
        let rel = format!("examples/{n}");
        load(&rel);
        assert_schema_directive(&rel);
    }
}

/// testenv-incus.toml is testenv.toml on Incus: the same lab (pool, image, profile settings, mirrors, Karmada,
/// members) with its own name, bridge, subnet and host ports, so that both can be applied at once.
#[test]
fn testenv_incus_is_testenv_on_incus() {
    let lxd = load("examples/testenv.toml").file;
    let incus = load("examples/testenv-incus.toml").file;
    assert_eq!(lxd.lxd.backend, testbed_config::Backend::Lxd);
    assert_eq!(incus.lxd.backend, testbed_config::Backend::Incus);
    assert_ne!(incus.name, lxd.name);
    assert_ne!(incus.lxd.bridge, lxd.lxd.bridge);
    assert_ne!(incus.lxd.ipv4_address, lxd.lxd.ipv4_address);
    let ports = |f: &testbed_config::TestbedFile| f.members.iter().map(|m| m.api_port).collect::<Vec<_>>();
    assert!(ports(&incus).iter().all(|p| !ports(&lxd).contains(p)), "{:?} {:?}", ports(&incus), ports(&lxd));
    let names = |f: &testbed_config::TestbedFile| f.members.iter().map(|m| m.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&incus), names(&lxd));
    assert_eq!(incus.karmada, lxd.karmada);
    assert_eq!(incus.registry, lxd.registry);
    assert_eq!(incus.host, lxd.host);
    let rest = |l: &testbed_config::Lxd| {
        (l.storage_pool.clone(), l.storage_driver.clone(), l.image.clone(), l.profile.clone(), l.profile_config.clone())
    };
    assert_eq!(rest(&incus.lxd), rest(&lxd.lxd));
}

#[test]
fn three_members_is_the_root_file() {
    let root = std::fs::read_to_string(repo().join("testbed.toml")).unwrap();
    let example = std::fs::read_to_string(repo().join("examples/three-members.toml")).unwrap();
    let body = |s: &str| s.split_once('\n').map(|(_, rest)| rest.to_owned()).unwrap_or_default();
    assert!(
        body(&root) == body(&example),
        "examples/three-members.toml must be testbed.toml with only the `#:schema` path changed"
    );
    assert_eq!(load("examples/three-members.toml").file, load("testbed.toml").file);
}

#[test]
fn four_members_adds_member4() {
    let c = load("examples/four-members.toml");
    assert_eq!(members(&c), [("member1", 16441), ("member2", 16442), ("member3", 16444), ("member4", 16445)]);
    let root = load("testbed.toml");
    assert_eq!(c.file.members[..3], root.file.members[..]);
    assert_eq!(c.file.karmada, root.file.karmada);
}

/// Seed 004's application: web, api and db in namespace mcapp, on one of two members at a time, failing over.
#[test]
fn three_tier_is_seed_fours_application_on_one_member_at_a_time() {
    let c = load("examples/three-tier.toml");
    let w = &c.file.workloads[0];
    assert_eq!(w.spread, Some(1));
    assert_eq!(w.failover.as_ref().map(|f| (f.toleration_seconds, f.purge_mode.as_str())), Some((60, "Gracefully")));
    let mut keys: Vec<String> = c.workloads[0].objects.iter().map(|o| o.key()).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "configmap/mcapp/postgres-init",
            "deployment/mcapp/api",
            "deployment/mcapp/web",
            "namespace/mcapp",
            "persistentvolumeclaim/mcapp/postgres-pvc",
            "secret/mcapp/postgres-secret",
            "service/mcapp/api",
            "service/mcapp/db",
            "service/mcapp/web",
            "statefulset/mcapp/db",
        ]
    );
    let object = |key: &str| &c.workloads[0].objects.iter().find(|o| o.key() == key).unwrap().object;
    assert_eq!(object("service/mcapp/web")["spec"]["ports"][0]["nodePort"], 30080);
    assert_eq!(object("deployment/mcapp/api")["spec"]["replicas"], 2);
    assert_eq!(object("persistentvolumeclaim/mcapp/postgres-pvc")["spec"]["resources"]["requests"]["storage"], "5Gi");
    assert_eq!(
        object("statefulset/mcapp/db")["spec"]["template"]["spec"]["containers"][0]["image"],
        "docker.io/library/postgres:16"
    );
}

/// Seed 001's nginx demo as a workload: a Deployment and its Service from a directory of manifests, on every
/// member, each running all the replicas of the image copied into the local registry.
#[test]
fn nginx_demo_runs_a_deployment_and_its_service_on_every_member() {
    let c = load("examples/nginx-demo.toml");
    assert_eq!(c.workloads.len(), 1);
    let w = &c.file.workloads[0];
    assert_eq!(
        (w.name.as_str(), w.members.as_ref(), w.replicas),
        ("nginx", None, Some(testbed_config::ReplicaMode::Duplicated))
    );
    let keys: Vec<String> = c.workloads[0].objects.iter().map(|o| o.key()).collect();
    assert_eq!(keys, ["deployment/default/nginx", "service/default/nginx"]);
    // Its image comes from the host's local registry, under the name it has on the host.
    let images: Vec<String> = c.file.images.iter().map(testbed_config::image_name).collect();
    assert_eq!(images, ["nginx"]);
    let deployment = &c.workloads[0].objects[0].object;
    assert_eq!(deployment["spec"]["template"]["spec"]["containers"][0]["image"], "localhost:32000/nginx:1.27");
}

#[test]
fn pull_mode_with_one_push_member() {
    let c = load("examples/pull-mode.toml");
    assert_eq!(c.file.karmada.join_mode, JoinMode::Pull);
    let modes: Vec<(&str, JoinMode)> = c.file.members.iter().map(|m| (m.name.as_str(), c.join_mode(m))).collect();
    assert_eq!(modes, [("member1", JoinMode::Pull), ("member2", JoinMode::Pull), ("member3", JoinMode::Push)]);
}

#[test]
fn custom_image_has_a_registry_image_a_sideload_and_a_proxy() {
    let c = load("examples/custom-image.toml");
    let images: Vec<(String, bool)> =
        c.file.images.iter().map(|i| (testbed_config::image_name(i), i.sideload)).collect();
    assert_eq!(images, [("nginx".to_owned(), false), ("flask-demo".to_owned(), true)]);
    let flask = &c.file.images[1];
    assert_eq!(flask.archive.as_deref(), Some("images/flask-demo-2.0.tar"));
    assert_eq!(c.file.proxies.len(), 1);
    let p = &c.file.proxies[0];
    assert_eq!(
        (p.name.as_str(), p.member.as_str(), p.host_port, p.target.as_deref()),
        ("flask-demo", "member1", 9092, None)
    );
    let pod = p.pod.as_ref().expect("the proxy follows the Flask demo's pod");
    assert_eq!(pod.describe(), "default/app=flask-demo:5000");
    assert_eq!(testbed_config::PodTarget::parse(&pod.describe()).as_ref(), Some(pod));
    assert_eq!(c.base_dir(), Path::new(&repo()).join("examples"));
}

/// Seeds 000 and 001's monitoring: Prometheus in `monitoring` on member1, reached on host port 9091 through a
/// proxy that follows its pod.
#[test]
fn monitoring_runs_prometheus_on_member1_behind_a_pod_proxy() {
    let c = load("examples/monitoring.toml");
    assert_eq!(c.file.workloads[0].members.as_deref(), Some(&["member1".to_owned()][..]));
    let keys: Vec<String> = c.workloads[0].objects.iter().map(|o| o.key()).collect();
    assert_eq!(
        keys,
        ["namespace/monitoring", "configmap/monitoring/prometheus-config", "deployment/monitoring/prometheus"]
    );
    let p = &c.file.proxies[0];
    assert_eq!((p.member.as_str(), p.host_port), ("member1", 9091));
    assert_eq!(
        p.pod.as_ref().map(|t| t.describe()).as_deref(),
        Some("monitoring/app.kubernetes.io/name=prometheus:9090")
    );
}
