//! Every command whose handling differs carries its role: the providers act on the role, so a command the
//! catalogue forgot to tag would be run as a plain one (the wrong time limit, an unchecked output, a
//! firewall rule inserted twice). This test reads the words once, here, to check the tags.

use std::path::Path;

use testbed_plan::{desired, plan, DesiredState, Health, Observed, ObservedState, Owner};
use testbed_steps::{Context, KarmadactlVerb as V, Role, Step, Where};

const FILE: &str = r#"
[karmada]
join_mode = "pull"

[[members]]
name = "member1"
api_port = 16441

[[members]]
name = "member2"
api_port = 16442
join_mode = "push"

[[images]]
source = "docker.io/library/nginx:1.27"
sideload = true
"#;

/// The steps of a whole apply and a whole destroy of `FILE`.
fn every_step() -> Vec<Step> {
    let config = testbed_config::parse(Path::new("testbed.toml"), FILE).expect("valid");
    let cx = Context::new(&config);
    let d = desired::build(&config, &ObservedState::default());
    let mut steps = Vec::new();
    for a in plan(&d, &ObservedState::default()).expect("plans").actions() {
        steps.extend(testbed_steps::steps(a, &cx));
    }
    let mut built = ObservedState::default();
    for r in d.resources.values() {
        built.insert(Observed {
            address: r.address.clone(),
            kind: r.kind,
            member: r.member.clone(),
            owner: Owner::Testbed,
            spec: r.spec.clone(),
            health: Health::Ok,
            in_use_by: vec![],
        });
    }
    for a in plan(&DesiredState::default(), &built).expect("plans the destroy").actions() {
        steps.extend(testbed_steps::steps(a, &cx));
    }
    steps
}

/// The role the command's words call for.
fn expected(at: &Where, words: &[&str]) -> Role {
    match words {
        ["karmadactl", "init", ..] => Role::Karmadactl(V::Init),
        ["karmadactl", "deinit", ..] => Role::Karmadactl(V::Deinit),
        ["karmadactl", "join", ..] => Role::Karmadactl(V::Join),
        ["karmadactl", "unjoin", ..] => Role::Karmadactl(V::Unjoin),
        ["karmadactl", "register", ..] => Role::Karmadactl(V::Register),
        ["karmadactl", "unregister", ..] => Role::Karmadactl(V::Unregister),
        ["karmadactl", "token", ..] => Role::Karmadactl(V::TokenCreate),
        ["karmadactl", "version"] => Role::KarmadactlVersion,
        ["snap", "remove", "microk8s", ..] if at == &Where::Host => Role::RemoveHostMicrok8s,
        ["snap", "download", ..] => Role::SnapDownload,
        ["snap", "info", "--verbose", file] if file.ends_with(".snap") => Role::SnapBase,
        ["snap", "list", "<base>"] => Role::SnapPresent,
        ["snap", "install", "--classic", file] | ["snap", "install", file] if file.ends_with(".snap") => {
            Role::SnapChange
        }
        ["snap", "install" | "refresh" | "remove", "microk8s", ..] => Role::SnapChange,
        ["snap", "install", pkg, ..] => Role::SnapInstall(pkg.to_string()),
        ["snap", "wait", ..] if at == &Where::Host => Role::SnapSeeded,
        ["apt-get", "update"] => Role::PackageIndex,
        ["apt-get", "install", "-y", pkg] => Role::AptInstall(pkg.to_string()),
        ["lxd", "waitready", ..] => Role::DaemonReady("lxd".into()),
        ["curl", .., "-o", file, _] => Role::Download { file: file.to_string() },
        ["tar", ..] => Role::Unpack,
        ["sysctl", "-w", kv] => {
            let (key, value) = kv.split_once('=').expect("KEY=VALUE");
            Role::KernelLimit { key: key.into(), value: value.into() }
        }
        ["iptables", "-C", ..] => Role::RuleCheck,
        ["iptables", "-I", ..] => Role::RuleInsert,
        ["iptables", "-D", ..] => Role::RuleDelete,
        ["microk8s", "enable" | "disable", ..] => Role::AddonChange,
        ["microk8s", "status", "--wait-ready", "--timeout", secs] => {
            Role::WaitReady { timeout_secs: secs.parse().expect("seconds") }
        }
        ["microk8s", "images", "import", ..] => Role::ImageImport,
        ["rm", "-f", tar] if tar.ends_with(".tar") => Role::RemoveArchive,
        _ => Role::Plain,
    }
}

#[test]
fn every_command_carries_the_role_its_words_call_for() {
    let steps = every_step();
    let mut seen = std::collections::BTreeSet::new();
    for step in &steps {
        let inner = match step {
            Step::Until { step, .. } => step.as_ref(),
            s => s,
        };
        let Step::Run { at, .. } = inner else { continue };
        let words = inner.argv().expect("a command");
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        assert_eq!(step.role(), &expected(at, &words), "{step}");
        seen.insert(format!("{:?}", std::mem::discriminant(step.role())));
    }
    // The file reaches most roles: the check cannot pass by seeing only plain commands.
    assert!(seen.len() >= 12, "only {} kinds of role among {} steps", seen.len(), steps.len());
}
