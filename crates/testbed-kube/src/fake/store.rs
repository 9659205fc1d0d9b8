//! The fake's object store: objects of the kinds in [`KINDS`], kept as JSON by their REST path
//! ([`FakeState::objects`]), created and updated by server-side apply, read, listed by label selector and
//! deleted; and Karmada's ResourceBindings, served from [`FakeState::resource_bindings`] as the state gives
//! them.
//!
//! Server-side apply follows the real semantics for one field manager at a time, simplified: the fields a
//! manager applied are recorded in `metadata.managedFields` (as `fieldsV1`, where a real server keeps them);
//! the next apply of that manager removes the fields it applied before and no longer applies, then merges
//! what it applies over the live object, so fields that other writers set stay. Lists whose items all have a
//! `name` (containers, env, volumes, ports with names) are merged item by item, keyed by name, as the real
//! server merges its associative lists; other lists are replaced whole. Conflicts between managers are not
//! modelled (testbed always forces). `status` is never taken from an apply.
//!
//! As a real API server, the store fills in defaults on every write (a Deployment's strategy, a container's
//! `imagePullPolicy`, a Service's `clusterIP`, ...), folds a Secret's `stringData` into `data`, and counts
//! `metadata.generation` for the kinds that have one (those outside the core group).

use std::collections::BTreeSet;

use base64::Engine as _;
use hyper::StatusCode;
use serde_json::{json, Map, Value};

use super::{fake_uid, list_json, merge_patch, not_found, status_json, unknown_path, FakeState, FakeWrite, CREATED};

/// A kind the store serves.
#[derive(Debug)]
pub(super) struct Kind {
    pub(super) group: &'static str,
    pub(super) version: &'static str,
    pub(super) kind: &'static str,
    pub(super) plural: &'static str,
    pub(super) short: &'static [&'static str],
    pub(super) namespaced: bool,
    /// Served only by a Karmada API server.
    pub(super) karmada: bool,
    /// Written by clients (apply, merge patch, delete); otherwise served as the state gives it.
    pub(super) writable: bool,
}

impl Kind {
    pub(super) fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    fn same(&self, other: &Kind) -> bool {
        (self.group, self.version, self.plural) == (other.group, other.version, other.plural)
    }

    /// Whether the kind is built into Kubernetes (a real server leaves `apiVersion` and `kind` out of the
    /// items of its lists) rather than a custom resource.
    fn builtin(&self) -> bool {
        !self.group.contains('.')
    }

    /// Whether its objects have a `metadata.generation` (a real server counts it for the apps kinds and
    /// every custom resource, not for ConfigMaps, Services, Namespaces and the other core kinds).
    fn has_generation(&self) -> bool {
        !self.group.is_empty()
    }
}

const fn kind(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    short: &'static [&'static str],
    namespaced: bool,
) -> Kind {
    Kind { group, version, kind, plural, short, namespaced, karmada: false, writable: true }
}

const fn karmada(kind: Kind) -> Kind {
    Kind { karmada: true, ..kind }
}

/// What the store serves: the kinds a workload may place, and Karmada's policies and bindings.
pub(super) static KINDS: &[Kind] = &[
    kind("", "v1", "Namespace", "namespaces", &["ns"], false),
    kind("", "v1", "ServiceAccount", "serviceaccounts", &["sa"], true),
    kind("", "v1", "ConfigMap", "configmaps", &["cm"], true),
    kind("", "v1", "Secret", "secrets", &[], true),
    kind("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", &["pvc"], true),
    kind("", "v1", "Service", "services", &["svc"], true),
    kind("apps", "v1", "Deployment", "deployments", &["deploy"], true),
    kind("apps", "v1", "StatefulSet", "statefulsets", &["sts"], true),
    kind("apps", "v1", "DaemonSet", "daemonsets", &["ds"], true),
    karmada(kind("policy.karmada.io", "v1alpha1", "PropagationPolicy", "propagationpolicies", &["pp"], true)),
    karmada(kind(
        "policy.karmada.io",
        "v1alpha1",
        "ClusterPropagationPolicy",
        "clusterpropagationpolicies",
        &["cpp"],
        false,
    )),
    karmada(kind("policy.karmada.io", "v1alpha1", "OverridePolicy", "overridepolicies", &["op"], true)),
    karmada(kind("policy.karmada.io", "v1alpha1", "ClusterOverridePolicy", "clusteroverridepolicies", &["cop"], false)),
    Kind {
        karmada: true,
        writable: false,
        ..kind("work.karmada.io", "v1alpha2", "ResourceBinding", "resourcebindings", &["rb"], true)
    },
];

/// Where a request goes in the store: a kind, and a namespace and name when the path gives them.
#[derive(Debug, Clone, Copy)]
pub(super) struct Target<'a> {
    pub(super) kind: &'static Kind,
    pub(super) namespace: Option<&'a str>,
    pub(super) name: Option<&'a str>,
}

impl Target<'_> {
    /// The REST path of the object this target names (the store's key).
    fn key(&self) -> String {
        object_path(self.kind, self.namespace, self.name.unwrap_or_default())
    }
}

