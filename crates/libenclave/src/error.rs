use std::path::PathBuf;

/// What can go wrong setting up or running an enclave container. Each message names the
/// setting, file or call, and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum EnclaveError {
    #[error(
        "unknown enclave type {0:?} (ENCLAVE_TYPE or enclave.type): use one of intelSgx, \
         AwsNitroEnclaves, Jailhouse, software, kvm"
    )]
    UnknownType(String),
    #[error(
        "no enclave runtime: set ENCLAVE_RUNTIME_PATH or the annotation enclave.runtime.path \
         to the PAL library (liberpal-*.so) on the host"
    )]
    NoRuntimePath,
    #[error("enclave type {enclave_type} is not available on this host: {reason}")]
    Unavailable {
        enclave_type: &'static str,
        reason: String,
    },
    #[error("enclave runtime {path}: {reason}")]
    Runtime { path: PathBuf, reason: String },
    #[error(transparent)]
    Pal(#[from] pal::PalError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Protocol(String),
    #[error("{0}")]
    Unsupported(String),
    /// A PAL call failed and the PAL said why on stderr.
    #[error("{error}: {said}")]
    PalSaid { error: pal::PalError, said: String },
}

impl EnclaveError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        EnclaveError::Io {
            context: context.into(),
            source,
        }
    }
}
