//! `batonctl`'s arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Control a Baton cluster.
#[derive(Debug, Parser)]
#[command(name = "batonctl", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// How to reach the cluster and how to print.
#[derive(Debug, Args, Clone)]
pub struct GlobalArgs {
    /// Node addresses (HOST:PORT), comma-separated; any node will do.
    #[arg(long, env = "BATON_ENDPOINTS", value_delimiter = ',', global = true)]
    pub endpoints: Vec<String>,
    /// The cluster CA certificate (PEM).
    #[arg(long, env = "BATON_CA", global = true)]
    pub ca: Option<PathBuf>,
    /// The admin client certificate (PEM).
    #[arg(long, env = "BATON_CERT", global = true)]
    pub cert: Option<PathBuf>,
    /// The admin client key (PEM).
    #[arg(long, env = "BATON_KEY", global = true)]
    pub key: Option<PathBuf>,
    /// Talk plain TCP to a cluster started with insecure = true.
    #[arg(long, env = "BATON_INSECURE", global = true)]
    pub insecure: bool,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = OutputFormat::Table, global = true)]
    pub output: OutputFormat,
    /// Give up on a command after this many seconds.
    #[arg(long, default_value_t = 30, global = true)]
    pub timeout_secs: u64,
    /// Reach the cluster of this context (`batonctl context list`); flags
    /// and BATON_* variables win over it, field by field.
    #[arg(long, env = "BATON_CONTEXT", global = true)]
    pub context: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the cluster: leader, term, commit index, and every member.
    Status,
    /// List, add and remove nodes.
    #[command(subcommand)]
    Nodes(NodesCommand),
    /// Add, inspect and control tasks.
    #[command(subcommand)]
    Tasks(TasksCommand),
    /// Deploy and list task modules (WebAssembly components).
    #[command(subcommand)]
    Modules(ModulesCommand),
    /// Watch and steer a module's rollout (hot code swap).
    #[command(subcommand)]
    Rollout(RolloutCommand),
    /// Upgrade every node to a new baton-node binary, one node at a time
    /// (`upgrade BINARY`), and watch or steer the upgrade.
    Upgrade(UpgradeArgs),
    /// Read and write the replicated key-value space (for checks and scripts).
    #[command(subcommand)]
    Kv(KvCommand),
    /// The keys task secrets are sealed with: which a node holds, and
    /// sealing every secret again with the newest (docs/secrets.md).
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// Make certificates for a cluster.
    #[command(subcommand)]
    Certs(CertsCommand),
    /// Make module signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Write node config files for the machines of a cluster.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Run a local cluster of baton-node processes for trying Baton out.
    Dev(DevArgs),
    /// What happened in the cluster, oldest first: failovers, placements,
    /// hand-offs, drains, leaders, member changes, rollout and upgrade
    /// steps, task changes (one JSON object a line with `-o json`).
    Events {
        /// Keep printing new events as they happen.
        #[arg(long, short = 'f')]
        follow: bool,
        /// Start with at most this many of the newest events (at most 1,000).
        #[arg(long, short = 'n', default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
    },
    /// Name clusters, with their endpoints and credentials, and pick the
    /// one commands use.
    #[command(subcommand)]
    Context(ContextCommand),
    /// Print a completion script for a shell, for example
    /// `batonctl completion bash > ~/.local/share/bash-completion/completions/batonctl`.
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
pub enum ContextCommand {
    /// Add (or replace) a context from the global flags or BATON_*
    /// variables given with it: `batonctl context add prod --endpoints
    /// 10.0.0.11:7000 --ca ca.pem --cert admin.pem --key admin.key`, or,
    /// after `source baton-dev/env`, `batonctl context add dev`. The first
    /// context added becomes the current one.
    Add { name: String },
    /// Make NAME the context commands use when none is named.
    Use { name: String },
    /// List the contexts; the current one is marked.
    List,
    /// Remove a context.
    Rm { name: String },
}

