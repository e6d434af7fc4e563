//! The errors a user can meet, each saying what went wrong, where, and what to do, and the
//! exit code it maps to (0 success, 1 invalid input or failed verification, 2 I/O or internal).

use crate::diag::Diagnostics;
use std::path::PathBuf;

/// Everything that can stop a command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The topology has errors.
    #[error("{0}")]
    Invalid(Diagnostics),
    /// The state's CA is not the topology's `existingCA`.
    #[error(
        "{0}\n  help: point pki.existingCA at the CA this state was built with, or use a new --state folder for the new CA"
    )]
    StateCaMismatch(String),
    /// The state folder is damaged or was edited by hand.
    #[error(
        "{what} in {path}\n  help: restore the state folder from its backup; etcdpack never repairs keys on its own"
    )]
    StateCorrupt {
        /// The folder.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// The state folder was written by a newer etcdpack.
    #[error(
        "{what} in {path}\n  help: build with the etcdpack release that wrote it (or a newer one); this one must not rewrite it"
    )]
    StateNewer {
        /// The folder.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// Another build holds the state folder.
    #[error("another etcdpack build is using {0}\n  help: wait for it to finish, then run again")]
    Locked(PathBuf),
    /// A file could not be read or written.
    #[error("{action} {path}: {source}{}", io_hint(source, path))]
    Io {
        /// What etcdpack was doing.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The output folder holds files etcdpack did not write.
    #[error(
        "{path} holds {file}, which etcdpack did not write\n  help: choose an empty or new --out folder; etcdpack replaces --out as a whole"
    )]
    ForeignOutput {
        /// The out folder.
        path: PathBuf,
        /// The unexpected file.
        file: String,
    },
    /// The build would ship something it must not (an expired certificate).
    #[error("{0}")]
    Refused(String),
    /// A bundle failed verification.
    #[error("{0}")]
    VerifyFailed(String),
    /// Bad command-line use that clap cannot see.
    #[error("{0}")]
    Usage(String),
    /// A bug: a template or crypto library failed.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// The process exit code.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Invalid(_)
            | Error::StateCaMismatch(_)
            | Error::VerifyFailed(_)
            | Error::Usage(_)
            | Error::Refused(_)
            | Error::ForeignOutput { .. } => 1,
            Error::StateCorrupt { .. }
            | Error::StateNewer { .. }
            | Error::Locked(_)
            | Error::Io { .. }
            | Error::Internal(_) => 2,
        }
    }

    /// An I/O error with its context.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io { action, path: path.into(), source }
    }
}

/// What to do about the common I/O failures.
fn io_hint(e: &std::io::Error, path: &std::path::Path) -> String {
    use std::io::ErrorKind::*;
    match e.kind() {
        PermissionDenied | ReadOnlyFilesystem => format!(
            "\n  help: etcdpack cannot write or read {} as this user; fix its permissions, run as its owner, or choose another folder (--state, --out)",
            path.display()
        ),
        NotFound => format!("\n  help: check the path {}", path.display()),
        _ => String::new(),
    }
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
