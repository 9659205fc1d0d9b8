//! Issue 14, item 1: `testbed kubeconfig` on the simulated machine, read by the real `kubectl` (Debian's
//! `kubernetes-client`, which `cargo xtask testenv up` installs when no kubectl is there). The clusters are
//! simulated, so kubectl only reads the files here (`config get-contexts`, `config view`): it never connects.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;
use support::{said, Lab, THREE};

/// `testbed` on the simulated machine in `dir`, with `KUBECONFIG` set to `kubeconfig` and `HOME` in `dir`.
fn testbed(dir: &Path, kubeconfig: &Path, args: &[&str]) -> Output {
    let (kubeconfig, home) = (kubeconfig.to_str().unwrap(), dir.to_str().unwrap());
    support::simulated_with(dir, args, &[("KUBECONFIG", kubeconfig), ("HOME", home)])
}

/// The real kubectl, on `kubeconfig` only.
fn kubectl(kubeconfig: &Path, args: &[&str]) -> String {
    let out = Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", kubeconfig.parent().unwrap())
        .output()
        .expect("kubectl is installed: run `cargo xtask testenv up` (it installs Debian's kubernetes-client)");
    assert!(out.status.success(), "kubectl {args:?}: {}", said(&out));
    String::from_utf8(out.stdout).unwrap()
}

fn contexts(kubeconfig: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        kubectl(kubeconfig, &["config", "get-contexts", "-o", "name"]).lines().map(str::to_owned).collect();
    names.sort();
    names
}

fn applied() -> Lab {
    let lab = Lab::new(&format!("name = \"lab\"\n{THREE}"));
    let out = testbed(lab.path(), &lab.path().join("unused"), &["apply", "--yes"]);
    assert!(out.status.success(), "{}", said(&out));
    lab
}

const LAB_CONTEXTS: [&str; 4] = ["lab-karmada", "lab-member1", "lab-member2", "lab-member3"];

