//! SQL text for MySQL and MariaDB: quoting, and the password statements each server version
//! needs. Neither server accepts a `?` placeholder in `IDENTIFIED BY` or `PASSWORD(?)`, so every
//! literal goes through [`quote_string`]; where the account's plugin allows it, the statement
//! carries the hash computed here instead of the password.

use secret_rotor::zeroize::Zeroizing;
use secret_rotor::{Error, SecretString};
use sha1::{Digest, Sha1};

use crate::version::{Flavour, ServerVersion};

/// A quoted identifier: backticks, with backticks doubled.
///
/// ```
/// use rotor_mysql::sql::quote_identifier;
/// assert_eq!(quote_identifier("we`ird; DROP").unwrap(), "`we``ird; DROP`");
/// ```
pub fn quote_identifier(name: &str) -> Result<String, Error> {
    if name.contains('\0') {
        return Err(Error::invalid_secret(
            "a MySQL name cannot contain a NUL character",
        ));
    }
    Ok(format!("`{}`", name.replace('`', "``")))
}

/// A string literal. With backslash escapes (the default SQL mode) `\` and `'` are escaped with a
/// backslash; under `NO_BACKSLASH_ESCAPES` a backslash is an ordinary character and `'` is
/// doubled.
///
/// ```
/// use rotor_mysql::sql::quote_string;
/// assert_eq!(quote_string(r"it's \%", true).unwrap(), r"'it\'s \\%'");
/// assert_eq!(quote_string(r"it's \%", false).unwrap(), r"'it''s \%'");
/// ```
pub fn quote_string(text: &str, backslash_escapes: bool) -> Result<String, Error> {
    if text.contains('\0') {
        return Err(Error::invalid_secret(
            "a MySQL string cannot contain a NUL character",
        ));
    }
    let escaped = if backslash_escapes {
        text.replace('\\', "\\\\").replace('\'', "\\'")
    } else {
        text.replace('\'', "''")
    };
    Ok(format!("'{escaped}'"))
}

/// A user account, `'name'@'host'`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The user name.
    pub user: String,
    /// The host pattern (`%`, `10.0.%`, `localhost`).
    pub host: String,
}

impl Account {
    /// The account as SQL: `` `name`@`host` ``.
    pub fn sql(&self) -> Result<String, Error> {
        Ok(format!(
            "{}@{}",
            quote_identifier(&self.user)?,
            quote_identifier(&self.host)?
        ))
    }

    /// Splits `CURRENT_USER()`'s `name@host` (the name may itself contain `@`).
    pub fn from_current_user(text: &str) -> Option<Self> {
        let (user, host) = text.rsplit_once('@')?;
        Some(Self {
            user: user.to_owned(),
            host: host.to_owned(),
        })
    }
}

/// An account's authentication plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plugin {
    /// `mysql_native_password`: the hash can be computed here.
    Native,
    /// Any other (`caching_sha2_password`, `sha256_password`, `ed25519`, …): the server must
    /// hash the password itself.
    Other(String),
}

impl Plugin {
    /// From `mysql.user.plugin` (empty means native on old servers).
    pub fn from_name(name: &str) -> Self {
        match name {
            "" | "mysql_native_password" => Self::Native,
            other => Self::Other(other.to_owned()),
        }
    }
}

/// The `mysql_native_password` hash: `*` and the upper-case hex of SHA1(SHA1(password)).
///
/// ```
/// use rotor_mysql::sql::native_password_hash;
/// assert_eq!(&*native_password_hash(&"pw1".into()), "*2B602296A79E0A8784ACC5C88D92E46588CCA3C3");
/// ```
pub fn native_password_hash(password: &SecretString) -> Zeroizing<String> {
    let stage1 = Sha1::digest(password.expose().as_bytes());
    let stage2 = Sha1::digest(stage1);
    let mut hash = Zeroizing::new(String::with_capacity(41));
    hash.push('*');
    for byte in stage2 {
        hash.push_str(&format!("{byte:02X}"));
    }
    hash
}

/// The statements that set passwords and create users, for one server.
#[derive(Debug, Clone, Copy)]
pub struct Statements {
    /// The server.
    pub version: ServerVersion,
    /// Whether the session's SQL mode lets backslashes escape (no `NO_BACKSLASH_ESCAPES`).
    pub backslash_escapes: bool,
}

