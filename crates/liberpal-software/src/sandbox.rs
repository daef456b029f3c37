//! Confinement of enclave processes: what is prepared in the PAL before `fork`, and the child
//! side, which only makes system calls.
//!
//! After `fork` in a possibly multi-threaded process the child may only do async-signal-safe
//! work: no allocation, no locks, no Rust formatting. So everything (C strings, argv/envp
//! arrays, the seccomp BPF programs, the Landlock ruleset fd, rlimit values, the error-message
//! prefix) is built before `fork` into an [`ExecPlan`] of plain data and raw pointers, and
//! [`ExecPlan::run_child`] only applies it with system calls, then `execve`s.

use std::ffi::{c_char, c_int, c_long, CString};
use std::io::{self, Read, Seek};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use landlock::{
    Access, AccessFs, BitFlags, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset, RulesetAttr,
    RulesetCreatedAttr, ABI,
};
use libseccomp::{ScmpAction, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall};

use crate::image::{host_path, resolve_in_root};

// ---------------------------------------------------------------------------------------------
// seccomp

/// System calls denied with `EPERM` to every enclave process: debugging and reading other
/// processes, loading code into the kernel, changing mounts, namespaces, the root, keys, swap,
/// accounting, quotas, the kernel log, I/O ports, and `io_uring` (whose operations seccomp
/// cannot see).
const DENIED: &[c_long] = &[
    // other processes' memory and state
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_process_madvise,
    libc::SYS_kcmp,
    libc::SYS_pidfd_getfd,
    // kernel code, eBPF, perf, kexec, reboot
    libc::SYS_bpf,
    libc::SYS_perf_event_open,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_reboot,
    // mounts, root, namespaces
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_chroot,
    libc::SYS_open_tree,
    libc::SYS_move_mount,
    libc::SYS_fsopen,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fspick,
    libc::SYS_mount_setattr,
    libc::SYS_setns,
    // file handles (bypass path-based access control)
    libc::SYS_open_by_handle_at,
    libc::SYS_name_to_handle_at,
    // kernel keyrings
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    // page-fault handling from user space (a tool for kernel exploits)
    libc::SYS_userfaultfd,
    // system administration
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_acct,
    libc::SYS_quotactl,
    libc::SYS_quotactl_fd,
    libc::SYS_syslog,
    libc::SYS_lookup_dcookie,
    libc::SYS_fanotify_init,
    // io_uring runs operations the seccomp filter never sees
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
];

#[cfg(target_arch = "x86_64")]
const DENIED_ARCH: &[c_long] = &[
    libc::SYS_iopl,
    libc::SYS_ioperm,
    libc::SYS_modify_ldt,
    libc::SYS_uselib,
    libc::SYS__sysctl,
    libc::SYS_nfsservctl,
];
#[cfg(not(target_arch = "x86_64"))]
const DENIED_ARCH: &[c_long] = &[];

/// Namespace flags: `unshare` with any of them, and `clone` with any of them, is denied.
const NAMESPACE_FLAGS: &[c_int] = &[
    libc::CLONE_NEWNS,
    libc::CLONE_NEWUTS,
    libc::CLONE_NEWIPC,
    libc::CLONE_NEWUSER,
    libc::CLONE_NEWPID,
    libc::CLONE_NEWNET,
    libc::CLONE_NEWCGROUP,
];
/// Only `unshare` takes it (in `clone` this bit belongs to the exit signal).
const CLONE_NEWTIME: c_int = 0x80;

/// `personality(2)` values allowed (everything else is `EPERM`): the query, Linux, Linux32
/// and `UNAME26`, as Docker's default profile. Denied are the flags that weaken the process,
/// e.g. `ADDR_NO_RANDOMIZE` or `READ_IMPLIES_EXEC`.
const PERSONALITY_ALLOWED: &[u32] = &[0, 0x0008, 0x0002_0000, 0x0002_0008, 0xffff_ffff];

