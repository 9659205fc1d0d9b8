//! The control plane's images in the desired state: from the release table, or from the file's own list for a
//! Karmada version without one.

use std::path::Path;

use testbed_plan::desired::{self, DesiredState};
use testbed_plan::{Address, ObservedState};

fn desired(text: &str) -> DesiredState {
    let config = testbed_config::parse(Path::new("testbed.toml"), text)
        .unwrap_or_else(|e| panic!("invalid test config:\n{}", e.lines().join("\n")));
    desired::build(&config, &ObservedState::default())
}

fn addr(s: &str) -> Address {
    Address::parse(s).unwrap_or_else(|| panic!("{s} is not an address"))
}

/// `(address, source, target)` of every image resource, by address.
fn images(d: &DesiredState) -> Vec<(String, String, String)> {
    d.resources
        .values()
        .filter(|r| r.address.as_str().starts_with("image."))
        .map(|r| (r.address.to_string(), r.spec["source"].clone(), r.spec["target"].clone()))
        .collect()
}

fn deps(d: &DesiredState, a: &str) -> Vec<String> {
    let mut v: Vec<String> = d.resources[&addr(a)].depends_on.iter().map(|a| a.to_string()).collect();
    v.sort();
    v
}

const UNKNOWN_VERSION: &str = r#"[karmada]
version = "v1.99.0"

[[members]]
name = "member1"
api_port = 16441
join_mode = "pull"

[[members]]
name = "member2"
api_port = 16442

[[images]]
source = "docker.io/karmada/karmada-controller-manager:v1.99.0"

[[images]]
source = "docker.io/karmada/karmada-scheduler:v1.99.0"

[[images]]
source = "docker.io/karmada/karmada-webhook:v1.99.0"

[[images]]
source = "docker.io/karmada/karmada-aggregated-apiserver:v1.99.0"

[[images]]
name = "kube-apiserver"
source = "mirror.example:5000/k8s/apiserver:v1.35.0"

[[images]]
source = "registry.k8s.io/kube-controller-manager:v1.35.0"

[[images]]
source = "registry.k8s.io/etcd:3.6.5-0"

[[images]]
source = "docker.io/karmada/karmada-agent:v1.99.0-rc.1"

[[images]]
source = "docker.io/library/nginx:1.27"
"#;

#[test]
fn an_unknown_version_takes_the_listed_images_as_the_control_planes() {
    let d = desired(UNKNOWN_VERSION);
    let got = images(&d);
    let want = [
        ("image.etcd", "registry.k8s.io/etcd:3.6.5-0", "localhost:32000/etcd:3.6.5-0"),
        (
            "image.karmada-agent",
            "docker.io/karmada/karmada-agent:v1.99.0-rc.1",
            "localhost:32000/karmada-agent:v1.99.0-rc.1",
        ),
        (
            "image.karmada-aggregated-apiserver",
            "docker.io/karmada/karmada-aggregated-apiserver:v1.99.0",
            "localhost:32000/karmada-aggregated-apiserver:v1.99.0",
        ),
        (
            "image.karmada-controller-manager",
            "docker.io/karmada/karmada-controller-manager:v1.99.0",
            "localhost:32000/karmada-controller-manager:v1.99.0",
        ),
        (
            "image.karmada-scheduler",
            "docker.io/karmada/karmada-scheduler:v1.99.0",
            "localhost:32000/karmada-scheduler:v1.99.0",
        ),
        (
            "image.karmada-webhook",
            "docker.io/karmada/karmada-webhook:v1.99.0",
            "localhost:32000/karmada-webhook:v1.99.0",
        ),
        (
            "image.kube-apiserver",
            "mirror.example:5000/k8s/apiserver:v1.35.0",
            // The component's name, not the source repository's: init is pointed at this.
            "localhost:32000/kube-apiserver:v1.35.0",
        ),
        (
            "image.kube-controller-manager",
            "registry.k8s.io/kube-controller-manager:v1.35.0",
            "localhost:32000/kube-controller-manager:v1.35.0",
        ),
        // An ordinary registry image keeps its repository path.
        ("image.nginx", "docker.io/library/nginx:1.27", "localhost:32000/nginx:1.27"),
    ]
    .map(|(a, s, t)| (a.to_owned(), s.to_owned(), t.to_owned()));
    assert_eq!(got, want);

    // The control plane waits for its images, exactly like the table's; the pull member for the agent.
    assert_eq!(
        deps(&d, "karmada.control_plane"),
        [
            "host.addons",
            "host.nodeports",
            "host.packages",
            "image.etcd",
            "image.karmada-aggregated-apiserver",
            "image.karmada-controller-manager",
            "image.karmada-scheduler",
            "image.karmada-webhook",
            "image.kube-apiserver",
            "image.kube-controller-manager",
            "lxd_network.lxdbr0",
            "registry.local",
        ]
    );
    assert!(deps(&d, "karmada_member.member1").contains(&"image.karmada-agent".to_owned()));
    assert!(!deps(&d, "karmada_member.member2").contains(&"image.karmada-agent".to_owned()));
}

#[test]
fn a_known_version_takes_the_table() {
    let d = desired("[karmada]\nversion = \"v1.15.9\"\n\n[[members]]\nname = \"member1\"\napi_port = 16441\n");
    let got: Vec<(String, String)> = images(&d).into_iter().map(|(a, _, t)| (a, t)).collect();
    let want = [
        ("image.alpine", "localhost:32000/alpine:3.21.3"),
        ("image.etcd", "localhost:32000/etcd:3.5.16-0"),
        ("image.karmada-aggregated-apiserver", "localhost:32000/karmada-aggregated-apiserver:v1.15.9"),
        ("image.karmada-controller-manager", "localhost:32000/karmada-controller-manager:v1.15.9"),
        ("image.karmada-scheduler", "localhost:32000/karmada-scheduler:v1.15.9"),
        ("image.karmada-webhook", "localhost:32000/karmada-webhook:v1.15.9"),
        ("image.kube-apiserver", "localhost:32000/kube-apiserver:v1.31.3"),
        ("image.kube-controller-manager", "localhost:32000/kube-controller-manager:v1.31.3"),
    ]
    .map(|(a, t)| (a.to_owned(), t.to_owned()));
    assert_eq!(got, want, "no karmada-agent without a pull-mode member");
}
