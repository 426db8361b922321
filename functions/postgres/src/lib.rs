//! The PostgreSQL rotation engine (RDS, Aurora, self-managed).
//!
//! [`Postgres`] is the database driver the strategies of `rotor-database` run on: it logs in
//! over verified TLS ([`tls`]), and sets passwords with `ALTER ROLE … PASSWORD` carrying a
//! SCRAM-SHA-256 verifier computed here ([`sql`]), so the plaintext never reaches the server or
//! its statement log. Identifiers are always quoted as identifiers. For the alternating-users
//! strategy the clone role is created with `LOGIN` and membership of the original role (in one
//! transaction), and the membership is checked again at every rotation; on PostgreSQL 16+ a
//! master without ADMIN OPTION on the roles gets an error naming the `GRANT` that fixes it.
//!
//! Behind a transaction-mode pooler (PgBouncer) every transaction may run on another
//! server connection that other clients share: logins send no `options` startup parameter
//! (PgBouncer refuses it), statements that write or wait for locks run in a transaction that
//! starts with `SET LOCAL statement_timeout` (never a session `SET`, which would stay on the
//! pooled connection), and queries use unnamed statements (a named prepared statement would
//! outlive its transaction on a connection the next client gets).

pub mod sql;
pub mod tls;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rotor_database::{Database, DatabaseEngine, DatabaseSecret, UserPair};
use secret_rotor::{Code, Deadline, Error, ErrorKind};
use tokio_postgres::config::SslMode;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, NoTls};

use crate::tls::{RustlsConnector, TlsConfigs, TlsMode};

/// The engine of the deployed function: PostgreSQL with the strategy of `ROTATION_STRATEGY`,
/// asking RDS (at first need) about RDS-managed master secrets and endpoints.
pub fn engine_from_env() -> Result<DatabaseEngine<Postgres>, Error> {
    Ok(DatabaseEngine::from_env(Postgres::from_env())?
        .with_rds(std::sync::Arc::new(rotor_rds::Rds::from_env())))
}

/// The PostgreSQL driver.
#[derive(Debug, Default)]
pub struct Postgres {
    tls: TlsConfigs,
}

/// An authenticated connection.
pub struct PgSession {
    client: Client,
    /// Whether the connection is encrypted.
    pub tls: bool,
    /// `server_version_num` as the server (or a pooler, relaying it) announced it at login.
    server_version: Option<u32>,
}

impl PgSession {
    /// The underlying client (tests use it to look at the server's view).
    pub fn client(&self) -> &Client {
        &self.client
    }
}

impl Postgres {
    /// A driver trusting the system roots and `ca_bundle`.
    pub fn new(tls: TlsConfigs) -> Self {
        Self { tls }
    }

    /// A driver configured from the environment (`DATABASE_CA_BUNDLE`).
    pub fn from_env() -> Self {
        Self::new(TlsConfigs::from_env())
    }

    async fn batch(session: &PgSession, sql: &str, what: &str, deadline: Deadline) -> Result<(), Error> {
        secret_rotor::failpoint!("postgres.statement.before")?;
        deadline
            .run(what, async {
                session
                    .client
                    .batch_execute(sql)
                    .await
                    .map_err(|e| statement_error(what, &e))
            })
            .await?;
        secret_rotor::failpoint!("postgres.statement.after")?;
        Ok(())
    }

