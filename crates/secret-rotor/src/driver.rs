//! The service's side of a rotation, played by a test, the benchmark or the operator's CLI.
//!
//! Secrets Manager begins a rotation (a new version, labelled `AWSPENDING`, by `RotateSecret`),
//! invokes the function for the four steps in order, each with the same token, and ends it once
//! finishSecret succeeded (`AWSPENDING` leaves the version, now `AWSCURRENT`). [`Driver`] is that,
//! once, for every place that plays it; what differs between them is where the secret lives
//! ([`RotationService`]: the real API, an emulator, [`crate::testing::MemoryStore`]) and how a
//! step reaches the function ([`StepInvoker`]: a [`Rotor`] in this process with [`InProcess`],
//! or a Lambda Invoke API).

use std::time::{Duration, Instant};

use crate::deadline::Deadline;
use crate::engine::Engine;
use crate::error::Error;
use crate::event::{RotationEvent, Step};
use crate::protocol::Outcome;
use crate::runtime::Rotor;
use crate::secret::SecretString;
use crate::store::BoxFuture;

/// Where the rotated secret lives: the service's own acts around the four steps.
pub trait RotationService: Sync {
    /// `RotateSecret`'s first act: version `token` of the secret, labelled `AWSPENDING`.
    fn begin<'a>(&'a self, secret_id: &'a str, token: &'a str) -> BoxFuture<'a, Result<(), Error>>;

    /// What the service does once finishSecret succeeded: `AWSPENDING` leaves `token`.
    fn end<'a>(&'a self, secret_id: &'a str, token: &'a str) -> BoxFuture<'a, Result<(), Error>>;
}

/// How one step reaches the function.
pub trait StepInvoker: Sync {
    /// What a failed invocation says.
    type Error: std::fmt::Display;

    /// Invokes the function with `event`; the step's outcome when the invoker can know it (in
    /// process), `None` when the function answers only success (the Invoke API).
    fn invoke<'a>(&'a self, event: &'a RotationEvent) -> BoxFuture<'a, Result<Option<Outcome>, Self::Error>>;
}

/// A [`Rotor`] in this process, each step bounded by `step_time`.
pub struct InProcess<'a, E: Engine> {
    rotor: &'a Rotor<E>,
    step_time: Duration,
}

impl<'a, E: Engine> InProcess<'a, E> {
    /// `rotor`, each step given `step_time`.
    pub fn new(rotor: &'a Rotor<E>, step_time: Duration) -> Self {
        Self { rotor, step_time }
    }
}

impl<E: Engine> StepInvoker for InProcess<'_, E> {
    type Error = Error;

    fn invoke<'a>(&'a self, event: &'a RotationEvent) -> BoxFuture<'a, Result<Option<Outcome>, Error>> {
        Box::pin(async move {
            self.rotor
                .handle(event, Deadline::after(self.step_time))
                .await
                .map(Some)
        })
    }
}

/// What [`Driver::steps`] reports as it goes.
pub enum Progress<'r, E> {
    /// The step is being invoked.
    Started(Step),
    /// The step answered, after that long.
    Finished(Step, &'r Result<Option<Outcome>, E>, Duration),
}

/// Plays the service for rotations; see the [module](self).
pub struct Driver<'a, S: ?Sized, I> {
    service: &'a S,
    invoker: &'a I,
    rotation_token: bool,
}

impl<'a, S: RotationService + ?Sized, I: StepInvoker> Driver<'a, S, I> {
    /// The driver for secrets in `service`, invoking the function through `invoker`.
    pub fn new(service: &'a S, invoker: &'a I) -> Self {
        Self {
            service,
            invoker,
            rotation_token: true,
        }
    }
}

impl<'a, I: StepInvoker> Driver<'a, (), I> {
    /// A driver that only invokes steps ([`Driver::steps`]): the rotation is begun and ended
    /// elsewhere.
    pub fn steps_only(invoker: &'a I) -> Self {
        Self {
            service: &(),
            invoker,
            rotation_token: true,
        }
    }
}

impl<'a, S: ?Sized, I: StepInvoker> Driver<'a, S, I> {
    /// Whether events carry a `RotationToken` (`rotation-token-<token>`, as the service sends
    /// one; on by default).
    pub fn with_rotation_token(mut self, send: bool) -> Self {
        self.rotation_token = send;
        self
    }

    /// The event of `step` for `token`.
    pub fn event(&self, step: Step, secret_id: &str, token: &str) -> RotationEvent {
        RotationEvent {
            step,
            secret_id: secret_id.to_owned(),
            client_request_token: token.to_owned(),
            rotation_token: self
                .rotation_token
                .then(|| SecretString::from(format!("rotation-token-{token}"))),
        }
    }

    /// Invokes `steps` in order for `token`, telling `progress` before and after each; stops at
    /// the first failure. Returns each step's outcome.
    pub async fn steps(
        &self,
        secret_id: &str,
        token: &str,
        steps: &[Step],
        mut progress: impl FnMut(Progress<'_, I::Error>),
    ) -> Result<Vec<(Step, Option<Outcome>)>, (Step, I::Error)> {
        let mut outcomes = Vec::with_capacity(steps.len());
        for &step in steps {
            progress(Progress::Started(step));
            let started = Instant::now();
            let event = self.event(step, secret_id, token);
            let result = self.invoker.invoke(&event).await;
            progress(Progress::Finished(step, &result, started.elapsed()));
            outcomes.push((step, result.map_err(|e| (step, e))?));
        }
        Ok(outcomes)
    }
}

impl<'a, S: RotationService + ?Sized, I: StepInvoker<Error = Error>> Driver<'a, S, I> {
    /// A whole rotation with `token`: begun, the four steps, ended. Returns each step's outcome,
    /// or the step that failed and its error (the rotation is then left as the service leaves
    /// it, `AWSPENDING` on the token, for a retry: [`Driver::resume`]).
    pub async fn rotate_with(
        &self,
        secret_id: &str,
        token: &str,
    ) -> Result<Vec<(Step, Option<Outcome>)>, (Step, Error)> {
        self.service
            .begin(secret_id, token)
            .await
            .map_err(|e| (Step::CreateSecret, e.context("beginning the rotation")))?;
        self.resume(secret_id, token).await
    }

    /// The four steps for a rotation already begun (the service's retry), then its end.
    pub async fn resume(
        &self,
        secret_id: &str,
        token: &str,
    ) -> Result<Vec<(Step, Option<Outcome>)>, (Step, Error)> {
        let outcomes = self.steps(secret_id, token, &Step::ALL, |_| ()).await?;
        self.service
            .end(secret_id, token)
            .await
            .map_err(|e| (Step::FinishSecret, e.context("ending the rotation")))?;
        Ok(outcomes)
    }
}
