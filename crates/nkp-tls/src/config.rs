//! Building rustls configurations from [`Options`]: certificate and key files, CA bundles,
//! peer verification, protocol versions, ALPN; and a cache so that files are parsed once.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use nkp_core::{Error, Options};
use parking_lot::Mutex;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig,
    SignatureScheme, SupportedProtocolVersion,
};

/// The crypto provider of every configuration built here: *ring* (see the crate docs).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds the server configuration of a TLS listener from its options, without ALPN and
/// without caching (see [`ConfigCache`] for both).
///
/// Options read: `tls_certfile` and `tls_keyfile` (required, PEM; the certificate file may
/// hold the whole chain), `tls_verify` (`true`: require a client certificate signed by a CA of
/// `tls_cacertfile`), `tls_cacertfile`, `tls_depth` (maximum number of intermediate
/// certificates in a client chain), `tls_versions` (`tls1.2`, `tls1.3`; default both),
/// `tls_password` (encrypted keys are refused with an explanation).
///
/// Errors are [`Error::Tls`] naming the option and the file.
///
/// ```
/// let dir = std::env::temp_dir().join(format!("nkp-tls-doc-{}", std::process::id()));
/// let (cert, key) = nkp_tls::write_self_signed(&dir, &["localhost".to_string()]).unwrap();
/// let mut opts = nkp_core::Options::default();
/// opts.set("tls_certfile", cert.to_str().unwrap()).unwrap();
/// opts.set("tls_keyfile", key.to_str().unwrap()).unwrap();
/// opts.set("tls_versions", "tls1.3").unwrap();
/// let config = nkp_tls::server_config(&opts).unwrap();
/// assert!(config.alpn_protocols.is_empty());
///
/// // a listener without certificate files is an error
/// let err = nkp_tls::server_config(&nkp_core::Options::default()).unwrap_err();
/// assert!(err.to_string().contains("tls_certfile"));
/// # std::fs::remove_dir_all(&dir).unwrap();
/// ```
pub fn server_config(opts: &Options) -> Result<Arc<ServerConfig>, Error> {
    build_server_config(opts, &[])
}

/// Builds the client configuration of a TLS connection from its options, without ALPN and
/// without caching (see [`ConfigCache`] for both).
///
/// Verification of the server is on unless `tls_verify=false`: against the CAs of
/// `tls_cacertfile` when given, else the Mozilla roots of `webpki-roots`. With
/// `tls_verify=false` any certificate is accepted, but the handshake signatures are still
/// checked (the peer must hold the key of the certificate it shows). The server name to
/// check (and to send as SNI) is given at connect time, see [`crate::server_name`].
///
/// `tls_certfile` and `tls_keyfile`, when both are given, are presented as the client
/// certificate. `tls_versions` and `tls_depth` apply as for servers.
///
/// ```
/// let mut opts = nkp_core::Options::default();
/// opts.set("tls_verify", "false").unwrap();
/// let config = nkp_tls::client_config(&opts).unwrap();
/// assert!(config.enable_sni);
/// ```
pub fn client_config(opts: &Options) -> Result<Arc<ClientConfig>, Error> {
    build_client_config(opts, &[])
}

fn versions(opts: &Options) -> Result<Vec<&'static SupportedProtocolVersion>, Error> {
    let Some(names) = &opts.tls_versions else {
        return Ok(vec![&rustls::version::TLS13, &rustls::version::TLS12]);
    };
    let mut out: Vec<&'static SupportedProtocolVersion> = Vec::new();
    for n in names {
        let v = match n.to_ascii_lowercase().as_str() {
            "tls1.3" | "tlsv1.3" => &rustls::version::TLS13,
            "tls1.2" | "tlsv1.2" => &rustls::version::TLS12,
            other => {
                return Err(Error::Tls(format!(
                    "tls_versions: unsupported version {other:?} (use tls1.2 and/or tls1.3)"
                )));
            }
        };
        if !out.iter().any(|x| x.version == v.version) {
            out.push(v);
        }
    }
    if out.is_empty() {
        return Err(Error::Tls("tls_versions is empty".into()));
    }
    Ok(out)
}

fn read_file(option: &str, path: &str) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| Error::Tls(format!("cannot read {option} {path:?}: {e}")))
}

