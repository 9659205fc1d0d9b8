//! Side-loaded images (`sideload.MEMBER.NAME`): the real registry layer's observation and steps.
//!
//! Most tests run the provider over a scripted runner: MicroK8s cannot run on the project's machines, so each
//! member's `microk8s` (its image list, `images import` reading the pushed docker-archive's manifest with the
//! host's `tar`, `ctr images rm`) is a script over a fake image store, and the containers are a fake
//! [`ContainerView`](testbed_provider::ContainerView). The last test pushes through the project's REAL LXD
//! daemon into a real container (see its comment).

mod sideload_support;

use std::sync::Arc;
use std::time::Duration;

use sideload_support::*;
use testbed_command::{CommandError, CommandRunner, Output, ScriptedRunner, SystemRunner};
use testbed_plan::{Op, Owner, PlanError};
use testbed_provider::{ErrorKind, LogEntry, Provider};
use testbed_steps::{Step, Where};

const TAR: &str = "/var/lib/testbed/sideload/flask-demo.tar";
const IMAGE: &str = "docker.io/library/flask-demo:2.0";

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

/// The side-loads among what the provider observed (it also reports a registry answering on port 32000).
fn sideloads(obs: testbed_provider::LayerObservation) -> Vec<testbed_plan::Observed> {
    obs.resources.into_iter().filter(|o| o.kind == testbed_plan::Kind::Sideload).collect()
}

fn world(members: &[&str]) -> World {
    World::new(members, &file(members, Some("images/flask-demo-2.0.tar")))
}

#[test]
fn create_pushes_the_archive_into_each_member_imports_it_and_the_next_plan_has_nothing_to_do() {
    rt().block_on(async {
        let w = world(&["m1", "m2"]);
        let bytes = w.write_archive(&["flask-demo:2.0"]);
        let actions = w.plan().await.expect("plan");
        let addresses: Vec<_> = actions.iter().map(|a| (a.address.to_string(), a.op)).collect();
        assert_eq!(
            addresses,
            [("sideload.m1.flask-demo".to_owned(), Op::Create), ("sideload.m2.flask-demo".to_owned(), Op::Create)]
        );

        let observing = w.runner.transcript().len();
        let (log, seen) = capture();
        for a in &actions {
            w.provider
                .apply(a, &log)
                .await
                .unwrap_or_else(|e| panic!("{}: {e} ({:?})", a.address, e.hint(), e = e.report()));
        }

        // The exact bytes of the archive, at the catalogue's path, 0600, once per member.
        let pushes = w.runner.pushes();
        assert_eq!(pushes.len(), 2, "{:?}", w.runner.transcript());
        for (p, m) in pushes.iter().zip(["m1", "m2"]) {
            assert_eq!((p.member.as_str(), p.path.as_str(), p.mode), (m, TAR, 0o600));
            assert!(
                p.content == bytes,
                "the pushed bytes are the archive's ({} vs {} bytes)",
                p.content.len(),
                bytes.len()
            );
        }
        // What ran in m1, in order: list, the catalogue's four steps, list again.
        let applying = || -> Vec<String> {
            w.runner.transcript()[observing..].iter().filter(|l| l.starts_with("m1$ ")).cloned().collect()
        };
        assert_eq!(
            applying(),
            [
                "m1$ microk8s ctr images ls -q".to_owned(),
                "m1$ mkdir -p /var/lib/testbed/sideload".to_owned(),
                format!("m1$ <push {TAR} ({} bytes)>", bytes.len()),
                format!("m1$ microk8s images import {TAR}"),
                format!("m1$ rm -f {TAR}"),
                "m1$ microk8s ctr images ls -q".to_owned(),
            ]
        );
        // Exactly the catalogue's commands (what --dry-run prints), in its order.
        let cx = testbed_steps::Context::new(&w.config);
        let catalogue: Vec<Vec<String>> = testbed_steps::steps(&actions[0], &cx)
            .iter()
            .filter_map(|s| match s {
                Step::Run { .. } => s.argv(),
                Step::Call { method, path, .. } => Some(vec![format!("<{method} {path}>")]),
                _ => None,
            })
            .collect();
        let ran: Vec<Vec<String>> = applying()
            .iter()
            .filter(|l| !l.contains("images ls"))
            .map(|l| {
                let l = l.trim_start_matches("m1$ ");
                if l.starts_with("<push") {
                    vec![format!("<POST /1.0/instances/m1/files?path={TAR}>")]
                } else {
                    l.split(' ').map(str::to_owned).collect()
                }
            })
            .collect();
        assert_eq!(ran, catalogue);
        let logged = seen.lock().unwrap().clone();
        assert!(
            logged.contains(&LogEntry::Api {
                method: "POST".into(),
                path: format!("/1.0/instances/m1/files?path={TAR}")
            }),
            "{logged:?}"
        );

        // Imported, recorded with the container's identity.
        assert!(w.member_images("m1").contains(IMAGE) && w.member_images("m2").contains(IMAGE));
        let rec = w.record();
        let m1 = &rec.sideloads["m1"]["flask-demo"];
        assert_eq!(m1.source, "flask-demo:2.0");
        assert_eq!(m1.archive.as_deref(), Some("images/flask-demo-2.0.tar"));
        assert_eq!(m1.container, "uuid-m1-1");
        assert_eq!(m1.imported, [IMAGE]);

        // Observed present and testbed's: nothing to do.
        let o = w.observe().await.unwrap();
        let seen_m2 = o.resources.values().find(|o| o.address.as_str() == "sideload.m2.flask-demo").expect("observed");
        assert_eq!(seen_m2.owner, Owner::Testbed);
        assert_eq!(seen_m2.member.as_deref(), Some("m2"));
        assert!(w.plan().await.unwrap().is_empty(), "converged");
    });
}

