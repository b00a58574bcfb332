//! UDP. Baseline: one tokio `UdpSocket`, one task, `recv_from` then `send_to`.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::UdpSocket;

use super::{BoxFut, Certs, ClientCtx, Conn, Rows, Transport};
use crate::client::{Plan, Samples, udp_loop, udp_ping};

/// UDP datagrams.
pub struct Udp;

impl Transport for Udp {
    fn name(&self) -> &'static str {
        "udp"
    }

    fn rows(&self) -> Rows {
        Rows {
            echo: true,
            setup: false,
            idle_kib: None,
            min_ratio: 1.0,
        }
    }

    fn nk_uri(&self, _certs: &Certs) -> String {
        "echo://127.0.0.1:0;transport=udp".to_string()
    }

    fn baseline(
        &self,
        _certs: &Certs,
    ) -> BoxFut<'static, io::Result<(SocketAddr, BoxFut<'static, ()>)>> {
        Box::pin(async move {
            let sock = UdpSocket::bind("127.0.0.1:0").await?;
            let addr = sock.local_addr()?;
            let serve: BoxFut<'static, ()> = Box::pin(async move {
                let mut buf = vec![0u8; 65_536];
                loop {
                    let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                        continue;
                    };
                    let _ = sock.send_to(&buf[..n], from).await;
                }
            });
            Ok((addr, serve))
        })
    }

    fn connect(
        &self,
        addr: SocketAddr,
        _ctx: &ClientCtx,
    ) -> BoxFut<'static, io::Result<Box<dyn Conn>>> {
        Box::pin(async move {
            let sock = UdpSocket::bind("127.0.0.1:0").await?;
            sock.connect(addr).await?;
            Ok(Box::new(UdpConn::new(sock)) as Box<dyn Conn>)
        })
    }
}

/// A client "connection": a connected UDP socket.
pub struct UdpConn {
    sock: UdpSocket,
    buf: Vec<u8>,
}

impl UdpConn {
    /// Wraps a connected socket.
    pub fn new(sock: UdpSocket) -> UdpConn {
        UdpConn {
            sock,
            buf: vec![0; 65_536],
        }
    }
}

impl Conn for UdpConn {
    fn run(self: Box<Self>, wire: Arc<[u8]>, plan: Plan) -> BoxFut<'static, io::Result<Samples>> {
        Box::pin(async move { udp_loop(&self.sock, &wire, plan, |_| true).await })
    }

    fn ping<'a>(&'a mut self, wire: &'a [u8]) -> BoxFut<'a, io::Result<()>> {
        Box::pin(async move {
            if udp_ping(&self.sock, wire, &mut self.buf, &|_: &[u8]| true).await? {
                Ok(())
            } else {
                Err(io::Error::new(io::ErrorKind::TimedOut, "no UDP answer"))
            }
        })
    }
}
