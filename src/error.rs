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
}

impl Error {
    pub fn input(at: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Input {
            at: at.into(),
            message: message.into(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
