//! Running the programs a carrier drives (`rune-enclave`, `occlum`, `sgx_sign`).
//!
//! They run through the shim's reaper like every other command: the shim is a subreaper whose
//! reaper thread collects every exited child, so `std::process::Child::wait` would race it.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use super::CarrierError;
use crate::reaper::Reaper;
use crate::runtime;

/// Finds and runs carrier tools.
#[derive(Clone, Default)]
pub struct Tools {
    reaper: Option<Arc<Reaper>>,
    /// Unit tests: where this workspace's `rune-enclave` was built. A test binary lives in
    /// `target/debug/deps`, not beside the tools, and changing PATH would race other tests.
    #[cfg(test)]
    dir: Option<PathBuf>,
}

impl Tools {
    /// Tools whose exits are collected by `reaper` (None: plain waits, for unit tests).
    pub fn new(reaper: Option<Arc<Reaper>>) -> Tools {
        Tools {
            reaper,
            #[cfg(test)]
            dir: None,
        }
    }

    /// Unit tests: tools found in `dir` first.
    #[cfg(test)]
    pub fn with_dir(dir: PathBuf) -> Tools {
        Tools {
            reaper: None,
            dir: Some(dir),
        }
    }

    /// A program shipped with rune (`rune-enclave`): beside the shim, else on PATH.
    pub fn find(&self, name: &str) -> PathBuf {
        #[cfg(test)]
        if let Some(found) = self
            .dir
            .as_ref()
            .map(|d| d.join(name))
            .filter(|p| p.is_file())
        {
            return found;
        }
        runtime::find_tool(name)
    }

    /// Runs `cmd` to completion with stdin closed; its stdout when it exits 0. Otherwise the
    /// error is `<what>: <last line the tool printed on stderr>`, which is what an operator
    /// needs to see in `ctr`'s or kubelet's message.
    pub fn run(&self, what: &str, cmd: &mut Command) -> Result<String, CarrierError> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        log::debug!("{what}: running {cmd:?}");
        let program = cmd.get_program().to_string_lossy().into_owned();
        let cannot = |e: std::io::Error| CarrierError::Tool {
            what: what.to_string(),
            message: format!("cannot run {program}: {e}"),
        };
        let (status, out, err) = match &self.reaper {
            Some(reaper) => {
                let mut running = reaper.spawn(cmd).map_err(cannot)?;
                let (out, err) = runtime::read_both(running.stdout.take(), running.stderr.take());
                (running.wait(), out, err)
            }
            None => {
                let mut child = cmd.spawn().map_err(cannot)?;
                let (out, err) = runtime::read_both(child.stdout.take(), child.stderr.take());
                let status = child.wait().map(crate::reaper::status_code).unwrap_or(-1);
                (status, out, err)
            }
        };
        let err = String::from_utf8_lossy(&err);
        if !err.trim().is_empty() {
            log::debug!("{what}: stderr: {}", err.trim());
        }
        if status == 0 {
            return Ok(String::from_utf8_lossy(&out).into_owned());
        }
        let detail = err
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .map(|l| match l.split_once(": error: ") {
                // `rune-enclave: error: <message>`
                Some((_, message)) => message.to_string(),
                None => l.trim_start_matches("Error: ").to_string(),
            })
            .unwrap_or_else(|| format!("{program} exited with status {status}"));
        Err(CarrierError::Tool {
            what: what.to_string(),
            message: detail,
        })
    }
}

/// What identifies a tool in a conversion cache key: its path, size and modification time,
/// which an upgrade changes (hashing every tool at every Create would cost more than it
/// saves).
pub fn identity(path: &Path) -> String {
    match std::fs::metadata(path) {
        Ok(m) => format!(
            "{}:{}:{}",
            path.display(),
            m.len(),
            m.mtime() as i128 * 1_000_000_000 + i128::from(m.mtime_nsec())
        ),
        Err(_) => path.display().to_string(),
    }
}

/// The value of the first `<key>: <value>` line of a tool's output.
pub fn field(output: &str, key: &str) -> Option<String> {
    output.lines().find_map(|line| {
        line.strip_prefix(key)
            .and_then(|rest| rest.strip_prefix(':'))
            .map(|v| v.trim().to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_fields_and_failures() {
        let out = "signature: /x\nmeasurement: ab12\nsigner: cd34\n";
        assert_eq!(field(out, "measurement").as_deref(), Some("ab12"));
        assert_eq!(field(out, "signer").as_deref(), Some("cd34"));
        assert_eq!(field(out, "nothing"), None);

        let tools = Tools::default();
        let ok = tools
            .run(
                "echo",
                Command::new("sh").args(["-c", "echo out; echo noise >&2"]),
            )
            .unwrap();
        assert_eq!(ok, "out\n");
        let err = tools
            .run(
                "failing step",
                Command::new("sh")
                    .args(["-c", "echo first >&2; echo 'Error: the reason' >&2; exit 3"]),
            )
            .unwrap_err();
        assert_eq!(err.to_string(), "failing step: the reason");
        let err = tools
            .run(
                "build",
                Command::new("sh").args(["-c", "echo 'rune-enclave: error: bad: x' >&2; exit 1"]),
            )
            .unwrap_err();
        assert_eq!(err.to_string(), "build: bad: x");
        let err = tools
            .run("missing", &mut Command::new("/nonexistent/tool"))
            .unwrap_err();
        assert!(
            err.to_string().contains("cannot run /nonexistent/tool"),
            "{err}"
        );
    }
}
