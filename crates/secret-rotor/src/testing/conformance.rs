//! The conformance kit: the contract's engine-independent cases and the crash matrix, for any
//! engine, against its own real target.
//!
//! The protocol is the framework's; what an engine must add is that its target always accepts
//! some labelled version of the secret, and that every step can be repeated. The kit proves that
//! for an engine by rotating fresh secrets — on an in-memory Secrets Manager ([`MemoryStore`]),
//! or on any store that implements [`KitStore`] (this project's suites run it on the real API of
//! their stack) — and asking the engine's real target, through the small [`Target`] trait,
//! whether a version authenticates:
//!
//! - two rotations in a row: after each, `AWSCURRENT` authenticates and is the new version,
//!   `AWSPREVIOUS` the old one, nothing left `AWSPENDING`;
//! - every step run twice in a row: the second changes nothing, one password per rotation;
//! - a Secrets Manager call failing (each operation in turn): a retryable error, some labelled
//!   version still authenticates, and the service's retry converges;
//! - with the `failpoints` feature, the crash matrix: a rotation dies at each crash point it
//!   passes (before and after each Secrets Manager call and each of the engine's own
//!   `failpoint!`s); at that instant some labelled version authenticates, and the retry with the
//!   same token converges without a second password.
//!
//! Any violation panics with the case, the crash point and what was seen. An engine author's
//! whole test (dev-dependency `secret-rotor` with features `testing` and `failpoints`):
//!
//! ```no_run
//! use secret_rotor::testing::conformance::{Conformance, Target};
//! use secret_rotor::testing::MemoryStore;
//! use secret_rotor::SecretString;
//! # use secret_rotor::{Context, Engine, Error};
//! # struct MyEngine;
//! # impl Engine for MyEngine {
//! #     type Secret = SecretString;
//! #     fn name(&self) -> &str { "mine" }
//! #     fn parse(&self, v: &SecretString) -> Result<SecretString, Error> { Ok(v.clone()) }
//! #     fn render(&self, v: &SecretString) -> Result<SecretString, Error> { Ok(v.clone()) }
//! #     async fn create_pending(&self, ctx: &Context<'_, Self>) -> Result<SecretString, Error> { ctx.new_password().await }
//! #     async fn set_pending(&self, _: &Context<'_, Self>) -> Result<(), Error> { Ok(()) }
//! #     async fn test_pending(&self, _: &Context<'_, Self>) -> Result<(), Error> { Ok(()) }
//! # }
//!
//! struct MyServer;
//! impl Target for MyServer {
//!     async fn authenticates(&self, value: &SecretString) -> bool {
//!         // Log in to the real server with the credentials in `value`.
//!         # let _ = value;
//!         true
//!     }
//! }
//!
//! #[tokio::test]
//! async fn my_engine_conforms() {
//!     let report = Conformance::new("my engine", &MyServer)
//!         .run(async |_store: &MemoryStore| {
//!             // A new account on the server, and the secret value that logs in as it.
//!             (MyEngine, SecretString::from(r#"{"username": "u1", "password": "p1"}"#))
//!         })
//!         .await;
//!     println!("{report}");
//! }
//! # fn main() {}
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;
use std::time::Duration;

use crate::driver::{Driver, InProcess, RotationService};
use crate::error::Error;
use crate::event::Step;
use crate::password::Passwords;
use crate::protocol::Outcome;
use crate::runtime::Rotor;
use crate::secret::SecretString;
use crate::store::{BoxFuture, SecretsStore, AWSCURRENT, AWSPENDING, AWSPREVIOUS};
use crate::testing::{new_token, MemoryStore, Operation};
use crate::Engine;

/// Each step's time in the kit's rotations.
const STEP_TIME: Duration = Duration::from_secs(30);

/// The engine's real target, as the kit sees it.
pub trait Target: Sync {
    /// Whether `value` (a version of a secret the kit rotates) authenticates against the target.
    fn authenticates(&self, value: &SecretString) -> impl Future<Output = bool> + Send;
}

/// Where the kit's secrets live, and how it looks at them: [`MemoryStore`], or a store of your
/// own on a real Secrets Manager API. Its reads here are the kit's own: not counted, never failed.
pub trait KitStore: SecretsStore + RotationService + Clone + 'static {
    /// A store for one case, on the same backend, with its own call count and failure queue.
    fn for_case(&self) -> Self;

    /// Creates a secret whose first version, `AWSCURRENT`, holds `value`; its ARN.
    fn create<'a>(&'a self, name: &'a str, value: &'a SecretString) -> BoxFuture<'a, String>;

    /// Each labelled version's labels.
    fn labels<'a>(&'a self, secret_id: &'a str) -> BoxFuture<'a, BTreeMap<String, Vec<String>>>;

    /// The value of version `id`, if it has one.
    fn value<'a>(&'a self, secret_id: &'a str, id: &'a str) -> BoxFuture<'a, Option<SecretString>>;

    /// How many calls of `operation` the rotation made on this store.
    fn count(&self, operation: Operation) -> usize;

    /// The rotation's next call of `operation` fails with `error`.
    fn fail_next(&self, operation: Operation, error: Error);
}

