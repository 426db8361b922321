//! The plug-in interface an engine implements, and the context it receives.
//!
//! The framework owns the protocol (preamble, labels, idempotent retries, Secrets Manager
//! calls); an engine owns its target: how its secret value looks, how a pending value is derived
//! from the current one, how the target is made to accept it, and how it is tested.

use std::future::Future;

use tokio::sync::OnceCell;

use crate::cache::ValueCache;
use crate::deadline::Deadline;
use crate::error::Error;
use crate::event::Step;
use crate::password::Passwords;
use crate::preflight::Report;
use crate::secret::SecretString;
use crate::store::{SecretDescription, SecretsStore, Version, AWSCURRENT, AWSPREVIOUS};

/// A rotation target: a database flavour and strategy, a fleet of hosts, anything with
/// credentials.
///
/// Each step method must be idempotent: Secrets Manager retries whole rotations with the same
/// token, and a step may have been cut short at any instant. `set_pending` in particular must
/// first check whether the target already accepts the pending value.
///
/// See the crate-level documentation for a complete engine.
pub trait Engine: Sized + Send + Sync + 'static {
    /// The parsed, validated secret value.
    type Secret: Send + Sync;

    /// Short name for logs (`postgres/single-user`).
    fn name(&self) -> &str;

    /// The default of `EXCLUDE_CHARACTERS` for this engine's passwords.
    fn default_excluded_characters(&self) -> &str {
        ""
    }

    /// Parses and validates a secret value. Errors name the key at fault, never a value.
    fn parse(&self, value: &SecretString) -> Result<Self::Secret, Error>;

    /// Serializes a secret value, keeping every key the engine does not own.
    fn render(&self, secret: &Self::Secret) -> Result<SecretString, Error>;

    /// createSecret: derives the pending value from `ctx.current()` (a new password, the other
    /// user, a new key pair). Nothing may be changed on the target here.
    fn create_pending(
        &self,
        ctx: &Context<'_, Self>,
    ) -> impl Future<Output = Result<Self::Secret, Error>> + Send;

    /// setSecret: makes the target accept `ctx.pending()`. Done already → succeed without
    /// changing anything.
    fn set_pending(&self, ctx: &Context<'_, Self>) -> impl Future<Output = Result<(), Error>> + Send;

    /// testSecret: proves `ctx.pending()` works, writing nothing. Must also pass when pending is
    /// a copy of current (`RotateSecret` with `RotateImmediately=false`).
    fn test_pending(&self, ctx: &Context<'_, Self>) -> impl Future<Output = Result<(), Error>> + Send;

    /// finishSecret, after `AWSCURRENT` moved to the new version, and again whenever
    /// finishSecret is retried after that: clean up what the old credentials left (an SSH key,
    /// a grace period). Here `ctx.current()` is the new value and `ctx.previous()` the old one.
    fn after_finish(&self, ctx: &Context<'_, Self>) -> impl Future<Output = Result<(), Error>> + Send {
        let _ = ctx;
        async { Ok(()) }
    }

    /// The preflight (`rotor check`, and the deployed function's check event): everything a
    /// rotation of this secret would need, in the order the rotation uses it, recorded in
    /// `report` — and nothing changed. The default checks that `AWSCURRENT` parses; engines add
    /// their logins and hosts, through the same code their steps use.
    fn preflight(&self, ctx: &Context<'_, Self>, report: &mut Report) -> impl Future<Output = ()> + Send {
        async move {
            let parsed = ctx.current().await.map(drop);
            report.record("AWSCURRENT parses", parsed, |_| String::new());
        }
    }
}

/// What an engine sees of one invocation: the secret's versions (read on first use, at most
/// once, by the version ids the preamble saw, and not at all when this process already holds
/// them), other secrets, the password generator and the deadline.
pub struct Context<'a, E: Engine> {
    engine: &'a E,
    store: &'a dyn SecretsStore,
    passwords: &'a Passwords,
    secret_id: &'a str,
    token: &'a str,
    step: Step,
    deadline: Deadline,
    current: OnceCell<E::Secret>,
    pending: OnceCell<E::Secret>,
    previous: OnceCell<Option<E::Secret>>,
    /// The version ids of current and previous (from the preamble, or after finishSecret's
    /// move), read by id: Secrets Manager does not promise that a label just moved reads back
    /// moved, and a value by id can be kept. `None`: read by label.
    versions: Option<(String, Option<String>)>,
    /// The process's values of this rotation's versions, and the secret's key in it (its ARN).
    cache: Option<(&'a ValueCache, String)>,
}

impl<'a, E: Engine> Context<'a, E> {
    pub(crate) fn new(
        engine: &'a E,
        store: &'a dyn SecretsStore,
        passwords: &'a Passwords,
        secret_id: &'a str,
        token: &'a str,
        step: Step,
        deadline: Deadline,
    ) -> Self {
        Self {
            engine,
            store,
            passwords,
            secret_id,
            token,
            step,
            deadline,
            current: OnceCell::new(),
            pending: OnceCell::new(),
            previous: OnceCell::new(),
            versions: None,
            cache: None,
        }
    }

    /// From now on `current()` and `previous()` read these version ids, not the labels: the
    /// labels were just moved (or are known from the preamble), and a label read may be stale.
    /// Values read before are forgotten.
    pub(crate) fn read_by_id(&mut self, current: &str, previous: Option<&str>) {
        self.versions = Some((current.to_owned(), previous.map(str::to_owned)));
        self.current = OnceCell::new();
        self.previous = OnceCell::new();
    }

    /// Reads of this secret's versions by id go through `cache`, where the secret is `key` (its
    /// ARN: never a name, which a new secret may take).
    pub(crate) fn keep_values_in(&mut self, cache: &'a ValueCache, key: String) {
        self.cache = Some((cache, key));
    }

    /// Keeps `value`, just written as version `version_id`, for the later steps.
    pub(crate) fn wrote(&self, version_id: &str, value: &SecretString) {
        if let Some((cache, key)) = &self.cache {
            cache.put(key, version_id, value);
        }
    }

    /// The secret being rotated (as given in the event).
    pub fn secret_id(&self) -> &str {
        self.secret_id
    }

    /// The version id being rotated in (`ClientRequestToken`).
    pub fn token(&self) -> &str {
        self.token
    }

    /// The step being run.
    pub fn step(&self) -> Step {
        self.step
    }

    /// The invocation's deadline: bound every connect and statement by it.
    pub fn deadline(&self) -> Deadline {
        self.deadline
    }

    /// The `AWSCURRENT` value, parsed.
    pub async fn current(&self) -> Result<&E::Secret, Error> {
        self.current
            .get_or_try_init(|| async {
                let version = match &self.versions {
                    Some((id, _)) => Version::Id(id),
                    None => Version::Stage(AWSCURRENT),
                };
                let raw = self.read(version).await?.ok_or_else(|| {
                    Error::rotation_state(format!("secret {} has no AWSCURRENT value", self.secret_id))
                })?;
                self.engine.parse(&raw).map_err(|e| e.context("AWSCURRENT"))
            })
            .await
    }

    /// The value of the version being rotated in, parsed.
    pub async fn pending(&self) -> Result<&E::Secret, Error> {
        self.pending
            .get_or_try_init(|| async {
                let raw = self.read(Version::Id(self.token)).await?.ok_or_else(|| {
                    Error::rotation_state(format!(
                        "secret {} has no value for version {}: run createSecret first",
                        self.secret_id, self.token
                    ))
                })?;
                self.engine.parse(&raw).map_err(|e| e.context("AWSPENDING"))
            })
            .await
    }

    /// The `AWSPREVIOUS` value, parsed; `None` when there is none or it no longer parses
    /// (a previous value is only ever a fallback, never a reason to fail).
    pub async fn previous(&self) -> Result<Option<&E::Secret>, Error> {
        let previous = self
            .previous
            .get_or_try_init(|| async {
                let version = match &self.versions {
                    Some((_, Some(id))) => Version::Id(id),
                    Some((_, None)) => return Ok(None),
                    None => Version::Stage(AWSPREVIOUS),
                };
                let Some(raw) = self.read(version).await? else {
                    return Ok(None);
                };
                match self.engine.parse(&raw) {
                    Ok(secret) => Ok(Some(secret)),
                    Err(e) => {
                        tracing::warn!(secret_arn = self.secret_id, error = %e, "AWSPREVIOUS is not usable");
                        Ok(None)
                    }
                }
            })
            .await?;
        Ok(previous.as_ref())
    }

    /// The `AWSCURRENT` value of another secret (a master secret), unparsed.
    pub async fn read_secret(&self, secret_id: &str) -> Result<SecretString, Error> {
        crate::failpoint!("secrets-manager.get-other.before")?;
        self.deadline
            .run(
                format!("reading secret {secret_id}"),
                self.store.get_value(secret_id, Version::Stage(AWSCURRENT)),
            )
            .await?
            .ok_or_else(|| Error::invalid_secret(format!("secret {secret_id} has no AWSCURRENT value")))
    }

    /// `DescribeSecret` of another secret (a master secret's tags).
    pub async fn describe_secret(&self, secret_id: &str) -> Result<SecretDescription, Error> {
        crate::failpoint!("secrets-manager.describe-other.before")?;
        self.deadline
            .run(
                format!("describing secret {secret_id}"),
                self.store.describe(secret_id),
            )
            .await
    }

    /// A new password from the configured source, checked against the policy.
    pub async fn new_password(&self) -> Result<SecretString, Error> {
        crate::failpoint!("secrets-manager.random-password.before")?;
        let password = self
            .deadline
            .run("generating a password", self.passwords.generate(self.store))
            .await?;
        crate::failpoint!("secrets-manager.random-password.after")?;
        Ok(password)
    }

    async fn read(&self, version: Version<'_>) -> Result<Option<SecretString>, Error> {
        // Only reads by id: a label moves, a version's value never changes.
        let cached = match (version, &self.cache) {
            (Version::Id(id), Some((cache, key))) => Some((*cache, key.as_str(), id)),
            _ => None,
        };
        if let Some((cache, key, id)) = cached {
            if let Some(value) = cache.get(key, id) {
                return Ok(Some(value));
            }
        }
        crate::failpoint!("secrets-manager.get-value.before")?;
        let value = self
            .deadline
            .run(
                format!("reading {version:?} of {}", self.secret_id),
                self.store.get_value(self.secret_id, version),
            )
            .await?;
        crate::failpoint!("secrets-manager.get-value.after")?;
        if let (Some((cache, key, id)), Some(value)) = (cached, &value) {
            cache.put(key, id, value);
        }
        Ok(value)
    }
}
