//! A private containerd 1.6: own config, root, state and sockets under a temporary directory,
//! in a mount namespace of its own with a tmpfs on /run (containerd 1.6 and its shims keep
//! paths there whatever the config says: /run/containerd/s for shim sockets, the runtime's
//! state), so the host's containerd is never touched. Its PATH starts with a directory holding
//! the `containerd-shim-rune-v2` and `rune` under test; `ctr` runs inside its namespace.
//!
//! With [`ContainerdOpts::cri`] the CRI plugin is on, serving kubelet's API on the same socket
//! with the rune runtime handler, a locally built pause image and no CNI (pods use the host's
//! network).

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::symlink;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::Duration;

use crate::{
    all_pids, busybox_image_tar, cmdline, kill_exact, mount_points_of, pause_image_tar, proc_ppid,
    proc_start_time, profile_dir, remove_cgroups_named, run_cmd, unique, wait_for, Output, TempDir,
    IMAGE_REF, PAUSE_IMAGE_REF,
};

pub const RUNTIME: &str = "io.containerd.rune.v2";
/// The containerd namespace of the CRI plugin.
pub const CRI_NAMESPACE: &str = "k8s.io";

const SHIM_NAME: &str = "containerd-shim-rune-v2";

/// The binaries under test, linked into the daemon's PATH.
#[derive(Clone, Debug)]
pub struct Binaries {
    pub shim: PathBuf,
    pub rune: PathBuf,
}

impl Binaries {
    pub fn new(shim: impl Into<PathBuf>, rune: impl Into<PathBuf>) -> Binaries {
        Binaries {
            shim: shim.into(),
            rune: rune.into(),
        }
    }

    /// `containerd-shim-rune-v2` and `rune` in `dir`.
    pub fn in_dir(dir: &Path) -> Binaries {
        Binaries::new(dir.join(SHIM_NAME), dir.join("rune"))
    }

    /// The shim and rune of the cargo build the running test belongs to (`target/debug` for a
    /// debug test), or `RUNE_TEST_SHIM` / `RUNE_TEST_RUNE` when set. Cargo does not build
    /// other packages' binaries for a test, so they must have been built first (`cargo build
    /// -p shim-rune -p rune`); this panics saying so when one is missing.
    #[track_caller]
    pub fn from_build() -> Binaries {
        let mut bins = Binaries::in_dir(&profile_dir());
        if let Some(p) = std::env::var_os("RUNE_TEST_SHIM").filter(|p| !p.is_empty()) {
            bins.shim = PathBuf::from(p);
        }
        if let Some(p) = std::env::var_os("RUNE_TEST_RUNE").filter(|p| !p.is_empty()) {
            bins.rune = PathBuf::from(p);
        }
        bins.check();
        bins
    }

    #[track_caller]
    pub fn check(&self) {
        for p in [&self.shim, &self.rune] {
            assert!(
                p.is_file(),
                "{} is missing: build it first with `cargo build -p shim-rune -p rune`",
                p.display()
            );
        }
    }
}

/// What the CRI plugin is configured with.
#[derive(Clone, Debug)]
pub struct CriOpts {
    /// The runtime handler name pods ask for (`RunPodSandboxRequest.runtime_handler`).
    pub runtime_handler: String,
    /// Its `runtime_type`.
    pub runtime_type: String,
    /// The pod sandbox image; [`PAUSE_IMAGE_REF`] is imported into `k8s.io` at start.
    pub sandbox_image: String,
    /// Extra TOML lines in the runtime's table (e.g. `pod_annotations = ["..."]`).
    pub runtime_toml: String,
}

impl Default for CriOpts {
    fn default() -> CriOpts {
        CriOpts {
            runtime_handler: "rune".into(),
            runtime_type: RUNTIME.into(),
            sandbox_image: PAUSE_IMAGE_REF.into(),
            runtime_toml: String::new(),
        }
    }
}

