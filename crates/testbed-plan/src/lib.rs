//! Resources, addresses, observed state and the planner.
//!
//! Everything here is pure: [`desired::build`] turns a validated file into resources, providers fill an
//! [`observed::ObservedState`], and [`planner::plan`] diffs the two into a [`plan::Plan`], a DAG of
//! actions. [`render`] prints plans as text, JSON and DOT.

pub mod desired;
pub mod observed;
pub mod plan;
pub mod planner;
pub mod render;
pub mod resource;
pub mod workload;

pub use desired::DesiredState;
pub use observed::{ForeignUse, Health, Observed, ObservedState, Owner, Unobservable};
pub use plan::{Action, Change, Conflict, Op, Plan, PlanError, Summary};
pub use planner::plan;
pub use resource::{Address, Kind, Layer, Lifecycle, Resource, Spec};
pub use testbed_config::PodTarget;
