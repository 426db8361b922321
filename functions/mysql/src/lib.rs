//! The MySQL and MariaDB rotation engine (RDS MySQL 8.0/8.4, RDS MariaDB 10.x/11.x, Aurora
//! MySQL, self-managed).
//!
//! [`Mysql`] is the database driver the strategies of `rotor-database` run on. It reads the
//! server's flavour and version from `SELECT VERSION()` ([`version`]) and picks each statement
//! for MariaDB, MySQL 5.7 or MySQL 8+/9 ([`sql`]), keeping the account's authentication plugin
//! and, for `mysql_native_password` accounts, sending the hash computed here instead of the
//! password. Accounts are `'name'@'host'`: the real host is looked up, never assumed. The clone
//! of the alternating-users strategy gets the original's host, plugin, TLS requirements and
//! exactly its privileges, copied from the server's own `SHOW GRANTS` ([`grants`]) and re-synced
//! at every rotation; it is created locked and unlocked only once all of that is in place.

pub mod grants;
pub mod sql;
pub mod version;

use std::path::PathBuf;
use std::sync::OnceLock;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder, SslOpts};
use rotor_database::tls::{ca_bundle_from_env, TlsMode, RDS_CA_BUNDLE};
use rotor_database::{Database, DatabaseEngine, DatabaseSecret, UserPair};
use rustls::pki_types::pem::PemObject;
use secret_rotor::{Code, Deadline, Error, ErrorKind};

use std::collections::BTreeSet;

use crate::grants::{
    default_roles_in_create_user, differences, grants_of, plugin_in_grants, sync_statements, Grant,
};
use crate::sql::{Account, Plugin, ResourceLimits, Statements, TlsRequirement};
use crate::version::{Flavour, ServerVersion};

/// The environment variable overriding the clone-name limit.
pub const USERNAME_LIMIT_VARIABLE: &str = "USERNAME_CHARACTER_LIMIT";

/// The engine of the deployed function: MySQL/MariaDB with the strategy of `ROTATION_STRATEGY`,
/// asking RDS (at first need) about RDS-managed master secrets and endpoints.
pub fn engine_from_env() -> Result<DatabaseEngine<Mysql>, Error> {
    Ok(DatabaseEngine::from_env(Mysql::from_env()?)?
        .with_rds(std::sync::Arc::new(rotor_rds::Rds::from_env())))
}

/// The MySQL / MariaDB driver.
#[derive(Debug, Default, Clone)]
pub struct Mysql {
    ca_bundle: Option<PathBuf>,
    username_limit: Option<usize>,
}

/// An authenticated connection and what the server said about itself.
pub struct MySession {
    conn: Conn,
    /// Flavour and version.
    pub version: ServerVersion,
    /// The account the server authenticated (`CURRENT_USER()`).
    pub account: Account,
    /// Whether the connection is encrypted.
    pub tls: bool,
    backslash_escapes: bool,
}

/// A row of `mysql.user`: host, plugin, ssl_type, ssl_cipher, x509_issuer, x509_subject,
/// Super_priv, and the four resource limits.
type UserRow = (
    String,
    String,
    String,
    Vec<u8>,
    Vec<u8>,
    Vec<u8>,
    String,
    i64,
    i64,
    i64,
    i64,
);

/// What the driver needs of an account in `mysql.user`.
struct AccountInfo {
    host: String,
    plugin: Plugin,
    tls: TlsRequirement,
    /// `Super_priv`: an administrator's account.
    superuser: bool,
    limits: ResourceLimits,
}

impl MySession {
    fn statements(&self) -> Statements {
        Statements {
            version: self.version,
            backslash_escapes: self.backslash_escapes,
        }
    }

    /// Runs a statement; the error never contains the statement (it may carry a password).
    async fn run(&mut self, sql: &str, what: &str, deadline: Deadline) -> Result<(), Error> {
        secret_rotor::failpoint!("mysql.statement.before")?;
        let conn = &mut self.conn;
        deadline
            .run(what, async {
                conn.query_drop(sql).await.map_err(|e| statement_error(what, &e))
            })
            .await?;
        secret_rotor::failpoint!("mysql.statement.after")?;
        Ok(())
    }

