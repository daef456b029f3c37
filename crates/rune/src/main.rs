//! `rune`: a runc-compatible OCI runtime. The binary only parses the command line, sets up
//! logging and maps the outcome to an exit status; each command lives in `commands/`.

mod bundle;
mod cli;
mod commands;
mod executor;
mod foreground;
mod logging;
mod state;
mod tty;

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::Parser;

fn main() -> ExitCode {
    restore_sigpipe();
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return usage_error(err),
    };
    let log = match logging::init(&cli.global) {
        Ok(log) => log,
        Err(err) => {
            eprintln!("rune: {}", logging::one_line(&err));
            return ExitCode::FAILURE;
        }
    };

    match commands::dispatch(cli) {
        Ok(status) => ExitCode::from(status),
        Err(err) => {
            log.report_error(&err);
            ExitCode::FAILURE
        }
    }
}

/// Rust starts programs with SIGPIPE ignored, and an ignored signal survives execve: every
/// container process would inherit it. Restore the default, which also ends rune quietly when
/// its output pipe closes, as runc does.
fn restore_sigpipe() {
    // SAFETY: called first thing in main, before any thread exists; SIG_DFL is always valid.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Help and version print as clap formats them; a usage error is one line, like every other
/// rune error, so that callers logging stderr get the whole message.
fn usage_error(err: clap::Error) -> ExitCode {
    match err.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => err.exit(),
        _ => {
            let text = err.render().to_string();
            let first = text.lines().next().unwrap_or_default();
            let message = first.strip_prefix("error: ").unwrap_or(first);
            eprintln!("rune: {message} (see rune --help)");
            ExitCode::from(2)
        }
    }
}