fn object_path(kind: &Kind, namespace: Option<&str>, name: &str) -> String {
    let mut path = if kind.group.is_empty() {
        format!("/api/{}", kind.version)
    } else {
        format!("/apis/{}/{}", kind.group, kind.version)
    };
    if let Some(namespace) = namespace {
        path.push_str("/namespaces/");
        path.push_str(namespace);
    }
    format!("{path}/{}/{name}", kind.plural)
}

/// The store's target of `path`: `/api/v1/PLURAL[/NAME]`, `/api/v1/namespaces/NS/PLURAL[/NAME]`,
/// `/apis/G/V/PLURAL[/NAME]`, `/apis/G/V/namespaces/NS/PLURAL[/NAME]`; `None` for any other path or a kind
/// not served here. A cluster-scoped kind has no namespaced paths; a namespaced kind has no cluster-scoped
/// path for one object (only for the list across namespaces).
pub(super) fn parse(path: &str, serves_karmada: bool) -> Option<Target<'_>> {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let (group, version, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    let find = |plural: &str| {
        KINDS
            .iter()
            .find(|k| k.group == group && k.version == version && k.plural == plural && (serves_karmada || !k.karmada))
    };
    let (kind, namespace, name) = match rest {
        [plural] => (find(plural)?, None, None),
        [plural, name] => {
            let kind = find(plural)?;
            if kind.namespaced {
                return None;
            }
            (kind, None, Some(*name))
        }
        ["namespaces", namespace, plural] => (find(plural)?, Some(*namespace), None),
        ["namespaces", namespace, plural, name] => (find(plural)?, Some(*namespace), Some(*name)),
        _ => return None,
    };
    if namespace.is_some() && !kind.namespaced {
        return None;
    }
    if [namespace, name].iter().flatten().any(|s| s.is_empty()) {
        return None;
    }
    Some(Target { kind, namespace, name })
}

// ---------------------------------------------------------------------------------------------------
// Label selectors
// ---------------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    NotExists(String),
    In(String, BTreeSet<String>),
    NotIn(String, BTreeSet<String>),
}

/// A label selector (`labelSelector`): equality (`a=b`, `a==b`, `a!=b`), existence (`a`, `!a`) and set
/// (`a in (x,y)`, `a notin (x)`) requirements, all of which must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Selector(Vec<Requirement>);

impl Selector {
    /// The `labelSelector` of a query string (none: everything).
    pub(super) fn from_query(query: &str) -> Result<Self, String> {
        let raw = query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(key, _)| *key == "labelSelector")
            .map(|(_, value)| percent_decode(value))
            .unwrap_or_default();
        Self::parse(&raw)
    }

    fn parse(text: &str) -> Result<Self, String> {
        let mut terms = Vec::new();
        let (mut depth, mut start) = (0usize, 0usize);
        for (i, c) in text.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => depth = depth.saturating_sub(1),
                ',' if depth == 0 => {
                    terms.push(&text[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        terms.push(&text[start..]);
        let mut requirements = Vec::new();
        for term in terms.into_iter().map(str::trim) {
            if term.is_empty() {
                if text.trim().is_empty() {
                    continue;
                }
                return Err(format!("unable to parse requirement: found '', expected: identifier (in {text:?})"));
            }
            requirements.push(requirement(term)?);
        }
        Ok(Selector(requirements))
    }

    pub(super) fn matches(&self, object: &Value) -> bool {
        let labels = object["metadata"]["labels"].as_object();
        let label = |key: &str| labels.and_then(|l| l.get(key)).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            Requirement::Equals(k, v) => label(k) == Some(v.as_str()),
            Requirement::NotEquals(k, v) => label(k) != Some(v.as_str()),
            Requirement::Exists(k) => label(k).is_some(),
            Requirement::NotExists(k) => label(k).is_none(),
            Requirement::In(k, values) => label(k).is_some_and(|v| values.contains(v)),
            Requirement::NotIn(k, values) => label(k).is_none_or(|v| !values.contains(v)),
        })
    }
}

fn requirement(term: &str) -> Result<Requirement, String> {
    let invalid = || format!("unable to parse requirement: {term:?} is not a valid label selector requirement");
    let key = |k: &str| {
        let k = k.trim();
        if k.is_empty() || k.contains(char::is_whitespace) {
            Err(invalid())
        } else {
            Ok(k.to_owned())
        }
    };
    let set = |values: &str| -> Result<BTreeSet<String>, String> {
        let inner = values.trim().strip_prefix('(').and_then(|v| v.strip_suffix(')')).ok_or_else(invalid)?;
        Ok(inner.split(',').map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()).collect())
    };
    if let Some(rest) = term.strip_prefix('!') {
        return Ok(Requirement::NotExists(key(rest)?));
    }
    if let Some((k, values)) = term.split_once(" notin ") {
        return Ok(Requirement::NotIn(key(k)?, set(values)?));
    }
    if let Some((k, values)) = term.split_once(" in ") {
        return Ok(Requirement::In(key(k)?, set(values)?));
    }
    if let Some((k, v)) = term.split_once("!=") {
        return Ok(Requirement::NotEquals(key(k)?, v.trim().to_owned()));
    }
    if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
        return Ok(Requirement::Equals(key(k)?, v.trim().to_owned()));
    }
    Ok(Requirement::Exists(key(term)?))
}

