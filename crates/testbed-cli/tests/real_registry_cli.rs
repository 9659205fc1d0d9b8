//! The registry layer for real, through the binary: `examples/testenv.toml` against the project's test
//! environment (`cargo xtask testenv up`): LXD, an upstream registry on 127.0.0.1:5000 seeded with test
//! images named like the Karmada v1.15.9 release images, and an empty local registry on 127.0.0.1:32000
//! where the MicroK8s registry addon would listen. LXD and the registry layer are real; host, MicroK8s and
//! Karmada are simulated (they cannot run here), and the simulated `karmadactl init` checks its images in the
//! real local registry.
//!
//! One test, in order, because every step works on the same tags of the shared local registry.

use std::io::{Read, Write};
use std::path::Path;
use std::process::Output;
use std::sync::Arc;

use testbed_registry::{CopyJob, Engine, Location, Options, Registry};
use testenv::{example, text};

mod testenv;

const LAYERS: &str = "host,microk8s,karmada";
const UPSTREAM: &str = "127.0.0.1:5000";
const LOCAL: &str = "127.0.0.1:32000";

/// The release images of v1.15.9 in push mode: name, source repository in the upstream, tag.
const RELEASE: [(&str, &str, &str); 8] = [
    ("karmada-controller-manager", "karmada/karmada-controller-manager", "v1.15.9"),
    ("karmada-scheduler", "karmada/karmada-scheduler", "v1.15.9"),
    ("karmada-webhook", "karmada/karmada-webhook", "v1.15.9"),
    ("karmada-aggregated-apiserver", "karmada/karmada-aggregated-apiserver", "v1.15.9"),
    ("kube-apiserver", "kube-apiserver", "v1.31.3"),
    ("kube-controller-manager", "kube-controller-manager", "v1.31.3"),
    ("etcd", "etcd", "3.5.16-0"),
    ("alpine", "library/alpine", "3.21.3"),
];

fn testbed(dir: &Path, args: &[&str]) -> Output {
    testenv::testbed(dir, LAYERS, args)
}

/// The addresses a plan lists, in order.
fn planned(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| {
            let l = l.trim_start();
            let rest = l.strip_prefix("+ ").or_else(|| l.strip_prefix("~ ")).or_else(|| l.strip_prefix("- "));
            rest.or_else(|| l.strip_prefix("-/+ ")).and_then(|r| r.split_whitespace().next()).map(str::to_owned)
        })
        .collect()
}

fn local() -> Arc<Registry> {
    Arc::new(Registry::insecure(LOCAL))
}

fn at(registry: &Arc<Registry>, repository: &str, tag: &str) -> Location {
    Location::new(registry.clone(), repository, tag)
}

/// A registry that answers every request with 401 and a Basic challenge: a source that wants credentials.
fn unauthorized_registry() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let host = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = s.write_all(
                b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"test\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    });
    host
}

