//! The shim: containerd's `start`/`delete` actions and the Task service, with the semantics of
//! containerd's runc v2 shim, driving the rune CLI.

use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use containerd_shim::api::{self, Empty, Options};
use containerd_shim::protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskIO, TaskOOM, TaskPaused,
    TaskResumed, TaskStart,
};
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::protos::protobuf::{Message, MessageField};
use containerd_shim::protos::shim::oci::ProcessDetails;
use containerd_shim::protos::ttrpc::{self, Code};
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::util::JsonOptions;
use containerd_shim::{Config as ShimConfig, DeleteResponse, ExitSignal, Flags, StartOpts};
use containerd_shim::{Task, TtrpcContext, TtrpcResult};
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::carrier;
use crate::config::Config;
use crate::events::Events;
use crate::mount::{self, Mount};
use crate::oom::OomWatcher;
use crate::process::{Container, Process, State};
use crate::reaper::{Exit, Reaper};
use crate::runtime::{self, CreateFlags, Runtime};
use crate::stdio::{self, StdioPaths};

/// Annotations that put containers in one shim (one shim per pod), first match wins.
const GROUP_LABELS: [&str; 2] = [
    "io.containerd.runc.v2.group",
    "io.kubernetes.cri.sandbox-id",
];

const INIT_PID_FILE: &str = "init.pid";
const RUNC_OPTIONS_TYPE: &str = "containerd.runc.v1.Options";
const PROCESS_DETAILS_TYPE: &str = "containerd.runc.v1.ProcessDetails";

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn status(code: Code, message: impl Into<String>) -> ttrpc::Error {
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, message.into()))
}

fn timestamp(t: SystemTime) -> Timestamp {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    Timestamp {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
        ..Default::default()
    }
}

fn exited_at(p: &Process) -> MessageField<Timestamp> {
    p.exited_at.map(timestamp).into()
}

/// The shim process (both the short-lived `start`/`delete` invocations and the server).
pub struct Shim {
    id: String,
    namespace: String,
    /// The TTRPC socket this server listens on (`-socket`).
    socket: String,
    debug: bool,
    exit: Arc<ExitSignal>,
}

impl containerd_shim::Shim for Shim {
    type T = TaskService;

    fn new(_runtime_id: &str, args: &Flags, _config: &mut ShimConfig) -> Self {
        Shim {
            id: args.id.clone(),
            namespace: args.namespace.clone(),
            socket: args.socket.clone(),
            debug: args.debug,
            exit: Arc::new(ExitSignal::default()),
        }
    }

    fn start_shim(&mut self, opts: StartOpts) -> containerd_shim::Result<String> {
        let grouping = group_of(Path::new("config.json")).unwrap_or_else(|| opts.id.clone());
        let address = containerd_shim::socket_address(&opts.address, &opts.namespace, &grouping);
        let socket = address.strip_prefix("unix://").unwrap_or(&address);
        if std::os::unix::net::UnixStream::connect(socket).is_ok() {
            // The pod's shim is already running: this container joins it.
            containerd_shim::util::write_address(&address)?;
            return Ok(address);
        }
        let _ = fs::remove_file(socket);
        let exe = std::env::current_exe()
            .map_err(|e| containerd_shim::Error::Other(format!("current_exe: {e}")))?;
        let mut cmd = Command::new(exe);
        cmd.args([
            "-namespace",
            &opts.namespace,
            "-id",
            &opts.id,
            "-address",
            &opts.address,
            "-socket",
            &address,
        ]);
        if opts.debug {
            cmd.arg("-debug");
        }
        // Its own process group: signals meant for containerd's group do not reach the shim.
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0);
        let mut child = cmd
            .spawn()
            .map_err(|e| containerd_shim::Error::Other(format!("spawn shim: {e}")))?;
        // The server closes its end of stdout once it listens.
        if let Some(mut out) = child.stdout.take() {
            let mut sink = Vec::new();
            let _ = out.read_to_end(&mut sink);
        }
        if let Ok(Some(st)) = child.try_wait() {
            if !st.success() {
                return Err(containerd_shim::Error::Other(format!(
                    "shim server exited: {st}"
                )));
            }
        }
        let pid = child.id();
        let _ = fs::write("shim.pid", pid.to_string());
        containerd_shim::cgroup::set_cgroup_and_oom_score(pid)?;
        containerd_shim::util::write_address(&address)?;
        Ok(address)
    }

    fn delete_shim(&mut self) -> containerd_shim::Result<DeleteResponse> {
        let bundle = std::env::current_dir()
            .map_err(|e| containerd_shim::Error::Other(format!("current_dir: {e}")))?;
        let opts = read_options(&bundle);
        let binary = fs::read_to_string(bundle.join("runtime"))
            .map(PathBuf::from)
            .unwrap_or_else(|_| runtime::find_binary(&opts.binary_name));
        let rt = Runtime::new(
            binary,
            runtime::state_root(&opts.root, &self.namespace),
            &bundle,
            opts.systemd_cgroup,
            None,
        );
        if let Err(e) = rt.delete(&self.id, true) {
            eprintln!("failed to remove runtime container {}: {e}", self.id);
        }
        if let Err(e) = mount::unmount_all(&bundle.join("rootfs")) {
            eprintln!("failed to unmount the rootfs of {}: {e}", self.id);
        }
        let pid = fs::read_to_string(bundle.join(INIT_PID_FILE))
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .unwrap_or(0);
        Ok(DeleteResponse {
            pid,
            exit_status: 128 + libc::SIGKILL as u32,
            exited_at: MessageField::some(timestamp(SystemTime::now())),
            ..Default::default()
        })
    }

    fn wait(&mut self) {
        self.exit.wait();
    }

    fn create_task_service(&self, _publisher: RemotePublisher) -> TaskService {
        // Events go through our own connection (events.rs), which is made again after a
        // containerd restart; the library's publisher is not used.
        let address = std::env::var("TTRPC_ADDRESS").unwrap_or_default();
        match Config::load() {
            Ok(cfg) => apply_log_level(&cfg, self.debug),
            Err(e) => log::warn!("{e}"),
        }
        let events = Events::start(address, self.namespace.clone());
        let (tx, rx) = channel::<Exit>();
        let reaper = match Reaper::start(tx) {
            Ok(r) => r,
            Err(e) => {
                // Without a reaper nothing can be waited for; the shim cannot work.
                log::error!("cannot start the reaper: {e}");
                std::process::exit(1);
            }
        };
        let oom_events = events.clone();
        let shared = Arc::new(Shared {
            namespace: self.namespace.clone(),
            socket: self.socket.clone(),
            debug: self.debug,
            exit: Arc::clone(&self.exit),
            containers: Mutex::new(HashMap::new()),
            table: Mutex::new(PidTable::default()),
            events,
            reaper,
            oom: OomWatcher::new(Box::new(move |id: &str| {
                oom_events.send(TaskOOM {
                    container_id: id.to_string(),
                    ..Default::default()
                })
            })),
        });
        let handler = Arc::clone(&shared);
        let spawned = std::thread::Builder::new()
            .name("exits".into())
            .spawn(move || handle_exits(handler, rx));
        if let Err(e) = spawned {
            log::error!("cannot start the exit handler: {e}");
            std::process::exit(1);
        }
        log::info!("shim started for namespace {}", self.namespace);
        TaskService { shared }
    }
}

