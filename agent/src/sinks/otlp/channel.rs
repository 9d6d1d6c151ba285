//! The gRPC channel to the collector: plaintext for `http://`, rustls for
//! `https://` (a CA file or the webpki roots; optional client certificate).
//! Connects lazily, so a collector that is down at start-up only delays
//! delivery.
use std::{path::Path, time::Duration};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tonic::{
    metadata::{AsciiMetadataKey, AsciiMetadataValue, MetadataMap},
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity},
};

use super::OtlpError;
use crate::settings::OtlpConfig;

/// Largest PEM file read: a wrong path (a log, a device) is not read whole.
const MAX_PEM_BYTES: u64 = 1 << 20;

/// Reads a TLS file named by `field` (`caFile`, `certFile`, `keyFile`).
fn read_file(field: &'static str, path: &Path) -> Result<Vec<u8>, OtlpError> {
    use std::io::Read;
    let err = |error: String| OtlpError::File { field, path: path.into(), error };
    if !path.is_absolute() {
        return Err(err("must be an absolute path".into()));
    }
    let file = std::fs::File::open(path).map_err(|e| err(format!("cannot open: {e}")))?;
    if !file.metadata().map_err(|e| err(format!("cannot stat: {e}")))?.is_file() {
        return Err(err("not a regular file".into()));
    }
    let mut pem = Vec::new();
    file.take(MAX_PEM_BYTES + 1).read_to_end(&mut pem).map_err(|e| err(format!("cannot read: {e}")))?;
    if pem.len() as u64 > MAX_PEM_BYTES {
        return Err(err(format!("larger than {MAX_PEM_BYTES} bytes")));
    }
    Ok(pem)
}

/// Reads a PEM file and checks it holds at least one certificate.
fn certificates(field: &'static str, path: &Path) -> Result<Vec<u8>, OtlpError> {
    let pem = read_file(field, path)?;
    let err = |error: String| OtlpError::File { field, path: path.into(), error };
    let mut n = 0;
    for cert in CertificateDer::pem_slice_iter(&pem) {
        cert.map_err(|e| err(format!("bad PEM certificate: {e}")))?;
        n += 1;
    }
    if n == 0 {
        return Err(err("no PEM certificate in it".into()));
    }
    Ok(pem)
}

fn private_key(path: &Path) -> Result<Vec<u8>, OtlpError> {
    let pem = read_file("keyFile", path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| OtlpError::File {
        field: "keyFile",
        path: path.into(),
        error: format!("no PEM private key: {e}"),
    })?;
    Ok(pem)
}

fn tls(cfg: &OtlpConfig) -> Result<ClientTlsConfig, OtlpError> {
    let mut tls = ClientTlsConfig::new();
    tls = match &cfg.ca_file {
        Some(ca) => tls.ca_certificate(Certificate::from_pem(certificates("caFile", ca)?)),
        None => tls.with_webpki_roots(),
    };
    match (&cfg.cert_file, &cfg.key_file) {
        (Some(cert), Some(key)) => {
            Ok(tls.identity(Identity::from_pem(certificates("certFile", cert)?, private_key(key)?)))
        }
        (None, None) => Ok(tls),
        _ => Err(OtlpError::Config("certFile and keyFile go together (mutual TLS)".into())),
    }
}

/// A channel that connects on first use (and reconnects after failures).
pub fn lazy(cfg: &OtlpConfig) -> Result<Channel, OtlpError> {
    let https = cfg.endpoint.starts_with("https://");
    if !https && !cfg.endpoint.starts_with("http://") {
        return Err(OtlpError::Config(format!("endpoint `{}`: expected http:// or https://", cfg.endpoint)));
    }
    let has_tls_files = cfg.ca_file.is_some() || cfg.cert_file.is_some() || cfg.key_file.is_some();
    if !https && has_tls_files {
        return Err(OtlpError::Config("TLS files need an https:// endpoint".into()));
    }
    let timeout = Duration::from_millis(cfg.timeout_ms.max(1));
    let mut endpoint = Endpoint::from_shared(cfg.endpoint.clone())
        .map_err(|e| OtlpError::Config(format!("endpoint `{}`: {e}", cfg.endpoint)))?
        .connect_timeout(timeout)
        .timeout(timeout)
        .tcp_nodelay(true)
        // Notices a dead collector on an idle connection.
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10));
    if https {
        endpoint = endpoint.tls_config(tls(cfg)?).map_err(|e| OtlpError::Config(format!("TLS: {e}")))?;
    }
    Ok(endpoint.connect_lazy())
}

