//! `[[workloads]]`: the checks of its keys in testbed.toml, and the reading of its manifest and policy files,
//! each problem with its exact message and the `file:line:col` it points at.
//!
//! The files live in a temporary directory (the "lab"); messages name it `lab/` here.

use std::path::{Path, PathBuf};

use testbed_config::Config;

/// Three members, as most files here have them.
const MEMBERS: &str = r#"[[members]]
name = "member1"
api_port = 16441

[[members]]
name = "member2"
api_port = 16442

[[members]]
name = "member3"
api_port = 16444
"#;

/// A Deployment that Kubernetes takes as it is.
const DEPLOYMENT: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: web
        image: nginx:1.27
"#;

/// A directory holding a testbed.toml and the files its workloads read.
struct Lab {
    dir: tempfile::TempDir,
}

impl Lab {
    fn new() -> Lab {
        Lab { dir: tempfile::Builder::new().prefix("workloads-").tempdir().unwrap() }
    }

    /// Writes `text` to `rel` in the lab (creating its directories).
    fn file(&self, rel: &str, text: &str) -> &Lab {
        let path = self.dir.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
        self
    }

    fn toml(&self) -> PathBuf {
        self.dir.path().join("testbed.toml")
    }

    /// Messages as the user sees them, the lab's directory written `lab`.
    fn shown(&self, s: &str) -> String {
        s.replace(&self.dir.path().display().to_string(), "lab")
    }

    fn parse(&self, text: &str) -> Result<Config, testbed_config::ConfigError> {
        testbed_config::parse(&self.toml(), text)
    }

    /// The one-line problems of `text`; panics if it validates.
    fn problems(&self, text: &str) -> Vec<String> {
        match self.parse(text) {
            Ok(_) => panic!("expected problems, but this validated:\n{text}"),
            Err(e) => e.lines().iter().map(|l| self.shown(l)).collect(),
        }
    }

    /// The validated file; panics with its problems if it does not validate.
    fn config(&self, text: &str) -> Config {
        self.parse(text).unwrap_or_else(|e| panic!("does not validate:\n{}", self.shown(&e.lines().join("\n"))))
    }
}

/// The `line:col` of the `nth` (0-based) occurrence of `needle` in `text`, as the messages count them.
fn pos(text: &str, needle: &str, nth: usize) -> String {
    let offset = text.match_indices(needle).nth(nth).unwrap_or_else(|| panic!("{needle:?} #{nth} not in input")).0;
    let (line, col) = testbed_config::source::line_col(text, offset);
    format!("{line}:{col}")
}

/// A workload entry with the given extra keys, after the three members.
fn with_workload(keys: &str) -> String {
    format!("{MEMBERS}\n[[workloads]]\nname = \"web\"\nmanifests = [\"web.yaml\"]\n{keys}")
}

// ---------------------------------------------------------------------------------------------------------
// The keys in testbed.toml

#[test]
fn workload_names_are_label_values() {
    let lab = Lab::new();
    for (name, why) in [
        ("Web", "may contain only lowercase letters, digits and '-'"),
        ("we_b", "may contain only lowercase letters, digits and '-'"),
        ("1web", "must start with a letter"),
        ("-web", "must start with a letter"),
        ("web-", "must end with a letter or digit"),
        ("", "must be 1 to 63 characters long"),
        (&"w".repeat(64), "must be 1 to 63 characters long"),
    ] {
        let text = format!("[[workloads]]\nname = \"{name}\"\nmanifests = [\"web.yaml\"]\n");
        assert_eq!(
            lab.problems(&text),
            [format!(
                "lab/testbed.toml:2:8: workload name {name:?} {why} (it is a label value and a segment of resource addresses)"
            )],
            "{name:?}"
        );
    }
}

#[test]
fn workload_names_are_unique() {
    let lab = Lab::new();
    let text = "[[workloads]]\nname = \"web\"\nmanifests = [\"a.yaml\"]\n\n[[workloads]]\nname = \"web\"\nmanifests = [\"b.yaml\"]\n";
    assert_eq!(
        lab.problems(text),
        ["lab/testbed.toml:6:8: duplicate workload name \"web\" (first defined at lab/testbed.toml:2:8)"]
    );
}