impl KitStore for MemoryStore {
    fn for_case(&self) -> Self {
        MemoryStore::new()
    }

    fn create<'a>(&'a self, name: &'a str, value: &'a SecretString) -> BoxFuture<'a, String> {
        Box::pin(async move { self.create_secret(name, value) })
    }

    fn labels<'a>(&'a self, secret_id: &'a str) -> BoxFuture<'a, BTreeMap<String, Vec<String>>> {
        Box::pin(async move {
            let mut labels = self.stages(secret_id);
            labels.retain(|_, stages| !stages.is_empty());
            labels
        })
    }

    fn value<'a>(&'a self, secret_id: &'a str, id: &'a str) -> BoxFuture<'a, Option<SecretString>> {
        Box::pin(async move { self.value_of(secret_id, id) })
    }

    fn count(&self, operation: Operation) -> usize {
        MemoryStore::count(self, operation)
    }

    fn fail_next(&self, operation: Operation, error: Error) {
        MemoryStore::fail_next(self, operation, error)
    }
}

/// The suite for one engine; see the [module](self).
pub struct Conformance<'t, T: Target> {
    name: String,
    target: &'t T,
}

/// One fresh secret on a case's store, with its rotor.
struct Subject<S: KitStore, E: Engine> {
    store: S,
    arn: String,
    rotor: Rotor<E>,
}

fn version_with<'l>(labels: &'l BTreeMap<String, Vec<String>>, stage: &str) -> Option<&'l str> {
    labels
        .iter()
        .find(|(_, stages)| stages.iter().any(|s| s == stage))
        .map(|(id, _)| id.as_str())
}

impl<S: KitStore, E: Engine> Subject<S, E> {
    /// The service's side of this subject's rotations.
    async fn resume(&self, token: &str) -> Result<(), (Step, Error)> {
        let invoker = InProcess::new(&self.rotor, STEP_TIME);
        Driver::new(&self.store, &invoker)
            .resume(&self.arn, token)
            .await
            .map(drop)
    }

    /// One step, as the service invokes it.
    async fn step(&self, step: Step, token: &str) -> Result<Option<Outcome>, Error> {
        let invoker = InProcess::new(&self.rotor, STEP_TIME);
        Driver::new(&self.store, &invoker)
            .steps(&self.arn, token, &[step], |_| ())
            .await
            .map(|outcomes| outcomes.into_iter().next().and_then(|(_, outcome)| outcome))
            .map_err(|(_, e)| e)
    }

    /// A rotation begun as the service begins one (a new token labelled `AWSPENDING`): the token,
    /// and the version that was current.
    async fn begin(&self, name: &str) -> (String, Option<String>) {
        let previous = self.current().await;
        let token = new_token();
        self.store
            .begin(&self.arn, &token)
            .await
            .unwrap_or_else(|e| panic!("{name}: RotateSecret: {e}"));
        (token, previous)
    }

    async fn current(&self) -> Option<String> {
        version_with(&self.store.labels(&self.arn).await, AWSCURRENT).map(str::to_owned)
    }

    /// The value of the version carrying `stage`.
    async fn value_at(&self, stage: &str) -> Option<SecretString> {
        let labels = self.store.labels(&self.arn).await;
        let id = version_with(&labels, stage)?;
        self.store.value(&self.arn, id).await
    }
}

impl<'t, T: Target> Conformance<'t, T> {
    /// The suite for the engine called `name` (in messages) against `target`.
    pub fn new(name: &str, target: &'t T) -> Self {
        Self {
            name: name.to_owned(),
            target,
        }
    }

    /// Runs every case on the in-memory store; `fresh` makes, for each case, the engine and the
    /// value of a new secret whose credentials authenticate on the target now (it may create
    /// other secrets, a master's, in the store it is given). Returns a report of what ran (the
    /// crash matrix's rows among it); panics on any violation.
    pub async fn run<E, F>(&self, fresh: F) -> String
    where
        E: Engine,
        F: AsyncFn(&MemoryStore) -> (E, SecretString),
    {
        self.run_on(&MemoryStore::new(), fresh).await
    }

