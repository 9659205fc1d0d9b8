//! Reading each workload's manifest files and policy file, and checking every object in them. A problem in
//! a YAML file points at its line there; a file that is missing points at its entry in testbed.toml.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::yaml::{self, Node, Step, Tree};
use super::{placeable, ManifestObject, WorkloadManifests, PLACEABLE_KINDS};
use crate::error::{problem, Reporter};
use crate::model::{TestbedFile, Workload};
use crate::source::Seg::{Index, Key};

/// The PropagationPolicy a `policy` file holds.
pub(crate) const POLICY_API_VERSION: &str = "policy.karmada.io/v1alpha1";
pub(crate) const POLICY_KIND: &str = "PropagationPolicy";

/// Reads every workload's manifests (and policy file) of a file that passed its own checks. `path` is the
/// testbed.toml's path as given: relative paths in the file are resolved against its directory.
pub(crate) fn read_all(file: &TestbedFile, path: &Path, r: &mut Reporter<'_>) -> Vec<WorkloadManifests> {
    let mut reading =
        Reading { file, base: path.parent().map(Path::to_path_buf).unwrap_or_default(), r, owners: BTreeMap::new() };
    file.workloads.iter().enumerate().map(|(i, w)| reading.workload(i, w)).collect()
}

struct Reading<'f, 'a, 'r> {
    file: &'f TestbedFile,
    /// The testbed.toml's directory as given (empty for a file in the current directory).
    base: PathBuf,
    r: &'a mut Reporter<'r>,
    /// Each object's key, with the workload it belongs to and where it is written.
    owners: BTreeMap<String, (String, String)>,
}

/// One YAML file as read: its name as shown and its text.
struct YamlFile {
    shown: String,
    text: String,
}

impl YamlFile {
    fn report(&self, r: &mut Reporter<'_>, span: Range<usize>, message: String, label: &str, help: String) {
        r.problems.push(problem(&self.shown, &self.text, span, message, label, Some(help)));
    }

    /// `file:line` of a place, for `ManifestObject::source` and for messages that name another place.
    fn place(&self, at: usize) -> String {
        format!("{}:{}", self.shown, crate::source::line_col(&self.text, at).0)
    }
}

