//! The Kubernetes objects a `[[workloads]]` entry applies: which kinds testbed can place through Karmada,
//! and the objects as read from the workload's manifest files.
//!
//! [`crate::parse`] reads the files once testbed.toml passes its own checks, and fills
//! [`crate::Config::workloads`]: YAML read as Kubernetes reads it (YAML 1.1 booleans and octal numbers),
//! several documents a file, each object checked against Kubernetes' own type for its kind (a field it does
//! not have, a value of the wrong type), each problem at its line in its YAML file.

use serde_json::Value;

mod read;
mod yaml;

pub(crate) use read::read_all;

/// A kind testbed applies to the Karmada API server and Karmada propagates to members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlaceableKind {
    /// `apiVersion` as manifests write it (`v1`, `apps/v1`).
    pub api_version: &'static str,
    pub kind: &'static str,
    /// The resource's plural name in API paths (`deployments`).
    pub plural: &'static str,
    /// Whether objects of this kind live in a namespace.
    pub namespaced: bool,
    /// The order objects are applied in (a Namespace before what lives in it, what a pod mounts before the
    /// pod's owner); deletes run the other way.
    pub order: u8,
}

impl PlaceableKind {
    /// The API group (`""` for the core group).
    pub fn group(&self) -> &'static str {
        self.api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("")
    }

    /// The version (`v1`).
    pub fn version(&self) -> &'static str {
        self.api_version.rsplit_once('/').map(|(_, v)| v).unwrap_or(self.api_version)
    }
}

/// Every kind a workload may hold. Karmada propagates each of them (its default interpreter knows their
/// replicas and health where they have any).
pub const PLACEABLE_KINDS: &[PlaceableKind] = &[
    PlaceableKind { api_version: "v1", kind: "Namespace", plural: "namespaces", namespaced: false, order: 0 },
    PlaceableKind { api_version: "v1", kind: "ServiceAccount", plural: "serviceaccounts", namespaced: true, order: 1 },
    PlaceableKind { api_version: "v1", kind: "ConfigMap", plural: "configmaps", namespaced: true, order: 1 },
    PlaceableKind { api_version: "v1", kind: "Secret", plural: "secrets", namespaced: true, order: 1 },
    PlaceableKind {
        api_version: "v1",
        kind: "PersistentVolumeClaim",
        plural: "persistentvolumeclaims",
        namespaced: true,
        order: 1,
    },
    PlaceableKind { api_version: "v1", kind: "Service", plural: "services", namespaced: true, order: 2 },
    PlaceableKind { api_version: "apps/v1", kind: "Deployment", plural: "deployments", namespaced: true, order: 3 },
    PlaceableKind { api_version: "apps/v1", kind: "StatefulSet", plural: "statefulsets", namespaced: true, order: 3 },
    PlaceableKind { api_version: "apps/v1", kind: "DaemonSet", plural: "daemonsets", namespaced: true, order: 3 },
];

/// The placeable kind of `apiVersion`/`kind`, if testbed can place it.
pub fn placeable(api_version: &str, kind: &str) -> Option<&'static PlaceableKind> {
    PLACEABLE_KINDS.iter().find(|k| k.api_version == api_version && k.kind == kind)
}

/// Kinds whose objects run pods: their replicas are what a policy divides, and their health is what a
/// workload waits for.
pub fn runs_pods(kind: &str) -> bool {
    matches!(kind, "Deployment" | "StatefulSet" | "DaemonSet")
}

/// One object of a workload's manifests, as the file wrote it.
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestObject {
    pub kind: &'static PlaceableKind,
    /// `metadata.namespace`, `default` when a namespaced object gives none; `None` for cluster-scoped kinds.
    pub namespace: Option<String>,
    pub name: String,
    /// The object as written (JSON), with its namespace filled in.
    pub object: Value,
    /// Where it was written, for messages: `examples/workloads/nginx.yaml:12`, the document's first line of
    /// content; the file as the path to testbed.toml and the entry name it (relative to the current
    /// directory when the path to testbed.toml is relative).
    pub source: String,
}

impl ManifestObject {
    /// `deployment/default/nginx` (`namespace/monitoring` for a cluster-scoped one): unique within a
    /// workload, the last segment of the object's resource address.
    pub fn key(&self) -> String {
        let kind = self.kind.kind.to_ascii_lowercase();
        match &self.namespace {
            Some(ns) => format!("{kind}/{ns}/{}", self.name),
            None => format!("{kind}/{}", self.name),
        }
    }
}

/// A workload's objects, read and checked.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WorkloadManifests {
    /// The `[[workloads]]` entry's name.
    pub name: String,
    /// Its objects, in the order the files list them.
    pub objects: Vec<ManifestObject>,
    /// The PropagationPolicy of `policy = "FILE"`, as written (JSON), with `metadata.namespace` filled in
    /// (`default` when it gives none); `None` when testbed writes it.
    pub policy: Option<Value>,
}
