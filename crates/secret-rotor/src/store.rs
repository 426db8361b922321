//! The Secrets Manager calls a rotation makes, behind a small trait.
//!
//! [`SecretsStore`] is the whole surface the protocol needs (five calls). [`SecretsManager`] is
//! its implementation on `aws-sdk-secretsmanager`, configured from the environment Lambda provides
//! (or `aws-config`'s defaults elsewhere) so that `AWS_ENDPOINT_URL` /
//! `AWS_ENDPOINT_URL_SECRETS_MANAGER` just work; the reference's `SECRETS_MANAGER_ENDPOINT` is
//! honoured when neither is set.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};

use crate::aws::sdk_error;
use aws_sdk_secretsmanager::Client;

use crate::error::Error;
use crate::password::PasswordPolicy;
use crate::secret::SecretString;

/// The label of the version applications use.
pub const AWSCURRENT: &str = "AWSCURRENT";
/// The label of the version being rotated in.
pub const AWSPENDING: &str = "AWSPENDING";
/// The label Secrets Manager moves to the version `AWSCURRENT` left.
pub const AWSPREVIOUS: &str = "AWSPREVIOUS";

/// A boxed future, so that [`SecretsStore`] can be used as `dyn`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What `DescribeSecret` says about a secret's rotation state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecretDescription {
    /// `ARN`: the secret's full ARN (a name re-used by a new secret gets another one).
    pub arn: Option<String>,
    /// `RotationEnabled`; `None` when the service omits it.
    pub rotation_enabled: Option<bool>,
    /// `VersionIdsToStages`: each version id and its labels.
    pub versions: HashMap<String, Vec<String>>,
    /// `RotationLambdaARN`: the function that rotates the secret, if one is set.
    pub rotation_lambda_arn: Option<String>,
    /// `Tags`, by key (RDS marks the master secrets it manages with a system tag).
    pub tags: HashMap<String, String>,
}

impl SecretDescription {
    /// The labels on `version_id`, `None` if the version is unknown.
    pub fn stages(&self, version_id: &str) -> Option<&[String]> {
        self.versions.get(version_id).map(Vec::as_slice)
    }

    /// Whether `version_id` carries `stage`.
    pub fn has_stage(&self, version_id: &str, stage: &str) -> bool {
        self.stages(version_id)
            .is_some_and(|stages| stages.iter().any(|s| s == stage))
    }

    /// The version that carries `stage`, if any.
    pub fn version_with(&self, stage: &str) -> Option<&str> {
        self.versions
            .iter()
            .find(|(_, stages)| stages.iter().any(|s| s == stage))
            .map(|(id, _)| id.as_str())
    }
}

/// Which version of a secret to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version<'a> {
    /// The version carrying a label (`AWSCURRENT`, `AWSPREVIOUS`).
    Stage(&'a str),
    /// A version by id.
    Id(&'a str),
    /// A version by id, only if it also carries the label.
    IdWithStage(&'a str, &'a str),
}

/// The Secrets Manager operations a rotation uses. Implemented by [`SecretsManager`]; tests
/// may implement it to observe or disturb calls.
pub trait SecretsStore: Send + Sync {
    /// `DescribeSecret`.
    fn describe<'a>(&'a self, secret_id: &'a str) -> BoxFuture<'a, Result<SecretDescription, Error>>;

    /// `GetSecretValue`; `Ok(None)` when the version does not exist (and only then).
    /// A binary secret must be UTF-8 text.
    fn get_value<'a>(
        &'a self,
        secret_id: &'a str,
        version: Version<'a>,
    ) -> BoxFuture<'a, Result<Option<SecretString>, Error>>;

    /// `PutSecretValue(ClientRequestToken=token, VersionStages=[AWSPENDING])`.
    fn put_pending<'a>(
        &'a self,
        secret_id: &'a str,
        token: &'a str,
        value: &'a SecretString,
        rotation_token: Option<&'a SecretString>,
    ) -> BoxFuture<'a, Result<(), Error>>;

    /// `UpdateSecretVersionStage(AWSCURRENT, MoveToVersionId=to, RemoveFromVersionId=from)`.
    fn move_current<'a>(
        &'a self,
        secret_id: &'a str,
        to: &'a str,
        from: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), Error>>;

    /// `GetRandomPassword` with the policy's parameters.
    fn random_password<'a>(
        &'a self,
        policy: &'a PasswordPolicy,
    ) -> BoxFuture<'a, Result<SecretString, Error>>;
}

/// [`SecretsStore`] on the real Secrets Manager API (or anything that speaks it).
#[derive(Debug, Clone)]
pub struct SecretsManager {
    client: Client,
}

impl SecretsManager {
    /// Wraps a client built elsewhere.
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// Builds the client from the environment, once per process. No network call is made here:
    /// connections open at the first request. The configuration is [`crate::aws::sdk_config`]'s;
    /// `AWS_ENDPOINT_URL_SECRETS_MANAGER`, then `AWS_ENDPOINT_URL`, then the reference's
    /// `SECRETS_MANAGER_ENDPOINT` name the endpoint.
    pub async fn from_env() -> Self {
        let config = crate::aws::sdk_config(&[
            "AWS_ENDPOINT_URL_SECRETS_MANAGER",
            "AWS_ENDPOINT_URL",
            "SECRETS_MANAGER_ENDPOINT",
        ])
        .await;
        Self::new(Client::new(&config))
    }

