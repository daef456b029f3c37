//! A kubelet-like client of the Container Runtime Interface (CRI `runtime.v1`, as containerd
//! 1.6 serves it): what kubelet sends to run a pod (sandbox, containers, exec, logs, stop and
//! removal), without kubelet. [`Client`] is the API; [`PodSpec`] and [`ContainerSpec`] build
//! the configs the way kubelet fills them for a best-effort pod on the host's network;
//! [`run::Session`] runs one pod with one container to completion, as the `rune-cri` binary
//! does.

pub mod log;
pub mod run;

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

/// The generated CRI `runtime.v1` types.
pub use k8s_cri::v1 as api;

/// What kubelet names itself in `Version` (the only version the API knows).
const KUBELET_API_VERSION: &str = "v1";

/// How long one call may take by default: kubelet's `--runtime-request-timeout`. A carrier
/// converts the image within StartContainer, so a slow conversion needs more.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// How long connecting to the socket may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid endpoint {0:?}: expected unix:///path/to/socket")]
    Endpoint(String),
    #[error("cannot connect to {endpoint}: {message}")]
    Connect { endpoint: String, message: String },
    /// A call the runtime refused or failed; `object` names what it was about.
    #[error("{call} {object}: {message} ({code:?})")]
    Rpc {
        call: &'static str,
        object: String,
        code: tonic::Code,
        message: String,
    },
    #[error("image {0} is not on the node (rune-cri does not pull images)")]
    ImageMissing(String),
    #[error("{0}")]
    Runtime(String),
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout { what: String, after: Duration },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    fn rpc(call: &'static str, object: impl Into<String>) -> impl FnOnce(tonic::Status) -> Error {
        let object = object.into();
        move |s| Error::Rpc {
            call,
            object,
            code: s.code(),
            message: s.message().to_string(),
        }
    }

    /// The gRPC code of a failed call, if that is what this is.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            Error::Rpc { code, .. } => Some(*code),
            _ => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The error and its causes on one line: transport errors say little on their own.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let msg = c.to_string();
        if !s.contains(&msg) {
            s.push_str(": ");
            s.push_str(&msg);
        }
        cur = c.source();
    }
    s
}

/// The socket path of `unix:///path` (or of a bare absolute path, as crictl accepts).
pub fn socket_path(endpoint: &str) -> Result<PathBuf> {
    let path = endpoint.strip_prefix("unix://").unwrap_or(endpoint);
    if path.starts_with('/') {
        Ok(PathBuf::from(path))
    } else {
        Err(Error::Endpoint(endpoint.to_string()))
    }
}

/// Output of [`Client::exec_sync`].
#[derive(Clone, Debug)]
pub struct ExecOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_code: i32,
}