impl Statements {
    fn string(&self, text: &str) -> Result<String, Error> {
        quote_string(text, self.backslash_escapes)
    }

    /// The session's own user sets its password (single user). No privilege needed.
    ///
    /// ```
    /// use rotor_mysql::sql::{Plugin, Statements};
    /// use rotor_mysql::version::ServerVersion;
    /// let s = |v| Statements { version: ServerVersion::parse(v).unwrap(), backslash_escapes: true };
    /// let pw = "pw1".into();
    /// assert_eq!(&*s("10.11.6-MariaDB").own_password(&Plugin::Native, &pw).unwrap(),
    ///            "SET PASSWORD = '*2B602296A79E0A8784ACC5C88D92E46588CCA3C3'");
    /// assert_eq!(&*s("10.11.6-MariaDB").own_password(&Plugin::Other("ed25519".into()), &pw).unwrap(),
    ///            "SET PASSWORD = PASSWORD('pw1')");
    /// for mysql in ["5.7.44", "8.0.36", "8.4.2", "9.1.0"] {
    ///     assert_eq!(&*s(mysql).own_password(&Plugin::Native, &pw).unwrap(),
    ///                "ALTER USER USER() IDENTIFIED BY 'pw1'");
    /// }
    /// ```
    pub fn own_password(&self, plugin: &Plugin, password: &SecretString) -> Result<Zeroizing<String>, Error> {
        Ok(Zeroizing::new(match (self.version.flavour, plugin) {
            // MariaDB: SET PASSWORD keeps the account's plugin (ALTER USER would switch it).
            (Flavour::MariaDb, Plugin::Native) => {
                format!("SET PASSWORD = {}", self.string(&native_password_hash(password))?)
            }
            (Flavour::MariaDb, Plugin::Other(_)) => {
                format!("SET PASSWORD = PASSWORD({})", self.string(password.expose())?)
            }
            // MySQL 5.7.6+: only this form needs no privilege, and it keeps the plugin.
            (Flavour::MySql, _) => format!(
                "ALTER USER USER() IDENTIFIED BY {}",
                self.string(password.expose())?
            ),
        }))
    }

    /// A master sets another account's password (alternating users), keeping its plugin.
    ///
    /// ```
    /// use rotor_mysql::sql::{Account, Plugin, Statements};
    /// use rotor_mysql::version::ServerVersion;
    /// let s = |v| Statements { version: ServerVersion::parse(v).unwrap(), backslash_escapes: true };
    /// let account = Account { user: "app_clone".into(), host: "10.0.%".into() };
    /// let pw = "pw1".into();
    /// let hash = "'*2B602296A79E0A8784ACC5C88D92E46588CCA3C3'";
    /// assert_eq!(&*s("10.11.6-MariaDB").user_password(&account, &Plugin::Native, &pw).unwrap(),
    ///            format!("SET PASSWORD FOR `app_clone`@`10.0.%` = {hash}").as_str());
    /// assert_eq!(&*s("5.7.44").user_password(&account, &Plugin::Native, &pw).unwrap(),
    ///            format!("ALTER USER `app_clone`@`10.0.%` IDENTIFIED WITH mysql_native_password AS {hash}").as_str());
    /// assert_eq!(&*s("8.0.36").user_password(&account, &Plugin::Other("caching_sha2_password".into()), &pw).unwrap(),
    ///            "ALTER USER `app_clone`@`10.0.%` IDENTIFIED BY 'pw1'");
    /// ```
    pub fn user_password(
        &self,
        account: &Account,
        plugin: &Plugin,
        password: &SecretString,
    ) -> Result<Zeroizing<String>, Error> {
        let who = account.sql()?;
        Ok(Zeroizing::new(match (self.version.flavour, plugin) {
            (Flavour::MariaDb, Plugin::Native) => {
                format!(
                    "SET PASSWORD FOR {who} = {}",
                    self.string(&native_password_hash(password))?
                )
            }
            (Flavour::MariaDb, Plugin::Other(_)) => {
                format!(
                    "SET PASSWORD FOR {who} = PASSWORD({})",
                    self.string(password.expose())?
                )
            }
            (Flavour::MySql, Plugin::Native) => format!(
                "ALTER USER {who} IDENTIFIED WITH mysql_native_password AS {}",
                self.string(&native_password_hash(password))?
            ),
            (Flavour::MySql, Plugin::Other(_)) => {
                format!(
                    "ALTER USER {who} IDENTIFIED BY {}",
                    self.string(password.expose())?
                )
            }
        }))
    }