#[test]
fn an_image_already_there_that_testbed_did_not_import_is_someone_elses() {
    rt().block_on(async {
        let w = world(&["m1"]);
        w.write_archive(&["flask-demo:2.0"]);
        w.images.lock().unwrap().entry("m1".into()).or_default().insert(IMAGE.into());

        let o = w.observe().await.unwrap();
        let found = o.resources.values().next().expect("observed");
        assert_eq!(
            found.owner,
            Owner::Other(format!("{IMAGE} is already in m1's MicroK8s, and testbed did not import it"))
        );
        let err = w.plan().await.unwrap_err();
        let PlanError::Conflicts(c) = &err else { panic!("{err}") };
        assert_eq!(c[0].address.as_str(), "sideload.m1.flask-demo");
        assert!(err.to_string().contains("is already in m1's MicroK8s"), "{err}");

        // A create that reaches the provider anyway (observed a moment before someone imported it) is
        // refused before anything is pushed.
        let d = testbed_plan::desired::build(&w.config, &Default::default());
        let create = testbed_plan::plan(&d, &Default::default()).unwrap();
        let create =
            create.actions().into_iter().find(|a| a.address.as_str() == "sideload.m1.flask-demo").unwrap().clone();
        let e = apply(&w.provider, &create).await.unwrap_err();
        assert!(e.kind() == ErrorKind::Precondition, "{e}", e = e.report());
        assert!(
            e.report().to_string().contains("already in m1's MicroK8s, and testbed did not import it"),
            "{e}",
            e = e.report()
        );
        assert!(w.runner.pushes().is_empty());
        assert!(w.record().sideloads.is_empty());
    });
}

#[test]
fn an_archive_without_the_source_fails_naming_what_it_holds() {
    rt().block_on(async {
        let w = world(&["m1"]);
        w.write_archive(&["flask-demo:1.9", "registry.example.com/team/helper:3"]);
        let actions = w.plan().await.unwrap();
        let e = apply(&w.provider, &actions[0]).await.unwrap_err();
        assert!(e.kind() == ErrorKind::Failed, "{e}", e = e.report());
        assert_eq!(
            e.report().to_string(),
            format!(
                "sideload.m1.flask-demo: the archive {} does not contain {IMAGE}; it holds: docker.io/library/flask-demo:1.9, registry.example.com/team/helper:3",
                w.archive_path().display()
            )
        );
        assert!(e.hint().unwrap().contains("manifest.json"), "{:?}", e.hint());
        assert!(w.record().sideloads.is_empty(), "nothing recorded");
        assert!(w.runner.transcript().contains(&format!("m1$ rm -f {TAR}")), "the tar is removed all the same");
        // Not imported: the next plan still creates it.
        assert_eq!(w.plan().await.unwrap()[0].op, Op::Create);
    });
}