#[test]
fn manifests_are_not_empty_and_each_entry_is_a_path() {
    let lab = Lab::new();
    let text = "[[workloads]]\nname = \"web\"\nmanifests = []\n";
    assert_eq!(lab.problems(text), ["lab/testbed.toml:3:13: workload \"web\" has no manifests"]);
    let text = "[[workloads]]\nname = \"web\"\nmanifests = [\"web.yaml\", \"\"]\n";
    assert_eq!(
        lab.problems(text),
        [format!("lab/testbed.toml:{}: manifests entry \"\" of workload \"web\" is empty", pos(text, "\"\"", 0))]
    );
    let text = "[[workloads]]\nname = \"web\"\nmanifests = [\"web.yaml\"]\npolicy = \"\"\n";
    assert_eq!(lab.problems(text), ["lab/testbed.toml:4:10: policy \"\" of workload \"web\" is empty"]);
}

#[test]
fn members_name_members_once() {
    let lab = Lab::new();
    let text = with_workload("members = [\"member1\", \"member9\", \"member1\"]\n");
    assert_eq!(
        lab.problems(&text),
        [
            format!(
                "lab/testbed.toml:{}: workload \"web\" names member \"member9\", which is not in [[members]] (they are member1, member2, member3)",
                pos(&text, "\"member9\"", 0)
            ),
            format!("lab/testbed.toml:{}: workload \"web\" lists member \"member1\" twice", pos(&text, "\"member1\"", 2)),
        ]
    );
    let text = with_workload("members = []\n");
    assert_eq!(
        lab.problems(&text),
        [format!("lab/testbed.toml:{}: `members = []` places workload \"web\" on no member", pos(&text, "[]", 0))]
    );
    // A file without members says so.
    let text = "[[workloads]]\nname = \"web\"\nmanifests = [\"web.yaml\"]\nmembers = [\"member1\"]\n";
    assert_eq!(
        lab.problems(text),
        ["lab/testbed.toml:4:12: workload \"web\" names member \"member1\", which is not in [[members]] (there are none)"]
    );
}

#[test]
fn weights_name_placed_members() {
    let lab = Lab::new();
    let text =
        with_workload("members = [\"member1\", \"member2\"]\nweights = { member1 = 1, member3 = 1, member7 = 2 }\n");
    assert_eq!(
        lab.problems(&text),
        [
            format!(
                "lab/testbed.toml:{}: weights of workload \"web\" name member \"member3\", which the workload is not placed on (its members: member1, member2)",
                pos(&text, "member3 =", 0)
            ),
            format!(
                "lab/testbed.toml:{}: weights of workload \"web\" name \"member7\", which is not in [[members]] (they are member1, member2, member3)",
                pos(&text, "member7", 0)
            ),
        ]
    );
}

#[test]
fn duplicated_replicas_take_no_weights() {
    let lab = Lab::new();
    let text = with_workload("replicas = \"duplicated\"\nweights = { member1 = 1 }\n");
    assert_eq!(
        lab.problems(&text),
        [format!(
            "lab/testbed.toml:{}: workload \"web\" has `replicas = \"duplicated\"` and `weights`: duplicated replicas run in full on every member, so there is nothing to divide by weight",
            pos(&text, "\"duplicated\"", 0)
        )]
    );
}

/// Karmada leaves a weight of 0 out of the division, and divides equally when every weight is 0 (its
/// getStaticWeightInfoList): a file whose weights are all 0 would not do what it says.
#[test]
fn weights_that_are_all_zero_are_refused() {
    let lab = Lab::new();
    for weights in ["{ member1 = 0, member2 = 0 }", "{}"] {
        let text = with_workload(&format!("weights = {weights}\n"));
        let what = if weights == "{}" { "`weights = {}` gives no member a weight" } else { "every weight is 0" };
        assert_eq!(
            lab.problems(&text),
            [format!(
                "lab/testbed.toml:{}: {what} in workload \"web\": Karmada then divides the replicas equally among all its members, as if no weights were given",
                pos(&text, weights, 0)
            )]
        );
    }
}

#[test]
fn spread_is_at_most_the_placed_members() {
    let lab = Lab::new();
    let text = with_workload("members = [\"member1\", \"member2\"]\nspread = 3\n");
    assert_eq!(
        lab.problems(&text),
        [format!(
            "lab/testbed.toml:{}: spread = 3 of workload \"web\" is outside 1-2: the workload is placed on 2 members",
            pos(&text, "3\n", 0)
        )]
    );
    // Without `members`, every member: three here.
    let text = with_workload("spread = 0\n");
    assert_eq!(
        lab.problems(&text),
        [format!(
            "lab/testbed.toml:{}: spread = 0 of workload \"web\" is outside 1-3: the workload is placed on 3 members",
            pos(&text, "0\n", 0)
        )]
    );
    lab.file("web.yaml", DEPLOYMENT);
    lab.config(&with_workload("spread = 3\n"));
}