    /// Creates an account with the plugin of the original and the password, locked: it is
    /// unlocked only once its privileges are in place, so it never logs in without them.
    ///
    /// ```
    /// use rotor_mysql::sql::{Account, Plugin, Statements};
    /// use rotor_mysql::version::ServerVersion;
    /// let s = |v| Statements { version: ServerVersion::parse(v).unwrap(), backslash_escapes: true };
    /// let account = Account { user: "app_clone".into(), host: "%".into() };
    /// let pw = "pw1".into();
    /// let hash = "'*2B602296A79E0A8784ACC5C88D92E46588CCA3C3'";
    /// assert_eq!(&*s("10.11.6-MariaDB").create_locked(&account, &Plugin::Native, &pw).unwrap(),
    ///            format!("CREATE USER `app_clone`@`%` IDENTIFIED BY PASSWORD {hash} ACCOUNT LOCK").as_str());
    /// assert_eq!(&*s("10.11.6-MariaDB").create_locked(&account, &Plugin::Other("ed25519".into()), &pw).unwrap(),
    ///            "CREATE USER `app_clone`@`%` IDENTIFIED VIA ed25519 USING PASSWORD('pw1') ACCOUNT LOCK");
    /// assert_eq!(&*s("9.1.0").create_locked(&account, &Plugin::Other("caching_sha2_password".into()), &pw).unwrap(),
    ///            "CREATE USER `app_clone`@`%` IDENTIFIED WITH caching_sha2_password BY 'pw1' ACCOUNT LOCK");
    /// assert_eq!(&*s("8.0.36").create_locked(&account, &Plugin::Native, &pw).unwrap(),
    ///            format!("CREATE USER `app_clone`@`%` IDENTIFIED WITH mysql_native_password AS {hash} ACCOUNT LOCK").as_str());
    /// ```
    pub fn create_locked(
        &self,
        account: &Account,
        plugin: &Plugin,
        password: &SecretString,
    ) -> Result<Zeroizing<String>, Error> {
        let who = account.sql()?;
        let plugin_name = |name: &str| -> Result<String, Error> {
            if name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                Ok(name.to_owned())
            } else {
                Err(Error::target(format!(
                    "unexpected authentication plugin name {name:?}"
                )))
            }
        };
        Ok(Zeroizing::new(match (self.version.flavour, plugin) {
            (Flavour::MariaDb, Plugin::Native) => format!(
                "CREATE USER {who} IDENTIFIED BY PASSWORD {} ACCOUNT LOCK",
                self.string(&native_password_hash(password))?
            ),
            (Flavour::MariaDb, Plugin::Other(name)) => format!(
                "CREATE USER {who} IDENTIFIED VIA {} USING PASSWORD({}) ACCOUNT LOCK",
                plugin_name(name)?,
                self.string(password.expose())?
            ),
            (Flavour::MySql, Plugin::Native) => format!(
                "CREATE USER {who} IDENTIFIED WITH mysql_native_password AS {} ACCOUNT LOCK",
                self.string(&native_password_hash(password))?
            ),
            (Flavour::MySql, Plugin::Other(name)) => format!(
                "CREATE USER {who} IDENTIFIED WITH {} BY {} ACCOUNT LOCK",
                plugin_name(name)?,
                self.string(password.expose())?
            ),
        }))
    }

    /// `ALTER USER … WITH …`: an account's resource limits (0: none).
    ///
    /// ```
    /// use rotor_mysql::sql::{Account, ResourceLimits, Statements};
    /// use rotor_mysql::version::ServerVersion;
    /// let s = Statements { version: ServerVersion::parse("8.0.36").unwrap(), backslash_escapes: true };
    /// let app = Account { user: "app_clone".into(), host: "%".into() };
    /// let limits = ResourceLimits { queries_per_hour: 1000, user_connections: 20, ..Default::default() };
    /// assert_eq!(s.limits(&app, &limits).unwrap(),
    ///            "ALTER USER `app_clone`@`%` WITH MAX_QUERIES_PER_HOUR 1000 MAX_UPDATES_PER_HOUR 0 \
    ///             MAX_CONNECTIONS_PER_HOUR 0 MAX_USER_CONNECTIONS 20");
    /// ```
    pub fn limits(&self, account: &Account, limits: &ResourceLimits) -> Result<String, Error> {
        Ok(format!(
            "ALTER USER {} WITH MAX_QUERIES_PER_HOUR {} MAX_UPDATES_PER_HOUR {} MAX_CONNECTIONS_PER_HOUR {} \
             MAX_USER_CONNECTIONS {}",
            account.sql()?,
            limits.queries_per_hour,
            limits.updates_per_hour,
            limits.connections_per_hour,
            limits.user_connections
        ))
    }

    /// `ALTER USER … REQUIRE …`: the TLS requirements of the original account.
    pub fn require(&self, account: &Account, tls: &TlsRequirement) -> Result<String, Error> {
        Ok(format!(
            "ALTER USER {} REQUIRE {}",
            account.sql()?,
            tls.clause(self.backslash_escapes)?
        ))
    }
}

