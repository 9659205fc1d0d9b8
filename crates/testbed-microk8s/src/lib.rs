//! The real MicroK8s layer: the host's MicroK8s and its addons, MicroK8s and addons in each member's
//! container (commands run there through LXD exec), and the members' kubeconfig files on the host.
//!
//! - Commands are the catalogue's (`testbed_steps::steps`), run through a [`testbed_command::CommandRunner`]
//!   as argument vectors, never through a shell. Tests use `testbed_command::ScriptedRunner` (its `scripted`
//!   feature) with replies shaped like the real programs' output.
//! - Observation reads `snap list microk8s` (the snap's tracking channel), `microk8s status --format yaml`
//!   (running, addons) and testbed's record of the addons it enabled, on the host and in every running
//!   member container; the kubeconfig files on the host; and, through each member's people kubeconfig, whether
//!   every node is Ready (`testbed-kube`).
//! - Kubeconfigs come from `microk8s config` in the member, whose output is the admin credentials: it is
//!   never logged (the log says how many bytes came back), never quoted in an error, never shown by `Debug`.
//!
//! [`Microk8sProvider`] documents ownership and how health is reported.

mod installs;
pub mod kubeconfig;
mod parse;
mod pods;
mod provider;

pub use pods::{MemberApiError, MemberPods, PodTrouble, LAST_LINES};
pub use provider::{Microk8sProvider, ADDONS_RECORD, HOST_OWNER_MARKER};
