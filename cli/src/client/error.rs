//! What can go wrong in a client command, each worded for the person at
//! the terminal: one line, naming what is wrong and, where there is one,
//! what to do about it.

/// A field the server found wrong.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
pub struct FieldDetail {
    /// The field's path (`spec.replicas`).
    #[serde(default)]
    pub field: String,
    /// What is wrong with it.
    #[serde(default)]
    pub reason: String,
}

/// A client command's failure.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The server answered with its error envelope.
    #[error("{message}")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The envelope's code (`not_found`, `invalid`).
        code: String,
        /// The envelope's message.
        message: String,
        /// The fields at fault.
        details: Vec<FieldDetail>,
    },
    /// The server cannot be reached.
    #[error("cannot reach the Berth server at {server}: {reason}")]
    Unreachable {
        /// The server's URL.
        server: String,
        /// Why.
        reason: String,
    },
    /// Nobody is signed in, or the session ended.
    #[error("{0}")]
    NotSignedIn(String),
    /// A file cannot be read or written.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The command was asked something it cannot do.
    #[error("{0}")]
    Usage(String),
    /// Anything else, already worded.
    #[error("{0}")]
    Failed(String),
    /// The command ran and reports failure without more to say (its
    /// output said it: `apply` with a failed document, `rollout status`
    /// past its deadline).
    #[error("")]
    Reported,
    /// A command run in a pod exited with this code, which `berth` exits
    /// with too.
    #[error("")]
    Exit(i32),
}

impl CliError {
    /// The process's exit code: 2 for a command used wrongly, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => 2,
            CliError::Exit(code) => u8::try_from(*code).unwrap_or(1),
            _ => 1,
        }
    }

    /// Whether the server said the object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, CliError::Api { status: 404, .. })
    }

    /// The message with the server's field details that it does not
    /// already name, for the one line an error gets.
    pub fn line(&self) -> String {
        let message = self.to_string();
        match self {
            CliError::Api { details, .. } => {
                let missing: Vec<String> = details
                    .iter()
                    .filter(|d| !message.contains(&d.reason))
                    .map(|d| format!("{}: {}", d.field, d.reason))
                    .collect();
                if missing.is_empty() {
                    message
                } else {
                    format!("{message} ({})", missing.join("; "))
                }
            }
            _ => message,
        }
    }
}