/// An account's resource limits (`mysql.user`'s `max_questions`, `max_updates`,
/// `max_connections`, `max_user_connections`); 0 is no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResourceLimits {
    /// `MAX_QUERIES_PER_HOUR`.
    pub queries_per_hour: i64,
    /// `MAX_UPDATES_PER_HOUR`.
    pub updates_per_hour: i64,
    /// `MAX_CONNECTIONS_PER_HOUR`.
    pub connections_per_hour: i64,
    /// `MAX_USER_CONNECTIONS`.
    pub user_connections: i64,
}

/// An account's TLS requirement (`mysql.user`'s `ssl_type`, `ssl_cipher`, `x509_issuer`,
/// `x509_subject`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsRequirement {
    /// `''`, `ANY`, `X509` or `SPECIFIED`.
    pub ssl_type: String,
    /// Required cipher, if specified.
    pub cipher: String,
    /// Required issuer, if specified.
    pub issuer: String,
    /// Required subject, if specified.
    pub subject: String,
}

impl TlsRequirement {
    /// The clause after `REQUIRE`.
    ///
    /// ```
    /// use rotor_mysql::sql::TlsRequirement;
    /// let none = TlsRequirement::default();
    /// assert_eq!(none.clause(true).unwrap(), "NONE");
    /// let any = TlsRequirement { ssl_type: "ANY".into(), ..Default::default() };
    /// assert_eq!(any.clause(true).unwrap(), "SSL");
    /// let specified = TlsRequirement { ssl_type: "SPECIFIED".into(), issuer: "/CN=ca".into(),
    ///                                  subject: "/CN=app".into(), cipher: String::new() };
    /// assert_eq!(specified.clause(true).unwrap(), "ISSUER '/CN=ca' AND SUBJECT '/CN=app'");
    /// ```
    pub fn clause(&self, backslash_escapes: bool) -> Result<String, Error> {
        Ok(match self.ssl_type.to_ascii_uppercase().as_str() {
            "" => "NONE".to_owned(),
            "ANY" => "SSL".to_owned(),
            "X509" => "X509".to_owned(),
            "SPECIFIED" => {
                let mut parts = Vec::new();
                for (keyword, value) in [
                    ("ISSUER", &self.issuer),
                    ("SUBJECT", &self.subject),
                    ("CIPHER", &self.cipher),
                ] {
                    if !value.is_empty() {
                        parts.push(format!("{keyword} {}", quote_string(value, backslash_escapes)?));
                    }
                }
                if parts.is_empty() {
                    "SSL".to_owned()
                } else {
                    parts.join(" AND ")
                }
            }
            other => {
                return Err(Error::target(format!(
                    "unknown ssl_type {other:?} on the original account"
                )))
            }
        })
    }
}