/// real-tools.md behaviour 10: `microk8s images import` says "Failed to import" and still exits 0.
#[test]
fn an_import_that_failed_with_exit_code_0_is_a_failure() {
    rt().block_on(async {
        let w = world(&["m1"]);
        w.write_archive(&[IMAGE]);
        // canonical/microk8s scripts/wrappers/distributed_op.py prints the failure and returns normally.
        w.runner.on(
            &["microk8s", "images", "import"],
            testbed_command::Reply::ok(
                "Failed to import images on member m1: ctr: content digest sha256:0: not found\n",
            ),
        );
        let actions = w.plan().await.unwrap();
        let e = apply(&w.provider, &actions[0]).await.unwrap_err();
        assert!(
            e.report().to_string().contains("exited 0 but failed: Failed to import images on member m1"),
            "{e}",
            e = e.report()
        );
        assert!(w.record().sideloads.is_empty(), "nothing recorded");
        assert_eq!(w.plan().await.unwrap()[0].op, Op::Create);
    });
}

#[test]
fn delete_removes_only_what_testbed_imported() {
    rt().block_on(async {
        let w = world(&["m1"]);
        w.write_archive(&["flask-demo:2.0"]);
        for a in w.plan().await.unwrap() {
            apply(&w.provider, &a).await.unwrap();
        }
        // The file no longer wants it: the plan deletes it, with the catalogue's `ctr images rm`.
        let without = testbed_config::parse(
            &w.dir.path().join("testbed.toml"),
            "name = \"sl\"\n\n[[members]]\nname = \"m1\"\napi_port = 26441\n",
        )
        .unwrap();
        let actions = w.plan_for(&without).await.unwrap();
        assert_eq!(actions.len(), 1);
        assert_eq!((actions[0].address.as_str(), actions[0].op), ("sideload.m1.flask-demo", Op::Delete));
        apply(&w.provider, &actions[0]).await.unwrap();
        assert!(w.runner.transcript().contains(&format!("m1$ microk8s ctr images rm {IMAGE}")));
        assert!(!w.member_images("m1").contains(IMAGE));
        assert!(w.record().sideloads.is_empty(), "forgotten");

        // An image testbed did not import (someone's, same name) is refused, and nothing is run.
        w.images.lock().unwrap().entry("m1".into()).or_default().insert(IMAGE.into());
        let calls = w.runner.calls().len();
        let e = apply(&w.provider, &actions[0]).await.unwrap_err();
        assert_eq!(
            e.report().to_string(),
            format!("sideload.m1.flask-demo: {IMAGE} in m1's MicroK8s was not imported by testbed; left alone")
        );
        assert_eq!(w.runner.calls().len(), calls, "nothing ran");
        assert!(w.member_images("m1").contains(IMAGE), "left alone");
    });
}

#[test]
fn a_new_source_and_archive_update_the_image_old_one_out_new_one_in() {
    rt().block_on(async {
        let w = world(&["m1"]);
        w.write_archive(&["flask-demo:2.0"]);
        for a in w.plan().await.unwrap() {
            apply(&w.provider, &a).await.unwrap();
        }
        // The file moves to 2.1, from another archive.
        let text = file(&["m1"], Some("images/flask-demo-2.1.tar")).replace("flask-demo:2.0", "flask-demo:2.1");
        let newer = testbed_config::parse(&w.dir.path().join("testbed.toml"), &text).unwrap();
        docker_archive(&w.dir.path().join("images/flask-demo-2.1.tar"), &["flask-demo:2.1"]);
        let actions = w.plan_for(&newer).await.unwrap();
        assert_eq!(actions.len(), 1);
        assert_eq!(actions[0].op, Op::Update, "{:?}", actions[0].changes);
        let p = World::provider_for(&newer, &w.runner, &w.containers, w.dir.path());
        apply(&p, &actions[0]).await.unwrap_or_else(|e| panic!("{e}", e = e.report()));
        let t = w.transcript_of("m1");
        let rm = t.iter().position(|l| l == &format!("m1$ microk8s ctr images rm {IMAGE}")).expect("old one removed");
        let import = t.iter().rposition(|l| l == &format!("m1$ microk8s images import {TAR}")).unwrap();
        assert!(rm < import, "{t:?}");
        assert_eq!(w.member_images("m1").into_iter().collect::<Vec<_>>(), ["docker.io/library/flask-demo:2.1"]);
        assert_eq!(w.record().sideloads["m1"]["flask-demo"].source, "flask-demo:2.1");
    });
}