    /// Runs `body` (statements separated by `;`) as one transaction, in one round trip, whose
    /// statements the server itself cancels once the invocation's deadline has passed: a
    /// statement left waiting for a lock (on `pg_authid`, on the objects `REASSIGN OWNED` moves)
    /// when the step gives up must not keep waiting, and queueing others behind it, after the
    /// function has gone. `SET LOCAL` ends with the transaction, so nothing stays on a server
    /// connection that a transaction-mode pooler hands to other clients. On failure the
    /// transaction is rolled back, also within the deadline.
    async fn transaction(
        session: &PgSession,
        body: &str,
        what: &str,
        deadline: Deadline,
    ) -> Result<(), Error> {
        let sql = secret_rotor::zeroize::Zeroizing::new(format!(
            "BEGIN; SET LOCAL statement_timeout = {}; {body}; COMMIT;",
            statement_timeout_ms(deadline)
        ));
        let result = Self::batch(session, &sql, what, deadline).await;
        if result.is_err() {
            // A failed statement skips the rest of the string, COMMIT included: the transaction
            // stays open (and, behind a pooler, its server connection ours) until ROLLBACK. It
            // gets its own budget out of the margin kept for the answer: after a timeout the
            // step's deadline has passed, and a ROLLBACK only queued would never be sent.
            let rollback = session.client.batch_execute("ROLLBACK");
            let _ = tokio::time::timeout(Deadline::MARGIN / 2, rollback).await;
        }
        result
    }

    /// The rows of `sql`, run as an unnamed statement: one round trip (parse, bind, execute),
    /// and no prepared statement left on the server connection, which a transaction-mode pooler
    /// may give to another client as soon as this query ends. Read-only catalog queries only:
    /// they wait for no lock but an ACCESS EXCLUSIVE one on a catalog and hold none that others
    /// wait for, so the client-side deadline bounds them enough.
    async fn query(
        session: &PgSession,
        sql: &str,
        params: &[(&(dyn tokio_postgres::types::ToSql + Sync), Type)],
        what: &str,
        deadline: Deadline,
    ) -> Result<Vec<tokio_postgres::Row>, Error> {
        deadline
            .run(what, async {
                session
                    .client
                    .query_typed(sql, params)
                    .await
                    .map_err(|e| statement_error(what, &e))
            })
            .await
    }

    /// `server_version_num`: as announced at login (no round trip), else asked.
    async fn server_version(session: &PgSession, deadline: Deadline) -> Result<u32, Error> {
        if let Some(version) = session.server_version {
            return Ok(version);
        }
        deadline
            .run("reading the server version", async {
                let rows = session
                    .client
                    .simple_query("SHOW server_version_num")
                    .await
                    .map_err(|e| statement_error("SHOW server_version_num", &e))?;
                rows.iter()
                    .find_map(|message| match message {
                        tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0)?.parse().ok(),
                        _ => None,
                    })
                    .ok_or_else(|| Error::transient("the server did not report server_version_num"))
            })
            .await
    }

    /// Both users' settings and memberships, as any user may read them, and whether the
    /// session's user holds ADMIN OPTION on each, in one query; `None` for a role that does not
    /// exist.
    async fn role_states(
        session: &PgSession,
        roles: [&str; 2],
        pair: &UserPair,
        deadline: Deadline,
    ) -> Result<[Option<RoleState>; 2], Error> {
        const WHAT: &str = "reading the users' settings and memberships";
        // A crash point among the reads, for the crash matrix.
        secret_rotor::failpoint!("postgres.query.before")?;
        let rows = Self::query(
            session,
            "SELECT r.rolname::text, coalesce(r.rolconfig, '{}'::text[]), ARRAY(SELECT g.rolname::text \
             FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid WHERE m.member = r.oid), \
             r.rolsuper, pg_has_role(current_user, r.oid, 'MEMBER WITH ADMIN OPTION') \
             FROM pg_roles r WHERE r.rolname IN ($1, $2)",
            &[(&roles[0], Type::NAME), (&roles[1], Type::NAME)],
            WHAT,
            deadline,
        )
        .await?;
        secret_rotor::failpoint!("postgres.query.after")?;
        let mut states = [None, None];
        for row in rows {
            let column = |e: tokio_postgres::Error| Error::transient(format!("{WHAT}: {e}"));
            let name: String = row.try_get(0).map_err(column)?;
            let config: Vec<String> = row.try_get(1).map_err(column)?;
            let member_of: Vec<String> = row.try_get(2).map_err(column)?;
            let superuser: bool = row.try_get(3).map_err(column)?;
            let admin: bool = row.try_get(4).map_err(column)?;
            for (slot, role) in states.iter_mut().zip(roles) {
                if role == name {
                    *slot = Some(RoleState {
                        superuser,
                        admin,
                        ..RoleState::new(config.clone(), member_of.clone(), pair)
                    });
                }
            }
        }
        Ok(states)
    }

    /// The role the session acts as (`current_user`).
    async fn current_user(session: &PgSession, deadline: Deadline) -> Result<String, Error> {
        let rows = Self::query(
            session,
            "SELECT current_user::text",
            &[],
            "reading current_user",
            deadline,
        )
        .await?;
        rows.first()
            .ok_or_else(|| Error::transient("SELECT current_user returned no row"))?
            .try_get::<_, String>(0)
            .map_err(|e| Error::transient(e.to_string()))
    }

    /// PostgreSQL 16+: a non-superuser master needs ADMIN OPTION on a role to change its
    /// password or grant it (`admin`: whether it holds it, read with the role's state); say which
    /// GRANT fixes it instead of failing on "permission denied".
    async fn require_admin_option(
        session: &PgSession,
        role: &str,
        admin: bool,
        deadline: Deadline,
    ) -> Result<(), Error> {
        if admin {
            return Ok(());
        }
        let master = Self::current_user(session, deadline).await?;
        Err(Error::target(format!(
            "on PostgreSQL 16+ the master user {master} needs ADMIN OPTION on role {role} to change its password \
             and grant it; as a superuser (rds_superuser on RDS) run: GRANT {} TO {} WITH ADMIN OPTION",
            sql::quote_identifier(role)?,
            sql::quote_identifier(&master)?
        )))
    }
}

