//! TLS settings of a database secret, shared by every database engine so that `ssl` and
//! `sslmode` mean the same everywhere.

use secret_rotor::{Error, SecretJson};

/// The environment variable naming an extra CA bundle (PEM) to trust.
pub const CA_BUNDLE_VARIABLE: &str = "DATABASE_CA_BUNDLE";

/// How a connection uses TLS. libpq's names; where libpq is lax, the difference is noted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Plaintext only (`sslmode: disable`, `ssl: false`).
    Disable,
    /// The default: TLS with full verification when the server offers TLS; plaintext (with a
    /// warning) only when it offers none. Never a fallback on a certificate error or a refused
    /// login. (libpq's `prefer` does not verify; ours does.)
    Prefer,
    /// TLS required, certificate not verified (libpq's meaning; a warning is logged).
    Require,
    /// TLS required, certificate chain verified, host name not checked (proxies, CNAMEs).
    VerifyCa,
    /// TLS required, chain and host name verified (`ssl: true`).
    VerifyFull,
}

impl TlsMode {
    /// Reads `sslmode` (libpq's names), else the reference's `ssl` key: `true` → verified TLS
    /// only, `false` → plaintext only, absent or anything else → [`TlsMode::Prefer`].
    ///
    /// ```
    /// use rotor_database::tls::TlsMode;
    /// use secret_rotor::{SecretJson, SecretString};
    /// let mode = |json: &str| TlsMode::from_secret(&SecretJson::parse(&SecretString::from(json)).unwrap());
    /// assert_eq!(mode("{}").unwrap(), TlsMode::Prefer);
    /// assert_eq!(mode(r#"{"ssl": "TRUE"}"#).unwrap(), TlsMode::VerifyFull);
    /// assert_eq!(mode(r#"{"ssl": false, "sslmode": "verify-ca"}"#).unwrap(), TlsMode::VerifyCa);
    /// assert!(mode(r#"{"sslmode": "allow"}"#).is_err());
    /// ```
    pub fn from_secret(doc: &SecretJson) -> Result<Self, Error> {
        if let Some(mode) = doc.optional_str("sslmode")? {
            return match mode.trim().to_ascii_lowercase().as_str() {
                "disable" => Ok(Self::Disable),
                "prefer" => Ok(Self::Prefer),
                "require" => Ok(Self::Require),
                "verify-ca" => Ok(Self::VerifyCa),
                "verify-full" => Ok(Self::VerifyFull),
                _ => Err(Error::invalid_secret(
                    "key `sslmode` must be one of disable, prefer, require, verify-ca, verify-full",
                )),
            };
        }
        // The reference's values; anything unrecognised means the default, as there.
        Ok(match doc.optional_bool("ssl") {
            Ok(Some(true)) => Self::VerifyFull,
            Ok(Some(false)) => Self::Disable,
            _ => Self::Prefer,
        })
    }

    /// Whether a certificate is checked against the trust roots.
    pub fn verifies_chain(self) -> bool {
        matches!(self, Self::Prefer | Self::VerifyCa | Self::VerifyFull)
    }

    /// Whether the certificate must name the host.
    pub fn verifies_host_name(self) -> bool {
        matches!(self, Self::Prefer | Self::VerifyFull)
    }
}

/// The extra CA bundle named by `DATABASE_CA_BUNDLE`, if set.
pub fn ca_bundle_from_env() -> Option<std::path::PathBuf> {
    std::env::var_os(CA_BUNDLE_VARIABLE)
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from)
}
