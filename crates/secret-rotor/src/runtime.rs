//! The entry point: configuration read once, clients built once, invocations served.

use std::time::Instant;

use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::Value;

use crate::cache::ValueCache;
use crate::deadline::Deadline;
use crate::engine::Engine;
use crate::error::Error;
use crate::event::RotationEvent;
use crate::password::Passwords;
use crate::preflight::{preflight, CHECK_EVENT_KEY};
use crate::protocol::{rotate, Outcome};
use crate::store::{SecretsManager, SecretsStore};

/// An engine with everything it needs to serve invocations: the Secrets Manager client, the
/// password configuration, and the values of the versions its rotations use (a
/// [`ValueCache`]). Built once per process.
///
/// A configuration error does not stop the process: it is logged at start-up and returned by
/// every invocation, so that the rotation's failure in Secrets Manager says what to fix.
pub struct Rotor<E: Engine> {
    engine: Result<E, Error>,
    store: Box<dyn SecretsStore>,
    passwords: Result<Passwords, Error>,
    cache: ValueCache,
}

impl<E: Engine> Rotor<E> {
    /// A rotor whose password settings come from the environment.
    pub fn new(engine: Result<E, Error>, store: impl SecretsStore + 'static) -> Self {
        let passwords = match &engine {
            Ok(engine) => Passwords::from_env(engine.default_excluded_characters()),
            Err(e) => Err(e.clone()),
        };
        Self::with_passwords(engine, store, passwords)
    }

    /// A rotor with explicit password settings (tests, embedding).
    pub fn with_passwords(
        engine: Result<E, Error>,
        store: impl SecretsStore + 'static,
        passwords: Result<Passwords, Error>,
    ) -> Self {
        for error in [engine.as_ref().err(), passwords.as_ref().err()]
            .into_iter()
            .flatten()
        {
            tracing::error!(error_type = error.kind().error_type(), error = %error, "invalid configuration");
        }
        Self {
            engine,
            store: Box::new(store),
            passwords,
            cache: ValueCache::new(),
        }
    }

    /// The engine, or the configuration error that kept it from being built.
    pub fn engine(&self) -> Result<&E, &Error> {
        self.engine.as_ref()
    }

    /// Answers one raw invocation: a rotation step (`null`), or a check event
    /// (`{"RotorCheck": {"SecretId": …}}`, the preflight's report). `caller` is the function's
    /// own ARN: only secrets it rotates are checked.
    pub async fn invoke(
        &self,
        payload: &Value,
        deadline: Deadline,
        caller: Option<&str>,
    ) -> Result<Value, Error> {
        let Some(check) = payload.get(CHECK_EVENT_KEY) else {
            return self.handle_json(payload, deadline).await.map(|_| Value::Null);
        };
        let secret_id = check
            .get("SecretId")
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty())
            .ok_or_else(|| {
                Error::invalid_event(format!("a {CHECK_EVENT_KEY} event needs a SecretId string"))
            })?;
        tracing::info!(secret_arn = secret_id, "check started");
        let result = match (&self.engine, &self.passwords) {
            (Ok(engine), Ok(passwords)) => {
                preflight(
                    engine,
                    self.store.as_ref(),
                    passwords,
                    secret_id,
                    caller,
                    deadline,
                )
                .await
            }
            (Err(e), _) | (_, Err(e)) => Err(e.clone()),
        };
        match &result {
            Ok(report) => tracing::info!(secret_arn = secret_id, ok = report.ok(), "check finished"),
            Err(error) => tracing::error!(
                secret_arn = secret_id,
                error_type = error.kind().error_type(),
                error = %error,
                "check refused"
            ),
        }
        result.map(|report| report.to_json())
    }

    /// Handles one raw invocation payload; logs its start and end.
    pub async fn handle_json(&self, payload: &Value, deadline: Deadline) -> Result<Outcome, Error> {
        match RotationEvent::from_json(payload) {
            Ok(event) => self.handle(&event, deadline).await,
            Err(error) => {
                tracing::error!(error_type = error.kind().error_type(), error = %error, "rejected event");
                Err(error)
            }
        }
    }

    /// The values this rotor keeps between the steps of a rotation.
    pub fn cache(&self) -> &ValueCache {
        &self.cache
    }

    /// Handles one event; logs its start and end (secret ARN, step, token, outcome, duration).
    pub async fn handle(&self, event: &RotationEvent, deadline: Deadline) -> Result<Outcome, Error> {
        let started = Instant::now();
        let engine_name = self.engine.as_ref().map(|e| e.name()).unwrap_or("unconfigured");
        tracing::info!(
            secret_arn = %event.secret_id,
            step = %event.step,
            token = %event.client_request_token,
            engine = engine_name,
            "step started"
        );
        let result = match (&self.engine, &self.passwords) {
            (Ok(engine), Ok(passwords)) => {
                rotate(
                    engine,
                    self.store.as_ref(),
                    passwords,
                    &self.cache,
                    event,
                    deadline,
                )
                .await
            }
            (Err(e), _) | (_, Err(e)) => Err(e.clone()),
        };
        let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        match &result {
            Ok(outcome) => tracing::info!(
                secret_arn = %event.secret_id,
                step = %event.step,
                token = %event.client_request_token,
                outcome = outcome.as_str(),
                duration_ms,
                "step succeeded"
            ),
            Err(error) => tracing::error!(
                secret_arn = %event.secret_id,
                step = %event.step,
                token = %event.client_request_token,
                outcome = "failed",
                error_type = error.kind().error_type(),
                retryable = error.kind().is_retryable(),
                error = %error,
                duration_ms,
                "step failed"
            ),
        }
        result
    }
}

