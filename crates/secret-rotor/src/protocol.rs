//! The rotation protocol: the preamble and the four steps, implemented once for every engine.
//!
//! Invariants kept here (and only here):
//! - nothing is written unless the preamble passes (rotation enabled, token known, token
//!   `AWSPENDING` and not `AWSCURRENT`);
//! - createSecret writes at most once per token: an existing `AWSPENDING` value for the token is
//!   never replaced, so a retried rotation never generates a second password;
//! - the pending value is rendered and re-parsed before it is written, so a value this function
//!   could not read back never reaches Secrets Manager;
//! - finishSecret moves `AWSCURRENT` in one call (Secrets Manager attaches `AWSPREVIOUS` to the
//!   old version itself), and the engine's finish hook runs after it, also on retries, reading
//!   current and previous by version id (never by a label that may read back stale);
//! - versions are read by the ids the preamble saw; their values are kept in the process's
//!   [`ValueCache`] for the rotation's later steps, and forgotten when it finishes or a step
//!   fails (so a retry reads afresh).

use crate::cache::ValueCache;
use crate::deadline::Deadline;
use crate::engine::{Context, Engine};
use crate::error::Error;
use crate::event::{RotationEvent, Step};
use crate::password::Passwords;
use crate::store::{SecretDescription, SecretsStore, Version, AWSCURRENT, AWSPENDING, AWSPREVIOUS};

/// What a step did, for logs and callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// createSecret stored a new `AWSPENDING` value.
    Created,
    /// createSecret found the pending value already stored (a retry) and wrote nothing.
    AlreadyCreated,
    /// setSecret ran the engine's set.
    Set,
    /// testSecret passed.
    Tested,
    /// finishSecret moved `AWSCURRENT` to the new version.
    Finished,
    /// The token is already `AWSCURRENT`: nothing to do (finishSecret still ran the finish hook).
    AlreadyCurrent,
}

impl Outcome {
    /// A short name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Created => "created",
            Outcome::AlreadyCreated => "already-created",
            Outcome::Set => "set",
            Outcome::Tested => "tested",
            Outcome::Finished => "finished",
            Outcome::AlreadyCurrent => "already-current",
        }
    }
}

/// Runs one step of a rotation: the preamble, then the step.
///
/// This is the whole protocol; [`crate::Rotor`] adds logging and the Lambda runtime around it.
/// `cache` holds the values of versions this process read or wrote in earlier steps (a fresh
/// one per call is a cold process: everything is read).
pub async fn rotate<E: Engine>(
    engine: &E,
    store: &dyn SecretsStore,
    passwords: &Passwords,
    cache: &ValueCache,
    event: &RotationEvent,
    deadline: Deadline,
) -> Result<Outcome, Error> {
    let secret_id = event.secret_id.as_str();
    let token = event.client_request_token.as_str();
    let mut ctx = Context::new(engine, store, passwords, secret_id, token, event.step, deadline);

    crate::failpoint!("secrets-manager.describe.before")?;
    let description = deadline
        .run(format!("describing {secret_id}"), store.describe(secret_id))
        .await?;
    crate::failpoint!("secrets-manager.describe.after")?;
    let key = description.arn.clone().unwrap_or_else(|| secret_id.to_owned());
    let result = step(engine, store, &mut ctx, cache, &key, &description, event).await;
    let finished =
        event.step == Step::FinishSecret && matches!(result, Ok(Outcome::Finished | Outcome::AlreadyCurrent));
    if finished || result.is_err() {
        cache.forget(&key);
    }
    result
}