impl Reading<'_, '_, '_> {
    /// Where an entry of the file points, as given: relative to the testbed.toml's directory unless absolute.
    fn resolve(&self, entry: &str) -> PathBuf {
        let p = Path::new(entry);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    /// A problem at a value of the workload's entry in testbed.toml.
    fn at_toml(&mut self, path: &[crate::source::Seg<'_>], message: String, label: &str, help: String) {
        let span = self.r.map.value_span(path);
        self.r.report(span, message, label, Some(help));
    }

    fn workload(&mut self, i: usize, w: &Workload) -> WorkloadManifests {
        let before = self.r.problems.len();
        let mut objects: Vec<ManifestObject> = Vec::new();
        for (j, entry) in w.manifests.iter().enumerate() {
            let at = [Key("workloads"), Index(i), Key("manifests"), Index(j)];
            let resolved = self.resolve(entry);
            for path in self.yaml_files(&at, entry, &resolved, &w.name) {
                let what = format!("manifests entry {entry:?} of workload {:?}", w.name);
                if let Some((f, docs)) = self.read_yaml(&at, &what, &path) {
                    let first = self.r.problems.len();
                    for doc in &docs {
                        if let Some(obj) = self.object(&f, doc) {
                            self.claim(&f, doc, &obj, w, &objects);
                            objects.push(obj);
                        }
                    }
                    // A file's problems in the order of its lines.
                    self.r.problems[first..].sort_by_key(|p| p.span.offset());
                }
            }
        }
        if objects.is_empty() && self.r.problems.len() == before && !w.manifests.is_empty() {
            self.at_toml(
                &[Key("workloads"), Index(i), Key("manifests")],
                format!("the manifests of workload {:?} hold no object", w.name),
                "nothing to place",
                "list the YAML files (or directories of them) that hold the workload's objects".into(),
            );
        }
        let policy = w.policy.as_deref().and_then(|p| self.policy(i, w, p));
        WorkloadManifests { name: w.name.clone(), objects, policy }
    }

    /// The YAML files an entry names: itself, or a directory's `*.yaml` and `*.yml` files in name order.
    fn yaml_files(&mut self, at: &[crate::source::Seg<'_>], entry: &str, resolved: &Path, name: &str) -> Vec<PathBuf> {
        let shown = resolved.display().to_string();
        let meta = match std::fs::metadata(resolved) {
            Ok(m) => m,
            Err(e) => {
                let (what, label) = if e.kind() == std::io::ErrorKind::NotFound {
                    ("does not exist".to_owned(), "not found")
                } else {
                    (format!("cannot be read: {e}"), "cannot be read")
                };
                self.at_toml(
                    at,
                    format!("manifests entry {entry:?} of workload {name:?}: {shown} {what}"),
                    label,
                    self.relative_help(),
                );
                return vec![];
            }
        };
        if !meta.is_dir() {
            return vec![resolved.to_path_buf()];
        }
        let listed = std::fs::read_dir(resolved).and_then(|d| d.collect::<Result<Vec<_>, _>>());
        let mut files: Vec<PathBuf> = match listed {
            Ok(entries) => entries
                .iter()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml") && p.is_file())
                .collect(),
            Err(e) => {
                self.at_toml(
                    at,
                    format!(
                        "manifests entry {entry:?} of workload {name:?}: the directory {shown} cannot be read: {e}"
                    ),
                    "cannot be read",
                    "check the directory's permissions".into(),
                );
                return vec![];
            }
        };
        files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
        if files.is_empty() {
            self.at_toml(
                at,
                format!("manifests entry {entry:?} of workload {name:?}: the directory {shown} holds no *.yaml or *.yml file"),
                "no YAML files",
                "a directory contributes the *.yaml and *.yml files directly in it (not in its subdirectories)".into(),
            );
        }
        files
    }

    fn relative_help(&self) -> String {
        let dir = if self.base.as_os_str().is_empty() { ".".to_owned() } else { self.base.display().to_string() };
        format!("relative paths are read from the directory of this file ({dir}): fix the path, or create the file")
    }

    /// A YAML file's documents; a file that cannot be read or parsed is a problem (and `None`). `what` names
    /// the file's entry in testbed.toml (`at`) for messages.
    fn read_yaml(&mut self, at: &[crate::source::Seg<'_>], what: &str, path: &Path) -> Option<(YamlFile, Vec<Node>)> {
        let shown = path.display().to_string();
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) => {
                self.at_toml(
                    at,
                    format!("{what}: {shown} cannot be read: {e}"),
                    "cannot be read",
                    "check the file's permissions".into(),
                );
                return None;
            }
        };
        let text = match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => {
                let offset = e.utf8_error().valid_up_to();
                self.at_toml(
                    at,
                    format!("{what}: {shown} is not UTF-8 (a bad byte at byte offset {offset})"),
                    "not UTF-8",
                    "save the file as UTF-8, as Kubernetes manifests are".into(),
                );
                return None;
            }
        };
        let f = YamlFile { shown, text };
        match yaml::documents(&f.text) {
            Ok(docs) => Some((f, docs)),
            Err(e) => {
                let help =
                    "fix the YAML at this place (`kubectl apply --dry-run=client -f FILE` reads it as testbed does)";
                // An error past the last line (an unclosed quote or bracket) is shown at the file's end.
                let end = f.text.trim_end().len();
                let (span, label) = match f.text[..end].chars().next_back() {
                    Some(c) if e.span.start >= end => (end - c.len_utf8()..end, "the file ends here"),
                    _ => (e.span, "here"),
                };
                f.report(self.r, span, format!("invalid YAML: {}", e.message), label, help.into());
                None
            }
        }
    }

    /// `apiVersion`, `kind` and `metadata.name` of a document, or a problem that says which it lacks.
    fn identity<'d>(&mut self, f: &YamlFile, doc: &'d Node, what: &str) -> Option<(&'d str, &'d Node, &'d str)> {
        if !matches!(doc.value, Tree::Map(_)) {
            f.report(
                self.r,
                doc.span.clone(),
                format!("this document is {}, not {what}", doc.what()),
                "not an object",
                "each document (between `---` lines) is one Kubernetes object: a mapping with apiVersion, kind and metadata".into(),
            );
            return None;
        }
        let api_version = doc.get("apiVersion").and_then(Node::as_str);
        let kind = doc.get("kind").filter(|k| k.as_str().is_some());
        let name = doc.get("metadata").and_then(|m| m.get("name")).and_then(Node::as_str);
        let mut missing = Vec::new();
        if api_version.is_none() {
            missing.push("apiVersion");
        }
        if kind.is_none() {
            missing.push("kind");
        }
        if name.is_none() {
            missing.push("metadata.name");
        }
        match (api_version, kind, name) {
            (Some(a), Some(k), Some(n)) => Some((a, k, n)),
            _ => {
                let list = match missing.as_slice() {
                    [one] => (*one).to_owned(),
                    [init @ .., last] => format!("{} and {last}", init.join(", ")),
                    [] => unreachable!("something is missing"),
                };
                f.report(
                    self.r,
                    doc.span.clone(),
                    format!("this object has no {list}: {what} needs apiVersion, kind and metadata.name, each a string"),
                    "incomplete object",
                    "write them at the top of the document, e.g. `apiVersion: v1`, `kind: ConfigMap`, `metadata: {name: web}`".into(),
                );
                None
            }
        }
    }

    /// A workload's object, checked: its kind, its fields, its namespace.
    fn object(&mut self, f: &YamlFile, doc: &Node) -> Option<ManifestObject> {
        let (api_version, kind_node, name) = self.identity(f, doc, "a Kubernetes object")?;
        let kind_text = kind_node.as_str().unwrap_or_default();
        let Some(kind) = placeable(api_version, kind_text) else {
            let places = |v: &str| {
                let kinds: Vec<&str> = PLACEABLE_KINDS.iter().filter(|k| k.api_version == v).map(|k| k.kind).collect();
                format!("{} ({v})", kinds.join(", "))
            };
            f.report(
                self.r,
                kind_node.span.clone(),
                format!(
                    "testbed cannot place {kind_text} (apiVersion {api_version}): it places {} and {}",
                    places("v1"),
                    places("apps/v1")
                ),
                "not placeable",
                "leave it out of the workload's manifests, or apply it by hand (kubectl against the Karmada API server)".into(),
            );
            return None;
        };
        let before = self.r.problems.len();
        let mut object = doc.to_json();
        self.check_fields(f, doc, &object, kind.kind, name);
        let ns_node = doc.get("metadata").and_then(|m| m.get("namespace"));
        let namespace = if kind.namespaced {
            let ns = match ns_node {
                None | Some(Node { value: Tree::Null, .. }) => "default".to_owned(),
                Some(n) => n.as_str().map(str::to_owned)?,
            };
            object["metadata"]["namespace"] = Value::String(ns.clone());
            Some(ns)
        } else {
            if let Some(n) = ns_node.filter(|n| !matches!(n.value, Tree::Null)) {
                f.report(
                    self.r,
                    n.span.clone(),
                    format!("{kind_text} {name:?} is cluster-scoped: it lives in no namespace, so metadata.namespace has no meaning here (Kubernetes drops it)"),
                    "cluster-scoped",
                    "remove metadata.namespace".into(),
                );
            }
            None
        };
        (self.r.problems.len() == before).then(|| ManifestObject {
            kind,
            namespace,
            name: name.to_owned(),
            object,
            source: f.place(doc.span.start),
        })
    }

    /// Each object belongs to one workload, once.
    fn claim(&mut self, f: &YamlFile, doc: &Node, obj: &ManifestObject, w: &Workload, objects: &[ManifestObject]) {
        let key = obj.key();
        let shown = object_name(obj);
        if let Some(first) = objects.iter().find(|o| o.key() == key) {
            f.report(
                self.r,
                doc.span.clone(),
                format!("{shown} is written twice in workload {:?} (first at {})", w.name, first.source),
                "written twice",
                "keep one of them: a workload applies each object once".into(),
            );
        } else if let Some((owner, at)) = self.owners.get(&key) {
            f.report(
                self.r,
                doc.span.clone(),
                format!("{shown} belongs to workload {owner:?} already (at {at}); workload {:?} lists it too", w.name),
                "in two workloads",
                "each object belongs to one workload: remove it from one of them".into(),
            );
        } else {
            self.owners.insert(key, (w.name.clone(), obj.source.clone()));
        }
    }

    /// The fields of a known kind, as Kubernetes' own types have them: a value of the wrong type and a
    /// field the kind does not have are problems, each at its place.
    fn check_fields(&mut self, f: &YamlFile, doc: &Node, object: &Value, kind: &str, name: &str) {
        let mut value = object.clone();
        // Values already reported, taken out (or written as strings) so that the next round finds the next
        // problem; the round trip loses the ones taken out, which are not unknown fields.
        let mut reported: Vec<Vec<Step>> = Vec::new();
        for _ in 0..64 {
            let err = match round_trip(kind, value.clone()) {
                Ok(typed) => {
                    let mut unknown = Vec::new();
                    unknown_fields(doc, &typed, &mut Vec::new(), &mut unknown);
                    for (path, span) in unknown.into_iter().filter(|(p, _)| !reported.iter().any(|r| p.starts_with(r)))
                    {
                        let explain = explain_path(kind, &path[..path.len() - 1]);
                        f.report(
                            self.r,
                            span,
                            format!("{kind} {name:?} has an unknown field {}", yaml::path_text(&path)),
                            "unknown field",
                            format!("Kubernetes drops it (or refuses the object, with strict field validation): check its spelling and place with `kubectl explain {explain}`"),
                        );
                    }
                    return;
                }
                Err(e) => e,
            };
            let path = steps(err.path());
            let inner = err.into_inner().to_string();
            let (node, _) = doc.find(&path);
            let shown_path = yaml::path_text(&path);
            let at = if shown_path.is_empty() { String::new() } else { format!(" at {shown_path}") };
            let wants_string = inner.contains("expected a string");
            if let Some(word) = node.bool_word(&f.text).filter(|_| wants_string) {
                let reads = if matches!(node.value, Tree::Bool(true)) { "true" } else { "false" };
                f.report(
                    self.r,
                    node.span.clone(),
                    format!("write \"{word}\" in quotes: Kubernetes reads an unquoted {word} as {reads}, and {kind} {name:?} wants a string{at}"),
                    "a boolean to Kubernetes",
                    format!("YAML 1.1, which Kubernetes reads, takes yes, no, on, off, y and n as booleans: write \"{word}\""),
                );
            } else {
                let help = if wants_string {
                    "write the value in quotes: Kubernetes wants a string here".to_owned()
                } else {
                    format!("see what the field takes with `kubectl explain {}`", explain_path(kind, &path))
                };
                f.report(self.r, node.span.clone(), format!("{kind} {name:?}{at}: {inner}"), "wrong type", help);
            }
            // Go on past this value: a string field gets the text, another field loses the value.
            let fixed = match (wants_string, path.last()) {
                (true, Some(_)) => set(&mut value, &path, Value::String(text_of(node, &f.text))),
                (false, Some(Step::Key(_))) => remove(&mut value, &path),
                _ => false,
            };
            if !fixed {
                return;
            }
            reported.push(path);
        }
    }

    /// The PropagationPolicy of a `policy` file.
    fn policy(&mut self, i: usize, w: &Workload, entry: &str) -> Option<Value> {
        let at = [Key("workloads"), Index(i), Key("policy")];
        let resolved = self.resolve(entry);
        if resolved.is_dir() {
            self.at_toml(
                &at,
                format!("policy {entry:?} of workload {:?}: {} is a directory", w.name, resolved.display()),
                "not a file",
                "name the YAML file that holds the workload's PropagationPolicy".into(),
            );
            return None;
        }
        if !resolved.exists() {
            let help = self.relative_help();
            self.at_toml(
                &at,
                format!("policy {entry:?} of workload {:?}: {} does not exist", w.name, resolved.display()),
                "not found",
                help,
            );
            return None;
        }
        let what = format!("policy {entry:?} of workload {:?}", w.name);
        let (f, docs) = self.read_yaml(&at, &what, &resolved)?;
        let Some(doc) = docs.first() else {
            self.at_toml(
                &at,
                format!("policy {entry:?} of workload {:?}: {} holds no document", w.name, f.shown),
                "empty",
                "write the workload's PropagationPolicy in it".into(),
            );
            return None;
        };
        if let Some(second) = docs.get(1) {
            f.report(
                self.r,
                second.span.clone(),
                format!("{} holds more than one document: a policy file holds one PropagationPolicy", f.shown),
                "a second document",
                "keep the PropagationPolicy alone in the file; the workload's objects go in `manifests`".into(),
            );
            return None;
        }
        let (api_version, kind, _) = self.identity(&f, doc, "a PropagationPolicy")?;
        if api_version != POLICY_API_VERSION || kind.as_str() != Some(POLICY_KIND) {
            f.report(
                self.r,
                kind.span.clone(),
                format!(
                    "a policy file holds a {POLICY_KIND} (apiVersion {POLICY_API_VERSION}), not a {} (apiVersion {api_version})",
                    kind.as_str().unwrap_or_default()
                ),
                "not a PropagationPolicy",
                format!("write `apiVersion: {POLICY_API_VERSION}` and `kind: {POLICY_KIND}`"),
            );
            return None;
        }
        let before = self.r.problems.len();
        let spec = doc.get("spec");
        let selectors = spec.and_then(|s| s.get("resourceSelectors"));
        if !matches!(selectors, Some(Node { value: Tree::Seq(items), .. }) if !items.is_empty()) {
            let place = selectors.or(spec).unwrap_or(doc);
            f.report(
                self.r,
                place.span.clone(),
                "the PropagationPolicy has no spec.resourceSelectors: Karmada would place nothing by it".into(),
                "no resource selectors",
                "list the workload's objects under spec.resourceSelectors (apiVersion, kind and name each)".into(),
            );
        }
        let purge =
            spec.and_then(|s| s.get("failover")).and_then(|x| x.get("application")).and_then(|x| x.get("purgeMode"));
        if let Some(p) = purge {
            let version = &self.file.karmada.version;
            let problem = match p.as_str() {
                Some(mode) => crate::karmada_release::purge_mode_problem(version, mode),
                None => Some((format!("purgeMode is {}, not a string", p.what()), "write e.g. Gracefully".to_owned())),
            };
            if let Some((message, help)) = problem {
                f.report(self.r, p.span.clone(), message, "purge mode", help);
            }
        }
        if self.r.problems.len() != before {
            return None;
        }
        let mut policy = doc.to_json();
        if doc.get("metadata").and_then(|m| m.get("namespace")).and_then(Node::as_str).is_none() {
            policy["metadata"]["namespace"] = Value::String("default".into());
        }
        Some(policy)
    }
}

