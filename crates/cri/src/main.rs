//! `rune-cri run`: one pod with one container, run to completion through a CRI runtime as
//! kubelet would run it; prints the container's log and exits with its exit code.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use rune_cri::log::{Line, Stream};
use rune_cri::run::{RunOptions, Session};
use rune_cri::Client;

/// Exit status for failures of rune-cri itself (as `docker run` uses), so that they are told
/// apart from the container's own exit codes.
const FAILURE: u8 = 125;

#[derive(Parser)]
#[command(name = "rune-cri", version, about = "A kubelet-like CRI client")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one pod with one container to completion, print its log, exit with its exit code;
    /// the container and the pod are removed afterwards in every case.
    Run(RunArgs),
}

#[derive(Args)]
struct RunArgs {
    /// The CRI socket.
    #[arg(long, default_value = "unix:///run/containerd/containerd.sock")]
    endpoint: String,
    /// The runtime handler the pod asks for (a runtime in the CRI plugin's config).
    #[arg(long, default_value = "rune")]
    runtime_handler: String,
    /// The image, already on the node (nothing is pulled).
    #[arg(long)]
    image: String,
    /// An environment variable of the container (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_env)]
    env: Vec<(String, String)>,
    /// The pod's log directory, kept afterwards (the container's log is NAME/0.log in it);
    /// by default a temporary one, removed.
    #[arg(long, value_name = "DIR")]
    log_dir: Option<PathBuf>,
    /// Pod and container name.
    #[arg(long)]
    name: Option<String>,
    /// The container's working directory.
    #[arg(long, value_name = "DIR")]
    workdir: Option<String>,
    /// The pod's cgroup parent (kubelet passes its pod cgroup); by default the runtime's.
    #[arg(long, value_name = "PATH")]
    cgroup_parent: Option<String>,
    /// Seconds between the stop signal and SIGKILL when the container is stopped early.
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    stop_timeout: u64,
    /// Stop the container after this many seconds.
    #[arg(long, value_name = "SECONDS")]
    timeout: Option<u64>,
    /// The command and its arguments; by default the image's.
    #[arg(last = true, value_name = "CMD")]
    argv: Vec<String>,
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

/// Each line to our stream of the same name, flushed at once so that interleaving follows
/// the container's.
fn print_line(line: &Line) {
    let _ = match line.stream {
        Stream::Stdout => {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}", line.msg).and_then(|_| out.flush())
        }
        Stream::Stderr => {
            let mut err = std::io::stderr().lock();
            writeln!(err, "{}", line.msg).and_then(|_| err.flush())
        }
    };
}

/// The exit status of a shell for the first of SIGINT, SIGTERM or SIGHUP to arrive.
async fn interrupted() -> u8 {
    use tokio::signal::unix::{signal, SignalKind};
    let listen = |kind: SignalKind| signal(kind).ok();
    let (mut int, mut term, mut hup) = (
        listen(SignalKind::interrupt()),
        listen(SignalKind::terminate()),
        listen(SignalKind::hangup()),
    );
    async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
        match s {
            Some(s) => {
                s.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    }
    tokio::select! {
        _ = recv(&mut int) => 130,
        _ = recv(&mut term) => 143,
        _ = recv(&mut hup) => 129,
    }
}

enum Outcome {
    Done(rune_cri::Result<rune_cri::run::Exit>),
    Interrupted(u8),
}

async fn run(args: RunArgs) -> Result<u8, String> {
    let mut opts = RunOptions::new(&args.image, &[]);
    opts.argv = args.argv;
    opts.runtime_handler = args.runtime_handler;
    opts.env = args.env;
    opts.log_dir = args.log_dir;
    if let Some(name) = args.name {
        opts.name = name;
    }
    opts.working_dir = args.workdir.unwrap_or_default();
    opts.cgroup_parent = args.cgroup_parent.unwrap_or_default();
    opts.stop_grace = Duration::from_secs(args.stop_timeout);
    opts.timeout = args.timeout.map(Duration::from_secs);

    let client = Client::connect(&args.endpoint)
        .await
        .map_err(|e| e.to_string())?;
    let mut session = Session::new(client, opts);
    let mut out = print_line;
    let outcome = tokio::select! {
        r = session.run(&mut out) => Outcome::Done(r),
        code = interrupted() => Outcome::Interrupted(code),
    };
    let cleaned = session.cleanup().await;
    let cleanup_failed = |e: rune_cri::Error| format!("removing the pod: {e}");
    match outcome {
        Outcome::Done(Ok(exit)) => {
            cleaned.map_err(cleanup_failed)?;
            if exit.is_unusual() {
                eprintln!(
                    "rune-cri: container ended: {} {}",
                    exit.reason, exit.message
                );
            }
            // Exit codes of Linux processes fit in a byte; anything else is a runtime's oddity.
            Ok(u8::try_from(exit.code).unwrap_or(FAILURE))
        }
        Outcome::Done(Err(e)) => match cleaned {
            Ok(()) => Err(e.to_string()),
            Err(c) => Err(format!("{e} (then {})", cleanup_failed(c))),
        },
        Outcome::Interrupted(code) => {
            cleaned.map_err(cleanup_failed)?;
            eprintln!("rune-cri: interrupted; the container and the pod are removed");
            Ok(code)
        }
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            eprintln!("rune-cri: {}", first.trim_start_matches("error: "));
            return ExitCode::from(FAILURE);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rune-cri: cannot start the async runtime: {e}");
            return ExitCode::from(FAILURE);
        }
    };
    let Command::Run(args) = cli.command;
    match runtime.block_on(run(args)) {
        Ok(code) => ExitCode::from(code),
        Err(msg) => {
            eprintln!("rune-cri: {msg}");
            ExitCode::from(FAILURE)
        }
    }
}