impl Database for Postgres {
    type Session = PgSession;

    fn name(&self) -> &str {
        "postgres"
    }

    fn engines(&self) -> &[&str] {
        &["postgres", "aurora-postgresql"]
    }

    fn default_port(&self) -> u16 {
        5432
    }

    fn default_excluded_characters(&self) -> &str {
        ":/@\"'\\"
    }

    fn validate(&self, secret: &DatabaseSecret) -> Result<(), Error> {
        TlsMode::from_secret(secret.doc())?;
        sql::quote_identifier(&secret.username)?;
        Ok(())
    }

    fn check_new_username(&self, _current: &DatabaseSecret, username: &str) -> Result<(), Error> {
        if username.len() > sql::MAX_IDENTIFIER_BYTES {
            return Err(Error::invalid_secret(format!(
                "user name {username} is {} bytes, PostgreSQL allows {}: shorten the username so that it \
                 fits with the `_clone` suffix",
                username.len(),
                sql::MAX_IDENTIFIER_BYTES
            )));
        }
        sql::quote_identifier(username).map(drop)
    }

    async fn login(&self, secret: &DatabaseSecret, deadline: Deadline) -> Result<PgSession, Error> {
        secret_rotor::failpoint!("postgres.login.before")?;
        let mode = TlsMode::from_secret(secret.doc())?;
        let config = connect_config(secret, mode, deadline);
        let who = format!("user {} on {}:{}", secret.username, secret.host, secret.port);
        let what = format!("logging in as {who}");
        if mode == TlsMode::Disable {
            tracing::warn!(host = %secret.host, port = secret.port, "sslmode=disable: logging in without encryption, as the secret asks");
            let (client, connection) = deadline
                .run(&what, async {
                    config
                        .connect(NoTls)
                        .await
                        .map_err(|e| login_error(&who, &e, None))
                })
                .await?;
            let server_version = connection.parameter("server_version").and_then(version_number);
            tokio::spawn(connection);
            return Ok(PgSession {
                client,
                tls: false,
                server_version,
            });
        }
        let connector = RustlsConnector::new(self.tls.config(mode)?);
        let (client, connection) = deadline
            .run(&what, async {
                config
                    .connect(connector.clone())
                    .await
                    .map_err(|e| login_error(&who, &e, Some((mode, connector.negotiated()))))
            })
            .await?;
        let server_version = connection.parameter("server_version").and_then(version_number);
        tokio::spawn(connection);
        if mode == TlsMode::Require {
            tracing::warn!(host = %secret.host, port = secret.port, "sslmode=require: the server certificate is not verified");
        }
        Ok(PgSession {
            client,
            tls: true,
            server_version,
        })
    }

