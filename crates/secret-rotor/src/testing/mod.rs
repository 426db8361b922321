//! A kit for testing rotation engines without AWS (feature `testing`; never in a function
//! binary).
//!
//! [`MemoryStore`] is a [`SecretsStore`] that keeps secrets in memory and behaves as Secrets
//! Manager does where the protocol depends on it: labels (one version per label, `AWSPREVIOUS`
//! attached to the old version when `AWSCURRENT` moves), `PutSecretValue` idempotent per token
//! and refusing a different value for the same token, the `RotationToken` recorded,
//! `RotateSecret`'s pending version (labelled, without a value), and failures injected per
//! operation. [`Service`] plays the service's part of a rotation on it: `RotateSecret`, the four
//! steps in order, and `AWSPENDING` cleared at the end.
//!
//! ```
//! use secret_rotor::testing::{MemoryStore, Service};
//! use secret_rotor::{Passwords, Rotor, SecretString, AWSCURRENT};
//! # use secret_rotor::{Context, Engine, Error};
//! # struct Noop;
//! # impl Engine for Noop {
//! #     type Secret = SecretString;
//! #     fn name(&self) -> &str { "noop" }
//! #     fn parse(&self, v: &SecretString) -> Result<SecretString, Error> { Ok(v.clone()) }
//! #     fn render(&self, v: &SecretString) -> Result<SecretString, Error> { Ok(v.clone()) }
//! #     async fn create_pending(&self, ctx: &Context<'_, Self>) -> Result<SecretString, Error> {
//! #         ctx.new_password().await
//! #     }
//! #     async fn set_pending(&self, _: &Context<'_, Self>) -> Result<(), Error> { Ok(()) }
//! #     async fn test_pending(&self, _: &Context<'_, Self>) -> Result<(), Error> { Ok(()) }
//! # }
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let store = MemoryStore::new();
//! let arn = store.create_secret("db", &SecretString::from("first"));
//! let rotor = Rotor::with_passwords(Ok(Noop), store.clone(), Passwords::from_lookup(|_| None, ""));
//! let token = Service::new(&store).rotate(&rotor, &arn).await.unwrap();
//! assert_eq!(store.version_with(&arn, AWSCURRENT).as_deref(), Some(token.as_str()));
//! # });
//! ```

pub mod conformance;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::driver::{Driver, InProcess, RotationService};
use crate::error::{Error, ErrorKind};
use crate::event::Step;
use crate::password::PasswordPolicy;
use crate::runtime::Rotor;
use crate::secret::SecretString;
use crate::store::{
    BoxFuture, SecretDescription, SecretsStore, Version, AWSCURRENT, AWSPENDING, AWSPREVIOUS,
};
use crate::{Deadline, Engine};

/// A Secrets Manager operation of [`SecretsStore`], for injected failures and call logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `DescribeSecret`.
    Describe,
    /// `GetSecretValue`.
    GetValue,
    /// `PutSecretValue`.
    PutPending,
    /// `UpdateSecretVersionStage`.
    MoveCurrent,
    /// `GetRandomPassword`.
    RandomPassword,
}

#[derive(Default)]
struct StoredVersion {
    value: Option<SecretString>,
    stages: Vec<String>,
    rotation_token: Option<SecretString>,
}

struct StoredSecret {
    name: String,
    rotation_enabled: Option<bool>,
    rotation_lambda_arn: Option<String>,
    tags: BTreeMap<String, String>,
    versions: BTreeMap<String, StoredVersion>,
}

impl StoredSecret {
    fn take_stage(&mut self, stage: &str) -> Option<String> {
        let mut from = None;
        for (id, version) in &mut self.versions {
            if let Some(at) = version.stages.iter().position(|s| s == stage) {
                version.stages.remove(at);
                from = Some(id.clone());
            }
        }
        from
    }

    fn add_stage(&mut self, id: &str, stage: &str) {
        self.take_stage(stage);
        let version = self.versions.entry(id.to_owned()).or_default();
        version.stages.push(stage.to_owned());
    }

    fn version_with(&self, stage: &str) -> Option<&str> {
        self.versions
            .iter()
            .find(|(_, v)| v.stages.iter().any(|s| s == stage))
            .map(|(id, _)| id.as_str())
    }
}

