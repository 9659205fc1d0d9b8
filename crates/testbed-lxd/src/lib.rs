//! The real LXD layer: a REST client over the daemon's unix socket ([`client`]) and the provider that
//! observes and changes networks, storage pools, the member profile, member containers and proxy devices
//! ([`provider`]). Works with LXD (snap or Debian package) and Incus.

pub mod client;
pub mod error;
pub mod provider;

pub use client::{Client, ExecResult, Flavor};
pub use error::LxdError;
pub use provider::LxdProvider;