/// The seccomp programs every enclave process gets, in the order they are installed.
pub(crate) struct SeccompPrograms {
    main: Vec<libc::sock_filter>,
    personality: Vec<libc::sock_filter>,
}

impl SeccompPrograms {
    /// Builds both programs: libseccomp compiles the main one (which also rejects system calls
    /// of other ABIs, i386 and x32 on x86-64, by killing the process); `personality` is checked
    /// by a small hand-written program, because libseccomp cannot compare one argument with
    /// several values in one rule. The kernel runs every installed filter and applies the most
    /// restrictive result.
    pub fn build() -> Result<SeccompPrograms, String> {
        let fail = |what: &str, e: &dyn std::fmt::Display| format!("seccomp: {what}: {e}");
        let mut ctx =
            ScmpFilterContext::new(ScmpAction::Allow).map_err(|e| fail("libseccomp", &e))?;
        ctx.set_act_badarch(ScmpAction::KillProcess)
            .map_err(|e| fail("bad-arch action", &e))?;
        let eperm = ScmpAction::Errno(libc::EPERM);
        for &nr in DENIED.iter().chain(DENIED_ARCH) {
            ctx.add_rule(eperm, syscall(nr))
                .map_err(|e| fail(&format!("rule for system call {nr}"), &e))?;
        }
        let unshare_flags = NAMESPACE_FLAGS.iter().chain(&[CLONE_NEWTIME]);
        for (nr, flags) in [
            (
                libc::SYS_unshare,
                unshare_flags.copied().collect::<Vec<_>>(),
            ),
            (libc::SYS_clone, NAMESPACE_FLAGS.to_vec()),
        ] {
            for flag in flags {
                let flag = flag as u64;
                let cmp = ScmpArgCompare::new(0, ScmpCompareOp::MaskedEqual(flag), flag);
                ctx.add_rule_conditional(eperm, syscall(nr), &[cmp])
                    .map_err(|e| fail("namespace rule", &e))?;
            }
        }
        // clone3 passes its flags in memory, which seccomp cannot read: ENOSYS makes libc
        // fall back to clone, whose flags are checked above.
        ctx.add_rule(ScmpAction::Errno(libc::ENOSYS), syscall(libc::SYS_clone3))
            .map_err(|e| fail("clone3 rule", &e))?;
        let main = export_bpf(&ctx).map_err(|e| fail("exporting the program", &e))?;
        Ok(SeccompPrograms {
            main,
            personality: personality_program(),
        })
    }
}

fn syscall(nr: c_long) -> ScmpSyscall {
    ScmpSyscall::from(nr as i32)
}

