//! The simulated machine behind `testbed --simulate`.
//!
//! **Everything here is a simulation. Nothing it reports is a real result**: no package is installed, no
//! container starts, no cluster runs. It models a host (packages, kernel settings, firewall, ports), LXD
//! (network, storage pool, profile, containers, proxy devices), MicroK8s (on the host and in each member),
//! the local registry, and Karmada, in a JSON state file ([`SimMachine::open`]). Each step checks the
//! preconditions the real step has and fails as the real step would when they do not hold (no MicroK8s in
//! a stopped container, no `karmadactl init` before its images are in the registry, no join before the
//! control plane and the member's API answer); it takes time in proportion to the real step
//! ([`SimOptions::speed`]); and it records who made each object, so that observation reports objects
//! testbed did not make as someone else's and the simulation refuses to change or delete them.
//!
//! Use it to try a file, a plan and an apply without a machine to spare, and to test testbed itself. What
//! it cannot tell you is whether the real tools will work on your host.
//!
//! The layers above LXD can also run simulated on top of a real LXD
//! ([`SimMachine::with_real_containers`]): they then see the real containers (a simulated MicroK8s installs
//! only into a real container that is running) and keep only what they put inside them.

mod below;
mod coreutils;
mod error;
pub mod host_root;
mod karmadactl;
mod kube_api;
pub mod latency;
pub mod lxd_daemon;
mod machine;
mod member_programs;
mod microk8s_snap;
mod mirror;
mod options;
mod programs;
mod registry;
mod step;
mod store;
pub mod world;

pub use error::SimError;
pub use machine::SimMachine;
pub use options::{SimOptions, FAIL_ENV, SPEED_ENV};
pub use programs::SimPrograms;
pub use store::FORMAT;
pub use world::{Inside, SimWorld};