/// `Deployment default/web`, `Namespace monitoring`.
fn object_name(o: &ManifestObject) -> String {
    match &o.namespace {
        Some(ns) => format!("{} {ns}/{}", o.kind.kind, o.name),
        None => format!("{} {}", o.kind.kind, o.name),
    }
}

/// The object as Kubernetes' type for its kind reads it, written back as JSON: what the type keeps.
fn round_trip(kind: &str, value: Value) -> Result<Value, serde_path_to_error::Error<serde_json::Error>> {
    fn typed<T: DeserializeOwned + Serialize>(
        value: Value,
    ) -> Result<Value, serde_path_to_error::Error<serde_json::Error>> {
        let object: T = serde_path_to_error::deserialize(value)?;
        Ok(serde_json::to_value(object).unwrap_or(Value::Null))
    }
    use k8s_openapi::api::{apps::v1 as apps, core::v1 as core};
    match kind {
        "Namespace" => typed::<core::Namespace>(value),
        "ServiceAccount" => typed::<core::ServiceAccount>(value),
        "ConfigMap" => typed::<core::ConfigMap>(value),
        "Secret" => typed::<core::Secret>(value),
        "PersistentVolumeClaim" => typed::<core::PersistentVolumeClaim>(value),
        "Service" => typed::<core::Service>(value),
        "Deployment" => typed::<apps::Deployment>(value),
        "StatefulSet" => typed::<apps::StatefulSet>(value),
        "DaemonSet" => typed::<apps::DaemonSet>(value),
        // Every placeable kind is listed above.
        _ => Ok(value),
    }
}