    fn describe(&self, session: &PgSession) -> String {
        format!("TLS {}", if session.tls { "yes" } else { "no" })
    }

    async fn check(&self, session: &mut PgSession, deadline: Deadline) -> Result<(), Error> {
        Self::batch(session, "SELECT 1", "SELECT 1", deadline).await
    }

    async fn set_own_password(
        &self,
        session: &mut PgSession,
        pending: &DatabaseSecret,
        deadline: Deadline,
    ) -> Result<(), Error> {
        // In a transaction of its own, for the server-side bound: ALTER ROLE waits for the
        // role's row in pg_authid while another transaction holds it.
        let statement = sql::role_password_statement("ALTER", &pending.username, false, &pending.password)?;
        Self::transaction(session, &statement, "ALTER ROLE … PASSWORD", deadline).await
    }

    async fn set_user_password(
        &self,
        master: &mut PgSession,
        pair: &UserPair,
        pending: &DatabaseSecret,
        deadline: Deadline,
    ) -> Result<(), Error> {
        // One lookup of both roles: whether they exist, are superusers, their settings and
        // roles, and whether the master holds ADMIN OPTION on them.
        let current_role = pair.other(&pending.username);
        let [existing, current] =
            Self::role_states(master, [pending.username.as_str(), current_role], pair, deadline).await?;
        let exists = existing.is_some();
        // The function sets passwords with the master's privileges: never a superuser's, which
        // whoever can read the rotated secret would then hold.
        if existing.as_ref().is_some_and(|role| role.superuser) {
            return Err(Error::invalid_secret(format!(
                "role {} is a superuser: alternating users will not set a superuser's password through \
                 the master (rotate it with the single-user strategy, from its own secret)",
                pending.username
            )));
        }
        let current = current.ok_or_else(|| Error::target(format!("role {current_role} does not exist")))?;
        let actual = match existing {
            Some(state) => state,
            None if pair.is_clone(&pending.username) => RoleState::default(),
            None => return Err(Error::target(format!("role {} does not exist", pending.username))),
        };
        let version = Self::server_version(master, deadline).await?;
        if version >= 160000 {
            // The original is one of the two; the pending role needs it only if it exists.
            let original_admin = if pair.is_clone(&pending.username) {
                current.admin
            } else {
                actual.admin
            };
            Self::require_admin_option(master, &pair.original, original_admin, deadline).await?;
            if exists {
                Self::require_admin_option(master, &pending.username, actual.admin, deadline).await?;
            }
        }
        let mut changes = sync_statements(&pending.username, &current, &actual)?;
        // Both users act as the original role, which owns what either creates: the clone's
        // sessions start with SET ROLE original (a role setting), as its member. An older clone
        // (made by an earlier version, or by AWS's functions) is brought to this at the next
        // rotation, whichever of the two is pending.
        let clone = if pair.is_clone(&pending.username) {
            &actual
        } else {
            &current
        };
        let clone_changes_from = changes.len();
        if !clone.member_of_original {
            changes.push(Change {
                sql: format!(
                    "GRANT {} TO {}",
                    sql::quote_identifier(&pair.original)?,
                    sql::quote_identifier(&pair.clone_user)?
                ),
                what: format!("GRANT {} TO {}", pair.original, pair.clone_user),
            });
        }
        if clone.acts_as.as_deref() != Some(pair.original.as_str()) {
            changes.push(Change {
                sql: format!(
                    "ALTER ROLE {} SET role TO {}",
                    sql::quote_identifier(&pair.clone_user)?,
                    sql::quote_literal(&pair.original)?
                ),
                what: format!("ALTER ROLE {} SET role TO {}", pair.clone_user, pair.original),
            });
        }
        // The clone is current when the original is pending: changing it needs ADMIN OPTION too.
        if changes.len() > clone_changes_from && !pair.is_clone(&pending.username) && version >= 160000 {
            Self::require_admin_option(master, &pair.clone_user, current.admin, deadline).await?;
        }
        let verb = if exists { "ALTER" } else { "CREATE" };
        let password = sql::role_password_statement(verb, &pending.username, true, &pending.password)?;
        // One transaction, the password last but for the role's creation: the pending user
        // logs in only once it has the current user's settings and roles (a retry skips
        // setSecret as soon as it logs in), even if this invocation dies half-way.
        let mut parts: Vec<&str> = changes.iter().map(|change| change.sql.as_str()).collect();
        if exists {
            parts.push(password.as_str());
        } else {
            parts.insert(0, password.as_str());
        }
        let statement = secret_rotor::zeroize::Zeroizing::new(parts.join("; "));
        let result = Self::transaction(
            master,
            &statement,
            "setting the password, settings and roles of the pending user",
            deadline,
        )
        .await;
        if result.is_err() {
            // Named without values: a role setting may hold something sensitive.
            return result.map_err(|e| {
                if changes.is_empty() {
                    e
                } else {
                    let what: Vec<&str> = changes.iter().map(|change| change.what.as_str()).collect();
                    e.context(format!(
                        "the master runs, in one transaction with the password: {}",
                        what.join("; ")
                    ))
                }
            });
        }
        if !changes.is_empty() {
            tracing::info!(role = %pending.username, statements = changes.len(), "aligned the pending user's settings and roles with the current user's");
        }
        result
    }