#[derive(Debug, Subcommand)]
pub enum NodesCommand {
    /// List the members and how they are.
    List,
    /// Add a node (start it first with an empty data_dir).
    Add {
        /// The new node's id (a positive integer never used before).
        id: u64,
        /// The new node's advertised address, HOST:PORT.
        addr: String,
        /// Join as a non-voting worker (Raft learner) rather than a voter.
        #[arg(long)]
        worker: bool,
    },
    /// Remove a node from the cluster.
    Remove {
        /// The node's id.
        id: u64,
    },
    /// Bring back a node that lost its data (a wiped or replaced disk):
    /// start it with its config and an empty data_dir first. It is removed
    /// as the member it was, added again on its new storage as a learner
    /// that catches up, then made a voter again if it was one.
    Replace {
        /// The node's id.
        id: u64,
    },
    /// Move every task off a node, each after its current tick commits, and
    /// give it no new ones until `undrain`. Waits until the node owns none.
    Drain {
        /// The node's id.
        id: u64,
        /// Return once the drain is recorded, without waiting for the tasks to move.
        #[arg(long)]
        no_wait: bool,
    },
    /// Let a drained node receive tasks again (its fair share moves to it).
    Undrain {
        /// The node's id.
        id: u64,
    },
}

/// Where a task's secrets come from (`tasks add`, `tasks set-secrets`).
#[derive(Debug, Args, Default)]
pub struct SecretFlags {
    /// Give the task a secret, NAME=VALUE (repeat for more), which its
    /// module reads with `secrets.get(NAME)`. The leader seals it with
    /// the cluster's key; Baton never shows it again. A value on the
    /// command line is seen by `ps` and kept in shell history: prefer
    /// --secret-file or --secret-env. Needs cluster version 11.
    #[arg(long = "secret", value_name = "NAME=VALUE")]
    pub secret: Vec<String>,
    /// A secret read from a file, NAME=PATH: its bytes, less one
    /// trailing newline.
    #[arg(long = "secret-file", value_name = "NAME=PATH")]
    pub secret_file: Vec<String>,
    /// A secret read from an environment variable of batonctl,
    /// NAME=VARIABLE.
    #[arg(long = "secret-env", value_name = "NAME=VARIABLE")]
    pub secret_env: Vec<String>,
}

