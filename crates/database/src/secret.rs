//! The database secret value (CONTRACT §4), common to every SQL engine.

use secret_rotor::{Error, SecretJson, SecretString};

/// A parsed database secret: the keys every engine needs, and the whole document so that keys
/// this function does not know are written back verbatim.
pub struct DatabaseSecret {
    doc: SecretJson,
    /// `engine`, one of the driver's accepted values (absent allowed for master secrets).
    pub engine: Option<String>,
    /// `host`.
    pub host: String,
    /// `port` (number or string), the driver's default when absent.
    pub port: u16,
    /// `username`.
    pub username: String,
    /// `password`.
    pub password: SecretString,
    /// `dbname`, if present.
    pub dbname: Option<String>,
}

impl DatabaseSecret {
    /// Parses a rotated secret: `engine` must be one of `engines`.
    ///
    /// ```
    /// use rotor_database::DatabaseSecret;
    /// use secret_rotor::SecretString;
    /// let raw = SecretString::from(r#"{"engine":"postgres","host":"db","username":"app","password":"p","port":"6432"}"#);
    /// let secret = DatabaseSecret::parse(&raw, &["postgres"], 5432).unwrap();
    /// assert_eq!((secret.port, secret.username.as_str()), (6432, "app"));
    /// let err = DatabaseSecret::parse(&raw, &["mysql", "mariadb"], 3306).unwrap_err();
    /// assert!(err.to_string().contains("`engine`"));
    /// ```
    pub fn parse(value: &SecretString, engines: &[&str], default_port: u16) -> Result<Self, Error> {
        let secret = Self::parse_any(value, default_port)?;
        match secret.engine.as_deref() {
            Some(engine) if engines.contains(&engine) => Ok(secret),
            Some(engine) => {
                let shown: String = engine.chars().take(32).collect();
                Err(Error::invalid_secret(format!(
                    "key `engine` is `{shown}`; this function rotates {}",
                    engines.join(", ")
                )))
            }
            None => Err(Error::invalid_secret("missing required key `engine`")),
        }
    }

    /// Parses a master secret: `engine` is not required (master secrets are often made by hand).
    pub fn parse_master(value: &SecretString, default_port: u16) -> Result<Self, Error> {
        Self::parse_any(value, default_port).map_err(|e| e.context("master secret"))
    }

    /// A master secret from its parsed document (an RDS-managed master's, with the `host` and
    /// `port` RDS gave set in it).
    pub fn master_from_doc(doc: SecretJson, default_port: u16) -> Result<Self, Error> {
        Self::from_doc(doc, default_port).map_err(|e| e.context("master secret"))
    }

    /// The same secret on `host:port` (a cluster's writer, for a secret on its reader).
    pub fn on_server(&self, host: &str, port: u16) -> Self {
        let mut doc = self.doc.clone();
        doc.set_str("host", host);
        doc.insert("port", port.into());
        Self {
            doc,
            engine: self.engine.clone(),
            host: host.to_owned(),
            port,
            username: self.username.clone(),
            password: self.password.clone(),
            dbname: self.dbname.clone(),
        }
    }

    fn parse_any(value: &SecretString, default_port: u16) -> Result<Self, Error> {
        Self::from_doc(SecretJson::parse(value)?, default_port)
    }

    fn from_doc(doc: SecretJson, default_port: u16) -> Result<Self, Error> {
        Ok(Self {
            engine: doc.optional_str("engine")?.map(str::to_owned),
            host: doc.required_str("host")?.to_owned(),
            port: doc.port("port", default_port)?,
            username: doc.required_str("username")?.to_owned(),
            password: doc.required_secret("password")?,
            dbname: doc.optional_str("dbname")?.map(str::to_owned),
            doc,
        })
    }

    /// The whole document, for driver-specific keys (`ssl`, `sslmode`, …).
    pub fn doc(&self) -> &SecretJson {
        &self.doc
    }

    /// The `masterarn` key, required by the alternating-users strategy.
    pub fn masterarn(&self) -> Result<&str, Error> {
        self.doc.required_str("masterarn")
    }

    /// The same secret for `username` with `password`; every other key as it was.
    pub fn with_credentials(&self, username: &str, password: SecretString) -> Self {
        let mut doc = self.doc.clone();
        doc.set_str("username", username);
        doc.set_secret("password", &password);
        Self {
            doc,
            engine: self.engine.clone(),
            host: self.host.clone(),
            port: self.port,
            username: username.to_owned(),
            password,
            dbname: self.dbname.clone(),
        }
    }

    /// The value to store: the original document with this username and password.
    pub fn render(&self) -> SecretString {
        let mut doc = self.doc.clone();
        doc.set_str("username", &self.username);
        doc.set_secret("password", &self.password);
        doc.to_secret_string()
    }

    /// Whether this secret points at the same server as `other` (host and port; host names
    /// compare without case, as DNS does).
    pub fn same_server(&self, other: &DatabaseSecret) -> bool {
        self.host.eq_ignore_ascii_case(&other.host) && self.port == other.port
    }
}

impl std::fmt::Debug for DatabaseSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseSecret")
            .field("engine", &self.engine)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &self.password)
            .field("dbname", &self.dbname)
            .finish()
    }
}