/// libseccomp's BPF for `ctx`, through a memfd (libseccomp 2.5 can only export to an fd).
fn export_bpf(ctx: &ScmpFilterContext) -> io::Result<Vec<libc::sock_filter>> {
    // SAFETY: the name is a NUL-terminated literal; the flags are valid.
    let fd = unsafe { libc::memfd_create(c"rune-seccomp-bpf".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: memfd_create returned a new fd that nothing else owns.
    let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    ctx.export_bpf(&file).map_err(io::Error::other)?;
    file.rewind()?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    const INSN: usize = std::mem::size_of::<libc::sock_filter>();
    if bytes.is_empty() || bytes.len() % INSN != 0 || bytes.len() / INSN > u16::MAX as usize {
        return Err(io::Error::other(format!(
            "libseccomp exported {} bytes, not a BPF program",
            bytes.len()
        )));
    }
    Ok(bytes
        .chunks_exact(INSN)
        .map(|i| libc::sock_filter {
            code: u16::from_ne_bytes([i[0], i[1]]),
            jt: i[2],
            jf: i[3],
            k: u32::from_ne_bytes([i[4], i[5], i[6], i[7]]),
        })
        .collect())
}

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH_NATIVE: u32 = 62 | 0x8000_0000 | 0x4000_0000; // EM_X86_64, 64-bit, LE
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH_NATIVE: u32 = 183 | 0x8000_0000 | 0x4000_0000; // EM_AARCH64, 64-bit, LE

// struct seccomp_data: int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6];
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;
#[cfg(target_endian = "little")]
const DATA_ARG0_LOW: u32 = 16;
#[cfg(target_endian = "big")]
const DATA_ARG0_LOW: u32 = 20;

/// Allows `personality` only with [`PERSONALITY_ALLOWED`] values (the kernel reads the low
/// 32 bits, so that is what is compared); every other system call is allowed here and left
/// to the main program. Other architectures are allowed here too: the main program kills them.
fn personality_program() -> Vec<libc::sock_filter> {
    let stmt = |code: u32, k: u32| libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let jeq = |k: u32, jt: u8, jf: u8| libc::sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        jt,
        jf,
        k,
    };
    let load = |offset: u32| stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, offset);
    let ret = |k: u32| stmt(libc::BPF_RET | libc::BPF_K, k);
    let allow = libc::SECCOMP_RET_ALLOW;
    let deny = libc::SECCOMP_RET_ERRNO | (libc::EPERM as u32 & libc::SECCOMP_RET_DATA);

    let n = PERSONALITY_ALLOWED.len() as u8;
    let mut prog = vec![
        load(DATA_ARCH),
        jeq(AUDIT_ARCH_NATIVE, 1, 0),
        ret(allow),
        load(DATA_NR),
        jeq(libc::SYS_personality as u32, 1, 0),
        ret(allow),
        load(DATA_ARG0_LOW),
    ];
    // Value i jumps over the remaining n-1-i comparisons and the deny to the final allow.
    for (i, &value) in PERSONALITY_ALLOWED.iter().enumerate() {
        prog.push(jeq(value, n - i as u8, 0));
    }
    prog.push(ret(deny));
    prog.push(ret(allow));
    prog
}

// ---------------------------------------------------------------------------------------------
// Landlock

/// File access rights of the Landlock ABI this PAL is written and tested for. Best effort:
/// on an older kernel the rights it does not know are simply not restricted.
const LANDLOCK_ABI: ABI = ABI::V5;

/// Read-only system files every process may need. `/proc/self` is added by each child for
/// itself (read only). Nothing else of `/dev` or `/proc` is reachable.
const SYSTEM_READ: &[&str] = &["/dev/zero", "/dev/urandom", "/dev/random"];
const SYSTEM_READ_WRITE: &[&str] = &["/dev/null"];

/// The Landlock rules of an enclave, resolved at `pal_init`.
pub(crate) struct LandlockPlan {
    handled: BitFlags<AccessFs>,
    rules: Vec<(PathBuf, BitFlags<AccessFs>)>,
    /// Access granted on the child's own `/proc/self`.
    proc_self: u64,
}

/// What Landlock can do on this kernel.
pub(crate) enum LandlockSupport {
    /// The kernel's Landlock ABI version.
    Available(i32),
    /// No Landlock (not built in, or not enabled at boot): file access is not restricted.
    Unavailable,
}

pub(crate) fn landlock_support() -> LandlockSupport {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: the documented ABI-version query: NULL attributes, size 0, the VERSION flag.
    let abi = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if abi > 0 {
        LandlockSupport::Available(abi as i32)
    } else {
        LandlockSupport::Unavailable
    }
}