/// The keys the document writes (with a value) that the round trip lost: fields the kind does not have.
fn unknown_fields(node: &Node, typed: &Value, path: &mut Vec<Step>, out: &mut Vec<(Vec<Step>, Range<usize>)>) {
    match (&node.value, typed) {
        (Tree::Map(entries), Value::Object(kept)) => {
            for (key, value) in entries {
                if matches!(value.value, Tree::Null) {
                    continue;
                }
                path.push(Step::Key(key.name.clone()));
                match kept.get(&key.name) {
                    None => out.push((path.clone(), key.span.clone())),
                    Some(inner) => unknown_fields(value, inner, path, out),
                }
                path.pop();
            }
        }
        (Tree::Seq(items), Value::Array(kept)) => {
            for (i, (item, inner)) in items.iter().zip(kept).enumerate() {
                path.push(Step::Index(i));
                unknown_fields(item, inner, path, out);
                path.pop();
            }
        }
        _ => {}
    }
}

/// `deployment.spec.template.spec.containers`: what `kubectl explain` takes for the field at `path`.
fn explain_path(kind: &str, path: &[Step]) -> String {
    let keys = path.iter().filter_map(|s| match s {
        Step::Key(k) => Some(k.as_str()),
        Step::Index(_) => None,
    });
    std::iter::once(kind.to_ascii_lowercase().as_str()).chain(keys).collect::<Vec<_>>().join(".")
}