fn apply_log_level(cfg: &Config, debug: bool) {
    let mut level = cfg.log_filter();
    if debug && level < log::LevelFilter::Debug {
        level = log::LevelFilter::Debug;
    }
    log::set_max_level(level);
}

/// The group (pod) a bundle's container belongs to, from its annotations.
fn group_of(config: &Path) -> Option<String> {
    let text = fs::read_to_string(config).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let annotations = v.get("annotations")?.as_object()?;
    GROUP_LABELS.iter().find_map(|k| {
        annotations
            .get(*k)
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    })
}

/// `<bundle>/options.json` as written at Create; defaults when missing or unreadable.
fn read_options(bundle: &Path) -> Options {
    containerd_shim::util::read_options(bundle).unwrap_or_default()
}

fn write_file_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, data)?;
    fs::rename(&tmp, path)
}

/// Exit routing: which process a pid is, and exits nobody claimed yet (a process may exit
/// before `rune create`/`rune exec` returns and its pid is known).
#[derive(Default)]
struct PidTable {
    owners: HashMap<i32, (String, String)>,
    pending: HashMap<u64, Vec<Exit>>,
    next: u64,
}

pub struct Shared {
    namespace: String,
    socket: String,
    debug: bool,
    exit: Arc<ExitSignal>,
    containers: Mutex<HashMap<String, Arc<Container>>>,
    table: Mutex<PidTable>,
    events: Events,
    reaper: Arc<Reaper>,
    oom: OomWatcher,
}

fn handle_exits(shared: Arc<Shared>, rx: Receiver<Exit>) {
    for exit in rx {
        let owner = {
            let mut t = lock(&shared.table);
            match t.owners.remove(&exit.pid) {
                Some(o) => Some(o),
                None => {
                    for list in t.pending.values_mut() {
                        list.push(exit);
                    }
                    None
                }
            }
        };
        if let Some((cid, eid)) = owner {
            if let Some(c) = shared.container(&cid) {
                let mut procs = c.lock();
                if let Some(p) = procs.get_mut(&eid) {
                    if p.pid as i32 == exit.pid && p.state != State::Stopped {
                        shared.process_exited(&c, p, exit);
                    }
                }
            }
        }
    }
}

/// A registration for the exits of processes whose pids are not known yet.
struct Pending<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        lock(&self.shared.table).pending.remove(&self.id);
    }
}

impl Shared {
    fn container(&self, id: &str) -> Option<Arc<Container>> {
        lock(&self.containers).get(id).cloned()
    }

    fn get(&self, id: &str) -> TtrpcResult<Arc<Container>> {
        self.container(id)
            .ok_or_else(|| status(Code::NOT_FOUND, format!("container {id}: not found")))
    }

