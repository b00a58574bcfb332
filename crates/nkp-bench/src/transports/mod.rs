//! The transports under test, one module each, all listed in [`all`].
//!
//! A transport says how the nkpacket echo server listens (a URI), how the hand-written
//! baseline server is written (plain tokio, tokio-util, tokio-rustls, fastwebsockets), and how the load
//! client connects ([`Transport::connect`], returning a [`Conn`]). Which measurements apply
//! to it is [`Rows`]. Adding a transport is adding a module here and one line to
//! [`all`]; the suite, the server processes and the report pick it up by name.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use crate::client::{Plan, Samples};

pub mod tcp;
pub mod tls;
pub mod udp;
pub mod ws;

/// A boxed, sendable future.
pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The certificate every TLS server of a run uses (self-signed for `localhost` and
/// 127.0.0.1), and the client configuration that trusts it.
#[derive(Clone)]
pub struct Certs {
    /// PEM certificate (its own CA).
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

impl Certs {
    /// The files in `dir`, as written by `nkpacket::tls::write_self_signed`.
    pub fn in_dir(dir: &std::path::Path) -> Certs {
        Certs {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        }
    }
}

/// What the load client needs besides an address.
#[derive(Clone)]
pub struct ClientCtx {
    /// Client TLS configuration trusting [`Certs::cert`], without session resumption (every
    /// connection makes a full handshake, for both implementations).
    pub tls: Arc<rustls::ClientConfig>,
}

/// Which measurements a transport takes part in.
#[derive(Debug, Clone, Copy)]
pub struct Rows {
    /// Echo throughput and latency (1/16/64 connections, 64 B and 1 KiB).
    pub echo: bool,
    /// Connection set-up rate.
    pub setup: bool,
    /// Target for memory per idle connection in KiB (`None`: not measured).
    pub idle_kib: Option<f64>,
    /// Target throughput ratio against the baseline.
    pub min_ratio: f64,
}

/// One client connection of the load generator.
pub trait Conn: Send {
    /// Closed-loop echo of `wire` (already framed as the server expects) until the plan
    /// ends: one message in flight, its round trip timed.
    fn run(self: Box<Self>, wire: Arc<[u8]>, plan: Plan) -> BoxFut<'static, io::Result<Samples>>;

    /// One round trip of `wire` (a set-up or an idle connection proving it is served).
    fn ping<'a>(&'a mut self, wire: &'a [u8]) -> BoxFut<'a, io::Result<()>>;
}

/// A transport under test.
pub trait Transport: Send + Sync {
    /// Row name (`udp`, `tcp`, `tcp4`, `tls`, `ws`, `wss`).
    fn name(&self) -> &'static str;

    /// Measurements that apply.
    fn rows(&self) -> Rows;

    /// The nkpacket echo listener's URI (on 127.0.0.1 port 0).
    fn nk_uri(&self, certs: &Certs) -> String;

    /// Frames a payload as the server expects it on the wire (length prefix, ...).
    fn wire(&self, payload: &[u8]) -> Vec<u8> {
        payload.to_vec()
    }

    /// Binds the hand-written baseline echo server on 127.0.0.1 port 0 and returns its
    /// address and the future serving it.
    fn baseline(
        &self,
        certs: &Certs,
    ) -> BoxFut<'static, io::Result<(SocketAddr, BoxFut<'static, ()>)>>;

    /// Opens one client connection to `addr`.
    fn connect(
        &self,
        addr: SocketAddr,
        ctx: &ClientCtx,
    ) -> BoxFut<'static, io::Result<Box<dyn Conn>>>;
}

/// Every transport of the suite, in report order.
pub fn all() -> Vec<Box<dyn Transport>> {
    vec![
        Box::new(udp::Udp),
        Box::new(tcp::Tcp::raw()),
        Box::new(tcp::Tcp::prefix4()),
        Box::new(tls::Tls),
        Box::new(ws::Ws),
        Box::new(ws::Wss),
    ]
}

/// The transport called `name`.
pub fn by_name(name: &str) -> Option<Box<dyn Transport>> {
    all().into_iter().find(|t| t.name() == name)
}