// Parsed once per run: the size of its largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum TasksCommand {
    /// Add a task that runs MODULE on a schedule.
    Add {
        name: String,
        /// The deployed module to run.
        #[arg(long)]
        module: String,
        /// Run every DURATION (like 500ms, 30s, 5m, 1h).
        #[arg(long, value_parser = parse_duration_ms, required_unless_present = "cron", conflicts_with = "cron")]
        every: Option<u64>,
        /// Run at the times a cron expression names (`sec min hour day month weekday`).
        #[arg(long)]
        cron: Option<String>,
        /// The module's config, usually JSON.
        #[arg(long, default_value = "")]
        config: String,
        /// After downtime, skip the missed runs instead of running once at once.
        #[arg(long)]
        skip_missed: bool,
        /// Failed ticks allowed within the restart window before the task is marked failed.
        #[arg(long, default_value_t = 5)]
        max_restarts: u32,
        /// The restart window (like 60s).
        #[arg(long, value_parser = parse_duration_ms, default_value = "60s")]
        restart_window: u64,
        /// Let the task make fenced requests to HOST:PORT with tcp-exchange
        /// (repeat for more). Tasks get no network, file system or
        /// environment otherwise.
        #[arg(long = "allow-net", value_name = "HOST:PORT")]
        allow_net: Vec<String>,
        /// Let the task call an HTTP server over wasi:http, named as
        /// scheme://host[:port] such as https://api.example.com (repeat for
        /// more). Nothing else is reachable. Needs cluster version 9.
        #[arg(long = "allow-http", value_name = "URL")]
        allow_http: Vec<String>,
        /// Trust only the CA certificates in this PEM file for the task's
        /// HTTPS requests, instead of the system's roots.
        #[arg(long = "http-ca", value_name = "FILE")]
        http_ca: Option<std::path::PathBuf>,
        #[command(flatten)]
        secrets: SecretFlags,
    },
    /// Write a new task module project: NAME/ with a task that counts
    /// its ticks, the SDK, the interface and build.sh (no cluster needed).
    New {
        name: String,
        /// The language to write the task in.
        #[arg(long, value_enum)]
        lang: crate::cmd::scaffold::Lang,
        /// Where to make the project's directory.
        #[arg(long, default_value = ".")]
        dir: std::path::PathBuf,
    },
    /// List the tasks.
    List,
    /// Show one task, with its state.
    Show { name: String },
    /// Show a task's recently committed ticks, newest first.
    History {
        name: String,
        /// Show at most this many (the cluster keeps the last 256).
        #[arg(long, short = 'n')]
        limit: Option<usize>,
    },
    /// Remove a task.
    Rm { name: String },
    /// Pause a task (a tick in flight does not commit).
    Pause { name: String },
    /// Run one tick of a running task now, outside its schedule (fenced
    /// like any tick); its schedule goes on as before.
    RunNow { name: String },
    /// Give a task's secrets new values, give it more, or remove some
    /// (docs/secrets.md). Its module's next read gets the new value; the
    /// task keeps running. Needs cluster version 11.
    SetSecrets {
        name: String,
        #[command(flatten)]
        secrets: SecretFlags,
        /// Remove the secret NAME (repeat for more).
        #[arg(long = "remove", value_name = "NAME")]
        remove: Vec<String>,
    },
    /// Resume a paused or failed task.
    Resume { name: String },
    /// Show the lines a task's module logged, oldest first, from the node
    /// that owns it (each node keeps the newest 200 lines of each task it
    /// ran; one JSON object a line with `-o json`).
    Logs {
        name: String,
        /// Keep printing new lines as they are logged, across moves, until
        /// the task is removed.
        #[arg(long, short = 'f')]
        follow: bool,
        /// Start with at most this many of the newest lines (at most 1,000).
        #[arg(long, short = 'n', default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
    },
}

/// Parses `500ms`, `30s`, `5m` or `1h` into milliseconds.
pub fn parse_duration_ms(text: &str) -> Result<u64, String> {
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration; write it like 500ms, 30s, 5m or 1h"))?;
    let scale = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(format!("{text:?}: the unit must be ms, s, m or h")),
    };
    n.checked_mul(scale).ok_or_else(|| format!("{text:?} is too long"))
}

#[derive(Debug, Subcommand)]
pub enum ModulesCommand {
    /// Check FILE against the baton:task world and deploy it as module NAME.
    Deploy {
        /// The module's name (lowercase letters, digits, '-', '_').
        name: String,
        /// The component, e.g. target/wasm32-wasip2/release/counter.wasm.
        file: PathBuf,
        /// The private key to sign it with (from `batonctl keys new`).
        /// (`--key` is the TLS client key, hence the longer name.)
        #[arg(long, env = "BATON_SIGNING_KEY")]
        signing_key: Option<PathBuf>,
        #[command(flatten)]
        rollout: RolloutArgs,
    },
    /// List the deployed modules (the version each runs outside a rollout).
    List,
    /// List every version of module NAME and how its rollout ended.
    History { name: String },
}

/// How a new version of a module rolls out (a first version is current at once).
#[derive(Debug, Args, Clone)]
pub struct RolloutArgs {
    /// Nodes switched first, alone, and gated.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub canary: u32,
    /// Nodes switched together in each later step.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_parallel: u32,
    /// How long the new version's ticks must succeed on the switched nodes
    /// (failing no more often than the old version's) before the next step.
    #[arg(long, value_parser = parse_duration_ms, default_value = "10s")]
    pub min_healthy: u64,
    /// How long a step may take to become healthy before the rollout fails.
    #[arg(long, value_parser = parse_duration_ms, default_value = "60s")]
    pub healthy_deadline: u64,
    /// When a gate fails, halt (and wait for `rollout resume` or `rollout
    /// abort`) instead of reverting.
    #[arg(long)]
    pub no_auto_revert: bool,
    /// Return once the deploy is recorded instead of following the rollout.
    #[arg(long)]
    pub no_wait: bool,
}