/// Awaits one call within `limit` (None: no limit) and names the call and its object when it
/// fails. A call given up on is dropped, which resets its HTTP/2 stream: the runtime sees the
/// request cancelled.
async fn call<T>(
    limit: Option<Duration>,
    call: &'static str,
    object: String,
    fut: impl Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T> {
    let answer = match limit {
        Some(limit) => match tokio::time::timeout(limit, fut).await {
            Ok(answer) => answer,
            Err(_) => {
                return Err(Error::Rpc {
                    call,
                    object,
                    code: tonic::Code::DeadlineExceeded,
                    message: format!("no answer within {limit:?}"),
                })
            }
        },
        None => fut.await,
    };
    answer
        .map(tonic::Response::into_inner)
        .map_err(Error::rpc(call, object))
}

/// A connection to a CRI runtime (its runtime and image services).
#[derive(Clone)]
pub struct Client {
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
    request_timeout: Duration,
}

impl Client {
    /// Connects to `unix:///path.sock`.
    pub async fn connect(endpoint: &str) -> Result<Client> {
        let path = socket_path(endpoint)?;
        // The URI only satisfies the HTTP/2 layer; the connector ignores it.
        let channel = Endpoint::from_static("http://localhost")
            .connect_timeout(CONNECT_TIMEOUT)
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move { UnixStream::connect(path).await.map(TokioIo::new) }
            }))
            .await
            .map_err(|e| Error::Connect {
                endpoint: endpoint.to_string(),
                message: error_chain(&e),
            })?;
        Ok(Client {
            runtime: RuntimeServiceClient::new(channel.clone()),
            images: ImageServiceClient::new(channel),
            request_timeout: REQUEST_TIMEOUT,
        })
    }

    /// How long a call may take (kubelet's `--runtime-request-timeout`, 2 minutes by default);
    /// `ExecSync` gets this on top of its own time-out.
    pub fn set_request_timeout(&mut self, timeout: Duration) {
        self.request_timeout = timeout;
    }

    /// The raw runtime service, for calls this type does not wrap.
    pub fn runtime_service(&mut self) -> &mut RuntimeServiceClient<Channel> {
        &mut self.runtime
    }

    /// The raw image service.
    pub fn image_service(&mut self) -> &mut ImageServiceClient<Channel> {
        &mut self.images
    }

    pub async fn version(&mut self) -> Result<api::VersionResponse> {
        let req = api::VersionRequest {
            version: KUBELET_API_VERSION.into(),
        };
        let object = format!("(API {KUBELET_API_VERSION})");
        let limit = Some(self.request_timeout);
        call(limit, "Version", object, self.runtime.version(req)).await
    }

    /// `Version` until it answers: containerd's CRI plugin refuses calls for a moment after
    /// the daemon starts ("server is not initialized yet").
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<api::VersionResponse> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.version().await {
                Ok(v) => return Ok(v),
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// The image as the node has it, None when absent (`ImageStatus`; nothing is pulled).
    pub async fn image_status(&mut self, image: &str) -> Result<Option<api::Image>> {
        let req = api::ImageStatusRequest {
            image: Some(api::ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            verbose: false,
        };
        let object = format!("of image {image:?}");
        let limit = Some(self.request_timeout);
        let answer = call(limit, "ImageStatus", object, self.images.image_status(req)).await?;
        Ok(answer.image)
    }

    /// Runs the pod's sandbox with `runtime_handler` (a runtime in the CRI plugin's config);
    /// returns its id.
    pub async fn run_pod_sandbox(
        &mut self,
        config: &api::PodSandboxConfig,
        runtime_handler: &str,
    ) -> Result<String> {
        let pod = config
            .metadata
            .as_ref()
            .map(|m| format!("{}/{}", m.namespace, m.name))
            .unwrap_or_default();
        let req = api::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: runtime_handler.into(),
        };
        let object = format!("of pod {pod:?} (runtime handler {runtime_handler:?})");
        let limit = Some(self.request_timeout);
        let answer = call(
            limit,
            "RunPodSandbox",
            object,
            self.runtime.run_pod_sandbox(req),
        )
        .await?;
        Ok(answer.pod_sandbox_id)
    }

    /// Records the container in the pod; containerd 1.6 creates its task (and so runs the
    /// shim's Create) only at [`Client::start_container`].
    pub async fn create_container(
        &mut self,
        pod_sandbox_id: &str,
        config: &api::ContainerConfig,
        sandbox_config: &api::PodSandboxConfig,
    ) -> Result<String> {
        let name = config.metadata.as_ref().map(|m| m.name.as_str());
        let image = config.image.as_ref().map(|i| i.image.as_str());
        let object = format!(
            "of container {:?} (image {:?}) in pod sandbox {pod_sandbox_id}",
            name.unwrap_or_default(),
            image.unwrap_or_default()
        );
        let req = api::CreateContainerRequest {
            pod_sandbox_id: pod_sandbox_id.into(),
            config: Some(config.clone()),
            sandbox_config: Some(sandbox_config.clone()),
        };
        let limit = Some(self.request_timeout);
        let answer = call(
            limit,
            "CreateContainer",
            object,
            self.runtime.create_container(req),
        )
        .await?;
        Ok(answer.container_id)
    }

    pub async fn start_container(&mut self, id: &str) -> Result<()> {
        let req = api::StartContainerRequest {
            container_id: id.into(),
        };
        let object = format!("of container {id}");
        let limit = Some(self.request_timeout);
        call(
            limit,
            "StartContainer",
            object,
            self.runtime.start_container(req),
        )
        .await?;
        Ok(())
    }

    pub async fn container_status(&mut self, id: &str) -> Result<api::ContainerStatus> {
        let req = api::ContainerStatusRequest {
            container_id: id.into(),
            verbose: false,
        };
        let object = format!("of container {id}");
        let limit = Some(self.request_timeout);
        call(
            limit,
            "ContainerStatus",
            object,
            self.runtime.container_status(req),
        )
        .await?
        .status
        .ok_or_else(|| Error::Runtime(format!("ContainerStatus of container {id}: no status")))
    }

    /// Polls `ContainerStatus` (as kubelet's PLEG does) until the container has exited.
    pub async fn wait_exited(
        &mut self,
        id: &str,
        timeout: Option<Duration>,
    ) -> Result<api::ContainerStatus> {
        let start = Instant::now();
        loop {
            let status = self.container_status(id).await?;
            if status.state() == api::ContainerState::ContainerExited {
                return Ok(status);
            }
            if let Some(t) = timeout.filter(|t| start.elapsed() >= *t) {
                return Err(Error::Timeout {
                    what: format!("container {id} to exit"),
                    after: t,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Runs `cmd` in the container and waits for it, for at most `timeout` (whole seconds;
    /// zero: no limit).
    pub async fn exec_sync(
        &mut self,
        id: &str,
        cmd: &[&str],
        timeout: Duration,
    ) -> Result<ExecOutput> {
        let req = api::ExecSyncRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout: timeout.as_secs() as i64,
        };
        let object = format!("of {cmd:?} in container {id}");
        // As kubelet: the exec's own time plus the usual allowance for the call.
        let limit = (!timeout.is_zero()).then(|| timeout + self.request_timeout);
        let r = call(limit, "ExecSync", object, self.runtime.exec_sync(req)).await?;
        Ok(ExecOutput {
            stdout: r.stdout,
            stderr: r.stderr,
            exit_code: r.exit_code,
        })
    }

    /// Stops the container: its stop signal, then SIGKILL after `grace`.
    pub async fn stop_container(&mut self, id: &str, grace: Duration) -> Result<()> {
        let req = api::StopContainerRequest {
            container_id: id.into(),
            timeout: grace.as_secs() as i64,
        };
        let object = format!("of container {id}");
        let limit = Some(grace + self.request_timeout);
        call(
            limit,
            "StopContainer",
            object,
            self.runtime.stop_container(req),
        )
        .await?;
        Ok(())
    }

    pub async fn remove_container(&mut self, id: &str) -> Result<()> {
        let req = api::RemoveContainerRequest {
            container_id: id.into(),
        };
        let object = format!("of container {id}");
        let limit = Some(self.request_timeout);
        call(
            limit,
            "RemoveContainer",
            object,
            self.runtime.remove_container(req),
        )
        .await?;
        Ok(())
    }

    pub async fn stop_pod_sandbox(&mut self, id: &str) -> Result<()> {
        let req = api::StopPodSandboxRequest {
            pod_sandbox_id: id.into(),
        };
        let object = format!("of pod sandbox {id}");
        let limit = Some(self.request_timeout);
        call(
            limit,
            "StopPodSandbox",
            object,
            self.runtime.stop_pod_sandbox(req),
        )
        .await?;
        Ok(())
    }

    pub async fn remove_pod_sandbox(&mut self, id: &str) -> Result<()> {
        let req = api::RemovePodSandboxRequest {
            pod_sandbox_id: id.into(),
        };
        let object = format!("of pod sandbox {id}");
        let limit = Some(self.request_timeout);
        call(
            limit,
            "RemovePodSandbox",
            object,
            self.runtime.remove_pod_sandbox(req),
        )
        .await?;
        Ok(())
    }

    /// Ids of the pod sandboxes carrying all of `labels` (every pod sandbox when empty).
    pub async fn pod_sandboxes_labelled(
        &mut self,
        labels: &HashMap<String, String>,
    ) -> Result<Vec<String>> {
        let req = api::ListPodSandboxRequest {
            filter: Some(api::PodSandboxFilter {
                label_selector: labels.clone(),
                ..Default::default()
            }),
        };
        let object = format!("labelled {labels:?}");
        let limit = Some(self.request_timeout);
        let answer = call(
            limit,
            "ListPodSandbox",
            object,
            self.runtime.list_pod_sandbox(req),
        )
        .await?;
        Ok(answer.items.into_iter().map(|p| p.id).collect())
    }

    /// Ids of the containers carrying all of `labels` (every container when empty).
    pub async fn containers_labelled(
        &mut self,
        labels: &HashMap<String, String>,
    ) -> Result<Vec<String>> {
        let req = api::ListContainersRequest {
            filter: Some(api::ContainerFilter {
                label_selector: labels.clone(),
                ..Default::default()
            }),
        };
        let object = format!("labelled {labels:?}");
        let limit = Some(self.request_timeout);
        let answer = call(
            limit,
            "ListContainers",
            object,
            self.runtime.list_containers(req),
        )
        .await?;
        Ok(answer.containers.into_iter().map(|c| c.id).collect())
    }
}

/// A pod as kubelet describes it to the runtime: best-effort QoS, host network, one pid
/// namespace per container, no security context beyond kubelet's defaults.
#[derive(Clone, Debug)]
pub struct PodSpec {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub attempt: u32,
    /// Empty: the node's hostname (what a host-network pod gets).
    pub hostname: String,
    /// Where the runtime writes container logs (kubelet's `/var/log/pods/<ns>_<name>_<uid>`).
    pub log_directory: PathBuf,
    /// The pod's cgroup (kubelet's `/kubepods/besteffort/pod<uid>`); empty: the runtime's.
    pub cgroup_parent: String,
    pub labels: HashMap<String, String>,
    pub annotations: HashMap<String, String>,
}

impl PodSpec {
    pub fn new(name: &str, uid: &str, log_directory: impl Into<PathBuf>) -> PodSpec {
        PodSpec {
            name: name.into(),
            namespace: "default".into(),
            uid: uid.into(),
            attempt: 0,
            hostname: String::new(),
            log_directory: log_directory.into(),
            cgroup_parent: String::new(),
            labels: HashMap::new(),
            annotations: HashMap::new(),
        }
    }

    /// The labels kubelet puts on a pod (which it lists pods by), plus ours.
    pub fn all_labels(&self) -> HashMap<String, String> {
        let mut labels = self.labels.clone();
        labels.insert("io.kubernetes.pod.name".into(), self.name.clone());
        labels.insert("io.kubernetes.pod.namespace".into(), self.namespace.clone());
        labels.insert("io.kubernetes.pod.uid".into(), self.uid.clone());
        labels
    }

    fn namespace_options() -> api::NamespaceOption {
        api::NamespaceOption {
            network: api::NamespaceMode::Node as i32,
            pid: api::NamespaceMode::Container as i32,
            ipc: api::NamespaceMode::Pod as i32,
            ..Default::default()
        }
    }

    /// Kubelet's default seccomp profile for pods that name none.
    fn seccomp() -> api::SecurityProfile {
        api::SecurityProfile {
            profile_type: api::security_profile::ProfileType::Unconfined as i32,
            localhost_ref: String::new(),
        }
    }

    pub fn sandbox_config(&self) -> api::PodSandboxConfig {
        let mut annotations = self.annotations.clone();
        annotations
            .entry("kubernetes.io/config.source".into())
            .or_insert_with(|| "api".into());
        api::PodSandboxConfig {
            metadata: Some(api::PodSandboxMetadata {
                name: self.name.clone(),
                uid: self.uid.clone(),
                namespace: self.namespace.clone(),
                attempt: self.attempt,
            }),
            hostname: self.hostname.clone(),
            log_directory: self.log_directory.to_string_lossy().into_owned(),
            labels: self.all_labels(),
            annotations,
            linux: Some(api::LinuxPodSandboxConfig {
                cgroup_parent: self.cgroup_parent.clone(),
                security_context: Some(api::LinuxSandboxSecurityContext {
                    namespace_options: Some(Self::namespace_options()),
                    seccomp: Some(Self::seccomp()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

/// A container of a [`PodSpec`], as kubelet fills `ContainerConfig`.
#[derive(Clone, Debug)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    /// The entrypoint; empty: the image's.
    pub command: Vec<String>,
    /// Its arguments; empty (with no command): the image's cmd.
    pub args: Vec<String>,
    /// Empty: the image's.
    pub working_dir: String,
    pub env: Vec<(String, String)>,
    pub attempt: u32,
    pub labels: HashMap<String, String>,
    pub annotations: HashMap<String, String>,
}

impl ContainerSpec {
    pub fn new(name: &str, image: &str) -> ContainerSpec {
        ContainerSpec {
            name: name.into(),
            image: image.into(),
            command: Vec::new(),
            args: Vec::new(),
            working_dir: String::new(),
            env: Vec::new(),
            attempt: 0,
            labels: HashMap::new(),
            annotations: HashMap::new(),
        }
    }

    /// The log file relative to the pod's log directory: `<name>/<attempt>.log`, as kubelet
    /// lays it out.
    pub fn log_path(&self) -> PathBuf {
        Path::new(&self.name).join(format!("{}.log", self.attempt))
    }

    /// Kubelet creates the container's log directory itself; the runtime only opens the file.
    pub fn create_log_dir(&self, pod: &PodSpec) -> Result<PathBuf> {
        let file = pod.log_directory.join(self.log_path());
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir).map_err(|source| Error::Io {
                what: format!("create log directory {}", dir.display()),
                source,
            })?;
        }
        Ok(file)
    }

    pub fn config(&self, pod: &PodSpec) -> api::ContainerConfig {
        let mut labels = self.labels.clone();
        labels.extend(pod.all_labels());
        labels.insert("io.kubernetes.container.name".into(), self.name.clone());
        let mut annotations = self.annotations.clone();
        for (k, v) in [
            (
                "io.kubernetes.container.restartCount",
                self.attempt.to_string(),
            ),
            (
                "io.kubernetes.container.terminationMessagePath",
                "/dev/termination-log".into(),
            ),
            (
                "io.kubernetes.container.terminationMessagePolicy",
                "File".into(),
            ),
        ] {
            annotations.entry(k.into()).or_insert(v);
        }
        api::ContainerConfig {
            metadata: Some(api::ContainerMetadata {
                name: self.name.clone(),
                attempt: self.attempt,
            }),
            image: Some(api::ImageSpec {
                image: self.image.clone(),
                ..Default::default()
            }),
            command: self.command.clone(),
            args: self.args.clone(),
            working_dir: self.working_dir.clone(),
            envs: self
                .env
                .iter()
                .map(|(key, value)| api::KeyValue {
                    key: key.clone(),
                    value: value.clone(),
                })
                .collect(),
            labels,
            annotations,
            log_path: self.log_path().to_string_lossy().into_owned(),
            linux: Some(api::LinuxContainerConfig {
                // A best-effort container: the least CPU weight, the first to be OOM-killed.
                resources: Some(api::LinuxContainerResources {
                    cpu_period: 100_000,
                    cpu_shares: 2,
                    oom_score_adj: 1000,
                    ..Default::default()
                }),
                security_context: Some(api::LinuxContainerSecurityContext {
                    namespace_options: Some(PodSpec::namespace_options()),
                    seccomp: Some(PodSpec::seccomp()),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(
            socket_path("unix:///run/c.sock").unwrap(),
            PathBuf::from("/run/c.sock")
        );
        assert_eq!(
            socket_path("/run/c.sock").unwrap(),
            PathBuf::from("/run/c.sock")
        );
        assert!(socket_path("tcp://127.0.0.1:1").is_err());
        assert!(socket_path("unix://relative.sock").is_err());
    }

    #[test]
    fn configs_as_kubelet_fills_them() {
        let mut pod = PodSpec::new("p", "u-1", "/logs/p");
        pod.cgroup_parent = "/cg".into();
        let sb = pod.sandbox_config();
        let ns = sb
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.as_ref())
            .unwrap();
        assert_eq!(ns.network(), api::NamespaceMode::Node);
        assert_eq!(ns.pid(), api::NamespaceMode::Container);
        assert_eq!(sb.labels["io.kubernetes.pod.uid"], "u-1");
        assert_eq!(sb.log_directory, "/logs/p");

        let mut c = ContainerSpec::new("main", "img");
        c.env.push(("A".into(), "b".into()));
        c.args = vec!["x".into()];
        let cfg = c.config(&pod);
        assert_eq!(cfg.log_path, "main/0.log");
        assert_eq!(cfg.envs[0].key, "A");
        assert_eq!(cfg.labels["io.kubernetes.container.name"], "main");
        assert_eq!(cfg.labels["io.kubernetes.pod.name"], "p");
        let res = cfg
            .linux
            .as_ref()
            .and_then(|l| l.resources.as_ref())
            .unwrap();
        assert_eq!(res.oom_score_adj, 1000);
    }
}