#[test]
fn failover_toleration_is_at_most_an_hour() {
    let lab = Lab::new();
    let text = with_workload("failover = { toleration_seconds = 3601 }\n");
    assert_eq!(
        lab.problems(&text),
        [format!(
            "lab/testbed.toml:{}: failover.toleration_seconds = 3601 of workload \"web\" is above 3600 (an hour)",
            pos(&text, "3601", 0)
        )]
    );
    lab.file("web.yaml", DEPLOYMENT);
    let c = lab.config(&with_workload("failover = { toleration_seconds = 0 }\n"));
    let f = c.file.workloads[0].failover.as_ref().unwrap();
    assert_eq!((f.toleration_seconds, f.purge_mode.as_str()), (0, "Gracefully"));
}

/// Karmada v1.19 removed the deprecated purge modes Immediately and Graciously from the PropagationPolicy
/// CRD; v1.15 to v1.18 accept them.
#[test]
fn purge_mode_is_one_the_karmada_version_accepts() {
    let lab = Lab::new();
    lab.file("web.yaml", DEPLOYMENT);
    let text = |version: &str| {
        with_workload("failover = { purge_mode = \"Graciously\" }\n")
            .replace("[[workloads]]", &format!("[karmada]\nversion = \"{version}\"\n\n[[workloads]]"))
    };
    lab.config(&text("v1.15.9"));
    let v19 = text("v1.19.0");
    assert_eq!(
        lab.problems(&v19),
        [format!(
            "lab/testbed.toml:{}: purge mode \"Graciously\" is not accepted by Karmada v1.19.0: v1.19 accepts Directly, Gracefully, Never",
            pos(&v19, "\"Graciously\"", 0)
        )]
    );
    let err = lab.parse(&v19).unwrap_err();
    let testbed_config::ConfigError::Invalid { problems, .. } = &err else { panic!("{err}") };
    assert_eq!(
        problems[0].help.as_deref(),
        Some("Karmada v1.15 renamed Graciously to Gracefully: write \"Gracefully\"")
    );
}

/// A version without a table entry (its images listed by hand) takes the purge modes every known release
/// accepts.
#[test]
fn purge_mode_of_a_version_testbed_does_not_know() {
    let lab = Lab::new();
    lab.file("web.yaml", DEPLOYMENT);
    let images: String = [
        "karmada-controller-manager",
        "karmada-scheduler",
        "karmada-webhook",
        "karmada-aggregated-apiserver",
        "kube-apiserver",
        "kube-controller-manager",
        "etcd",
    ]
    .iter()
    .map(|n| format!("[[images]]\nsource = \"registry.example/{n}:v1.20.0\"\n\n"))
    .collect();
    let text = |mode: &str| {
        format!(
            "[karmada]\nversion = \"v1.20.0\"\n\n{images}{}",
            with_workload(&format!("failover = {{ purge_mode = \"{mode}\" }}\n"))
        )
    };
    lab.config(&text("Never"));
    let immediately = text("Immediately");
    assert_eq!(
        lab.problems(&immediately),
        [format!(
            "lab/testbed.toml:{}: purge mode \"Immediately\" is not accepted by every Karmada release testbed knows, and testbed does not know v1.20.0: it accepts only Directly, Gracefully, Never there",
            pos(&immediately, "\"Immediately\"", 0)
        )]
    );
}

/// A workload's `failover` is fine whatever `[karmada] failover` says: absent, the planner turns cluster
/// failover on for it; `false` keeps it off (application failover still works: Karmada's Failover gate covers
/// only cluster failover).
#[test]
fn a_workload_that_fails_over_is_valid_with_or_without_cluster_failover() {
    let lab = Lab::new();
    lab.file("web.yaml", DEPLOYMENT);
    let c = lab.config(&with_workload("failover = { toleration_seconds = 60 }\n"));
    assert_eq!(c.file.karmada.failover, None);
    let c = lab.config(&format!(
        "[karmada]\nfailover = false\n\n{}",
        with_workload("failover = { toleration_seconds = 60 }\n")
    ));
    assert_eq!(c.file.karmada.failover, Some(false));
}

