//! Commands, run for real or scripted.
//!
//! The command catalogue (`testbed-steps`) says what each action runs; this crate runs it. A command is an
//! argument vector handed to the kernel's `execve` through [`tokio::process`] (on the host) or to LXD's
//! exec API (in a member): never a string for a shell, so no file value can become shell syntax.
//!
//! - [`CommandRunner`]: the seam. [`SystemRunner`] is the real one (host processes, LXD exec for members);
//!   with the `scripted` feature, `ScriptedRunner` answers from a script and records what it was asked, for
//!   tests.
//! - [`Values`]: what an action learns while it runs (a join token, a CA hash). Runtime placeholders are
//!   filled from it; secrets among them are redacted from everything that is logged or reported.
//! - [`files::write_private`]: files holding credentials, written 0600 in a 0700 directory, atomically.

pub mod files;
mod runner;
#[cfg(feature = "scripted")]
mod scripted;
mod values;

pub use runner::{
    host_path, CommandError, CommandRunner, Output, SystemRunner, DEFAULT_TIMEOUT, HOST_ENVIRONMENT, STANDARD_PATH_DIRS,
};
#[cfg(feature = "scripted")]
pub use scripted::{Push, Reply, ScriptedRunner};
pub use values::{run_step, Values};