#[derive(Default)]
struct State {
    /// By ARN.
    secrets: BTreeMap<String, StoredSecret>,
    failures: Vec<(Operation, Error)>,
    calls: Vec<Operation>,
    created: u64,
}

impl State {
    fn arn_of(&self, secret_id: &str) -> Option<String> {
        if self.secrets.contains_key(secret_id) {
            return Some(secret_id.to_owned());
        }
        self.secrets
            .iter()
            .find(|(_, s)| s.name == secret_id)
            .map(|(arn, _)| arn.clone())
    }

    fn secret(&mut self, secret_id: &str) -> Result<&mut StoredSecret, Error> {
        let arn = self.arn_of(secret_id).ok_or_else(|| not_found(secret_id))?;
        self.secrets.get_mut(&arn).ok_or_else(|| not_found(secret_id))
    }

    /// Records the call; the first injected failure for `operation`, if any, is its answer.
    fn call(&mut self, operation: Operation) -> Result<(), Error> {
        self.calls.push(operation);
        match self.failures.iter().position(|(op, _)| *op == operation) {
            Some(at) => Err(self.failures.remove(at).1),
            None => Ok(()),
        }
    }
}

fn not_found(secret_id: &str) -> Error {
    Error::new(
        ErrorKind::RotationState,
        format!("ResourceNotFoundException: secret {secret_id} not found"),
    )
}

/// Secrets in memory, shared by its clones; see the [module](self).
#[derive(Clone, Default)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A test that panicked while holding the lock has failed already; its state is still
        // what the next assertion should see.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `CreateSecret`: a secret `name` whose first version holds `value` as `AWSCURRENT`, with
    /// rotation enabled; returns its ARN.
    pub fn create_secret(&self, name: &str, value: &SecretString) -> String {
        let mut state = self.state();
        state.created += 1;
        let arn = format!(
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:{name}-{:06}",
            state.created
        );
        let mut versions = BTreeMap::new();
        versions.insert(
            format!("initial-{:06}", state.created),
            StoredVersion {
                value: Some(value.clone()),
                stages: vec![AWSCURRENT.to_owned()],
                rotation_token: None,
            },
        );
        state.secrets.insert(
            arn.clone(),
            StoredSecret {
                name: name.to_owned(),
                rotation_enabled: Some(true),
                rotation_lambda_arn: None,
                tags: BTreeMap::new(),
                versions,
            },
        );
        arn
    }

    /// Sets `RotationEnabled` and `RotationLambdaARN` as `DescribeSecret` will report them.
    pub fn set_rotation(&self, secret_id: &str, enabled: Option<bool>, function_arn: Option<&str>) {
        let mut state = self.state();
        if let Ok(secret) = state.secret(secret_id) {
            secret.rotation_enabled = enabled;
            secret.rotation_lambda_arn = function_arn.map(str::to_owned);
        }
    }

    /// Tags the secret, as `DescribeSecret` will report them (RDS tags the master secrets it
    /// manages with `aws:rds:primaryDBInstanceArn` or `aws:rds:primaryDBClusterArn`).
    pub fn tag(&self, secret_id: &str, key: &str, value: &str) {
        let mut state = self.state();
        if let Ok(secret) = state.secret(secret_id) {
            secret.tags.insert(key.to_owned(), value.to_owned());
        }
    }

    /// `RotateSecret`'s first act: a version `token` labelled `AWSPENDING`, without a value (the
    /// label leaves any other version). A token that is already a version only gets the label.
    pub fn rotate_secret(&self, secret_id: &str, token: &str) -> Result<(), Error> {
        let mut state = self.state();
        state.secret(secret_id)?.add_stage(token, AWSPENDING);
        Ok(())
    }

    /// What the service does once finishSecret succeeded: `AWSPENDING` leaves `token`.
    pub fn clear_pending(&self, secret_id: &str, token: &str) {
        let mut state = self.state();
        if let Ok(secret) = state.secret(secret_id) {
            if let Some(version) = secret.versions.get_mut(token) {
                version.stages.retain(|stage| stage != AWSPENDING);
            }
        }
    }

    /// The value of the version carrying `stage`.
    pub fn value_at(&self, secret_id: &str, stage: &str) -> Option<SecretString> {
        let mut state = self.state();
        let secret = state.secret(secret_id).ok()?;
        let id = secret.version_with(stage)?.to_owned();
        secret.versions.get(&id)?.value.clone()
    }

    /// The value of version `id`.
    pub fn value_of(&self, secret_id: &str, id: &str) -> Option<SecretString> {
        let mut state = self.state();
        state.secret(secret_id).ok()?.versions.get(id)?.value.clone()
    }

    /// The id of the version carrying `stage`.
    pub fn version_with(&self, secret_id: &str, stage: &str) -> Option<String> {
        let mut state = self.state();
        state
            .secret(secret_id)
            .ok()?
            .version_with(stage)
            .map(str::to_owned)
    }

    /// Every version id and its labels (versions without a label included).
    pub fn stages(&self, secret_id: &str) -> BTreeMap<String, Vec<String>> {
        let mut state = self.state();
        match state.secret(secret_id) {
            Ok(secret) => secret
                .versions
                .iter()
                .map(|(id, v)| (id.clone(), v.stages.clone()))
                .collect(),
            Err(_) => BTreeMap::new(),
        }
    }

    /// The `RotationToken` that `PutSecretValue` received for version `id`.
    pub fn rotation_token(&self, secret_id: &str, id: &str) -> Option<SecretString> {
        let mut state = self.state();
        state
            .secret(secret_id)
            .ok()?
            .versions
            .get(id)?
            .rotation_token
            .clone()
    }

    /// The next call of `operation` fails with `error` (several queue up in order).
    pub fn fail_next(&self, operation: Operation, error: Error) {
        self.state().failures.push((operation, error));
    }

    /// Every call made so far, in order.
    pub fn calls(&self) -> Vec<Operation> {
        self.state().calls.clone()
    }

    /// How many calls of `operation` were made.
    pub fn count(&self, operation: Operation) -> usize {
        self.state().calls.iter().filter(|op| **op == operation).count()
    }
}

