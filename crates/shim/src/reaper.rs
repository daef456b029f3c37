//! Child reaping. The shim is a child subreaper: container processes whose parent (`rune create`,
//! `rune exec`) exits are re-parented to it. One thread reaps every child on SIGCHLD; the exit of
//! a command the shim ran itself (a `rune` invocation) goes to whoever waits for it, every other
//! exit (container processes, anything re-parented) is handed to the exit handler.
//!
//! Commands are therefore never waited for with `std::process::Child::wait` (the reaper may have
//! reaped them already); [`Reaper::spawn`] registers the pid while holding the lock the reaper
//! needs to dispatch, so no exit can be dispatched before its waiter is known.

use std::collections::HashMap;
use std::io;
use std::process::{ChildStderr, ChildStdin, ChildStdout, Command, ExitStatus};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// An exit of a process that is not one of the shim's own commands.
#[derive(Debug, Clone, Copy)]
pub struct Exit {
    pub pid: i32,
    /// Exit code, or 128 + signal number.
    pub status: i32,
    pub at: SystemTime,
}

#[derive(Default)]
struct State {
    /// Commands being run: pid -> exit status once reaped.
    commands: HashMap<i32, Option<i32>>,
}

pub struct Reaper {
    state: Mutex<State>,
    exited: Condvar,
    exits: Mutex<Option<Sender<Exit>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Exit code as a shell reports it: the code, or 128 + the signal.
fn code_of(ws: WaitStatus) -> Option<(i32, i32)> {
    match ws {
        WaitStatus::Exited(pid, code) => Some((pid.as_raw(), code)),
        WaitStatus::Signaled(pid, sig, _) => Some((pid.as_raw(), 128 + sig as i32)),
        _ => None,
    }
}

impl Reaper {
    /// Creates the reaper and starts its thread; exits of processes that are not commands go to
    /// `exits`.
    pub fn start(exits: Sender<Exit>) -> io::Result<Arc<Reaper>> {
        let reaper = Arc::new(Reaper {
            state: Mutex::new(State::default()),
            exited: Condvar::new(),
            exits: Mutex::new(Some(exits)),
        });
        let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGCHLD])?;
        let r = Arc::clone(&reaper);
        std::thread::Builder::new()
            .name("reaper".into())
            .stack_size(128 * 1024)
            .spawn(move || {
                // A child may have exited before the handler was installed.
                r.reap_all();
                for _ in signals.forever() {
                    r.reap_all();
                }
            })?;
        Ok(reaper)
    }

    fn reap_all(&self) {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
                Ok(ws) => {
                    if let Some((pid, status)) = code_of(ws) {
                        self.dispatch(pid, status);
                    }
                }
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    log::warn!("waitpid: {e}");
                    return;
                }
            }
        }
    }

    fn dispatch(&self, pid: i32, status: i32) {
        let at = SystemTime::now();
        let mut state = lock(&self.state);
        if let Some(slot) = state.commands.get_mut(&pid) {
            *slot = Some(status);
            drop(state);
            self.exited.notify_all();
            return;
        }
        drop(state);
        log::debug!("process {pid} exited with status {status}");
        if let Some(tx) = lock(&self.exits).as_ref() {
            let _ = tx.send(Exit { pid, status, at });
        }
    }

    /// Spawns `cmd`; its exit is kept for [`Running::wait`].
    pub fn spawn(self: &Arc<Self>, cmd: &mut Command) -> io::Result<Running> {
        let mut state = lock(&self.state);
        let mut child = cmd.spawn()?;
        let pid = child.id() as i32;
        state.commands.insert(pid, None);
        drop(state);
        // The Child itself is dropped, which neither kills nor waits for the process.
        Ok(Running {
            reaper: Arc::clone(self),
            pid,
            status: None,
            stdin: child.stdin.take(),
            stdout: child.stdout.take(),
            stderr: child.stderr.take(),
        })
    }
}

/// A command started by [`Reaper::spawn`].
pub struct Running {
    reaper: Arc<Reaper>,
    pub pid: i32,
    status: Option<i32>,
    /// The pipes asked for with `Stdio::piped()`.
    pub stdin: Option<ChildStdin>,
    pub stdout: Option<ChildStdout>,
    pub stderr: Option<ChildStderr>,
}

impl Running {
    /// The exit status if the command has exited.
    pub fn try_wait(&mut self) -> Option<i32> {
        if self.status.is_none() {
            let mut state = lock(&self.reaper.state);
            if let Some(Some(s)) = state.commands.get(&self.pid) {
                self.status = Some(*s);
                state.commands.remove(&self.pid);
            }
        }
        self.status
    }

    /// Waits for the command to exit; its exit status (128 + signal when killed).
    pub fn wait(mut self) -> i32 {
        self.wait_timeout(None).unwrap_or(-1)
    }

    /// Waits up to `timeout` (forever for None).
    pub fn wait_timeout(&mut self, timeout: Option<Duration>) -> Option<i32> {
        if let Some(s) = self.status {
            return Some(s);
        }
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut state = lock(&self.reaper.state);
        loop {
            if let Some(Some(s)) = state.commands.get(&self.pid) {
                let s = *s;
                state.commands.remove(&self.pid);
                self.status = Some(s);
                return Some(s);
            }
            match deadline {
                None => {
                    state = self
                        .reaper
                        .exited
                        .wait(state)
                        .unwrap_or_else(|e| e.into_inner());
                }
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return None;
                    }
                    state = self
                        .reaper
                        .exited
                        .wait_timeout(state, d - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.status.is_none() {
            // Nobody will wait: let the exit go to the general handler, which drops it.
            lock(&self.reaper.state).commands.remove(&self.pid);
        }
    }
}

/// Turns a std exit status into a shell-style code (used where std reaps, e.g. `delete`).
pub fn status_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(-1)
}
