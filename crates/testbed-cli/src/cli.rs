//! The command line: a contract that tests and users depend on (see the README).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "testbed",
    version,
    about = "Declarative multi-cluster Kubernetes lab on one server: MicroK8s + LXD + Karmada",
    long_about = "testbed reads the desired state from testbed.toml, observes the machine, plans the missing \
                  steps as a dependency graph, and applies only those, in parallel where the graph allows."
)]
pub struct Cli {
    /// The desired-state file.
    #[arg(short = 'c', long = "config", global = true, default_value = "testbed.toml", value_name = "PATH")]
    pub config: PathBuf,

    /// Run these layers on the simulated machine: `all`, or a comma-separated list of host, lxd, microk8s,
    /// registry, karmada.
    #[arg(long, global = true, value_name = "LAYERS")]
    pub simulate: Option<String>,

    /// The simulated machine's state file [default: .testbed/sim.json beside the config].
    #[arg(long = "sim-state", global = true, value_name = "PATH")]
    pub sim_state: Option<PathBuf>,

    /// More tracing output (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show what apply would change.
    Plan {
        /// Print the plan as one JSON object (docs/plan-json.md).
        #[arg(long)]
        json: bool,
        /// Exit 0 when there are no changes, 2 when there are, 1 on error.
        #[arg(long = "detailed-exitcode")]
        detailed_exitcode: bool,
        /// Limit the plan to an address, an address prefix or a member, plus what it needs.
        #[arg(long, value_name = "ADDRESS_OR_MEMBER")]
        target: Vec<String>,
    },
    /// Make the machine match the file: run the plan's actions.
    Apply(#[command(flatten)] RunArgs),
    /// Delete every resource testbed owns, in reverse dependency order.
    Destroy(#[command(flatten)] RunArgs),
    /// Show the observed state of each resource.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Print the plan's dependency graph as Graphviz DOT.
    Graph {
        #[arg(long, value_name = "ADDRESS_OR_MEMBER")]
        target: Vec<String>,
    },
    /// Check the file and report every problem with its line.
    Validate,
    /// Print the JSON Schema of testbed.toml.
    Schema,
}

/// What `apply` and `destroy` share.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Do not ask for confirmation (required without a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Change nothing: print each action and the exact commands and API calls it would run, in order.
    #[arg(long = "dry-run")]
    pub dry_run: bool,
    /// How many actions may run at once.
    #[arg(long, value_name = "N")]
    pub parallelism: Option<usize>,
    /// Limit the run to an address, an address prefix or a member, plus what must happen first (for
    /// destroy: the deletes of what depends on it).
    #[arg(long, value_name = "ADDRESS_OR_MEMBER")]
    pub target: Vec<String>,
    /// How long to wait for another run on the same machine to finish (`30s`, `10m`) before giving up.
    #[arg(
        long = "lock-timeout",
        value_name = "DURATION",
        default_value = "0s",
        env = "TESTBED_LOCK_TIMEOUT",
        value_parser = humantime::parse_duration
    )]
    pub lock_timeout: std::time::Duration,
}