fn steps(path: &serde_path_to_error::Path) -> Vec<Step> {
    path.iter()
        .filter_map(|s| match s {
            serde_path_to_error::Segment::Map { key } => Some(Step::Key(key.clone())),
            serde_path_to_error::Segment::Seq { index } => Some(Step::Index(*index)),
            _ => None,
        })
        .collect()
}

/// Replaces the value at `path`; false when there is none.
fn set(value: &mut Value, path: &[Step], new: Value) -> bool {
    let mut at = value;
    for step in path {
        let next = match step {
            Step::Key(k) => at.get_mut(k.as_str()),
            Step::Index(i) => at.get_mut(*i),
        };
        match next {
            Some(v) => at = v,
            None => return false,
        }
    }
    *at = new;
    true
}

/// Removes the field at `path` (whose last step is a key); false when there is none.
fn remove(value: &mut Value, path: &[Step]) -> bool {
    let Some((Step::Key(last), parent)) = path.split_last() else { return false };
    let mut at = value;
    for step in parent {
        let next = match step {
            Step::Key(k) => at.get_mut(k.as_str()),
            Step::Index(i) => at.get_mut(*i),
        };
        match next {
            Some(v) => at = v,
            None => return false,
        }
    }
    at.as_object_mut().is_some_and(|m| m.remove(last).is_some())
}

/// A scalar as a string field would take it: its text as written, without quotes.
fn text_of(node: &Node, text: &str) -> String {
    match &node.value {
        Tree::Str(s) => s.clone(),
        _ => text.get(node.span.clone()).unwrap_or_default().trim().to_owned(),
    }
}