    /// `SHOW GRANTS FOR account` (or for the session's own account).
    async fn show_grants(
        &mut self,
        account: Option<&Account>,
        deadline: Deadline,
    ) -> Result<Vec<String>, Error> {
        secret_rotor::failpoint!("mysql.query.before")?;
        let sql = match account {
            Some(account) => format!("SHOW GRANTS FOR {}", account.sql()?),
            None => "SHOW GRANTS".to_owned(),
        };
        let conn = &mut self.conn;
        deadline
            .run("SHOW GRANTS", async {
                conn.query::<String, _>(sql)
                    .await
                    .map_err(|e| statement_error("SHOW GRANTS", &e))
            })
            .await
    }

    /// `account`'s grants: `SHOW GRANTS`, and on MySQL 8+ the default roles of
    /// `SHOW CREATE USER` (which `SHOW GRANTS` does not print). `account` `None`: the session's
    /// own, which needs no privilege (and then no `SHOW CREATE USER`).
    async fn grants(
        &mut self,
        account: Option<&Account>,
        deadline: Deadline,
    ) -> Result<BTreeSet<Grant>, Error> {
        let own = self.account.clone();
        let lines = self.show_grants(account, deadline).await?;
        let whose = account.unwrap_or(&own);
        let mut grants = grants_of(lines.iter().map(String::as_str), whose);
        if let (Some(account), Flavour::MySql) = (account, self.version.flavour) {
            if self.version.is_mysql_8_or_later() {
                secret_rotor::failpoint!("mysql.query.before")?;
                let sql = format!("SHOW CREATE USER {}", account.sql()?);
                let conn = &mut self.conn;
                let create: Option<String> = deadline
                    .run("SHOW CREATE USER", async {
                        conn.query_first(sql)
                            .await
                            .map_err(|e| statement_error("SHOW CREATE USER", &e))
                    })
                    .await?;
                grants.extend(create.as_deref().and_then(default_roles_in_create_user));
            }
        }
        Ok(grants)
    }

    /// The accounts of `user` in `mysql.user`.
    async fn accounts(&mut self, user: &str, deadline: Deadline) -> Result<Vec<AccountInfo>, Error> {
        secret_rotor::failpoint!("mysql.query.before")?;
        let conn = &mut self.conn;
        let rows: Vec<UserRow> = deadline
            .run("reading mysql.user", async {
                conn.exec(
                    "SELECT Host, plugin, CAST(ssl_type AS CHAR), ssl_cipher, x509_issuer, x509_subject, \
                     CAST(Super_priv AS CHAR), CAST(max_questions AS SIGNED), CAST(max_updates AS SIGNED), \
                     CAST(max_connections AS SIGNED), CAST(max_user_connections AS SIGNED) \
                     FROM mysql.user WHERE User = ?",
                    (user,),
                )
                .await
                .map_err(|e| statement_error("reading mysql.user", &e))
            })
            .await?;
        Ok(rows
            .into_iter()
            .map(
                |(
                    host,
                    plugin,
                    ssl_type,
                    cipher,
                    issuer,
                    subject,
                    super_priv,
                    questions,
                    updates,
                    connections,
                    user_connections,
                )| {
                    let text = |bytes: Vec<u8>| String::from_utf8_lossy(&bytes).into_owned();
                    let tls = TlsRequirement {
                        ssl_type,
                        cipher: text(cipher),
                        issuer: text(issuer),
                        subject: text(subject),
                    };
                    AccountInfo {
                        host,
                        plugin: Plugin::from_name(&plugin),
                        tls,
                        superuser: super_priv.eq_ignore_ascii_case("Y"),
                        limits: ResourceLimits {
                            queries_per_hour: questions,
                            updates_per_hour: updates,
                            connections_per_hour: connections,
                            user_connections,
                        },
                    }
                },
            )
            .collect())
    }
}

