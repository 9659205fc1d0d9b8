//! The LXD layer's REST calls (crates/testbed-lxd makes them).

use testbed_plan::{Action, Kind, Op};

use crate::*;

/// The LXD layer's REST calls (crates/testbed-lxd does them).
pub(crate) fn steps(a: &Action, op: Op) -> Vec<Step> {
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
        (Kind::Proxy, _) => vec![call(
            "PUT",
            format!("/1.0/instances/{m}"),
            format!(
                "device {name}: listen {}, connect {}, bind {}",
                setting(a, "listen"),
                setting(a, "connect"),
                setting(a, "bind")
            ),
        )],
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