    fn pending(&self) -> Pending<'_> {
        let mut t = lock(&self.table);
        t.next += 1;
        let id = t.next;
        t.pending.insert(id, Vec::new());
        Pending { shared: self, id }
    }

    /// Records `pid` as process (cid, eid), unless it already exited while `pending` was open:
    /// then its exit is returned.
    fn register(&self, pending: &Pending<'_>, pid: i32, cid: &str, eid: &str) -> Option<Exit> {
        let mut t = lock(&self.table);
        let early = t
            .pending
            .get(&pending.id)
            .and_then(|list| list.iter().find(|e| e.pid == pid).copied());
        match early {
            None => {
                t.owners.insert(pid, (cid.to_string(), eid.to_string()));
            }
            Some(e) => log::debug!(
                "process {pid} exited (status {}) before its start returned",
                e.status
            ),
        }
        early
    }

    /// Marks `p` exited and publishes TaskExit; the caller holds the container's lock.
    fn process_exited(&self, c: &Container, p: &mut Process, exit: Exit) {
        let init = p.exec_id.is_empty();
        if init && c.kill_all_on_exit {
            // Shared PID namespace: the kernel does not kill the others with init.
            if let Err(e) = c.runtime.kill(&c.id, libc::SIGKILL as u32, true) {
                log::warn!("container {}: kill remaining processes: {e}", c.id);
            }
        }
        p.set_exited(exit.status, exit.at);
        if init {
            log::info!(
                "container {}: init process {} exited with status {}",
                c.id,
                exit.pid,
                exit.status
            );
        } else {
            log::info!(
                "container {}: exec {} (pid {}) exited with status {}",
                c.id,
                p.exec_id,
                exit.pid,
                exit.status
            );
        }
        self.events.send(TaskExit {
            container_id: c.id.clone(),
            id: if init {
                c.id.clone()
            } else {
                p.exec_id.clone()
            },
            pid: p.pid,
            exit_status: p.exit_status,
            exited_at: exited_at(p),
            ..Default::default()
        });
        c.changed.notify_all();
    }

    /// Runs the container's carrier on its mounted rootfs. Holds no lock of the service: a
    /// conversion can take long, and the pod's other containers must not wait for it.
    fn convert(
        &self,
        id: &str,
        carrier: &dyn carrier::Carrier,
        config: &Config,
        bundle: &Path,
        spec: &mut Spec,
    ) -> Result<(), String> {
        let started = std::time::Instant::now();
        let rootfs = bundle.join("rootfs");
        let work = carrier::cache_scratch(config)
            .map_err(|e| format!("carrier {}: scratch directory: {e}", carrier.name()))?;
        let tools = carrier::Tools::new(Some(Arc::clone(&self.reaper)));
        let ctx = carrier::Context {
            id,
            rootfs: &rootfs,
            config,
            tools: &tools,
            work: work.path(),
        };
        // A carrier parses hostile image content; a bug there must cost one Create, never the
        // shim that serves the pod's other containers.
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            carrier::run(carrier, &ctx, spec)
        }));
        let outcome = match ran {
            Ok(result) => result.map_err(|e| format!("carrier {}: {e}", carrier.name()))?,
            Err(_) => {
                return Err(format!(
                    "carrier {}: internal error (panic)",
                    carrier.name()
                ))
            }
        };
        log::info!(
            "container {id}: carrier {} {} in {} ms: {}",
            carrier.name(),
            match (config.enclave_runtime.signature_method, outcome.cached) {
                (crate::config::SignatureMethod::Client, _) => "verified the client-signed image",
                (_, true) => "restored a cached conversion",
                (_, false) => "converted and signed the image",
            },
            started.elapsed().as_millis(),
            outcome.description
        );
        Ok(())
    }

    fn create(&self, req: &api::CreateTaskRequest) -> TtrpcResult<u32> {
        let id = req.id.as_str();
        if id.is_empty() {
            return Err(status(Code::INVALID_ARGUMENT, "container id is empty"));
        }
        if self.container(id).is_some() {
            return Err(status(
                Code::ALREADY_EXISTS,
                format!("container {id}: already exists"),
            ));
        }
        let config =
            Config::load().map_err(|e| status(Code::FAILED_PRECONDITION, e.to_string()))?;
        apply_log_level(&config, self.debug);
        log::debug!("create {id}: bundle {}", req.bundle);

        let opts = runtime_options(req.options.as_ref())?;
        let bundle = PathBuf::from(&req.bundle);
        let spec_path = bundle.join("config.json");
        let mut spec = Spec::load(&spec_path).map_err(|e| {
            status(
                Code::INVALID_ARGUMENT,
                format!("container {id}: cannot read {}: {e}", spec_path.display()),
            )
        })?;
        let carrier = carrier::select(&spec)
            .map_err(|e| status(Code::INVALID_ARGUMENT, format!("container {id}: {e}")))?;

        let rootfs_dir = bundle.join("rootfs");
        let mounts: Vec<Mount> = req
            .rootfs
            .iter()
            .map(|m| Mount {
                kind: m.type_.clone(),
                source: m.source.clone(),
                options: m.options.clone(),
            })
            .collect();
        let mounted = if mounts.is_empty() {
            None
        } else {
            fs::create_dir_all(&rootfs_dir)
                .and_then(|()| fs::set_permissions(&rootfs_dir, fs::Permissions::from_mode(0o711)))
                .and_then(|()| mount::mount_all(&mounts, &rootfs_dir))
                .map_err(|e| {
                    status(Code::INTERNAL, format!("container {id}: mount rootfs: {e}"))
                })?;
            Some(rootfs_dir.clone())
        };
        let unmount = |why: &str| {
            if let Some(r) = &mounted {
                if let Err(e) = mount::unmount_all(r) {
                    log::warn!("container {id}: unmount rootfs after {why}: {e}");
                }
            }
        };

        if let Some(carrier) = carrier {
            if let Err(e) = self.convert(id, carrier.as_ref(), &config, &bundle, &mut spec) {
                unmount("carrier failure");
                log::error!("container {id}: {e}");
                return Err(status(
                    Code::FAILED_PRECONDITION,
                    format!("container {id}: {e}"),
                ));
            }
            if let Err(e) = spec.save(&spec_path) {
                unmount("carrier failure");
                return Err(status(
                    Code::INTERNAL,
                    format!("container {id}: write {}: {e}", spec_path.display()),
                ));
            }
        }

        let binary = runtime::find_binary(&opts.binary_name);
        let written = serde_json::to_vec(&JsonOptions::from(opts.clone()))
            .map_err(std::io::Error::other)
            .and_then(|json| write_file_atomic(&bundle.join("options.json"), &json))
            .and_then(|()| {
                write_file_atomic(
                    &bundle.join("runtime"),
                    binary.as_os_str().as_encoded_bytes(),
                )
            });
        if let Err(e) = written {
            unmount("options failure");
            return Err(status(
                Code::INTERNAL,
                format!("container {id}: write options: {e}"),
            ));
        }
        let rt = Runtime::new(
            binary,
            runtime::state_root(&opts.root, &self.namespace),
            &bundle,
            opts.systemd_cgroup,
            Some(Arc::clone(&self.reaper)),
        );

        let paths = StdioPaths {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        };
        let fail = |msg: String| {
            let _ = rt.delete(id, true);
            unmount("create failure");
            log::error!("container {id}: {msg}");
            status(Code::UNKNOWN, msg)
        };
        let prepared = match stdio::prepare(&paths) {
            Ok(p) => p,
            Err(e) => return Err(fail(format!("container {id}: stdio: {e}"))),
        };
        let mut io = prepared.io;
        let pid_file = bundle.join(INIT_PID_FILE);
        let _ = fs::remove_file(&pid_file);
        let pending = self.pending();
        let (mut running, offset) = match rt.spawn_create(
            id,
            &bundle,
            &pid_file,
            prepared.console_socket.as_ref().map(|s| s.path()),
            CreateFlags {
                no_pivot: opts.no_pivot_root,
                no_new_keyring: opts.no_new_keyring,
            },
            prepared.child,
        ) {
            Ok(r) => r,
            Err(e) => {
                io.close();
                return Err(fail(e.message));
            }
        };
        if let Some(socket) = &prepared.console_socket {
            match socket.receive(&mut running) {
                Ok(master) => {
                    if let Err(e) = stdio::attach_console(&mut io, master) {
                        let _ = running.wait_timeout(Some(Duration::from_secs(30)));
                        io.close();
                        return Err(fail(format!("container {id}: console: {e}")));
                    }
                }
                Err(e) => {
                    let result = rt.finish("OCI runtime create failed", running, offset);
                    io.close();
                    return Err(fail(match result {
                        Err(re) => re.message,
                        Ok(()) => format!("container {id}: console: {e}"),
                    }));
                }
            }
        }
        drop(prepared.console_socket);
        if let Err(e) = rt.finish("OCI runtime create failed", running, offset) {
            io.close();
            return Err(fail(e.message));
        }
        let pid = match fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
        {
            Some(p) if p > 0 => p,
            _ => {
                io.close();
                return Err(fail(format!(
                    "container {id}: no pid in {}",
                    pid_file.display()
                )));
            }
        };

        let mut init = Process::new("", paths.clone());
        init.pid = pid;
        init.io = io;
        let kill_all_on_exit = should_kill_all_on_exit(&spec);
        let container = Arc::new(Container::new(
            id,
            bundle.clone(),
            rt,
            mounted,
            kill_all_on_exit,
            init,
        ));
        let mut procs = container.lock();
        lock(&self.containers).insert(id.to_string(), Arc::clone(&container));
        let early = self.register(&pending, pid as i32, id, "");
        drop(pending);
        self.events.send(TaskCreate {
            container_id: id.to_string(),
            bundle: req.bundle.clone(),
            rootfs: req
                .rootfs
                .iter()
                .map(|m| containerd_shim::protos::types::mount::Mount {
                    type_: m.type_.clone(),
                    source: m.source.clone(),
                    target: m.target.clone(),
                    options: m.options.clone(),
                    ..Default::default()
                })
                .collect(),
            io: MessageField::some(TaskIO {
                stdin: paths.stdin.clone(),
                stdout: paths.stdout.clone(),
                stderr: paths.stderr.clone(),
                terminal: paths.terminal,
                ..Default::default()
            }),
            checkpoint: req.checkpoint.clone(),
            pid,
            ..Default::default()
        });
        log::info!("container {id}: created, init pid {pid}");
        if let Some(exit) = early {
            self.process_exited(&container, &mut procs.init, exit);
        }
        Ok(pid)
    }

    fn start(&self, req: &api::StartRequest) -> TtrpcResult<u32> {
        let c = self.get(&req.id)?;
        let mut procs = c.lock();
        if req.exec_id.is_empty() {
            let init = &mut procs.init;
            if init.state != State::Created {
                return Err(status(
                    Code::FAILED_PRECONDITION,
                    format!(
                        "container {}: cannot start a {} process",
                        c.id,
                        init.state.name()
                    ),
                ));
            }
            c.runtime
                .start(&c.id)
                .map_err(|e| status(Code::UNKNOWN, e.message))?;
            init.state = State::Running;
            let pid = init.pid;
            self.events.send(TaskStart {
                container_id: c.id.clone(),
                pid,
                ..Default::default()
            });
            log::info!("container {}: started", c.id);
            if let Err(e) = self.oom.add(&c.id, pid) {
                log::warn!("container {}: no OOM notifications: {e}", c.id);
            }
            return Ok(pid);
        }

        let eid = req.exec_id.clone();
        let p = procs
            .execs
            .get_mut(&eid)
            .ok_or_else(|| status(Code::NOT_FOUND, format!("exec {eid}: not found")))?;
        if p.state != State::Created {
            return Err(status(
                Code::FAILED_PRECONDITION,
                format!("exec {eid}: cannot start a {} process", p.state.name()),
            ));
        }
        let process_file = c.bundle.join(format!(".exec-{eid}.json"));
        let pid_file = c.bundle.join(format!("{eid}.pid"));
        let _ = fs::remove_file(&pid_file);
        fs::write(&process_file, &p.spec).map_err(|e| {
            status(
                Code::INTERNAL,
                format!("exec {eid}: write {}: {e}", process_file.display()),
            )
        })?;
        let result = self.start_exec(&c, p, &process_file, &pid_file);
        let _ = fs::remove_file(&process_file);
        let (pid, early) = result?;
        p.pid = pid;
        p.state = State::Running;
        self.events.send(TaskExecStarted {
            container_id: c.id.clone(),
            exec_id: eid.clone(),
            pid,
            ..Default::default()
        });
        log::info!("container {}: exec {eid} started, pid {pid}", c.id);
        if let Some(exit) = early {
            self.process_exited(&c, p, exit);
        }
        Ok(pid)
    }

    fn start_exec(
        &self,
        c: &Container,
        p: &mut Process,
        process_file: &Path,
        pid_file: &Path,
    ) -> TtrpcResult<(u32, Option<Exit>)> {
        let eid = p.exec_id.clone();
        let prepared = stdio::prepare(&p.stdio)
            .map_err(|e| status(Code::UNKNOWN, format!("exec {eid}: stdio: {e}")))?;
        let mut io = prepared.io;
        let pending = self.pending();
        let (mut running, offset) = c
            .runtime
            .spawn_exec(
                &c.id,
                process_file,
                pid_file,
                prepared.console_socket.as_ref().map(|s| s.path()),
                prepared.child,
            )
            .map_err(|e| status(Code::UNKNOWN, e.message))?;
        if let Some(socket) = &prepared.console_socket {
            match socket.receive(&mut running) {
                Ok(master) => {
                    if let Err(e) = stdio::attach_console(&mut io, master) {
                        let _ = running.wait_timeout(Some(Duration::from_secs(30)));
                        io.close();
                        return Err(status(Code::UNKNOWN, format!("exec {eid}: console: {e}")));
                    }
                }
                Err(e) => {
                    let result = c.runtime.finish("OCI runtime exec failed", running, offset);
                    io.close();
                    return Err(status(
                        Code::UNKNOWN,
                        match result {
                            Err(re) => re.message,
                            Ok(()) => format!("exec {eid}: console: {e}"),
                        },
                    ));
                }
            }
        }
        if let Err(e) = c.runtime.finish("OCI runtime exec failed", running, offset) {
            io.close();
            log::error!("container {}: exec {eid}: {e}", c.id);
            return Err(status(Code::UNKNOWN, e.message));
        }
        let pid = fs::read_to_string(pid_file)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .filter(|p| *p > 0)
            .ok_or_else(|| {
                io.close();
                status(
                    Code::UNKNOWN,
                    format!("exec {eid}: no pid in {}", pid_file.display()),
                )
            })?;
        p.io = io;
        let early = self.register(&pending, pid as i32, &c.id, &eid);
        Ok((pid, early))
    }

    fn delete(&self, req: &api::DeleteRequest) -> TtrpcResult<api::DeleteResponse> {
        let c = self.get(&req.id)?;
        let mut procs = c.lock();
        if !req.exec_id.is_empty() {
            let eid = req.exec_id.as_str();
            let p = procs
                .execs
                .get_mut(eid)
                .ok_or_else(|| status(Code::NOT_FOUND, format!("exec {eid}: not found")))?;
            if p.state == State::Running || p.state == State::Paused {
                return Err(status(
                    Code::FAILED_PRECONDITION,
                    format!("exec {eid}: cannot delete a running process"),
                ));
            }
            p.io.wait_output(Duration::from_secs(2));
            p.io.close();
            let resp = api::DeleteResponse {
                pid: p.pid,
                exit_status: p.exit_status,
                exited_at: exited_at(p),
                ..Default::default()
            };
            procs.execs.remove(eid);
            let _ = fs::remove_file(c.bundle.join(format!("{eid}.pid")));
            log::info!("container {}: exec {eid} deleted", c.id);
            return Ok(resp);
        }

        let state = procs.init.state;
        if state == State::Running || state == State::Paused {
            return Err(status(
                Code::FAILED_PRECONDITION,
                format!(
                    "container {}: cannot delete a {} container",
                    c.id,
                    state.name()
                ),
            ));
        }
        procs.init.io.wait_output(Duration::from_secs(2));
        if let Err(e) = c.runtime.delete(&c.id, state == State::Created) {
            if !e.message.contains("does not exist") {
                return Err(status(Code::UNKNOWN, e.message));
            }
        }
        if state == State::Created {
            // Killed before it ran: record it as an exit by SIGKILL.
            procs
                .init
                .set_exited(128 + libc::SIGKILL, SystemTime::now());
        }
        self.oom.remove(&c.id);
        procs.init.io.close();
        for p in procs.execs.values_mut() {
            p.io.close();
        }
        if let Some(rootfs) = &c.rootfs {
            if let Err(e) = mount::unmount_all(rootfs) {
                log::warn!("container {}: unmount rootfs: {e}", c.id);
            }
        }
        lock(&self.containers).remove(&c.id);
        lock(&self.table).owners.retain(|_, (cid, _)| cid != &c.id);
        let init = &procs.init;
        self.events.send(TaskDelete {
            container_id: c.id.clone(),
            pid: init.pid,
            exit_status: init.exit_status,
            exited_at: exited_at(init),
            ..Default::default()
        });
        log::info!("container {}: deleted", c.id);
        Ok(api::DeleteResponse {
            pid: init.pid,
            exit_status: init.exit_status,
            exited_at: exited_at(init),
            ..Default::default()
        })
    }

    fn exec(&self, req: &api::ExecProcessRequest) -> TtrpcResult<()> {
        let c = self.get(&req.id)?;
        let mut procs = c.lock();
        let eid = req.exec_id.as_str();
        if eid.is_empty() {
            return Err(status(Code::INVALID_ARGUMENT, "exec id is empty"));
        }
        if procs.execs.contains_key(eid) {
            return Err(status(
                Code::ALREADY_EXISTS,
                format!("id {eid}: already exists"),
            ));
        }
        if procs.init.state == State::Stopped {
            return Err(status(
                Code::FAILED_PRECONDITION,
                format!("container {}: container not running", c.id),
            ));
        }
        let spec = req
            .spec
            .as_ref()
            .map(|a| a.value.clone())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| status(Code::INVALID_ARGUMENT, format!("exec {eid}: no process")))?;
        let mut p = Process::new(
            eid,
            StdioPaths {
                stdin: req.stdin.clone(),
                stdout: req.stdout.clone(),
                stderr: req.stderr.clone(),
                terminal: req.terminal,
            },
        );
        p.spec = spec;
        procs.execs.insert(eid.to_string(), p);
        self.events.send(TaskExecAdded {
            container_id: c.id.clone(),
            exec_id: eid.to_string(),
            ..Default::default()
        });
        log::info!("container {}: exec {eid} added", c.id);
        Ok(())
    }

    fn kill(&self, req: &api::KillRequest) -> TtrpcResult<()> {
        let c = self.get(&req.id)?;
        let procs = c.lock();
        if req.exec_id.is_empty() {
            if procs.init.state == State::Stopped && !req.all {
                return Err(status(Code::NOT_FOUND, "process already finished"));
            }
            log::info!(
                "container {}: kill signal {}{}",
                c.id,
                req.signal,
                if req.all { " (all)" } else { "" }
            );
            return c
                .runtime
                .kill(&c.id, req.signal, req.all)
                .map_err(|e| kill_error(&e.message));
        }
        let eid = req.exec_id.as_str();
        let p = procs
            .get(eid)
            .ok_or_else(|| status(Code::NOT_FOUND, format!("exec {eid}: not found")))?;
        match p.state {
            State::Stopped => Err(status(Code::NOT_FOUND, "process already finished")),
            State::Created => Err(status(Code::NOT_FOUND, "process not created")),
            State::Running | State::Paused => {
                log::info!("container {}: exec {eid}: kill signal {}", c.id, req.signal);
                let sig = nix::sys::signal::Signal::try_from(req.signal as i32)
                    .map_err(|e| status(Code::INVALID_ARGUMENT, format!("signal: {e}")))?;
                match nix::sys::signal::kill(nix::unistd::Pid::from_raw(p.pid as i32), sig) {
                    Ok(()) => Ok(()),
                    Err(nix::errno::Errno::ESRCH) => {
                        Err(status(Code::NOT_FOUND, "process already finished"))
                    }
                    Err(e) => Err(status(Code::UNKNOWN, format!("kill exec {eid}: {e}"))),
                }
            }
        }
    }

    fn state(&self, req: &api::StateRequest) -> TtrpcResult<api::StateResponse> {
        let c = self.get(&req.id)?;
        let procs = c.lock();
        let p = procs
            .get(&req.exec_id)
            .ok_or_else(|| status(Code::NOT_FOUND, format!("exec {}: not found", req.exec_id)))?;
        Ok(api::StateResponse {
            id: if p.exec_id.is_empty() {
                c.id.clone()
            } else {
                p.exec_id.clone()
            },
            bundle: c.bundle.to_string_lossy().into_owned(),
            pid: p.pid,
            status: p.state.status().into(),
            stdin: p.stdio.stdin.clone(),
            stdout: p.stdio.stdout.clone(),
            stderr: p.stdio.stderr.clone(),
            terminal: p.stdio.terminal,
            exit_status: p.exit_status,
            exited_at: exited_at(p),
            exec_id: p.exec_id.clone(),
            ..Default::default()
        })
    }

    fn pause(&self, id: &str) -> TtrpcResult<()> {
        let c = self.get(id)?;
        let mut procs = c.lock();
        if procs.init.state != State::Running {
            return Err(status(
                Code::FAILED_PRECONDITION,
                format!(
                    "container {id}: cannot pause a {} container",
                    procs.init.state.name()
                ),
            ));
        }
        c.runtime
            .pause(id)
            .map_err(|e| status(Code::UNKNOWN, e.message))?;
        procs.init.state = State::Paused;
        self.events.send(TaskPaused {
            container_id: id.to_string(),
            ..Default::default()
        });
        log::info!("container {id}: paused");
        Ok(())
    }

    fn resume(&self, id: &str) -> TtrpcResult<()> {
        let c = self.get(id)?;
        let mut procs = c.lock();
        if procs.init.state != State::Paused {
            return Err(status(
                Code::FAILED_PRECONDITION,
                format!(
                    "container {id}: cannot resume a {} container",
                    procs.init.state.name()
                ),
            ));
        }
        c.runtime
            .resume(id)
            .map_err(|e| status(Code::UNKNOWN, e.message))?;
        procs.init.state = State::Running;
        self.events.send(TaskResumed {
            container_id: id.to_string(),
            ..Default::default()
        });
        log::info!("container {id}: resumed");
        Ok(())
    }

    fn pids(&self, id: &str) -> TtrpcResult<api::PidsResponse> {
        let c = self.get(id)?;
        let pids = c
            .runtime
            .ps(id)
            .map_err(|e| status(Code::UNKNOWN, e.message))?;
        let procs = c.lock();
        let processes = pids
            .into_iter()
            .map(|pid| {
                let mut info = containerd_shim::protos::types::task::ProcessInfo {
                    pid,
                    ..Default::default()
                };
                if let Some(p) = procs.execs.values().find(|p| p.pid == pid) {
                    let details = ProcessDetails {
                        exec_id: p.exec_id.clone(),
                        ..Default::default()
                    };
                    if let Ok(value) = details.write_to_bytes() {
                        info.info = MessageField::some(Any {
                            type_url: PROCESS_DETAILS_TYPE.to_string(),
                            value,
                            ..Default::default()
                        });
                    }
                }
                info
            })
            .collect();
        Ok(api::PidsResponse {
            processes,
            ..Default::default()
        })
    }

    fn wait(&self, id: &str, exec_id: &str) -> TtrpcResult<api::WaitResponse> {
        let c = self.get(id)?;
        let mut procs = c.lock();
        loop {
            let p = procs
                .get(exec_id)
                .ok_or_else(|| status(Code::NOT_FOUND, format!("exec {exec_id}: not found")))?;
            if p.state == State::Stopped {
                return Ok(api::WaitResponse {
                    exit_status: p.exit_status,
                    exited_at: exited_at(p),
                    ..Default::default()
                });
            }
            procs = c.changed.wait(procs).unwrap_or_else(|e| e.into_inner());
        }
    }
}

