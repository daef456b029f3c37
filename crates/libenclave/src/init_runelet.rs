//! The init-runelet: an enclave container's init process. It does everything runc's init does,
//! then, instead of `execve`, drives the enclave runtime (PAL) for the container's whole life:
//! `pal_get_version` and `pal_init` before `create` returns, the workload through
//! `pal_create_process` + `pal_exec` at `start`, `pal_destroy` when the workload exits. It also
//! serves `rune exec` (see `agent`), forwards signals to the enclave and, as PID 1, reaps orphans.

use std::collections::HashSet;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;

use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};
use nix::sys::signal::Signal;
use oci_spec::runtime::Spec;
use pal::{Pal, PalLibrary};

use crate::agent;
use crate::config::EnclaveConfig;
use crate::error::EnclaveError;
use crate::process;
use crate::signals::SignalPipe;

/// The enclave as the init-runelet's threads share it.
pub(crate) struct Enclave {
    pub pal: Pal,
    pub started: AtomicBool,
    /// Processes the PAL created; the reaper leaves them to the PAL's own `waitpid`.
    pub managed: Mutex<HashSet<i32>>,
}

static ENCLAVE: OnceLock<Arc<Enclave>> = OnceLock::new();

/// An fd rune held on the host, identified by what it refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostFd {
    fd: RawFd,
    dev: u64,
    ino: u64,
}

impl HostFd {
    pub fn of(fd: RawFd) -> Option<Self> {
        if fd < 0 {
            return None;
        }
        let stat = nix::sys::stat::fstat(fd).ok()?;
        Some(Self {
            fd,
            dev: stat.st_dev,
            ino: stat.st_ino,
        })
    }

    /// Closes the fd if it still refers to the same file.
    fn close_if_same(self) {
        if HostFd::of(self.fd) == Some(self) {
            let _ = nix::unistd::close(self.fd);
        }
    }
}

/// libcontainer's executor for enclave containers. It is built in rune on the host, where the
/// PAL is loaded, and cloned into the container's init with that library already mapped:
/// "loaded in the host, launched in the container".
#[derive(Clone)]
pub struct InitRunelet {
    library: Arc<PalLibrary>,
    config: EnclaveConfig,
    agent_listener: RawFd,
    host_fds: Arc<Vec<HostFd>>,
    pal_fds: Arc<Vec<HostFd>>,
}

impl InitRunelet {
    /// `host_fds` are the fds rune held before it loaded the PAL: host files the container must
    /// not reach through `/proc/1/fd`. They are closed in the container before the PAL runs.
    /// `pal_fds` are those the PAL's initialisers opened when it was loaded; they stay.
    pub fn new(
        library: Arc<PalLibrary>,
        config: EnclaveConfig,
        agent_listener: RawFd,
        host_fds: Vec<HostFd>,
        pal_fds: Vec<HostFd>,
    ) -> Self {
        Self {
            library,
            config,
            agent_listener,
            host_fds: Arc::new(host_fds),
            pal_fds: Arc::new(pal_fds),
        }
    }

    fn initialise(&self) -> Result<(), EnclaveError> {
        let _ = nix::sys::prctl::set_name(c"init-runelet");
        for &host_fd in self.host_fds.iter() {
            if host_fd.fd > 2 && host_fd.fd != self.agent_listener {
                host_fd.close_if_same();
            }
        }
        // libcontainer's own fds that it closes by `execve` include handles on the host's
        // /proc; the init-runelet never execs. Close every file and directory fd except what
        // the PAL opened when it was loaded. Sockets and pipes stay: libcontainer still needs
        // its channels until `start`.
        let keep: Vec<RawFd> = self.pal_fds.iter().map(|f| f.fd).collect();
        crate::fds::close_files_except(&keep);
        let signals = SignalPipe::install()?;

        let pal = self.library.negotiate()?;
        let (result, said) = crate::fds::capture_stderr(|| {
            pal.init(
                &self.config.runtime_args,
                &self.config.runtime_loglevel,
                None,
            )
        });
        if let Err(err) = result {
            // The PAL's own words say why; the PAL API only carries an errno.
            let reason = said
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            return Err(match reason {
                "" => err.into(),
                reason => EnclaveError::PalSaid {
                    error: err,
                    said: reason.trim().to_string(),
                },
            });
        }
        if !said.is_empty() {
            eprint!("{said}");
        }
        tracing::debug!(pal = %pal.path().display(), version = pal.version(), "enclave initialised");

        let enclave = Arc::new(Enclave {
            pal,
            started: AtomicBool::new(false),
            managed: Mutex::new(HashSet::new()),
        });
        let _ = ENCLAVE.set(enclave.clone());

        let forwarder = enclave.clone();
        thread::spawn(move || forward_signals(&forwarder, signals));
        let listener = self.agent_listener;
        thread::spawn(move || agent::serve(&enclave, listener));
        Ok(())
    }
}