    /// [`Conformance::run`] on `store`'s backend (each case gets [`KitStore::for_case`]).
    pub async fn run_on<S, E, F>(&self, store: &S, fresh: F) -> String
    where
        S: KitStore,
        E: Engine,
        F: AsyncFn(&S) -> (E, SecretString),
    {
        let mut report = String::new();
        self.rotations_in_a_row(store, &fresh).await;
        writeln!(report, "{}: two rotations in a row converge", self.name).ok();
        self.every_step_twice(store, &fresh).await;
        writeln!(report, "{}: every step repeated changes nothing", self.name).ok();
        for operation in [
            Operation::Describe,
            Operation::GetValue,
            Operation::PutPending,
            Operation::MoveCurrent,
        ] {
            self.store_fault(store, &fresh, operation).await;
        }
        writeln!(
            report,
            "{}: a failing Secrets Manager call is retried and converges",
            self.name
        )
        .ok();
        #[cfg(feature = "failpoints")]
        report.push_str(&self.crash_matrix(store, &fresh).await);
        report
    }

    async fn subject<S, E, F>(&self, store: &S, fresh: &F) -> Subject<S, E>
    where
        S: KitStore,
        E: Engine,
        F: AsyncFn(&S) -> (E, SecretString),
    {
        let store = store.for_case();
        let (engine, value) = fresh(&store).await;
        let arn = store
            .create(&format!("conformance-{}", &new_token()[..8]), &value)
            .await;
        let passwords = Passwords::from_lookup(|_| None, engine.default_excluded_characters());
        let rotor = Rotor::with_passwords(Ok(engine), store.clone(), passwords);
        assert!(
            self.target.authenticates(&value).await,
            "{}: the fresh secret's value does not authenticate before any rotation",
            self.name
        );
        Subject { store, arn, rotor }
    }