    async fn prepare_current(
        &self,
        session: &mut PgSession,
        pair: &UserPair,
        current: &DatabaseSecret,
        deadline: Deadline,
    ) -> Result<(), Error> {
        if !pair.is_clone(&current.username) {
            return Ok(());
        }
        // Objects the clone owns (created before it acted as the original, by an earlier
        // version or by AWS's functions) go to the original, so that the original can use them
        // after the swap. The clone itself can do it, being a member of both; a master could not
        // without being a member of both roles.
        let rows = Self::query(
            session,
            "SELECT count(*) FILTER (WHERE d.dbid IN (0, (SELECT oid FROM pg_database WHERE datname = current_database()))), \
                    count(*) FILTER (WHERE d.dbid NOT IN (0, (SELECT oid FROM pg_database WHERE datname = current_database()))) \
             FROM pg_shdepend d WHERE d.deptype = 'o' AND d.refclassid = 'pg_authid'::regclass \
             AND d.refobjid = (SELECT oid FROM pg_roles WHERE rolname = $1)",
            &[(&pair.clone_user, Type::NAME)],
            "counting the clone's objects",
            deadline,
        )
        .await?;
        let owned = rows
            .first()
            .ok_or_else(|| Error::transient("counting the clone's objects returned no row"))?;
        let here: i64 = owned.try_get(0).map_err(|e| Error::transient(e.to_string()))?;
        let elsewhere: i64 = owned.try_get(1).map_err(|e| Error::transient(e.to_string()))?;
        let reassign = format!(
            "REASSIGN OWNED BY {} TO {}",
            sql::quote_identifier(&pair.clone_user)?,
            sql::quote_identifier(&pair.original)?
        );
        if elsewhere > 0 {
            tracing::warn!(role = %pair.clone_user, objects = elsewhere, statement = %reassign,
                "the clone owns objects in other databases: run the statement there, as the clone");
        }
        if here == 0 {
            return Ok(());
        }
        // REASSIGN locks every object it moves, waiting behind the application's own locks and
        // making the application's next queries wait behind it: bounded on the server. The role
        // is reset with the transaction, so a pooled server connection keeps its default.
        Self::transaction(
            session,
            &format!("SET LOCAL ROLE NONE; {reassign}"),
            "handing the clone's objects to the original role",
            deadline,
        )
        .await
        .map_err(|e| e.context(format!("as {}, run: {reassign}", pair.clone_user)))?;
        tracing::info!(role = %pair.clone_user, objects = here, owner = %pair.original, "handed the clone's objects to the original role");
        Ok(())
    }