impl Executor for InitRunelet {
    fn validate(&self, _spec: &Spec) -> Result<(), ExecutorValidationError> {
        // libcontainer calls this in the container's init after every other setup step and
        // before `create` returns, which is where upstream builds the enclave too.
        self.initialise()
            .map_err(|e| ExecutorValidationError::ArgValidationError(e.to_string()))
    }

    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        let enclave = ENCLAVE
            .get()
            .ok_or_else(|| ExecutorError::Other("the enclave was not initialised".into()))?;
        let (argv, env) = process::argv_env(spec);
        enclave.started.store(true, Ordering::SeqCst);

        let status = match run_workload(enclave, argv, env) {
            Ok(status) => status,
            Err(err) => {
                eprintln!("rune: {err}");
                127
            }
        };
        if let Err(err) = enclave.pal.destroy() {
            eprintln!("rune: {err}");
        }
        std::process::exit(status & 0xff)
    }
}

/// Runs one process in the enclave with the given stdio and waits for it.
pub(crate) fn run_in_enclave(
    enclave: &Enclave,
    argv: Vec<String>,
    env: Vec<String>,
    stdio: [RawFd; 3],
    on_start: impl FnOnce(Option<i32>),
) -> Result<i32, EnclaveError> {
    let argv = process::resolve_argv0(argv, &env);
    if enclave.pal.version() < 2 {
        on_start(None);
        return Ok(enclave.pal.exec(&argv, &env, stdio)?);
    }
    let pid = {
        let mut managed = lock(&enclave.managed);
        let pid = enclave.pal.create_process(&argv, &env, stdio)?;
        managed.insert(pid);
        pid
    };
    on_start(Some(pid));
    let status = enclave.pal.wait(pid);
    lock(&enclave.managed).remove(&pid);
    Ok(status?)
}

fn run_workload(
    enclave: &Enclave,
    argv: Vec<String>,
    env: Vec<String>,
) -> Result<i32, EnclaveError> {
    run_in_enclave(enclave, argv, env, [0, 1, 2], |_| {})
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn forward_signals(enclave: &Enclave, mut signals: SignalPipe) {
    while let Some(signal) = signals.next() {
        match signal {
            Signal::SIGCHLD => reap_orphans(enclave),
            // Not intents for the workload: a broken pipe of rune's own, a Go-style preemption.
            Signal::SIGPIPE | Signal::SIGURG => {}
            _ if enclave.started.load(Ordering::SeqCst) => {
                if let Err(err) = enclave.pal.kill(-1, signal as i32) {
                    tracing::warn!("forwarding {signal}: {err}");
                }
            }
            Signal::SIGTERM | Signal::SIGINT | Signal::SIGHUP | Signal::SIGQUIT => {
                // Created but never started: the enclave exists, nothing runs in it. Tear it
                // down so that deleting the container destroys the enclave.
                if let Err(err) = enclave.pal.destroy() {
                    eprintln!("rune: {err}");
                }
                std::process::exit(128 + signal as i32);
            }
            _ => {}
        }
    }
}

/// As PID 1 the init-runelet inherits every orphan in the container; reap those zombies, but
/// never a process the PAL created and will `waitpid` for itself.
fn reap_orphans(enclave: &Enclave) {
    if enclave.pal.version() < 2 && enclave.started.load(Ordering::SeqCst) {
        // A v1 PAL's children are unknown to rune; reaping could steal their status.
        return;
    }
    let managed = lock(&enclave.managed);
    for pid in process::zombie_children() {
        if !managed.contains(&pid) {
            let _ = nix::sys::wait::waitpid(
                nix::unistd::Pid::from_raw(pid),
                Some(nix::sys::wait::WaitPidFlag::WNOHANG),
            );
        }
    }
}