fn runtime_options(any: Option<&Any>) -> TtrpcResult<Options> {
    let Some(any) = any else {
        return Ok(Options::default());
    };
    if any.value.is_empty() {
        return Ok(Options::default());
    }
    if any.type_url.ends_with(RUNC_OPTIONS_TYPE) {
        return Options::parse_from_bytes(&any.value).map_err(|e| {
            status(
                Code::INVALID_ARGUMENT,
                format!("invalid runtime options: {e}"),
            )
        });
    }
    log::warn!("ignoring runtime options of type {}", any.type_url);
    Ok(Options::default())
}

/// As containerd's runc shim: kills of processes that are gone are NotFound.
fn kill_error(message: &str) -> ttrpc::Error {
    if message.contains("os: process already finished")
        || message.contains("container not running")
        || message.to_lowercase().contains("no such process")
    {
        status(
            Code::NOT_FOUND,
            format!("process already finished: {message}"),
        )
    } else if message.contains("does not exist") {
        status(Code::NOT_FOUND, format!("no such container: {message}"))
    } else {
        status(
            Code::UNKNOWN,
            format!("unknown error after kill: {message}"),
        )
    }
}

/// Only a container with its own new PID namespace loses all its processes with init.
fn should_kill_all_on_exit(spec: &Spec) -> bool {
    let Some(namespaces) = spec.linux().as_ref().and_then(|l| l.namespaces().as_ref()) else {
        return true;
    };
    !namespaces
        .iter()
        .any(|ns| ns.typ() == LinuxNamespaceType::Pid && ns.path().is_none())
}

