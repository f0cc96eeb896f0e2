//! One error type for the library. Every variant names where the problem is
//! (file and document, policy and field, workload and field) because the
//! person reading it has to find and fix that place.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A manifest or request body that cannot be judged.
    #[error("{at}: {message}")]
    Input { at: String, message: String },

    /// A policy or exception that cannot be used. Such a policy is refused
    /// whole, never half-applied.
    #[error("{kind} {name}: {}", problems.join("; "))]
    Policy {
        kind: &'static str,
        name: String,
        problems: Vec<String>,
    },

    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// `serve` could not start: `what` names the flag or the step.
    #[error("{what}: {message}")]
    Start { what: String, message: String },

    /// A task `serve` supervises ended while the process was not shutting
    /// down: the process exits so that it is restarted.
    #[error("the {task} {ended}; exiting so the replica is restarted")]
    TaskEnded { task: &'static str, ended: String },
}

impl Error {
    pub fn input(at: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Input {
            at: at.into(),
            message: message.into(),
        }
    }

    pub fn start(what: impl Into<String>, why: impl std::fmt::Display) -> Self {
        Error::Start {
            what: what.into(),
            message: why.to_string(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