impl Mysql {
    /// A driver trusting the built-in roots and `ca_bundle`, with an optional clone-name limit.
    pub fn new(ca_bundle: Option<PathBuf>, username_limit: Option<usize>) -> Self {
        Self {
            ca_bundle,
            username_limit,
        }
    }

    /// Reads `DATABASE_CA_BUNDLE` and `USERNAME_CHARACTER_LIMIT`.
    pub fn from_env() -> Result<Self, Error> {
        let limit =
            match std::env::var(USERNAME_LIMIT_VARIABLE) {
                Err(_) => None,
                Ok(value) => Some(value.trim().parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(
                    || {
                        Error::configuration(format!(
                            "{USERNAME_LIMIT_VARIABLE}={value:?} is not a positive whole number"
                        ))
                    },
                )?),
            };
        Ok(Self::new(ca_bundle_from_env(), limit))
    }

    fn ssl_opts(&self, mode: TlsMode) -> Option<SslOpts> {
        // The RDS CAs, which Lambda's base images lack, beside the driver's built-in roots;
        // decoded once (the driver reads its roots at every connection).
        static RDS_ROOTS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
        let rds = RDS_ROOTS.get_or_init(|| {
            rustls::pki_types::CertificateDer::pem_slice_iter(RDS_CA_BUNDLE.as_bytes())
                .filter_map(Result::ok)
                .map(|der| der.to_vec())
                .collect()
        });
        let mut roots: Vec<_> = rds.iter().map(|der| der.as_slice().into()).collect();
        if let Some(path) = &self.ca_bundle {
            roots.push(path.clone().into());
        }
        let opts = SslOpts::default().with_root_certs(roots);
        match mode {
            TlsMode::Disable => None,
            TlsMode::VerifyFull => Some(opts),
            TlsMode::VerifyCa => Some(opts.with_danger_skip_domain_validation(true)),
            TlsMode::Require => Some(opts.with_danger_accept_invalid_certs(true)),
        }
    }

    async fn connect(
        &self,
        secret: &DatabaseSecret,
        ssl: Option<SslOpts>,
        deadline: Deadline,
    ) -> Result<Conn, mysql_async::Error> {
        let opts = OptsBuilder::default()
            .ip_or_hostname(secret.host.clone())
            .tcp_port(secret.port)
            .user(Some(secret.username.clone()))
            .pass(Some(secret.password.expose().to_owned()))
            .db_name(secret.dbname.clone())
            .prefer_socket(false)
            .ssl_opts(ssl);
        match tokio::time::timeout_at(deadline.instant().into(), Conn::new(opts)).await {
            Ok(result) => result,
            Err(_) => Err(mysql_async::Error::Io(mysql_async::IoError::Io(
                std::io::ErrorKind::TimedOut.into(),
            ))),
        }
    }
}

impl Database for Mysql {
    type Session = MySession;

    fn name(&self) -> &str {
        "mysql"
    }

    fn engines(&self) -> &[&str] {
        &["mysql", "aurora-mysql", "mariadb"]
    }

    fn default_port(&self) -> u16 {
        3306
    }

    fn default_excluded_characters(&self) -> &str {
        "/@\"'\\"
    }

    fn validate(&self, secret: &DatabaseSecret) -> Result<(), Error> {
        TlsMode::from_secret(secret.doc())?;
        secret.doc().optional_str("userhost")?;
        sql::quote_identifier(&secret.username).map(drop)
    }

    fn check_new_username(&self, current: &DatabaseSecret, username: &str) -> Result<(), Error> {
        let (limit, why) = match (self.username_limit, current.engine.as_deref()) {
            (Some(limit), _) => (limit, USERNAME_LIMIT_VARIABLE),
            (None, Some("mariadb")) => (80, "MariaDB's limit"),
            (None, _) => (32, "MySQL's limit"),
        };
        let length = username.chars().count();
        if length > limit {
            return Err(Error::invalid_secret(format!(
                "user name {username} is {length} characters, over {limit} ({why}): shorten the username so \
                 that it fits with the `_clone` suffix, or set {USERNAME_LIMIT_VARIABLE}"
            )));
        }
        sql::quote_identifier(username).map(drop)
    }

