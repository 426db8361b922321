//! The operator CLI, `rotor`: drive a rotation, diagnose a secret, preflight a rotation.
//!
//! `rotate` starts a rotation in AWS and follows it to the end (reporting the step that failed,
//! from the function's logs), or, locally (`--local`), plays Secrets Manager itself: it has
//! `RotateSecret` create the empty `AWSPENDING` version, leaving the secret's rotation
//! configuration as it was, and invokes the function through the Lambda Invoke API step by step,
//! as the service would. `status` shows versions, labels and schedule, and diagnoses a stuck
//! rotation after logging in with each labelled version. `check` reads the secret as its function
//! would and logs in with it, changing nothing.
//! Human output by default, `--json` on every command; the exit code says what happened
//! ([`Exit`]).

pub mod check;
pub mod invoke;
pub mod output;
pub mod report;
pub mod rotate;
pub mod status;

use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};

/// What the process exit code means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Done, all good.
    Ok = 0,
    /// The rotation or check failed (a step failed, a login was refused).
    Failed = 1,
    /// Bad usage or configuration (missing flag, malformed secret, unknown secret).
    Usage = 2,
    /// `status`: the secret needs attention (a rotation is stuck).
    Attention = 3,
    /// A transient fault (network, throttling, timeout): trying again may help.
    Transient = 4,
}

/// A failure of the CLI itself, with the exit code it maps to.
#[derive(Debug)]
pub struct CliError {
    /// The exit code.
    pub exit: Exit,
    /// What to tell the operator.
    pub message: String,
}

impl CliError {
    /// A usage or configuration error.
    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            exit: Exit::Usage,
            message: message.into(),
        }
    }

    /// A failed operation.
    pub fn failed(message: impl Into<String>) -> Self {
        Self {
            exit: Exit::Failed,
            message: message.into(),
        }
    }

    /// A transient fault.
    pub fn transient(message: impl Into<String>) -> Self {
        Self {
            exit: Exit::Transient,
            message: message.into(),
        }
    }

    /// From an AWS SDK error: unknown secrets and bad parameters are usage errors, the rest
    /// transient.
    pub fn from_sdk<E, R>(what: &str, err: SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug + 'static,
    {
        let code = err.code().unwrap_or_default().to_owned();
        let message = match (err.code(), err.message()) {
            (Some(code), Some(text)) => format!("{what}: {code}: {text}"),
            _ => format!("{what}: {}", secret_rotor::error_chain(&err)),
        };
        match code.as_str() {
            "ResourceNotFoundException"
            | "InvalidParameterException"
            | "InvalidRequestException"
            | "AccessDeniedException"
            | "UnrecognizedClientException" => Self::usage(message),
            _ => Self::transient(message),
        }
    }
}

impl From<secret_rotor::Error> for CliError {
    fn from(err: secret_rotor::Error) -> Self {
        let exit = match err.kind() {
            secret_rotor::ErrorKind::Configuration
            | secret_rotor::ErrorKind::InvalidEvent
            | secret_rotor::ErrorKind::InvalidSecret
            | secret_rotor::ErrorKind::RotationState => Exit::Usage,
            secret_rotor::ErrorKind::Target => Exit::Failed,
            _ => Exit::Transient,
        };
        Self {
            exit,
            message: format!("{}: {err}", err.kind()),
        }
    }
}

/// A Secrets Manager client from the shared configuration, or at `endpoint` if given.
pub fn secrets_manager(
    shared: &aws_config::SdkConfig,
    endpoint: Option<&str>,
) -> aws_sdk_secretsmanager::Client {
    let mut config = aws_sdk_secretsmanager::config::Builder::from(shared);
    if let Some(endpoint) = endpoint {
        config = config.endpoint_url(endpoint);
    }
    aws_sdk_secretsmanager::Client::from_conf(config.build())
}

/// A new version token in UUID form.
pub fn new_token() -> Result<String, CliError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| CliError::transient(format!("random source: {e}")))?;
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let h: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}
