//! TLS (raw echo inside TLS). Baseline: tokio-rustls with the default rustls server
//! configuration (ring provider), echoing as the raw TCP baseline does.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::tcp::{StreamConn, raw_echo};
use super::{BoxFut, Certs, ClientCtx, Conn, Rows, Transport};

/// TLS over TCP.
pub struct Tls;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn bad(what: impl std::fmt::Display) -> io::Error {
    io::Error::other(what.to_string())
}

/// The baseline's server configuration: rustls defaults with the run's certificate.
pub fn server_config(certs: &Certs) -> io::Result<Arc<rustls::ServerConfig>> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&certs.cert)
        .map_err(|e| bad(format!("{}: {e}", certs.cert.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad(format!("{}: {e}", certs.cert.display())))?;
    let key = PrivateKeyDer::from_pem_file(&certs.key)
        .map_err(|e| bad(format!("{}: {e}", certs.key.display())))?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(bad)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(bad)?;
    Ok(Arc::new(config))
}

/// The load client's configuration: trusts the run's certificate, never resumes sessions.
pub fn client_config(certs: &Certs) -> io::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(&certs.cert)
        .map_err(|e| bad(format!("{}: {e}", certs.cert.display())))?
    {
        roots
            .add(c.map_err(|e| bad(format!("{}: {e}", certs.cert.display())))?)
            .map_err(bad)?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(bad)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

impl Transport for Tls {
    fn name(&self) -> &'static str {
        "tls"
    }

    fn rows(&self) -> Rows {
        Rows {
            echo: true,
            setup: true,
            idle_kib: Some(32.0),
            min_ratio: 0.9,
        }
    }

    fn nk_uri(&self, certs: &Certs) -> String {
        format!(
            "echo://127.0.0.1:0;transport=tls;tcp_max_connections=30000;tls_certfile={};tls_keyfile={}",
            certs.cert.display(),
            certs.key.display()
        )
    }

    fn baseline(
        &self,
        certs: &Certs,
    ) -> BoxFut<'static, io::Result<(SocketAddr, BoxFut<'static, ()>)>> {
        let config = server_config(certs);
        Box::pin(async move {
            let acceptor = TlsAcceptor::from(config?);
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            let serve: BoxFut<'static, ()> = Box::pin(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        if let Ok(tls) = acceptor.accept(stream).await {
                            raw_echo(tls).await;
                        }
                    });
                }
            });
            Ok((addr, serve))
        })
    }

    fn connect(
        &self,
        addr: SocketAddr,
        ctx: &ClientCtx,
    ) -> BoxFut<'static, io::Result<Box<dyn Conn>>> {
        let connector = TlsConnector::from(ctx.tls.clone());
        Box::pin(async move {
            let s = TcpStream::connect(addr).await?;
            s.set_nodelay(true)?;
            let name = ServerName::try_from("localhost").map_err(bad)?;
            let tls = connector.connect(name, s).await?;
            Ok(Box::new(StreamConn::new(tls)) as Box<dyn Conn>)
        })
    }
}
