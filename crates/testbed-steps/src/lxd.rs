//! The LXD layer's REST calls (crates/testbed-lxd makes them).

use testbed_plan::{Action, Kind, Op};

use crate::*;

/// How long applying a proxy that follows a pod waits for a Ready pod (crates/testbed-lxd's default).
pub const POD_WAIT_SECS: u64 = 300;
/// How long it then waits for a request through the proxy to get an answer.
pub const ANSWER_WAIT_SECS: u64 = 30;

/// `a=b,c=d` as a query parameter value: `a%3Db%2Cc%3Dd` (`/` too, as kube's client sends it).
fn query_value(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The steps of a proxy that follows a pod: the pod is found (waited for until one is Ready), the device
/// connects to its address, and a request through the host port must get an answer.
fn pod_proxy(a: &Action, cx: &Context, pod: &testbed_plan::PodTarget, device: Step) -> Vec<Step> {
    let m = member(a);
    let listen = setting(a, "listen");
    let at = listen.strip_prefix("tcp:").unwrap_or(listen).replace("0.0.0.0:", "127.0.0.1:");
    vec![
        Step::Call {
            api: "kubernetes",
            method: "GET",
            path: format!("/api/v1/namespaces/{}/pods?labelSelector={}", pod.namespace, query_value(&pod.selector)),
            note: format!(
                "{m}'s API through {}/{m}.config: the first Ready pod by name, its podIP; asked again until one is Ready, at most {POD_WAIT_SECS} s",
                cx.kubeconfig_dir
            ),
            purpose: Purpose::Shown,
        },
        device,
        Step::Wait {
            what: format!(
                "an answer through {at}: GET / HTTP/1.0, at least one byte back (LXD's proxy accepts a connection even when nothing listens behind it)"
            ),
            timeout_secs: ANSWER_WAIT_SECS,
        },
    ]
}

/// The LXD layer's REST calls (crates/testbed-lxd does them).
pub(crate) fn steps(a: &Action, op: Op, cx: &Context) -> Vec<Step> {
    let name = a.address.as_str().rsplit('.').next().unwrap_or_default().to_owned();
    let m = member(a);
    let call = |method: &'static str, path: String, note: String| Step::Call {
        api: "lxd",
        method,
        path,
        note,
        purpose: Purpose::Shown,
    };
    match (a.kind, op) {
        (Kind::LxdNetwork, Op::Create) => vec![call(
            "POST",
            "/1.0/networks".into(),
            format!("bridge {name}, ipv4.address {}", setting(a, "ipv4.address")),
        )],
        (Kind::LxdNetwork, Op::Update) => vec![call("PATCH", format!("/1.0/networks/{name}"), String::new())],
        (Kind::LxdStoragePool, Op::Create) => {
            vec![call("POST", "/1.0/storage-pools".into(), format!("{name}, driver {}", setting(a, "driver")))]
        }
        (Kind::LxdStoragePool, Op::Update) => vec![call("PATCH", format!("/1.0/storage-pools/{name}"), String::new())],
        (Kind::LxdProfile, Op::Create) => vec![call("POST", "/1.0/profiles".into(), name)],
        (Kind::LxdProfile, Op::Update) => vec![call("PUT", format!("/1.0/profiles/{name}"), String::new())],
        (Kind::LxdInstance, Op::Create) => vec![
            call(
                "POST",
                "/1.0/instances".into(),
                format!("{m} from {}, eth0 {} on {}", setting(a, "image"), setting(a, "ipv4"), setting(a, "network")),
            ),
            call("PUT", format!("/1.0/instances/{m}/state"), "start".into()),
        ],
        (Kind::LxdInstance, Op::Update) => vec![
            call("PUT", format!("/1.0/instances/{m}"), "config, devices, profiles".into()),
            call("PUT", format!("/1.0/instances/{m}/state"), "start, if stopped".into()),
        ],
        (Kind::LxdInstance, Op::Delete) => vec![
            call("PUT", format!("/1.0/instances/{m}/state"), "stop, if running".into()),
            call("DELETE", format!("/1.0/instances/{m}"), String::new()),
        ],
        (Kind::Proxy, Op::Delete) => vec![call("PUT", format!("/1.0/instances/{m}"), format!("without device {name}"))],
        (Kind::Proxy, _) => {
            let pod = a.desired.as_ref().and_then(|r| testbed_plan::desired::pod_of(&r.spec));
            let connect = match &pod {
                Some(pod) => format!("tcp:<pod-ip>:{}", pod.port),
                None => setting(a, "connect").to_owned(),
            };
            let device = call(
                "PUT",
                format!("/1.0/instances/{m}"),
                format!(
                    "device {name}: listen {}, connect {connect}, bind {}",
                    setting(a, "listen"),
                    setting(a, "bind")
                ),
            );
            match &pod {
                Some(pod) => pod_proxy(a, cx, pod, device),
                None => vec![device],
            }
        }
        (k, Op::Delete) => vec![call("DELETE", format!("/1.0/{}/{name}", lxd_collection(k)), String::new())],
        _ => vec![],
    }
}

fn lxd_collection(k: Kind) -> &'static str {
    match k {
        Kind::LxdNetwork => "networks",
        Kind::LxdStoragePool => "storage-pools",
        _ => "profiles",
    }
}