    async fn login(&self, secret: &DatabaseSecret, deadline: Deadline) -> Result<MySession, Error> {
        secret_rotor::failpoint!("mysql.login.before")?;
        let mode = TlsMode::from_secret(secret.doc())?;
        let who = format!("user {} on {}:{}", secret.username, secret.host, secret.port);
        if mode == TlsMode::Disable {
            tracing::warn!(host = %secret.host, port = secret.port, "sslmode=disable: logging in without encryption, as the secret asks");
        }
        // With TLS options set, the driver refuses a server whose handshake lacks the TLS
        // capability (an answer anyone on the path can forge) before it sends any credential.
        let (conn, tls) = match self.connect(secret, self.ssl_opts(mode), deadline).await {
            Ok(conn) => (conn, mode != TlsMode::Disable),
            Err(mysql_async::Error::Driver(mysql_async::DriverError::NoClientSslFlagFromServer)) => {
                return Err(mode.server_without_tls(&who))
            }
            // mysql_async 0.37 ignores "skip domain validation" with current rustls (its issue
            // #404, fixed upstream after 0.37.1): say so rather than report a bare name error.
            Err(e) if mode == TlsMode::VerifyCa && is_name_mismatch(&e) => {
                return Err(Error::target(format!(
                    "{who}: sslmode verify-ca cannot skip the host-name check with this driver version \
                     (the certificate does not name {}): connect with a host name the certificate \
                     names and sslmode verify-full, or use sslmode require",
                    secret.host
                )))
            }
            Err(e) => return Err(login_error(&who, &e)),
        };
        if mode == TlsMode::Require {
            tracing::warn!(host = %secret.host, port = secret.port, "sslmode=require: the server certificate is not verified");
        }
        let mut conn = conn;
        let row: Option<(String, String, String)> = deadline
            .run("reading the server version", async {
                conn.query_first("SELECT VERSION(), CURRENT_USER(), @@SESSION.sql_mode")
                    .await
                    .map_err(|e| statement_error("SELECT VERSION()", &e))
            })
            .await?;
        let (version, current_user, sql_mode) =
            row.ok_or_else(|| Error::transient("the server answered SELECT VERSION() with no row"))?;
        let account = Account::from_current_user(&current_user)
            .ok_or_else(|| Error::transient("cannot read CURRENT_USER() as user@host"))?;
        Ok(MySession {
            conn,
            version: ServerVersion::parse(&version)?,
            account,
            tls,
            backslash_escapes: !sql_mode.to_ascii_uppercase().contains("NO_BACKSLASH_ESCAPES"),
        })
    }

    fn describe(&self, session: &MySession) -> String {
        format!(
            "{}, account {}@{}, TLS {}",
            session.version,
            session.account.user,
            session.account.host,
            if session.tls { "yes" } else { "no" }
        )
    }

    async fn check(&self, session: &mut MySession, deadline: Deadline) -> Result<(), Error> {
        session.run("SELECT 1", "SELECT 1", deadline).await
    }

    async fn set_own_password(
        &self,
        session: &mut MySession,
        pending: &DatabaseSecret,
        deadline: Deadline,
    ) -> Result<(), Error> {
        let plugin = match session.version.flavour {
            // MariaDB's SET PASSWORD takes a hash only for native accounts: read the plugin from
            // the account's own grants (no privilege needed, unlike mysql.user).
            Flavour::MariaDb => {
                let lines = session.show_grants(None, deadline).await?;
                Plugin::from_name(&plugin_in_grants(lines.iter().map(String::as_str)).unwrap_or_default())
            }
            Flavour::MySql => Plugin::Native,
        };
        let statement = session.statements().own_password(&plugin, &pending.password)?;
        session.run(&statement, "setting the password", deadline).await
    }