#[test]
fn a_policy_file_decides_placement_alone() {
    let lab = Lab::new();
    let text = with_workload(
        "policy = \"policy.yaml\"\nmembers = [\"member1\"]\nreplicas = \"divided\"\nweights = { member1 = 1 }\nspread = 1\nfailover = { toleration_seconds = 60 }\n",
    );
    let lines = lab.problems(&text);
    let want: Vec<String> = ["members", "replicas", "weights", "spread", "failover"]
        .iter()
        .map(|k| {
            format!(
                "lab/testbed.toml:{}: workload \"web\" has a policy file, so `{k}` has no effect: the policy file decides placement",
                pos(&text, &format!("{k} ="), 0)
            )
        })
        .collect();
    assert_eq!(lines, want);
}

// ---------------------------------------------------------------------------------------------------------
// Reading the manifests

/// The testbed.toml of one workload reading `manifests` (TOML array items), after the three members.
fn reading(manifests: &str) -> String {
    format!("{MEMBERS}\n[[workloads]]\nname = \"web\"\nmanifests = [{manifests}]\n")
}

/// The objects of each workload as `key @ source`, the lab written `lab`.
fn objects(lab: &Lab, c: &Config) -> Vec<Vec<String>> {
    c.workloads
        .iter()
        .map(|w| w.objects.iter().map(|o| format!("{} @ {}", o.key(), lab.shown(&o.source))).collect())
        .collect()
}

#[test]
fn files_and_directories_hold_several_documents_each() {
    let lab = Lab::new();
    lab.file(
        "ns.yaml",
        "# the namespace\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: web\n---\n# nothing here\n---\n",
    );
    lab.file(
        "app/b.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\n  namespace: web\n---\napiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  ports: [{port: 80}]\n",
    );
    lab.file("app/a.yml", DEPLOYMENT);
    lab.file("app/notes.txt", "not YAML: { [");
    lab.file("app/sub/c.yaml", "not read: directories are not read recursively: [");
    let c = lab.config(&reading("\"ns.yaml\", \"app\""));
    assert_eq!(c.workloads.len(), 1);
    assert_eq!(c.workloads[0].name, "web");
    assert_eq!(
        objects(&lab, &c),
        [[
            "namespace/web @ lab/ns.yaml:3",
            "deployment/default/web @ lab/app/a.yml:1",
            "configmap/web/cfg @ lab/app/b.yaml:1",
            "service/default/web @ lab/app/b.yaml:7",
        ]]
    );
    let w = &c.workloads[0];
    // A namespaced object without a namespace is in `default`, in the object too.
    assert_eq!(w.objects[1].namespace.as_deref(), Some("default"));
    assert_eq!(w.objects[1].object["metadata"]["namespace"], "default");
    assert_eq!(w.objects[1].object["spec"]["template"]["spec"]["containers"][0]["image"], "nginx:1.27");
    assert_eq!(w.objects[0].namespace, None);
    assert!(w.objects[0].object["metadata"].get("namespace").is_none());
    assert!(w.policy.is_none());
}

#[test]
fn workloads_keep_the_files_order() {
    let lab = Lab::new();
    lab.file("a.yaml", DEPLOYMENT);
    lab.file("b.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n");
    let text = format!(
        "{MEMBERS}\n[[workloads]]\nname = \"second\"\nmanifests = [\"b.yaml\"]\n\n[[workloads]]\nname = \"first\"\nmanifests = [\"/{}\"]\n",
        lab.dir.path().join("a.yaml").display().to_string().trim_start_matches('/')
    );
    let c = lab.config(&text);
    let names: Vec<&str> = c.workloads.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(names, ["second", "first"]);
    // An absolute path is read as it is.
    assert_eq!(objects(&lab, &c), [["configmap/default/b @ lab/b.yaml:1"], ["deployment/default/web @ lab/a.yaml:1"]]);
}

