//! The conformance kit: the contract's engine-independent cases and the crash matrix, for any
//! engine, against its own real target.
//!
//! The protocol is the framework's; what an engine must add is that its target always accepts
//! some labelled version of the secret, and that every step can be repeated. The kit proves that
//! for an engine by rotating fresh secrets on an in-memory Secrets Manager ([`MemoryStore`]) and
//! asking the engine's real target, through the small [`Target`] trait, whether a version
//! authenticates:
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

use std::fmt::Write as _;
use std::future::Future;

use crate::error::Error;
use crate::event::Step;
use crate::password::Passwords;
use crate::protocol::Outcome;
use crate::runtime::Rotor;
use crate::secret::SecretString;
use crate::store::{AWSCURRENT, AWSPENDING, AWSPREVIOUS};
use crate::testing::{new_token, MemoryStore, Operation, Service};
use crate::Engine;

/// The engine's real target, as the kit sees it.
pub trait Target: Sync {
    /// Whether `value` (a version of a secret the kit rotates) authenticates against the target.
    fn authenticates(&self, value: &SecretString) -> impl Future<Output = bool> + Send;
}

/// The suite for one engine; see the [module](self).
pub struct Conformance<'t, T: Target> {
    name: String,
    target: &'t T,
}

/// One fresh secret on a fresh store, with its rotor.
struct Subject<E: Engine> {
    store: MemoryStore,
    arn: String,
    rotor: Rotor<E>,
}

