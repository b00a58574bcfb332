//! `nkp-bench serve`: one echo (or STUN) server per process, so that each has its own RSS.
//!
//! The server prints `listening <addr>` once bound and serves until its standard input
//! closes (the suite holds the other end: a crashed suite leaves no server behind) or
//! [`MAX_LIFETIME`] has passed.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use nkpacket::{Nkpacket, Options, echo::Echo};
use tokio::net::UdpSocket;

use crate::transports::{self, BoxFut, Certs};

/// Longest a server process lives, whatever happens to the suite.
pub const MAX_LIFETIME: Duration = Duration::from_secs(3600);

/// Which implementation a server runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Impl {
    /// `Nkpacket` with `echo::Echo`.
    Nk,
    /// The hand-written baseline.
    Base,
}

impl Impl {
    /// Command-line name.
    pub fn as_str(self) -> &'static str {
        match self {
            Impl::Nk => "nk",
            Impl::Base => "base",
        }
    }

    /// Parses a command-line name.
    pub fn parse(s: &str) -> Option<Impl> {
        match s {
            "nk" => Some(Impl::Nk),
            "base" => Some(Impl::Base),
            _ => None,
        }
    }
}

/// The service name of the STUN servers.
pub const STUN: &str = "stun";

/// Runs a server until standard input closes. `service` is a transport name or [`STUN`].
pub fn serve(imp: Impl, service: &str, certs: &Certs) -> Result<(), String> {
    crate::raise_fd_limit();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    // Exit when the suite goes away (stdin closes), or after MAX_LIFETIME.
    std::thread::spawn(|| {
        let mut sink = [0u8; 64];
        let mut stdin = std::io::stdin();
        while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
        std::process::exit(0);
    });
    rt.block_on(async move {
        let (addr, serve, _node) = start(imp, service, certs).await?;
        let mut out = std::io::stdout();
        writeln!(out, "listening {addr}")
            .and_then(|_| out.flush())
            .map_err(|e| format!("cannot write to stdout: {e}"))?;
        let _ = tokio::time::timeout(MAX_LIFETIME, serve).await;
        Ok(())
    })
}

/// Starts the server; returns its address, the future serving it (pending forever for
/// nkpacket, whose listener runs on its own) and the node to keep alive.
async fn start(
    imp: Impl,
    service: &str,
    certs: &Certs,
) -> Result<(SocketAddr, BoxFut<'static, ()>, Option<Nkpacket>), String> {
    let uri = if service == STUN {
        "echo://127.0.0.1:0;transport=udp;stun".to_string()
    } else {
        let t = transports::by_name(service).ok_or_else(|| format!("unknown service {service}"))?;
        if imp == Impl::Base {
            let (addr, serve) = t
                .baseline(certs)
                .await
                .map_err(|e| format!("baseline {service} server: {e}"))?;
            return Ok((addr, serve, None));
        }
        t.nk_uri(certs)
    };
    match imp {
        Impl::Nk => {
            let nk = Nkpacket::builder()
                .max_connections(100_000)
                .protocol("echo", Echo)
                .build();
            let l = nk
                .start_listener(uri.as_str(), Options::default())
                .await
                .map_err(|e| format!("nkpacket listener {uri}: {e}"))?;
            let addr = l.info().local();
            Ok((addr, Box::pin(std::future::pending()), Some(nk)))
        }
        Impl::Base => {
            let sock = UdpSocket::bind("127.0.0.1:0")
                .await
                .map_err(|e| format!("baseline stun server: {e}"))?;
            let addr = sock
                .local_addr()
                .map_err(|e| format!("baseline stun server: {e}"))?;
            Ok((addr, Box::pin(stun_baseline(sock)), None))
        }
    }
}

/// The hand-written STUN server: a plain tokio socket answering with `nkp_stun::respond`.
async fn stun_baseline(sock: UdpSocket) {
    let mut buf = vec![0u8; 65_536];
    loop {
        let Ok((n, from)) = sock.recv_from(&mut buf).await else {
            continue;
        };
        if let Some(answer) = nkp_stun::respond(&buf[..n], from) {
            let _ = sock.send_to(&answer, from).await;
        }
    }
}