impl LandlockPlan {
    /// Rules: read + execute on trusted files, listing of the directories that hold them;
    /// read-write (never execute) beneath writable paths; the system files above. Paths are resolved inside `root`; a writable path that
    /// does not exist is skipped (returned, for a note).
    pub fn new<'a>(
        root: &Path,
        trusted: impl Iterator<Item = &'a String>,
        writable: &'a [String],
    ) -> Result<(LandlockPlan, Vec<&'a str>), String> {
        let abi = LANDLOCK_ABI;
        let handled = AccessFs::from_all(abi);
        let file_read_exec = AccessFs::ReadFile | AccessFs::Execute;
        let file_read_write = AccessFs::ReadFile | AccessFs::WriteFile | AccessFs::Truncate;
        let dir_read_write = AccessFs::from_all(abi)
            & !(AccessFs::Execute | AccessFs::MakeChar | AccessFs::MakeBlock | AccessFs::IoctlDev);
        let mut rules = Vec::new();
        // Programs list the directories they load from (Python's importer does, for one), so
        // the directories holding trusted files may be listed: names only, never contents.
        let mut listed = std::collections::BTreeSet::new();
        for path in trusted {
            let resolved = resolve_in_root(root, path)
                .map_err(|e| format!("landlock: trusted file {path}: {e}"))?;
            let host = host_path(root, &resolved);
            if let Some(parent) = host.parent() {
                listed.insert(parent.to_path_buf());
            }
            rules.push((host, file_read_exec));
        }
        for dir in listed {
            rules.push((dir, BitFlags::from(AccessFs::ReadDir)));
        }
        let mut missing = Vec::new();
        for path in writable {
            let resolved = match resolve_in_root(root, path) {
                Ok(resolved) => resolved,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    missing.push(path.as_str());
                    continue;
                }
                Err(e) => return Err(format!("landlock: writable path {path}: {e}")),
            };
            let host = host_path(root, &resolved);
            let is_dir = std::fs::metadata(&host)
                .map_err(|e| format!("landlock: writable path {path}: {e}"))?
                .is_dir();
            rules.push((
                host,
                if is_dir {
                    dir_read_write
                } else {
                    file_read_write
                },
            ));
        }
        for path in SYSTEM_READ {
            if Path::new(path).exists() {
                rules.push((PathBuf::from(path), BitFlags::from(AccessFs::ReadFile)));
            }
        }
        for path in SYSTEM_READ_WRITE {
            if Path::new(path).exists() {
                rules.push((PathBuf::from(path), file_read_write));
            }
        }
        let plan = LandlockPlan {
            handled,
            rules,
            proc_self: (AccessFs::ReadFile | AccessFs::ReadDir).bits(),
        };
        Ok((plan, missing))
    }

    /// A new ruleset holding the rules, for one process (each child adds its own `/proc/self`
    /// to it, so rulesets are never shared). `None` if the kernel has no Landlock.
    pub fn ruleset(&self) -> Result<Option<OwnedFd>, String> {
        let fail = |e: &dyn std::fmt::Display| format!("landlock: {e}");
        let mut ruleset = Ruleset::default()
            .set_compatibility(CompatLevel::BestEffort)
            .handle_access(self.handled)
            .map_err(|e| fail(&e))?
            .create()
            .map_err(|e| fail(&e))?;
        for (path, access) in &self.rules {
            let fd = PathFd::new(path).map_err(|e| fail(&e))?;
            ruleset = ruleset
                .add_rule(PathBeneath::new(fd, *access))
                .map_err(|e| fail(&e))?;
        }
        Ok(ruleset.into())
    }
}

/// `struct landlock_path_beneath_attr` (packed in the UAPI).
#[repr(C, packed)]
struct PathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}
const LANDLOCK_RULE_PATH_BENEATH: c_int = 1;

// ---------------------------------------------------------------------------------------------
// The child

/// `RLIMIT_*` values for enclave processes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// `RLIMIT_AS`, soft and hard.
    pub address_space: u64,
    /// `RLIMIT_NPROC`, soft and hard.
    pub tasks: u64,
}

impl Limits {
    /// Never above the current hard limits (which only privileged processes could raise).
    pub fn capped(self) -> Limits {
        Limits {
            address_space: self.address_space.min(hard_limit(libc::RLIMIT_AS)),
            tasks: self.tasks.min(hard_limit(libc::RLIMIT_NPROC)),
        }
    }
}

fn hard_limit(resource: libc::__rlimit_resource_t) -> u64 {
    // SAFETY: an all-zero rlimit is valid, getrlimit writes it.
    let mut limit: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: `limit` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(resource, &mut limit) } == 0 {
        limit.rlim_max
    } else {
        u64::MAX
    }
}