/// Options of a private containerd.
#[derive(Default, Clone, Debug)]
pub struct ContainerdOpts {
    /// The shim and rune under test; None: [`Binaries::from_build`].
    pub binaries: Option<Binaries>,
    /// More executables linked into the directory first on the daemon's PATH (tools a shim
    /// runs, for instance).
    pub extra_bins: Vec<PathBuf>,
    /// `RUNE_SHIM_CONFIG` in the daemon's (and so the shims') environment; when None it names
    /// a file that does not exist, so the host's config is never read.
    pub shim_config: Option<PathBuf>,
    /// More environment for the daemon, which its shims inherit (e.g. `RUNE_PAL_DIRS`).
    pub env: Vec<(String, String)>,
    /// The CRI plugin; disabled when None.
    pub cri: Option<CriOpts>,
}

impl ContainerdOpts {
    /// The CRI plugin with the rune runtime handler and the local pause image.
    pub fn with_cri() -> ContainerdOpts {
        ContainerdOpts {
            cri: Some(CriOpts::default()),
            ..ContainerdOpts::default()
        }
    }

    pub fn binaries(mut self, binaries: Binaries) -> ContainerdOpts {
        self.binaries = Some(binaries);
        self
    }

    pub fn env(mut self, key: &str, value: impl Into<String>) -> ContainerdOpts {
        self.env.push((key.to_string(), value.into()));
        self
    }

    pub fn shim_config(mut self, path: impl Into<PathBuf>) -> ContainerdOpts {
        self.shim_config = Some(path.into());
        self
    }
}

/// The daemon's config.toml (version 2, as containerd 1.6 reads it).
pub fn config_toml(dir: &Path, address: &Path, cri: Option<&CriOpts>) -> String {
    let mut config = format!(
        r#"version = 2
root = "{root}"
state = "{state}"
temp = "{temp}"
{disabled}

[grpc]
  address = "{address}"

[ttrpc]
  address = "{address}.ttrpc"

[debug]
  address = ""
  level = "debug"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"
"#,
        root = dir.join("root").display(),
        state = dir.join("state").display(),
        temp = dir.join("tmp").display(),
        opt = dir.join("opt").display(),
        address = address.display(),
        disabled = if cri.is_some() {
            "disabled_plugins = []"
        } else {
            r#"disabled_plugins = ["io.containerd.grpc.v1.cri"]"#
        },
    );
    match cri {
        // This is how a node registers the runtime; with the plugin disabled it is inert.
        None => config.push_str(&format!(
            r#"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.rune]
  runtime_type = "{RUNTIME}"
"#
        )),
        Some(cri) => config.push_str(&format!(
            r#"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{sandbox_image}"
  # The daemon may lack CAP_SYS_RESOURCE: never ask for an oom_score_adj below its own.
  restrict_oom_score_adj = true
  # The daemon shares the host's kernel: loading containerd's AppArmor profile would change
  # the host, and SELinux labels are not this test's business.
  disable_apparmor = true
  enable_selinux = false
  # exec/attach/port-forward URLs: loopback only, any free port.
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

# Naming runtimes replaces the default table: runc stays, as on a real node.
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.{handler}]
  runtime_type = "{runtime_type}"
{runtime_toml}

# No CNI: pods use the host's network. Empty private directories keep the plugin from
# reading (or waiting on) the host's CNI set-up.
[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = "{cni_bin}"
  conf_dir = "{cni_conf}"
"#,
            sandbox_image = cri.sandbox_image,
            handler = cri.runtime_handler,
            runtime_type = cri.runtime_type,
            runtime_toml = cri.runtime_toml,
            cni_bin = dir.join("cni/bin").display(),
            cni_conf = dir.join("cni/conf").display(),
        )),
    }
    config
}