    /// The underlying client.
    pub fn client(&self) -> &Client {
        &self.client
    }
}

/// The Display of an error and its sources. Never the `Debug` form (which the SDK's
/// `DisplayErrorContext` appends): for a response error that holds the raw HTTP response, and a
/// `GetSecretValue` body is the secret.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

fn is_not_found<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> bool {
    matches!(err, SdkError::ServiceError(service) if service.err().code() == Some("ResourceNotFoundException"))
}

impl SecretsStore for SecretsManager {
    fn describe<'a>(&'a self, secret_id: &'a str) -> BoxFuture<'a, Result<SecretDescription, Error>> {
        Box::pin(async move {
            let out = self
                .client
                .describe_secret()
                .secret_id(secret_id)
                .send()
                .await
                .map_err(|e| sdk_error("DescribeSecret", secret_id, e))?;
            Ok(SecretDescription {
                arn: out.arn,
                rotation_enabled: out.rotation_enabled,
                versions: out.version_ids_to_stages.unwrap_or_default(),
                rotation_lambda_arn: out.rotation_lambda_arn,
                tags: out
                    .tags
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|tag| Some((tag.key?, tag.value.unwrap_or_default())))
                    .collect(),
            })
        })
    }

    fn get_value<'a>(
        &'a self,
        secret_id: &'a str,
        version: Version<'a>,
    ) -> BoxFuture<'a, Result<Option<SecretString>, Error>> {
        Box::pin(async move {
            let request = self.client.get_secret_value().secret_id(secret_id);
            let request = match version {
                Version::Stage(stage) => request.version_stage(stage),
                Version::Id(id) => request.version_id(id),
                Version::IdWithStage(id, stage) => request.version_id(id).version_stage(stage),
            };
            let out = match request.send().await {
                Ok(out) => out,
                Err(e) if is_not_found(&e) => return Ok(None),
                Err(e) => return Err(sdk_error("GetSecretValue", secret_id, e)),
            };
            if let Some(text) = out.secret_string {
                return Ok(Some(SecretString::new(text)));
            }
            match out.secret_binary {
                Some(blob) => String::from_utf8(blob.into_inner())
                    .map(|text| Some(SecretString::new(text)))
                    .map_err(|e| {
                        let mut bytes = e.into_bytes();
                        zeroize::Zeroize::zeroize(&mut bytes);
                        Error::invalid_secret(format!(
                            "{secret_id} ({version:?}) is a binary secret that is not UTF-8 text"
                        ))
                    }),
                None => Err(Error::invalid_secret(format!(
                    "{secret_id} ({version:?}) has no value"
                ))),
            }
        })
    }

    fn put_pending<'a>(
        &'a self,
        secret_id: &'a str,
        token: &'a str,
        value: &'a SecretString,
        rotation_token: Option<&'a SecretString>,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            self.client
                .put_secret_value()
                .secret_id(secret_id)
                .client_request_token(token)
                .secret_string(value.expose())
                .version_stages(AWSPENDING)
                .set_rotation_token(rotation_token.map(|t| t.expose().to_owned()))
                .send()
                .await
                .map_err(|e| sdk_error("PutSecretValue", secret_id, e))?;
            Ok(())
        })
    }

    fn move_current<'a>(
        &'a self,
        secret_id: &'a str,
        to: &'a str,
        from: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            self.client
                .update_secret_version_stage()
                .secret_id(secret_id)
                .version_stage(AWSCURRENT)
                .move_to_version_id(to)
                .set_remove_from_version_id(from.map(str::to_owned))
                .send()
                .await
                .map_err(|e| sdk_error("UpdateSecretVersionStage", secret_id, e))?;
            Ok(())
        })
    }

    fn random_password<'a>(
        &'a self,
        policy: &'a PasswordPolicy,
    ) -> BoxFuture<'a, Result<SecretString, Error>> {
        Box::pin(async move {
            let out = self
                .client
                .get_random_password()
                .password_length(i64::try_from(policy.length).unwrap_or(i64::MAX))
                .set_exclude_characters(
                    Some(policy.exclude_characters.clone()).filter(|chars| !chars.is_empty()),
                )
                .exclude_numbers(policy.exclude_numbers)
                .exclude_punctuation(policy.exclude_punctuation)
                .exclude_uppercase(policy.exclude_uppercase)
                .exclude_lowercase(policy.exclude_lowercase)
                .require_each_included_type(policy.require_each_included_type)
                .include_space(false)
                .send()
                .await
                .map_err(|e| sdk_error("GetRandomPassword", "the account", e))?;
            out.random_password
                .map(SecretString::new)
                .ok_or_else(|| Error::transient("GetRandomPassword returned no password"))
        })
    }
}