/// A testbed.toml named by a relative path names its files relative to the current directory too.
#[test]
fn sources_are_shown_as_the_path_was_given() {
    let here = std::env::current_dir().unwrap();
    let dir = tempfile::Builder::new().prefix("workloads-rel-").tempdir_in(&here).unwrap();
    std::fs::write(dir.path().join("web.yaml"), DEPLOYMENT).unwrap();
    let rel = Path::new(dir.path().file_name().unwrap()).join("testbed.toml");
    let c = testbed_config::parse(&rel, &reading("\"web.yaml\"")).unwrap();
    assert_eq!(c.workloads[0].objects[0].source, format!("{}:1", rel.parent().unwrap().join("web.yaml").display()));
    // And its problems.
    std::fs::write(dir.path().join("bad.yaml"), "a: [\n").unwrap();
    let err = testbed_config::parse(&rel, &reading("\"bad.yaml\"")).unwrap_err();
    let want = format!("{}:1:4: invalid YAML: unclosed bracket", rel.parent().unwrap().join("bad.yaml").display());
    assert!(err.lines()[0].starts_with(&want), "{:?}", err.lines());
}

#[test]
fn a_missing_file_or_directory_is_a_problem_at_its_entry() {
    let lab = Lab::new();
    lab.file("web.yaml", DEPLOYMENT);
    let text = reading("\"web.yaml\", \"nope.yaml\", \"gone/\"");
    assert_eq!(
        lab.problems(&text),
        [
            format!(
                "lab/testbed.toml:{}: manifests entry \"nope.yaml\" of workload \"web\": lab/nope.yaml does not exist",
                pos(&text, "\"nope.yaml\"", 0)
            ),
            format!(
                "lab/testbed.toml:{}: manifests entry \"gone/\" of workload \"web\": lab/gone/ does not exist",
                pos(&text, "\"gone/\"", 0)
            ),
        ]
    );
    let err = lab.parse(&text).unwrap_err();
    let testbed_config::ConfigError::Invalid { problems, .. } = &err else { panic!("{err}") };
    assert_eq!(
        problems[0].help.as_deref().map(|h| lab.shown(h)).as_deref(),
        Some("relative paths are read from the directory of this file (lab): fix the path, or create the file")
    );
}

#[test]
fn a_directory_without_yaml_files_is_a_problem() {
    let lab = Lab::new();
    lab.file("empty/readme.txt", "no manifests here");
    let text = reading("\"empty\"");
    assert_eq!(
        lab.problems(&text),
        [format!(
            "lab/testbed.toml:{}: manifests entry \"empty\" of workload \"web\": the directory lab/empty holds no *.yaml or *.yml file",
            pos(&text, "\"empty\"", 0)
        )]
    );
}

#[test]
fn a_workload_without_objects_is_a_problem() {
    let lab = Lab::new();
    lab.file("web.yaml", "# to do\n---\n");
    let text = reading("\"web.yaml\"");
    assert_eq!(
        lab.problems(&text),
        [format!(
            "lab/testbed.toml:{}: the manifests of workload \"web\" hold no object",
            pos(&text, "[\"web.yaml\"]", 0)
        )]
    );
}

#[test]
fn a_yaml_syntax_error_points_at_its_line() {
    let lab = Lab::new();
    lab.file("web.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\n data: x\n");
    assert_eq!(
        lab.problems(&reading("\"web.yaml\"")),
        ["lab/web.yaml:5:2: invalid YAML: while parsing a block mapping, did not find expected key"]
    );
    lab.file("web.yaml", "apiVersion: v1\nkind: ConfigMap\nkind: Secret\n");
    assert_eq!(
        lab.problems(&reading("\"web.yaml\"")),
        ["lab/web.yaml:3:1: invalid YAML: duplicate mapping key: kind, set DuplicateKeyPolicy in Options if acceptable"]
    );
}

#[test]
fn each_document_is_an_object_with_api_version_kind_and_name() {
    let lab = Lab::new();
    lab.file(
        "web.yaml",
        "- a: list\n---\njust text\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {}\n---\nkind: ConfigMap\nmetadata: {name: 3}\n---\n# a comment first\napiVersion: v1\nkind: [ConfigMap]\nmetadata: {name: x}\n",
    );
    assert_eq!(
        lab.problems(&reading("\"web.yaml\"")),
        [
            "lab/web.yaml:1:1: this document is a list, not a Kubernetes object",
            "lab/web.yaml:3:1: this document is a string, not a Kubernetes object",
            "lab/web.yaml:5:1: this object has no metadata.name: a Kubernetes object needs apiVersion, kind and metadata.name, each a string",
            "lab/web.yaml:9:1: this object has no apiVersion and metadata.name: a Kubernetes object needs apiVersion, kind and metadata.name, each a string",
            "lab/web.yaml:13:1: this object has no kind: a Kubernetes object needs apiVersion, kind and metadata.name, each a string",
        ]
    );
}

