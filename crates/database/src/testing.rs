//! A fake [`Database`] driver and a fake RDS API for fast tests of the strategies (feature
//! `testing`; never in a function binary).
//!
//! [`MemoryDatabase`] keeps users, their passwords, whether each is a superuser, and a set of
//! privileges per user, and records every login and every change, so that a test can check what
//! a strategy did (and did not do) without a server. Failures can be injected per action. Its
//! secrets use `"engine": "memory"`.
//!
//! ```
//! use rotor_database::testing::MemoryDatabase;
//! use rotor_database::{DatabaseEngine, Strategy};
//! use secret_rotor::testing::{MemoryStore, Service};
//! use secret_rotor::{Passwords, Rotor, SecretString, AWSCURRENT};
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let db = MemoryDatabase::new();
//! db.add_user("app", "initial-1");
//! let store = MemoryStore::new();
//! let arn = store.create_secret("app", &SecretString::from(
//!     r#"{"engine": "memory", "host": "db", "username": "app", "password": "initial-1"}"#));
//! let engine = DatabaseEngine::new(db.clone(), Strategy::SingleUser);
//! let rotor = Rotor::with_passwords(Ok(engine), store.clone(), Passwords::from_lookup(|_| None, ""));
//! Service::new(&store).rotate(&rotor, &arn).await.unwrap();
//! let current: serde_json::Value =
//!     serde_json::from_str(store.value_at(&arn, AWSCURRENT).unwrap().expose()).unwrap();
//! assert!(db.logs_in("app", current["password"].as_str().unwrap()));
//! # });
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use secret_rotor::{BoxFuture, Deadline, Error};

use crate::rds::{RdsApi, RdsCluster, RdsInstance};
use crate::secret::DatabaseSecret;
use crate::strategy::UserPair;
use crate::Database;

/// What a [`MemoryDatabase`] can be told to fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A login (whoever logs in).
    Login,
    /// The session check (`SELECT 1`).
    Check,
    /// A password change, by the user itself or through the master.
    SetPassword,
    /// The privileges' comparison of testSecret.
    Compare,
}

/// A user; no `Debug`, which would print its password.
#[derive(Clone, Default)]
struct User {
    password: String,
    superuser: bool,
    privileges: BTreeSet<String>,
}

#[derive(Default)]
struct State {
    users: BTreeMap<String, User>,
    failures: Vec<(Action, Error)>,
    logins: Vec<(String, bool)>,
    changes: Vec<String>,
}

impl State {
    fn act(&mut self, action: Action) -> Result<(), Error> {
        match self.failures.iter().position(|(a, _)| *a == action) {
            Some(at) => Err(self.failures.remove(at).1),
            None => Ok(()),
        }
    }
}

/// Users in memory, shared by its clones; see the [module](self).
#[derive(Clone, Default)]
pub struct MemoryDatabase {
    state: Arc<Mutex<State>>,
}

/// A session: the user that logged in.
#[derive(Debug)]
pub struct MemorySession {
    /// The user.
    pub user: String,
}

impl MemoryDatabase {
    /// A database with no user.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A test that panicked while holding the lock has failed already; keep its state.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Creates (or resets) a user with `password`.
    pub fn add_user(&self, user: &str, password: &str) {
        self.state().users.insert(
            user.to_owned(),
            User {
                password: password.to_owned(),
                ..Default::default()
            },
        );
    }

    /// Creates (or resets) a superuser (a master) with `password`.
    pub fn add_superuser(&self, user: &str, password: &str) {
        self.state().users.insert(
            user.to_owned(),
            User {
                password: password.to_owned(),
                superuser: true,
                ..Default::default()
            },
        );
    }

    /// Gives `user` a privilege (any name).
    pub fn grant(&self, user: &str, privilege: &str) {
        if let Some(u) = self.state().users.get_mut(user) {
            u.privileges.insert(privilege.to_owned());
        }
    }

