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