    async fn compare_privileges(
        &self,
        pending_session: &mut PgSession,
        pair: &UserPair,
        pending: &DatabaseSecret,
        current: &DatabaseSecret,
        deadline: Deadline,
    ) -> Result<(), Error> {
        let acting = Self::current_user(pending_session, deadline).await?;
        if acting != pair.original {
            return Err(Error::target(format!(
                "user {}'s sessions act as role {acting}, not as {}, the role that owns what either user creates",
                pending.username, pair.original
            )));
        }
        let missing = |role: &str| Error::target(format!("role {role} does not exist"));
        let [pending_state, current_state] = Self::role_states(
            pending_session,
            [pending.username.as_str(), current.username.as_str()],
            pair,
            deadline,
        )
        .await?;
        let pending_state = pending_state.ok_or_else(|| missing(&pending.username))?;
        let current_state = current_state.ok_or_else(|| missing(&current.username))?;
        let differences = current_state.differences(&pending_state);
        if differences.is_empty() {
            return Ok(());
        }
        Err(Error::target(format!(
            "user {} does not have user {}'s settings and roles: {}",
            pending.username,
            current.username,
            differences.join("; ")
        )))
    }
}

/// What a user of the pair holds beside the objects they share: its settings
/// (`pg_roles.rolconfig`, `name=value`; `role` apart) and the roles it is a member of (the
/// pair's own apart).
#[derive(Debug, Default, PartialEq)]
struct RoleState {
    settings: BTreeMap<String, String>,
    member_of: BTreeSet<String>,
    /// The `role` setting: the role its sessions act as.
    acts_as: Option<String>,
    /// Whether it is a member of the pair's original role.
    member_of_original: bool,
    /// `rolsuper`.
    superuser: bool,
    /// Whether the session's user holds ADMIN OPTION on it.
    admin: bool,
}

impl RoleState {
    fn new(config: Vec<String>, roles: Vec<String>, pair: &UserPair) -> Self {
        let mut state = RoleState::default();
        for entry in config {
            let name = entry
                .split_once('=')
                .map_or(entry.as_str(), |(name, _)| name)
                .to_ascii_lowercase();
            if name == "role" {
                state.acts_as = entry.split_once('=').map(|(_, value)| value.to_owned());
            } else {
                state.settings.insert(name, entry);
            }
        }
        for role in roles {
            if role == pair.original {
                state.member_of_original = true;
            } else if role != pair.clone_user {
                state.member_of.insert(role);
            }
        }
        state
    }

    /// What `other` lacks or has beyond `self`, by setting and role name (values are not
    /// printed: a setting may be sensitive).
    fn differences(&self, other: &RoleState) -> Vec<String> {
        let mut differences = Vec::new();
        for (name, entry) in &self.settings {
            match other.settings.get(name) {
                None => differences.push(format!("setting {name} missing")),
                Some(theirs) if theirs != entry => differences.push(format!("setting {name} differs")),
                Some(_) => {}
            }
        }
        for name in other
            .settings
            .keys()
            .filter(|name| !self.settings.contains_key(*name))
        {
            differences.push(format!("setting {name} extra"));
        }
        for role in self.member_of.difference(&other.member_of) {
            differences.push(format!("not a member of {role}"));
        }
        for role in other.member_of.difference(&self.member_of) {
            differences.push(format!("also a member of {role}"));
        }
        differences
    }
}

/// One statement of the pending user's transaction, and how an error names it (setting values
/// left out: a role setting may hold something sensitive).
struct Change {
    sql: String,
    what: String,
}

