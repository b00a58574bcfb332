//! Self-signed certificates for listeners started without certificate files (the `nkp`
//! command) and for tests.

use std::path::{Path, PathBuf};

use nkp_core::Error;

/// Host names used when [`self_signed`] is given none.
pub const DEFAULT_HOSTS: &[&str] = &["localhost", "127.0.0.1", "::1"];

/// Generates a fresh self-signed certificate (ECDSA P-256) for `hosts` and returns
/// `(certificate PEM, private key PEM)`.
///
/// Each host becomes a subject alternative name: an IP address SAN when it parses as one
/// (brackets around IPv6 literals are removed), a DNS name otherwise. With no hosts, the
/// certificate is for [`DEFAULT_HOSTS`].
///
/// ```
/// let (cert, key) = nkp_tls::self_signed(&["localhost".into(), "127.0.0.1".into()]).unwrap();
/// assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"));
/// assert!(key.contains("PRIVATE KEY"));
/// ```
pub fn self_signed(hosts: &[String]) -> Result<(String, String), Error> {
    let names: Vec<String> = if hosts.is_empty() {
        DEFAULT_HOSTS.iter().map(|h| h.to_string()).collect()
    } else {
        hosts
            .iter()
            .map(|h| {
                h.trim()
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string()
            })
            .collect()
    };
    let certified = rcgen::generate_simple_self_signed(names.clone()).map_err(|e| {
        Error::Tls(format!(
            "cannot generate a self-signed certificate for {names:?}: {e}"
        ))
    })?;
    Ok((certified.cert.pem(), certified.signing_key.serialize_pem()))
}

/// Generates a self-signed certificate with [`self_signed`] and writes it to `dir` (created
/// if missing) as `cert.pem` and `key.pem` (the key readable by its owner only, on Unix).
/// Returns the two paths, ready for `tls_certfile` and `tls_keyfile`.
///
/// ```
/// let dir = std::env::temp_dir().join(format!("nkp-tls-doc-ss-{}", std::process::id()));
/// let (cert, key) = nkp_tls::write_self_signed(&dir, &[]).unwrap();
/// assert!(cert.exists() && key.exists());
/// # std::fs::remove_dir_all(&dir).unwrap();
/// ```
pub fn write_self_signed(dir: &Path, hosts: &[String]) -> Result<(PathBuf, PathBuf), Error> {
    let (cert, key) = self_signed(hosts)?;
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::Tls(format!("cannot create directory {}: {e}", dir.display())))?;
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    std::fs::write(&cert_path, cert)
        .map_err(|e| Error::Tls(format!("cannot write {}: {e}", cert_path.display())))?;
    write_private(&key_path, key.as_bytes())
        .map_err(|e| Error::Tls(format!("cannot write {}: {e}", key_path.display())))?;
    Ok((cert_path, key_path))
}

#[cfg(unix)]
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)
}

#[cfg(not(unix))]
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, data)
}
