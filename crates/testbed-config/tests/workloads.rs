//! `[[workloads]]`: the checks of its keys in testbed.toml, and the reading of its manifest and policy files,
//! each problem with its exact message and the `file:line:col` it points at.
//!
//! The files live in a temporary directory (the "lab"); messages name it `lab/` here.

use std::path::PathBuf;

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

/// Karmada's application failover does not need the control plane's Failover feature gate (that gate is
/// cluster failover's): `failover` on a workload is fine with `[karmada] failover = false`.
#[test]
fn application_failover_does_not_need_cluster_failover() {
    let lab = Lab::new();
    lab.file("web.yaml", DEPLOYMENT);
    let c = lab.config(&with_workload("failover = { toleration_seconds = 60 }\n"));
    assert!(!c.file.karmada.failover);
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