pub struct TaskService {
    shared: Arc<Shared>,
}

/// Tells the event thread, once a request has been answered, that the shim was busy (events.rs
/// releases the shim's code pages only after a quiet second).
struct Served<'a>(&'a Events);

impl Drop for Served<'_> {
    fn drop(&mut self) {
        self.0.activity();
    }
}

impl Task for TaskService {
    fn state(
        &self,
        _ctx: &TtrpcContext,
        req: api::StateRequest,
    ) -> TtrpcResult<api::StateResponse> {
        let _served = Served(&self.shared.events);
        self.shared.state(&req)
    }

    fn create(
        &self,
        _ctx: &TtrpcContext,
        req: api::CreateTaskRequest,
    ) -> TtrpcResult<api::CreateTaskResponse> {
        let _served = Served(&self.shared.events);
        let pid = self.shared.create(&req)?;
        Ok(api::CreateTaskResponse {
            pid,
            ..Default::default()
        })
    }

    fn start(
        &self,
        _ctx: &TtrpcContext,
        req: api::StartRequest,
    ) -> TtrpcResult<api::StartResponse> {
        let _served = Served(&self.shared.events);
        let pid = self.shared.start(&req)?;
        Ok(api::StartResponse {
            pid,
            ..Default::default()
        })
    }

