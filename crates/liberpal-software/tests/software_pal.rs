//! The software enclave PAL driven through the real loader (`pal::Pal::load` on the built
//! `.so`), each scenario in a child process loaded with host settings as rune would (see
//! `common`). The `#[test]`s below prepare an image, run a scenario child, and check what the
//! child and the PAL reported; the scenarios themselves are in `mod child`.

mod common;

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;

use common::{stranger_key, TestImage};

const EXPECT_ERRNO_ENV: &str = "LIBERPAL_SW_TEST_EXPECT_ERRNO";

/// Runs the `init_fails` scenario: `pal_init` must fail with `-errno` and the PAL must write
/// exactly one line, containing `message`. Returns that line.
fn assert_init_fails(image: &TestImage, errno: i32, message: &str) -> String {
    let run = image.run_with(
        "init_fails",
        &[(EXPECT_ERRNO_ENV, &OsString::from(errno.to_string()))],
    );
    run.assert_passed();
    let lines = run.pal_lines();
    assert_eq!(lines.len(), 1, "one line expected, got {lines:?}");
    println!("pal_init refused: {}", lines[0]);
    assert!(
        lines[0].starts_with("software enclave: ") && lines[0].contains(message),
        "expected a line containing {message:?}, got {:?}",
        lines[0]
    );
    lines[0].clone()
}

#[test]
fn happy_path_runs_entrypoints_with_stdio_env_and_exit_status() {
    let image = TestImage::new();
    let run = image.run("happy");
    run.assert_passed();
    assert_eq!(
        run.pal_lines(),
        Vec::<String>::new(),
        "a clean start is silent"
    );
    // The report key was created at load time, private.
    let mode = |p: &std::path::Path| fs::metadata(p).expect("stat").permissions().mode() & 0o7777;
    assert_eq!(mode(&image.key_path()), 0o600);
    assert_eq!(mode(image.key_path().parent().expect("dir")), 0o700);
    assert_eq!(fs::read(image.key_path()).expect("key").len(), 32);
}

#[test]
fn only_entrypoints_run_and_only_with_their_signed_content() {
    TestImage::new().run("entrypoints").assert_passed();
}

#[test]
fn a_symlinked_entrypoint_needs_its_target_listed_too() {
    let image = TestImage::with(|m| {
        m.entrypoints = vec!["/bin/sh".into(), "/bin/probe".into()];
    });
    image.run("symlink_target_not_entrypoint").assert_passed();
}

fn flip_last_byte(path: &std::path::Path) {
    let mut bytes = fs::read(path).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(path, bytes).expect("write");
}

#[test]
fn a_tampered_trusted_file_is_refused() {
    let image = TestImage::new();
    flip_last_byte(&image.file("/bin/probe"));
    assert_init_fails(
        &image,
        libc::EACCES,
        "software enclave: trusted file /bin/probe: content differs from the signed digest",
    );

    // busybox is trusted under two names (/bin/sh is a symlink to it) and the files are
    // hashed in parallel: either name may be the one reported.
    let image = TestImage::new();
    flip_last_byte(&image.file("/bin/busybox"));
    let line = assert_init_fails(
        &image,
        libc::EACCES,
        ": content differs from the signed digest",
    );
    assert!(
        line.starts_with("software enclave: trusted file /bin/busybox:")
            || line.starts_with("software enclave: trusted file /bin/sh:"),
        "{line}"
    );
}

#[test]
fn a_missing_trusted_file_is_refused() {
    let image = TestImage::new();
    fs::remove_file(image.file("/data/trusted.txt")).expect("rm");
    assert_init_fails(&image, libc::EACCES, "trusted file /data/trusted.txt: ");
}

#[test]
fn an_edited_manifest_is_refused() {
    let image = TestImage::new();
    let mut edited = image.manifest.clone();
    edited.writable_paths.push("/data".into());
    image.write_manifest(&edited);
    assert_init_fails(
        &image,
        libc::EACCES,
        "signature: the manifest does not match the signed measurement",
    );
}

