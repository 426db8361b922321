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

    crate::failpoint!("secrets-manager.describe.before");
    let description = deadline
        .run(format!("describing {secret_id}"), store.describe(secret_id))
        .await?;
    crate::failpoint!("secrets-manager.describe.after");
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
                crate::failpoint!("secrets-manager.get-pending.before");
                let existing = deadline
                    .run(
                        "checking for an existing pending value",
                        store.get_value(secret_id, Version::IdWithStage(token, AWSPENDING)),
                    )
                    .await?;
                crate::failpoint!("secrets-manager.get-pending.after");
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
            crate::failpoint!("secrets-manager.put.before");
            deadline
                .run(
                    "storing the pending value",
                    store.put_pending(secret_id, token, &value, event.rotation_token.as_ref()),
                )
                .await?;
            crate::failpoint!("secrets-manager.put.after");
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
            crate::failpoint!("secrets-manager.move-current.before");
            deadline
                .run("moving AWSCURRENT", store.move_current(secret_id, token, from))
                .await?;
            crate::failpoint!("secrets-manager.move-current.after");
            // The hook sees the versions as moved, by id: a label read right after the move may
            // still answer the old version (for the SSH function, that would remove the new key).
            ctx.read_by_id(token, from);
            engine.after_finish(ctx).await?;
            Ok(Outcome::Finished)
        }
    }
}
