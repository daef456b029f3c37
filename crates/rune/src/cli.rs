//! runc 1.1's command line. The per-command flags come from `liboci-cli`; rune adds the global
//! flags runc has and liboci-cli lacks, and a `kill` whose signal defaults to SIGTERM as in runc.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const LONG_VERSION: &str = concat!(
    "version ",
    env!("CARGO_PKG_VERSION"),
    "\ncommit: ",
    env!("RUNE_GIT_COMMIT"),
    "\nspec: 1.0.2-dev",
    "\nlibcontainer: 0.7.0"
);

#[derive(Parser, Debug)]
#[command(
    name = "rune",
    about = "Run OCI containers, and enclave containers, with a runc-compatible command line",
    version = LONG_VERSION,
    disable_help_subcommand = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalOpts,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug)]
pub struct GlobalOpts {
    /// Root directory for the state of containers
    #[arg(long, default_value = "/run/rune")]
    pub root: PathBuf,

    /// Write logs to this file instead of stderr
    #[arg(long)]
    pub log: Option<PathBuf>,

    /// Log format
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log debug detail
    #[arg(long)]
    pub debug: bool,

    /// Manage cgroups through systemd
    #[arg(long)]
    pub systemd_cgroup: bool,

    /// Rootless mode: true, false or auto (accepted for runc compatibility)
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub rootless: Option<String>,

    /// Path to criu (accepted for runc compatibility; checkpointing is not supported)
    #[arg(long, hide = true)]
    pub criu: Option<PathBuf>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a container
    Create(liboci_cli::Create),
    /// Start the user process of a created container
    Start(liboci_cli::Start),
    /// Create and start a container
    Run(liboci_cli::Run),
    /// Output the state of a container
    State(liboci_cli::State),
    /// Send a signal to the container's init process
    Kill(Kill),
    /// Delete a container and the resources it holds
    Delete(liboci_cli::Delete),
    /// List the containers under --root
    List(liboci_cli::List),
    /// Display the processes running inside a container
    Ps(liboci_cli::Ps),
    /// Run a new process inside a container
    Exec(liboci_cli::Exec),
    /// Suspend all processes in a container
    Pause(liboci_cli::Pause),
    /// Resume all processes in a paused container
    Resume(liboci_cli::Resume),
    /// Display container statistics
    Events(liboci_cli::Events),
    /// Update the resource limits of a container
    Update(liboci_cli::Update),
    /// Create a new specification file
    Spec(Spec),
    /// Show the features this runtime implements
    Features(liboci_cli::Features),
}

#[derive(Args, Debug)]
pub struct Kill {
    /// Send the signal to all processes in the container
    #[arg(short, long)]
    pub all: bool,

    #[arg(value_parser = clap::builder::NonEmptyStringValueParser::new(), required = true)]
    pub container_id: String,

    /// Signal name (KILL, SIGKILL) or number
    #[arg(default_value = "SIGTERM")]
    pub signal: String,
}

#[derive(Args, Debug)]
pub struct Spec {
    /// Directory to write config.json in
    #[arg(long, short)]
    pub bundle: Option<PathBuf>,

    /// A template for a rootless container
    #[arg(long)]
    pub rootless: bool,

    /// A template for an enclave container (settings as `enclave.*` annotations)
    #[arg(long)]
    pub enclave: bool,

    /// Enclave type of the template: software, kvm, intelSgx, AwsNitroEnclaves, Jailhouse
    #[arg(long, default_value = "software", requires = "enclave")]
    pub enclave_type: String,

    /// Enclave runtime (PAL) of the template, a host path
    #[arg(long, requires = "enclave")]
    pub enclave_runtime_path: Option<PathBuf>,
}