#[test]
fn an_unknown_signer_is_refused() {
    let image = TestImage::new();
    image.sign_with(stranger_key());
    assert_init_fails(
        &image,
        libc::EACCES,
        &format!(
            "signer {} is not in allowed_signers",
            common::signer_hex(stranger_key())
        ),
    );
}

#[test]
fn a_debug_enclave_needs_a_policy_that_allows_debug() {
    let image = TestImage::with(|m| m.debug = true);
    assert_init_fails(&image, libc::EACCES, "the enclave is a debug enclave");
    image.write_policy(&[common::node_key()], true);
    image.run("init_ok").assert_passed();
}

#[test]
fn a_missing_policy_or_image_is_reported_by_pal_init() {
    let image = TestImage::new();
    fs::remove_file(image.policy_path()).expect("rm");
    assert_init_fails(&image, libc::ENOENT, "the node needs a signer policy");

    let image = TestImage::new();
    fs::remove_dir_all(image.file("/.rune-enclave")).expect("rm");
    assert_init_fails(&image, libc::ENOENT, "no enclave image: ");
}

#[test]
fn a_trusted_file_beneath_a_writable_path_is_refused() {
    let image = TestImage::with(|m| m.writable_paths.push("/data".into()));
    assert_init_fails(
        &image,
        libc::EACCES,
        "trusted file /data/trusted.txt is beneath writable path /data",
    );
}

#[test]
fn enclave_processes_are_confined() {
    let image = TestImage::new();
    let run = image.run("confinement");
    run.assert_passed();
    if !child::landlock_supported() {
        assert!(
            run.pal_lines().iter().any(|l| l.contains("no Landlock")),
            "{:?}",
            run.pal_lines()
        );
    }
}

#[test]
fn kill_signals_one_or_all_and_destroy_kills_everything() {
    TestImage::new().run("signals").assert_passed();
}

#[test]
fn the_local_report_verifies_with_the_node_key_only() {
    TestImage::new().run("report").assert_passed();
}

#[test]
fn args_only_tune_logging() {
    let run = TestImage::new().run("args");
    run.assert_passed();
    let lines = run.pal_lines();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("args: unknown argument \"color=blue\" ignored")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("admitted enclave")),
        "debug-log turns debug lines on: {lines:?}"
    );
}

/// The child side: only does something when started by `TestImage::run` (see `common`).
#[test]
fn child_entry() {
    let Ok(scenario) = std::env::var(common::SCENARIO_ENV) else {
        return;
    };
    let ctx = child::Ctx::load();
    match scenario.as_str() {
        "happy" => child::happy(&ctx),
        "entrypoints" => child::entrypoints(&ctx),
        "symlink_target_not_entrypoint" => child::symlink_target_not_entrypoint(&ctx),
        "init_fails" => child::init_fails(&ctx),
        "init_ok" => child::init_ok(&ctx),
        "confinement" => child::confinement(&ctx),
        "signals" => child::signals(&ctx),
        "report" => child::report(&ctx),
        "args" => child::args(&ctx),
        other => panic!("unknown scenario {other}"),
    }
}

mod child {
    use std::collections::BTreeMap;
    use std::fs::{self, File};
    use std::os::fd::{AsRawFd, RawFd};
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use enclave_image::{manifest_path, signature_path, Manifest, Signature};
    use liberpal_software::{verify_report, ReportError, REPORT_LEN};
    use pal::{Pal, PalError};

    use super::common::{self, MAX_PROCESSES, MAX_THREADS, MEMORY_SIZE};

    pub struct Ctx {
        pub pal: Pal,
        pub dir: PathBuf,
        pub root: PathBuf,
        seq: AtomicUsize,
    }

    #[derive(Debug)]
    pub struct Outcome {
        pub status: i32,
        pub stdout: String,
        pub stderr: String,
    }