#[test]
fn a_kind_testbed_cannot_place_is_named_with_the_kinds_it_can() {
    let lab = Lab::new();
    lab.file("web.yaml", &format!("{DEPLOYMENT}---\napiVersion: batch/v1\nkind: Job\nmetadata: {{name: once}}\n---\napiVersion: extensions/v1beta1\nkind: Deployment\nmetadata: {{name: old}}\n"));
    let places = "it places Namespace, ServiceAccount, ConfigMap, Secret, PersistentVolumeClaim, Service (v1) and Deployment, StatefulSet, DaemonSet (apps/v1)";
    assert_eq!(
        lab.problems(&reading("\"web.yaml\"")),
        [
            format!("lab/web.yaml:20:7: testbed cannot place Job (apiVersion batch/v1): {places}"),
            format!("lab/web.yaml:24:7: testbed cannot place Deployment (apiVersion extensions/v1beta1): {places}"),
        ]
    );
}

#[test]
fn an_unknown_field_points_at_its_key() {
    let lab = Lab::new();
    let yaml = DEPLOYMENT
        .replace("        image: nginx:1.27\n", "        image: nginx:1.27\n        imagePullPolcy: Always\n")
        + "  strategy:\n    type: Recreate\n  minReadySecond: 5\n";
    lab.file("web.yaml", &yaml);
    assert_eq!(
        lab.problems(&reading("\"web.yaml\"")),
        [
            format!(
                "lab/web.yaml:{}: Deployment \"web\" has an unknown field spec.template.spec.containers[0].imagePullPolcy",
                pos(&yaml, "imagePullPolcy", 0)
            ),
            format!("lab/web.yaml:{}: Deployment \"web\" has an unknown field spec.minReadySecond", pos(&yaml, "minReadySecond", 0)),
        ]
    );
    let err = lab.parse(&reading("\"web.yaml\"")).unwrap_err();
    let testbed_config::ConfigError::Invalid { problems, .. } = &err else { panic!("{err}") };
    assert_eq!(
        problems[0].help.as_deref(),
        Some("Kubernetes drops it (or refuses the object, with strict field validation): check its spelling and place with `kubectl explain deployment.spec.template.spec.containers`")
    );
}

#[test]
fn a_value_of_the_wrong_type_is_a_problem_and_the_others_are_still_found() {
    let lab = Lab::new();
    let yaml = DEPLOYMENT.replace("replicas: 2", "replicas: \"two\"").replace(
        "image: nginx:1.27",
        "image: nginx:1.27\n        ports: [{containerPort: http}]\n        args: [--port, 8080]\n        bogus: 1",
    );
    lab.file("web.yaml", &yaml);
    assert_eq!(
        lab.problems(&reading("\"web.yaml\"")),
        [
            format!("lab/web.yaml:{}: Deployment \"web\" at spec.replicas: invalid type: string \"two\", expected i32", pos(&yaml, "\"two\"", 0)),
            format!(
                "lab/web.yaml:{}: Deployment \"web\" at spec.template.spec.containers[0].ports[0].containerPort: invalid type: string \"http\", expected i32",
                pos(&yaml, "http", 0)
            ),
            format!(
                "lab/web.yaml:{}: Deployment \"web\" at spec.template.spec.containers[0].args[1]: invalid type: integer `8080`, expected a string",
                pos(&yaml, "8080", 0)
            ),
            format!("lab/web.yaml:{}: Deployment \"web\" has an unknown field spec.template.spec.containers[0].bogus", pos(&yaml, "bogus", 0)),
        ]
    );
}

