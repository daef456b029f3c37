//! Errors of the runtime-side loader.

use std::fmt;
use std::path::PathBuf;

/// An error loading or calling a PAL. Every message starts with `PAL <path>:` so a runtime can
/// surface it unchanged (e.g. as the `rune create` error) and still tell which library failed.
#[derive(Debug, thiserror::Error)]
pub enum PalError {
    /// `dlopen` failed; `reason` is the `dlerror()` text.
    #[error("PAL {}: failed to load: {reason}", path.display())]
    Load {
        /// Path given to [`crate::Pal::load`].
        path: PathBuf,
        /// `dlerror()` text.
        reason: String,
    },

    /// A symbol the PAL's API version requires is not exported.
    #[error("PAL {}: required symbol {symbol} not found", path.display())]
    MissingSymbol {
        /// PAL path.
        path: PathBuf,
        /// Symbol name, e.g. `pal_create_process`.
        symbol: &'static str,
    },

    /// `pal_get_version()` returned a version this crate does not speak (not in 1..=3).
    #[error("PAL {}: unsupported pal api version {version}", path.display())]
    UnsupportedVersion {
        /// PAL path.
        path: PathBuf,
        /// The value `pal_get_version()` returned.
        version: i32,
    },

    /// The operation needs a newer API version than the PAL has (e.g. a local report from a v2
    /// PAL). The message keeps upstream's `unsupported pal api version N` wording.
    #[error(
        "PAL {}: {function}() needs PAL API v{required}: unsupported pal api version {version}",
        path.display()
    )]
    VersionTooOld {
        /// PAL path.
        path: PathBuf,
        /// The PAL function that would have been called.
        function: &'static str,
        /// The PAL's negotiated version.
        version: u32,
        /// Minimum version needed.
        required: u32,
    },

    /// An optional function the operation needs is not exported (e.g. `pal_kill` in a v2 PAL).
    #[error("PAL {}: {function}() not implemented", path.display())]
    NotImplemented {
        /// PAL path.
        path: PathBuf,
        /// Missing function, e.g. `pal_kill`.
        function: &'static str,
    },

    /// A PAL function returned a failure code (`< 0`, or `!= 0` for `pal_get_local_report`).
    #[error("PAL {}: {function}() failed with {}", path.display(), ReturnCode(*code))]
    CallFailed {
        /// PAL path.
        path: PathBuf,
        /// The PAL function, e.g. `pal_init`.
        function: &'static str,
        /// Its return value.
        code: i32,
    },

    /// The caller's arguments cannot be passed to the PAL (NUL byte inside a string, empty argv,
    /// length overflowing a C `int`). Nothing was called.
    #[error("PAL {}: {function}(): invalid argument: {reason}", path.display())]
    InvalidArgument {
        /// PAL path.
        path: PathBuf,
        /// The PAL function that was not called.
        function: &'static str,
        /// What is wrong.
        reason: String,
    },

    /// The PAL returned success but broke the protocol (e.g. a `report_len` larger than the
    /// buffer it was given).
    #[error("PAL {}: {function}(): {reason}", path.display())]
    Protocol {
        /// PAL path.
        path: PathBuf,
        /// The PAL function.
        function: &'static str,
        /// What the PAL did wrong.
        reason: String,
    },
}

impl PalError {
    /// The PAL function's return value, for [`PalError::CallFailed`].
    pub fn code(&self) -> Option<i32> {
        match self {
            PalError::CallFailed { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// Formats a PAL return code as `-22 (EINVAL)` when it is a negated errno we know by name, else
/// as the bare number: PALs are told to return `-errno`, and the name saves a lookup.
struct ReturnCode(i32);

impl fmt::Display for ReturnCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.checked_neg().and_then(errno_name) {
            Some(name) if self.0 < 0 => write!(f, "{} ({name})", self.0),
            _ => write!(f, "{}", self.0),
        }
    }
}

/// Name of a (positive) errno value, for the codes PALs commonly return.
pub fn errno_name(errno: i32) -> Option<&'static str> {
    Some(match errno {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ESRCH => "ESRCH",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::ENXIO => "ENXIO",
        libc::E2BIG => "E2BIG",
        libc::ENOEXEC => "ENOEXEC",
        libc::EBADF => "EBADF",
        libc::ECHILD => "ECHILD",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::ENODEV => "ENODEV",
        libc::EINVAL => "EINVAL",
        libc::ENOSPC => "ENOSPC",
        libc::ERANGE => "ERANGE",
        libc::ENOSYS => "ENOSYS",
        libc::EOVERFLOW => "EOVERFLOW",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::ECANCELED => "ECANCELED",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_code_names_known_errnos() {
        assert_eq!(ReturnCode(-22).to_string(), "-22 (EINVAL)");
        assert_eq!(ReturnCode(-38).to_string(), "-38 (ENOSYS)");
        assert_eq!(ReturnCode(-1).to_string(), "-1 (EPERM)");
        assert_eq!(ReturnCode(-4242).to_string(), "-4242");
        assert_eq!(ReturnCode(22).to_string(), "22");
        assert_eq!(ReturnCode(i32::MIN).to_string(), i32::MIN.to_string());
    }

    #[test]
    fn call_failed_message_names_path_function_and_code() {
        let e = PalError::CallFailed {
            path: "/p/liberpal-x.so".into(),
            function: "pal_init",
            code: -22,
        };
        assert_eq!(
            e.to_string(),
            "PAL /p/liberpal-x.so: pal_init() failed with -22 (EINVAL)"
        );
        assert_eq!(e.code(), Some(-22));
    }
}
