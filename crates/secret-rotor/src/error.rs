//! One error type for the framework and every engine.
//!
//! The kind separates what retrying cannot fix (bad configuration, a malformed event or secret,
//! a secret in the wrong rotation state, a target that refuses the credentials) from transient
//! faults (network, throttling, the invocation's deadline). The kind becomes the Lambda
//! `errorType`, so an operator reading a failed rotation knows which it was at a glance.
//!
//! Messages are written by this project's code only and never carry a secret value; engine
//! authors keep that rule by building messages from names, never from [`SecretString`]s.
//!
//! [`SecretString`]: crate::SecretString

use std::fmt;

/// What went wrong, in terms of what the operator should do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// An environment variable of the function is invalid: fix the deployment.
    Configuration,
    /// The invocation event is malformed: not something Secrets Manager sends.
    InvalidEvent,
    /// A secret value is malformed or does not belong to this function: fix the secret.
    InvalidSecret,
    /// The secret is not in a state this step can act on (rotation disabled, unknown version,
    /// version not `AWSPENDING`).
    RotationState,
    /// The target (database, host) refused or failed in a way retrying will not fix: wrong
    /// credentials, missing privileges, a certificate that does not verify.
    Target,
    /// A fault that may pass: network, throttling, a service error. Retrying can help.
    Transient,
    /// The invocation's deadline was reached. Retrying can help.
    Timeout,
}

impl ErrorKind {
    /// The Lambda `errorType` reported for this kind.
    pub fn error_type(self) -> &'static str {
        match self {
            ErrorKind::Configuration => "ConfigurationError",
            ErrorKind::InvalidEvent => "InvalidEventError",
            ErrorKind::InvalidSecret => "InvalidSecretError",
            ErrorKind::RotationState => "RotationStateError",
            ErrorKind::Target => "TargetError",
            ErrorKind::Transient => "TransientError",
            ErrorKind::Timeout => "TimeoutError",
        }
    }

    /// Whether the same invocation might succeed if repeated unchanged.
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorKind::Transient | ErrorKind::Timeout)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.error_type())
    }
}

/// The error of every fallible operation in a rotation.
///
/// ```
/// use secret_rotor::{Error, ErrorKind};
/// let err = Error::invalid_secret("missing required key `host`").context("AWSCURRENT");
/// assert_eq!(err.kind(), ErrorKind::InvalidSecret);
/// assert_eq!(err.to_string(), "AWSCURRENT: missing required key `host`");
/// assert!(!err.kind().is_retryable());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    kind: ErrorKind,
    message: String,
    code: Option<Code>,
}

/// A named code, for the few failures a caller must tell apart within one [`ErrorKind`].
///
/// ```
/// use secret_rotor::{Code, Error};
/// let refused = Error::target("user app: login refused").with_code(Code::CredentialsRefused);
/// assert_eq!(refused.context("pending").code(), Some(Code::CredentialsRefused));
/// assert_eq!(Error::target("TLS failed").code(), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Code {
    /// The server refused the credentials themselves (no such user, or not this password): not
    /// TLS, a missing database or an access rule. A password set on a writer and not yet
    /// replicated is refused this way on a replica.
    CredentialsRefused,
}

impl Error {
    /// An error of the given kind. The message must not contain secret material.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            code: None,
        }
    }

    /// The same error, with a named code.
    pub fn with_code(mut self, code: Code) -> Self {
        self.code = Some(code);
        self
    }

    /// The named code, if the error has one.
    pub fn code(&self) -> Option<Code> {
        self.code
    }

    /// A configuration error; name the variable in the message.
    pub fn configuration(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Configuration, message)
    }

    /// A malformed event.
    pub fn invalid_event(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidEvent, message)
    }

    /// A malformed secret value; name the key in the message.
    pub fn invalid_secret(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidSecret, message)
    }

    /// The secret is in a state the step cannot act on.
    pub fn rotation_state(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::RotationState, message)
    }

    /// The target refused: credentials, privileges, certificates.
    pub fn target(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Target, message)
    }

    /// A fault that may pass on retry.
    pub fn transient(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Transient, message)
    }

    /// The invocation's deadline was reached while doing `what`.
    pub fn timeout(what: impl fmt::Display) -> Self {
        Self::new(ErrorKind::Timeout, format!("deadline reached while {what}"))
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message alone.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Prefixes the message with where it happened (`"AWSCURRENT"`, `"host db-1"`).
    pub fn context(mut self, prefix: impl fmt::Display) -> Self {
        self.message = format!("{prefix}: {}", self.message);
        self
    }
}

impl From<Error> for lambda_runtime::Diagnostic {
    fn from(err: Error) -> Self {
        lambda_runtime::Diagnostic {
            error_type: err.kind.error_type().to_owned(),
            error_message: err.message,
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
