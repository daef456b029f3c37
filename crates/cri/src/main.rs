//! `rune-cri run`: one pod with one container, run to completion through a CRI runtime as
//! kubelet would run it; prints the container's log and exits with its exit code.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use rune_cri::log::{Line, Stream};
use rune_cri::run::{RunOptions, Session, Sink};
use rune_cri::{Client, ExecOutput};

/// Exit status for failures of rune-cri itself, usage errors included (as `docker run` uses),
/// so that they are told apart from the container's own exit codes.
const FAILURE: u8 = 125;

/// Exit status when `--timeout` ran out (as timeout(1) uses).
const TIMED_OUT: u8 = 124;

const RUN_HELP: &str = "\
Exit status: the container's exit code; 124 when --timeout ran out; 125 when rune-cri
itself failed (wrong arguments, the runtime refused a call, the image is not on the node,
...); 128+N when signal N (SIGINT, SIGTERM, SIGHUP) interrupted the run. The pod is removed
in every case.

Examples (containerd's CRI plugin with a runtime handler `rune`):
  rune-cri run --endpoint unix:///run/containerd/containerd.sock --runtime-handler rune \\
      --image docker.io/library/busybox:latest --env RUNE_CARRIER=software \\
      -- sh -c 'echo hello from a software enclave'
  rune-cri run --image docker.io/library/busybox:latest --exec 'cat /etc/hostname' \\
      -- sleep 2";

#[derive(Parser)]
// Bare `rune-cri` shows the help, so that the subcommands are listed rather than an error
// about a missing one.
#[command(
    name = "rune-cri",
    version,
    about = "A kubelet-like CRI client",
    arg_required_else_help = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one pod with one container to completion, print its log, exit with its exit code;
    /// the container and the pod are removed afterwards in every case.
    ///
    /// As kubelet does: ImageStatus (the image must already be on the node: nothing is
    /// pulled), RunPodSandbox on the host's network, CreateContainer and StartContainer, the
    /// container's CRI log file read as it grows (its stdout to stdout, its stderr to stderr),
    /// ContainerStatus until it has exited, then StopContainer, RemoveContainer,
    /// StopPodSandbox and RemovePodSandbox.
    #[command(after_help = RUN_HELP)]
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
    /// Stop the container and fail (status 124) when it has not exited after this many
    /// seconds (execs included).
    #[arg(long, value_name = "SECONDS")]
    timeout: Option<u64>,
    /// How long one CRI call may take (kubelet's --runtime-request-timeout); a carrier's
    /// conversion of the image happens within StartContainer.
    #[arg(long, value_name = "SECONDS", default_value_t = 120)]
    request_timeout: u64,
    /// Run CMD in the container once it has started (ExecSync), print its output; CMD is split
    /// at whitespace (no shell, no quoting). Repeatable: run in order. An exec that cannot run
    /// fails the run; its exit code is only reported.
    #[arg(long = "exec", value_name = "CMD", value_parser = parse_exec)]
    execs: Vec<Vec<String>>,
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

fn parse_exec(s: &str) -> Result<Vec<String>, String> {
    let argv: Vec<String> = s.split_whitespace().map(str::to_string).collect();
    if argv.is_empty() {
        return Err("an empty command".into());
    }
    Ok(argv)
}

/// Prints to our stdout and stderr, flushed at once so that interleaving follows the
/// container's.
struct Terminal;

impl Terminal {
    fn write(stream: Stream, bytes: &[u8]) {
        // A closed stdout (a pipe whose reader left) must not stop the run or its clean-up.
        let _ = match stream {
            Stream::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(bytes).and_then(|_| out.flush())
            }
            Stream::Stderr => {
                let mut err = std::io::stderr().lock();
                err.write_all(bytes).and_then(|_| err.flush())
            }
        };
    }
}

impl Sink for Terminal {
    /// Each line to our stream of the same name.
    fn line(&mut self, line: &Line) {
        let mut text = line.msg.clone().into_bytes();
        text.push(b'\n');
        Terminal::write(line.stream, &text);
    }

    fn exec(&mut self, argv: &[String], output: &ExecOutput) {
        Terminal::write(Stream::Stdout, &output.stdout);
        Terminal::write(Stream::Stderr, &output.stderr);
        if output.exit_code != 0 {
            let note = format!(
                "rune-cri: exec {:?} exited with status {}\n",
                argv.join(" "),
                output.exit_code
            );
            Terminal::write(Stream::Stderr, note.as_bytes());
        }
    }
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
    opts.execs = args.execs;

    let mut client = Client::connect(&args.endpoint)
        .await
        .map_err(|e| e.to_string())?;
    client.set_request_timeout(Duration::from_secs(args.request_timeout));
    let mut session = Session::new(client, opts);
    let mut terminal = Terminal;
    let outcome = tokio::select! {
        r = session.run(&mut terminal) => Outcome::Done(r),
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
        Outcome::Done(Err(e @ rune_cri::Error::Timeout { .. })) => {
            cleaned.map_err(cleanup_failed)?;
            eprintln!("rune-cri: {e}; the container was stopped and the pod removed");
            Ok(TIMED_OUT)
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
        Err(e) => {
            // clap's text whole (it names what is missing and ends with the usage), to stdout
            // for --help and --version, to stderr for the rest. Only the status is ours: a
            // usage error is a failure of rune-cri (125), never a container's exit code
            // (clap's 2).
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(FAILURE)
            } else {
                ExitCode::SUCCESS
            };
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