pub struct Containerd {
    pid: i32,
    child: Option<Child>,
    /// Open handle on the daemon's mount namespace: keeps it alive across restarts.
    ns: fs::File,
    ns_id: String,
    pub dir: TempDir,
    pub address: PathBuf,
    pub bin: PathBuf,
    /// The namespace `ctr` works in (unique per daemon; [`CRI_NAMESPACE`] for CRI's objects).
    pub namespace: String,
    opts: ContainerdOpts,
    log: PathBuf,
    /// Cgroups (by directory name) to remove when the daemon goes.
    cgroups: Mutex<Vec<String>>,
}

impl Containerd {
    /// Starts the daemon with the binaries under test first on its PATH and waits until it
    /// answers (and, with the CRI plugin, until the plugin is loaded and the pause image is
    /// imported).
    #[track_caller]
    pub fn start(opts: ContainerdOpts) -> Containerd {
        let bins = match &opts.binaries {
            Some(b) => b.clone(),
            None => Binaries::from_build(),
        };
        bins.check();
        let dir = TempDir::new("ctrd");
        let address = dir.join("c.sock");
        let bin = dir.join("bin");
        for d in ["bin", "root", "state", "tmp", "opt", "cni/bin", "cni/conf"] {
            fs::create_dir_all(dir.join(d)).expect("mkdir in the containerd dir");
        }
        symlink(&bins.shim, bin.join(SHIM_NAME)).expect("link shim");
        symlink(&bins.rune, bin.join("rune")).expect("link rune");
        for extra in &opts.extra_bins {
            let name = extra.file_name().expect("a file name for an extra binary");
            symlink(extra, bin.join(name)).expect("link extra binary");
        }
        let config = config_toml(dir.path(), &address, opts.cri.as_ref());
        fs::write(dir.join("config.toml"), config).expect("write containerd config");
        let log = dir.join("containerd.log");
        let script = "set -e; mount -n -t tmpfs -o mode=755 rune-test-run /run; exec \"$@\"";
        let mut cmd = Command::new("unshare");
        cmd.args([
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            script,
            "sh",
        ]);
        let (child, pid) = Self::spawn_daemon(cmd, &dir, &bin, &opts, &log);
        let host_ns = fs::read_link("/proc/self/ns/mnt")
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let held = wait_for(Duration::from_secs(10), || {
            let handle = fs::File::open(format!("/proc/{pid}/ns/mnt")).ok()?;
            let ns = fs::read_link(format!("/proc/self/fd/{}", handle.as_raw_fd()))
                .ok()?
                .to_string_lossy()
                .into_owned();
            (ns != host_ns).then_some((ns, handle))
        });
        let (ns_id, ns) = held.expect("containerd did not get its own mount namespace");
        let c = Containerd {
            pid,
            child: Some(child),
            ns,
            ns_id,
            dir,
            address,
            bin,
            namespace: unique("rs"),
            opts,
            log,
            cgroups: Mutex::new(Vec::new()),
        };
        c.wait_ready();
        if let Some(cri) = &c.opts.cri {
            if cri.sandbox_image == PAUSE_IMAGE_REF {
                c.import_image(CRI_NAMESPACE, &pause_image_tar());
            }
        }
        c
    }

    fn spawn_daemon(
        mut cmd: Command,
        dir: &TempDir,
        bin: &Path,
        opts: &ContainerdOpts,
        log: &Path,
    ) -> (Child, i32) {
        cmd.arg("containerd")
            .arg("--config")
            .arg(dir.join("config.toml"));
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        cmd.env("PATH", path);
        match &opts.shim_config {
            Some(p) => cmd.env("RUNE_SHIM_CONFIG", p),
            // An empty file: the defaults, never the host's /etc/inclavare-containers.
            None => {
                let empty = dir.join("empty-shim-config.toml");
                fs::write(&empty, "").expect("write an empty shim config");
                cmd.env("RUNE_SHIM_CONFIG", empty)
            }
        };
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        let logf = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("daemon log");
        cmd.stdin(Stdio::null())
            .stdout(logf.try_clone().expect("dup log"))
            .stderr(logf)
            .process_group(0);
        let child = cmd.spawn().expect("spawn containerd");
        let pid = child.id() as i32;
        (child, pid)
    }