    /// Some labelled version authenticates; returns which.
    async fn working_labels<S: KitStore, E: Engine>(
        &self,
        subject: &Subject<S, E>,
        when: &str,
    ) -> Vec<&'static str> {
        let mut working = Vec::new();
        for stage in [AWSCURRENT, AWSPENDING, AWSPREVIOUS] {
            if let Some(value) = subject.value_at(stage).await {
                if self.target.authenticates(&value).await {
                    working.push(stage);
                }
            }
        }
        assert!(
            !working.is_empty(),
            "{}: {when}: no labelled version authenticates",
            self.name
        );
        working
    }

    /// After a rotation with `token` ended: `AWSCURRENT` is the token and authenticates,
    /// `AWSPREVIOUS` is `previous`, nothing else is `AWSPENDING`.
    async fn converged<S: KitStore, E: Engine>(
        &self,
        subject: &Subject<S, E>,
        token: &str,
        previous: Option<&str>,
        when: &str,
    ) {
        let name = &self.name;
        let labels = subject.store.labels(&subject.arn).await;
        assert_eq!(
            version_with(&labels, AWSCURRENT),
            Some(token),
            "{name}: {when}: AWSCURRENT is not the new version: {labels:?}"
        );
        if let Some(previous) = previous {
            assert_eq!(
                version_with(&labels, AWSPREVIOUS),
                Some(previous),
                "{name}: {when}: AWSPREVIOUS is not the old version: {labels:?}"
            );
        }
        assert_eq!(
            version_with(&labels, AWSPENDING),
            None,
            "{name}: {when}: AWSPENDING left: {labels:?}"
        );
        let authenticates = match subject.value_at(AWSCURRENT).await {
            Some(value) => self.target.authenticates(&value).await,
            None => false,
        };
        assert!(authenticates, "{name}: {when}: AWSCURRENT does not authenticate");
    }

    async fn rotations_in_a_row<S, E, F>(&self, store: &S, fresh: &F)
    where
        S: KitStore,
        E: Engine,
        F: AsyncFn(&S) -> (E, SecretString),
    {
        let subject = self.subject(store, fresh).await;
        for rotation in 1..=2 {
            let (token, previous) = subject.begin(&self.name).await;
            subject
                .resume(&token)
                .await
                .unwrap_or_else(|(step, e)| panic!("{}: rotation {rotation}: {step}: {e}", self.name));
            self.converged(
                &subject,
                &token,
                previous.as_deref(),
                &format!("rotation {rotation}"),
            )
            .await;
        }
    }

    async fn every_step_twice<S, E, F>(&self, store: &S, fresh: &F)
    where
        S: KitStore,
        E: Engine,
        F: AsyncFn(&S) -> (E, SecretString),
    {
        let subject = self.subject(store, fresh).await;
        let (token, previous) = subject.begin(&self.name).await;
        let mut pending = None;
        for step in Step::ALL {
            for attempt in 1..=2 {
                let outcome = subject
                    .step(step, &token)
                    .await
                    .unwrap_or_else(|e| panic!("{}: {step} (attempt {attempt}): {e}", self.name));
                if step == Step::CreateSecret && attempt == 2 {
                    assert_eq!(
                        outcome,
                        Some(Outcome::AlreadyCreated),
                        "{}: a repeated createSecret wrote again",
                        self.name
                    );
                }
                if step == Step::FinishSecret && attempt == 2 {
                    assert_eq!(
                        outcome,
                        Some(Outcome::AlreadyCurrent),
                        "{}: a repeated finishSecret",
                        self.name
                    );
                }
            }
            if step == Step::CreateSecret {
                pending = subject.store.value(&subject.arn, &token).await;
            }
        }
        subject
            .store
            .end(&subject.arn, &token)
            .await
            .unwrap_or_else(|e| panic!("{}: ending the rotation: {e}", self.name));
        // SecretString compares by value and prints redacted: a failure shows no secret.
        assert_eq!(
            subject.store.value(&subject.arn, &token).await,
            pending,
            "{}: the pending value changed",
            self.name
        );
        assert_eq!(
            subject.store.count(Operation::PutPending),
            1,
            "{}: one PutSecretValue",
            self.name
        );
        self.converged(&subject, &token, previous.as_deref(), "every step twice")
            .await;
    }

    async fn store_fault<S, E, F>(&self, store: &S, fresh: &F, operation: Operation)
    where
        S: KitStore,
        E: Engine,
        F: AsyncFn(&S) -> (E, SecretString),
    {
        let subject = self.subject(store, fresh).await;
        let (token, previous) = subject.begin(&self.name).await;
        subject
            .store
            .fail_next(operation, Error::transient(format!("{operation:?} throttled")));
        let when = format!("{operation:?} failed once");
        if let Err((step, e)) = subject.resume(&token).await {
            assert!(
                e.kind().is_retryable(),
                "{}: {when}: {step} failed with a final error: {e}",
                self.name
            );
            self.working_labels(&subject, &when).await;
            subject
                .resume(&token)
                .await
                .unwrap_or_else(|(step, e)| panic!("{}: {when}: the retry failed at {step}: {e}", self.name));
        }
        self.converged(&subject, &token, previous.as_deref(), &when).await;
    }

    #[cfg(feature = "failpoints")]
    async fn crash_matrix<S, E, F>(&self, store: &S, fresh: &F) -> String
    where
        S: KitStore,
        E: Engine,
        F: AsyncFn(&S) -> (E, SecretString),
    {
        use crate::failpoint;
        let name = &self.name;
        let subject = self.subject(store, fresh).await;
        let (token, _) = subject.begin(name).await;
        failpoint::record();
        let recorded = subject.resume(&token).await;
        let points = failpoint::off();
        if let Err((step, e)) = recorded {
            panic!("{name}: the recording rotation failed at {step}: {e}");
        }
        let mut rows = String::new();
        for (index, expected) in points.iter().enumerate() {
            let subject = self.subject(store, fresh).await;
            let (token, previous) = subject.begin(name).await;
            failpoint::fail_at(index);
            let crashed = subject.resume(&token).await;
            let point = failpoint::off().first().copied().unwrap_or("(not reached)");
            let Err((step, _)) = crashed else {
                panic!("{name}: crash point #{index} ({expected}) was not reached");
            };
            let when = format!("crash at #{index} {point} in {step}");
            let working = self.working_labels(&subject, &when).await;
            let pending_at_crash = subject.store.value(&subject.arn, &token).await;
            let generated_at_crash = subject.store.count(Operation::RandomPassword);
            subject
                .resume(&token)
                .await
                .unwrap_or_else(|(step, e)| panic!("{name}: {when}: the retry failed at {step}: {e}"));
            self.converged(&subject, &token, previous.as_deref(), &when).await;
            if let Some(pending) = pending_at_crash {
                assert_eq!(
                    subject.store.value(&subject.arn, &token).await,
                    Some(pending),
                    "{name}: {when}: the retry stored another value"
                );
                assert_eq!(
                    subject.store.count(Operation::RandomPassword),
                    generated_at_crash,
                    "{name}: {when}: the retry generated another password"
                );
            }
            writeln!(
                rows,
                "{name:<32} {index:>3}  {step:<13} {point:<44} {} converged",
                working.join(",")
            )
            .ok();
        }
        rows
    }
}