    async fn set_user_password(
        &self,
        master: &mut MySession,
        pair: &UserPair,
        pending: &DatabaseSecret,
        deadline: Deadline,
    ) -> Result<(), Error> {
        let statements = master.statements();
        let originals = master.accounts(&pair.original, deadline).await?;
        let chosen = pending.doc().optional_str("userhost")?;
        let hosts: Vec<&str> = originals.iter().map(|account| account.host.as_str()).collect();
        let original_account: &AccountInfo = match (chosen, originals.as_slice()) {
            (Some(host), _) => originals.iter().find(|account| account.host == host).ok_or_else(|| {
                Error::invalid_secret(format!("key `userhost` is {host:?}, but user {} has accounts on {hosts:?}", pair.original))
            })?,
            (None, [only]) => only,
            (None, []) => return Err(Error::target(format!("user {} has no account on this server", pair.original))),
            (None, _) => {
                return Err(Error::invalid_secret(format!(
                    "user {} has accounts on several hosts {hosts:?}: add the key `userhost` to the secret to choose one",
                    pair.original
                )))
            }
        };
        let host = &original_account.host;
        // The source of truth is the user that logs in now (AWSCURRENT), whichever of the two
        // it is: what was granted to or revoked from it reaches the other at this rotation.
        let clone_account = master
            .accounts(&pair.clone_user, deadline)
            .await?
            .into_iter()
            .find(|account| account.host == *host);
        let source = Account {
            user: pair.other(&pending.username).to_owned(),
            host: host.clone(),
        };
        let target = Account {
            user: pending.username.clone(),
            host: host.clone(),
        };
        let (source_info, existing) = if pair.is_clone(&pending.username) {
            (Some(original_account), clone_account.as_ref())
        } else {
            (clone_account.as_ref(), Some(original_account))
        };
        let source_info = source_info
            .ok_or_else(|| Error::target(format!("user {} has no account on host {host}", source.user)))?;
        // The function sets passwords with the master's privileges: never an administrator's
        // (or the master's own), which whoever can read the rotated secret would then hold.
        let administrator =
            original_account.superuser || clone_account.as_ref().is_some_and(|account| account.superuser);
        if administrator || target == master.account || source == master.account {
            return Err(Error::invalid_secret(format!(
                "user {} or {} is an administrator (SUPER) or the master's own account: alternating users \
                 will not set its password, or copy its privileges, through the master (rotate it with \
                 the single-user strategy, from its own secret)",
                pair.original, pair.clone_user
            )));
        }
        let desired = master.grants(Some(&source), deadline).await?;
        let actual = match existing {
            Some(_) => master.grants(Some(&target), deadline).await?,
            None => {
                let sql = statements.create_locked(&target, &source_info.plugin, &pending.password)?;
                master.run(&sql, "creating the clone", deadline).await?;
                tracing::info!(user = %target.user, host = %target.host, "created the clone account (locked)");
                Default::default()
            }
        };
        // Privileges, TLS requirements and limits first; the password and the unlock last, so
        // the pending user never logs in without the current user's privileges, even after a
        // crash half-way (a retry skips setSecret as soon as it logs in).
        let sync = sync_statements(&desired, &actual, &target)?;
        if !sync.is_empty() {
            tracing::info!(user = %target.user, from = %source.user, statements = sync.len(), "syncing the pending user's privileges");
        }
        for statement in &sync {
            // Privilege statements carry no secret: name the one that failed.
            master
                .run(statement, &format!("copying privileges ({statement})"), deadline)
                .await?;
        }
        master
            .run(
                &statements.require(&target, &source_info.tls)?,
                "copying TLS requirements",
                deadline,
            )
            .await?;
        if existing.map(|account| account.limits) != Some(source_info.limits) {
            master
                .run(
                    &statements.limits(&target, &source_info.limits)?,
                    "copying resource limits",
                    deadline,
                )
                .await?;
        }
        if let Some(account) = existing {
            let sql = statements.user_password(&target, &account.plugin, &pending.password)?;
            master.run(&sql, "setting the password", deadline).await?;
        }
        master
            .run(
                &format!("ALTER USER {} ACCOUNT UNLOCK", target.sql()?),
                "unlocking the account",
                deadline,
            )
            .await
    }