/// The configured headers as gRPC metadata (ASCII values only).
pub fn metadata(headers: &[(String, String)]) -> Result<MetadataMap, OtlpError> {
    let mut map = MetadataMap::with_capacity(headers.len());
    for (k, v) in headers {
        let key: AsciiMetadataKey =
            k.to_ascii_lowercase().parse().map_err(|_| OtlpError::Config(format!("header `{k}`: not a valid name")))?;
        let value: AsciiMetadataValue =
            v.parse().map_err(|_| OtlpError::Config(format!("header `{k}`: value is not printable ASCII")))?;
        map.append(key, value);
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(endpoint: &str) -> OtlpConfig {
        OtlpConfig { endpoint: endpoint.into(), ..Default::default() }
    }

    /// Self-signed P-256 certificate for `collector.test` and its key: test
    /// fixtures only (`openssl req -x509 -newkey ec ...`).
    const CERT: &str = "-----BEGIN CERTIFICATE-----\n\
MIIBpTCCAUqgAwIBAgIUJFmUXzuE+8ELIDNwb7iXFqzpxkYwCgYIKoZIzj0EAwIw\n\
GTEXMBUGA1UEAwwOY29sbGVjdG9yLnRlc3QwIBcNMjYxMTIyMDY1NjI0WhgPMjEy\n\
NjEwMjkwNjU2MjRaMBkxFzAVBgNVBAMMDmNvbGxlY3Rvci50ZXN0MFkwEwYHKoZI\n\
zj0CAQYIKoZIzj0DAQcDQgAESij01Q2ay1yQx0NTyRbcjMIvyIx1yjHnylKqeXbM\n\
dP8UEJoLStLJ/beN54Dx6s3MDiW8YST+LINLWtD/2+152aNuMGwwHQYDVR0OBBYE\n\
FAI1OCx0hqtSKu9kHRSLV3GVDtwRMB8GA1UdIwQYMBaAFAI1OCx0hqtSKu9kHRSL\n\
V3GVDtwRMA8GA1UdEwEB/wQFMAMBAf8wGQYDVR0RBBIwEIIOY29sbGVjdG9yLnRl\n\
c3QwCgYIKoZIzj0EAwIDSQAwRgIhALupkyRTapnufRprWnsUm8U1+UucIHC/ZLSs\n\
c4c41NGAAiEArdSUCNXHAMNWnIrRm2K9IaNUmlbHAsgqGneXdsTxOjw=\n\
-----END CERTIFICATE-----\n\
";
    const KEY: &str = "-----BEGIN PRIVATE KEY-----\n\
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgNtAIaVqCq4In1WnP\n\
VVCF2DUWVj2nX+pAJ8BnJD3+62ChRANCAARKKPTVDZrLXJDHQ1PJFtyMwi/IjHXK\n\
MefKUqp5dsx0/xQQmgtK0sn9t43ngPHqzcwOJbxhJP4sg0ta0P/b7XnZ\n\
-----END PRIVATE KEY-----\n\
";

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("warden-otlp-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[tokio::test]
    async fn ca_and_client_certificate_build_a_tls_channel() {
        let dir = temp_dir("mtls");
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, CERT).unwrap();
        std::fs::write(&key, KEY).unwrap();
        let mtls = OtlpConfig {
            ca_file: Some(cert.clone()),
            cert_file: Some(cert.clone()),
            key_file: Some(key.clone()),
            ..cfg("https://collector.test:4317")
        };
        lazy(&mtls).expect("CA + client certificate");
        let no_key = OtlpConfig { key_file: Some(dir.join("absent.pem")), ..mtls.clone() };
        let err = lazy(&no_key).unwrap_err().to_string();
        assert!(err.starts_with("agent.events.otlp.keyFile: ") && err.contains("absent.pem: cannot open"), "{err}");
        let swapped = OtlpConfig { cert_file: Some(key.clone()), key_file: Some(cert.clone()), ..mtls };
        let err = lazy(&swapped).unwrap_err().to_string();
        assert!(err.starts_with("agent.events.otlp.certFile: ") && err.contains("key.pem"), "{err}");
        assert!(err.contains("no PEM certificate"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn plaintext_and_webpki_channels_build_without_a_collector() {
        lazy(&cfg("http://127.0.0.1:1")).expect("http");
        lazy(&cfg("https://collector.example:4317")).expect("https with webpki roots");
    }

    #[tokio::test]
    async fn bad_tls_files_are_refused_at_start() {
        let dir = temp_dir("tls");
        let junk = dir.join("junk.pem");
        std::fs::write(&junk, "not a certificate\n").unwrap();
        let missing = dir.join("missing.pem");

        let with_ca = |p: &Path| OtlpConfig { ca_file: Some(p.into()), ..cfg("https://c:4317") };
        let err = lazy(&with_ca(&junk)).unwrap_err().to_string();
        assert!(err.contains("junk.pem") && err.contains("no PEM certificate"), "{err}");
        let err = lazy(&with_ca(&missing)).unwrap_err().to_string();
        assert!(err.starts_with("agent.events.otlp.caFile: ") && err.contains("missing.pem: cannot open"), "{err}");
        let err = lazy(&with_ca(Path::new("ca.pem"))).unwrap_err().to_string();
        assert_eq!(err, "agent.events.otlp.caFile: ca.pem: must be an absolute path");
        let err = lazy(&with_ca(&dir)).unwrap_err().to_string();
        assert!(err.ends_with(": not a regular file"), "{err}");

        let err = lazy(&OtlpConfig { ca_file: Some(junk.clone()), ..cfg("http://c:4317") }).unwrap_err();
        assert!(err.to_string().contains("https://"), "{err}");
        let half = OtlpConfig { cert_file: Some(junk.clone()), ..cfg("https://c:4317") };
        assert!(lazy(&half).unwrap_err().to_string().contains("go together"));
        assert!(lazy(&cfg("grpc://c:4317")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn headers_become_metadata() {
        let m = metadata(&[("Authorization".into(), "Bearer x".into()), ("x-tenant".into(), "a".into())]).unwrap();
        assert_eq!(m.get("authorization").unwrap(), "Bearer x");
        assert_eq!(m.get("x-tenant").unwrap(), "a");
        assert!(metadata(&[("bad key".into(), "v".into())]).is_err());
        assert!(metadata(&[("k".into(), "line\nbreak".into())]).is_err());
    }
}
