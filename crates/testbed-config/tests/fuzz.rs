//! Fuzzing the file reader: arbitrary bytes, and the repository's own files with arbitrary damage, never
//! make parse+validate panic, and every error renders, one-line and graphical, at a place inside the file.
//!
//! 512 cases per property by default, a second or two in all; more with PROPTEST_CASES (e.g. 100000 for a
//! longer local run).

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::sample::Index;

const FILE: &str = "testbed.toml";

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(512)
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// testbed.toml and every example file: realistic starting points that reach validation.
fn seeds() -> Vec<Vec<u8>> {
    let mut paths = vec![repo().join("testbed.toml")];
    let mut examples: Vec<PathBuf> = std::fs::read_dir(repo().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    examples.sort();
    paths.extend(examples);
    paths.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

/// Pieces of TOML and of bad input, to insert whole: a random byte rarely makes a new table or a string.
const TOKENS: &[&str] = &[
    "\"",
    "'",
    "[",
    "]",
    "[[",
    "]]",
    "=",
    "\n",
    "\\",
    "\\u0000",
    "\\n",
    "\\t",
    "\\u001b",
    "{",
    "}",
    ",",
    ".",
    "#",
    "\"\"\"",
    "é",
    "\u{feff}",
    "0",
    "65536",
    "-1",
    "true",
    "1979-05-27",
    "inf",
    "nan",
    "\"/\"",
    "\"\"",
    "\"../\"",
    "\r\n",
    "\t",
    "[[members]]\nname = \"m\"\napi_port = 16441\n",
    "[lxd]\n",
    "[karmada]\ndata_dir = \"/\"\n",
    "[[images]]\nsource = \"A:B@sha256:\"\n",
    "[registry.mirrors]\n\"x\" = { endpoint = \"http://[::1]\" }\n",
    "[[proxies]]\nname = \"p\"\nmember = \"m\"\nhost_port = 1\ntarget = \"tcp:[::1]:0\"\n",
    "[[workloads]]\nname = \"w\"\nmanifests = [\"m\"]\n",
    "weights = { m = 0 }\n",
    "spread = 9\n",
    "failover = { purge_mode = \"Graciously\", toleration_seconds = 9999 }\n",
    "policy = \"p\"\n",
    "members = [\"m\", \"m\"]\n",
];

/// Pieces of YAML and of bad input, for the manifests.
const YAML_TOKENS: &[&str] = &[
    "\n---\n",
    "- ",
    ": ",
    "  ",
    "\t",
    "\"",
    "'",
    "[",
    "]",
    "{",
    "}",
    "&a ",
    "*a",
    "<<: *a\n",
    "!!binary ",
    "|\n",
    ">-\n",
    "yes",
    "0644",
    ".inf",
    "~",
    "#",
    "é",
    "\u{feff}",
    "\r\n",
    "kind: Job\n",
    "namespace: x\n",
    "apiVersion: v1\nkind: Namespace\nmetadata: {name: n, namespace: d}\n",
    "purgeMode: Graciously\n",
    "resourceSelectors: []\n",
];

/// One change to a file.
#[derive(Debug, Clone)]
enum Mutation {
    InsertBytes(Index, Vec<u8>),
    InsertToken(Index, Index),
    Delete(Index, usize),
    Replace(Index, u8),
    DuplicateRange(Index, usize),
    LongValue(Index, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), prop::collection::vec(any::<u8>(), 1..8)).prop_map(|(i, b)| Mutation::InsertBytes(i, b)),
        (any::<Index>(), any::<Index>()).prop_map(|(i, t)| Mutation::InsertToken(i, t)),
        (any::<Index>(), 1usize..64).prop_map(|(i, n)| Mutation::Delete(i, n)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Replace(i, b)),
        (any::<Index>(), 1usize..200).prop_map(|(i, n)| Mutation::DuplicateRange(i, n)),
        (any::<Index>(), 200usize..70000).prop_map(|(i, n)| Mutation::LongValue(i, n)),
    ]
}