/// Kubernetes reads YAML 1.1: an unquoted yes, no, on, off, y or n is a boolean, which a string field
/// refuses; a boolean field takes it, and 0644 is octal.
#[test]
fn yaml_1_1_booleans_in_string_fields_want_quotes() {
    let lab = Lab::new();
    let yaml = DEPLOYMENT.replace(
        "        image: nginx:1.27\n",
        "        image: nginx:1.27\n        env:\n        - name: DEBUG\n          value: yes\n        - name: QUOTED\n          value: \"no\"\n        - name: TLS\n          value: Off\n",
    ) + "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: flags\n  labels: {enabled: y}\ndata:\n  feature: on\n";
    lab.file("web.yaml", &yaml);
    assert_eq!(
        lab.problems(&reading("\"web.yaml\"")),
        [
            format!(
                "lab/web.yaml:{}: write \"yes\" in quotes: Kubernetes reads an unquoted yes as true, and Deployment \"web\" wants a string at spec.template.spec.containers[0].env[0].value",
                pos(&yaml, "yes", 0)
            ),
            format!(
                "lab/web.yaml:{}: write \"Off\" in quotes: Kubernetes reads an unquoted Off as false, and Deployment \"web\" wants a string at spec.template.spec.containers[0].env[2].value",
                pos(&yaml, "Off", 0)
            ),
            format!(
                "lab/web.yaml:{}: write \"y\" in quotes: Kubernetes reads an unquoted y as true, and ConfigMap \"flags\" wants a string at metadata.labels.enabled",
                pos(&yaml, "y}", 0)
            ),
            format!(
                "lab/web.yaml:{}: write \"on\" in quotes: Kubernetes reads an unquoted on as true, and ConfigMap \"flags\" wants a string at data.feature",
                pos(&yaml, "on\n", 0)
            ),
        ]
    );
    // A boolean field takes them, and file modes are octal.
    let yaml = DEPLOYMENT.replace(
        "      containers:\n",
        "      hostNetwork: no\n      enableServiceLinks: yes\n      volumes:\n      - name: cfg\n        configMap: {name: cfg, defaultMode: 0644}\n      containers:\n",
    );
    lab.file("web.yaml", &yaml);
    let c = lab.config(&reading("\"web.yaml\""));
    let spec = &c.workloads[0].objects[0].object["spec"]["template"]["spec"];
    assert_eq!((&spec["hostNetwork"], &spec["enableServiceLinks"]), (&false.into(), &true.into()));
    assert_eq!(spec["volumes"][0]["configMap"]["defaultMode"], 420);
}

#[test]
fn a_cluster_scoped_object_has_no_namespace() {
    let lab = Lab::new();
    let yaml = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: web\n  namespace: default\n";
    lab.file("ns.yaml", yaml);
    assert_eq!(
        lab.problems(&reading("\"ns.yaml\"")),
        ["lab/ns.yaml:5:14: Namespace \"web\" is cluster-scoped: it lives in no namespace, so metadata.namespace has no meaning here (Kubernetes drops it)"]
    );
}

#[test]
fn an_object_belongs_to_one_workload_once() {
    let lab = Lab::new();
    lab.file("a.yaml", DEPLOYMENT);
    lab.file(
        "b.yaml",
        &format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cfg}}\n---\n{}",
            DEPLOYMENT.replace("name: web\nspec", "name: web\n  namespace: default\nspec")
        ),
    );
    assert_eq!(
        lab.problems(&reading("\"a.yaml\", \"b.yaml\"")),
        ["lab/b.yaml:5:1: Deployment default/web is written twice in workload \"web\" (first at lab/a.yaml:1)"]
    );
    let text = format!("{MEMBERS}\n[[workloads]]\nname = \"one\"\nmanifests = [\"a.yaml\"]\n\n[[workloads]]\nname = \"two\"\nmanifests = [\"b.yaml\"]\n");
    assert_eq!(
        lab.problems(&text),
        ["lab/b.yaml:5:1: Deployment default/web belongs to workload \"one\" already (at lab/a.yaml:1); workload \"two\" lists it too"]
    );
    // The same name in another namespace, or of another kind, is another object.
    lab.file("b.yaml", &DEPLOYMENT.replace("name: web\nspec", "name: web\n  namespace: other\nspec"));
    lab.config(&text);
}

// ---------------------------------------------------------------------------------------------------------
// The policy file

const POLICY: &str = r#"apiVersion: policy.karmada.io/v1alpha1
kind: PropagationPolicy
metadata:
  name: web
spec:
  resourceSelectors:
  - apiVersion: apps/v1
    kind: Deployment
    name: web
  placement:
    clusterAffinity:
      clusterNames: [member1, member2]
  failover:
    application:
      decisionConditions:
        tolerationSeconds: 30
      purgeMode: Graciously
"#;

fn with_policy(version: &str) -> String {
    format!("[karmada]\nversion = \"{version}\"\n\n{}policy = \"policy.yaml\"\n", reading("\"web.yaml\""))
}

