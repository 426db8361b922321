//! The AWS Secrets Manager rotation protocol, implemented once for every engine.
//!
//! Secrets Manager rotates a secret by invoking a Lambda function four times (`createSecret`,
//! `setSecret`, `testSecret`, `finishSecret`) and moving the labels `AWSPENDING`, `AWSCURRENT`
//! and `AWSPREVIOUS`. This crate owns all of that: the preamble checks, idempotent retries, the
//! password policy, the Secrets Manager calls, redaction, logs and typed errors. An engine (a
//! database flavour and strategy, a fleet of SSH hosts, a target of your own) implements the
//! small [`Engine`] trait: parse its secret value, derive a pending value, set it on the target,
//! test it, and optionally clean up after the labels move.
//!
//! The data flow of one invocation: [`run`] receives the payload from the Lambda runtime →
//! [`Rotor::handle_json`] parses it into a [`RotationEvent`] and logs the step →
//! [`rotate`] runs the preamble against [`SecretsStore`] and calls the engine through a
//! [`Context`], which reads the secret's versions lazily and bounds all work by the
//! invocation's [`Deadline`] → the outcome or [`Error`] goes back to the runtime, the error's
//! [`ErrorKind`] becoming the Lambda `errorType`.
//!
//! # An engine
//!
//! A complete engine for a target that keeps one password per user (here an in-memory map
//! standing in for a real server):
//!
//! ```
//! use std::collections::HashMap;
//! use std::sync::Mutex;
//! use secret_rotor::{Context, Engine, Error, SecretJson, SecretString};
//!
//! struct Credential { doc: SecretJson, user: String, password: SecretString }
//!
//! #[derive(Default)]
//! struct MapEngine { passwords: Mutex<HashMap<String, String>> }
//!
//! impl MapEngine {
//!     fn login(&self, c: &Credential) -> Result<(), Error> {
//!         let passwords = self.passwords.lock().map_err(|_| Error::transient("lock poisoned"))?;
//!         match passwords.get(&c.user) {
//!             Some(p) if p == c.password.expose() => Ok(()),
//!             _ => Err(Error::target(format!("user {} cannot log in", c.user))),
//!         }
//!     }
//! }
//!
//! impl Engine for MapEngine {
//!     type Secret = Credential;
//!     fn name(&self) -> &str { "map" }
//!     fn parse(&self, value: &SecretString) -> Result<Credential, Error> {
//!         let doc = SecretJson::parse(value)?;
//!         let user = doc.required_str("username")?.to_owned();
//!         let password = doc.required_secret("password")?;
//!         Ok(Credential { doc, user, password })
//!     }
//!     fn render(&self, c: &Credential) -> Result<SecretString, Error> {
//!         let mut doc = c.doc.clone();
//!         doc.set_secret("password", &c.password);
//!         Ok(doc.to_secret_string())
//!     }
//!     async fn create_pending(&self, ctx: &Context<'_, Self>) -> Result<Credential, Error> {
//!         let current = ctx.current().await?;
//!         let password = ctx.new_password().await?;
//!         Ok(Credential { doc: current.doc.clone(), user: current.user.clone(), password })
//!     }
//!     async fn set_pending(&self, ctx: &Context<'_, Self>) -> Result<(), Error> {
//!         let pending = ctx.pending().await?;
//!         if self.login(pending).is_ok() {
//!             return Ok(()); // a retry: already set
//!         }
//!         self.login(ctx.current().await?)?;
//!         let mut passwords = self.passwords.lock().map_err(|_| Error::transient("lock poisoned"))?;
//!         passwords.insert(pending.user.clone(), pending.password.expose().to_owned());
//!         Ok(())
//!     }
//!     async fn test_pending(&self, ctx: &Context<'_, Self>) -> Result<(), Error> {
//!         self.login(ctx.pending().await?)
//!     }
//! }
//! ```
//!
//! Its binary's `main` is then `secret_rotor::run(MapEngine::default()).await`.

pub mod aws;
mod cache;
mod deadline;
pub mod driver;
mod engine;
mod error;
mod event;
pub mod failpoint;
pub mod logging;
mod password;
mod preflight;
mod protocol;
mod runtime;
mod secret;
mod store;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

/// Re-exported so engines zeroize their own buffers with the same crate.
pub use zeroize;

pub use cache::ValueCache;
pub use deadline::Deadline;
pub use engine::{Context, Engine};
pub use error::{Code, Error, ErrorKind, Result};
pub use event::{RotationEvent, Step};
pub use password::{CharClass, PasswordPolicy, PasswordSource, Passwords};
pub use preflight::{preflight, Check, Report, CHECK_EVENT_KEY};
pub use protocol::{rotate, Outcome};
pub use runtime::{run, IntoEngine, Rotor};
pub use secret::{SecretJson, SecretString};
pub use store::{
    error_chain, BoxFuture, SecretDescription, SecretsManager, SecretsStore, Version, AWSCURRENT, AWSPENDING,
    AWSPREVIOUS,
};