/// The rest of the preamble, and the step.
async fn step<'a, E: Engine>(
    engine: &E,
    store: &dyn SecretsStore,
    ctx: &mut Context<'a, E>,
    cache: &'a ValueCache,
    key: &str,
    description: &SecretDescription,
    event: &RotationEvent,
) -> Result<Outcome, Error> {
    let secret_id = event.secret_id.as_str();
    let token = event.client_request_token.as_str();
    let deadline = ctx.deadline();
    if description.rotation_enabled == Some(false) {
        return Err(Error::rotation_state(format!(
            "secret {secret_id} is not enabled for rotation"
        )));
    }
    if description.stages(token).is_none() {
        return Err(Error::rotation_state(format!(
            "secret version {token} has no stage for rotation of secret {secret_id}"
        )));
    }
    ctx.keep_values_in(cache, key.to_owned());
    if let Some(current) = description.version_with(AWSCURRENT) {
        ctx.read_by_id(current, description.version_with(AWSPREVIOUS));
    }
    if description.has_stage(token, AWSCURRENT) {
        if event.step == Step::FinishSecret {
            engine.after_finish(ctx).await?;
        }
        return Ok(Outcome::AlreadyCurrent);
    }
    if !description.has_stage(token, AWSPENDING) {
        return Err(Error::rotation_state(format!(
            "secret version {token} not set as AWSPENDING for rotation of secret {secret_id}"
        )));
    }

    match event.step {
        Step::CreateSecret => {
            // The two reads are independent: made at once, they cost one round trip, not two.
            // AWSCURRENT's verdict comes first, so a broken secret is reported as such even on a
            // retry; nothing is written before both answered.
            let probe = async {
                crate::failpoint!("secrets-manager.get-pending.before")?;
                let existing = deadline
                    .run(
                        "checking for an existing pending value",
                        store.get_value(secret_id, Version::IdWithStage(token, AWSPENDING)),
                    )
                    .await?;
                crate::failpoint!("secrets-manager.get-pending.after")?;
                Ok::<_, Error>(existing)
            };
            let (current, existing) = tokio::join!(ctx.current(), probe);
            current?;
            if existing?.is_some() {
                return Ok(Outcome::AlreadyCreated);
            }
            let pending = engine.create_pending(ctx).await?;
            let value = engine.render(&pending)?;
            engine
                .parse(&value)
                .map_err(|e| e.context("the engine produced a pending value it cannot parse"))?;
            crate::failpoint!("secrets-manager.put.before")?;
            deadline
                .run(
                    "storing the pending value",
                    store.put_pending(secret_id, token, &value, event.rotation_token.as_ref()),
                )
                .await?;
            crate::failpoint!("secrets-manager.put.after")?;
            ctx.wrote(token, &value);
            Ok(Outcome::Created)
        }
        Step::SetSecret => {
            engine.set_pending(ctx).await?;
            Ok(Outcome::Set)
        }
        Step::TestSecret => {
            engine.test_pending(ctx).await?;
            Ok(Outcome::Tested)
        }
        Step::FinishSecret => {
            let from = description.version_with(AWSCURRENT);
            crate::failpoint!("secrets-manager.move-current.before")?;
            deadline
                .run("moving AWSCURRENT", store.move_current(secret_id, token, from))
                .await?;
            crate::failpoint!("secrets-manager.move-current.after")?;
            // The hook sees the versions as moved, by id: a label read right after the move may
            // still answer the old version (for the SSH function, that would remove the new key).
            ctx.read_by_id(token, from);
            engine.after_finish(ctx).await?;
            Ok(Outcome::Finished)
        }
    }
}

