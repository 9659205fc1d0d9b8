//! Host packages: what is observed from the search path and `karmadactl version`, and the exact commands
//! apply runs on Ubuntu and Debian, with the karmadactl archive checked against the release's checksum.

mod common;

use common::*;
use sha2::Digest;
use testbed_command::{Output, Reply, ScriptedRunner};
use testbed_plan::{Kind, Op, Owner};
use testbed_provider::{ErrorKind, Provider, ProviderError};

const FILE: &str = "[[members]]\nname = \"member1\"\napi_port = 16441\n";
const ARCHIVE: &[u8] = b"karmadactl-linux-amd64.tgz: the archive's bytes";
const URL: &str = "https://github.com/karmada-io/karmada/releases/download/v1.19.0/karmadactl-linux-amd64.tgz";

fn digest(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// A host with apt-get, curl and tar, and scripted installs that put each program in place.
fn fresh(os: &str, published: &str) -> (FakeHost, ScriptedRunner, testbed_config::Config) {
    let host = FakeHost::new(os);
    for p in ["/usr/bin/apt-get", "/usr/bin/curl", "/usr/bin/tar"] {
        host.program(p);
    }
    let root = host.root().to_path_buf();
    let r = ScriptedRunner::new();
    r.on(&["apt-get", "update"], Reply::ok("Reading package lists... Done\n"));
    r.on(
        &["apt-get", "install", "-y", "snapd"],
        installs(&root, "/usr/bin/snap", "Setting up snapd (2.68.3+24.04) ...\n"),
    );
    r.on(
        &["apt-get", "install", "-y", "lxd"],
        installs(&root, "/usr/bin/lxd", "Setting up lxd (5.0.2-5+deb12u6) ...\n"),
    );
    r.on(&["snap", "wait", "system", "seed.loaded"], Reply::ok(""));
    r.on(
        &["snap", "install", "kubectl"],
        installs(&root, "/snap/bin/kubectl", "kubectl 1.33.4 from Canonical✓ installed\n"),
    );
    r.on(
        &["snap", "install", "lxd"],
        installs(&root, "/snap/bin/lxd", "lxd 5.21.3-c5ae129 from Canonical✓ installed\n"),
    );
    r.on(&["lxd", "waitready"], Reply::ok(""));
    let archive_root = root.clone();
    r.on(
        &["curl", "-fsSL", "-o"],
        Reply::effect(move |_, argv| {
            let p = archive_root.join(argv[3].trim_start_matches('/'));
            std::fs::write(p, ARCHIVE).unwrap();
            Ok(Output::ok(""))
        }),
    );
    let sums = format!("{published}  karmadactl-linux-amd64.tgz\n");
    r.on(&["curl", "-fsSL", &format!("{URL}.sha256")], Reply::Output(Output::ok(sums)));
    r.on(&["tar", "-xzf"], installs(&root, "/usr/local/bin/karmadactl", ""));
    r.on(&["karmadactl", "version"], Reply::Output(Output::ok(karmadactl_version_line("v1.19.0"))));
    (host, r, config(FILE))
}

async fn apply(host: &FakeHost, r: &ScriptedRunner, cfg: &testbed_config::Config) -> Result<(), ProviderError> {
    let p = provider(host, r, cfg);
    let (log, _) = capture();
    p.apply(&action(Op::Create, wanted(cfg, "host.packages")), &log).await
}

#[tokio::test]
async fn a_fresh_ubuntu_gets_the_snaps_and_a_verified_karmadactl() {
    let (host, r, cfg) = fresh(UBUNTU_2404, &digest(ARCHIVE));
    apply(&host, &r, &cfg).await.unwrap();
    insta::assert_snapshot!(r.transcript().join("\n"), @r"
    host$ apt-get update
    host$ apt-get install -y snapd
    host$ snap wait system seed.loaded
    host$ snap install kubectl --classic
    host$ snap install lxd
    host$ lxd waitready --timeout=60
    host$ curl -fsSL -o /var/lib/testbed/downloads/karmadactl-v1.19.0-linux-amd64.tgz https://github.com/karmada-io/karmada/releases/download/v1.19.0/karmadactl-linux-amd64.tgz
    host$ curl -fsSL https://github.com/karmada-io/karmada/releases/download/v1.19.0/karmadactl-linux-amd64.tgz.sha256
    host$ tar -xzf /var/lib/testbed/downloads/karmadactl-v1.19.0-linux-amd64.tgz -C /usr/local/bin karmadactl
    host$ karmadactl version
    ");
    assert_eq!(
        host.read("/var/lib/testbed/host-packages").unwrap(),
        "# host packages testbed installed (it never removes them)\nkarmadactl\nkubectl\nlxd\nsnapd\n"
    );

    // Observed afterwards: everything the file wants, owned by testbed, at the file's version.
    let p = provider(&host, &r, &cfg);
    let obs = p.observe(&[wanted(&cfg, "host.packages")]).await.unwrap();
    let pk = obs.resources.iter().find(|o| o.kind == Kind::HostPackages).unwrap();
    assert_eq!(pk.owner, Owner::Testbed);
    assert_eq!(pk.spec.get("packages").map(String::as_str), Some("karmadactl,kubectl,lxd,snapd"));
    assert_eq!(pk.spec.get("karmadactl.version").map(String::as_str), Some("v1.19.0"));
}

#[tokio::test]
async fn debian_12_gets_lxd_from_its_own_package_and_skips_what_is_there() {
    let (host, r, cfg) = fresh(DEBIAN_12, &digest(ARCHIVE));
    host.program("/usr/bin/snap");
    host.program("/snap/bin/kubectl");
    host.program("/usr/local/bin/karmadactl");
    apply(&host, &r, &cfg).await.unwrap();
    assert_eq!(
        r.transcript(),
        vec![
            "host$ karmadactl version",
            "host$ apt-get update",
            "host$ apt-get install -y lxd",
            "host$ lxd waitready --timeout=60",
        ]
    );
    assert_eq!(
        host.read("/var/lib/testbed/host-packages").unwrap().lines().last(),
        Some("lxd"),
        "only what testbed installed is recorded"
    );
}

#[tokio::test]
async fn a_checksum_mismatch_installs_nothing() {
    let wrong = "0".repeat(64);
    let (host, r, cfg) = fresh(UBUNTU_2404, &wrong);
    host.program("/usr/bin/snap");
    host.program("/snap/bin/kubectl");
    host.program("/snap/bin/lxd");
    let e = apply(&host, &r, &cfg).await.unwrap_err();
    assert!(e.kind() == ErrorKind::Failed, "{e:?}");
    let msg = e.report().to_string();
    assert!(msg.contains(&format!("has SHA-256 {}", digest(ARCHIVE))), "{msg}");
    assert!(msg.contains(&format!("karmada-io publishes {wrong} for v1.19.0")), "{msg}");
    assert!(msg.contains("nothing was installed"), "{msg}");
    assert!(e.hint().unwrap().contains("apply again"), "{e:?}");
    let t = r.transcript();
    assert!(!t.iter().any(|l| l.contains("tar ")), "nothing unpacked: {t:?}");
    assert!(!host.at("/usr/local/bin/karmadactl").exists());
    assert!(
        !host.at("/var/lib/testbed/downloads/karmadactl-v1.19.0-linux-amd64.tgz").exists(),
        "the bad archive is removed"
    );
    assert!(host.read("/var/lib/testbed/host-packages").is_none());
}

#[tokio::test]
async fn an_arm64_host_downloads_the_arm64_archive() {
    let (host, r, cfg) = fresh(UBUNTU_2404, &digest(ARCHIVE));
    for p in ["/usr/bin/snap", "/snap/bin/kubectl", "/snap/bin/lxd"] {
        host.program(p);
    }
    r.on(
        &["curl", "-fsSL", &format!("{}.sha256", URL.replace("amd64", "arm64"))],
        Reply::Output(Output::ok(format!("{}  karmadactl-linux-arm64.tgz\n", digest(ARCHIVE)))),
    );
    let p = testbed_host::HostProvider::new(
        std::sync::Arc::new(r.clone()),
        testbed_steps::Context::new(&cfg),
        host.system().with_arch("aarch64"),
    );
    let (log, _) = capture();
    p.apply(&action(Op::Create, wanted(&cfg, "host.packages")), &log).await.unwrap();
    let t = r.transcript().join("\n");
    assert!(t.contains("/v1.19.0/karmadactl-linux-arm64.tgz.sha256"), "{t}");
    assert!(t.contains("-o /var/lib/testbed/downloads/karmadactl-v1.19.0-linux-arm64.tgz"), "{t}");
    assert!(!t.contains("amd64"), "{t}");
}

#[tokio::test]
async fn a_foreign_karmadactl_is_not_overwritten() {
    let (host, r, cfg) = fresh(UBUNTU_2404, &digest(ARCHIVE));
    host.program("/usr/local/bin/karmadactl");
    r.on(&["karmadactl", "version"], Reply::exit(1, "Error: unknown command \"version\" for \"karmadactl\"\n"));
    let p = provider(&host, &r, &cfg);
    // Observation shows it as of unknown version, so the plan wants to change it...
    let obs = p.observe(&[wanted(&cfg, "host.packages")]).await.unwrap();
    let pk = obs.resources.iter().find(|o| o.kind == Kind::HostPackages).unwrap();
    assert_eq!(pk.spec.get("karmadactl.version").map(String::as_str), Some("unknown"));
    assert!(
        matches!(&pk.owner, Owner::Other(m) if m == "packages karmadactl were installed by someone else"),
        "{:?}",
        pk.owner
    );
    // ...and apply refuses before running anything else.
    let before = r.calls().len();
    let e = apply(&host, &r, &cfg).await.unwrap_err();
    assert!(e.kind() == ErrorKind::Precondition, "{e:?}");
    assert!(e.report().to_string().contains("is not karmadactl as karmada-io releases it"), "{e}", e = e.report());
    assert!(e.hint().unwrap().starts_with("remove or rename"), "{e:?}");
    assert_eq!(r.transcript()[before..], ["host$ karmadactl version"]);
}

#[tokio::test]
async fn an_older_karmadactl_is_replaced_by_the_files_version() {
    let (host, r, cfg) = fresh(UBUNTU_2404, &digest(ARCHIVE));
    for p in ["/usr/bin/snap", "/snap/bin/kubectl", "/snap/bin/lxd", "/usr/local/bin/karmadactl"] {
        host.program(p);
    }
    r.on_seq(
        &["karmadactl", "version"],
        vec![
            Reply::Output(Output::ok(karmadactl_version_line("v1.14.2"))),
            Reply::Output(Output::ok(karmadactl_version_line("v1.19.0"))),
        ],
    );
    apply(&host, &r, &cfg).await.unwrap();
    let t = r.transcript();
    assert!(t.iter().any(|l| l.starts_with("host$ tar -xzf")), "{t:?}");
    assert!(!t.iter().any(|l| l.contains("apt-get") || l.contains("snap ")), "{t:?}");
}

#[tokio::test]
async fn a_host_without_apt_is_told_what_to_install() {
    let host = FakeHost::new(FEDORA_41);
    let r = ScriptedRunner::new();
    let cfg = config(FILE);
    let e = apply(&host, &r, &cfg).await.unwrap_err();
    assert!(e.kind() == ErrorKind::Precondition, "{e:?}");
    assert_eq!(
        e.report().to_string(),
        "host.packages: karmadactl, kubectl, lxd, snapd must be installed, and this host (Fedora Linux 41 (Server Edition)) has no apt-get"
    );
    assert!(e.hint().unwrap().contains("its own package manager"), "{e:?}");
    assert!(r.calls().is_empty(), "nothing ran: {:?}", r.transcript());
}

#[tokio::test]
async fn a_missing_curl_is_a_precondition_before_anything_runs() {
    let host = FakeHost::new(UBUNTU_2404);
    for p in ["/usr/bin/snap", "/snap/bin/kubectl", "/snap/bin/lxd", "/usr/bin/apt-get"] {
        host.program(p);
    }
    let r = ScriptedRunner::new();
    let e = apply(&host, &r, &config(FILE)).await.unwrap_err();
    assert_eq!(e.report().to_string(), "host.packages: curl is not installed; karmadactl is downloaded with it");
    assert_eq!(e.hint(), Some("install curl (apt-get install curl), then apply again"));
    assert!(r.calls().is_empty());
}

#[tokio::test]
async fn lxd_installers_stand_in_is_not_lxd() {
    let host = FakeHost::new(UBUNTU_2404);
    host.program("/usr/bin/snap");
    host.script("/usr/sbin/lxd");
    let r = ScriptedRunner::new();
    let p = provider(&host, &r, &config(FILE));
    let obs = p.observe(&[wanted(&config(FILE), "host.packages")]).await.unwrap();
    let pk = obs.resources.iter().find(|o| o.kind == Kind::HostPackages).unwrap();
    assert_eq!(pk.spec.get("packages").map(String::as_str), Some("snapd"));
}

#[tokio::test]
async fn packages_are_never_removed() {
    let host = FakeHost::new(UBUNTU_2404);
    let r = ScriptedRunner::new();
    let cfg = config(FILE);
    let p = provider(&host, &r, &cfg);
    let mut a = action(Op::Delete, wanted(&cfg, "host.packages"));
    a.observed = None;
    let e = p.apply(&a, &testbed_provider::ActionLog::discard()).await.unwrap_err();
    assert!(e.report().to_string().contains("never removes them"), "{e}", e = e.report());
    assert!(r.calls().is_empty());
}