#[test]
fn without_an_archive_or_with_a_missing_one_nothing_is_pushed() {
    rt().block_on(async {
        let w = World::new(&["m1"], &file(&["m1"], None));
        let actions = w.plan().await.unwrap();
        let e = apply(&w.provider, &actions[0]).await.unwrap_err();
        assert!(e.kind() == ErrorKind::Precondition, "{e}", e = e.report());
        assert!(
            e.report().to_string().contains("from a registry reference without an archive is not supported yet"),
            "{e}",
            e = e.report()
        );
        assert!(e.hint().unwrap().contains("`archive`"), "{:?}", e.hint());

        let w = world(&["m1"]);
        let actions = w.plan().await.unwrap();
        let observing = w.runner.calls().len();
        let e = apply(&w.provider, &actions[0]).await.unwrap_err();
        assert!(e.kind() == ErrorKind::Precondition, "{e}", e = e.report());
        assert!(
            e.report().to_string().contains(&format!("the archive {} does not exist", w.archive_path().display())),
            "{e}",
            e = e.report()
        );
        assert!(w.runner.pushes().is_empty(), "{:?}", w.runner.transcript());
        assert_eq!(w.runner.calls().len(), observing, "nothing ran: {:?}", w.runner.transcript());
    });
}

#[test]
fn a_recreated_container_has_lost_the_image_and_it_is_imported_again() {
    rt().block_on(async {
        let w = world(&["m1"]);
        w.write_archive(&["flask-demo:2.0"]);
        for a in w.plan().await.unwrap() {
            apply(&w.provider, &a).await.unwrap();
        }
        // Same name, new container (LXD's volatile.uuid changed); its MicroK8s happens to list the same name.
        w.containers.put("m1", true, "uuid-m1-2");
        let actions = w.plan().await.unwrap();
        assert_eq!(actions[0].op, Op::Create, "not testbed's import any more, and not someone else's either");
        // Its new MicroK8s does not have it yet.
        w.images.lock().unwrap().clear();
        apply(&w.provider, &actions[0]).await.unwrap();
        assert_eq!(w.record().sideloads["m1"]["flask-demo"].container, "uuid-m1-2");
        let again = w.plan().await.unwrap();
        assert!(again.is_empty(), "{again:?}");
    });
}

#[test]
fn stopped_containers_and_members_without_microk8s_hold_nothing_and_a_failing_list_is_unknown() {
    rt().block_on(async {
        let w = world(&["m1", "m2"]);
        w.containers.put("m2", false, "uuid-m2-1");
        // m1 has no MicroK8s yet: LXD reports the missing program as 127 (here: not scripted).
        let runner = ScriptedRunner::new();
        let p = World::provider_for(&w.config, &runner, &w.containers, w.dir.path());
        assert!(sideloads(p.observe(&[]).await.unwrap()).is_empty());
        let skeleton = testbed_plan::desired::build(&w.config, &Default::default());
        let wanted: Vec<_> =
            skeleton.resources.values().filter(|r| r.kind == testbed_plan::Kind::Sideload).cloned().collect();
        assert!(sideloads(p.observe(&wanted).await.unwrap()).is_empty());
        assert_eq!(runner.transcript(), ["m1$ microk8s ctr images ls -q"], "the stopped m2 is not asked");

        // MicroK8s there but not answering: the layer's state is unknown, not "missing".
        runner.on(
            &["microk8s", "ctr"],
            testbed_command::Reply::exit(1, "ctr: failed to dial \"/var/snap/microk8s/common/run/containerd.sock\""),
        );
        let e = p.observe(&wanted).await.unwrap_err();
        assert!(e.kind() == ErrorKind::StateUnknown, "{e}", e = e.report());
        assert!(e.report().to_string().contains("cannot list the images in m1's MicroK8s"), "{e}", e = e.report());
        assert!(e.hint().unwrap().contains("microk8s status"), "{:?}", e.hint());
    });
}

#[test]
fn a_refused_push_is_an_error_naming_the_member_and_nothing_is_recorded() {
    rt().block_on(async {
        let w = world(&["m1"]);
        w.write_archive(&["flask-demo:2.0"]);
        w.runner.refuse_pushes("m1", "no space left on device");
        let actions = w.plan().await.unwrap();
        let e = apply(&w.provider, &actions[0]).await.unwrap_err();
        assert!(e.report().to_string().contains("pushing"), "{e}", e = e.report());
        assert!(
            e.report().to_string().contains("into m1 failed")
                && e.report().to_string().contains("no space left on device"),
            "{e}",
            e = e.report()
        );
        assert!(!w.runner.transcript().iter().any(|l| l.contains("images import")));
        assert!(w.record().sideloads.is_empty());
    });
}

// ---------------------------------------------------------------------------------------------------------
// Against the real LXD daemon.