#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// Show MODULE's latest rollout (every module's without one); a progress
    /// bar follows a running rollout with --watch.
    Status {
        module: Option<String>,
        /// Follow the rollout until it ends.
        #[arg(long)]
        watch: bool,
    },
    /// Start no further step of MODULE's rollout until `rollout resume`.
    Pause { module: String },
    /// Continue a paused or halted rollout; its current step is gated anew.
    Resume { module: String },
    /// Revert every switched node to the old version (refused if a task's
    /// state would need a down-migration the new version lacks).
    Abort { module: String },
}

/// `batonctl upgrade BINARY` or `batonctl upgrade status|pause|resume|abort`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct UpgradeArgs {
    #[command(subcommand)]
    pub command: Option<UpgradeCommand>,
    /// The new baton-node binary. It is signed, sent to the leader, and run
    /// by each node's heart in turn: drained, swapped, gated, then made
    /// permanent.
    #[arg(required = true)]
    pub binary: Option<PathBuf>,
    /// The private key to sign it with (from `batonctl keys new`); its public
    /// half must be in every node's [heart] trusted_keys.
    #[arg(long, env = "BATON_SIGNING_KEY")]
    pub signing_key: Option<PathBuf>,
    /// How long a node must run well on the new binary before it is made
    /// permanent there.
    #[arg(long, value_parser = parse_duration_ms, default_value = "10s")]
    pub min_healthy: u64,
    /// How long a node may take, from its swap, to come back healthy before
    /// it is put back on its binary before and the upgrade halts.
    #[arg(long, value_parser = parse_duration_ms, default_value = "2m")]
    pub healthy_deadline: u64,
    /// When a node's ticks fail on the new binary, halt and leave it on
    /// trial (its heart still reverts it at its deadline) instead of
    /// reverting it at once.
    #[arg(long)]
    pub no_auto_revert: bool,
    /// Keep the cluster version where it is once every node runs the new
    /// binary, until `upgrade finalize`: until then another upgrade can
    /// bring the binary before back. Without it, the version rises by
    /// itself once the upgrade is done.
    #[arg(long)]
    pub hold_version: bool,
    /// Return once the upgrade is recorded instead of following it.
    #[arg(long)]
    pub no_wait: bool,
}