    fn delete(
        &self,
        _ctx: &TtrpcContext,
        req: api::DeleteRequest,
    ) -> TtrpcResult<api::DeleteResponse> {
        let _served = Served(&self.shared.events);
        self.shared.delete(&req)
    }

    fn pids(&self, _ctx: &TtrpcContext, req: api::PidsRequest) -> TtrpcResult<api::PidsResponse> {
        let _served = Served(&self.shared.events);
        self.shared.pids(&req.id)
    }

    fn pause(&self, _ctx: &TtrpcContext, req: api::PauseRequest) -> TtrpcResult<Empty> {
        let _served = Served(&self.shared.events);
        self.shared.pause(&req.id).map(|()| Empty::new())
    }

    fn resume(&self, _ctx: &TtrpcContext, req: api::ResumeRequest) -> TtrpcResult<Empty> {
        let _served = Served(&self.shared.events);
        self.shared.resume(&req.id).map(|()| Empty::new())
    }

    fn checkpoint(
        &self,
        _ctx: &TtrpcContext,
        req: api::CheckpointTaskRequest,
    ) -> TtrpcResult<Empty> {
        let _served = Served(&self.shared.events);
        Err(status(
            Code::UNIMPLEMENTED,
            format!(
                "container {}: checkpoint is not supported by the rune shim",
                req.id
            ),
        ))
    }