fn apply(bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    apply_with(bytes, mutations, TOKENS)
}

fn apply_with(mut bytes: Vec<u8>, mutations: &[Mutation], tokens: &[&str]) -> Vec<u8> {
    for m in mutations {
        let at = |i: &Index, len: usize| i.index(len + 1);
        match m {
            Mutation::InsertBytes(i, b) => {
                let p = at(i, bytes.len());
                bytes.splice(p..p, b.iter().copied());
            }
            Mutation::InsertToken(i, t) => {
                let p = at(i, bytes.len());
                bytes.splice(p..p, t.get(tokens).bytes());
            }
            Mutation::Delete(i, n) => {
                let p = at(i, bytes.len());
                bytes.drain(p..(p + n).min(bytes.len()));
            }
            Mutation::Replace(i, b) if !bytes.is_empty() => {
                let p = i.index(bytes.len());
                bytes[p] = *b;
            }
            Mutation::Replace(..) => {}
            Mutation::DuplicateRange(i, n) => {
                let p = at(i, bytes.len());
                let piece = bytes[p..(p + n).min(bytes.len())].to_vec();
                bytes.splice(p..p, piece);
            }
            Mutation::LongValue(i, n) => {
                let p = at(i, bytes.len());
                bytes.splice(p..p, std::iter::repeat_n(b'x', *n));
            }
        }
    }
    bytes
}

/// Parses and validates `bytes`; on an error, checks what the user would see.
fn read(bytes: &[u8]) -> Result<(), TestCaseError> {
    let Err(err) = testbed_config::parse_bytes(Path::new(FILE), bytes) else { return Ok(()) };
    let lines = err.lines();
    prop_assert!(!lines.is_empty());
    let line_count = bytes.iter().filter(|b| **b == b'\n').count() + 1;
    for l in &lines {
        // `testbed.toml:LINE:COL: message`, LINE inside the file, COL from 1, on one line.
        let rest = l.strip_prefix("testbed.toml:").ok_or_else(|| TestCaseError::fail(format!("no location: {l}")))?;
        let mut parts = rest.splitn(3, ':');
        let line: usize = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        let col: usize = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        prop_assert!((1..=line_count).contains(&line) && col >= 1, "bad location in {l:?}");
        prop_assert!(!l.contains('\n'), "a problem line holds a newline: {l:?}");
    }
    let mut shown = String::new();
    miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
        .with_width(100)
        .render_report(&mut shown, &err)
        .map_err(|e| TestCaseError::fail(format!("the report does not render: {e}")))?;
    prop_assert!(!shown.is_empty());
    Ok(())
}

/// A workload's manifest and policy files, as a user writes them.
const MANIFEST_SEED: &str = r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: cfg
data:
  mode: "on"
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.27
        env:
        - {name: A, value: "1"}
        resources:
          limits: {cpu: 1, memory: 128Mi}
"#;

const POLICY_SEED: &str = r#"apiVersion: policy.karmada.io/v1alpha1
kind: PropagationPolicy
metadata:
  name: web
spec:
  resourceSelectors:
  - {apiVersion: apps/v1, kind: Deployment, name: web}
  failover:
    application:
      purgeMode: Gracefully
"#;

const WORKLOAD_TOML: &str = "[[members]]\nname = \"m\"\napi_port = 16441\n\n[[workloads]]\nname = \"w\"\nmanifests = [\"m.yaml\"]\n\n[[workloads]]\nname = \"v\"\nmanifests = [\"v.yaml\"]\npolicy = \"p.yaml\"\n";

/// The lab's files: testbed.toml, a workload's manifest, another's manifest and its policy.
fn workload_files<'a>(manifest: &'a [u8], policy: &'a [u8]) -> [(&'static str, &'a [u8]); 4] {
    let other = b"apiVersion: v1\nkind: Service\nmetadata: {name: v}\nspec:\n  ports: [{port: 80, targetPort: http}]\n";
    [("testbed.toml", WORKLOAD_TOML.as_bytes()), ("m.yaml", manifest), ("v.yaml", other), ("p.yaml", policy)]
}

