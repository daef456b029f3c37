//! The PAL API v3 calls (`pal::EnclaveRuntime`) of the software enclave.

use std::collections::HashSet;
use std::io;
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use enclave_image::{digest_file, Manifest, Verified};
use pal::EnclaveRuntime;

use crate::host;
use crate::image::{self, compose_env, host_path, resolve_in_root, Refusal};
use crate::log::{write_line, Logger};
use crate::report::{report_data, ReportBody, REPORT_LEN};
use crate::sandbox::{
    landlock_support, spawn, ExecPlan, LandlockPlan, LandlockSupport, Limits, SeccompPrograms,
};

/// An admitted software enclave: its verified image and the processes it runs.
pub(crate) struct SoftwareEnclave {
    log: Logger,
    root: PathBuf,
    manifest: Manifest,
    verified: Verified,
    report_key: [u8; host::REPORT_KEY_LEN],
    seccomp: SeccompPrograms,
    /// `None` when the kernel has no Landlock.
    landlock: Option<LandlockPlan>,
    limits: Limits,
    /// Processes started and not reaped yet.
    children: Mutex<HashSet<i32>>,
}

impl SoftwareEnclave {
    fn children(&self) -> MutexGuard<'_, HashSet<i32>> {
        // A poisoned lock only means a panic elsewhere; the set stays consistent.
        self.children.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn admit(log: Logger, prebuilt: Option<(RawFd, u64)>) -> Result<SoftwareEnclave, Refusal> {
        if prebuilt.is_some() {
            return Err(Refusal::new(
                libc::EINVAL,
                "a pre-built enclave cannot be adopted: software enclaves have no enclave device",
            ));
        }
        let host = host::state().ok_or_else(|| {
            Refusal::new(
                libc::EINVAL,
                "the node's policy and report key were not captured when the PAL was loaded \
                 (liberpal-software must be loaded as a shared object, by dlopen)",
            )
        })?;
        let from_host = |e: &host::HostError| Refusal::new(e.errno, e.message.clone());
        let policy = host.policy.as_ref().map_err(from_host)?;
        let report_key = *host.report_key.as_ref().map_err(from_host)?;
        let root = host.root.as_ref().map_err(from_host)?.clone();

        // This process now holds the report key: keep other processes of the same user (the
        // enclave's own, if Landlock is missing) from reading it through /proc/<pid>/mem or
        // ptrace, and from a core dump.
        // SAFETY: prctl with integer arguments.
        if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
            log.warn(&format!(
                "cannot make the runtime process non-dumpable: {}",
                io::Error::last_os_error()
            ));
        }

        let (manifest, verified) = image::load_and_admit(&root, policy)?;
        let seccomp = SeccompPrograms::build().map_err(|e| Refusal::new(libc::ENOSYS, e))?;
        let landlock = match landlock_support() {
            LandlockSupport::Available(abi) => {
                let (plan, missing) = LandlockPlan::new(
                    &root,
                    manifest.trusted_files.keys(),
                    &manifest.writable_paths,
                )
                .map_err(|e| Refusal::new(libc::EACCES, e))?;
                for path in missing {
                    log.warn(&format!(
                        "writable path {path} does not exist; the enclave cannot create it"
                    ));
                }
                log.debug(&format!("Landlock ABI {abi}"));
                Some(plan)
            }
            LandlockSupport::Unavailable => {
                log.warn(
                    "note: this kernel has no Landlock; the file access of enclave processes \
                     is not restricted",
                );
                None
            }
        };
        let limits = Limits {
            address_space: manifest.memory_size,
            tasks: u64::from(manifest.max_processes)
                .saturating_mul(u64::from(manifest.max_threads)),
        };
        log.debug(&format!(
            "admitted enclave {} signed by {} ({} trusted files verified{})",
            hex::encode(verified.measurement),
            hex::encode(verified.signer),
            manifest.trusted_files.len(),
            if verified.debug { ", debug" } else { "" }
        ));
        Ok(SoftwareEnclave {
            log,
            root,
            manifest,
            verified,
            report_key,
            seccomp,
            landlock,
            limits,
            children: Mutex::new(HashSet::new()),
        })
    }

    /// The entrypoint check: `path` as given and its resolution inside the image must both be
    /// entrypoints, and the resolved file must still have its signed content. Returns the
    /// resolved in-image path.
    fn check_entrypoint(&self, path: &str) -> Result<String, Refusal> {
        let is_entrypoint = |p: &str| self.manifest.entrypoints.iter().any(|e| e == p);
        let refuse = |why: String| Refusal::new(libc::EACCES, why);
        if !is_entrypoint(path) {
            return Err(refuse(format!(
                "{path} is not an entrypoint of this enclave (entrypoints: {})",
                self.manifest.entrypoints.join(", ")
            )));
        }
        let resolved = resolve_in_root(&self.root, path)
            .map_err(|e| refuse(format!("entrypoint {path}: {e}")))?;
        if !is_entrypoint(&resolved) {
            return Err(refuse(format!(
                "{path} resolves to {resolved}, which is not an entrypoint of this enclave"
            )));
        }
        // Verified at pal_init; checked again because it is about to run.
        let expected = self.manifest.trusted_files.get(&resolved);
        let actual = digest_file(&host_path(&self.root, &resolved))
            .map_err(|e| refuse(format!("trusted file {resolved}: {e}")))?;
        if expected != Some(&actual) {
            return Err(refuse(format!(
                "trusted file {resolved}: content differs from the signed digest (changed \
                 since pal_init)"
            )));
        }
        Ok(resolved)
    }

    fn start(
        &self,
        path: &str,
        argv: &[String],
        env: &[String],
        stdio: [RawFd; 3],
    ) -> Result<i32, Refusal> {
        for fd in stdio {
            // SAFETY: F_GETFD only queries the fd table.
            if fd < 0 || unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
                return Err(Refusal::new(
                    libc::EBADF,
                    format!("stdio fd {fd} is not open"),
                ));
            }
        }
        let resolved = self.check_entrypoint(path)?;
        let env = compose_env(&self.manifest.env, env);
        let plan = ExecPlan::new(
            &host_path(&self.root, &resolved),
            path,
            argv,
            &env,
            stdio,
            self.limits.capped(),
            self.landlock.as_ref(),
            &self.seccomp,
        )
        .map_err(|e| Refusal::new(libc::EINVAL, e))?;
        // Held across fork so that a concurrent kill(-1) sees the child as soon as it exists.
        let mut children = self.children();
        let pid = spawn(&plan).map_err(|e| {
            Refusal::new(
                e.raw_os_error().unwrap_or(libc::EAGAIN),
                format!("fork: {e}"),
            )
        })?;
        children.insert(pid);
        drop(children);
        self.log.debug(&format!(
            "started {path} ({resolved}) as pid {pid}{}",
            if plan.confined_by_landlock() {
                ""
            } else {
                " without Landlock"
            }
        ));
        Ok(pid)
    }
}

