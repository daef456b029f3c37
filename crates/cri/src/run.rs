//! One pod with one container, run to completion the way kubelet runs it: check the image
//! (no pull), run the sandbox, create and start the container, follow its log and poll its
//! status until it exits, then stop and remove the container and the pod, whatever happened
//! before.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::log::{Follower, Line};
use crate::{Client, ContainerSpec, Error, ExecOutput, PodSpec, Result};

/// The label that finds this run's pod and container again, even when a call was cut short
/// before its id came back.
const RUN_LABEL: &str = "io.rune.cri/run";

/// How long the runtime may take to answer the first call after it starts.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long clean-up waits for a container that is still starting (its StartContainer was
/// interrupted) before giving up on removing it.
const STARTING_WAIT: Duration = Duration::from_secs(120);

#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Pod and container name.
    pub name: String,
    pub image: String,
    pub runtime_handler: String,
    /// `argv`: the first word is the container's command, the others its args; empty: the
    /// image's entrypoint and cmd.
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Empty: the image's.
    pub working_dir: String,
    /// The pod's log directory, kept afterwards; None: a temporary one, removed at the end.
    pub log_dir: Option<PathBuf>,
    /// The pod's cgroup parent; empty: the runtime's default.
    pub cgroup_parent: String,
    /// Grace period of StopContainer before SIGKILL.
    pub stop_grace: Duration,
    /// Limit on the container's run time (execs included); None: none.
    pub timeout: Option<Duration>,
    /// Commands run in the container with `ExecSync`, one after the other, once it has
    /// started; each must be able to run (an exec the runtime refuses fails the run), but its
    /// exit code is only reported.
    pub execs: Vec<Vec<String>>,
}

impl RunOptions {
    pub fn new(image: &str, argv: &[&str]) -> RunOptions {
        RunOptions {
            name: format!("rune-cri-{}", std::process::id()),
            image: image.into(),
            runtime_handler: "rune".into(),
            argv: argv.iter().map(|s| s.to_string()).collect(),
            env: Vec::new(),
            working_dir: String::new(),
            log_dir: None,
            cgroup_parent: String::new(),
            stop_grace: Duration::from_secs(10),
            timeout: None,
            execs: Vec::new(),
        }
    }
}

/// A token unique to this run on this node (pid and time).
fn run_token() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{}-{nanos:x}", std::process::id())
}

/// How the container ended, as `ContainerStatus` tells.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exit {
    pub code: i32,
    /// "Completed" (code 0), "Error", "OOMKilled"...
    pub reason: String,
    pub message: String,
}

impl Exit {
    /// A reason beyond the exit code itself (an OOM kill, for instance).
    pub fn is_unusual(&self) -> bool {
        !matches!(self.reason.as_str(), "" | "Completed" | "Error")
    }
}

/// Where a run's output goes as it comes.
pub trait Sink: Send {
    /// A line of the container's log.
    fn line(&mut self, line: &Line);
    /// The result of one of [`RunOptions::execs`].
    fn exec(&mut self, argv: &[String], output: &ExecOutput);
}

/// One run, holding what must be removed afterwards. [`Session::cleanup`] must be called
/// whatever [`Session::run`] did, including when its future was dropped half-way (ctrl-c).
pub struct Session {
    client: Client,
    opts: RunOptions,
    token: String,
    pod_id: Option<String>,
    container_id: Option<String>,
    temp_log_dir: Option<PathBuf>,
}

impl Session {
    pub fn new(client: Client, opts: RunOptions) -> Session {
        Session {
            client,
            opts,
            token: run_token(),
            pod_id: None,
            container_id: None,
            temp_log_dir: None,
        }
    }

    pub fn pod_id(&self) -> Option<&str> {
        self.pod_id.as_deref()
    }

    pub fn container_id(&self) -> Option<&str> {
        self.container_id.as_deref()
    }

    fn run_labels(&self) -> HashMap<String, String> {
        HashMap::from([(RUN_LABEL.to_string(), self.token.clone())])
    }