#[test]
fn the_printed_kubeconfig_has_every_context_with_the_labs_prefix_for_kubectl() {
    let lab = applied();
    let d = lab.path();
    let out = testbed(d, &d.join("unused"), &["kubeconfig"]);
    assert!(out.status.success(), "{}", said(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("# Simulated: "), "a simulated lab's kubeconfig says so: {text}");
    let file = d.join("printed.config");
    std::fs::write(&file, &text).unwrap();
    assert_eq!(contexts(&file), LAB_CONTEXTS);
    assert_eq!(kubectl(&file, &["config", "current-context"]).trim(), "lab-karmada");
    let view: Value = serde_json::from_str(&kubectl(&file, &["config", "view", "--raw", "-o", "json"])).unwrap();
    let find = |list: &str, name: &str| {
        view[list].as_array().unwrap().iter().find(|x| x["name"] == name).cloned().unwrap_or_else(|| panic!("{name}"))
    };
    // Each member's context reaches its API through its proxy's host port, with the member's own credentials.
    for (member, port) in [("member1", 16441), ("member2", 16442), ("member3", 16444)] {
        let name = format!("lab-{member}");
        let context = find("contexts", &name);
        assert_eq!(
            (context["context"]["cluster"].as_str(), context["context"]["user"].as_str()),
            (Some(&*name), Some(&*name))
        );
        assert_eq!(find("clusters", &name)["cluster"]["server"], format!("https://127.0.0.1:{port}"));
        let source = std::fs::read_to_string(d.join(format!(".testbed/kubeconfigs/{member}.config"))).unwrap();
        let key = find("users", &name)["user"]["client-key-data"].as_str().unwrap().to_owned();
        assert!(source.contains(&key), "{member}'s own key");
    }
    assert!(find("clusters", "lab-karmada")["cluster"]["server"].as_str().unwrap().ends_with(":32443"));
    // kubectl keeps testbed's mark on each entry.
    let mark = &find("clusters", "lab-member2")["cluster"]["extensions"][0];
    assert_eq!(mark["name"], "testbed");
    assert_eq!(
        (mark["extension"]["lab"].as_str(), mark["extension"]["simulated"].as_bool()),
        (Some("lab"), Some(true))
    );

    // One member, and to a file of its own, 0600.
    let own = d.join("member2.config");
    let out = testbed(d, &d.join("unused"), &["kubeconfig", "member2", "-o", own.to_str().unwrap()]);
    assert!(out.status.success(), "{}", said(&out));
    assert_eq!(contexts(&own), ["lab-member2"]);
    assert_eq!(std::fs::metadata(&own).unwrap().permissions().mode() & 0o777, 0o600);
    let unknown = testbed(d, &d.join("unused"), &["kubeconfig", "member9"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(said(&unknown).contains("the members are member1, member2, member3"), "{}", said(&unknown));
}

/// A kubeconfig as kubectl leaves it after `kubectl config set-cluster/set-credentials/set-context`.
fn users_kubeconfig(path: &Path) -> String {
    for args in [
        &["config", "set-cluster", "work", "--server=https://k8s.example:6443"][..],
        &["config", "set-credentials", "me", "--token=not-a-real-token"],
        &["config", "set-context", "work", "--cluster=work", "--user=me", "--namespace=team-a"],
        &["config", "use-context", "work"],
    ] {
        kubectl(path, args);
    }
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn merge_keeps_the_users_kubeconfig_byte_for_byte_and_unmerge_restores_it() {
    let lab = applied();
    let d = lab.path();
    let kube = d.join(".kube/config");
    std::fs::create_dir_all(kube.parent().unwrap()).unwrap();
    let before = users_kubeconfig(&kube);

    let out = testbed(d, &kube, &["kubeconfig", "--merge"]);
    assert!(out.status.success(), "{}", said(&out));
    assert!(said(&out).contains("added lab-karmada, lab-member1, lab-member2, lab-member3"), "{}", said(&out));
    let merged = std::fs::read_to_string(&kube).unwrap();
    assert!(!said(&out).contains("client-key-data"), "no credential is printed by a merge");
    assert_eq!(std::fs::metadata(&kube).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::read_to_string(d.join(".kube/config.testbed-backup")).unwrap(), before);
    let mut all: Vec<String> = LAB_CONTEXTS.iter().map(|s| s.to_string()).collect();
    all.push("work".into());
    all.sort();
    assert_eq!(contexts(&kube), all);
    assert_eq!(kubectl(&kube, &["config", "current-context"]).trim(), "work", "the user's current context stays");
    // The user's own lines are all there, in order, untouched.
    let mut rest = merged.as_str();
    for line in before.lines() {
        let at = rest.find(line).unwrap_or_else(|| panic!("{line:?} is gone from:\n{merged}"));
        rest = &rest[at + line.len()..];
    }
    // Again: nothing changes. The apply after a merge does not suggest the merge.
    let again = testbed(d, &kube, &["kubeconfig", "--merge"]);
    assert!(said(&again).contains("nothing to change"), "{}", said(&again));
    assert_eq!(std::fs::read_to_string(&kube).unwrap(), merged);
    let apply = said(&testbed(d, &kube, &["apply", "--yes"]));
    assert!(apply.contains("Next:") && apply.contains("kubectl --context lab-karmada get clusters"), "{apply}");
    assert!(!apply.contains("kubeconfig --merge"), "{apply}");

    // kubectl rewrites the file its own way (a context of the user's added): the lab's entries survive it,
    // and unmerge takes out only them.
    kubectl(&kube, &["config", "set-context", "other", "--cluster=work", "--user=me"]);
    let out = testbed(d, &kube, &["kubeconfig", "--unmerge"]);
    assert!(out.status.success(), "{}", said(&out));
    assert_eq!(contexts(&kube), ["other", "work"]);

    // On the file as it was merged, unmerge gives back the user's file byte for byte.
    std::fs::write(&kube, &merged).unwrap();
    let out = testbed(d, &kube, &["kubeconfig", "--unmerge"]);
    assert!(out.status.success(), "{}", said(&out));
    assert_eq!(std::fs::read_to_string(&kube).unwrap(), before);
    let nothing = testbed(d, &kube, &["kubeconfig", "--unmerge"]);
    assert!(said(&nothing).contains("nothing to remove"), "{}", said(&nothing));
}

#[test]
fn a_context_of_the_same_name_that_is_not_testbeds_is_never_replaced() {
    let lab = applied();
    let d = lab.path();
    let kube = d.join("config");
    kubectl(&kube, &["config", "set-cluster", "lab-member1", "--server=https://mine.example:6443"]);
    let before = std::fs::read_to_string(&kube).unwrap();
    let out = testbed(d, &kube, &["kubeconfig", "--merge"]);
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    let text = said(&out);
    assert!(
        text.contains("already has a cluster named \"lab-member1\"") && text.contains("nothing was changed"),
        "{text}"
    );
    assert_eq!(std::fs::read_to_string(&kube).unwrap(), before);
}

#[test]
fn apply_ends_with_the_next_commands_and_the_app_proxies() {
    let lab = Lab::new(&format!(
        "name = \"lab\"\n{THREE}\n[[proxies]]\nname = \"web\"\nmember = \"member1\"\nhost_port = 9080\ntarget = \"tcp:127.0.0.1:80\"\n"
    ));
    let d = lab.path();
    let out = testbed(d, &d.join("none"), &["apply", "--yes"]);
    assert!(out.status.success(), "{}", said(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    let next = &text[text.find("\nNext:\n").unwrap_or_else(|| panic!("{text}"))..];
    insta::assert_snapshot!(next);
}
