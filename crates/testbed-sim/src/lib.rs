//! The simulated machine behind `testbed --simulate`.
//!
//! **Everything here is a simulation. Nothing it reports is a real result**: no package is installed, no
//! container starts, no cluster runs. It models the world the real providers talk to, in a JSON state file
//! ([`SimMachine::open`]) and a directory of the host's files beside it: the host's programs (apt-get,
//! snap, curl, tar, sysctl, iptables, microk8s, karmadactl, coreutils), an LXD daemon (its REST API over a
//! unix socket, exec and file push), the programs inside the members (snapd, microk8s), and the
//! Kubernetes APIs of the host cluster, the members and Karmada, and the registries (the host MicroK8s
//! registry addon's and the public ones, over the OCI distribution API). The real host, LXD, MicroK8s,
//! registry and Karmada providers run over it unchanged; nothing here implements a layer.
//! Each program and API behaves as the real one does where testbed depends on it, its quirks included
//! (real-tools.md, "Behaviours that break naive automation"), takes time in proportion to the real one
//! ([`SimOptions::speed`]), and fails as the real one fails when what it needs is not there.
//!
//! Use it to try a file, a plan and an apply without a machine to spare, and to test testbed itself. What
//! it cannot tell you is whether the real tools will work on your host.
//!
//! The layers above LXD can also run simulated on top of a real LXD
//! ([`SimMachine::with_real_containers`]): they then see the real containers (a simulated MicroK8s installs
//! only into a real container that is running) and keep only what they put inside them.

mod clock;
pub mod containerd;
mod coreutils;
mod error;
pub mod faults;
pub mod host_root;
mod karmadactl;
mod kube_api;
pub mod lxd_daemon;
mod machine;
mod member_programs;
mod microk8s_snap;
mod options;
mod programs;
mod propagation;
mod registry;
mod registry_server;
mod server_thread;
mod snap_store;
mod store;
pub mod world;

pub use error::SimError;
pub use machine::SimMachine;
pub use options::{SimOptions, FAIL_ENV, SEED_ENV, SPEED_ENV};
pub use programs::SimPrograms;
pub use store::FORMAT;
pub use world::{Inside, SimWorld};
