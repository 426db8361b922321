//! TLS to PostgreSQL: the trust roots and the verifiers of each [`TlsMode`] (the secret's
//! `ssl` / `sslmode` keys, shared with every database engine), and a rustls connector for
//! `tokio-postgres`.
//!
//! Trust roots are the system bundle, the Amazon RDS CAs (built in:
//! [`rotor_database::tls::RDS_CA_BUNDLE`]) and the PEM file named by `DATABASE_CA_BUNDLE` (a
//! private CA), loaded at the first TLS connection, not at start-up.

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

pub use rotor_database::tls::{TlsMode, CA_BUNDLE_VARIABLE, RDS_CA_BUNDLE};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use secret_rotor::Error;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

/// The rustls configurations, built at first use and shared by every connection of the process.
#[derive(Debug, Default)]
pub struct TlsConfigs {
    ca_bundle: Option<PathBuf>,
    roots: OnceLock<Result<Arc<RootCertStore>, Error>>,
    verify_full: OnceLock<Arc<ClientConfig>>,
    verify_ca: OnceLock<Arc<ClientConfig>>,
    no_verification: OnceLock<Arc<ClientConfig>>,
}

impl TlsConfigs {
    /// Configurations trusting the system bundle and, if given, the CA bundle at `ca_bundle`.
    pub fn new(ca_bundle: Option<PathBuf>) -> Self {
        Self {
            ca_bundle,
            ..Self::default()
        }
    }

    /// Reads `DATABASE_CA_BUNDLE` (the file itself is read at first use).
    pub fn from_env() -> Self {
        Self::new(
            std::env::var_os(CA_BUNDLE_VARIABLE)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
        )
    }

    fn provider() -> Arc<CryptoProvider> {
        Arc::new(rustls::crypto::aws_lc_rs::default_provider())
    }

    fn roots(&self) -> Result<Arc<RootCertStore>, Error> {
        self.roots
            .get_or_init(|| {
                let mut roots = RootCertStore::empty();
                let system = rustls_native_certs::load_native_certs();
                let (added, _ignored) = roots.add_parsable_certificates(system.certs);
                tracing::debug!(system_roots = added, "loaded the system trust roots");
                // The RDS CAs, which Lambda's base images lack, beside the system's.
                let rds = CertificateDer::pem_slice_iter(RDS_CA_BUNDLE.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| {
                        Error::configuration(format!("the built-in RDS CA bundle does not parse: {e}"))
                    })?;
                let (added, _ignored) = roots.add_parsable_certificates(rds);
                tracing::debug!(rds_roots = added, "loaded the RDS trust roots");
                if let Some(path) = &self.ca_bundle {
                    let shown = path.display();
                    let certs = CertificateDer::pem_file_iter(path)
                        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                        .map_err(|e| {
                            Error::configuration(format!(
                                "{CA_BUNDLE_VARIABLE}={shown} cannot be read as PEM: {e}"
                            ))
                        })?;
                    let (added, ignored) = roots.add_parsable_certificates(certs);
                    if added == 0 {
                        return Err(Error::configuration(format!(
                            "{CA_BUNDLE_VARIABLE}={shown} holds no usable CA certificate ({ignored} ignored)"
                        )));
                    }
                    tracing::debug!(bundle_roots = added, "loaded the CA bundle");
                }
                Ok(Arc::new(roots))
            })
            .clone()
    }

    fn build(&self, verifier: Option<Arc<dyn ServerCertVerifier>>) -> Result<Arc<ClientConfig>, Error> {
        let builder = ClientConfig::builder_with_provider(Self::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::configuration(format!("TLS set-up failed: {e}")))?;
        let config = match verifier {
            Some(verifier) => builder
                .dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_no_client_auth(),
            None => builder
                .with_root_certificates(self.roots()?)
                .with_no_client_auth(),
        };
        Ok(Arc::new(config))
    }

    fn cached(
        cell: &OnceLock<Arc<ClientConfig>>,
        make: impl FnOnce() -> Result<Arc<ClientConfig>, Error>,
    ) -> Result<Arc<ClientConfig>, Error> {
        if let Some(config) = cell.get() {
            return Ok(config.clone());
        }
        let config = make()?;
        Ok(cell.get_or_init(|| config).clone())
    }

    /// The client configuration for a mode that uses TLS.
    pub fn config(&self, mode: TlsMode) -> Result<Arc<ClientConfig>, Error> {
        match mode {
            TlsMode::Disable | TlsMode::VerifyFull => Self::cached(&self.verify_full, || self.build(None)),
            TlsMode::VerifyCa => Self::cached(&self.verify_ca, || {
                let inner = WebPkiServerVerifier::builder_with_provider(self.roots()?, Self::provider())
                    .build()
                    .map_err(|e| Error::configuration(format!("no usable trust roots: {e}")))?;
                self.build(Some(Arc::new(ChainOnly(inner))))
            }),
            TlsMode::Require => Self::cached(&self.no_verification, || {
                self.build(Some(Arc::new(NoVerification(Self::provider()))))
            }),
        }
    }
}

/// Verifies the chain, not the name (`verify-ca`). rustls checks the name after the chain, so a
/// name error means the chain was good.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Accepts any certificate (`require`), still checking the handshake's signatures.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A `tokio-postgres` TLS connector on rustls that records whether a TLS handshake started (a
/// server that declines TLS never gets that far), and whose errors are [`TlsHandshakeError`]s, so
/// that a login failure can be told apart by type.
#[derive(Clone)]
pub struct RustlsConnector {
    config: Arc<ClientConfig>,
    negotiated: Arc<AtomicBool>,
}

impl RustlsConnector {
    /// A connector with `config`.
    pub fn new(config: Arc<ClientConfig>) -> Self {
        Self {
            config,
            negotiated: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Whether a TLS handshake was started on a connection made with this connector.
    pub fn negotiated(&self) -> bool {
        self.negotiated.load(Ordering::SeqCst)
    }
}

/// A failed TLS handshake (or a host that cannot be a TLS server name): the certificate, the
/// protocol, or the name.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TlsHandshakeError(#[source] io::Error);

impl<S> MakeTlsConnect<S> for RustlsConnector
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = TlsHandshakeError;

    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsConnect, TlsHandshakeError> {
        let name = ServerName::try_from(domain.to_owned()).map_err(|_| {
            TlsHandshakeError(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("`{domain}` is not a valid TLS server name"),
            ))
        })?;
        Ok(RustlsConnect {
            connector: tokio_rustls::TlsConnector::from(self.config.clone()),
            name,
            negotiated: self.negotiated.clone(),
        })
    }
}

/// One connection's TLS handshake.
pub struct RustlsConnect {
    connector: tokio_rustls::TlsConnector,
    name: ServerName<'static>,
    negotiated: Arc<AtomicBool>,
}

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = TlsHandshakeError;
    type Future = Pin<Box<dyn Future<Output = Result<RustlsStream<S>, TlsHandshakeError>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        self.negotiated.store(true, Ordering::SeqCst);
        Box::pin(async move {
            let stream = self
                .connector
                .connect(self.name, stream)
                .await
                .map_err(TlsHandshakeError)?;
            Ok(RustlsStream(stream))
        })
    }
}

/// A TLS stream for `tokio-postgres`. SCRAM channel binding is not offered.
pub struct RustlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for RustlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}