/// Reads every certificate of a PEM file.
pub(crate) fn load_certs(option: &str, path: &str) -> Result<Vec<CertificateDer<'static>>, Error> {
    let data = read_file(option, path)?;
    let certs = CertificateDer::pem_slice_iter(&data)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Tls(format!("{option} {path:?} is not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(Error::Tls(format!(
            "{option} {path:?} holds no certificate (expected PEM \"BEGIN CERTIFICATE\" blocks)"
        )));
    }
    Ok(certs)
}

/// Reads the private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub(crate) fn load_key(
    path: &str,
    password: Option<&str>,
) -> Result<PrivateKeyDer<'static>, Error> {
    let data = read_file("tls_keyfile", path)?;
    let text = String::from_utf8_lossy(&data);
    if text.contains("ENCRYPTED PRIVATE KEY") || text.contains("Proc-Type: 4,ENCRYPTED") {
        let pw = if password.is_some() {
            " (tls_password was given)"
        } else {
            ""
        };
        return Err(Error::Tls(format!(
            "tls_keyfile {path:?} is encrypted{pw}: encrypted private keys are not supported; \
             decrypt it first, e.g. `openssl pkey -in {path} -out key-plain.pem` \
             (it asks for the password), and use the decrypted file"
        )));
    }
    PrivateKeyDer::from_pem_slice(&data).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => Error::Tls(format!(
            "tls_keyfile {path:?} holds no private key (expected a PEM \"PRIVATE KEY\", \
             \"RSA PRIVATE KEY\" or \"EC PRIVATE KEY\" block)"
        )),
        e => Error::Tls(format!("tls_keyfile {path:?} is not valid PEM: {e}")),
    })
}

fn load_roots(path: &str) -> Result<RootCertStore, Error> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs("tls_cacertfile", path)? {
        roots.add(cert).map_err(|e| {
            Error::Tls(format!(
                "tls_cacertfile {path:?}: certificate not usable as a trust anchor: {e}"
            ))
        })?;
    }
    Ok(roots)
}

pub(crate) fn build_server_config(
    opts: &Options,
    alpn: &[Vec<u8>],
) -> Result<Arc<ServerConfig>, Error> {
    let (Some(certfile), Some(keyfile)) = (&opts.tls_certfile, &opts.tls_keyfile) else {
        return Err(Error::Tls(
            "listener needs tls_certfile and tls_keyfile (PEM certificate chain and private \
             key); `nkp listen` generates a self-signed pair when they are missing"
                .into(),
        ));
    };
    let certs = load_certs("tls_certfile", certfile)?;
    let key = load_key(keyfile, opts.tls_password.as_deref())?;
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions(opts)?)
        .map_err(|e| Error::Tls(format!("tls_versions: {e}")))?;
    let builder = if opts.tls_verify == Some(true) {
        let Some(ca) = &opts.tls_cacertfile else {
            return Err(Error::Tls(
                "tls_verify=true on a listener requires client certificates: give \
                 tls_cacertfile, the CA bundle (PEM) to verify them against"
                    .into(),
            ));
        };
        let roots = Arc::new(load_roots(ca)?);
        let inner = WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
            .build()
            .map_err(|e| Error::Tls(format!("tls_cacertfile {ca:?}: {e}")))?;
        let verifier: Arc<dyn ClientCertVerifier> = match opts.tls_depth {
            Some(depth) => Arc::new(DepthLimited { inner, depth }),
            None => inner,
        };
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| {
        Error::Tls(format!(
            "tls_certfile {certfile:?} and tls_keyfile {keyfile:?} cannot be used: {e}"
        ))
    })?;
    config.alpn_protocols = alpn.to_vec();
    Ok(Arc::new(config))
}