/// The project's test LXD daemon (`cargo xtask testenv up`; LXD_DIR overrides the directory).
fn lxd_client() -> testbed_lxd::Client {
    let dir = std::env::var("LXD_DIR").unwrap_or_else(|_| "/var/lib/testbed-testenv/lxd".to_owned());
    let socket = std::path::Path::new(&dir).join("unix.socket");
    assert!(
        socket.exists(),
        "no LXD socket at {}: start the project's test daemon with `cargo xtask testenv up`",
        socket.display()
    );
    testbed_lxd::Client::at(socket, testbed_lxd::Flavor::Lxd)
}

/// Real LXD underneath, MicroK8s simulated: commands run in the real container through LXD's exec API
/// (`mkdir`, `rm`) and the archive is pushed through LXD's real file API, but the container is the offline
/// `testbed-busybox` image, which has no MicroK8s (snapd cannot run here), so `microk8s ...` is answered from
/// a script. The scripted `microk8s images import PATH` reads the file it is given from the REAL container
/// (`sha256sum`, `wc -c`, and busybox `tar -xO` of its manifest), so the import sees exactly what reached the
/// member's filesystem.
struct RealLxdFakeMicrok8s {
    real: SystemRunner,
    client: testbed_lxd::Client,
    images: Images,
    /// What the import found in the container: (member, sha256 of the file, its size, its mode).
    seen: std::sync::Mutex<Vec<(String, String, usize, String)>>,
}

#[async_trait::async_trait]
impl CommandRunner for RealLxdFakeMicrok8s {
    async fn run(&self, at: &Where, argv: &[String], timeout: Duration) -> Result<Output, CommandError> {
        let Where::Member(m) = at else { return self.real.run(at, argv, timeout).await };
        if argv.first().map(String::as_str) != Some("microk8s") {
            return self.real.run(at, argv, timeout).await;
        }
        let a: Vec<&str> = argv.iter().map(String::as_str).collect();
        match a.as_slice() {
            ["microk8s", "ctr", "images", "ls", "-q"] => {
                let all = self.images.lock().unwrap().get(m).cloned().unwrap_or_default();
                Ok(Output::ok(all.into_iter().map(|n| n + "\n").collect::<String>()))
            }
            ["microk8s", "images", "import", path] => {
                let t = Duration::from_secs(30);
                let sum = self.client.exec(m, &["sha256sum", path], t).await.expect("exec sha256sum");
                let size = self.client.exec(m, &["wc", "-c", path], t).await.expect("exec wc");
                let mode = self.client.exec(m, &["stat", "-c", "%a", path], t).await.expect("exec stat");
                let manifest = self.client.exec(m, &["tar", "-xOf", path, "manifest.json"], t).await.expect("exec tar");
                if sum.code != 0 || manifest.code != 0 {
                    return Ok(Output::failed(1, format!("Error: failed to read {path}: {}", sum.stderr)));
                }
                let digest = sum.stdout.split_whitespace().next().unwrap_or_default().to_owned();
                let bytes = size.stdout.split_whitespace().next().unwrap_or_default().parse().unwrap_or(0);
                self.seen.lock().unwrap().push((m.clone(), digest, bytes, mode.stdout.trim().to_owned()));
                let parsed: serde_json::Value = serde_json::from_str(&manifest.stdout).expect("manifest.json");
                let mut all = self.images.lock().unwrap();
                for t in parsed[0]["RepoTags"].as_array().into_iter().flatten() {
                    all.entry(m.clone()).or_default().insert(ctr_name(t.as_str().unwrap()));
                }
                Ok(Output::ok(""))
            }
            _ => Ok(Output::failed(127, format!("not scripted: {}", argv.join(" ")))),
        }
    }

    async fn push_file(&self, member: &str, path: &str, content: Vec<u8>, mode: u32) -> Result<(), CommandError> {
        self.real.push_file(member, path, content, mode).await
    }
}

/// Creates and starts container `name` from the offline busybox image (the test daemon's default profile:
/// a root disk, no network), after removing one an interrupted run left.
async fn fresh_container(cl: &testbed_lxd::Client, name: &str) {
    remove_container(cl, name).await;
    let wait = Duration::from_secs(120);
    cl.post(
        "/1.0/instances",
        &serde_json::json!({
            "name": name,
            "type": "container",
            "source": {"type": "image", "alias": "testbed-busybox"},
            "profiles": ["default"],
        }),
        wait,
    )
    .await
    .expect("create the container (is `cargo xtask testenv up` done?)");
    cl.put(&format!("/1.0/instances/{name}/state"), &serde_json::json!({"action": "start", "timeout": 30}), wait)
        .await
        .expect("start the container");
}