#[test]
fn a_policy_file_is_read_and_kept() {
    let lab = Lab::new();
    lab.file("web.yaml", DEPLOYMENT).file("policy.yaml", POLICY);
    let c = lab.config(&with_policy("v1.15.9"));
    let policy = c.workloads[0].policy.as_ref().unwrap();
    assert_eq!(policy["kind"], "PropagationPolicy");
    assert_eq!(policy["metadata"]["namespace"], "default");
    assert_eq!(policy["spec"]["failover"]["application"]["purgeMode"], "Graciously");
}

#[test]
fn a_policy_files_purge_mode_is_checked_against_the_version() {
    let lab = Lab::new();
    lab.file("web.yaml", DEPLOYMENT).file("policy.yaml", POLICY);
    assert_eq!(
        lab.problems(&with_policy("v1.19.0")),
        [format!(
            "lab/policy.yaml:{}: purge mode \"Graciously\" is not accepted by Karmada v1.19.0: v1.19 accepts Directly, Gracefully, Never",
            pos(POLICY, "Graciously", 0)
        )]
    );
}

#[test]
fn a_policy_file_holds_one_propagation_policy_that_selects_something() {
    let lab = Lab::new();
    lab.file("web.yaml", DEPLOYMENT);
    lab.file("policy.yaml", &POLICY.replace("kind: PropagationPolicy", "kind: ClusterPropagationPolicy"));
    assert_eq!(
        lab.problems(&with_policy("v1.15.9")),
        ["lab/policy.yaml:2:7: a policy file holds a PropagationPolicy (apiVersion policy.karmada.io/v1alpha1), not a ClusterPropagationPolicy (apiVersion policy.karmada.io/v1alpha1)"]
    );
    let no_selectors = POLICY.replace(
        "  resourceSelectors:\n  - apiVersion: apps/v1\n    kind: Deployment\n    name: web\n",
        "  resourceSelectors: []\n",
    );
    lab.file("policy.yaml", &no_selectors);
    assert_eq!(
        lab.problems(&with_policy("v1.15.9")),
        [format!(
            "lab/policy.yaml:{}: the PropagationPolicy has no spec.resourceSelectors: Karmada would place nothing by it",
            pos(&no_selectors, "[]", 0)
        )]
    );
    lab.file("policy.yaml", &format!("{POLICY}---\n{POLICY}"));
    assert_eq!(
        lab.problems(&with_policy("v1.15.9")),
        ["lab/policy.yaml:19:1: lab/policy.yaml holds more than one document: a policy file holds one PropagationPolicy"]
    );
    std::fs::remove_file(lab.dir.path().join("policy.yaml")).unwrap();
    let text = with_policy("v1.15.9");
    assert_eq!(
        lab.problems(&text),
        [format!(
            "lab/testbed.toml:{}: policy \"policy.yaml\" of workload \"web\": lab/policy.yaml does not exist",
            pos(&text, "\"policy.yaml\"", 0)
        )]
    );
}

// ---------------------------------------------------------------------------------------------------------
// The graphical report (what `testbed validate` shows) of problems in a YAML file

fn render(lab: &Lab, err: &dyn miette::Diagnostic) -> String {
    let mut out = String::new();
    miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
        .with_width(100)
        .render_report(&mut out, err)
        .expect("render");
    lab.shown(&out)
}

#[test]
fn graphical_report_of_a_yaml_error_shows_the_yaml_line() {
    let lab = Lab::new();
    lab.file("web.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\ndata:\n  key: \"unterminated\n");
    let err = lab.parse(&reading("\"web.yaml\"")).unwrap_err();
    let out = render(&lab, &err);
    assert!(out.contains("key: \"unterminated"), "{out}");
    insta::assert_snapshot!(out);
}

#[test]
fn graphical_report_of_an_unknown_field_shows_the_yaml_line() {
    let lab = Lab::new();
    lab.file(
        "web.yaml",
        &DEPLOYMENT
            .replace("        image: nginx:1.27\n", "        image: nginx:1.27\n        imagePullPolcy: Always\n"),
    );
    let err = lab.parse(&reading("\"web.yaml\"")).unwrap_err();
    let out = render(&lab, &err);
    assert!(out.contains("imagePullPolcy: Always"), "{out}");
    insta::assert_snapshot!(out);
}
