//! Messages on stderr and the `pal_init` args.
//!
//! Every line starts with `software enclave: `. Failures are always written (one line each):
//! rune passes the PAL's stderr on to the user, so that line is the explanation of the
//! negative errno. Warnings, notes and debug lines follow the log level.
//!
//! The args (`enclave.runtime.args`) come from the container's configuration, i.e. from whoever
//! wrote it: they only ever tune logging, never anything that matters for security.

use std::io::Write;
use std::os::fd::RawFd;

/// Prefix of every line the PAL writes.
pub(crate) const PREFIX: &str = "software enclave: ";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Level {
    Off,
    Error,
    Warn,
    Info,
    Debug,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Logger {
    level: Level,
}

impl Logger {
    /// From rune's log level (`trace`, `debug`, `info`, `warning`, `error`, `fatal`, `panic`,
    /// `off`) and the args; warns about what it does not understand.
    pub fn new(log_level: &str, args: &str) -> Logger {
        let mut level = match log_level.trim().to_ascii_lowercase().as_str() {
            "trace" | "debug" => Level::Debug,
            "" | "info" => Level::Info,
            "warn" | "warning" => Level::Warn,
            "error" | "fatal" | "panic" => Level::Error,
            "off" => Level::Off,
            _ => Level::Info,
        };
        let mut warnings = Vec::new();
        for token in args.split_whitespace() {
            let (key, value) = match token.split_once('=') {
                Some((key, value)) => (key, Some(value)),
                None => (token, None),
            };
            match (key, value) {
                ("debug-log", None | Some("1" | "true" | "yes" | "on")) => level = Level::Debug,
                ("debug-log", Some("0" | "false" | "no" | "off")) => {}
                ("debug-log", Some(other)) => warnings.push(format!(
                    "args: debug-log={other:?} is not a boolean; ignored"
                )),
                _ => warnings.push(format!("args: unknown argument {token:?} ignored")),
            }
        }
        let logger = Logger { level };
        for warning in warnings {
            logger.warn(&warning);
        }
        logger
    }

    pub fn enabled(&self, level: Level) -> bool {
        level != Level::Off && level <= self.level
    }

    /// A failure: written whatever the level (see the module docs).
    pub fn error(&self, message: &str) {
        write_line(libc::STDERR_FILENO, message);
    }

    pub fn warn(&self, message: &str) {
        if self.enabled(Level::Warn) {
            write_line(libc::STDERR_FILENO, message);
        }
    }

    pub fn debug(&self, message: &str) {
        if self.enabled(Level::Debug) {
            write_line(libc::STDERR_FILENO, message);
        }
    }
}

/// Writes `software enclave: <message>\n` to `fd` in one `write` (best effort).
pub(crate) fn write_line(fd: RawFd, message: &str) {
    let line = format!("{PREFIX}{}\n", message.replace('\n', " "));
    if fd == libc::STDERR_FILENO {
        let _ = std::io::stderr().write_all(line.as_bytes());
        return;
    }
    let mut bytes = line.as_bytes();
    while !bytes.is_empty() {
        // SAFETY: `bytes` is valid for reads of its length; a bad fd only makes write fail.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        match n {
            n if n > 0 => bytes = &bytes[n as usize..],
            n if n < 0
                && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted => {}
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_args() {
        assert_eq!(Logger::new("info", "").level, Level::Info);
        assert_eq!(Logger::new("trace", "").level, Level::Debug);
        assert_eq!(Logger::new("error", "debug-log").level, Level::Debug);
        assert_eq!(Logger::new("off", "debug-log=false").level, Level::Off);
        assert_eq!(Logger::new("warning", "x=1 y").level, Level::Warn);
        assert!(!Logger::new("off", "").enabled(Level::Error));
    }
}