pub(crate) fn build_client_config(
    opts: &Options,
    alpn: &[Vec<u8>],
) -> Result<Arc<ClientConfig>, Error> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions(opts)?)
        .map_err(|e| Error::Tls(format!("tls_versions: {e}")))?;
    let verifier: Arc<dyn ServerCertVerifier> = if opts.effective_tls_verify() {
        let roots = match &opts.tls_cacertfile {
            Some(ca) => load_roots(ca)?,
            None => RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            },
        };
        rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .map_err(|e| Error::Tls(format!("cannot build the server verifier: {e}")))?
    } else {
        Arc::new(AcceptAnyServerCert {
            algs: provider.signature_verification_algorithms,
        })
    };
    let verifier: Arc<dyn ServerCertVerifier> = match opts.tls_depth {
        Some(depth) => Arc::new(DepthLimited {
            inner: verifier,
            depth,
        }),
        None => verifier,
    };
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match (&opts.tls_certfile, &opts.tls_keyfile) {
        (Some(certfile), Some(keyfile)) => {
            let certs = load_certs("tls_certfile", certfile)?;
            let key = load_key(keyfile, opts.tls_password.as_deref())?;
            builder.with_client_auth_cert(certs, key).map_err(|e| {
                Error::Tls(format!(
                    "tls_certfile {certfile:?} and tls_keyfile {keyfile:?} cannot be used \
                     as client certificate: {e}"
                ))
            })?
        }
        (Some(_), None) | (None, Some(_)) => {
            return Err(Error::Tls(
                "a client certificate needs both tls_certfile and tls_keyfile".into(),
            ));
        }
        (None, None) => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.to_vec();
    Ok(Arc::new(config))
}