async fn remove_container(cl: &testbed_lxd::Client, name: &str) {
    let path = format!("/1.0/instances/{name}");
    let wait = Duration::from_secs(60);
    if cl.get_opt::<serde_json::Value>(&path).await.expect("LXD answers").is_some() {
        let _ = cl.put(&format!("{path}/state"), &serde_json::json!({"action": "stop", "force": true}), wait).await;
        cl.delete(&path, wait).await.expect("delete the test container");
    }
}

#[test]
fn with_lxd_real_the_archive_reaches_each_members_filesystem_through_file_push() {
    use sha2::Digest;
    let members = ["tbsl1", "tbsl2"];
    rt().block_on(async {
        let cl = lxd_client();
        for m in members {
            fresh_container(&cl, m).await;
        }
        let w = World::new(&members, &file(&members, Some("images/flask-demo-2.0.tar")));
        let bytes = w.write_archive(&["flask-demo:2.0"]);
        let want = format!("{:x}", sha2::Sha256::digest(&bytes));

        let runner = Arc::new(RealLxdFakeMicrok8s {
            real: SystemRunner::with_lxd(cl.clone()),
            client: cl.clone(),
            images: Default::default(),
            seen: Default::default(),
        });
        // The real containers, as the real LXD layer sees them (running, volatile.uuid).
        let lxd = Arc::new(testbed_lxd::LxdProvider::new(cl.clone(), "sl"));
        let provider = testbed_registry::RegistryProvider::new(
            runner.clone(),
            testbed_steps::Context::new(&w.config),
            w.config.file.registry.clone(),
            w.dir.path().join(".testbed/registry.json"),
            testbed_registry::Addon::Unmanaged("microk8s is simulated".into()),
        )
        .unwrap()
        .with_containers(lxd)
        .with_base_dir(w.config.base_dir());

        let skeleton = testbed_plan::desired::build(&w.config, &Default::default());
        let wanted: Vec<_> =
            skeleton.resources.values().filter(|r| r.kind == testbed_plan::Kind::Sideload).cloned().collect();
        assert!(sideloads(provider.observe(&wanted).await.unwrap()).is_empty(), "nothing side-loaded yet");
        let plan = testbed_plan::plan(&skeleton, &Default::default()).unwrap();
        let actions: Vec<_> =
            plan.actions().into_iter().filter(|a| a.kind == testbed_plan::Kind::Sideload).cloned().collect();
        assert_eq!(actions.len(), 2);
        let result = async {
            for a in &actions {
                provider
                    .apply(a, &testbed_provider::ActionLog::discard())
                    .await
                    .map_err(|e| format!("{}: {e}", a.address, e = e.report()))?;
            }
            Ok::<_, String>(())
        }
        .await;

        // What the import found in each real container: the archive, byte for byte.
        let seen = runner.seen.lock().unwrap().clone();
        let gone: Vec<_> =
            futures_util::future::join_all(members.iter().map(|m| cl.exec(m, &["ls", TAR], Duration::from_secs(30))))
                .await;
        let parent: Vec<_> = futures_util::future::join_all(
            members
                .iter()
                .map(|m| cl.exec(m, &["stat", "-c", "%F", "/var/lib/testbed/sideload"], Duration::from_secs(30))),
        )
        .await;
        for m in members {
            remove_container(&cl, m).await;
        }
        result.unwrap();
        assert_eq!(
            seen,
            members.iter().map(|m| (m.to_string(), want.clone(), bytes.len(), "600".to_owned())).collect::<Vec<_>>(),
            "each member's import read exactly the archive's bytes from its own filesystem"
        );
        for (g, p) in gone.into_iter().zip(parent) {
            let (g, p) = (g.unwrap(), p.unwrap());
            assert_ne!(g.code, 0, "the tar is removed once imported (`rm -f` ran in the real container)");
            assert_eq!(p.stdout.trim(), "directory", "`mkdir -p` made the directory the push needs");
        }
        let obs = provider.observe(&wanted).await;
        // The containers are gone now: nothing is observed, and nothing is unknown.
        assert!(sideloads(obs.unwrap()).is_empty());
        let rec = testbed_registry::record::Record::at(w.dir.path().join(".testbed/registry.json")).read().unwrap();
        for m in members {
            assert!(rec.sideloads[m]["flask-demo"].container.len() > 8, "the real volatile.uuid is recorded");
        }
    });
}