    /// stdin (with the given content), stdout and stderr files for one process.
    pub struct Stdio {
        files: [File; 3],
        out: PathBuf,
        err: PathBuf,
    }

    impl Stdio {
        pub fn fds(&self) -> [RawFd; 3] {
            [
                self.files[0].as_raw_fd(),
                self.files[1].as_raw_fd(),
                self.files[2].as_raw_fd(),
            ]
        }

        pub fn out(&self) -> String {
            fs::read_to_string(&self.out).expect("read stdout")
        }

        pub fn err(&self) -> String {
            fs::read_to_string(&self.err).expect("read stderr")
        }
    }

    pub fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    impl Ctx {
        /// Loads the PAL: its constructor reads the host settings from this environment now.
        pub fn load() -> Ctx {
            let so = std::env::var_os(common::PAL_ENV).expect("PAL path");
            let dir = PathBuf::from(std::env::var_os(common::DIR_ENV).expect("dir"));
            let pal = Pal::load(&so).expect("load the PAL");
            assert_eq!(pal.version(), 3);
            Ctx {
                pal,
                root: dir.join("rootfs"),
                dir,
                seq: AtomicUsize::new(0),
            }
        }

        pub fn init(&self) {
            self.pal.init("", "info", None).expect("pal_init");
        }

        pub fn host(&self, path: &str) -> String {
            self.root
                .join(path.trim_start_matches('/'))
                .to_string_lossy()
                .into_owned()
        }

        pub fn stdio(&self, stdin: &[u8]) -> Stdio {
            let io = self.dir.join("io");
            fs::create_dir_all(&io).expect("mkdir");
            let n = self.seq.fetch_add(1, Ordering::SeqCst);
            let input = io.join(format!("{n}.in"));
            fs::write(&input, stdin).expect("write stdin");
            let out = io.join(format!("{n}.out"));
            let err = io.join(format!("{n}.err"));
            Stdio {
                files: [
                    File::open(&input).expect("open"),
                    File::create(&out).expect("create"),
                    File::create(&err).expect("create"),
                ],
                out,
                err,
            }
        }

        pub fn start(&self, argv: &[&str], io: &Stdio) -> Result<i32, PalError> {
            self.pal.create_process(&strings(argv), &[], io.fds())
        }

        pub fn run_env(&self, argv: &[&str], env: &[&str], stdin: &[u8]) -> Outcome {
            let io = self.stdio(stdin);
            let pid = self
                .pal
                .create_process(&strings(argv), &strings(env), io.fds())
                .unwrap_or_else(|e| panic!("create_process {argv:?}: {e}\n{}", io.err()));
            let status = self.pal.wait(pid).expect("wait");
            Outcome {
                status,
                stdout: io.out(),
                stderr: io.err(),
            }
        }

        pub fn run(&self, argv: &[&str]) -> Outcome {
            self.run_env(argv, &[], b"")
        }

        /// Runs the probe in the enclave; its `key=value` lines.
        pub fn probe(&self, args: &[&str]) -> BTreeMap<String, String> {
            let mut argv = vec!["/bin/probe"];
            argv.extend(args);
            let out = self.run(&argv);
            assert_eq!(out.status, 0, "probe {args:?}: {out:?}");
            parse(&out.stdout)
        }
    }