    /// Runs the container to its end, handing its log lines and exec results to `out` as
    /// they come.
    pub async fn run(&mut self, out: &mut dyn Sink) -> Result<Exit> {
        let labels = self.run_labels();
        let client = &mut self.client;
        client.wait_ready(READY_TIMEOUT).await?;
        if client.image_status(&self.opts.image).await?.is_none() {
            return Err(Error::ImageMissing(self.opts.image.clone()));
        }

        let log_dir = match &self.opts.log_dir {
            Some(d) => d.clone(),
            None => {
                let d = std::env::temp_dir().join(format!("rune-cri-logs-{}", self.token));
                self.temp_log_dir = Some(d.clone());
                d
            }
        };
        std::fs::create_dir_all(&log_dir).map_err(|source| Error::Io {
            what: format!("create log directory {}", log_dir.display()),
            source,
        })?;
        let log_dir = std::fs::canonicalize(&log_dir).map_err(|source| Error::Io {
            what: format!("resolve log directory {}", log_dir.display()),
            source,
        })?;

        let mut pod = PodSpec::new(&self.opts.name, &self.token, log_dir);
        pod.cgroup_parent = self.opts.cgroup_parent.clone();
        pod.labels = labels.clone();
        let sandbox = pod.sandbox_config();
        let pod_id = client
            .run_pod_sandbox(&sandbox, &self.opts.runtime_handler)
            .await?;
        self.pod_id = Some(pod_id.clone());

        let mut spec = ContainerSpec::new(&self.opts.name, &self.opts.image);
        if let Some((cmd, args)) = self.opts.argv.split_first() {
            spec.command = vec![cmd.clone()];
            spec.args = args.to_vec();
        }
        spec.env = self.opts.env.clone();
        spec.working_dir = self.opts.working_dir.clone();
        spec.labels = labels;
        let log_file = spec.create_log_dir(&pod)?;
        let id = client
            .create_container(&pod_id, &spec.config(&pod), &sandbox)
            .await?;
        self.container_id = Some(id.clone());
        client.start_container(&id).await?;
        let started = Instant::now();

        let mut log = Follower::new(&log_file);
        let read_err = |source| Error::Io {
            what: format!("read container log {}", log_file.display()),
            source,
        };
        let timed_out = || Error::Timeout {
            what: format!("container {id} to exit"),
            after: self.opts.timeout.unwrap_or_default(),
        };
        let remaining = |timeout: Option<Duration>| match timeout {
            Some(t) => t
                .checked_sub(started.elapsed())
                .filter(|left| !left.is_zero())
                .ok_or_else(timed_out),
            // ExecSync's "no limit".
            None => Ok(Duration::ZERO),
        };

        for argv in &self.opts.execs {
            for line in log.poll().await.map_err(read_err)? {
                out.line(&line);
            }
            let words: Vec<&str> = argv.iter().map(String::as_str).collect();
            let limit = remaining(self.opts.timeout)?;
            // ExecSync counts whole seconds; less than one would mean no limit.
            let limit = if limit.is_zero() || limit >= Duration::from_secs(1) {
                limit
            } else {
                Duration::from_secs(1)
            };
            let result = client.exec_sync(&id, &words, limit).await?;
            out.exec(argv, &result);
        }

        let status = loop {
            for line in log.poll().await.map_err(read_err)? {
                out.line(&line);
            }
            let status = client.container_status(&id).await?;
            if status.state() == crate::api::ContainerState::ContainerExited {
                break status;
            }
            remaining(self.opts.timeout)?;
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        // containerd's CRI plugin records the exit only once the container's output is
        // copied into the log, so what is read now is all of it.
        for line in log.finish().await.map_err(read_err)? {
            out.line(&line);
        }
        Ok(Exit {
            code: status.exit_code,
            reason: status.reason,
            message: status.message,
        })
    }

    /// Stops and removes the container and the pod (those this run knows of and those
    /// carrying its label), then the temporary log directory. Everything is attempted; the
    /// first failure is returned.
    pub async fn cleanup(&mut self) -> Result<()> {
        let labels = self.run_labels();
        let grace = self.opts.stop_grace;
        let client = &mut self.client;
        let mut first_err: Option<Error> = None;
        let mut note = |r: Result<()>| {
            if let Err(e) = r {
                if e.code() != Some(tonic::Code::NotFound) && first_err.is_none() {
                    first_err = Some(e);
                }
            }
        };

        let mut containers: Vec<String> = self.container_id.iter().cloned().collect();
        match client.containers_labelled(&labels).await {
            Ok(ids) => containers.extend(ids),
            Err(e) => note(Err(e)),
        }
        containers.sort();
        containers.dedup();
        for id in &containers {
            // Interrupted during StartContainer, the call goes on in containerd (a carrier may
            // still be converting the image), which refuses to remove a container that is
            // starting: wait for the start to end, then stop and remove it.
            let deadline = Instant::now() + STARTING_WAIT;
            loop {
                let stopped = client.stop_container(id, grace).await;
                let removed = client.remove_container(id).await;
                let starting = |r: &Result<()>| {
                    r.as_ref()
                        .is_err_and(|e| e.to_string().contains("starting state"))
                };
                if (starting(&stopped) || starting(&removed)) && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    continue;
                }
                note(stopped);
                note(removed);
                break;
            }
        }

        let mut pods: Vec<String> = self.pod_id.iter().cloned().collect();
        match client.pod_sandboxes_labelled(&labels).await {
            Ok(ids) => pods.extend(ids),
            Err(e) => note(Err(e)),
        }
        pods.sort();
        pods.dedup();
        for id in &pods {
            note(client.stop_pod_sandbox(id).await);
            note(client.remove_pod_sandbox(id).await);
        }

        if let Some(dir) = self.temp_log_dir.take() {
            if let Err(source) = std::fs::remove_dir_all(&dir) {
                if source.kind() != std::io::ErrorKind::NotFound {
                    note(Err(Error::Io {
                        what: format!("remove {}", dir.display()),
                        source,
                    }));
                }
            }
        }
        self.container_id = None;
        self.pod_id = None;
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
