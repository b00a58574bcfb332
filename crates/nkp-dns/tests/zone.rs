//! Location against a real zone served by hickory-server on loopback.

#![allow(clippy::unwrap_used)]

mod common;

use common::fixture_server;

#[tokio::test]
async fn smoke() {
    let srv = fixture_server().await;
    let dns = srv.resolver();
    let ips = dns.ips("test100.local", false).await.unwrap();
    assert_eq!(ips.len(), 2, "{ips:?}");
    let n = dns.naptr("test.local", false).await.unwrap();
    println!("{n:?}");
    let s = dns.srvs("_sip._tcp.test2.local", false).await.unwrap();
    println!("{s:?}");
    srv.stop().await;
}