    async fn compare_privileges(
        &self,
        pending_session: &mut MySession,
        _pair: &UserPair,
        pending: &DatabaseSecret,
        current: &DatabaseSecret,
        deadline: Deadline,
    ) -> Result<(), Error> {
        // Each user reads its own grants, which needs no privilege; the current user's session
        // is one more login, and no Secrets Manager call (its value is known).
        let theirs = pending_session.grants(None, deadline).await?;
        let mut current_session = self
            .login(current, deadline)
            .await
            .map_err(|e| e.context("comparing privileges with the current user"))?;
        let ours = current_session.grants(None, deadline).await?;
        let differences = differences(&ours, &theirs);
        if differences.is_empty() {
            return Ok(());
        }
        Err(Error::target(format!(
            "user {} does not have exactly user {}'s privileges: {}",
            pending.username,
            current.username,
            differences.join("; ")
        )))
    }
}

/// Whether a connection failed because the certificate does not name the host.
fn is_name_mismatch(e: &mysql_async::Error) -> bool {
    let mysql_async::Error::Io(mysql_async::IoError::Io(io)) = e else {
        return false;
    };
    matches!(
        io.get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>()),
        Some(rustls::Error::InvalidCertificate(
            rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. }
        ))
    )
}

/// Maps a login failure: refused credentials and TLS problems are the target's answer, network
/// faults are transient. Messages name the user and server, never the password.
fn login_error(who: &str, e: &mysql_async::Error) -> Error {
    match e {
        mysql_async::Error::Server(server) => {
            let kind = if LOGIN_REFUSALS.contains(&server.code) {
                ErrorKind::Target
            } else {
                ErrorKind::Transient
            };
            let error = Error::new(
                kind,
                format!("{who}: login refused: {} ({})", server.message, server.code),
            );
            if server.code == code::ER_ACCESS_DENIED_ERROR {
                error.with_code(Code::CredentialsRefused)
            } else {
                error
            }
        }
        mysql_async::Error::Io(mysql_async::IoError::Tls(tls)) => {
            Error::target(format!("{who}: TLS failed: {tls}"))
        }
        mysql_async::Error::Driver(driver) => Error::target(format!("{who}: {driver}")),
        // rustls' handshake errors arrive as I/O errors that carry a rustls::Error.
        mysql_async::Error::Io(mysql_async::IoError::Io(io))
            if io.get_ref().is_some_and(|inner| inner.is::<rustls::Error>()) =>
        {
            Error::target(format!("{who}: TLS failed: {io}"))
        }
        other => Error::transient(format!("{who}: {other}")),
    }
}

