//! The errors a user can meet, each saying what went wrong, where, and what to do, and the
//! exit code it maps to (0 success, 1 invalid input or failed verification, 2 I/O or internal).

use crate::diag::Diagnostics;
use std::fmt;
use std::path::PathBuf;

/// What a refusal or a failure says, as data: what is wrong, and how to fix it (when there
/// is a fix to give), like a [`crate::diag::Problem`] without a position in a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Said {
    /// What is wrong (it names the thing: file, member, flag, ...).
    pub what: String,
    /// How to fix it.
    pub fix: Option<String>,
}

impl Said {
    /// A message with a fix.
    pub fn new(what: impl Into<String>, fix: impl Into<String>) -> Said {
        Said { what: what.into(), fix: Some(fix.into()) }
    }
}

/// Text in the form every message of etcdpack takes, `what\n  help: fix`, read as its parts.
impl From<String> for Said {
    fn from(text: String) -> Said {
        match text.split_once("\n  help: ") {
            Some((what, fix)) => Said { what: what.to_string(), fix: Some(fix.to_string()) },
            None => Said { what: text, fix: None },
        }
    }
}

impl fmt::Display for Said {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.fix {
            Some(fix) => write!(f, "{}\n  help: {fix}", self.what),
            None => write!(f, "{}", self.what),
        }
    }
}

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
    /// The build would ship something it must not (an expired certificate, a change that
    /// loses quorum, an etcd downgrade).
    #[error("{0}")]
    Refused(Said),
    /// A bundle failed verification.
    #[error("{0}")]
    VerifyFailed(Said),
    /// Bad command-line use that clap cannot see.
    #[error("{0}")]
    Usage(Said),
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

    /// [`Error::Usage`] from `what\n  help: fix` text.
    pub fn usage(text: impl Into<String>) -> Error {
        Error::Usage(Said::from(text.into()))
    }

    /// [`Error::Refused`] from `what\n  help: fix` text.
    pub fn refused(text: impl Into<String>) -> Error {
        Error::Refused(Said::from(text.into()))
    }

    /// [`Error::VerifyFailed`] from `what\n  help: fix` text.
    pub fn verify_failed(text: impl Into<String>) -> Error {
        Error::VerifyFailed(Said::from(text.into()))
    }

    /// What the error says, as data, for the kinds that carry a [`Said`].
    pub fn said(&self) -> Option<&Said> {
        match self {
            Error::Refused(s) | Error::VerifyFailed(s) | Error::Usage(s) => Some(s),
            _ => None,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_read_as_what_and_fix() {
        let e = Error::usage("t.yaml exists\n  help: choose another file or pass --force");
        assert_eq!(e.said(), Some(&Said::new("t.yaml exists", "choose another file or pass --force")));
        assert_eq!(e.to_string(), "t.yaml exists\n  help: choose another file or pass --force");
        assert_eq!(Error::refused("no fix").said().unwrap().fix, None);
        assert_eq!(e.exit_code(), 1);
    }
}
