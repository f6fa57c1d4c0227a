//! A throw-away certificate authority with server and client certificates, for
//! TLS tests (`mqtts://`, `rediss://`).

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, date_time_ymd,
};

use crate::process::{HarnessError, open_permissions};

/// What to generate.
#[derive(Debug, Clone)]
pub struct CertOptions {
    /// Names the server certificate is valid for (DNS names or IP addresses).
    pub server_names: Vec<String>,
    /// Make the server certificate expired (valid 2000-01-01 .. 2001-01-01).
    pub expired: bool,
}

impl Default for CertOptions {
    fn default() -> Self {
        Self {
            server_names: vec!["localhost".into(), "127.0.0.1".into()],
            expired: false,
        }
    }
}

/// PEM files of a CA, a server certificate signed by it and a client
/// certificate signed by it, in a private temporary directory.
#[derive(Debug, Clone)]
pub struct Certs {
    /// The CA certificate (trust anchor for clients and servers).
    pub ca: PathBuf,
    /// The server certificate.
    pub server_cert: PathBuf,
    /// The server private key.
    pub server_key: PathBuf,
    /// The client certificate (for mutual TLS).
    pub client_cert: PathBuf,
    /// The client private key.
    pub client_key: PathBuf,
    _dir: std::sync::Arc<tempfile::TempDir>,
}

impl Certs {
    /// A CA plus server (`localhost`, `127.0.0.1`) and client certificates.
    ///
    /// ```
    /// let certs = nemo_testkit::Certs::generate().unwrap();
    /// assert!(std::fs::read_to_string(&certs.ca).unwrap().contains("BEGIN CERTIFICATE"));
    /// ```
    pub fn generate() -> Result<Self, HarnessError> {
        Self::with_options(&CertOptions::default())
    }

    /// Certificates with the given options (other host names, expired).
    pub fn with_options(opts: &CertOptions) -> Result<Self, HarnessError> {
        let dir = tempfile::Builder::new().prefix("nemo-certs-").tempdir()?;
        open_permissions(dir.path(), 0o755)?;
        let err = |e: rcgen::Error| HarnessError::Certs(e.to_string());

        let ca_key = KeyPair::generate().map_err(err)?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "nemo-mqtt test CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca_params.self_signed(&ca_key).map_err(err)?;
        let issuer = Issuer::new(ca_params, &ca_key);

        let server_key = KeyPair::generate().map_err(err)?;
        let mut server_params = CertificateParams::new(opts.server_names.clone()).map_err(err)?;
        server_params
            .distinguished_name
            .push(DnType::CommonName, "nemo-mqtt test server");
        server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        if opts.expired {
            server_params.not_before = date_time_ymd(2000, 1, 1);
            server_params.not_after = date_time_ymd(2001, 1, 1);
        }
        let server_cert = server_params.signed_by(&server_key, &issuer).map_err(err)?;

        let client_key = KeyPair::generate().map_err(err)?;
        let mut client_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        client_params
            .distinguished_name
            .push(DnType::CommonName, "nemo-bridge");
        client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client_cert = client_params.signed_by(&client_key, &issuer).map_err(err)?;

        let write = |name: &str, pem: String| -> Result<PathBuf, HarnessError> {
            let p = dir.path().join(name);
            std::fs::write(&p, pem)?;
            open_permissions(&p, 0o644)?;
            Ok(p)
        };
        Ok(Self {
            ca: write("ca.pem", ca_cert.pem())?,
            server_cert: write("server.pem", server_cert.pem())?,
            server_key: write("server.key", server_key.serialize_pem())?,
            client_cert: write("client.pem", client_cert.pem())?,
            client_key: write("client.key", client_key.serialize_pem())?,
            _dir: std::sync::Arc::new(dir),
        })
    }

    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        self._dir.path()
    }
}
