//! The two database rotation strategies, written once for every SQL engine.
//!
//! The framework (`secret-rotor`) owns the protocol; this crate owns what is common to every
//! database: the secret format (CONTRACT §4), the choice of strategy per deployed function
//! (`ROTATION_STRATEGY`), the confused-deputy guards, the `AWSPREVIOUS` fallback of the single
//! user strategy, the master secret of the alternating users strategy, and the rule that a
//! setSecret whose pending credentials already log in changes nothing. A database driver
//! (PostgreSQL, MySQL/MariaDB) implements the narrow [`Database`] trait — log in, check a session,
//! set a password — and [`DatabaseEngine`] turns it into a rotation [`secret_rotor::Engine`].

mod engine;
pub mod rds;
mod secret;
mod strategy;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod tls;

use std::future::Future;

pub use engine::DatabaseEngine;
pub use secret::DatabaseSecret;
pub use strategy::{Strategy, UserPair, CLONE_SUFFIX};

use secret_rotor::{Deadline, Error};

/// What a database driver provides. Every method must bound its work by the deadline and keep
/// passwords out of SQL text, server logs and error messages where the server allows it.
pub trait Database: Send + Sync + 'static {
    /// An authenticated connection.
    type Session: Send + Sync;

    /// Short name for logs (`postgres`).
    fn name(&self) -> &str;

    /// The accepted values of the secret's `engine` key.
    fn engines(&self) -> &[&str];

    /// The port when the secret has none.
    fn default_port(&self) -> u16;

    /// The default of `EXCLUDE_CHARACTERS` for this database.
    fn default_excluded_characters(&self) -> &str;

    /// Checks driver-specific keys of a secret (TLS settings, …). Called whenever a secret is
    /// parsed, so a bad value fails createSecret before anything is written.
    fn validate(&self, secret: &DatabaseSecret) -> Result<(), Error> {
        let _ = secret;
        Ok(())
    }

    /// Checks that `username`, the other user of `current`'s pair, is a valid name for a user
    /// created by this function (length limits, which may depend on `current`'s `engine`); the
    /// error names the limit.
    fn check_new_username(&self, current: &DatabaseSecret, username: &str) -> Result<(), Error>;

    /// What a session is, for the preflight's report: TLS, server version, account. Never a
    /// secret.
    fn describe(&self, session: &Self::Session) -> String {
        let _ = session;
        String::new()
    }

    /// Logs in with `secret`. A refused login is [`secret_rotor::ErrorKind::Target`]; a network
    /// fault is transient.
    fn login(
        &self,
        secret: &DatabaseSecret,
        deadline: Deadline,
    ) -> impl Future<Output = Result<Self::Session, Error>> + Send;

    /// Runs a trivial query on a session.
    fn check(
        &self,
        session: &mut Self::Session,
        deadline: Deadline,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// Single user: the session's own user sets its password to `pending.password`.
    fn set_own_password(
        &self,
        session: &mut Self::Session,
        pending: &DatabaseSecret,
        deadline: Deadline,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// Alternating users, on a session of the current user (`current`, one of `pair`), before
    /// the master acts: hand over to the pair's shared state what the current user alone holds
    /// (PostgreSQL: objects it owns). Runs at every setSecret; nothing to do by default.
    fn prepare_current(
        &self,
        session: &mut Self::Session,
        pair: &UserPair,
        current: &DatabaseSecret,
        deadline: Deadline,
    ) -> impl Future<Output = Result<(), Error>> + Send {
        let _ = (session, pair, current, deadline);
        async { Ok(()) }
    }

    /// Alternating users, on a master session: give `pending.username` (one of `pair`) the
    /// pending password, and make its privileges exactly those of the other user of the pair,
    /// the one that logs in now (`AWSCURRENT`). If it is the clone, create it when missing.
    fn set_user_password(
        &self,
        master: &mut Self::Session,
        pair: &UserPair,
        pending: &DatabaseSecret,
        deadline: Deadline,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// Alternating users, in testSecret, on a session of the pending user: fail, naming the
    /// difference (never a password), when its privileges differ from those of `current`, the
    /// other user of `pair`. Nothing to compare by default.
    fn compare_privileges(
        &self,
        pending_session: &mut Self::Session,
        pair: &UserPair,
        pending: &DatabaseSecret,
        current: &DatabaseSecret,
        deadline: Deadline,
    ) -> impl Future<Output = Result<(), Error>> + Send {
        let _ = (pending_session, pair, pending, current, deadline);
        async { Ok(()) }
    }
}
