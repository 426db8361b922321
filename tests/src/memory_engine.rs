//! An engine whose target is an in-memory table of users and passwords, with knobs to make it
//! fail: enough to exercise the protocol (against a real Secrets Manager API) without a database.
//! It follows the single-user database strategy of the contract, so its behaviour is the one
//! the real engines must show.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use secret_rotor::{Context, Engine, Error, SecretJson, SecretString};

/// The target: users and their passwords, and counters of what the engine did to it.
#[derive(Default)]
pub struct MemoryTarget {
    users: Mutex<HashMap<String, String>>,
    /// Password changes made (the "DDL" of this target).
    pub changes: AtomicUsize,
    /// testSecret fails this many more times.
    pub failing_tests: AtomicUsize,
    /// Times the finish hook ran.
    pub finish_hooks: AtomicUsize,
}

impl MemoryTarget {
    /// Creates (or resets) a user.
    pub fn add_user(&self, username: &str, password: &str) {
        self.users
            .lock()
            .expect("users")
            .insert(username.to_owned(), password.to_owned());
    }

    /// Whether these credentials log in.
    pub fn logs_in(&self, username: &str, password: &str) -> bool {
        self.users
            .lock()
            .expect("users")
            .get(username)
            .is_some_and(|p| p == password)
    }

    fn login(&self, credential: &MemoryCredential) -> Result<(), Error> {
        if self.logs_in(&credential.username, credential.password.expose()) {
            Ok(())
        } else {
            Err(Error::target(format!(
                "user {} cannot log in",
                credential.username
            )))
        }
    }
}

/// A parsed secret of the memory engine.
pub struct MemoryCredential {
    doc: SecretJson,
    host: String,
    username: String,
    password: SecretString,
}

/// The engine.
#[derive(Clone, Default)]
pub struct MemoryEngine {
    /// The shared target, inspected by tests.
    pub target: Arc<MemoryTarget>,
}

impl Engine for MemoryEngine {
    type Secret = MemoryCredential;

    fn name(&self) -> &str {
        "memory/single-user"
    }

    fn default_excluded_characters(&self) -> &str {
        ":/@\"'\\"
    }

    fn parse(&self, value: &SecretString) -> Result<MemoryCredential, Error> {
        let doc = SecretJson::parse(value)?;
        match doc.required_str("engine")? {
            "memory" => {}
            other => {
                let shown: String = other.chars().take(32).collect();
                return Err(Error::invalid_secret(format!(
                    "key `engine` is `{shown}`, this function rotates `memory` secrets"
                )));
            }
        }
        Ok(MemoryCredential {
            host: doc.required_str("host")?.to_owned(),
            username: doc.required_str("username")?.to_owned(),
            password: doc.required_secret("password")?,
            doc,
        })
    }

    fn render(&self, credential: &MemoryCredential) -> Result<SecretString, Error> {
        let mut doc = credential.doc.clone();
        doc.set_str("host", &credential.host);
        doc.set_str("username", &credential.username);
        doc.set_secret("password", &credential.password);
        Ok(doc.to_secret_string())
    }

    async fn create_pending(&self, ctx: &Context<'_, Self>) -> Result<MemoryCredential, Error> {
        let current = ctx.current().await?;
        Ok(MemoryCredential {
            doc: current.doc.clone(),
            host: current.host.clone(),
            username: current.username.clone(),
            password: ctx.new_password().await?,
        })
    }

    async fn set_pending(&self, ctx: &Context<'_, Self>) -> Result<(), Error> {
        let pending = ctx.pending().await?;
        if self.target.login(pending).is_ok() {
            return Ok(());
        }
        let current = ctx.current().await?;
        if pending.username != current.username || pending.host != current.host {
            return Err(Error::invalid_secret(
                "pending username or host differs from current: refusing to act as a confused deputy",
            ));
        }
        let logged_in = match self.target.login(current) {
            Ok(()) => true,
            Err(_) => match ctx.previous().await? {
                Some(previous) => self.target.login(previous).is_ok(),
                None => false,
            },
        };
        if !logged_in {
            return Err(Error::target(
                "unable to log in with previous, current or pending secret",
            ));
        }
        self.target.add_user(&pending.username, pending.password.expose());
        self.target.changes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    async fn test_pending(&self, ctx: &Context<'_, Self>) -> Result<(), Error> {
        let pending = ctx.pending().await?;
        let forced_failure = self
            .target
            .failing_tests
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if forced_failure || self.target.login(pending).is_err() {
            return Err(Error::target("unable to log in with pending secret"));
        }
        Ok(())
    }

    async fn after_finish(&self, ctx: &Context<'_, Self>) -> Result<(), Error> {
        // The hook sees the new value as current.
        self.target.login(ctx.current().await?)?;
        self.target.finish_hooks.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}