/// The protocol against the in-memory store: no AWS, no server, milliseconds.
#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    use super::*;
    use crate::testing::{new_token, MemoryStore, Operation, Service};
    use crate::{ErrorKind, Passwords, Rotor, SecretString};

    /// A target holding one password, rotated in place; counts the finish hook's runs.
    #[derive(Default)]
    struct OnePassword {
        password: Mutex<String>,
        hooks: AtomicUsize,
    }

    impl Engine for OnePassword {
        type Secret = SecretString;
        fn name(&self) -> &str {
            "one-password"
        }
        fn parse(&self, value: &SecretString) -> Result<SecretString, Error> {
            if value.expose().is_empty() {
                return Err(Error::invalid_secret("empty"));
            }
            Ok(value.clone())
        }
        fn render(&self, secret: &SecretString) -> Result<SecretString, Error> {
            Ok(secret.clone())
        }
        async fn create_pending(&self, ctx: &Context<'_, Self>) -> Result<SecretString, Error> {
            ctx.new_password().await
        }
        async fn set_pending(&self, ctx: &Context<'_, Self>) -> Result<(), Error> {
            let pending = ctx.pending().await?.expose().to_owned();
            *self.password.lock().map_err(|_| Error::transient("poisoned"))? = pending;
            Ok(())
        }
        async fn test_pending(&self, ctx: &Context<'_, Self>) -> Result<(), Error> {
            let pending = ctx.pending().await?;
            let password = self.password.lock().map_err(|_| Error::transient("poisoned"))?;
            if *password == pending.expose() {
                Ok(())
            } else {
                Err(Error::target("the pending password does not log in"))
            }
        }
        async fn after_finish(&self, _ctx: &Context<'_, Self>) -> Result<(), Error> {
            self.hooks.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    fn setup() -> (MemoryStore, String, Rotor<OnePassword>) {
        let store = MemoryStore::new();
        let arn = store.create_secret("app", &SecretString::from("initial"));
        let engine = OnePassword {
            password: Mutex::new("initial".to_owned()),
            ..Default::default()
        };
        let rotor = Rotor::with_passwords(Ok(engine), store.clone(), Passwords::from_lookup(|_| None, ""));
        (store, arn, rotor)
    }

    #[tokio::test]
    async fn a_rotation_moves_the_labels_and_records_the_rotation_token() {
        let (store, arn, rotor) = setup();
        let old = store.version_with(&arn, AWSCURRENT).unwrap();
        let token = Service::new(&store).rotate(&rotor, &arn).await.unwrap();
        assert_eq!(store.version_with(&arn, AWSCURRENT), Some(token.clone()));
        assert_eq!(store.version_with(&arn, AWSPREVIOUS), Some(old));
        assert_eq!(store.version_with(&arn, AWSPENDING), None);
        let current = store.value_at(&arn, AWSCURRENT).unwrap();
        // Compared as SecretStrings, which print redacted: a failure shows no secret.
        let target = SecretString::from(rotor_engine(&rotor).password.lock().unwrap().as_str());
        assert_eq!(target, current);
        assert_eq!(
            store.rotation_token(&arn, &token),
            Some(SecretString::from(format!("rotation-token-{token}")))
        );
        assert_eq!(rotor_engine(&rotor).hooks.load(Ordering::SeqCst), 1);
        // One process, warm: the contract's minimum of calls (local passwords).
        assert_eq!(store.count(Operation::Describe), 4);
        assert_eq!(store.count(Operation::GetValue), 2);
        assert_eq!(store.count(Operation::PutPending), 1);
        assert_eq!(store.count(Operation::MoveCurrent), 1);
    }

    fn rotor_engine(rotor: &Rotor<OnePassword>) -> &OnePassword {
        rotor.engine().expect("engine")
    }

    #[tokio::test]
    async fn the_preamble_refuses_before_anything_is_written() {
        let (store, arn, rotor) = setup();
        let service = Service::new(&store);
        // A token the secret does not know.
        let err = service
            .step(&rotor, Step::CreateSecret, &arn, "unknown")
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::RotationState);
        assert!(err.to_string().contains("has no stage for rotation"), "{err}");
        // A known version that is neither AWSPENDING nor AWSCURRENT (AWSPREVIOUS after a
        // rotation), and the current version itself (nothing to do).
        let first = store.version_with(&arn, AWSCURRENT).unwrap();
        let second = service.rotate(&rotor, &arn).await.unwrap();
        let err = service
            .step(&rotor, Step::CreateSecret, &arn, &first)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("not set as AWSPENDING"), "{err}");
        let again = service
            .step(&rotor, Step::SetSecret, &arn, &second)
            .await
            .unwrap();
        assert_eq!(again, Outcome::AlreadyCurrent);
        let puts = store.count(Operation::PutPending);
        // Rotation disabled.
        let token = new_token();
        store.rotate_secret(&arn, &token).unwrap();
        store.set_rotation(&arn, Some(false), None);
        let err = service
            .step(&rotor, Step::CreateSecret, &arn, &token)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("not enabled for rotation"), "{err}");
        assert_eq!(store.count(Operation::PutPending), puts, "nothing written");
    }

    #[tokio::test]
    async fn a_retried_create_keeps_the_first_password() {
        let (store, arn, rotor) = setup();
        let service = Service::new(&store);
        let token = new_token();
        store.rotate_secret(&arn, &token).unwrap();
        let first = service
            .step(&rotor, Step::CreateSecret, &arn, &token)
            .await
            .unwrap();
        let stored = store.value_of(&arn, &token).unwrap();
        let again = service
            .step(&rotor, Step::CreateSecret, &arn, &token)
            .await
            .unwrap();
        assert_eq!((first, again), (Outcome::Created, Outcome::AlreadyCreated));
        assert_eq!(store.value_of(&arn, &token), Some(stored));
        assert_eq!(store.count(Operation::PutPending), 1);
    }

    #[tokio::test]
    async fn a_failed_move_is_retried_and_converges_with_the_hook_run_again_on_a_retried_finish() {
        let (store, arn, rotor) = setup();
        let service = Service::new(&store);
        store.fail_next(Operation::MoveCurrent, Error::transient("throttled"));
        let (step, err) = service.rotate(&rotor, &arn).await.unwrap_err();
        assert_eq!((step, err.kind()), (Step::FinishSecret, ErrorKind::Transient));
        let token = store.version_with(&arn, AWSPENDING).unwrap();
        assert_ne!(store.version_with(&arn, AWSCURRENT), Some(token.clone()));
        // The service retries the whole rotation with the same token.
        service.resume(&rotor, &arn, &token).await.unwrap();
        assert_eq!(store.version_with(&arn, AWSCURRENT), Some(token.clone()));
        let finished_again = service
            .step(&rotor, Step::FinishSecret, &arn, &token)
            .await
            .unwrap();
        assert_eq!(finished_again, Outcome::AlreadyCurrent);
        assert_eq!(rotor_engine(&rotor).hooks.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn the_store_refuses_another_value_for_a_token_and_moves_only_from_current() {
        let store = MemoryStore::new();
        let arn = store.create_secret("s", &SecretString::from("a"));
        let token = new_token();
        store.rotate_secret(&arn, &token).unwrap();
        let value = SecretString::from("b");
        store.put_pending(&arn, &token, &value, None).await.unwrap();
        store.put_pending(&arn, &token, &value, None).await.unwrap();
        let other = SecretString::from("c");
        let err = store.put_pending(&arn, &token, &other, None).await.unwrap_err();
        assert!(err.to_string().contains("ResourceExistsException"), "{err}");
        let err = store.move_current(&arn, &token, Some(&token)).await.unwrap_err();
        assert!(err.to_string().contains("RemoveFromVersionId"), "{err}");
        assert_eq!(
            store.get_value(&arn, Version::Stage(AWSPREVIOUS)).await.unwrap(),
            None
        );
    }
}