/// The statements giving `role` (in state `actual`) the settings and roles of `desired`.
fn sync_statements(role: &str, desired: &RoleState, actual: &RoleState) -> Result<Vec<Change>, Error> {
    let quoted = sql::quote_identifier(role)?;
    let mut changes = Vec::new();
    for (name, entry) in &desired.settings {
        if actual.settings.get(name) != Some(entry) {
            changes.push(Change {
                sql: sql::set_role_setting(role, entry)?,
                what: format!("ALTER ROLE {role} SET {name}"),
            });
        }
    }
    for name in actual
        .settings
        .keys()
        .filter(|name| !desired.settings.contains_key(*name))
    {
        changes.push(Change {
            sql: format!("ALTER ROLE {quoted} RESET {}", sql::quote_identifier(name)?),
            what: format!("ALTER ROLE {role} RESET {name}"),
        });
    }
    for missing in desired.member_of.difference(&actual.member_of) {
        changes.push(Change {
            sql: format!("GRANT {} TO {quoted}", sql::quote_identifier(missing)?),
            what: format!("GRANT {missing} TO {role}"),
        });
    }
    for extra in actual.member_of.difference(&desired.member_of) {
        changes.push(Change {
            sql: format!("REVOKE {} FROM {quoted}", sql::quote_identifier(extra)?),
            what: format!("REVOKE {extra} FROM {role}"),
        });
    }
    Ok(changes)
}

/// How to connect: no `options` startup parameter, which PgBouncer refuses ("unsupported
/// startup parameter") and which, once accepted by a pooler, would set the server connection
/// for whoever gets it next; the statement timeout is set per transaction instead
/// ([`Postgres::transaction`]).
fn connect_config(secret: &DatabaseSecret, mode: TlsMode, deadline: Deadline) -> tokio_postgres::Config {
    let mut config = tokio_postgres::Config::new();
    config
        .host(&secret.host)
        .port(secret.port)
        .user(&secret.username)
        .password(secret.password.expose())
        .dbname(secret.dbname.as_deref().unwrap_or("postgres"))
        .application_name("secret-rotor")
        .connect_timeout(deadline.remaining().max(Duration::from_millis(1)))
        // Never Prefer: the server's "no TLS" answer is unauthenticated, and after it the
        // startup message and the password exchange would cross the wire in clear.
        .ssl_mode(match mode {
            TlsMode::Disable => SslMode::Disable,
            TlsMode::Require | TlsMode::VerifyCa | TlsMode::VerifyFull => SslMode::Require,
        });
    config
}

/// The server-side bound of each statement of a transaction, in milliseconds: what is left of
/// the invocation, at least a second (0 would mean no bound at all); the client-side deadline
/// ends the step at the same moment.
fn statement_timeout_ms(deadline: Deadline) -> u128 {
    deadline.remaining().max(Duration::from_secs(1)).as_millis()
}

/// `server_version_num` from the `server_version` a server announces at login (`15.10 (Debian
/// 15.10-1)`, `16beta1`, `9.6.24`), as libpq computes it; `None` when it does not start with a
/// version number.
fn version_number(announced: &str) -> Option<u32> {
    let mut parts = announced
        .split(|c: char| !c.is_ascii_digit())
        .take_while(|part| !part.is_empty())
        .map(|part| part.parse::<u32>().ok());
    let major = parts.next()??;
    let minor = parts.next().flatten().unwrap_or(0);
    if major >= 10 {
        Some(major * 10000 + minor)
    } else {
        let patch = parts.next().flatten().unwrap_or(0);
        Some(major * 10000 + minor * 100 + patch)
    }
}

/// The first error of `e`'s source chain that is a `T`.
fn source_of<'a, T: std::error::Error + 'static>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a T> {
    let mut next = e.source();
    while let Some(cause) = next {
        if let Some(found) = cause.downcast_ref::<T>() {
            return Some(found);
        }
        next = cause.source();
    }
    None
}

