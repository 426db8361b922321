//! One AWS SDK configuration for every client a function builds.
//!
//! A function talks to Secrets Manager at every step, and some engines to another service
//! (RDS, for the database functions' RDS-managed master secrets). Each client is built from
//! [`sdk_config`], so all of them read Lambda's environment the same way and share one HTTPS
//! client ([`https_client`]): one trust store read, one connection pool per process.

use std::sync::OnceLock;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_secretsmanager::config::{Credentials, SharedCredentialsProvider, SharedHttpClient};
use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};

use crate::error::{Error, ErrorKind};
use crate::store::error_chain;

/// The configuration of an AWS client, from the environment, with the first set variable of
/// `endpoint_vars` as its endpoint (unless `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true`).
///
/// Lambda gives a function its region and credentials as environment variables
/// (`AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`); when they
/// are set the configuration is built from them directly, without `aws-config`'s default chain
/// (profile files, SSO, IMDS and the rest: work a Lambda never needs). Otherwise, as on an
/// operator's machine, the default chain. `AWS_USE_FIPS_ENDPOINT` and
/// `AWS_USE_DUALSTACK_ENDPOINT` are honoured. No network call is made here.
pub async fn sdk_config(endpoint_vars: &[&str]) -> SdkConfig {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let flag = |name: &str| var(name).map(|v| v.trim().eq_ignore_ascii_case("true"));
    let endpoint = if flag("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS") == Some(true) {
        None
    } else {
        endpoint_vars.iter().find_map(|name| var(name))
    };
    let region = var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION"));
    match (region, var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
        (Some(region), Some(key_id), Some(secret_key)) => {
            let credentials =
                Credentials::new(key_id, secret_key, var("AWS_SESSION_TOKEN"), None, "Environment");
            let mut config = SdkConfig::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new(region))
                .credentials_provider(SharedCredentialsProvider::new(credentials))
                .http_client(https_client());
            if let Some(fips) = flag("AWS_USE_FIPS_ENDPOINT") {
                config = config.use_fips(fips);
            }
            if let Some(dual_stack) = flag("AWS_USE_DUALSTACK_ENDPOINT") {
                config = config.use_dual_stack(dual_stack);
            }
            config.set_endpoint_url(endpoint);
            config.build()
        }
        _ => {
            let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(https_client());
            if let Some(endpoint) = endpoint {
                loader = loader.endpoint_url(endpoint);
            }
            loader.load().await
        }
    }
}

/// The system's CA bundles, in the order the platforms keep them (Amazon Linux and Lambda's
/// images first).
const CA_BUNDLES: [&str; 3] = [
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/ssl/cert.pem",
];

/// The process's HTTPS client for AWS APIs, trusting the system's CA bundle file (`SSL_CERT_FILE`, or the platform's
/// bundle). The SDK's default reads every file of the certificate directory besides (on Debian
/// some 300, 5.5 ms of each cold start on this project's machines, for the same roots); it is
/// kept when `SSL_CERT_DIR` is set, when no bundle is found, or when a certificate of the bundle
/// does not parse (the SDK would refuse the whole bundle with a panic).
pub fn https_client() -> SharedHttpClient {
    static CLIENT: OnceLock<SharedHttpClient> = OnceLock::new();
    CLIENT.get_or_init(new_https_client).clone()
}

fn new_https_client() -> SharedHttpClient {
    use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider, TlsContext, TrustStore};
    let bundle = || {
        if std::env::var_os("SSL_CERT_DIR").is_some() {
            return None;
        }
        let path = std::env::var_os("SSL_CERT_FILE")
            .map(std::path::PathBuf::from)
            .or_else(|| {
                CA_BUNDLES
                    .iter()
                    .map(std::path::PathBuf::from)
                    .find(|p| p.is_file())
            })?;
        let pem = std::fs::read(path).ok()?;
        bundle_parses(&pem).then_some(pem)
    };
    let trust = match bundle() {
        Some(pem) => TrustStore::empty().with_pem_certificate(pem),
        None => TrustStore::default(),
    };
    let builder = aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::AwsLc));
    match TlsContext::builder().with_trust_store(trust).build() {
        Ok(context) => builder.tls_context(context).build_https(),
        Err(_) => builder.build_https(),
    }
}

/// Whether every certificate of a PEM bundle (at least one) is a usable root, as the SDK will
/// require of each.
fn bundle_parses(pem: &[u8]) -> bool {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let Ok(cert) = cert else { return false };
        if roots.add(cert).is_err() {
            return false;
        }
    }
    !roots.is_empty()
}

/// Maps an error of any AWS SDK client to the framework's kinds: permissions and credentials are
/// configuration, a missing or refused resource says the rotation's state is not usable,
/// throttling and network faults are transient. The message names the operation, its subject
/// and the service's code and message, never a response body.
pub fn sdk_error<E, R>(operation: &str, subject: &str, err: SdkError<E, R>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    match &err {
        SdkError::ServiceError(service) => {
            let inner = service.err();
            let code = inner.code().unwrap_or("Unknown");
            let message = inner.message().unwrap_or("");
            let kind = match code {
                // Secrets Manager's JSON protocol names, then the query protocol's (RDS).
                "AccessDeniedException"
                | "AccessDenied"
                | "UnrecognizedClientException"
                | "InvalidSignatureException"
                | "DecryptionFailure"
                | "EncryptionFailure"
                | "ExpiredTokenException"
                | "ExpiredToken"
                | "InvalidClientTokenId"
                | "SignatureDoesNotMatch"
                | "OptInRequired" => ErrorKind::Configuration,
                "ResourceNotFoundException"
                | "InvalidRequestException"
                | "InvalidParameterException"
                | "ResourceExistsException"
                | "PreconditionNotMetException"
                | "MalformedPolicyDocumentException"
                | "InvalidParameterValue"
                | "InvalidParameterCombination" => ErrorKind::RotationState,
                _ => ErrorKind::Transient,
            };
            Error::new(
                kind,
                format!("{operation} on {subject} failed: {code}: {message}"),
            )
        }
        SdkError::ConstructionFailure(_) => Error::configuration(format!(
            "{operation} on {subject} could not be built: {}",
            error_chain(&err)
        )),
        _ => Error::transient(format!("{operation} on {subject} failed: {}", error_chain(&err))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_is_used_only_when_every_certificate_in_it_is_a_usable_root() {
        assert!(!bundle_parses(b""), "no certificate at all");
        assert!(!bundle_parses(b"not a certificate\n"));
        let broken = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(!bundle_parses(broken), "a block that is no certificate");
        let system = CA_BUNDLES
            .iter()
            .find_map(|path| std::fs::read(path).ok())
            .expect("a system CA bundle on this machine");
        assert!(bundle_parses(&system), "the system's bundle");
        let mut with_broken = system.clone();
        with_broken.extend_from_slice(broken);
        assert!(!bundle_parses(&with_broken), "one bad block refuses the bundle");
    }
}
