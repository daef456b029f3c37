//! What the shim knows of a container and its processes.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::SystemTime;

use containerd_shim::api::Status;

use crate::runtime::Runtime;
use crate::stdio::{ProcessIo, StdioPaths};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Created,
    Running,
    Paused,
    Stopped,
}

impl State {
    pub fn status(self) -> Status {
        match self {
            State::Created => Status::CREATED,
            State::Running => Status::RUNNING,
            State::Paused => Status::PAUSED,
            State::Stopped => Status::STOPPED,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            State::Created => "created",
            State::Running => "running",
            State::Paused => "paused",
            State::Stopped => "stopped",
        }
    }
}

/// The init process (exec id "") or an exec'd process.
pub struct Process {
    pub exec_id: String,
    pub pid: u32,
    pub state: State,
    pub exit_status: u32,
    pub exited_at: Option<SystemTime>,
    pub stdio: StdioPaths,
    pub io: ProcessIo,
    /// The OCI process (JSON) of an exec, until it is started.
    pub spec: Vec<u8>,
}

impl Process {
    pub fn new(exec_id: &str, stdio: StdioPaths) -> Process {
        Process {
            exec_id: exec_id.to_string(),
            pid: 0,
            state: State::Created,
            exit_status: 0,
            exited_at: None,
            stdio,
            io: ProcessIo::default(),
            spec: Vec::new(),
        }
    }

    pub fn set_exited(&mut self, status: i32, at: SystemTime) {
        self.state = State::Stopped;
        self.exit_status = status as u32;
        self.exited_at = Some(at);
        // No more input for a process that is gone.
        self.io.close_stdin();
    }
}

pub struct Processes {
    pub init: Process,
    pub execs: HashMap<String, Process>,
}

impl Processes {
    pub fn get_mut(&mut self, exec_id: &str) -> Option<&mut Process> {
        if exec_id.is_empty() {
            Some(&mut self.init)
        } else {
            self.execs.get_mut(exec_id)
        }
    }

    pub fn get(&self, exec_id: &str) -> Option<&Process> {
        if exec_id.is_empty() {
            Some(&self.init)
        } else {
            self.execs.get(exec_id)
        }
    }
}

pub struct Container {
    pub id: String,
    pub bundle: PathBuf,
    pub runtime: Runtime,
    /// `<bundle>/rootfs` when the shim mounted it (unmounted on delete).
    pub rootfs: Option<PathBuf>,
    /// The container shares a PID namespace: when init exits, the rest must be killed.
    pub kill_all_on_exit: bool,
    processes: Mutex<Processes>,
    /// Signalled whenever a process of the container exits.
    pub changed: Condvar,
}

impl Container {
    pub fn new(
        id: &str,
        bundle: PathBuf,
        runtime: Runtime,
        rootfs: Option<PathBuf>,
        kill_all_on_exit: bool,
        init: Process,
    ) -> Container {
        Container {
            id: id.to_string(),
            bundle,
            runtime,
            rootfs,
            kill_all_on_exit,
            processes: Mutex::new(Processes {
                init,
                execs: HashMap::new(),
            }),
            changed: Condvar::new(),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, Processes> {
        self.processes.lock().unwrap_or_else(|e| e.into_inner())
    }
}