/// Maps a login failure, by the types of its causes: the server's refusal and certificate
/// problems are the target's answer, network faults are transient, and a server that declined
/// TLS (`tls` = the required mode and whether a handshake started) is told which setting allows
/// plaintext. Messages name the user and server, never the password.
fn login_error(who: &str, e: &tokio_postgres::Error, tls: Option<(TlsMode, bool)>) -> Error {
    if let Some(db) = e.as_db_error() {
        let kind = match db.code() {
            c if *c == SqlState::INVALID_PASSWORD || *c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION => {
                ErrorKind::Target
            }
            c if *c == SqlState::INVALID_CATALOG_NAME || *c == SqlState::INSUFFICIENT_PRIVILEGE => {
                ErrorKind::Target
            }
            _ => ErrorKind::Transient,
        };
        let error = Error::new(
            kind,
            format!("{who}: login refused: {} ({})", db.message(), db.code().code()),
        );
        // 28P01 is also the answer for a user that does not exist (PostgreSQL does not say).
        return if *db.code() == SqlState::INVALID_PASSWORD {
            error.with_code(Code::CredentialsRefused)
        } else {
            error
        };
    }
    let chain = error_chain(e);
    if source_of::<tls::TlsHandshakeError>(e).is_some() {
        return Error::target(format!("{who}: TLS failed: {chain}"));
    }
    if source_of::<std::io::Error>(e).is_some() {
        return Error::transient(format!("{who}: {chain}"));
    }
    match tls {
        // tokio-postgres answers a declined SSLRequest with a TLS error of its own, before any
        // handshake: ours never started.
        Some((mode, false)) => mode.server_without_tls(who),
        _ => Error::transient(format!("{who}: {chain}")),
    }
}

/// Maps a statement failure; the statement text is never included (it may carry a verifier).
fn statement_error(what: &str, e: &tokio_postgres::Error) -> Error {
    match e.as_db_error() {
        Some(db) => {
            // A read-only server refuses every change: a hot standby or an RDS reader, where
            // only pointing the secret at the writer helps, or a writer failing over, which a
            // retry outlives. The error cannot tell them apart: it stays retryable and says both.
            let read_only = db.code() == &SqlState::READ_ONLY_SQL_TRANSACTION;
            let kind = if db.code() == &SqlState::INSUFFICIENT_PRIVILEGE
                || db.code().code().starts_with("42")
                || db.code().code().starts_with("28")
            {
                ErrorKind::Target
            } else {
                ErrorKind::Transient
            };
            let message = if db.code() == &SqlState::SYNTAX_ERROR {
                "syntax error"
            } else {
                db.message()
            };
            let detail = db.detail().map(|d| format!(" ({d})")).unwrap_or_default();
            let hint = if read_only {
                "; the server accepts no writes: a replica or a reader endpoint (passwords are set \
                 on the writer: point the secret's host, or the master's, at it) or a writer \
                 failing over (a retry will pass)"
            } else {
                ""
            };
            Error::new(
                kind,
                format!(
                    "{what} failed: {message}{detail} [SQLSTATE {}]{hint}",
                    db.code().code()
                ),
            )
        }
        None => Error::transient(format!("{what} failed: {}", error_chain(e))),
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use secret_rotor::SecretString;

    use super::*;

    #[test]
    fn logins_send_no_options_startup_parameter() {
        // PgBouncer refuses a startup packet carrying `options`: every login through it would fail.
        let secret = DatabaseSecret::parse(
            &SecretString::from(
                r#"{"engine": "postgres", "host": "db", "username": "app", "password": "p"}"#,
            ),
            &["postgres"],
            5432,
        )
        .expect("a secret");
        let config = connect_config(
            &secret,
            TlsMode::VerifyFull,
            Deadline::after(Duration::from_secs(30)),
        );
        assert_eq!(config.get_options(), None);
        assert_eq!(config.get_application_name(), Some("secret-rotor"));
    }

    #[test]
    fn the_statement_timeout_is_what_is_left_and_never_zero() {
        let ms = statement_timeout_ms(Deadline::after(Duration::from_secs(30)));
        assert!((28_000..=30_000).contains(&ms), "{ms}");
        // 0 would switch the bound off.
        assert_eq!(statement_timeout_ms(Deadline::after(Duration::ZERO)), 1000);
    }

    #[test]
    fn announced_server_versions_read_as_server_version_num() {
        assert_eq!(version_number("15.10 (Debian 15.10-1.pgdg120+1)"), Some(150010));
        assert_eq!(version_number("17.2"), Some(170002));
        assert_eq!(version_number("16beta1"), Some(160000));
        assert_eq!(version_number("18devel"), Some(180000));
        assert_eq!(version_number("9.6.24"), Some(90624));
        assert_eq!(version_number("unknown"), None);
        assert_eq!(version_number(""), None);
    }
}
