//! Interoperability with coturn (Debian package `coturn`): its `turnutils_stunclient` against
//! our server, and our client against its `turnserver -S`. Loopback only, bounded waits.
//!
//! Without the programs the tests print `SKIPPED <test>: coturn not installed` and pass,
//! unless `NKP_REQUIRE_PEERS` is set, in which case they fail.

use std::io;
use std::net::SocketAddr;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nkp_stun::{Attribute, Class, Message, serve};
use tokio::net::UdpSocket;
use tokio::time::Instant;

/// Whether `program` can be run; otherwise reports the skip (or fails when peers are required).
fn available(program: &str, test: &str) -> bool {
    let found = Command::new(program)
        .arg("-h")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        assert!(
            std::env::var_os("NKP_REQUIRE_PEERS").is_none(),
            "{test}: {program} not found and NKP_REQUIRE_PEERS is set"
        );
        eprintln!("SKIPPED {test}: coturn not installed");
    }
    found
}

/// Runs a command to completion, killing it after `limit`.
async fn run_bounded(mut command: Command, limit: Duration) -> Output {
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    tokio::task::spawn_blocking(move || {
        let mut child = command.spawn().expect("spawn");
        let deadline = std::time::Instant::now() + limit;
        loop {
            if child.try_wait().expect("wait").is_some() {
                return child.wait_with_output().expect("output");
            }
            if std::time::Instant::now() >= deadline {
                let _ = child.kill();
                let out = child.wait_with_output().expect("output");
                panic!(
                    "{command:?} still running after {limit:?}; stdout: {}",
                    String::from_utf8_lossy(&out.stdout)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .await
    .expect("join")
}

/// The `UDP reflexive addr: IP:PORT` lines `turnutils_stunclient` prints.
fn reflexive_addrs(stdout: &[u8]) -> Vec<SocketAddr> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|line| line.split("UDP reflexive addr: ").nth(1))
        .filter_map(|addr| addr.trim().parse().ok())
        .collect()
}

fn stunclient(port: u16) -> Command {
    let mut command = Command::new("turnutils_stunclient");
    command.args(["-p", &port.to_string(), "127.0.0.1"]);
    command
}

#[tokio::test]
async fn turnutils_stunclient_against_serve() {
    if !available("turnutils_stunclient", "turnutils_stunclient_against_serve") {
        return;
    }
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = socket.local_addr().unwrap().port();
    let server = tokio::spawn(serve(socket));
    let out = run_bounded(stunclient(port), Duration::from_secs(20)).await;
    server.abort();
    assert!(out.status.success(), "{out:?}");
    let addrs = reflexive_addrs(&out.stdout);
    assert!(
        !addrs.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    for addr in addrs {
        assert_eq!(addr.ip().to_string(), "127.0.0.1");
        assert_ne!(addr.port(), 0);
    }
}

/// The same with a responder loop that records who asked: the client prints exactly the
/// address our `respond` reflected.
#[tokio::test]
async fn turnutils_stunclient_reads_our_mapped_address() {
    if !available(
        "turnutils_stunclient",
        "turnutils_stunclient_reads_our_mapped_address",
    ) {
        return;
    }
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = socket.local_addr().unwrap().port();
    let asked = Arc::new(Mutex::new(Vec::new()));
    let seen = asked.clone();
    let server = tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        loop {
            let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                continue;
            };
            if let Some(answer) = nkp_stun::respond(&buf[..n], from) {
                seen.lock().unwrap().push(from);
                let _ = socket.send_to(&answer, from).await;
            }
        }
    });
    let out = run_bounded(stunclient(port), Duration::from_secs(20)).await;
    server.abort();
    assert!(out.status.success(), "{out:?}");
    let printed = reflexive_addrs(&out.stdout);
    let asked = asked.lock().unwrap().clone();
    assert!(!printed.is_empty() && !asked.is_empty(), "{out:?}");
    for addr in &printed {
        assert!(asked.contains(addr), "printed {addr}, answered {asked:?}");
    }
}

/// A `turnserver` child process, killed when dropped.
struct TurnServer {
    child: Child,
    dir: std::path::PathBuf,
}

impl Drop for TurnServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("local address")
        .port()
}

fn start_turnserver(port: u16) -> io::Result<TurnServer> {
    let dir = std::env::temp_dir().join(format!("nkp-stun-coturn-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let child = Command::new("turnserver")
        .args(["-n", "-S", "--listening-ip=127.0.0.1"])
        .arg(format!("--listening-port={port}"))
        .args(["--no-tls", "--no-dtls", "--no-cli", "--no-stdout-log"])
        .arg(format!("--log-file={}", dir.join("turn.log").display()))
        .arg(format!("--db={}", dir.join("turndb").display()))
        .arg(format!("--pidfile={}", dir.join("turn.pid").display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    Ok(TurnServer { child, dir })
}

#[tokio::test]
async fn query_against_turnserver() {
    if !available("turnserver", "query_against_turnserver") {
        return;
    }
    let port = free_udp_port();
    let mut turn = start_turnserver(port).expect("start turnserver");
    let server: SocketAddr = ([127, 0, 0, 1], port).into();
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();

    // turnserver needs a moment to bind: retry short queries, bounded.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mapped = loop {
        match nkp_stun::query(&client, server, Duration::from_millis(100)).await {
            Ok(mapped) => break mapped,
            Err(e) => {
                if let Some(status) = turn.child.try_wait().unwrap() {
                    panic!("turnserver exited early with {status}");
                }
                assert!(Instant::now() < deadline, "turnserver never answered: {e}");
            }
        }
    };
    assert_eq!(mapped, client.local_addr().unwrap());

    // Its response, decoded and checked by our codec (FINGERPRINT included).
    let (tid, request) = nkp_stun::binding_request();
    client.send_to(&request, server).await.unwrap();
    let mut buf = [0u8; 2048];
    let n = loop {
        let (n, from) = tokio::time::timeout(Duration::from_secs(5), client.recv_from(&mut buf))
            .await
            .expect("turnserver answers within 5 s")
            .unwrap();
        // Skip late answers to the retried queries above.
        if from == server && buf[8..20] == tid.as_bytes()[..] {
            break n;
        }
    };
    let msg = Message::decode(&buf[..n]).unwrap();
    assert_eq!(
        (msg.class, msg.transaction_id),
        (Class::SuccessResponse, tid)
    );
    assert_eq!(msg.mapped_address(), Some(client.local_addr().unwrap()));
    assert!(
        msg.attributes
            .iter()
            .any(|a| matches!(a, Attribute::MappedAddress(m) if *m == mapped)),
        "{msg:?}"
    );
    assert!(
        msg.attributes
            .iter()
            .any(|a| matches!(a, Attribute::Software(s) if s.contains("Coturn"))),
        "{msg:?}"
    );
    drop(turn);
}