    fn kill(&self, _ctx: &TtrpcContext, req: api::KillRequest) -> TtrpcResult<Empty> {
        let _served = Served(&self.shared.events);
        self.shared.kill(&req).map(|()| Empty::new())
    }

    fn exec(&self, _ctx: &TtrpcContext, req: api::ExecProcessRequest) -> TtrpcResult<Empty> {
        let _served = Served(&self.shared.events);
        self.shared.exec(&req).map(|()| Empty::new())
    }

    fn resize_pty(&self, _ctx: &TtrpcContext, req: api::ResizePtyRequest) -> TtrpcResult<Empty> {
        let _served = Served(&self.shared.events);
        let c = self.shared.get(&req.id)?;
        let procs = c.lock();
        let p = procs
            .get(&req.exec_id)
            .ok_or_else(|| status(Code::NOT_FOUND, format!("exec {}: not found", req.exec_id)))?;
        let console = p.io.console.as_ref().ok_or_else(|| {
            status(
                Code::FAILED_PRECONDITION,
                "the process has no terminal".to_string(),
            )
        })?;
        stdio::resize(console, req.width, req.height)
            .map_err(|e| status(Code::UNKNOWN, format!("resize pty: {e}")))?;
        Ok(Empty::new())
    }

    fn close_io(&self, _ctx: &TtrpcContext, req: api::CloseIORequest) -> TtrpcResult<Empty> {
        let _served = Served(&self.shared.events);
        let c = self.shared.get(&req.id)?;
        let mut procs = c.lock();
        let p = procs
            .get_mut(&req.exec_id)
            .ok_or_else(|| status(Code::NOT_FOUND, format!("exec {}: not found", req.exec_id)))?;
        if req.stdin {
            p.io.close_stdin();
        }
        Ok(Empty::new())
    }