/// What [`run`] takes: an engine, or the result of building one from the environment (a
/// configuration error is then answered to every invocation, as its `errorType`, rather than
/// crashing the process at start).
pub trait IntoEngine<E: Engine> {
    /// The engine, or why it could not be built.
    fn into_engine(self) -> Result<E, Error>;
}

impl<E: Engine> IntoEngine<E> for E {
    fn into_engine(self) -> Result<E, Error> {
        Ok(self)
    }
}

impl<E: Engine> IntoEngine<E> for Result<E, Error> {
    fn into_engine(self) -> Result<E, Error> {
        self
    }
}

/// The function's own ARN as the runtime sent it, for the check event's caller rule. Behind
/// Lambda it is always there; without it a check event could name any secret the function's
/// role can read, so a check event is refused, while a rotation step (which needs no caller) goes
/// on.
fn caller_of<'a>(payload: &Value, invoked_function_arn: &'a str) -> Result<Option<&'a str>, Error> {
    let caller = Some(invoked_function_arn).filter(|arn| !arn.is_empty());
    if caller.is_none() && payload.get(CHECK_EVENT_KEY).is_some() {
        return Err(Error::invalid_event(format!(
            "a {CHECK_EVENT_KEY} event needs the function's own ARN, which the runtime did not send: \
             refusing to check a secret this function may not rotate"
        )));
    }
    Ok(caller)
}

/// Serves rotation invocations with `engine` until the runtime stops.
///
/// Reads configuration once, builds the Secrets Manager client once, and answers each
/// invocation with `null` or an error whose `errorType` is the error's kind; a check event gets
/// the preflight's report.
///
/// A function binary's whole `main` (see the crate documentation for an engine):
///
/// ```no_run
/// # use secret_rotor::{Context, Engine, Error, SecretString};
/// # struct MyEngine;
/// # impl MyEngine { fn from_env() -> Result<Self, Error> { Ok(MyEngine) } }
/// # impl Engine for MyEngine {
/// #     type Secret = SecretString;
/// #     fn name(&self) -> &str { "mine" }
/// #     fn parse(&self, v: &SecretString) -> Result<SecretString, Error> { Ok(v.clone()) }
/// #     fn render(&self, v: &SecretString) -> Result<SecretString, Error> { Ok(v.clone()) }
/// #     async fn create_pending(&self, ctx: &Context<'_, Self>) -> Result<SecretString, Error> { ctx.new_password().await }
/// #     async fn set_pending(&self, _: &Context<'_, Self>) -> Result<(), Error> { Ok(()) }
/// #     async fn test_pending(&self, _: &Context<'_, Self>) -> Result<(), Error> { Ok(()) }
/// # }
/// #[tokio::main(flavor = "current_thread")]
/// async fn main() -> Result<(), lambda_runtime::Error> {
///     secret_rotor::run(MyEngine::from_env()).await
/// }
/// ```
pub async fn run<E: Engine>(engine: impl IntoEngine<E>) -> Result<(), lambda_runtime::Error> {
    let engine = engine.into_engine();
    let started = Instant::now();
    crate::logging::init();
    let store = SecretsManager::from_env().await;
    let rotor = Rotor::new(engine, store);
    let rotor = &rotor;
    // Part of every cold start: worth seeing in the logs.
    tracing::debug!(
        init_us = started.elapsed().as_micros() as u64,
        "clients and configuration ready"
    );
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let deadline = Deadline::from_runtime_ms(event.context.deadline);
        let caller = caller_of(&event.payload, &event.context.invoked_function_arn)?;
        // Boxed: the whole rotation's state machine is deep enough to exceed the compiler's
        // default query depth when laid out inline in the runtime's future.
        Box::pin(rotor.invoke(&event.payload, deadline, caller)).await
    }))
    .await
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::ErrorKind;

    #[test]
    fn a_check_event_without_the_functions_arn_is_refused() {
        let check = json!({CHECK_EVENT_KEY: {"SecretId": "db"}});
        let err = caller_of(&check, "").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidEvent);
        assert!(err.to_string().contains("own ARN"), "{err}");
        let arn = "arn:aws:lambda:us-east-1:123456789012:function:pg";
        assert_eq!(caller_of(&check, arn).unwrap(), Some(arn));
        let step = json!({"Step": "createSecret", "SecretId": "db", "ClientRequestToken": "t"});
        assert_eq!(caller_of(&step, "").unwrap(), None);
    }
}