    /// Takes a privilege from `user`.
    pub fn revoke(&self, user: &str, privilege: &str) {
        if let Some(u) = self.state().users.get_mut(user) {
            u.privileges.remove(privilege);
        }
    }

    /// `user`'s privileges.
    pub fn privileges(&self, user: &str) -> BTreeSet<String> {
        self.state()
            .users
            .get(user)
            .map(|u| u.privileges.clone())
            .unwrap_or_default()
    }

    /// Whether `user` exists.
    pub fn has_user(&self, user: &str) -> bool {
        self.state().users.contains_key(user)
    }

    /// Sets `user`'s password directly (a restored snapshot, an operator's change).
    pub fn set_password(&self, user: &str, password: &str) {
        if let Some(u) = self.state().users.get_mut(user) {
            u.password = password.to_owned();
        }
    }

    /// Whether these credentials log in (not recorded as a login).
    pub fn logs_in(&self, user: &str, password: &str) -> bool {
        self.state()
            .users
            .get(user)
            .is_some_and(|u| u.password == password)
    }

    /// The next `action` fails with `error` (several queue up in order).
    pub fn fail_next(&self, action: Action, error: Error) {
        self.state().failures.push((action, error));
    }

    /// Every login so far: the user, and whether it was accepted.
    pub fn logins(&self) -> Vec<(String, bool)> {
        self.state().logins.clone()
    }

    /// The logins refused so far.
    pub fn refused_logins(&self) -> usize {
        self.state().logins.iter().filter(|(_, ok)| !ok).count()
    }

    /// Every change so far (`password app`, `create app_clone`, `grant app_clone x`, …), in order.
    pub fn changes(&self) -> Vec<String> {
        self.state().changes.clone()
    }
}

impl Database for MemoryDatabase {
    type Session = MemorySession;

    fn name(&self) -> &str {
        "memory"
    }

    fn engines(&self) -> &[&str] {
        &["memory"]
    }

    fn default_port(&self) -> u16 {
        1
    }

    fn default_excluded_characters(&self) -> &str {
        // As PostgreSQL's: passwords that any SQL string or URL can carry.
        ":/@\"'\\"
    }

    fn check_new_username(&self, _current: &DatabaseSecret, username: &str) -> Result<(), Error> {
        if username.len() > 63 {
            return Err(Error::invalid_secret(format!(
                "user name {username} is over 63 bytes"
            )));
        }
        Ok(())
    }

    async fn login(&self, secret: &DatabaseSecret, _deadline: Deadline) -> Result<MemorySession, Error> {
        let mut state = self.state();
        state.act(Action::Login)?;
        let accepted = state
            .users
            .get(&secret.username)
            .is_some_and(|u| u.password == secret.password.expose());
        state.logins.push((secret.username.clone(), accepted));
        if accepted {
            Ok(MemorySession {
                user: secret.username.clone(),
            })
        } else {
            Err(Error::target(format!("user {}: login refused", secret.username))
                .with_code(secret_rotor::Code::CredentialsRefused))
        }
    }

    async fn check(&self, _session: &mut MemorySession, _deadline: Deadline) -> Result<(), Error> {
        self.state().act(Action::Check)
    }

    async fn set_own_password(
        &self,
        session: &mut MemorySession,
        pending: &DatabaseSecret,
        _deadline: Deadline,
    ) -> Result<(), Error> {
        let mut state = self.state();
        state.act(Action::SetPassword)?;
        if session.user != pending.username {
            return Err(Error::target(format!(
                "{} may not set {}'s password",
                session.user, pending.username
            )));
        }
        if let Some(u) = state.users.get_mut(&pending.username) {
            u.password = pending.password.expose().to_owned();
        }
        state.changes.push(format!("password {}", pending.username));
        Ok(())
    }