/// `%2F` → `/`, `+` → ` ` (a query's form encoding).
pub(super) fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|hex| u8::from_str_radix(hex, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---------------------------------------------------------------------------------------------------
// Reads
// ---------------------------------------------------------------------------------------------------

/// The stored objects (or, for ResourceBindings, the state's) of `target`'s kind, in its namespace if it
/// names one, that `selector` matches, in path order.
pub(super) fn items(state: &FakeState, target: &Target<'_>, selector: &Selector) -> Vec<Value> {
    if !target.kind.writable {
        return state
            .resource_bindings
            .iter()
            .filter(|b| target.namespace.is_none_or(|ns| b["metadata"]["namespace"] == ns))
            .filter(|b| selector.matches(b))
            .map(|b| with_types(b.clone(), target.kind))
            .collect();
    }
    state
        .objects
        .iter()
        .filter(|(path, _)| {
            parse(path, true).is_some_and(|t| {
                t.kind.same(target.kind)
                    && t.name.is_some()
                    && target.namespace.is_none_or(|ns| t.namespace == Some(ns))
            })
        })
        .map(|(_, object)| object)
        .filter(|object| selector.matches(object))
        .cloned()
        .collect()
}

/// The object `target` names, as stored.
pub(super) fn find(state: &FakeState, target: &Target<'_>) -> Option<Value> {
    let name = target.name?;
    if !target.kind.writable {
        return state
            .resource_bindings
            .iter()
            .find(|b| b["metadata"]["name"] == name && b["metadata"]["namespace"] == target.namespace.unwrap_or(""))
            .map(|b| with_types(b.clone(), target.kind));
    }
    state.objects.get(&target.key()).cloned()
}

fn with_types(mut object: Value, kind: &Kind) -> Value {
    if let Some(fields) = object.as_object_mut() {
        fields.entry("apiVersion").or_insert_with(|| json!(kind.api_version()));
        fields.entry("kind").or_insert_with(|| json!(kind.kind));
    }
    object
}

/// The answer to a GET of `target`: one object, or a list.
pub(super) fn get(
    state: &FakeState,
    target: &Target<'_>,
    selector: &Selector,
    resource_version: u64,
) -> (StatusCode, Value) {
    match target.name {
        Some(name) => match find(state, target) {
            Some(object) => (StatusCode::OK, object),
            None => not_found(target.kind.group, target.kind.plural, name),
        },
        None => (StatusCode::OK, list(target.kind, resource_version, items(state, target, selector))),
    }
}

/// A `<Kind>List` of `items` (with their `apiVersion` and `kind` for a custom resource only, as a real server
/// sends them).
pub(super) fn list(kind: &Kind, resource_version: u64, items: Vec<Value>) -> Value {
    list_json(&kind.api_version(), &format!("{}List", kind.kind), resource_version, items, !kind.builtin())
}

// ---------------------------------------------------------------------------------------------------
// Server-side apply
// ---------------------------------------------------------------------------------------------------

fn bad_request(message: &str) -> (StatusCode, Value) {
    (StatusCode::BAD_REQUEST, status_json(400, "BadRequest", message, None))
}

/// The answer kube-apiserver gives an apply without a field manager (`ValidatePatchOptions`, a 422 `Invalid`
/// on `PatchOptions`).
pub(super) fn field_manager_required() -> (StatusCode, Value) {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        status_json(
            422,
            "Invalid",
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
            Some(json!({
                "group": "meta.k8s.io",
                "kind": "PatchOptions",
                "causes": [{
                    "reason": "FieldValueRequired",
                    "message": "Required value: is required for apply patch",
                    "field": "fieldManager",
                }],
            })),
        ),
    )
}

/// The `fieldManager` of a query string, if set and not empty.
pub(super) fn field_manager(query: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == "fieldManager")
        .map(|(_, value)| percent_decode(value))
        .filter(|manager| !manager.is_empty())
}

/// What one write did: the answer, and the changes for the sink.
pub(super) struct Written {
    pub(super) answer: Value,
    pub(super) writes: Vec<FakeWrite>,
}