impl EnclaveRuntime for SoftwareEnclave {
    fn init(args: &str, log_level: &str, prebuilt: Option<(RawFd, u64)>) -> Result<Self, i32> {
        let log = Logger::new(log_level, args);
        SoftwareEnclave::admit(log, prebuilt).map_err(|refusal| {
            log.error(&refusal.message);
            -refusal.errno
        })
    }

    fn create_process(
        &self,
        path: &str,
        argv: &[String],
        env: &[String],
        stdio: [RawFd; 3],
    ) -> Result<i32, i32> {
        self.start(path, argv, env, stdio).map_err(|refusal| {
            // On the process's own stderr, where the user of `rune exec` sees it.
            let fd = if refusal.errno == libc::EBADF {
                libc::STDERR_FILENO
            } else {
                stdio[2]
            };
            write_line(fd, &refusal.message);
            -refusal.errno
        })
    }

    fn exec(&self, pid: i32) -> Result<i32, i32> {
        if !self.children().contains(&pid) {
            return Err(-libc::ESRCH);
        }
        // Wait without reaping first: an unreaped zombie keeps its pid, so a concurrent kill
        // that still finds it in the set cannot signal a stranger that reused the pid.
        wait_exited(pid)?;
        let mut children = self.children();
        if !children.remove(&pid) {
            // Another exec(pid) reaped it meanwhile.
            return Err(-libc::ESRCH);
        }
        let status = reap(pid)?;
        drop(children);
        Ok(if libc::WIFSIGNALED(status) {
            128 + libc::WTERMSIG(status)
        } else {
            libc::WEXITSTATUS(status)
        })
    }

    fn kill(&self, pid: i32, sig: i32) -> Result<(), i32> {
        let children = self.children();
        let targets: Vec<i32> = match pid {
            -1 => children.iter().copied().collect(),
            pid if children.contains(&pid) => vec![pid],
            _ => return Err(-libc::ESRCH),
        };
        for target in targets {
            // SAFETY: kill with integers; `target` is an unreaped child of ours (the lock is
            // held), so its pid cannot have been reused.
            if unsafe { libc::kill(target, sig) } != 0 {
                return Err(-errno_of(io::Error::last_os_error()));
            }
        }
        Ok(())
    }

    fn destroy(self) -> Result<(), i32> {
        let children = std::mem::take(&mut *self.children());
        for &pid in &children {
            // SAFETY: as in kill: unreaped children of ours.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        for pid in children {
            // Best effort: SIGKILLed, it will be gone either way.
            let _ = reap(pid);
        }
        Ok(())
    }

    fn local_report(&self, target_info: &[u8], report: &mut [u8]) -> Result<usize, i32> {
        let Some(out) = report.get_mut(..REPORT_LEN) else {
            self.log.error(&format!(
                "local report: the buffer holds {} bytes, a report needs {REPORT_LEN}",
                report.len()
            ));
            return Err(-libc::EINVAL);
        };
        let body = ReportBody {
            measurement: self.verified.measurement,
            signer: self.verified.signer,
            debug: self.verified.debug,
            product_id: self.verified.product_id,
            security_version: self.verified.security_version,
            report_data: report_data(target_info),
        };
        out.copy_from_slice(&body.to_report(&self.report_key));
        Ok(REPORT_LEN)
    }
}

fn errno_of(e: io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

/// Blocks until `pid` has exited, leaving it unreaped.
fn wait_exited(pid: i32) -> Result<(), i32> {
    let id = libc::id_t::try_from(pid).map_err(|_| -libc::ESRCH)?;
    loop {
        // SAFETY: an all-zero siginfo_t is valid; waitid writes only into it.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is a valid, writable siginfo_t.
        let rc = unsafe { libc::waitid(libc::P_PID, id, &mut info, libc::WEXITED | libc::WNOWAIT) };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(-errno_of(err));
        }
    }
}

/// Reaps `pid`, returning its wait status.
fn reap(pid: i32) -> Result<i32, i32> {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid, writable int.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc == pid {
            return Ok(status);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(-errno_of(err));
        }
    }
}