/// The server error codes this function tells apart (MySQL's and MariaDB's names).
mod code {
    pub const ER_DBACCESS_DENIED_ERROR: u16 = 1044;
    pub const ER_ACCESS_DENIED_ERROR: u16 = 1045;
    pub const ER_BAD_DB_ERROR: u16 = 1049;
    pub const ER_PARSE_ERROR: u16 = 1064;
    pub const ER_HOST_IS_BLOCKED: u16 = 1129;
    pub const ER_HOST_NOT_PRIVILEGED: u16 = 1130;
    pub const ER_TABLEACCESS_DENIED_ERROR: u16 = 1142;
    pub const ER_COLUMNACCESS_DENIED_ERROR: u16 = 1143;
    pub const ER_SPECIFIC_ACCESS_DENIED_ERROR: u16 = 1227;
    /// "running with the --read-only option" (and other options that forbid the statement).
    pub const ER_OPTION_PREVENTS_STATEMENT: u16 = 1290;
    pub const ER_NOT_SUPPORTED_AUTH_MODE: u16 = 1251;
    pub const ER_PROCACCESS_DENIED_ERROR: u16 = 1370;
    pub const ER_CANNOT_USER: u16 = 1396;
    pub const ER_CANT_CREATE_USER_WITH_GRANT: u16 = 1410;
    pub const ER_ACCESS_DENIED_NO_PASSWORD_ERROR: u16 = 1698;
    pub const ER_SET_PASSWORD_AUTH_PLUGIN: u16 = 1699;
    pub const ER_NOT_VALID_PASSWORD: u16 = 1819;
    pub const ER_PASSWORD_FORMAT: u16 = 1827;
    /// MySQL: the account is locked.
    pub const ER_ACCOUNT_HAS_BEEN_LOCKED: u16 = 3118;
    pub const ER_SECURE_TRANSPORT_REQUIRED: u16 = 3159;
    pub const ER_ROLE_NOT_GRANTED: u16 = 3530;
    /// MariaDB: the account is locked.
    pub const ER_ACCOUNT_HAS_BEEN_LOCKED_MARIADB: u16 = 4151;
}

/// Login errors that are the server's answer (wrong credentials, locked, not allowed from here)
/// rather than a fault to retry.
const LOGIN_REFUSALS: &[u16] = &[
    code::ER_DBACCESS_DENIED_ERROR,
    code::ER_ACCESS_DENIED_ERROR,
    code::ER_BAD_DB_ERROR,
    code::ER_HOST_IS_BLOCKED,
    code::ER_HOST_NOT_PRIVILEGED,
    code::ER_NOT_SUPPORTED_AUTH_MODE,
    code::ER_ACCOUNT_HAS_BEEN_LOCKED,
    code::ER_SECURE_TRANSPORT_REQUIRED,
    code::ER_ACCOUNT_HAS_BEEN_LOCKED_MARIADB,
];

/// Statement errors that mean "not allowed" rather than "try again".
const REFUSALS: &[u16] = &[
    code::ER_DBACCESS_DENIED_ERROR,
    code::ER_ACCESS_DENIED_ERROR,
    code::ER_PARSE_ERROR,
    code::ER_TABLEACCESS_DENIED_ERROR,
    code::ER_COLUMNACCESS_DENIED_ERROR,
    code::ER_SPECIFIC_ACCESS_DENIED_ERROR,
    code::ER_PROCACCESS_DENIED_ERROR,
    code::ER_CANNOT_USER,
    code::ER_CANT_CREATE_USER_WITH_GRANT,
    code::ER_ACCESS_DENIED_NO_PASSWORD_ERROR,
    code::ER_SET_PASSWORD_AUTH_PLUGIN,
    code::ER_NOT_VALID_PASSWORD,
    code::ER_PASSWORD_FORMAT,
    code::ER_ROLE_NOT_GRANTED,
];

/// Maps a statement failure; the statement itself is never included.
fn statement_error(what: &str, e: &mysql_async::Error) -> Error {
    match e {
        mysql_async::Error::Server(server) => {
            let kind = if REFUSALS.contains(&server.code) {
                ErrorKind::Target
            } else {
                ErrorKind::Transient
            };
            // A syntax error quotes the statement, which may carry a password.
            let message = if server.code == code::ER_PARSE_ERROR {
                "syntax error"
            } else {
                server.message.as_str()
            };
            // A replica or an RDS reader answers a password change this way, and so does a
            // writer failing over: it stays retryable and says both.
            let hint = if server.code == code::ER_OPTION_PREVENTS_STATEMENT {
                "; if the server runs read-only, it is a replica or a reader endpoint (passwords \
                 are set on the writer: point the secret's host, or the master's, at it) or a \
                 writer failing over (a retry will pass)"
            } else {
                ""
            };
            Error::new(kind, format!("{what} failed: {message} ({}){hint}", server.code))
        }
        other => Error::transient(format!("{what} failed: {other}")),
    }
}