    #[track_caller]
    fn wait_ready(&self) {
        let mut last = String::new();
        let ready = wait_for(Duration::from_secs(30), || {
            let o = self.ctr(&["version"]);
            last = o.to_string();
            o.success().then_some(())
        });
        assert!(
            ready.is_some(),
            "containerd does not answer: {last}\n{}",
            self.log_tail()
        );
        if self.opts.cri.is_some() {
            self.wait_cri_plugin();
        }
    }

    /// The CRI plugin's status in `ctr plugins ls` is "ok". Its service may still answer
    /// "not initialized" for a moment after that: CRI clients retry `Version` first.
    #[track_caller]
    fn wait_cri_plugin(&self) {
        let mut last = String::new();
        let status = wait_for(Duration::from_secs(30), || {
            let o = self.ctr(&["plugins", "ls"]);
            last = o.to_string();
            o.stdout.lines().find_map(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                (cols.first() == Some(&"io.containerd.grpc.v1") && cols.get(1) == Some(&"cri"))
                    .then(|| cols.last().unwrap_or(&"").to_string())
            })
        });
        assert_eq!(
            status.as_deref(),
            Some("ok"),
            "the CRI plugin did not load: {last}\n{}",
            self.log_tail()
        );
    }

    /// Stops containerd (SIGTERM, as a service manager would; shims keep running) and starts a
    /// new one with the same config, in the same mount namespace.
    #[track_caller]
    pub fn restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.pid),
                nix::sys::signal::Signal::SIGTERM,
            );
            let stopped = wait_for(Duration::from_secs(10), || {
                child.try_wait().ok().flatten().map(|_| ())
            });
            if stopped.is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let mut cmd = self.nsenter();
        cmd.arg("--");
        let (child, pid) = Self::spawn_daemon(cmd, &self.dir, &self.bin, &self.opts, &self.log);
        self.child = Some(child);
        self.pid = pid;
        self.wait_ready();
    }

    /// The daemon's pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The CRI endpoint, as kubelet's `--container-runtime-endpoint` names it.
    pub fn cri_endpoint(&self) -> String {
        format!("unix://{}", self.address.display())
    }

    /// `nsenter` into the daemon's mount namespace; append `--` and the command.
    fn nsenter(&self) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!(
            "--mount=/proc/{}/fd/{}",
            std::process::id(),
            self.ns.as_raw_fd()
        ));
        c
    }

    /// `ctr` against this daemon in namespace `ns`.
    pub fn ctr_ns_cmd<S: AsRef<OsStr>>(&self, ns: &str, args: &[S]) -> Command {
        let mut c = self.nsenter();
        c.args(["--", "ctr", "-a"])
            .arg(&self.address)
            .arg("-n")
            .arg(ns)
            .args(args);
        c
    }

    pub fn ctr_cmd<S: AsRef<OsStr>>(&self, args: &[S]) -> Command {
        self.ctr_ns_cmd(&self.namespace, args)
    }

    #[track_caller]
    pub fn ctr<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        run_cmd(&mut self.ctr_cmd(args), Duration::from_secs(60))
    }

    #[track_caller]
    pub fn ctr_ns<S: AsRef<OsStr>>(&self, ns: &str, args: &[S]) -> Output {
        run_cmd(&mut self.ctr_ns_cmd(ns, args), Duration::from_secs(60))
    }

    /// `ctr run --runtime io.containerd.rune.v2 [opts] IMAGE id cmd...`.
    #[track_caller]
    pub fn run(&self, opts: &[&str], id: &str, cmd: &[&str]) -> Output {
        let mut args = vec!["run", "--runtime", RUNTIME];
        args.extend_from_slice(opts);
        args.push(IMAGE_REF);
        args.push(id);
        args.extend_from_slice(cmd);
        self.ctr(&args)
    }

    /// `ctr images import` of a docker archive into namespace `ns` (unpacked for the default
    /// snapshotter, which the CRI plugin uses too).
    #[track_caller]
    pub fn import_image(&self, ns: &str, tar: &Path) {
        let o = self.ctr_ns(ns, &["images", "import", &tar.to_string_lossy()]);
        assert!(
            o.success(),
            "ctr images import failed: {o}\n{}",
            self.log_tail()
        );
    }

    /// The busybox image ([`IMAGE_REF`]) into `ctr`'s namespace.
    #[track_caller]
    pub fn import_busybox(&self) {
        self.import_image(&self.namespace, &busybox_image_tar());
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn log_tail(&self) -> String {
        let s = self.log();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    /// The bundle directory containerd gives task `id` (in `ctr`'s namespace).
    pub fn bundle(&self, id: &str) -> PathBuf {
        self.bundle_ns(&self.namespace, id)
    }

    pub fn bundle_ns(&self, ns: &str, id: &str) -> PathBuf {
        self.dir
            .join("state/io.containerd.runtime.v2.task")
            .join(ns)
            .join(id)
    }

    /// A path inside the daemon's mount namespace, reachable from here.
    pub fn in_daemon_ns(&self, path: &str) -> PathBuf {
        PathBuf::from(format!(
            "/proc/{}/root/{}",
            self.pid,
            path.trim_start_matches('/')
        ))
    }

    /// rune's state directory for `id` in `ctr`'s namespace exists (default root, as seen
    /// in the daemon's namespace).
    pub fn rune_state_exists(&self, id: &str) -> bool {
        self.rune_state_entries(&self.namespace)
            .iter()
            .any(|e| e == id)
    }

    /// Containers rune keeps state for in containerd namespace `ns`.
    pub fn rune_state_entries(&self, ns: &str) -> Vec<String> {
        let dir = self.in_daemon_ns(&format!("/run/containerd/rune/{ns}"));
        fs::read_dir(dir)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Mount points in the daemon's namespace that mention `needle`.
    pub fn mounts_matching(&self, needle: &str) -> Vec<String> {
        mount_points_of(&self.pid.to_string())
            .into_iter()
            .map(|p| p.to_string_lossy().into_owned())
            .filter(|p| p.contains(needle))
            .collect()
    }

    /// Mount points in the daemon's namespace below its directory (root, state: rootfs
    /// snapshots, sandbox /dev/shm...). None once every container and pod is gone.
    pub fn mounts_below_dir(&self) -> Vec<String> {
        mount_points_of(&self.pid.to_string())
            .into_iter()
            .filter(|p| p.starts_with(self.dir.path()))
            .map(|p| p.to_string_lossy().into_owned())
            .collect()
    }

    /// Pids of shim processes of this daemon (`containerd-shim-rune-v2` servers).
    pub fn rune_shims(&self) -> Vec<i32> {
        self.family()
            .into_iter()
            .map(|(p, _)| p)
            .filter(|&p| {
                let c = cmdline(p);
                c.contains(SHIM_NAME) && c.contains("-socket")
            })
            .collect()
    }

    /// The shim server serving `id` in `ctr`'s namespace (its `-id`, or a grouped one: found
    /// through the address file in the bundle).
    pub fn shim_of(&self, id: &str) -> Option<i32> {
        self.shim_of_ns(&self.namespace, id)
    }

    pub fn shim_of_ns(&self, ns: &str, id: &str) -> Option<i32> {
        let address =
            fs::read_to_string(self.bundle_ns(ns, id).join("address")).unwrap_or_default();
        let by_id = format!("-id {id} ");
        let procs: Vec<i32> = self.family().into_iter().map(|(p, _)| p).collect();
        let shims = || {
            procs
                .iter()
                .copied()
                .filter(|&p| cmdline(p).contains("containerd-shim"))
        };
        // Ours carry the socket address; the Go shims get theirs as a descriptor.
        shims()
            .find(|&p| !address.trim().is_empty() && cmdline(p).contains(address.trim()))
            .or_else(|| shims().find(|&p| cmdline(p).contains(&by_id)))
    }

    /// (pid, start) of every process in the daemon's mount namespace and their descendants.
    pub fn family(&self) -> Vec<(i32, u64)> {
        let mut procs = Vec::new();
        let mut set: HashSet<i32> = HashSet::new();
        for pid in all_pids() {
            let ns = fs::read_link(format!("/proc/{pid}/ns/mnt"))
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default();
            if ns == self.ns_id {
                set.insert(pid);
            }
            if let (Some(ppid), Some(start)) = (proc_ppid(pid), proc_start_time(pid)) {
                procs.push((pid, ppid, start));
            }
        }
        loop {
            let before = set.len();
            for &(pid, ppid, _) in &procs {
                if set.contains(&ppid) {
                    set.insert(pid);
                }
            }
            if set.len() == before {
                break;
            }
        }
        procs
            .into_iter()
            .filter(|(pid, _, _)| set.contains(pid) && *pid > 1)
            .map(|(pid, _, start)| (pid, start))
            .collect()
    }

    /// The shim's TTRPC address for task `id`, reachable from this (host) mount namespace
    /// through the daemon's `/proc/<pid>/root`.
    pub fn shim_address(&self, id: &str) -> String {
        let address = fs::read_to_string(self.bundle(id).join("address")).expect("address file");
        let path = address.trim().trim_start_matches("unix://");
        format!("unix:///proc/{}/root{path}", self.pid)
    }

    /// Status column of `ctr task ls` for `id` (None when not listed).
    pub fn task_status(&self, id: &str) -> Option<String> {
        let o = self.ctr(&["task", "ls"]);
        o.stdout.lines().find_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols.first() == Some(&id)).then(|| cols.get(2).unwrap_or(&"").to_string())
        })
    }

    #[track_caller]
    pub fn wait_status(&self, id: &str, status: &str) {
        let ok = wait_for(Duration::from_secs(20), || {
            (self.task_status(id).as_deref() == Some(status)).then_some(())
        });
        assert!(
            ok.is_some(),
            "task {id} never reached {status}: {:?}\n{}",
            self.task_status(id),
            self.log_tail()
        );
    }

    /// Also removes cgroups called `name` when the daemon goes (e.g. a pod's cgroup parent).
    pub fn remove_cgroup_on_drop(&self, name: &str) {
        if let Ok(mut v) = self.cgroups.lock() {
            v.push(name.to_string());
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if self.child.is_some() {
            let quiet = |mut cmd: Command| {
                cmd.stdin(Stdio::null())
                    .output()
                    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                    .unwrap_or_default()
            };
            let namespaces = quiet(self.ctr_cmd(&["namespaces", "ls", "-q"]));
            for ns in namespaces.split_whitespace() {
                let tasks = quiet(self.ctr_ns_cmd(ns, &["tasks", "ls", "-q"]));
                for t in tasks.split_whitespace() {
                    quiet(self.ctr_ns_cmd(ns, &["tasks", "kill", "-a", "-s", "SIGKILL", t]));
                    quiet(self.ctr_ns_cmd(ns, &["tasks", "delete", "-f", t]));
                }
            }
        }
        let victims = self.family();
        if let Some(mut child) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.pid),
                nix::sys::signal::Signal::SIGTERM,
            );
            if wait_for(Duration::from_secs(5), || {
                child.try_wait().ok().flatten().map(|_| ())
            })
            .is_none()
            {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        for _ in 0..50 {
            let mut left = self.family();
            left.extend(
                victims
                    .iter()
                    .copied()
                    .filter(|&(p, start)| proc_start_time(p) == Some(start)),
            );
            if left.is_empty() {
                break;
            }
            for (pid, start) in left {
                kill_exact(pid, start);
            }
            thread::sleep(Duration::from_millis(50));
        }
        remove_cgroups_named(&self.namespace);
        let extra = self.cgroups.lock().map(|v| v.clone()).unwrap_or_default();
        for name in extra {
            remove_cgroups_named(&name);
        }
    }
}