impl SecretsStore for MemoryStore {
    fn describe<'a>(&'a self, secret_id: &'a str) -> BoxFuture<'a, Result<SecretDescription, Error>> {
        Box::pin(async move {
            let mut state = self.state();
            state.call(Operation::Describe)?;
            let arn = state.arn_of(secret_id).ok_or_else(|| not_found(secret_id))?;
            let secret = state.secret(&arn)?;
            Ok(SecretDescription {
                arn: Some(arn),
                rotation_enabled: secret.rotation_enabled,
                versions: secret
                    .versions
                    .iter()
                    .filter(|(_, v)| !v.stages.is_empty())
                    .map(|(id, v)| (id.clone(), v.stages.clone()))
                    .collect(),
                rotation_lambda_arn: secret.rotation_lambda_arn.clone(),
                tags: secret.tags.clone().into_iter().collect(),
            })
        })
    }

    fn get_value<'a>(
        &'a self,
        secret_id: &'a str,
        version: Version<'a>,
    ) -> BoxFuture<'a, Result<Option<SecretString>, Error>> {
        Box::pin(async move {
            let mut state = self.state();
            state.call(Operation::GetValue)?;
            let secret = state.secret(secret_id)?;
            let id = match version {
                Version::Stage(stage) => secret.version_with(stage).map(str::to_owned),
                Version::Id(id) => Some(id.to_owned()),
                Version::IdWithStage(id, stage) => secret
                    .versions
                    .get(id)
                    .filter(|v| v.stages.iter().any(|s| s == stage))
                    .map(|_| id.to_owned()),
            };
            // A version without a value (RotateSecret's, before PutSecretValue) is not found, as
            // in the service.
            Ok(id.and_then(|id| secret.versions.get(&id).and_then(|v| v.value.clone())))
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
            let mut state = self.state();
            state.call(Operation::PutPending)?;
            let secret = state.secret(secret_id)?;
            if let Some(existing) = secret.versions.get(token).and_then(|v| v.value.as_ref()) {
                // The same request again succeeds; another value for the same token is refused.
                return if existing.expose() == value.expose() {
                    Ok(())
                } else {
                    Err(Error::new(
                        ErrorKind::RotationState,
                        format!("ResourceExistsException: version {token} already exists with another value"),
                    ))
                };
            }
            secret.add_stage(token, AWSPENDING);
            if let Some(version) = secret.versions.get_mut(token) {
                version.value = Some(value.clone());
                version.rotation_token = rotation_token.cloned();
            }
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
            let mut state = self.state();
            state.call(Operation::MoveCurrent)?;
            let secret = state.secret(secret_id)?;
            if !secret.versions.contains_key(to) {
                return Err(Error::new(
                    ErrorKind::RotationState,
                    format!("InvalidParameterException: no version {to}"),
                ));
            }
            let current = secret.version_with(AWSCURRENT).map(str::to_owned);
            if from.map(str::to_owned) != current {
                return Err(Error::new(
                    ErrorKind::RotationState,
                    format!(
                        "InvalidParameterException: AWSCURRENT is on {current:?}, not on {from:?} (RemoveFromVersionId)"
                    ),
                ));
            }
            secret.add_stage(to, AWSCURRENT);
            if let Some(old) = current.filter(|old| old != to) {
                secret.add_stage(&old, AWSPREVIOUS);
            }
            Ok(())
        })
    }

    fn random_password<'a>(
        &'a self,
        policy: &'a PasswordPolicy,
    ) -> BoxFuture<'a, Result<SecretString, Error>> {
        Box::pin(async move {
            self.state().call(Operation::RandomPassword)?;
            policy.generate_local()
        })
    }
}