    fn parse(text: &str) -> BTreeMap<String, String> {
        text.lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    fn code(err: PalError) -> i32 {
        err.code()
            .unwrap_or_else(|| panic!("not a call failure: {err}"))
    }

    pub fn landlock_supported() -> bool {
        // SAFETY: the Landlock ABI-version query.
        unsafe {
            libc::syscall(
                libc::SYS_landlock_create_ruleset,
                std::ptr::null::<u8>(),
                0usize,
                1u32,
            ) > 0
        }
    }

    pub fn happy(ctx: &Ctx) {
        ctx.init();
        // Env: manifest defaults, host values only for host_allowed names (TZ overrides the
        // default, LANG is added), everything else dropped.
        let out = ctx.run_env(
            &["/bin/busybox", "env"],
            &[
                "GREETING=from-host",
                "TZ=Europe/Paris",
                "SECRET=leak",
                "LANG=C.UTF-8",
                "PATH=/evil",
                "NOEQUALS",
            ],
            b"",
        );
        assert_eq!(out.status, 0, "{out:?}");
        assert_eq!(
            out.stdout,
            "PATH=/bin\nGREETING=from-manifest\nTZ=Europe/Paris\nLANG=C.UTF-8\n"
        );

        // stdin, stdout, stderr, exit status, through the /bin/sh -> busybox entrypoint.
        let out = ctx.run_env(
            &[
                "/bin/sh",
                "-c",
                "read line; echo \"got $line\"; echo oops >&2; exit 7",
            ],
            &[],
            b"hello\n",
        );
        assert_eq!(
            (out.status, out.stdout.as_str(), out.stderr.as_str()),
            (7, "got hello\n", "oops\n")
        );
        let out = ctx.run(&[
            "/bin/sh",
            "-c",
            "echo \"$0|$1|$2\"",
            "zero",
            "",
            "two words",
        ]);
        assert_eq!(out.stdout, "zero||two words\n");
        // Killed by a signal: 128 + signal.
        let out = ctx.run(&["/bin/sh", "-c", "kill -KILL $$"]);
        assert_eq!(out.status, 128 + libc::SIGKILL);

        // stdout and stderr swapped: each fd still lands where it was asked to.
        let io = ctx.stdio(b"");
        let [stdin, out_fd, err_fd] = io.fds();
        let pid = ctx
            .pal
            .create_process(
                &strings(&["/bin/sh", "-c", "echo to-stdout; echo to-stderr >&2"]),
                &[],
                [stdin, err_fd, out_fd],
            )
            .expect("create");
        assert_eq!(ctx.pal.wait(pid).expect("wait"), 0);
        assert_eq!(io.out(), "to-stderr\n");
        assert_eq!(io.err(), "to-stdout\n");
        ctx.pal.destroy().expect("destroy");
    }

    pub fn entrypoints(ctx: &Ctx) {
        ctx.init();
        for (path, message) in [
            ("/bin/ls", "/bin/ls is not an entrypoint of this enclave"),
            (
                "/data/trusted.txt",
                "/data/trusted.txt is not an entrypoint",
            ),
            ("/tmp/bb", "/tmp/bb is not an entrypoint"),
            ("bin/busybox", "bin/busybox is not an entrypoint"),
            (
                "/bin/../bin/busybox",
                "/bin/../bin/busybox is not an entrypoint",
            ),
        ] {
            let io = ctx.stdio(b"");
            let err = ctx.start(&[path], &io).expect_err(path);
            assert_eq!(code(err), -libc::EACCES, "{path}");
            let line = format!("software enclave: {message}");
            assert!(io.err().starts_with(&line), "{path}: {:?}", io.err());
        }

        let io = ctx.stdio(b"");
        let err = ctx
            .pal
            .create_process(
                &strings(&["/bin/busybox", "true"]),
                &[],
                [io.fds()[0], 9999, 2],
            )
            .expect_err("closed fd");
        assert_eq!(code(err), -libc::EBADF);

        // An entrypoint changed after pal_init is refused when it is about to run.
        let probe = ctx.host("/bin/probe");
        let mut bytes = fs::read(&probe).expect("read");
        bytes.push(0);
        fs::write(&probe, bytes).expect("write");
        let io = ctx.stdio(b"");
        let err = ctx
            .start(&["/bin/probe", "info"], &io)
            .expect_err("changed");
        assert_eq!(code(err), -libc::EACCES);
        assert!(
            io.err().contains(
                "trusted file /bin/probe: content differs from the signed digest (changed since \
                 pal_init)"
            ),
            "{}",
            io.err()
        );
        assert_eq!(ctx.run(&["/bin/busybox", "true"]).status, 0);
        ctx.pal.destroy().expect("destroy");
    }

    pub fn symlink_target_not_entrypoint(ctx: &Ctx) {
        ctx.init();
        let io = ctx.stdio(b"");
        let err = ctx.start(&["/bin/sh", "-c", "true"], &io).expect_err("sh");
        assert_eq!(code(err), -libc::EACCES);
        assert!(
            io.err().contains(
                "/bin/sh resolves to /bin/busybox, which is not an entrypoint of this enclave"
            ),
            "{}",
            io.err()
        );
        let io = ctx.stdio(b"");
        assert_eq!(
            code(
                ctx.start(&["/bin/busybox", "true"], &io)
                    .expect_err("busybox")
            ),
            -libc::EACCES
        );
        assert_eq!(ctx.probe(&["info"])["no_new_privs"], "1");
        ctx.pal.destroy().expect("destroy");
    }

    pub fn init_fails(ctx: &Ctx) {
        let errno: i32 = std::env::var(super::EXPECT_ERRNO_ENV)
            .expect("expected errno")
            .parse()
            .expect("number");
        let err = ctx
            .pal
            .init("", "info", None)
            .expect_err("pal_init must fail");
        assert_eq!(code(err), -errno);
        // Nothing runs without a successful init.
        let io = ctx.stdio(b"");
        assert_eq!(
            code(
                ctx.start(&["/bin/busybox", "true"], &io)
                    .expect_err("no enclave")
            ),
            -libc::EINVAL
        );
    }

    pub fn init_ok(ctx: &Ctx) {
        ctx.init();
        assert_eq!(ctx.run(&["/bin/busybox", "true"]).status, 0);
        ctx.pal.destroy().expect("destroy");
    }

    pub fn args(ctx: &Ctx) {
        ctx.pal
            .init("debug-log color=blue", "info", None)
            .expect("args never make pal_init fail");
        ctx.pal.destroy().expect("destroy");
    }

    /// System calls the filter denies with EPERM.
    const DENIED: &[&str] = &[
        "ptrace_traceme",
        "ptrace_attach",
        "process_vm_readv",
        "process_vm_writev",
        "bpf",
        "perf_event_open",
        "mount",
        "umount2",
        "pivot_root",
        "chroot",
        "setns",
        "unshare_user",
        "unshare_mount",
        "clone_newuser",
        "keyctl",
        "add_key",
        "request_key",
        "init_module",
        "finit_module",
        "delete_module",
        "kexec_load",
        "kexec_file_load",
        "reboot",
        "swapon",
        "swapoff",
        "acct",
        "quotactl",
        "syslog",
        "lookup_dcookie",
        "userfaultfd",
        "open_by_handle_at",
        "name_to_handle_at",
        "io_uring_setup",
        "fsopen",
        "kcmp",
        "pidfd_getfd",
        "personality_no_randomize",
        "personality_high_bits",
        "personality_read_implies_exec",
    ];

    /// Denied inside, and succeed outside on any Linux without a seccomp filter of its own:
    /// proof that it is the enclave's filter that denies them.
    const BASELINE_OK: &[&str] = &[
        "ptrace_traceme",
        "ptrace_attach",
        "process_vm_readv",
        "process_vm_writev",
        "personality_no_randomize",
        "personality_high_bits",
    ];

    pub fn confinement(ctx: &Ctx) {
        ctx.init();
        // The PAL's own process (rune's init-runelet in a container) holds the report key.
        // SAFETY: prctl query.
        assert_eq!(unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) }, 0);