impl<E: Engine> Subject<E> {
    /// A rotation begun as the service begins one (a new token labelled `AWSPENDING`): the token,
    /// and the version that was current.
    fn begin(&self, name: &str) -> (String, Option<String>) {
        let previous = self.store.version_with(&self.arn, AWSCURRENT);
        let token = new_token();
        self.store
            .rotate_secret(&self.arn, &token)
            .unwrap_or_else(|e| panic!("{name}: RotateSecret: {e}"));
        (token, previous)
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

    /// Runs every case; `fresh` makes, for each case, the engine and the value of a new secret
    /// whose credentials authenticate on the target now (it may create other secrets, a
    /// master's, in the store it is given). Returns a report of what ran (the crash matrix's
    /// rows among it); panics on any violation.
    pub async fn run<E, F>(&self, fresh: F) -> String
    where
        E: Engine,
        F: AsyncFn(&MemoryStore) -> (E, SecretString),
    {
        let mut report = String::new();
        self.rotations_in_a_row(&fresh).await;
        writeln!(report, "{}: two rotations in a row converge", self.name).ok();
        self.every_step_twice(&fresh).await;
        writeln!(report, "{}: every step repeated changes nothing", self.name).ok();
        for operation in [
            Operation::Describe,
            Operation::GetValue,
            Operation::PutPending,
            Operation::MoveCurrent,
        ] {
            self.store_fault(&fresh, operation).await;
        }
        writeln!(
            report,
            "{}: a failing Secrets Manager call is retried and converges",
            self.name
        )
        .ok();
        #[cfg(feature = "failpoints")]
        report.push_str(&self.crash_matrix(&fresh).await);
        report
    }

    async fn subject<E, F>(&self, fresh: &F) -> Subject<E>
    where
        E: Engine,
        F: AsyncFn(&MemoryStore) -> (E, SecretString),
    {
        let store = MemoryStore::new();
        let (engine, value) = fresh(&store).await;
        let arn = store.create_secret(&format!("conformance-{}", new_token()), &value);
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
    async fn working_labels<E: Engine>(&self, subject: &Subject<E>, when: &str) -> Vec<&'static str> {
        let mut working = Vec::new();
        for stage in [AWSCURRENT, AWSPENDING, AWSPREVIOUS] {
            if let Some(value) = subject.store.value_at(&subject.arn, stage) {
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
    async fn converged<E: Engine>(
        &self,
        subject: &Subject<E>,
        token: &str,
        previous: Option<&str>,
        when: &str,
    ) {
        let name = &self.name;
        let stages = subject.store.stages(&subject.arn);
        assert_eq!(
            subject.store.version_with(&subject.arn, AWSCURRENT).as_deref(),
            Some(token),
            "{name}: {when}: AWSCURRENT is not the new version: {stages:?}"
        );
        if let Some(previous) = previous {
            assert_eq!(
                subject.store.version_with(&subject.arn, AWSPREVIOUS).as_deref(),
                Some(previous),
                "{name}: {when}: AWSPREVIOUS is not the old version: {stages:?}"
            );
        }
        assert_eq!(
            subject.store.version_with(&subject.arn, AWSPENDING),
            None,
            "{name}: {when}: AWSPENDING left: {stages:?}"
        );
        let current = subject.store.value_at(&subject.arn, AWSCURRENT);
        let authenticates = match &current {
            Some(value) => self.target.authenticates(value).await,
            None => false,
        };
        assert!(authenticates, "{name}: {when}: AWSCURRENT does not authenticate");
    }

    async fn rotations_in_a_row<E, F>(&self, fresh: &F)
    where
        E: Engine,
        F: AsyncFn(&MemoryStore) -> (E, SecretString),
    {
        let subject = self.subject(fresh).await;
        let service = Service::new(&subject.store);
        for rotation in 1..=2 {
            let previous = subject.store.version_with(&subject.arn, AWSCURRENT);
            let token = service
                .rotate(&subject.rotor, &subject.arn)
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

    async fn every_step_twice<E, F>(&self, fresh: &F)
    where
        E: Engine,
        F: AsyncFn(&MemoryStore) -> (E, SecretString),
    {
        let subject = self.subject(fresh).await;
        let service = Service::new(&subject.store);
        let (token, previous) = subject.begin(&self.name);
        let mut pending = None;
        for step in Step::ALL {
            for attempt in 1..=2 {
                let outcome = service
                    .step(&subject.rotor, step, &subject.arn, &token)
                    .await
                    .unwrap_or_else(|e| panic!("{}: {step} (attempt {attempt}): {e}", self.name));
                if step == Step::CreateSecret && attempt == 2 {
                    assert_eq!(
                        outcome,
                        Outcome::AlreadyCreated,
                        "{}: a repeated createSecret wrote again",
                        self.name
                    );
                }
                if step == Step::FinishSecret && attempt == 2 {
                    assert_eq!(
                        outcome,
                        Outcome::AlreadyCurrent,
                        "{}: a repeated finishSecret",
                        self.name
                    );
                }
            }
            if step == Step::CreateSecret {
                pending = subject.store.value_of(&subject.arn, &token);
            }
        }
        subject.store.clear_pending(&subject.arn, &token);
        assert_eq!(
            subject
                .store
                .value_of(&subject.arn, &token)
                .map(|v| v.expose().to_owned()),
            pending.map(|v| v.expose().to_owned()),
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

    async fn store_fault<E, F>(&self, fresh: &F, operation: Operation)
    where
        E: Engine,
        F: AsyncFn(&MemoryStore) -> (E, SecretString),
    {
        let subject = self.subject(fresh).await;
        let service = Service::new(&subject.store);
        subject
            .store
            .fail_next(operation, Error::transient(format!("{operation:?} throttled")));
        let (token, previous) = subject.begin(&self.name);
        let when = format!("{operation:?} failed once");
        if let Err((step, e)) = service.resume(&subject.rotor, &subject.arn, &token).await {
            assert!(
                e.kind().is_retryable(),
                "{}: {when}: {step} failed with a final error: {e}",
                self.name
            );
            self.working_labels(&subject, &when).await;
            service
                .resume(&subject.rotor, &subject.arn, &token)
                .await
                .unwrap_or_else(|(step, e)| panic!("{}: {when}: the retry failed at {step}: {e}", self.name));
        }
        self.converged(&subject, &token, previous.as_deref(), &when).await;
    }

    #[cfg(feature = "failpoints")]
    async fn crash_matrix<E, F>(&self, fresh: &F) -> String
    where
        E: Engine,
        F: AsyncFn(&MemoryStore) -> (E, SecretString),
    {
        use crate::failpoint;
        let name = &self.name;
        let subject = self.subject(fresh).await;
        failpoint::record();
        let recorded = Service::new(&subject.store)
            .rotate(&subject.rotor, &subject.arn)
            .await;
        let points = failpoint::off();
        if let Err((step, e)) = recorded {
            panic!("{name}: the recording rotation failed at {step}: {e}");
        }
        let mut rows = String::new();
        for (index, expected) in points.iter().enumerate() {
            let subject = self.subject(fresh).await;
            let service = Service::new(&subject.store);
            let (token, previous) = subject.begin(name);
            failpoint::fail_at(index);
            let crashed = service.resume(&subject.rotor, &subject.arn, &token).await;
            let point = failpoint::off().first().copied().unwrap_or("(not reached)");
            let Err((step, _)) = crashed else {
                panic!("{name}: crash point #{index} ({expected}) was not reached");
            };
            let when = format!("crash at #{index} {point} in {step}");
            let working = self.working_labels(&subject, &when).await;
            let pending_at_crash = subject.store.value_of(&subject.arn, &token);
            let generated_at_crash = subject.store.count(Operation::RandomPassword);
            service
                .resume(&subject.rotor, &subject.arn, &token)
                .await
                .unwrap_or_else(|(step, e)| panic!("{name}: {when}: the retry failed at {step}: {e}"));
            self.converged(&subject, &token, previous.as_deref(), &when).await;
            if let Some(pending) = pending_at_crash {
                assert_eq!(
                    subject
                        .store
                        .value_of(&subject.arn, &token)
                        .map(|v| v.expose().to_owned()),
                    Some(pending.expose().to_owned()),
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
                "{name:<24} {index:>3}  {step:<13} {point:<44} {} converged",
                working.join(",")
            )
            .ok();
        }
        rows
    }
}
