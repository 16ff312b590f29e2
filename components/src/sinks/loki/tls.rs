//! The Loki sink's TLS client configuration (rustls with the `ring` provider).
//!
//! Trust: the system's roots plus `ca_file`. Client certificate for mutual TLS when
//! `cert_file` and `key_file` are set. `insecure_skip_verify` accepts any server certificate
//! (and says so at error level): for tests only.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::LokiTls;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds the client configuration; errors name the file and what was wrong.
pub fn client_config(tls: &LokiTls, sink: &str) -> Result<ClientConfig, String> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?;
    let builder = if tls.insecure_skip_verify {
        tracing::error!(
            sink,
            "tls.insecure_skip_verify is set: the Loki server's certificate is NOT checked; anyone on the network path can read and alter the logs."
        );
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider())))
    } else {
        let mut roots = RootCertStore::empty();
        let native = rustls_native_certs_load();
        let (added, _) = roots.add_parsable_certificates(native);
        if let Some(path) = &tls.ca_file {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("tls.ca_file: cannot read {}: {e}", path.display()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("tls.ca_file: {} is not PEM: {e}", path.display()))?;
            if certs.is_empty() {
                return Err(format!("tls.ca_file: no certificate in {}", path.display()));
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| format!("tls.ca_file: {}: {e}", path.display()))?;
            }
        } else if added == 0 {
            tracing::warn!(
                sink,
                "No system CA certificates found; https endpoints will fail unless tls.ca_file is set."
            );
        }
        builder.with_root_certificates(roots)
    };
    match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .map_err(|e| format!("tls.cert_file: cannot read {}: {e}", cert.display()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("tls.cert_file: {} is not PEM: {e}", cert.display()))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("tls.key_file: {}: {e}", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("tls: client certificate: {e}"))
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}

/// The system's CA certificates (none if they cannot be read).
fn rustls_native_certs_load() -> Vec<CertificateDer<'static>> {
    let found = rustls_native_certs::load_native_certs();
    for error in &found.errors {
        tracing::debug!(%error, "A system CA certificate could not be loaded.");
    }
    found.certs
}

/// Accepts every server certificate but still checks handshake signatures.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
