use std::path::PathBuf;

/// Every message names the file, field or check that failed.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("manifest: {0}")]
    Manifest(String),
    #[error("signature: {0}")]
    Signature(String),
    #[error("trusted file {path}: {reason}")]
    TrustedFile { path: String, reason: String },
    #[error("key: {0}")]
    Key(String),
    #[error("policy {path}: {reason}")]
    Policy { path: PathBuf, reason: String },
}

impl ImageError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ImageError::Io {
            path: path.into(),
            source,
        }
    }
}