    async fn set_user_password(
        &self,
        master: &mut MemorySession,
        pair: &UserPair,
        pending: &DatabaseSecret,
        _deadline: Deadline,
    ) -> Result<(), Error> {
        let mut state = self.state();
        state.act(Action::SetPassword)?;
        let is_master = state.users.get(&master.user).is_some_and(|u| u.superuser);
        if !is_master {
            return Err(Error::target(format!("{} is not a master", master.user)));
        }
        let current = pair.other(&pending.username).to_owned();
        let source = state
            .users
            .get(&current)
            .cloned()
            .ok_or_else(|| Error::target(format!("user {current} does not exist")))?;
        if source.superuser || state.users.get(&pending.username).is_some_and(|u| u.superuser) {
            return Err(Error::invalid_secret(format!(
                "user {} or {current} is a superuser",
                pending.username
            )));
        }
        if !state.users.contains_key(&pending.username) {
            if !pair.is_clone(&pending.username) {
                return Err(Error::target(format!("user {} does not exist", pending.username)));
            }
            state.changes.push(format!("create {}", pending.username));
        }
        let target = state.users.entry(pending.username.clone()).or_default();
        let before = std::mem::replace(&mut target.privileges, source.privileges.clone());
        target.password = pending.password.expose().to_owned();
        let mut changes: Vec<String> = source
            .privileges
            .difference(&before)
            .map(|p| format!("grant {} {p}", pending.username))
            .chain(
                before
                    .difference(&source.privileges)
                    .map(|p| format!("revoke {} {p}", pending.username)),
            )
            .collect();
        changes.push(format!("password {}", pending.username));
        state.changes.extend(changes);
        Ok(())
    }

    async fn compare_privileges(
        &self,
        pending_session: &mut MemorySession,
        _pair: &UserPair,
        _pending: &DatabaseSecret,
        current: &DatabaseSecret,
        _deadline: Deadline,
    ) -> Result<(), Error> {
        let mut state = self.state();
        state.act(Action::Compare)?;
        let of = |user: &str| {
            state
                .users
                .get(user)
                .map(|u| u.privileges.clone())
                .unwrap_or_default()
        };
        let (theirs, ours) = (of(&pending_session.user), of(&current.username));
        if theirs == ours {
            return Ok(());
        }
        let missing: Vec<&String> = ours.difference(&theirs).collect();
        let extra: Vec<&String> = theirs.difference(&ours).collect();
        Err(Error::target(format!(
            "user {} does not have exactly user {}'s privileges: missing {missing:?}, extra {extra:?}",
            pending_session.user, current.username
        )))
    }
}

/// A fake RDS API: the instances and clusters a test describes, found by identifier or ARN,
/// with every call counted.
#[derive(Clone, Default)]
pub struct MemoryRds {
    state: Arc<Mutex<RdsState>>,
}

#[derive(Default)]
struct RdsState {
    instances: Vec<RdsInstance>,
    clusters: Vec<RdsCluster>,
    calls: Vec<String>,
}

impl MemoryRds {
    /// An RDS with nothing in it.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, RdsState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds a DB instance.
    pub fn add_instance(&self, instance: RdsInstance) {
        self.state().instances.push(instance);
    }

    /// Adds a DB cluster.
    pub fn add_cluster(&self, cluster: RdsCluster) {
        self.state().clusters.push(cluster);
    }

    /// Every call so far, as `DescribeDBInstances <id>` or `DescribeDBClusters <id>`.
    pub fn calls(&self) -> Vec<String> {
        self.state().calls.clone()
    }
}

impl RdsApi for MemoryRds {
    fn instance<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<RdsInstance>, Error>> {
        let mut state = self.state();
        state.calls.push(format!("DescribeDBInstances {id}"));
        let found = state
            .instances
            .iter()
            .find(|i| i.id == id || i.arn.as_deref() == Some(id))
            .cloned();
        Box::pin(async move { Ok(found) })
    }

    fn cluster<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<RdsCluster>, Error>> {
        let mut state = self.state();
        state.calls.push(format!("DescribeDBClusters {id}"));
        let found = state
            .clusters
            .iter()
            .find(|c| c.id == id || c.arn.as_deref() == Some(id))
            .cloned();
        Box::pin(async move { Ok(found) })
    }
}