/// Everything the child needs, owned here; [`ExecPlan::run_child`] only reads it.
pub(crate) struct ExecPlan {
    exe: CString,
    _argv: Vec<CString>,
    argv_ptrs: Vec<*const c_char>,
    _envp: Vec<CString>,
    envp_ptrs: Vec<*const c_char>,
    stdio: [RawFd; 3],
    limits: Limits,
    ruleset: Option<OwnedFd>,
    proc_self_access: u64,
    seccomp: [libc::sock_fprog; 2],
    open_max: u32,
    /// `software enclave: cannot start <path>: `
    error_prefix: Vec<u8>,
}

impl ExecPlan {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        exe: &Path,
        display_path: &str,
        argv: &[String],
        env: &[String],
        stdio: [RawFd; 3],
        limits: Limits,
        landlock: Option<&LandlockPlan>,
        seccomp: &SeccompPrograms,
    ) -> Result<ExecPlan, String> {
        let cstring = |s: &[u8]| {
            CString::new(s).map_err(|_| "argument, environment or path contains a NUL byte")
        };
        let exe = cstring(exe.as_os_str().as_encoded_bytes())?;
        let argv: Vec<CString> = if argv.is_empty() {
            vec![cstring(display_path.as_bytes())?]
        } else {
            argv.iter()
                .map(|a| cstring(a.as_bytes()))
                .collect::<Result<_, _>>()?
        };
        let envp: Vec<CString> = env
            .iter()
            .map(|e| cstring(e.as_bytes()))
            .collect::<Result<_, _>>()?;
        let ptrs = |v: &[CString]| {
            v.iter()
                .map(|s| s.as_ptr())
                .chain(std::iter::once(std::ptr::null()))
                .collect::<Vec<_>>()
        };
        let argv_ptrs = ptrs(&argv);
        let envp_ptrs = ptrs(&envp);
        let ruleset = match landlock {
            Some(plan) => plan.ruleset()?,
            None => None,
        };
        let fprog = |p: &Vec<libc::sock_filter>| libc::sock_fprog {
            len: p.len() as u16,
            filter: p.as_ptr().cast_mut(),
        };
        let open_max = {
            // SAFETY: as in hard_limit.
            let mut limit: libc::rlimit = unsafe { std::mem::zeroed() };
            // SAFETY: `limit` is a valid, writable rlimit.
            let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
            if ok {
                limit.rlim_cur.min(1 << 20) as u32
            } else {
                1 << 16
            }
        };
        Ok(ExecPlan {
            exe,
            _argv: argv,
            argv_ptrs,
            _envp: envp,
            envp_ptrs,
            stdio,
            limits,
            proc_self_access: landlock.map_or(0, |p| p.proc_self),
            ruleset,
            seccomp: [fprog(&seccomp.main), fprog(&seccomp.personality)],
            open_max,
            error_prefix: format!("{}cannot start {display_path}: ", crate::log::PREFIX)
                .into_bytes(),
        })
    }

    /// Whether a Landlock ruleset will be applied.
    pub fn confined_by_landlock(&self) -> bool {
        self.ruleset.is_some()
    }

    /// The child, after `fork`: applies the plan and `execve`s; on any failure writes one line
    /// to the process's stderr and exits with 126. Async-signal-safe: system calls only, on
    /// data prepared before `fork` (the `SeccompPrograms` the plan points into must outlive it).
    ///
    /// # Safety
    /// Must only be called in the child of a `fork`, with `self` built before that `fork`.
    pub unsafe fn run_child(&self) -> ! {
        let mut err_fd = self.stdio[2];
        macro_rules! check {
            ($step:expr, $rc:expr) => {
                if $rc < 0 {
                    self.fail(err_fd, $step, errno());
                }
            };
        }

        // Signals: a fresh process has every disposition at default and nothing blocked; the
        // caller (rune) ignores SIGPIPE and blocks signals it forwards, which must not leak.
        // The raw system call: glibc's sigaction refuses the signals it reserves (32, 33),
        // which a caller may still have ignored. An all-zero kernel `struct sigaction` is
        // SIG_DFL with no flags and an empty mask, whatever the architecture's field order.
        let default_action = [0u64; 4];
        for signal in 1..=64 {
            if signal == libc::SIGKILL || signal == libc::SIGSTOP {
                continue;
            }
            // SAFETY: rt_sigaction with a valid action buffer, no old action, and the
            // kernel's sigset size (8); an error for an invalid signal number is irrelevant.
            unsafe {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    signal,
                    default_action.as_ptr(),
                    std::ptr::null_mut::<u64>(),
                    8usize,
                )
            };
        }
        // SAFETY: an empty set is valid; SIG_SETMASK with it unblocks everything.
        let rc = unsafe {
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut())
        };
        check!("unblocking signals", rc);

        // stdio: copy each to a fresh fd >= 3 first, so that overlapping sources and targets
        // (e.g. stdout and stderr swapped) cannot clobber each other, then onto 0, 1, 2.
        let mut copies = [0; 3];
        for (copy, &fd) in copies.iter_mut().zip(&self.stdio) {
            // SAFETY: F_DUPFD_CLOEXEC on an fd of this process.
            *copy = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
            check!("duplicating the stdio fds", *copy);
        }
        for (target, &copy) in copies.iter().enumerate() {
            // SAFETY: dup2 between fds of this process; clears FD_CLOEXEC on the target.
            let rc = unsafe { libc::dup2(copy, target as c_int) };
            check!("installing the stdio fds", rc);
        }
        err_fd = libc::STDERR_FILENO;

        let limit = |resource, value: u64| {
            let limit = libc::rlimit {
                rlim_cur: value,
                rlim_max: value,
            };
            // SAFETY: setrlimit with a valid rlimit.
            unsafe { libc::setrlimit(resource, &limit) }
        };
        check!("setting RLIMIT_CORE", limit(libc::RLIMIT_CORE, 0));
        check!(
            "setting RLIMIT_AS",
            limit(libc::RLIMIT_AS, self.limits.address_space)
        );
        check!(
            "setting RLIMIT_NPROC",
            limit(libc::RLIMIT_NPROC, self.limits.tasks)
        );

        // Until execve this process holds a copy of the PAL's memory (the report key).
        // SAFETY: prctl with integer arguments.
        let rc = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
        check!("PR_SET_DUMPABLE", rc);
        // SAFETY: as above. Required for Landlock and seccomp without privileges; also keeps
        // set-uid programs and file capabilities from raising privileges.
        let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
        check!("PR_SET_NO_NEW_PRIVS", rc);

        if let Some(ruleset) = &self.ruleset {
            let ruleset = ruleset.as_raw_fd();
            // This process's own /proc/<pid>, readable; /proc/self resolves to it now.
            // SAFETY: opening a literal path O_PATH; closed below.
            let proc_self = unsafe {
                libc::open(
                    c"/proc/self".as_ptr(),
                    libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
                )
            };
            if proc_self >= 0 {
                let attr = PathBeneathAttr {
                    allowed_access: self.proc_self_access,
                    parent_fd: proc_self,
                };
                // SAFETY: landlock_add_rule with a valid ruleset fd and attribute struct.
                let rc = unsafe {
                    libc::syscall(
                        libc::SYS_landlock_add_rule,
                        ruleset,
                        LANDLOCK_RULE_PATH_BENEATH,
                        &attr as *const PathBeneathAttr,
                        0,
                    )
                };
                // SAFETY: closing the fd opened above.
                unsafe { libc::close(proc_self) };
                check!("adding the /proc/self Landlock rule", rc);
            }
            // SAFETY: landlock_restrict_self with a valid ruleset fd and no flags.
            let rc = unsafe { libc::syscall(libc::SYS_landlock_restrict_self, ruleset, 0) };
            check!("applying the Landlock ruleset", rc);
        }

        // Every fd but 0, 1, 2 (the ruleset fd included).
        // SAFETY: close_range with valid bounds and no flags.
        let rc = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
        if rc < 0 {
            // Kernels before 5.9.
            for fd in 3..self.open_max as c_int {
                // SAFETY: closing fds of this process; EBADF for unused ones is fine.
                unsafe { libc::close(fd) };
            }
        }

        for prog in &self.seccomp {
            // SAFETY: SECCOMP_SET_MODE_FILTER with a sock_fprog whose filter points into
            // memory prepared before fork (copied into this process by fork).
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_seccomp,
                    libc::SECCOMP_SET_MODE_FILTER,
                    0,
                    prog as *const libc::sock_fprog,
                )
            };
            check!("installing the seccomp filter", rc);
        }

        // SAFETY: NUL-terminated path, NULL-terminated argv/envp arrays of NUL-terminated
        // strings, all prepared before fork.
        unsafe {
            libc::execve(
                self.exe.as_ptr(),
                self.argv_ptrs.as_ptr(),
                self.envp_ptrs.as_ptr(),
            )
        };
        self.fail(err_fd, "execve", errno())
    }

    /// Writes `<prefix><step> failed: <errno name> (<n>)\n` and `_exit(126)`.
    fn fail(&self, fd: RawFd, step: &str, errno: c_int) -> ! {
        let mut number = [0u8; 12];
        let digits = format_decimal(errno, &mut number);
        for part in [
            &self.error_prefix[..],
            step.as_bytes(),
            b" failed: ",
            errno_name(errno).as_bytes(),
            b" (errno ",
            digits,
            b")\n",
        ] {
            // SAFETY: writing a valid buffer; failures are ignored (we are exiting anyway).
            unsafe { libc::write(fd, part.as_ptr().cast(), part.len()) };
        }
        // SAFETY: _exit is async-signal-safe and runs no atexit handlers or destructors.
        unsafe { libc::_exit(126) }
    }
}

