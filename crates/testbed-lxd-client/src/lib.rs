//! The LXD (and Incus) REST client: requests over the daemon's unix socket, background operations waited
//! for, exec with its output, file pushes. What talks to LXD needs only this: the LXD layer's provider
//! (`testbed-lxd`), the command runner's exec in members (`testbed-command`), the simulated machine.

mod client;
mod error;

pub use client::{decode, encode, Client, ExecResult, Flavor, Operation, OperationClass};
pub use error::LxdError;