        // What the caller has and the enclave process must not inherit: fds without
        // O_CLOEXEC, a blocked signal in the calling thread, SIGPIPE ignored (the Rust runtime
        // ignores it in this process).
        // SAFETY: dup and open of valid arguments; the fds are closed below.
        let leaked = unsafe {
            [
                libc::dup(1),
                libc::open(c"/etc/passwd".as_ptr(), libc::O_RDONLY),
            ]
        };
        assert!(leaked.iter().all(|&fd| fd > 2), "{leaked:?}");
        // SAFETY: a valid sigset for pthread_sigmask; restored below.
        let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old);
        }
        let info = ctx.probe(&["info"]);
        // SAFETY: restoring the mask saved above; closing the fds opened above.
        unsafe {
            libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
            for fd in leaked {
                libc::close(fd);
            }
        }
        let get = |k: &str| info.get(k).map(String::as_str).unwrap_or("<missing>");
        assert_eq!(get("fds"), "0,1,2", "{info:?}");
        assert_eq!(get("no_new_privs"), "1");
        assert_eq!(get("status.NoNewPrivs"), "1");
        assert_eq!(get("status.Seccomp"), "2", "seccomp filter mode");
        assert_eq!(get("status.SigBlk"), "0000000000000000");
        assert_eq!(get("status.SigIgn"), "0000000000000000");
        assert_eq!(get("rlimit.core"), "0/0");
        assert_eq!(get("rlimit.as"), format!("{MEMORY_SIZE}/{MEMORY_SIZE}"));
        let tasks = u64::from(MAX_PROCESSES * MAX_THREADS).min(hard_limit(libc::RLIMIT_NPROC));
        assert_eq!(get("rlimit.nproc"), format!("{tasks}/{tasks}"));
        // PR_SET_DUMPABLE 0 is set before execve (the child then holds a copy of the PAL's
        // memory), but execve resets dumpability to 1 for any readable, non-set-uid program
        // run without a credential change. This pins that kernel behaviour: the README's
        // "not enforced" list depends on it.
        assert_eq!(get("dumpable"), "1");

        // seccomp: compared with the same probe run outside the enclave.
        let inside = ctx.probe(&["syscalls"]);
        let outside = std::process::Command::new(ctx.host("/bin/probe"))
            .arg("syscalls")
            .output()
            .expect("run the probe outside");
        let outside = parse(&String::from_utf8_lossy(&outside.stdout));
        for name in DENIED {
            assert_eq!(
                inside.get(*name).map(String::as_str),
                Some("errno:1"),
                "{name} inside the enclave (outside: {:?})",
                outside.get(*name)
            );
        }
        if cfg!(target_arch = "x86_64") {
            assert_eq!(inside["iopl"], "errno:1");
            assert_eq!(inside["ioperm"], "errno:1");
        }
        for name in BASELINE_OK {
            assert_eq!(outside[*name], "0", "{name} outside the enclave");
        }
        assert_eq!(inside["clone3"], format!("errno:{}", libc::ENOSYS));
        for name in [
            "personality_query",
            "personality_linux",
            "unshare_files",
            "getpid",
        ] {
            assert_eq!(inside[name], "0", "{name} stays allowed");
        }

        if !landlock_supported() {
            println!("Landlock is not supported by this kernel: file access checks skipped");
            ctx.pal.destroy().expect("destroy");
            return;
        }
        let h = |p: &str| ctx.host(p);
        let eacces = format!("errno:{}", libc::EACCES);
        let expect = |results: &BTreeMap<String, String>, what: &str, cases: &[(String, bool)]| {
            for (path, allowed) in cases {
                let key = format!("{what}:{path}");
                let want = if *allowed { "0" } else { eacces.as_str() };
                assert_eq!(
                    results.get(&key).map(String::as_str),
                    Some(want),
                    "{key}: {results:?}"
                );
            }
        };
        let reads = [
            (h("/data/trusted.txt"), true),
            (h("/bin/busybox"), true),
            (h("/data/untrusted.txt"), false),
            (h("/.rune-enclave/manifest.json"), false),
            ("/etc/passwd".to_owned(), false),
            ("/proc/1/status".to_owned(), false),
            ("/proc/self/status".to_owned(), true),
            ("/dev/urandom".to_owned(), true),
            ("/dev/null".to_owned(), true),
            (h("/tmp/bb"), true),
        ];
        let mut args = vec!["read"];
        args.extend(reads.iter().map(|(p, _)| p.as_str()));
        expect(&ctx.probe(&args), "read", &reads);

        let writes = [
            (h("/tmp/new-file"), true),
            ("/dev/null".to_owned(), true),
            (h("/data/trusted.txt"), false),
            (h("/data/new-file"), false),
            (h("/bin/new-file"), false),
            (h("/tmp/../data/escape"), false),
        ];
        let mut args = vec!["write"];
        args.extend(writes.iter().map(|(p, _)| p.as_str()));
        expect(&ctx.probe(&args), "write", &writes);
        assert_eq!(
            fs::read_to_string(h("/data/trusted.txt")).expect("read"),
            "measured\n"
        );

        // Execute: measured files only; the writable /tmp never (an unmeasured busybox copy).
        let execs = [(h("/bin/busybox"), true), (h("/tmp/bb"), false)];
        let mut args = vec!["exec"];
        args.extend(execs.iter().map(|(p, _)| p.as_str()));
        expect(&ctx.probe(&args), "exec", &execs);

        // Directories holding trusted files may be listed (programs list where they load
        // from); others may not.
        let dirs = [
            (h("/tmp"), true),
            (h("/bin"), true),
            ("/".to_owned(), false),
            ("/proc/self/fd".to_owned(), true),
        ];
        let mut args = vec!["readdir"];
        args.extend(dirs.iter().map(|(p, _)| p.as_str()));
        expect(&ctx.probe(&args), "readdir", &dirs);

        // Another enclave process's /proc entries, memory included, are out of reach.
        let io = ctx.stdio(b"");
        let sibling = ctx
            .start(&["/bin/busybox", "sleep", "30"], &io)
            .expect("sibling");
        let status = format!("/proc/{sibling}/status");
        let mem = format!("/proc/{sibling}/mem");
        let results = ctx.probe(&["read", &status, &mem]);
        expect(
            &results,
            "read",
            &[(status.clone(), false), (mem.clone(), false)],
        );
        ctx.pal.kill(sibling, libc::SIGKILL).expect("kill");
        assert_eq!(ctx.pal.wait(sibling).expect("wait"), 128 + libc::SIGKILL);
        ctx.pal.destroy().expect("destroy");
    }

    fn hard_limit(resource: libc::__rlimit_resource_t) -> u64 {
        // SAFETY: getrlimit into a valid struct.
        unsafe {
            let mut limit: libc::rlimit = std::mem::zeroed();
            libc::getrlimit(resource, &mut limit);
            limit.rlim_max
        }
    }

    pub fn signals(ctx: &Ctx) {
        ctx.init();
        let io = ctx.stdio(b"");
        let sleep = ["/bin/busybox", "sleep", "30"];
        let a = ctx.start(&sleep, &io).expect("a");
        let b = ctx.start(&sleep, &io).expect("b");

        ctx.pal.kill(a, libc::SIGTERM).expect("kill a");
        assert_eq!(ctx.pal.wait(a).expect("wait a"), 128 + libc::SIGTERM);
        // Reaped: no longer ours. Neither are processes the PAL did not start.
        assert_eq!(
            code(ctx.pal.kill(a, libc::SIGTERM).expect_err("reaped")),
            -libc::ESRCH
        );
        assert_eq!(code(ctx.pal.kill(1, 0).expect_err("init")), -libc::ESRCH);
        let me = std::process::id() as i32;
        assert_eq!(code(ctx.pal.kill(me, 0).expect_err("me")), -libc::ESRCH);
        assert_eq!(code(ctx.pal.wait(a).expect_err("waited")), -libc::ESRCH);

        ctx.pal.kill(-1, libc::SIGKILL).expect("kill all");
        assert_eq!(ctx.pal.wait(b).expect("wait b"), 128 + libc::SIGKILL);
        ctx.pal
            .kill(-1, libc::SIGTERM)
            .expect("kill all, none left");

        // As rune forwards signals: kill(-1) from another thread while exec blocks.
        std::thread::scope(|s| {
            let runner = s.spawn(|| {
                let pid = ctx.start(&sleep, &io).expect("start");
                ctx.pal.wait(pid)
            });
            while !runner.is_finished() {
                ctx.pal.kill(-1, libc::SIGTERM).expect("kill");
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            assert_eq!(
                runner.join().expect("join").expect("exec"),
                128 + libc::SIGTERM
            );
        });

        // destroy: everything still running is killed and reaped.
        let c = ctx.start(&sleep, &io).expect("c");
        let d = ctx.start(&sleep, &io).expect("d");
        ctx.pal.destroy().expect("destroy");
        for pid in [c, d] {
            // SAFETY: waitpid with WNOHANG and a NULL status.
            let rc = unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
            assert_eq!(rc, -1, "pid {pid} was reaped by destroy");
            assert_eq!(
                std::io::Error::last_os_error().raw_os_error(),
                Some(libc::ECHILD)
            );
        }
    }

    pub fn report(ctx: &Ctx) {
        // The constructor created the key when the PAL was loaded, on the "host".
        let key_path = ctx.dir.join("keys/report.key");
        let original: [u8; 32] = fs::read(&key_path)
            .expect("the key exists after load")
            .try_into()
            .expect("32 bytes");
        assert_eq!(
            fs::metadata(&key_path).expect("stat").permissions().mode() & 0o777,
            0o600
        );
        // Swapping the key or removing the policy after load changes nothing: both were read
        // before "the container" existed.
        fs::write(&key_path, [0x55u8; 32]).expect("overwrite key");
        fs::remove_file(ctx.dir.join("policy.toml")).expect("rm policy");
        ctx.init();

        let manifest = Manifest::load(&manifest_path(&ctx.root)).expect("manifest");
        let signature = Signature::load(&signature_path(&ctx.root)).expect("signature");
        let target: Vec<u8> = (0..512).map(|i| (i * 7 % 251) as u8).collect();
        let report = ctx.pal.local_report(&target).expect("local report");
        assert_eq!(report.len(), REPORT_LEN);
        let body = verify_report(&original, &report).expect("verifies with the node key");
        assert_eq!(body.measurement, manifest.measurement());
        assert_eq!(hex::encode(body.signer), signature.signer);
        assert!(!body.debug);
        assert_eq!((body.product_id, body.security_version), (7, 3));
        assert_eq!(body.report_data[..], target[..64]);

        assert_eq!(
            verify_report(&[0x55; 32], &report),
            Err(ReportError::Mac),
            "the key file's new content is not the key"
        );
        for i in [0, 9, 12, 20, 60, 100, 143, 144, 175] {
            let mut flipped = report.clone();
            flipped[i] ^= 0x80;
            assert_eq!(
                verify_report(&original, &flipped),
                Err(ReportError::Mac),
                "byte {i}"
            );
        }
        let short = ctx.pal.local_report(&[1, 2, 3]).expect("short target info");
        let body = verify_report(&original, &short).expect("verify");
        assert_eq!(body.report_data[..3], [1, 2, 3]);
        assert!(body.report_data[3..].iter().all(|&b| b == 0));
        let empty = ctx.pal.local_report(&[]).expect("no target info");
        assert_eq!(
            verify_report(&original, &empty)
                .expect("verify")
                .report_data,
            [0; 64]
        );
        ctx.pal.destroy().expect("destroy");
    }
}
