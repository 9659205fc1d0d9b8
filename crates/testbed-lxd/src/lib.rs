//! The real LXD layer: the provider that observes and changes networks, storage pools, the member profile,
//! member containers and proxy devices ([`provider`]), over the REST client of `testbed-lxd-client`
//! (re-exported here). Works with LXD (snap or Debian package) and Incus.

pub mod error;
pub mod follow;
pub mod provider;

pub use error::IntoProvider;
pub use provider::{LxdProvider, INSTANCE_STATUS};
pub use testbed_lxd_client::{encode, Client, ExecResult, Flavor, LxdError};