#[derive(Debug, Subcommand)]
pub enum UpgradeCommand {
    /// Show the latest upgrade, node by node; --watch follows it.
    Status {
        #[arg(long)]
        watch: bool,
    },
    /// Start no further phase until `upgrade resume`.
    Pause,
    /// Continue a paused or halted upgrade; a node that failed is tried again.
    Resume,
    /// Stop the upgrade for good: the node in progress goes back to its
    /// binary before; nodes already done keep the new one.
    Abort,
    /// Let the cluster version rise after an upgrade started with
    /// --hold-version is done (the binary before can then no longer come
    /// back if the version rises past what it reads).
    Finalize,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make an ed25519 key pair for signing modules: FILE (private, mode
    /// 0600) and FILE.pub (the public key, for [modules] trusted_keys).
    New {
        /// Where to write the private key.
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Seal every task secret that is not sealed with the leader's first
    /// key again with it. Run it once every node holds the new key and
    /// seals with it, and before taking the old one away.
    Rotate,
    /// The keys the answering node holds (its first seals), those it
    /// lacks that seal secrets, and how many secrets each seals.
    Keys,
}

#[derive(Debug, Subcommand)]
pub enum KvCommand {
    /// Write KEY=VALUE through Raft; returns once committed.
    Put {
        #[arg(id = "kv_key", value_name = "KEY")]
        key: String,
        #[arg(id = "kv_value", value_name = "VALUE")]
        value: String,
    },
    /// Read KEY (linearizable through the leader unless --local).
    Get {
        #[arg(id = "kv_key", value_name = "KEY")]
        key: String,
        /// Read the answering node's local state instead (may be stale).
        #[arg(long)]
        local: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Write a cluster CA, one certificate per node and an admin certificate.
    Init {
        /// Directory to write into (created; existing files are not overwritten).
        #[arg(long)]
        dir: PathBuf,
        /// A node as ID=HOST[,HOST...]: its id and the names and IPs it is
        /// reached by. Repeat for each node.
        #[arg(long = "node", value_name = "ID=HOSTS")]
        nodes: Vec<String>,
        /// Shorthand for N local nodes (ids 1..=N, reached at 127.0.0.1 and localhost).
        #[arg(long, conflicts_with = "nodes")]
        local_nodes: Option<u64>,
    },
    /// Issue a certificate for one more node with the CA in DIR.
    AddNode {
        #[arg(long)]
        dir: PathBuf,
        /// The node as ID=HOST[,HOST...].
        #[arg(value_name = "ID=HOSTS")]
        node: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the config of node ID (for /etc/baton/node.toml on its
    /// machine): it listens on every interface, advertises its member
    /// address, and runs under the machine's heart on port 7001.
    Node {
        /// The node's id.
        #[arg(long)]
        id: u64,
        /// The cluster's name (the same on every node).
        #[arg(long)]
        cluster: String,
        /// An initial member as ID=HOST[:PORT] (port 7000 if left out).
        /// Repeat for each; the same list on every node, also on nodes
        /// that join later.
        #[arg(long = "member", value_name = "ID=HOST")]
        members: Vec<String>,
        /// This node's HOST[:PORT], for a node that is not an initial member.
        #[arg(long)]
        addr: Option<String>,
        /// A public key file (`batonctl keys new`'s FILE.pub) trusted to
        /// sign task modules and node binaries. Repeatable.
        #[arg(long = "trusted-key", value_name = "FILE")]
        trusted_keys: Vec<PathBuf>,
        /// Where the node keeps its data on its machine.
        #[arg(long, default_value = "/var/lib/baton")]
        data_dir: PathBuf,
        /// Where its certificates are on its machine (ca.pem, node-ID.pem,
        /// node-ID.key, as `batonctl certs init` names them).
        #[arg(long, default_value = "/etc/baton/certs")]
        certs: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct DevArgs {
    /// How many nodes to start.
    #[arg(long, default_value_t = 3)]
    pub nodes: u64,
    /// Where the nodes keep configs, certificates, data and logs.
    #[arg(long, default_value = "baton-dev")]
    pub data_dir: PathBuf,
    /// The baton-node binary (default: beside batonctl, then PATH).
    #[arg(long)]
    pub node_binary: Option<PathBuf>,
    /// Where the example task modules are (scripts/build-tasks.sh builds
    /// them); their counter tasks start with the cluster. Default: the
    /// first that holds them of tasks/target/wasm32-wasip2/release under
    /// the current directory, `examples/` beside batonctl (a release
    /// archive), and the repository batonctl was built from.
    #[arg(long)]
    pub examples: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations_need_a_unit() {
        use super::parse_duration_ms;
        assert_eq!(parse_duration_ms("500ms"), Ok(500));
        assert_eq!(parse_duration_ms("30s"), Ok(30_000));
        assert_eq!(parse_duration_ms("5m"), Ok(300_000));
        assert_eq!(parse_duration_ms("1h"), Ok(3_600_000));
        for bad in ["", "5", "ms", "1d", "-1s", "1.5s"] {
            assert!(parse_duration_ms(bad).is_err(), "{bad}");
        }
    }
}