/// Server-side apply of `body` (JSON, which is YAML too; the fake reads JSON only) by `manager` at `target`.
/// `next_resource_version` is the version a change gets.
pub(super) fn apply(
    state: &mut FakeState,
    target: &Target<'_>,
    manager: &str,
    body: &[u8],
    next_resource_version: u64,
) -> Result<Written, (StatusCode, Value)> {
    let kind = target.kind;
    let name = target.name.unwrap_or_default();
    let applied: Value = serde_json::from_slice(body).map_err(|e| bad_request(&format!("error decoding YAML: {e}")))?;
    if !applied.is_object() {
        return Err(bad_request("error decoding YAML: the body is not an object"));
    }
    if applied["apiVersion"] != kind.api_version().as_str() {
        return Err(bad_request(&format!(
            "Incorrect version specified in apply patch. Specified patch version: {}, expected: {}",
            applied["apiVersion"].as_str().unwrap_or(""),
            kind.api_version()
        )));
    }
    if applied["kind"] != kind.kind {
        return Err(bad_request(&format!(
            "the kind of the object ({}) does not match the kind of the resource on the URL ({})",
            applied["kind"].as_str().unwrap_or(""),
            kind.kind
        )));
    }
    if applied["metadata"]["name"] != name {
        return Err(bad_request(&format!(
            "the name of the object ({}) does not match the name on the URL ({name})",
            applied["metadata"]["name"].as_str().unwrap_or("")
        )));
    }
    if let (Some(body_namespace), Some(namespace)) = (applied["metadata"]["namespace"].as_str(), target.namespace) {
        if body_namespace != namespace {
            return Err(bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
    }

    let applied = normalize(kind, applied);
    let fields = field_set(&without_identity(&applied));
    let key = target.key();
    let live = state.objects.get(&key).cloned();
    let mut object = match &live {
        None => {
            let mut object = applied.clone();
            let meta = metadata_mut(&mut object);
            meta.insert("name".into(), json!(name));
            if let Some(namespace) = target.namespace {
                meta.insert("namespace".into(), json!(namespace));
            }
            meta.insert("uid".into(), json!(fake_uid(kind.kind, &format!("{key}@{next_resource_version}"))));
            meta.insert("resourceVersion".into(), json!(next_resource_version.to_string()));
            meta.insert("creationTimestamp".into(), json!(CREATED));
            if kind.has_generation() {
                meta.insert("generation".into(), json!(1));
            }
            object
        }
        Some(live) => {
            let mut object = live.clone();
            let previous = managed_fields(live, manager);
            remove_dropped(&mut object, &previous, &fields);
            merge_applied(&mut object, &applied);
            object
        }
    };
    defaults(kind, &mut object, state, &key);
    record_managed_fields(&mut object, manager, &kind.api_version(), fields);

    if let Some(live) = &live {
        if object == *live {
            return Ok(Written { answer: object, writes: Vec::new() });
        }
        let meta = metadata_mut(&mut object);
        meta.insert("resourceVersion".into(), json!(next_resource_version.to_string()));
        if kind.has_generation() && without_meta_and_status(&object) != without_meta_and_status(live) {
            let generation = live["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
            metadata_mut(&mut object).insert("generation".into(), json!(generation));
        }
    }
    state.objects.insert(key.clone(), object.clone());
    Ok(Written { answer: object.clone(), writes: vec![FakeWrite::Object { path: key, object: Some(object) }] })
}

/// A JSON merge patch (`application/merge-patch+json`) on a stored object.
pub(super) fn merge_patch_stored(
    state: &mut FakeState,
    target: &Target<'_>,
    patch: &Value,
    next_resource_version: u64,
) -> Result<Written, (StatusCode, Value)> {
    let key = target.key();
    let Some(live) = state.objects.get(&key).cloned() else {
        return Err(not_found(target.kind.group, target.kind.plural, target.name.unwrap_or_default()));
    };
    let mut object = live.clone();
    merge_patch(&mut object, patch);
    // What identifies the object stays.
    for field in ["apiVersion", "kind"] {
        object[field] = live[field].clone();
    }
    for field in ["name", "namespace", "uid", "creationTimestamp", "resourceVersion", "generation"] {
        match live["metadata"].get(field) {
            Some(value) => {
                metadata_mut(&mut object).insert(field.into(), value.clone());
            }
            None => {
                metadata_mut(&mut object).remove(field);
            }
        }
    }
    defaults(target.kind, &mut object, state, &key);
    if object == live {
        return Ok(Written { answer: object, writes: Vec::new() });
    }
    metadata_mut(&mut object).insert("resourceVersion".into(), json!(next_resource_version.to_string()));
    if target.kind.has_generation() && without_meta_and_status(&object) != without_meta_and_status(&live) {
        let generation = live["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
        metadata_mut(&mut object).insert("generation".into(), json!(generation));
    }
    state.objects.insert(key.clone(), object.clone());
    Ok(Written { answer: object.clone(), writes: vec![FakeWrite::Object { path: key, object: Some(object) }] })
}

/// `metadata` as a map (made one if it is not).
fn metadata_mut(object: &mut Value) -> &mut Map<String, Value> {
    if !object["metadata"].is_object() {
        object["metadata"] = json!({});
    }
    object["metadata"].as_mut_object()
}

trait AsMutObject {
    fn as_mut_object(&mut self) -> &mut Map<String, Value>;
}

impl AsMutObject for Value {
    fn as_mut_object(&mut self) -> &mut Map<String, Value> {
        if !self.is_object() {
            *self = json!({});
        }
        match self {
            Value::Object(map) => map,
            _ => unreachable!("made an object above"),
        }
    }
}

/// The applied body as the server takes it: no `status`, none of the fields the server sets in `metadata`,
/// and a Secret's `stringData` folded into `data` (base64).
fn normalize(kind: &Kind, mut applied: Value) -> Value {
    let fields = applied.as_mut_object();
    fields.remove("status");
    if let Some(meta) = fields.get_mut("metadata").and_then(Value::as_object_mut) {
        for server_set in [
            "namespace",
            "uid",
            "resourceVersion",
            "generation",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "managedFields",
            "selfLink",
        ] {
            meta.remove(server_set);
        }
    }
    if kind.kind == "Secret" {
        if let Some(Value::Object(string_data)) = fields.remove("stringData") {
            let b64 = base64::engine::general_purpose::STANDARD;
            let data = fields.entry("data").or_insert_with(|| json!({})).as_mut_object();
            for (key, value) in string_data {
                data.insert(key, json!(b64.encode(value.as_str().unwrap_or_default())));
            }
        }
    }
    applied
}

/// The applied body without what names the object (not a field anyone manages).
fn without_identity(applied: &Value) -> Value {
    let mut body = applied.clone();
    let fields = body.as_mut_object();
    fields.remove("apiVersion");
    fields.remove("kind");
    if let Some(meta) = fields.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("name");
        if meta.is_empty() {
            fields.remove("metadata");
        }
    }
    body
}

fn without_meta_and_status(object: &Value) -> Value {
    let mut rest = object.clone();
    let fields = rest.as_mut_object();
    fields.remove("metadata");
    fields.remove("status");
    rest
}

/// Whether a list's items are objects with a `name` each, merged item by item.
fn named(items: &[Value]) -> bool {
    !items.is_empty() && items.iter().all(|item| item["name"].is_string())
}

/// The fields a body sets, as `fieldsV1`: `{"f:spec": {"f:replicas": {}, "f:template": {...}}}`, with the
/// items of a named list as `k:{"name":"..."}`.
fn field_set(body: &Value) -> Value {
    let mut set = Map::new();
    if let Some(fields) = body.as_object() {
        for (key, value) in fields {
            let entry = match value {
                Value::Null => continue,
                Value::Object(map) if !map.is_empty() => field_set(value),
                Value::Array(items) if named(items) => {
                    let mut by_key = Map::new();
                    for item in items {
                        let mut item_set = field_set(item);
                        item_set.as_mut_object().insert(".".into(), json!({}));
                        by_key.insert(format!("k:{}", json!({"name": item["name"]})), item_set);
                    }
                    Value::Object(by_key)
                }
                _ => json!({}),
            };
            set.insert(format!("f:{key}"), entry);
        }
    }
    Value::Object(set)
}

/// The fields `manager` applied last, from the object's `managedFields`.
fn managed_fields(object: &Value, manager: &str) -> Value {
    object["metadata"]["managedFields"]
        .as_array()
        .and_then(|entries| entries.iter().find(|e| e["manager"] == manager && e["operation"] == "Apply"))
        .map(|e| e["fieldsV1"].clone())
        .unwrap_or_else(|| json!({}))
}

fn record_managed_fields(object: &mut Value, manager: &str, api_version: &str, fields: Value) {
    let meta = metadata_mut(object);
    let mut entries: Vec<Value> = meta
        .get("managedFields")
        .and_then(Value::as_array)
        .map(|entries| {
            entries.iter().filter(|e| !(e["manager"] == manager && e["operation"] == "Apply")).cloned().collect()
        })
        .unwrap_or_default();
    entries.push(json!({
        "manager": manager,
        "operation": "Apply",
        "apiVersion": api_version,
        "time": CREATED,
        "fieldsType": "FieldsV1",
        "fieldsV1": fields,
    }));
    meta.insert("managedFields".into(), Value::Array(entries));
}

/// Removes from `live` the fields of `previous` (a field set) that `current` no longer has: what a manager
/// applied before and applies no more. Fields beneath a dropped one that others set stay (and so the
/// dropped one, when anything stays beneath it).
fn remove_dropped(live: &mut Value, previous: &Value, current: &Value) {
    let Some(previous) = previous.as_object() else { return };
    let empty = json!({});
    for (key, beneath) in previous {
        let now = current.get(key);
        if let Some(field) = key.strip_prefix("f:") {
            let Some(fields) = live.as_object_mut() else { continue };
            match now {
                Some(now) => {
                    if let Some(value) = fields.get_mut(field) {
                        remove_dropped(value, beneath, now);
                    }
                }
                None => {
                    let has_children = beneath.as_object().is_some_and(|m| m.keys().any(|k| k != "."));
                    match fields.get_mut(field) {
                        Some(value) if has_children && (value.is_object() || value.is_array()) => {
                            remove_dropped(value, beneath, &empty);
                            let emptied = match value {
                                Value::Object(m) => m.is_empty(),
                                Value::Array(items) => items.is_empty(),
                                _ => false,
                            };
                            if emptied {
                                fields.remove(field);
                            }
                        }
                        _ => {
                            fields.remove(field);
                        }
                    }
                }
            }
        } else if let Some(item_key) = key.strip_prefix("k:") {
            let Some(items) = live.as_array_mut() else { continue };
            let Ok(item_key) = serde_json::from_str::<Value>(item_key) else { continue };
            let Some(index) = items.iter().position(|item| {
                item_key.as_object().is_some_and(|k| k.iter().all(|(field, value)| item[field.as_str()] == *value))
            }) else {
                continue;
            };
            match now {
                Some(now) => remove_dropped(&mut items[index], beneath, now),
                None => {
                    items.remove(index);
                }
            }
        }
    }
}

/// Merges what a manager applies over the live object: maps field by field, named lists item by item (the
/// applied items in their order, then the items others added), anything else replaced.
fn merge_applied(live: &mut Value, applied: &Value) {
    let (Some(fields), Some(applied)) = (live.as_object_mut(), applied.as_object()) else {
        *live = applied.clone();
        return;
    };
    for (key, value) in applied {
        if value.is_null() {
            fields.remove(key);
            continue;
        }
        match (fields.get_mut(key), value) {
            (Some(current @ Value::Object(_)), Value::Object(_)) => merge_applied(current, value),
            (Some(Value::Array(current)), Value::Array(items)) if named(items) && named(current) => {
                let mut merged: Vec<Value> = Vec::with_capacity(items.len());
                for item in items {
                    match current.iter().find(|c| c["name"] == item["name"]) {
                        Some(existing) => {
                            let mut existing = existing.clone();
                            merge_applied(&mut existing, item);
                            merged.push(existing);
                        }
                        None => merged.push(item.clone()),
                    }
                }
                merged.extend(current.iter().filter(|c| !items.iter().any(|i| i["name"] == c["name"])).cloned());
                *current = merged;
            }
            _ => {
                fields.insert(key.clone(), value.clone());
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// Defaults, as a real API server sets them
// ---------------------------------------------------------------------------------------------------

/// Sets `key` to `value` in `object` (a map) when it has no such field.
fn default(object: &mut Value, key: &str, value: Value) {
    if let Some(fields) = object.as_object_mut() {
        fields.entry(key).or_insert(value);
    }
}

/// The map at `key` of `object`, when there is one.
fn child<'a>(object: &'a mut Value, key: &str) -> Option<&'a mut Value> {
    object.as_object_mut()?.get_mut(key).filter(|v| v.is_object())
}

fn each_item(object: &mut Value, key: &str, mut f: impl FnMut(&mut Value)) {
    if let Some(items) = object.as_object_mut().and_then(|o| o.get_mut(key)).and_then(Value::as_array_mut) {
        items.iter_mut().filter(|item| item.is_object()).for_each(&mut f);
    }
}

/// `Always` for an image tagged `latest` or not tagged at all, `IfNotPresent` otherwise (Kubernetes'
/// defaulting of `imagePullPolicy`).
fn pull_policy(image: &str) -> &'static str {
    let last = image.rsplit('/').next().unwrap_or(image);
    if last.contains('@') {
        return "IfNotPresent";
    }
    match last.split_once(':') {
        Some((_, tag)) if tag != "latest" => "IfNotPresent",
        _ => "Always",
    }
}

fn pod_spec_defaults(pod: &mut Value) {
    default(pod, "restartPolicy", json!("Always"));
    default(pod, "terminationGracePeriodSeconds", json!(30));
    default(pod, "dnsPolicy", json!("ClusterFirst"));
    default(pod, "securityContext", json!({}));
    default(pod, "schedulerName", json!("default-scheduler"));
    for list in ["containers", "initContainers"] {
        each_item(pod, list, |container| {
            let policy = pull_policy(container["image"].as_str().unwrap_or_default());
            default(container, "imagePullPolicy", json!(policy));
            default(container, "terminationMessagePath", json!("/dev/termination-log"));
            default(container, "terminationMessagePolicy", json!("File"));
            default(container, "resources", json!({}));
            each_item(container, "ports", |port| default(port, "protocol", json!("TCP")));
        });
    }
}

fn template_defaults(spec: &mut Value) {
    if let Some(pod) = child(spec, "template").and_then(|t| child(t, "spec")) {
        pod_spec_defaults(pod);
    }
}

/// FNV-1a of a text, for deterministic allocations.
fn hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf29ce484222325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100000001b3))
}

/// The cluster IPs and node ports in use on the server, except by the Service at `key`.
fn taken(state: &FakeState, key: &str) -> (BTreeSet<String>, BTreeSet<i64>) {
    let mut ips: BTreeSet<String> = state.services.iter().map(|s| super::service_ip(&s.name)).collect();
    let mut ports: BTreeSet<i64> = state.services.iter().filter_map(|s| s.node_port.map(i64::from)).collect();
    ips.insert("10.152.183.1".into());
    for (path, object) in &state.objects {
        if path == key || object["kind"] != "Service" {
            continue;
        }
        if let Some(ip) = object["spec"]["clusterIP"].as_str() {
            ips.insert(ip.to_owned());
        }
        for port in object["spec"]["ports"].as_array().into_iter().flatten() {
            if let Some(node_port) = port["nodePort"].as_i64() {
                ports.insert(node_port);
            }
        }
    }
    (ips, ports)
}

fn service_defaults(object: &mut Value, state: &FakeState, key: &str) {
    let Some(spec) = child(object, "spec") else { return };
    default(spec, "type", json!("ClusterIP"));
    let service_type = spec["type"].as_str().unwrap_or("ClusterIP").to_owned();
    if service_type == "ExternalName" {
        return;
    }
    let (mut ips, mut ports) = taken(state, key);
    default(spec, "sessionAffinity", json!("None"));
    if spec.get("clusterIP").is_none() {
        let start = hash(key) % 253;
        let ip = (0..253)
            .map(|i| format!("10.152.183.{}", (start + i) % 253 + 2))
            .find(|ip| !ips.contains(ip))
            .unwrap_or_else(|| "10.152.183.254".into());
        ips.insert(ip.clone());
        spec["clusterIP"] = json!(ip);
    }
    let cluster_ip = spec["clusterIP"].clone();
    default(spec, "clusterIPs", json!([cluster_ip]));
    default(spec, "ipFamilies", json!(["IPv4"]));
    default(spec, "ipFamilyPolicy", json!("SingleStack"));
    default(spec, "internalTrafficPolicy", json!("Cluster"));
    let node_ports = matches!(service_type.as_str(), "NodePort" | "LoadBalancer");
    if node_ports {
        default(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    let mut index = 0u64;
    each_item(spec, "ports", |port| {
        default(port, "protocol", json!("TCP"));
        let number = port["port"].clone();
        default(port, "targetPort", number);
        if node_ports && port.get("nodePort").is_none() {
            let start = (hash(key) + index) % 2768;
            let chosen = (0..2768).map(|i| 30000 + (start + i) % 2768).find(|p| !ports.contains(&(*p as i64)));
            if let Some(chosen) = chosen {
                ports.insert(chosen as i64);
                port["nodePort"] = json!(chosen);
            }
        }
        index += 1;
    });
    default(object, "status", json!({"loadBalancer": {}}));
}

/// The defaults a real API server sets on an object of `kind`, where the object does not set them.
fn defaults(kind: &Kind, object: &mut Value, state: &FakeState, key: &str) {
    match kind.kind {
        "Namespace" => {
            let name = object["metadata"]["name"].clone();
            let meta = metadata_mut(object);
            let labels = meta.entry("labels").or_insert_with(|| json!({})).as_mut_object();
            labels.insert("kubernetes.io/metadata.name".into(), name);
            default(object, "spec", json!({"finalizers": ["kubernetes"]}));
            default(object, "status", json!({"phase": "Active"}));
        }
        "Secret" => default(object, "type", json!("Opaque")),
        "PersistentVolumeClaim" => {
            if let Some(spec) = child(object, "spec") {
                default(spec, "volumeMode", json!("Filesystem"));
            }
            default(object, "status", json!({"phase": "Pending"}));
        }
        "Service" => service_defaults(object, state, key),
        "Deployment" => {
            let Some(spec) = child(object, "spec") else { return };
            default(spec, "replicas", json!(1));
            default(spec, "revisionHistoryLimit", json!(10));
            default(spec, "progressDeadlineSeconds", json!(600));
            default(spec, "strategy", json!({"type": "RollingUpdate"}));
            if let Some(strategy) = child(spec, "strategy") {
                default(strategy, "type", json!("RollingUpdate"));
                if strategy["type"] == "RollingUpdate" {
                    default(strategy, "rollingUpdate", json!({}));
                    if let Some(rolling) = child(strategy, "rollingUpdate") {
                        default(rolling, "maxUnavailable", json!("25%"));
                        default(rolling, "maxSurge", json!("25%"));
                    }
                }
            }
            template_defaults(spec);
        }
        "StatefulSet" => {
            let Some(spec) = child(object, "spec") else { return };
            default(spec, "replicas", json!(1));
            default(spec, "podManagementPolicy", json!("OrderedReady"));
            default(spec, "updateStrategy", json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}));
            default(spec, "revisionHistoryLimit", json!(10));
            default(
                spec,
                "persistentVolumeClaimRetentionPolicy",
                json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
            );
            each_item(spec, "volumeClaimTemplates", |template| {
                if let Some(claim) = child(template, "spec") {
                    default(claim, "volumeMode", json!("Filesystem"));
                }
            });
            template_defaults(spec);
        }
        "DaemonSet" => {
            let Some(spec) = child(object, "spec") else { return };
            default(
                spec,
                "updateStrategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}),
            );
            default(spec, "revisionHistoryLimit", json!(10));
            template_defaults(spec);
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------------
// Deletion
// ---------------------------------------------------------------------------------------------------

/// Deletes the object `target` names. The answer is what kube-apiserver sends for a background deletion:
/// the object itself for the kinds whose storage returns it (a ServiceAccount; a Namespace, which goes
/// `Terminating`), a `Status` `Success` naming it for the others (a Deployment, a ConfigMap, a custom
/// resource, ...). Deleting a Namespace deletes the stored objects in it at once (the namespace controller's
/// work, done instantly).
pub(super) fn delete(state: &mut FakeState, target: &Target<'_>) -> Result<Written, (StatusCode, Value)> {
    let kind = target.kind;
    let name = target.name.unwrap_or_default();
    let key = target.key();
    let Some(mut object) = state.objects.remove(&key) else {
        return Err(not_found(kind.group, kind.plural, name));
    };
    let mut writes = vec![FakeWrite::Object { path: key, object: None }];
    if kind.kind == "Namespace" {
        let inside: Vec<String> = state
            .objects
            .keys()
            .filter(|path| parse(path, true).is_some_and(|t| t.namespace == Some(name)))
            .cloned()
            .collect();
        for path in inside {
            state.objects.remove(&path);
            writes.push(FakeWrite::Object { path, object: None });
        }
    }
    let answer = match kind.kind {
        "Namespace" => {
            metadata_mut(&mut object).insert("deletionTimestamp".into(), json!(super::CHANGED));
            object["status"] = json!({"phase": "Terminating"});
            object
        }
        "ServiceAccount" => object,
        _ => {
            let mut details = json!({"name": name, "kind": kind.plural, "uid": object["metadata"]["uid"]});
            if !kind.group.is_empty() {
                details["group"] = json!(kind.group);
            }
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details})
        }
    };
    Ok(Written { answer, writes })
}

/// The answer to a request on a path of the store that is not an object of a writable kind.
pub(super) fn not_writable(target: Option<&Target<'_>>) -> (StatusCode, Value) {
    match target {
        Some(t) if !t.kind.writable => (
            StatusCode::METHOD_NOT_ALLOWED,
            status_json(
                405,
                "MethodNotAllowed",
                &format!("the fake API server serves {} as the state gives them and takes no writes", t.kind.plural),
                None,
            ),
        ),
        _ => unknown_path(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_parsed_by_scope() {
        let t = parse("/apis/apps/v1/namespaces/default/deployments/nginx", false).unwrap();
        assert_eq!((t.kind.kind, t.namespace, t.name), ("Deployment", Some("default"), Some("nginx")));
        assert_eq!(t.key(), "/apis/apps/v1/namespaces/default/deployments/nginx");
        let t = parse("/api/v1/namespaces/monitoring", false).unwrap();
        assert_eq!((t.kind.kind, t.namespace, t.name), ("Namespace", None, Some("monitoring")));
        let t = parse("/api/v1/namespaces", false).unwrap();
        assert_eq!((t.kind.kind, t.namespace, t.name), ("Namespace", None, None));
        let t = parse("/api/v1/configmaps", false).unwrap();
        assert_eq!((t.kind.kind, t.namespace, t.name), ("ConfigMap", None, None));
        assert!(parse("/api/v1/configmaps/settings", false).is_none(), "a namespaced kind's object has a namespace");
        assert!(parse("/api/v1/namespaces/a/namespaces/b", false).is_none());
        assert!(parse("/apis/policy.karmada.io/v1alpha1/propagationpolicies", false).is_none(), "Karmada only");
        assert!(parse("/apis/policy.karmada.io/v1alpha1/propagationpolicies", true).is_some());
        assert!(parse("/apis/apps/v1/namespaces/default/deployments/nginx/status", false).is_none());
        assert!(parse("/apis/batch/v1/jobs", false).is_none(), "a kind the store does not serve");
    }

    #[test]
    fn selectors_match_equality_existence_and_sets() {
        let object =
            json!({"metadata": {"labels": {"testbed/owner": "lab", "testbed/workload": "web", "tier": "front"}}});
        let matches = |s: &str| Selector::parse(s).unwrap().matches(&object);
        assert!(matches(""));
        assert!(matches("testbed/owner=lab,testbed/workload=web"));
        assert!(matches("testbed/owner==lab"));
        assert!(!matches("testbed/owner=lab,testbed/workload=db"));
        assert!(matches("testbed/owner"));
        assert!(!matches("!testbed/owner"));
        assert!(matches("!other"));
        assert!(matches("tier in (front, back),testbed/owner!=other"));
        assert!(!matches("tier notin (front)"));
        assert!(Selector::parse("a=b,,c").is_err());
        let from_query = Selector::from_query("limit=5&labelSelector=testbed%2Fowner%3Dlab%2Ctestbed%2Fworkload%3Dweb");
        assert_eq!(from_query.unwrap(), Selector::parse("testbed/owner=lab,testbed/workload=web").unwrap());
    }

    #[test]
    fn pull_policies_follow_the_tag() {
        assert_eq!(pull_policy("nginx"), "Always");
        assert_eq!(pull_policy("nginx:latest"), "Always");
        assert_eq!(pull_policy("nginx:1.27"), "IfNotPresent");
        assert_eq!(pull_policy("localhost:32000/app"), "Always");
        assert_eq!(pull_policy("localhost:32000/app:v2"), "IfNotPresent");
        assert_eq!(pull_policy("nginx@sha256:0123"), "IfNotPresent");
    }

    #[test]
    fn a_dropped_field_goes_and_what_others_set_stays() {
        let first = json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "web", "image": "nginx:1", "args": ["x"]}]}}}});
        let mut live = first.clone();
        live["metadata"]["labels"]["c"] = json!("theirs");
        live["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = json!("IfNotPresent");
        let second = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:2"}]}}}});
        remove_dropped(&mut live, &field_set(&first), &field_set(&second));
        merge_applied(&mut live, &second);
        assert_eq!(
            live,
            json!({"metadata": {"labels": {"a": "1", "c": "theirs"}}, "spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:2", "imagePullPolicy": "IfNotPresent"}]}}}})
        );
    }
}
