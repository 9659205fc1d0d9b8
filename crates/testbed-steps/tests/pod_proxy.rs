//! What `apply --dry-run` shows for a proxy that follows a pod: the pod looked up through the member's
//! kubeconfig, the device pointed at its address, and the wait for an answer through the host port; a
//! proxy to a fixed address is its device alone.

use std::path::Path;

use testbed_plan::{desired, plan, ObservedState};
use testbed_steps::{Context, Step};

const FILE: &str = r#"
[host]
kubeconfig_dir = "/home/me/lab/kubeconfigs"

[[members]]
name = "member1"
api_port = 16441

[[proxies]]
name = "prometheus"
member = "member1"
host_port = 9091
pod = { namespace = "monitoring", selector = "app.kubernetes.io/name=prometheus,tier=web", port = 9090 }

[[proxies]]
name = "fixed"
member = "member1"
host_port = 9092
listen = "0.0.0.0"
target = "tcp:127.0.0.1:8080"
"#;

fn shown(address: &str) -> Vec<String> {
    let config = testbed_config::parse(Path::new("testbed.toml"), FILE).expect("valid");
    let cx = Context::new(&config);
    let d = desired::build(&config, &ObservedState::default());
    let p = plan(&d, &ObservedState::default()).expect("plans");
    let a = p.actions().into_iter().find(|a| a.address.as_str() == address).expect("planned");
    testbed_steps::steps(a, &cx).iter().map(Step::to_string).collect()
}

#[test]
fn a_pod_proxy_looks_the_pod_up_points_the_device_at_it_and_waits_for_an_answer() {
    assert_eq!(
        shown("proxy.member1.prometheus"),
        [
            "kubernetes: GET /api/v1/namespaces/monitoring/pods?labelSelector=app.kubernetes.io%2Fname%3Dprometheus%2Ctier%3Dweb  (member1's API through /home/me/lab/kubeconfigs/member1.config: the first Ready pod by name, its podIP; asked again until one is Ready, at most 300 s)",
            "lxd: PUT /1.0/instances/member1  (device prometheus: listen tcp:127.0.0.1:9091, connect tcp:<pod-ip>:9090, bind host)",
            "wait for an answer through 127.0.0.1:9091: GET / HTTP/1.0, at least one byte back (LXD's proxy accepts a connection even when nothing listens behind it) (at most 30 s)",
        ]
    );
}

#[test]
fn a_proxy_to_a_fixed_address_is_its_device_alone() {
    assert_eq!(
        shown("proxy.member1.fixed"),
        ["lxd: PUT /1.0/instances/member1  (device fixed: listen tcp:0.0.0.0:9092, connect tcp:127.0.0.1:8080, bind host)"]
    );
}