/// `tls_verify=false` on a client: any certificate is accepted, but the handshake signature
/// must still be made by the key of the certificate shown.
#[derive(Debug)]
struct AcceptAnyServerCert {
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyServerCert {
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
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// `tls_depth`: refuses peer chains with more intermediate certificates than allowed, then
/// asks the wrapped verifier.
#[derive(Debug)]
struct DepthLimited<V: ?Sized> {
    inner: Arc<V>,
    depth: u8,
}

impl<V: ?Sized> DepthLimited<V> {
    fn check(&self, intermediates: &[CertificateDer<'_>]) -> Result<(), rustls::Error> {
        if intermediates.len() > usize::from(self.depth) {
            return Err(rustls::Error::General(format!(
                "peer certificate chain has {} intermediate certificates, more than tls_depth {}",
                intermediates.len(),
                self.depth
            )));
        }
        Ok(())
    }
}

impl ServerCertVerifier for DepthLimited<dyn ServerCertVerifier> {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(intermediates)?;
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

impl ClientCertVerifier for DepthLimited<dyn ClientCertVerifier> {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(intermediates)?;
        self.inner
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Identity of a file for the cache: path, modification time and size (a rewritten file,
/// such as a renewed certificate, is read again).
type FileStamp = (String, Option<SystemTime>, Option<u64>);

fn stamp(path: &Option<String>) -> Option<FileStamp> {
    path.as_ref().map(|p| {
        let meta = std::fs::metadata(Path::new(p)).ok();
        (
            p.clone(),
            meta.as_ref().and_then(|m| m.modified().ok()),
            meta.map(|m| m.len()),
        )
    })
}

/// Everything a configuration is built from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ConfigKey {
    cert: Option<FileStamp>,
    key: Option<FileStamp>,
    ca: Option<FileStamp>,
    password: Option<String>,
    verify: Option<bool>,
    depth: Option<u8>,
    versions: Option<Vec<String>>,
}

impl ConfigKey {
    fn of(opts: &Options) -> Self {
        ConfigKey {
            cert: stamp(&opts.tls_certfile),
            key: stamp(&opts.tls_keyfile),
            ca: stamp(&opts.tls_cacertfile),
            password: opts.tls_password.clone(),
            verify: opts.tls_verify,
            depth: opts.tls_depth,
            versions: opts.tls_versions.clone(),
        }
    }
}

/// Most configurations kept per side before the cache is emptied.
const CACHE_LIMIT: usize = 64;

/// Server and client configurations already built, keyed by the TLS options they came from
/// (and the files' modification times), with the ALPN protocols to offer.
///
/// A transport keeps one, so that connections with the same options share one configuration
/// (and its session cache) instead of parsing PEM files each time.
///
/// ```
/// use nkp_tls::ConfigCache;
/// let cache = ConfigCache::with_alpn(vec![b"http/1.1".to_vec()]);
/// let mut opts = nkp_core::Options::default();
/// opts.set("tls_verify", "false").unwrap();
/// let a = cache.client_config(&opts).unwrap();
/// let b = cache.client_config(&opts).unwrap();
/// assert!(std::sync::Arc::ptr_eq(&a, &b));
/// assert_eq!(a.alpn_protocols, vec![b"http/1.1".to_vec()]);
/// ```
#[derive(Debug, Default)]
pub struct ConfigCache {
    alpn: Vec<Vec<u8>>,
    servers: Mutex<HashMap<ConfigKey, Arc<ServerConfig>>>,
    clients: Mutex<HashMap<ConfigKey, Arc<ClientConfig>>>,
}

impl ConfigCache {
    /// An empty cache without ALPN.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty cache whose configurations offer (client) or accept (server) these ALPN
    /// protocols, in preference order (e.g. `b"http/1.1"` for WSS and HTTPS).
    pub fn with_alpn(alpn: Vec<Vec<u8>>) -> Self {
        ConfigCache {
            alpn,
            ..Self::default()
        }
    }

    /// The ALPN protocols of this cache's configurations.
    pub fn alpn(&self) -> &[Vec<u8>] {
        &self.alpn
    }

    /// The server configuration for `opts` (see [`server_config`]), built once.
    pub fn server_config(&self, opts: &Options) -> Result<Arc<ServerConfig>, Error> {
        let key = ConfigKey::of(opts);
        if let Some(c) = self.servers.lock().get(&key) {
            return Ok(c.clone());
        }
        let config = build_server_config(opts, &self.alpn)?;
        let mut map = self.servers.lock();
        if map.len() >= CACHE_LIMIT {
            map.clear();
        }
        map.insert(key, config.clone());
        Ok(config)
    }

    /// The client configuration for `opts` (see [`client_config`]), built once.
    pub fn client_config(&self, opts: &Options) -> Result<Arc<ClientConfig>, Error> {
        let key = ConfigKey::of(opts);
        if let Some(c) = self.clients.lock().get(&key) {
            return Ok(c.clone());
        }
        let config = build_client_config(opts, &self.alpn)?;
        let mut map = self.clients.lock();
        if map.len() >= CACHE_LIMIT {
            map.clear();
        }
        map.insert(key, config.clone());
        Ok(config)
    }

    /// Forgets every configuration built so far.
    pub fn clear(&self) {
        self.servers.lock().clear();
        self.clients.lock().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_default_to_both_and_can_be_restricted() {
        let all = versions(&Options::default()).unwrap();
        assert_eq!(all.len(), 2);
        let mut o = Options::default();
        o.set("tls_versions", "tls1.2,tls1.2").unwrap();
        let v = versions(&o).unwrap();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].version, rustls::ProtocolVersion::TLSv1_2);
        o.tls_versions = Some(vec!["ssl3".into()]);
        assert!(matches!(versions(&o), Err(Error::Tls(m)) if m.contains("ssl3")));
        o.tls_versions = Some(vec![]);
        assert!(versions(&o).is_err());
    }

    #[test]
    fn legacy_encrypted_pem_keys_are_recognised() {
        let dir = std::env::temp_dir().join(format!("nkp-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("legacy.key");
        std::fs::write(
            &path,
            "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\
             DEK-Info: AES-128-CBC,00112233445566778899AABBCCDDEEFF\n\nAAAA\n\
             -----END RSA PRIVATE KEY-----\n",
        )
        .unwrap();
        let err = load_key(path.to_str().unwrap(), None).unwrap_err();
        let msg = err.to_string();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            msg.contains("encrypted") && msg.contains("legacy.key"),
            "{msg}"
        );
        assert!(!msg.contains("tls_password was given"), "{msg}");
    }

    #[test]
    fn cache_reuses_and_rebuilds_on_option_change() {
        let cache = ConfigCache::new();
        let mut o = Options::default();
        o.set("tls_verify", "false").unwrap();
        let a = cache.client_config(&o).unwrap();
        assert!(Arc::ptr_eq(&a, &cache.client_config(&o).unwrap()));
        o.set("tls_versions", "tls1.3").unwrap();
        let b = cache.client_config(&o).unwrap();
        assert!(!Arc::ptr_eq(&a, &b));
        cache.clear();
        assert!(!Arc::ptr_eq(&b, &cache.client_config(&o).unwrap()));
    }

    #[test]
    fn half_a_client_certificate_is_an_error() {
        let mut o = Options::default();
        o.set("tls_certfile", "/nonexistent/cert.pem").unwrap();
        let msg = client_config(&o).unwrap_err().to_string();
        assert!(msg.contains("both tls_certfile and tls_keyfile"), "{msg}");
    }
}
