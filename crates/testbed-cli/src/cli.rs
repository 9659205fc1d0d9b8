//! The command line: a contract that tests and users depend on (see the README).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::style::ColorChoice;

/// The environment variables testbed reads, shown at the end of `--help`.
const ENVIRONMENT: &str = "\
ENVIRONMENT:
  RUST_LOG                  Tracing filter (overrides -v), e.g. RUST_LOG=testbed_exec=debug
  NO_COLOR                  Any non-empty value: no colour under --color auto (https://no-color.org)
  TESTBED_HOST_KUBECONFIG   Admin kubeconfig of the host cluster
                            [default: /var/snap/microk8s/current/credentials/client.config]
  LXD_DIR, LXD_SOCKET       Where the LXD daemon's socket is (INCUS_DIR, INCUS_SOCKET with Incus)
  TESTBED_SIM_SPEED         Simulated machine: factor on real-magnitude step times; 0 = instant [default: 0.01]
  TESTBED_SIM_FAIL          Simulated machine: faults to inject, comma-separated (see the README)
  TESTBED_SIM_SEED          Simulated machine: seed for random faults and step times";

#[derive(Debug, Parser)]
#[command(
    name = "testbed",
    version,
    about = "Declarative multi-cluster Kubernetes lab on one server: MicroK8s + LXD + Karmada",
    long_about = "testbed reads the desired state from testbed.toml, observes the machine, plans the missing \
                  steps as a dependency graph, and applies only those, in parallel where the graph allows.",
    after_help = ENVIRONMENT
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

    /// When to colour the output; NO_COLOR (non-empty) turns `auto` off.
    #[arg(long, global = true, value_name = "WHEN", value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,

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
    /// Show the lab: a row per member, the shared parts, the workloads, and what is not as the file wants.
    /// Exits 0 when everything is as the file wants, 2 when something is not, 1 on error.
    Status {
        /// Print the state as one JSON object, with a "format_version" (docs/reference.md).
        #[arg(long)]
        json: bool,
    },
    /// Print the lab's kubeconfig: a context for Karmada and one for each member, named `<name>-karmada`,
    /// `<name>-member1`, ... (`<name>` is the file's `name`), credentials included.
    Kubeconfig {
        /// Only this member's context.
        #[arg(value_name = "MEMBER")]
        member: Option<String>,
        /// Write it to FILE (mode 0600) instead of stdout.
        #[arg(long, short = 'o', value_name = "FILE", conflicts_with_all = ["merge", "unmerge"])]
        output: Option<std::path::PathBuf>,
        /// Merge the contexts into your kubeconfig (the first file of $KUBECONFIG, or ~/.kube/config): a
        /// backup first, only testbed's entries of this lab replaced, the rest kept byte for byte.
        #[arg(long, conflicts_with = "unmerge")]
        merge: bool,
        /// Remove this lab's contexts from your kubeconfig, leaving everything else as it is.
        #[arg(long, conflicts_with = "member")]
        unmerge: bool,
    },
    /// Diagnose the lab from the outside in, changing nothing: the host, then each member's container, API
    /// proxy, host port, API, nodes, Karmada cluster, pods and application proxies. Exit 0 when every check
    /// passes, 1 when one fails.
    Doctor {
        /// Print the findings as one JSON object, with a "format_version".
        #[arg(long)]
        json: bool,
        /// Only these members (the host is always checked).
        #[arg(value_name = "MEMBER")]
        members: Vec<String>,
    },
    /// Rehearse a failure of the lab and watch Karmada handle it.
    Drill {
        #[command(subcommand)]
        drill: DrillCommand,
    },
    /// Print the plan's dependency graph as Graphviz DOT.
    Graph {
        /// Limit the graph to an address, an address prefix or a member, plus what it needs.
        #[arg(long, value_name = "ADDRESS_OR_MEMBER")]
        target: Vec<String>,
    },
    /// Check the file and report every problem with its line.
    Validate,
    /// Print the JSON Schema of testbed.toml.
    Schema,
    /// Print a shell completion script: `testbed completions bash > /etc/bash_completion.d/testbed`.
    Completions {
        /// The shell to complete in.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
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
    #[arg(long, value_name = "N", default_value_t = testbed_exec::default_parallelism())]
    pub parallelism: usize,
    /// Limit the run to an address, an address prefix or a member, plus what must happen first (for
    /// destroy: the deletes of what depends on it).
    #[arg(long, value_name = "ADDRESS_OR_MEMBER")]
    pub target: Vec<String>,
    #[command(flatten)]
    pub lock: LockWait,
}

/// The drills.
#[derive(Debug, Subcommand)]
pub enum DrillCommand {
    /// Seed 003's failover test: fail MEMBER, watch its workloads move to the next member, restore it.
    ///
    /// Records where every workload runs, taints MEMBER's Cluster `cluster.karmada.io/not-ready:NoExecute`
    /// (what Karmada puts on a cluster that fails; with --stop, stops its container instead), watches the
    /// ResourceBindings and the members' pods until the workloads run elsewhere (at most their policies'
    /// toleration plus --margin), restores MEMBER, waits until it is Ready and says where the workloads
    /// settled. Refuses when cluster failover is off in Karmada or no workload has `failover`.
    Failover(FailoverArgs),
}

/// `testbed drill failover`.
#[derive(Debug, clap::Args)]
pub struct FailoverArgs {
    /// The member to fail.
    #[arg(value_name = "MEMBER")]
    pub member: String,
    /// Stop MEMBER's container instead of tainting its Cluster (Karmada then sees it not Ready and testbed's
    /// ClusterTaintPolicy taints it); restored by starting it.
    #[arg(long)]
    pub stop: bool,
    /// Print the timeline as one JSON object, with a "format_version".
    #[arg(long)]
    pub json: bool,
    /// How long past the longest toleration to wait for the workloads to run elsewhere (`2m`, `90s`).
    #[arg(long, value_name = "DURATION", default_value = "2m", value_parser = humantime::parse_duration)]
    pub margin: std::time::Duration,
    #[command(flatten)]
    pub lock: LockWait,
}

/// What every command that takes the run lock shares.
#[derive(Debug, clap::Args)]
pub struct LockWait {
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