impl RotationService for MemoryStore {
    fn begin<'a>(&'a self, secret_id: &'a str, token: &'a str) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move { self.rotate_secret(secret_id, token) })
    }

    fn end<'a>(&'a self, secret_id: &'a str, token: &'a str) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            self.clear_pending(secret_id, token);
            Ok(())
        })
    }
}

/// The service's part of rotations on a [`MemoryStore`], for a [`Rotor`] in this process: the
/// [`Driver`] with the store and [`InProcess`] steps.
pub struct Service<'a> {
    store: &'a MemoryStore,
    step_time: std::time::Duration,
}

impl<'a> Service<'a> {
    /// The service for `store`, giving each step 30 seconds.
    pub fn new(store: &'a MemoryStore) -> Self {
        Self {
            store,
            step_time: std::time::Duration::from_secs(30),
        }
    }

    /// Each step's time.
    pub fn with_step_time(mut self, step_time: std::time::Duration) -> Self {
        self.step_time = step_time;
        self
    }

    /// One step through `rotor`, as the service invokes it.
    pub async fn step<E: Engine>(
        &self,
        rotor: &Rotor<E>,
        step: Step,
        secret_id: &str,
        token: &str,
    ) -> Result<crate::Outcome, Error> {
        // The driver's event (a RotationToken, as the service sends), handled in process.
        let invoker = InProcess::new(rotor, self.step_time);
        let event = Driver::new(self.store, &invoker).event(step, secret_id, token);
        rotor.handle(&event, Deadline::after(self.step_time)).await
    }

    /// A whole rotation with a new token: `RotateSecret`, the four steps, `AWSPENDING` cleared.
    /// Returns the token, or the step that failed and its error (the rotation is then left as
    /// the service would leave it: `AWSPENDING` on the token, for a retry).
    pub async fn rotate<E: Engine>(
        &self,
        rotor: &Rotor<E>,
        secret_id: &str,
    ) -> Result<String, (Step, Error)> {
        let token = new_token();
        let invoker = InProcess::new(rotor, self.step_time);
        Driver::new(self.store, &invoker)
            .rotate_with(secret_id, &token)
            .await?;
        Ok(token)
    }

    /// The four steps for `token` (a retry of a rotation that failed), then `AWSPENDING` cleared.
    pub async fn resume<E: Engine>(
        &self,
        rotor: &Rotor<E>,
        secret_id: &str,
        token: &str,
    ) -> Result<(), (Step, Error)> {
        let invoker = InProcess::new(rotor, self.step_time);
        Driver::new(self.store, &invoker)
            .resume(secret_id, token)
            .await
            .map(drop)
    }
}

/// A fresh version id, as the service makes them (a random UUID's shape).
pub fn new_token() -> String {
    let mut bytes = [0u8; 16];
    // Only a test's version id: if the system's source fails, a counter-based id still works.
    if getrandom::fill(&mut bytes).is_err() {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(1);
        bytes[..8].copy_from_slice(&NEXT.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}
