//! The PostgreSQL rotation engine (RDS, Aurora, self-managed).
//!
//! [`Postgres`] is the database driver the strategies of `rotor-database` run on: it logs in
//! over verified TLS ([`tls`]), and sets passwords with `ALTER ROLE … PASSWORD` carrying a
//! SCRAM-SHA-256 verifier computed here ([`sql`]), so the plaintext never reaches the server or
//! its statement log. Identifiers are always quoted as identifiers. For the alternating-users
//! strategy the clone role is created with `LOGIN` and membership of the original role (in one
//! transaction), and the membership is checked again at every rotation; on PostgreSQL 16+ a
//! master without ADMIN OPTION on the roles gets an error naming the `GRANT` that fixes it.

pub mod sql;
pub mod tls;

use std::time::Duration;

use rotor_database::{Database, DatabaseEngine, DatabaseSecret, UserPair};
use secret_rotor::{Deadline, Error, ErrorKind};
use tokio_postgres::config::SslMode;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

use crate::tls::{RustlsConnector, TlsConfigs, TlsMode};

/// The engine of the deployed function: PostgreSQL with the strategy of `ROTATION_STRATEGY`.
pub fn engine_from_env() -> Result<DatabaseEngine<Postgres>, Error> {
    DatabaseEngine::from_env(Postgres::from_env())
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
        secret_rotor::failpoint!("postgres.statement.before");
        deadline
            .run(what, async {
                session
                    .client
                    .batch_execute(sql)
                    .await
                    .map_err(|e| statement_error(what, &e))
            })
            .await?;
        secret_rotor::failpoint!("postgres.statement.after");
        Ok(())
    }

    async fn query_bool(
        session: &PgSession,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
        what: &str,
        deadline: Deadline,
    ) -> Result<bool, Error> {
        Ok(Self::query_row_bool(session, sql, params, what, deadline)
            .await?
            .unwrap_or(false))
    }

    /// The first column of the one row `sql` returns, as a bool; `None` when there is no row.
    async fn query_row_bool(
        session: &PgSession,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
        what: &str,
        deadline: Deadline,
    ) -> Result<Option<bool>, Error> {
        secret_rotor::failpoint!("postgres.query.before");
        let value = deadline
            .run(what, async {
                let row = session
                    .client
                    .query_opt(sql, params)
                    .await
                    .map_err(|e| statement_error(what, &e))?;
                Ok(row.map(|row| row.try_get::<_, bool>(0).unwrap_or(true)))
            })
            .await?;
        secret_rotor::failpoint!("postgres.query.after");
        Ok(value)
    }

    async fn server_version(session: &PgSession, deadline: Deadline) -> Result<u32, Error> {
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

    /// PostgreSQL 16+: a non-superuser master needs ADMIN OPTION on a role to change its
    /// password or grant it; say which GRANT fixes it instead of failing on "permission denied".
    async fn check_admin_option(session: &PgSession, role: &str, deadline: Deadline) -> Result<(), Error> {
        let admin = Self::query_bool(
            session,
            "SELECT pg_has_role(current_user, $1, 'MEMBER WITH ADMIN OPTION')",
            &[&role],
            "checking ADMIN OPTION",
            deadline,
        )
        .await?;
        if admin {
            return Ok(());
        }
        let master = deadline
            .run("reading current_user", async {
                let row = session
                    .client
                    .query_one("SELECT current_user::text", &[])
                    .await
                    .map_err(|e| statement_error("SELECT current_user", &e))?;
                row.try_get::<_, String>(0)
                    .map_err(|e| Error::transient(e.to_string()))
            })
            .await?;
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
        secret_rotor::failpoint!("postgres.login.before");
        let mode = TlsMode::from_secret(secret.doc())?;
        let mut config = tokio_postgres::Config::new();
        let statement_timeout = deadline.remaining().max(Duration::from_secs(1)).as_millis();
        config
            .host(&secret.host)
            .port(secret.port)
            .user(&secret.username)
            .password(secret.password.expose())
            .dbname(secret.dbname.as_deref().unwrap_or("postgres"))
            .application_name("secret-rotor")
            .connect_timeout(deadline.remaining().max(Duration::from_millis(1)))
            .options(format!("-c statement_timeout={statement_timeout}"))
            // Never Prefer: the server's "no TLS" answer is unauthenticated, and after it the
            // startup message and the password exchange would cross the wire in clear.
            .ssl_mode(match mode {
                TlsMode::Disable => SslMode::Disable,
                TlsMode::Require | TlsMode::VerifyCa | TlsMode::VerifyFull => SslMode::Require,
            });
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
            tokio::spawn(connection);
            return Ok(PgSession { client, tls: false });
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
        tokio::spawn(connection);
        if mode == TlsMode::Require {
            tracing::warn!(host = %secret.host, port = secret.port, "sslmode=require: the server certificate is not verified");
        }
        Ok(PgSession { client, tls: true })
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
        let statement = sql::role_password_statement("ALTER", &pending.username, false, &pending.password)?;
        Self::batch(session, &statement, "ALTER ROLE … PASSWORD", deadline).await
    }

    async fn set_user_password(
        &self,
        master: &mut PgSession,
        pair: &UserPair,
        pending: &DatabaseSecret,
        deadline: Deadline,
    ) -> Result<(), Error> {
        // One lookup: whether the role exists, and whether it is a superuser.
        let superuser = Self::query_row_bool(
            master,
            "SELECT rolsuper FROM pg_roles WHERE rolname = $1",
            &[&pending.username],
            "looking up the role",
            deadline,
        )
        .await?;
        let exists = superuser.is_some();
        // The function sets passwords with the master's privileges: never a superuser's, which
        // whoever can read the rotated secret would then hold.
        if superuser == Some(true) {
            return Err(Error::invalid_secret(format!(
                "role {} is a superuser: alternating users will not set a superuser's password through \
                 the master (rotate it with the single-user strategy, from its own secret)",
                pending.username
            )));
        }
        if Self::server_version(master, deadline).await? >= 160000 {
            Self::check_admin_option(master, &pair.original, deadline).await?;
            if exists {
                Self::check_admin_option(master, &pending.username, deadline).await?;
            }
        }
        if !pair.is_clone(&pending.username) {
            if !exists {
                return Err(Error::target(format!("role {} does not exist", pending.username)));
            }
            let statement =
                sql::role_password_statement("ALTER", &pending.username, true, &pending.password)?;
            return Self::batch(master, &statement, "ALTER ROLE … PASSWORD", deadline).await;
        }
        let verb = if exists { "ALTER" } else { "CREATE" };
        let password = sql::role_password_statement(verb, &pair.clone, true, &pending.password)?;
        let member = Self::query_bool(
            master,
            "SELECT true FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid \
             JOIN pg_roles u ON u.oid = m.member WHERE r.rolname = $1 AND u.rolname = $2",
            &[&pair.original, &pair.clone],
            "checking the clone's membership",
            deadline,
        )
        .await?;
        // One transaction: a clone that logs in always has the original's privileges, even if
        // this invocation dies half-way (a retry skips setSecret once the clone logs in).
        let mut statement = format!("BEGIN; {};", password.as_str());
        if !member {
            statement.push_str(&format!(
                " GRANT {} TO {};",
                sql::quote_identifier(&pair.original)?,
                sql::quote_identifier(&pair.clone)?
            ));
        }
        statement.push_str(" COMMIT;");
        let statement = secret_rotor::zeroize::Zeroizing::new(statement);
        let result = Self::batch(
            master,
            &statement,
            "setting the clone's password and membership",
            deadline,
        )
        .await;
        if result.is_err() {
            // Bounded like every call: a server that hangs must not hold the step past its deadline.
            let _ = deadline
                .run("rolling back the clone's transaction", async {
                    master
                        .client
                        .batch_execute("ROLLBACK")
                        .await
                        .map_err(|e| statement_error("ROLLBACK", &e))
                })
                .await;
        } else if !member {
            tracing::info!(role = %pair.clone, member_of = %pair.original, "granted membership of the original role");
        }
        result
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
        return Error::new(
            kind,
            format!("{who}: login refused: {} ({})", db.message(), db.code().code()),
        );
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
            Error::new(
                kind,
                format!("{what} failed: {message}{detail} [SQLSTATE {}]", db.code().code()),
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