/// Writes the files into a fresh directory and reads its testbed.toml.
fn load_workload_files(
    files: &[(&str, &[u8])],
) -> (tempfile::TempDir, Result<testbed_config::Config, testbed_config::ConfigError>) {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in files {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    let read = testbed_config::load(&dir.path().join("testbed.toml"));
    (dir, read)
}

/// Reads the damaged files; on an error, checks that every problem names one of the files, at a line
/// inside it, and renders.
fn read_workload_files(manifest: &[u8], policy: &[u8]) -> Result<(), TestCaseError> {
    let files = workload_files(manifest, policy);
    let (dir, read) = load_workload_files(&files);
    let err = match read {
        Ok(c) => {
            prop_assert_eq!(c.workloads.len(), 2);
            return Ok(());
        }
        Err(e) => e,
    };
    for l in err.lines() {
        let dir_shown = dir.path().display().to_string();
        let (name, bytes, rest) = files
            .iter()
            .find_map(|(n, b)| Some((*n, *b, l.strip_prefix(&format!("{dir_shown}/{n}:"))?)))
            .ok_or_else(|| TestCaseError::fail(format!("no file of the lab: {l}")))?;
        let mut parts = rest.splitn(3, ':');
        let line: usize = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        let col: usize = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        let line_count = bytes.iter().filter(|b| **b == b'\n').count() + 1;
        prop_assert!((1..=line_count).contains(&line) && col >= 1, "bad location in {name}: {l:?}");
        prop_assert!(!l.contains('\n'), "a problem line holds a newline: {l:?}");
    }
    let mut shown = String::new();
    miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
        .with_width(100)
        .render_report(&mut shown, &err)
        .map_err(|e| TestCaseError::fail(format!("the report does not render: {e}")))?;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), .. ProptestConfig::default() })]

    /// Any bytes (mostly not UTF-8), any text, and text of TOML's own characters (which parses now and then).
    #[test]
    fn arbitrary_bytes_never_panic_and_every_error_renders(bytes in prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        any::<String>().prop_map(String::into_bytes),
        "[a-z0-9_.:/\\[\\]{}=,\"' #\n\t-]{0,300}".prop_map(String::into_bytes),
    ]) {
        read(&bytes)?;
    }

    #[test]
    fn damaged_example_files_never_panic_and_every_error_renders(
        seed in any::<Index>(),
        mutations in prop::collection::vec(mutation(), 1..6),
    ) {
        let seeds = seeds();
        read(&apply(seed.get(&seeds).clone(), &mutations))?;
    }

    /// A workload's manifest file and another's policy file, damaged: the files still read, or each problem
    /// is at a place inside the file it names.
    #[test]
    fn damaged_manifests_never_panic_and_every_error_renders(
        manifest in prop::collection::vec(mutation(), 0..6),
        policy in prop::collection::vec(mutation(), 0..3),
    ) {
        let manifest = apply_with(MANIFEST_SEED.as_bytes().to_vec(), &manifest, YAML_TOKENS);
        let policy = apply_with(POLICY_SEED.as_bytes().to_vec(), &policy, YAML_TOKENS);
        read_workload_files(&manifest, &policy)?;
    }
}

/// The manifests property starts from files that validate.
#[test]
fn the_manifest_seeds_validate() {
    let (_dir, read) = load_workload_files(&workload_files(MANIFEST_SEED.as_bytes(), POLICY_SEED.as_bytes()));
    let c = read.unwrap_or_else(|e| panic!("{}", e.lines().join("\n")));
    assert_eq!(c.workloads.iter().map(|w| w.objects.len()).collect::<Vec<_>>(), [2, 1]);
}