    fn update(&self, _ctx: &TtrpcContext, req: api::UpdateTaskRequest) -> TtrpcResult<Empty> {
        let _served = Served(&self.shared.events);
        let c = self.shared.get(&req.id)?;
        let resources = req
            .resources
            .as_ref()
            .map(|a| a.value.clone())
            .unwrap_or_default();
        if resources.is_empty() {
            return Err(status(Code::INVALID_ARGUMENT, "no resources to update"));
        }
        c.runtime
            .update(&c.id, &resources)
            .map_err(|e| status(Code::UNKNOWN, e.message))?;
        log::info!("container {}: resources updated", c.id);
        Ok(Empty::new())
    }

    fn wait(&self, _ctx: &TtrpcContext, req: api::WaitRequest) -> TtrpcResult<api::WaitResponse> {
        let _served = Served(&self.shared.events);
        self.shared.wait(&req.id, &req.exec_id)
    }

    fn stats(
        &self,
        _ctx: &TtrpcContext,
        req: api::StatsRequest,
    ) -> TtrpcResult<api::StatsResponse> {
        let _served = Served(&self.shared.events);
        let c = self.shared.get(&req.id)?;
        let pid = {
            let procs = c.lock();
            if procs.init.state == State::Stopped || procs.init.pid == 0 {
                return Err(status(
                    Code::NOT_FOUND,
                    format!("container {}: not running", c.id),
                ));
            }
            procs.init.pid
        };
        let stats = crate::metrics::stats_any(pid)
            .map_err(|e| status(Code::UNKNOWN, format!("container {}: stats: {e}", c.id)))?;
        Ok(api::StatsResponse {
            stats: MessageField::some(stats),
            ..Default::default()
        })
    }

    fn connect(
        &self,
        _ctx: &TtrpcContext,
        req: api::ConnectRequest,
    ) -> TtrpcResult<api::ConnectResponse> {
        let _served = Served(&self.shared.events);
        let task_pid = self
            .shared
            .container(&req.id)
            .map(|c| c.lock().init.pid)
            .unwrap_or(0);
        Ok(api::ConnectResponse {
            shim_pid: std::process::id(),
            task_pid,
            version: env!("CARGO_PKG_VERSION").to_string(),
            ..Default::default()
        })
    }

    fn shutdown(&self, _ctx: &TtrpcContext, _req: api::ShutdownRequest) -> TtrpcResult<Empty> {
        let _served = Served(&self.shared.events);
        if !lock(&self.shared.containers).is_empty() {
            return Ok(Empty::new());
        }
        log::info!("shim shutting down: no containers left");
        // The library removes the socket named in `<cwd>/address`; the working directory is
        // the bundle of the pod's first container, which may be gone already.
        let socket = self.shared.socket.as_str();
        let path = socket.strip_prefix("unix://").unwrap_or(socket);
        if !path.is_empty() {
            let _ = fs::remove_file(path);
        }
        self.shared.exit.signal();
        Ok(Empty::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kill_errors_map_to_not_found() {
        let code = |e: ttrpc::Error| match e {
            ttrpc::Error::RpcStatus(s) => s.code(),
            _ => Code::OK,
        };
        assert_eq!(
            code(kill_error(
                "cannot signal container \"x\": container not running"
            )),
            Code::NOT_FOUND
        );
        assert_eq!(
            code(kill_error("container \"x\" does not exist")),
            Code::NOT_FOUND
        );
        assert_eq!(code(kill_error("permission denied")), Code::UNKNOWN);
    }

    #[test]
    fn grouping_annotations() {
        let dir = std::env::temp_dir().join(format!("shim-group-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let cfg = dir.join("config.json");
        fs::write(
            &cfg,
            r#"{"annotations":{"io.kubernetes.cri.sandbox-id":"pod1"}}"#,
        )
        .unwrap();
        assert_eq!(group_of(&cfg).as_deref(), Some("pod1"));
        fs::write(
            &cfg,
            r#"{"annotations":{"io.kubernetes.cri.sandbox-id":"pod1","io.containerd.runc.v2.group":"g"}}"#,
        )
        .unwrap();
        assert_eq!(group_of(&cfg).as_deref(), Some("g"));
        fs::write(&cfg, r#"{"annotations":{}}"#).unwrap();
        assert_eq!(group_of(&cfg), None);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn options_decode() {
        let opts = Options {
            binary_name: "/x/rune".into(),
            root: "/r".into(),
            ..Default::default()
        };
        let any = Any {
            type_url: "containerd.runc.v1.Options".into(),
            value: opts.write_to_bytes().unwrap(),
            ..Default::default()
        };
        let got = runtime_options(Some(&any)).unwrap();
        assert_eq!(got.binary_name, "/x/rune");
        assert_eq!(got.root, "/r");
        assert_eq!(runtime_options(None).unwrap().root, "");
    }
}