#[test]
fn apply_copies_the_release_images_with_their_digests_and_converges() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let engine = Engine::new(Options::default()).unwrap();
    let (up, local) = (Arc::new(Registry::insecure(UPSTREAM)), local());
    assert!(
        rt.block_on(engine.ping(&up)).unwrap_or(false) && rt.block_on(engine.ping(&local)).unwrap_or(false),
        "the test registries do not answer on {UPSTREAM} and {LOCAL}: run `cargo xtask testenv up`"
    );
    // A clean start: tags left by an earlier run are removed (the test registry allows deletes).
    for (name, _, tag) in RELEASE {
        if let Some(d) = rt.block_on(engine.head_manifest(&at(&local, name, tag))).unwrap() {
            assert!(rt.block_on(engine.delete_manifest(&at(&local, name, tag), &d)).unwrap());
        }
    }

    let dir = tempfile::tempdir().unwrap();
    let example = example("testenv.toml");
    // Its own name, bridge, subnet, profile, members and ports, so that it never meets other tests' objects.
    let file = format!("name = \"reg\"\n{example}")
        .replace("tbtest0", "tbreg0")
        .replace("10.199.77.1/24", "10.199.79.1/24")
        .replace("testbed-member", "tbreg-member")
        .replace("\"member", "\"reg-member")
        .replace("= 2644", "= 2674");
    std::fs::write(dir.path().join("testbed.toml"), &file).unwrap();

    // 1. apply copies every image; each target's digest is the source's.
    let apply = testbed(dir.path(), &["apply", "--yes"]);
    let out = text(&apply);
    assert!(apply.status.success(), "{out}");
    assert!(out.contains("real: lxd, registry (these change this host)"), "{out}");
    for (name, repo, tag) in RELEASE {
        assert!(out.contains(&format!("image.{name}: created")), "{name}: {out}");
        let job = CopyJob::new(at(&up, repo, tag), at(&local, name, tag));
        let want = rt.block_on(engine.wanted_digest(&job)).unwrap();
        let have = rt.block_on(engine.head_manifest(&at(&local, name, tag))).unwrap();
        assert_eq!(have.as_deref(), Some(want.as_str()), "{name}: the target's digest is the source's");
    }
    let log = std::fs::read_dir(dir.path().join(".testbed/logs")).unwrap().flatten().next().unwrap().path();
    let log = std::fs::read_to_string(log).unwrap();
    assert!(log.contains("image.etcd: COPY registry.k8s.io/etcd:3.5.16-0 -> localhost:32000/etcd:3.5.16-0"), "{log}");
    assert!(log.contains("image.etcd: source fetched from http://127.0.0.1:5000"), "the mirror is used: {log}");

    // 2. The next plan has nothing to do.
    let plan = testbed(dir.path(), &["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
    assert!(text(&plan).contains("No changes."));

    // 3. One tag deleted in the target: the plan shows exactly that image.
    let etcd = at(&local, "etcd", "3.5.16-0");
    let d = rt.block_on(engine.head_manifest(&etcd)).unwrap().expect("etcd is there");
    assert!(rt.block_on(engine.delete_manifest(&etcd, &d)).unwrap());
    let plan = testbed(dir.path(), &["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(2), "{}", text(&plan));
    assert_eq!(planned(&plan), ["image.etcd"], "{}", text(&plan));

    // 4. Faults: a tag the source lacks, and a source that wants credentials. Each fails naming the image;
    //    the rest (etcd) converges; nothing failed is reported present.
    let auth = unauthorized_registry();
    let faulty = format!(
        "{file}\n[[images]]\nsource = \"docker.io/library/missing:1.0\"\n\n[[images]]\nsource = \"ghcr.io/private/app:2\"\n",
    )
    .replace(
        "[registry.mirrors]\n",
        &format!("[registry.mirrors]\n\"ghcr.io\" = {{ endpoint = \"http://{auth}\", insecure = true }}\n"),
    );
    std::fs::write(dir.path().join("testbed.toml"), &faulty).unwrap();
    let apply = testbed(dir.path(), &["apply", "--yes"]);
    let out = text(&apply);
    assert!(!apply.status.success(), "{out}");
    assert!(out.contains("image.etcd: created"), "{out}");
    let line = |addr: &str| out.lines().find(|l| l.starts_with(&format!("{addr}: FAILED"))).unwrap_or("").to_owned();
    let missing = line("image.missing");
    assert!(missing.contains("tag 1.0 of library/missing is not in the source registry"), "{out}");
    let app = line("image.app");
    assert!(app.contains(&auth) && app.contains("credentials are needed"), "{out}");
    let plan = testbed(dir.path(), &["plan"]);
    assert_eq!(planned(&plan), ["image.app", "image.missing"], "{}", text(&plan));

    // 5. With the file fixed, apply converges.
    std::fs::write(dir.path().join("testbed.toml"), &file).unwrap();
    let apply = testbed(dir.path(), &["apply", "--yes"]);
    assert!(apply.status.success(), "{}", text(&apply));
    let plan = testbed(dir.path(), &["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));

    // 6. destroy removes the images testbed copied, and the containers.
    let destroy = testbed(dir.path(), &["destroy", "--yes"]);
    assert!(destroy.status.success(), "{}", text(&destroy));
    for (name, _, tag) in RELEASE {
        assert_eq!(
            rt.block_on(engine.head_manifest(&at(&local, name, tag))).unwrap(),
            None,
            "{name} after destroy: {}",
            text(&destroy)
        );
    }
}
