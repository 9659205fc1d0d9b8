//! The real host layer: the distribution, the host packages (snapd, LXD or Incus, kubectl, and karmadactl
//! verified against the release's published SHA-256), the `fs.inotify` limits, and the bridge's firewall
//! rules (iptables, or nftables on hosts without iptables); plus the pre-flight that reports what the host
//! lacks before apply changes anything.
//!
//! - [`HostSystem`]: where host facts are read from (a root directory, `/` for the real machine).
//! - [`HostProvider`]: the [`testbed_provider::Provider`] for [`testbed_plan::Layer::Host`].
//! - [`preflight::check`]: kernel modules, host ports, free disk space.

pub mod firewall;
pub mod karmadactl;
mod node_ports;
pub mod preflight;
mod provider;
mod system;

pub use provider::{HostProvider, PACKAGES_MARKER, SYSCTL_FILE, SYSCTL_HEADER};
pub use system::{Distribution, Family, HostSystem, KernelModules};
