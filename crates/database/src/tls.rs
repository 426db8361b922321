//! TLS settings of a database secret, shared by every database engine so that `ssl` and
//! `sslmode` mean the same everywhere.

use secret_rotor::{Error, SecretJson};

/// The environment variable naming an extra CA bundle (PEM) to trust.
pub const CA_BUNDLE_VARIABLE: &str = "DATABASE_CA_BUNDLE";

/// How a connection uses TLS. libpq's names; where libpq is lax, the difference is noted.
///
/// Every mode but [`TlsMode::Disable`] requires TLS: a server that answers "no TLS" (an answer
/// anyone on the path can forge) gets no credentials. Plaintext happens only when the secret asks
/// for it explicitly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Plaintext only (`sslmode: disable`, `ssl: false`); a warning is logged at each login.
    Disable,
    /// TLS required, certificate not verified (libpq's meaning; a warning is logged).
    Require,
    /// TLS required, certificate chain verified, host name not checked (proxies, CNAMEs).
    VerifyCa,
    /// The default: TLS required, chain and host name verified (`ssl: true`; also `sslmode:
    /// prefer`, which in libpq would fall back to plaintext and here never does).
    VerifyFull,
}

impl TlsMode {
    /// Reads `sslmode` (libpq's names), else the reference's `ssl` key: `false` → plaintext only;
    /// `true`, absent or anything else → verified TLS only ([`TlsMode::VerifyFull`]).
    ///
    /// ```
    /// use rotor_database::tls::TlsMode;
    /// use secret_rotor::{SecretJson, SecretString};
    /// let mode = |json: &str| TlsMode::from_secret(&SecretJson::parse(&SecretString::from(json)).unwrap());
    /// assert_eq!(mode("{}").unwrap(), TlsMode::VerifyFull);
    /// assert_eq!(mode(r#"{"sslmode": "prefer"}"#).unwrap(), TlsMode::VerifyFull);
    /// assert_eq!(mode(r#"{"ssl": false}"#).unwrap(), TlsMode::Disable);
    /// assert_eq!(mode(r#"{"ssl": "TRUE"}"#).unwrap(), TlsMode::VerifyFull);
    /// assert_eq!(mode(r#"{"ssl": false, "sslmode": "verify-ca"}"#).unwrap(), TlsMode::VerifyCa);
    /// assert!(mode(r#"{"sslmode": "allow"}"#).is_err());
    /// ```
    pub fn from_secret(doc: &SecretJson) -> Result<Self, Error> {
        if let Some(mode) = doc.optional_str("sslmode")? {
            return match mode.trim().to_ascii_lowercase().as_str() {
                "disable" => Ok(Self::Disable),
                // libpq's prefer falls back to plaintext when the server says "no TLS"; an
                // unauthenticated answer must not decide that, so prefer is verified TLS here.
                "prefer" => Ok(Self::VerifyFull),
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
            _ => Self::VerifyFull,
        })
    }

    /// The message for a server that offers no TLS under a mode that requires it: names the
    /// setting that would allow plaintext.
    pub fn server_without_tls(self, who: &str) -> Error {
        Error::target(format!(
            "{who}: the server does not offer TLS, and this secret requires it (verified TLS is the \
             default): enable TLS on the server, or set `\"sslmode\": \"disable\"` in the secret to \
             send the credentials in plaintext"
        ))
    }
}

/// The extra CA bundle named by `DATABASE_CA_BUNDLE`, if set.
pub fn ca_bundle_from_env() -> Option<std::path::PathBuf> {
    std::env::var_os(CA_BUNDLE_VARIABLE)
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from)
}
