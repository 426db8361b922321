//! The server's flavour and version, read from `SELECT VERSION()`, never guessed from a prefix.

use std::fmt;

use secret_rotor::Error;

/// MySQL or MariaDB: their password syntax differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// Oracle MySQL (and Aurora MySQL, RDS MySQL).
    MySql,
    /// MariaDB.
    MariaDb,
}

/// A server version: flavour and numeric version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerVersion {
    /// MySQL or MariaDB.
    pub flavour: Flavour,
    /// Major, minor, patch.
    pub number: (u32, u32, u32),
}

impl ServerVersion {
    /// Parses `VERSION()`'s answer.
    ///
    /// ```
    /// use rotor_mysql::version::{Flavour, ServerVersion};
    /// let v = ServerVersion::parse("10.11.14-MariaDB-0+deb12u2-log").unwrap();
    /// assert_eq!((v.flavour, v.number), (Flavour::MariaDb, (10, 11, 14)));
    /// // The replication-compatibility prefix some MariaDB servers send.
    /// assert_eq!(ServerVersion::parse("5.5.5-10.6.18-MariaDB").unwrap().number, (10, 6, 18));
    /// let v = ServerVersion::parse("9.1.0-commercial").unwrap();
    /// assert_eq!((v.flavour, v.number), (Flavour::MySql, (9, 1, 0)));
    /// assert_eq!(ServerVersion::parse("8.0.mysql_aurora.3.05.2").unwrap().number, (8, 0, 0));
    /// assert!(ServerVersion::parse("banana").is_err());
    /// ```
    pub fn parse(version: &str) -> Result<Self, Error> {
        let flavour = if version.to_ascii_lowercase().contains("mariadb") {
            Flavour::MariaDb
        } else {
            Flavour::MySql
        };
        let text = match flavour {
            Flavour::MariaDb => version.strip_prefix("5.5.5-").unwrap_or(version),
            Flavour::MySql => version,
        };
        let mut parts = text.split(|c: char| !c.is_ascii_digit());
        let mut next = || parts.next().and_then(|p| p.parse::<u32>().ok());
        let major = next()
            .ok_or_else(|| Error::transient(format!("cannot read the server version from {version:?}")))?;
        let minor = next().unwrap_or(0);
        let patch = next().unwrap_or(0);
        Ok(Self {
            flavour,
            number: (major, minor, patch),
        })
    }

    /// MySQL 8.0 or later (9.x included): `PASSWORD()` is gone, `ALTER USER` is the way.
    pub fn is_mysql_8_or_later(&self) -> bool {
        self.flavour == Flavour::MySql && self.number.0 >= 8
    }

    /// The longest user name the server accepts (MySQL 32, MariaDB 80; MySQL 5.7 also 32).
    pub fn max_username_chars(&self) -> usize {
        match self.flavour {
            Flavour::MySql => 32,
            Flavour::MariaDb => 80,
        }
    }
}

impl fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (major, minor, patch) = self.number;
        let name = match self.flavour {
            Flavour::MySql => "MySQL",
            Flavour::MariaDb => "MariaDB",
        };
        write!(f, "{name} {major}.{minor}.{patch}")
    }
}