fn errno() -> c_int {
    // SAFETY: __errno_location returns this thread's errno slot.
    unsafe { *libc::__errno_location() }
}

/// `n` in decimal into `buf`, without allocating.
fn format_decimal(n: c_int, buf: &mut [u8; 12]) -> &[u8] {
    let mut value = n.unsigned_abs();
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    if n < 0 {
        at -= 1;
        buf[at] = b'-';
    }
    &buf[at..]
}

fn errno_name(errno: c_int) -> &'static str {
    match errno {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EACCES => "EACCES",
        libc::ENOEXEC => "ENOEXEC",
        libc::ENOMEM => "ENOMEM",
        libc::E2BIG => "E2BIG",
        libc::EINVAL => "EINVAL",
        libc::EBADF => "EBADF",
        libc::EAGAIN => "EAGAIN",
        libc::ENOTDIR => "ENOTDIR",
        libc::ELOOP => "ELOOP",
        libc::ETXTBSY => "ETXTBSY",
        libc::EMFILE => "EMFILE",
        libc::ENOSYS => "ENOSYS",
        _ => "error",
    }
}

/// `fork`s, runs `plan` in the child, returns the child's pid.
pub(crate) fn spawn(plan: &ExecPlan) -> io::Result<i32> {
    // SAFETY: the child only calls `run_child`, which is async-signal-safe and never returns.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        // SAFETY: we are the child of the fork and `plan` was built before it.
        0 => unsafe { plan.run_child() },
        pid => Ok(pid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal() {
        let mut buf = [0u8; 12];
        assert_eq!(format_decimal(0, &mut buf), b"0");
        assert_eq!(format_decimal(13, &mut buf), b"13");
        assert_eq!(format_decimal(-2147483648, &mut buf), b"-2147483648");
    }

    #[test]
    fn the_filters_build() {
        let programs = SeccompPrograms::build().expect("build");
        assert!(programs.main.len() > DENIED.len());
        // arch check, nr check, the compare chain, deny, allow.
        assert_eq!(
            programs.personality.len(),
            7 + PERSONALITY_ALLOWED.len() + 2
        );
    }
}
