//! Interop with a real dnsmasq serving NAPTR, SRV, A and AAAA records on loopback.
//!
//! Skipped (with a note on stderr) when dnsmasq is not installed, unless `NKP_REQUIRE_PEERS`
//! is set, in which case a missing dnsmasq is a failure.

#![allow(clippy::unwrap_used)]

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nkp_dns::{DnsConfig, DnsResolver, LocateRequest, SimpleRules};

fn find_dnsmasq(test: &str) -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("dnsmasq"))
                .collect()
        })
        .unwrap_or_default();
    candidates.push("/usr/sbin/dnsmasq".into());
    candidates.push("/sbin/dnsmasq".into());
    if let Some(p) = candidates.into_iter().find(|p| p.is_file()) {
        return Some(p);
    }
    if std::env::var_os("NKP_REQUIRE_PEERS").is_some() {
        panic!("{test}: dnsmasq not installed and NKP_REQUIRE_PEERS is set");
    }
    eprintln!("SKIPPED {test}: dnsmasq not installed");
    None
}

/// Kills dnsmasq when the test ends, however it ends.
struct Dnsmasq {
    child: Child,
    port: u16,
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    // A port free for both UDP and TCP right now (dnsmasq binds both).
    loop {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn spawn(bin: &PathBuf, records: &[&str]) -> Dnsmasq {
    let port = free_port();
    let child = Command::new(bin)
        .args([
            "--no-daemon",
            "--conf-file=/dev/null",
            "--pid-file=",
            "--no-resolv",
            "--no-hosts",
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            "--local=/example.test/",
            "--local-ttl=5",
            "--user=",
        ])
        .arg(format!("--port={port}"))
        .args(records)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    Dnsmasq { child, port }
}

#[tokio::test]
async fn dnsmasq_naptr_srv_a_aaaa() {
    let Some(bin) = find_dnsmasq("dnsmasq_naptr_srv_a_aaaa") else {
        return;
    };
    let mut dm = spawn(
        &bin,
        &[
            // Higher order first on purpose: the ordering is ours.
            "--naptr-record=example.test,20,50,s,SIP+D2U,,_sip._udp.example.test",
            "--naptr-record=example.test,10,50,s,SIPS+D2T,,_sips._tcp.example.test",
            "--srv-host=_sip._udp.example.test,sip1.example.test,5060,10,60",
            "--srv-host=_sips._tcp.example.test,sip2.example.test,5061,10,10",
            "--host-record=sip1.example.test,127.0.0.11,::1",
            "--host-record=sip2.example.test,127.0.0.12",
        ],
    );
    let mut cfg = DnsConfig::with_nameservers(vec![([127, 0, 0, 1], dm.port).into()]);
    cfg.timeout = Duration::from_millis(500);
    cfg.attempts = 1;
    let dns = DnsResolver::new(cfg).unwrap().with_rng_seed(5);

    // Wait (bounded) until dnsmasq answers.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(ips) = dns.ips("sip2.example.test", true).await
            && !ips.is_empty()
        {
            break;
        }
        if let Ok(Some(status)) = dm.child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = dm.child.stderr.take() {
                use std::io::Read;
                let _ = e.read_to_string(&mut err);
            }
            panic!("dnsmasq exited with {status}: {err}");
        }
        assert!(
            Instant::now() < deadline,
            "dnsmasq did not answer within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let naptr = dns.naptr("example.test", false).await.unwrap();
    let orders: Vec<u16> = naptr.iter().map(|r| r.order).collect();
    assert_eq!(orders, [10, 20]);
    assert_eq!(naptr[0].services, "SIPS+D2T");

    let ips = dns.ips("sip1.example.test", false).await.unwrap();
    assert_eq!(
        ips,
        [
            "127.0.0.11".parse::<IpAddr>().unwrap(),
            "::1".parse().unwrap()
        ]
    );

    let got = dns
        .locate(
            &LocateRequest::new("sip", "example.test"),
            &SimpleRules::sip(),
        )
        .await
        .unwrap();
    let got: Vec<String> = got.iter().map(|d| d.to_string()).collect();
    assert_eq!(
        got,
        ["tls 127.0.0.12 5061", "udp 127.0.0.11 5060", "udp ::1 5060"]
    );
    // `sips` only maps the SIPS service.
    let got = dns
        .locate(
            &LocateRequest::new("sips", "example.test"),
            &SimpleRules::sip(),
        )
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    // A name dnsmasq does not know (in its local domain) contributes nothing.
    assert!(
        dns.ips("nope.example.test", false)
            .await
            .unwrap()
            .is_empty()
    );
    drop(dm);
}
