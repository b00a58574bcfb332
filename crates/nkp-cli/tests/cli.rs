//! The `nkp` command driven as a user would: spawn it, read its `listening` lines, talk to
//! it with plain sockets and with `nkp send`, stop it with a signal.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const NKP: &str = env!("CARGO_BIN_EXE_nkp");

struct Listener {
    child: Child,
    addrs: Vec<String>,
}

impl Listener {
    fn start(uris: &[&str]) -> Listener {
        let mut child = Command::new(NKP)
            .arg("listen")
            .args(uris)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn nkp listen");
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut addrs = Vec::new();
        for _ in uris {
            let mut line = String::new();
            out.read_line(&mut line).expect("read listening line");
            let parts: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(parts.len(), 3, "bad line {line:?}");
            assert_eq!(parts[0], "listening", "bad line {line:?}");
            addrs.push(parts[2].to_string());
        }
        Listener { child, addrs }
    }

    fn port(&self, i: usize) -> u16 {
        self.addrs[i].rsplit(':').next().unwrap().parse().unwrap()
    }

    /// SIGTERM, then the exit status within 10 s.
    fn terminate(mut self) -> std::process::ExitStatus {
        self.terminate_ref()
    }

    fn terminate_ref(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "nkp listen did not exit on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

fn nkp(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(NKP).args(args).output().expect("run nkp");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn listen_prints_real_ports_and_echoes_raw_tcp() {
    let l = Listener::start(&[
        "echo://127.0.0.1:0;transport=tcp",
        "echo://[::1]:0;transport=tcp;tcp_packet=4",
    ]);
    assert!(l.addrs[0].starts_with("127.0.0.1:"));
    assert!(l.addrs[1].starts_with("[::1]:"), "{:?}", l.addrs);
    assert_ne!(l.port(0), 0);
    let mut s = TcpStream::connect(&l.addrs[0]).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"plain bytes").unwrap();
    let mut buf = [0u8; 11];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"plain bytes");
    // framed listener: frames come back framed
    let mut s6 = TcpStream::connect(&l.addrs[1]).unwrap();
    s6.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s6.write_all(b"\x00\x00\x00\x02ok").unwrap();
    let mut buf = [0u8; 6];
    s6.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"\x00\x00\x00\x02ok");
    drop(s);
    drop(s6);
    assert!(l.terminate().success());
}

#[test]
fn send_prints_each_echo() {
    let l = Listener::start(&[
        "echo://127.0.0.1:0;transport=tcp",
        "echo://127.0.0.1:0;transport=tcp;tcp_packet=2",
    ]);
    let uri = format!("echo://127.0.0.1:{};transport=tcp", l.port(0));
    let (code, out, err) = nkp(&["send", &uri, "--message", "hi there", "--count", "3"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "hi there\nhi there\nhi there\n");
    let uri = format!("echo://127.0.0.1:{};transport=tcp;tcp_packet=2", l.port(1));
    let (code, out, err) = nkp(&["send", &uri]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "hello\n");
    // a protocol mismatch (raw client to a framed server) gets no complete echo: timeout
    let uri = format!("echo://127.0.0.1:{};transport=tcp", l.port(1));
    let (code, _, err) = nkp(&["send", &uri, "--timeout", "500"]);
    assert_eq!(code, 1);
    assert!(
        err.starts_with("error: timeout after 0 of 1 replies"),
        "{err}"
    );
    assert!(l.terminate().success());
}

#[test]
fn failures_are_one_line_and_non_zero() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (code, _, err) = nkp(&["send", &format!("echo://127.0.0.1:{closed};transport=tcp")]);
    assert_eq!(code, 1);
    assert!(
        err.starts_with("error: ") && err.contains("refused"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");

    let (code, _, err) = nkp(&["send", "not a uri"]);
    assert_eq!(code, 1);
    assert!(err.starts_with("error: invalid URI"), "{err}");

    let (code, _, err) = nkp(&["listen", "echo://127.0.0.1:0;transport=tcp;tcp_packet=3"]);
    assert_eq!(code, 1);
    assert!(err.contains("tcp_packet"), "{err}");

    let (code, _, err) = nkp(&["listen", "echo://127.0.0.1:0;transport=tcp;nonsense=1"]);
    assert_eq!(code, 1);
    assert!(err.contains("unknown option"), "{err}");

    let (code, _, _) = nkp(&["frobnicate"]);
    assert_eq!(code, 2);
    let (code, _, _) = nkp(&["send"]);
    assert_eq!(code, 2);
    for (_, _, err) in [nkp(&["send", "x://"]), nkp(&["listen", "::::"])] {
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn port_in_use_is_an_error() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let started = Instant::now();
    let (code, _, err) = nkp(&["listen", &format!("echo://127.0.0.1:{port};transport=tcp")]);
    assert_eq!(code, 1);
    assert!(err.contains("in use"), "{err}");
    // the original's policy: a few retries, about a second apart
    assert!(started.elapsed() >= Duration::from_secs(1));
}

#[test]
fn resolve_prints_destinations() {
    let (code, out, err) = nkp(&["resolve", "echo://127.0.0.1;transport=udp"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "udp 127.0.0.1 7\n");
    let (code, out, _) = nkp(&["resolve", "echo://[::1]:5060;transport=tls"]);
    assert_eq!(code, 0);
    assert_eq!(out, "tls ::1 5060\n");
    let (code, out, _) = nkp(&["resolve", "echo://localhost", "--listen"]);
    assert_eq!(code, 0);
    assert_eq!(out, "tcp 127.0.0.1 0\ntcp ::1 0\n");
    let (code, _, err) = nkp(&["resolve", "echo://127.0.0.1;transport=smtp"]);
    assert_eq!(code, 1);
    assert!(err.starts_with("error: "), "{err}");
}

#[test]
fn sigint_also_stops_cleanly_with_open_connections() {
    let l = Listener::start(&["echo://127.0.0.1:0;transport=tcp"]);
    let mut s = TcpStream::connect(&l.addrs[0]).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"x").unwrap();
    let mut b = [0u8; 1];
    s.read_exact(&mut b).unwrap();
    let pid = l.child.id().to_string();
    Command::new("kill").args(["-INT", &pid]).status().unwrap();
    // the idle connection is closed at once
    let n = s.read(&mut b).unwrap_or(0);
    assert_eq!(n, 0);
    let mut l = l;
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(st) = l.child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success());
}

/// `nkp resolve --nameserver` against a real DNS server (dnsmasq) on loopback.
#[test]
fn resolve_through_dnsmasq() {
    let Some(dnsmasq) = ["/usr/sbin/dnsmasq", "/usr/bin/dnsmasq"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
    else {
        assert!(
            std::env::var_os("NKP_REQUIRE_PEERS").is_none(),
            "dnsmasq is required (NKP_REQUIRE_PEERS) but not installed"
        );
        eprintln!("SKIPPED resolve_through_dnsmasq: dnsmasq not installed");
        return;
    };
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(dnsmasq)
        .args([
            "--no-daemon",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--listen-address=127.0.0.1",
            &format!("--port={port}"),
            "--naptr-record=svc.test,10,50,s,ECHO+D2T,,_echo._tcp.svc.test",
            "--naptr-record=svc.test,20,50,s,ECHO+D2U,,_echo._udp.svc.test",
            "--srv-host=_echo._tcp.svc.test,host1.svc.test,7001,1,10",
            "--srv-host=_echo._udp.svc.test,host1.svc.test,7002,1,10",
            "--host-record=host1.svc.test,127.0.0.21",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn dnsmasq");
    let ns = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let out = loop {
        let (code, out, err) = nkp(&["resolve", "echo://svc.test", "--nameserver", &ns]);
        if code == 0 || Instant::now() > deadline {
            assert_eq!(code, 0, "{err}");
            break out;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(out, "tcp 127.0.0.21 7001\nudp 127.0.0.21 7002\n");
}

#[test]
fn udp_echo_and_stun() {
    let l = Listener::start(&[
        "echo://127.0.0.1:0;transport=udp;stun",
        "echo://[::1]:0;transport=udp",
        "stun://127.0.0.1:0",
    ]);
    assert!(l.addrs.iter().all(|_| true));
    let uri = format!("echo://127.0.0.1:{};transport=udp", l.port(0));
    let (code, out, err) = nkp(&["send", &uri, "--message", "dgram", "--count", "2"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "dgram\ndgram\n");
    let uri = format!("echo://[::1]:{};transport=udp", l.port(1));
    let (code, out, err) = nkp(&["send", &uri]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "hello\n");
    // STUN answered on the echo listener's shared port and by the STUN server
    for i in [0, 2] {
        let (code, out, err) = nkp(&["stun", &l.addrs[i], "--timeout", "3000"]);
        assert_eq!(code, 0, "{err}");
        assert!(out.starts_with("mapped 127.0.0.1:"), "{out}");
    }
    // no STUN on the plain one: the echo comes back, which is not a STUN answer → timeout
    let (code, _, err) = nkp(&["stun", &l.addrs[1], "--timeout", "800"]);
    assert_eq!(code, 1);
    assert!(err.starts_with("error: timeout"), "{err}");
    assert!(l.terminate().success());
}

#[test]
fn tls_listener_gets_a_self_signed_certificate() {
    let mut child = Command::new(NKP)
        .args(["listen", "echo://127.0.0.1:0;transport=tls"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert!(line.starts_with("listening tls 127.0.0.1:"), "{line}");
    let addr = line.split_whitespace().nth(2).unwrap().to_string();
    let l = Listener {
        child,
        addrs: vec![addr.clone()],
    };
    // verification is on by default: the self-signed server is refused
    let uri = format!("echo://{addr};transport=tls");
    let (code, _, err) = nkp(&["send", &uri]);
    assert_eq!(code, 1);
    assert!(err.contains("certificate"), "{err}");
    // ... unless the URI opts out
    let (code, out, err) = nkp(&["send", &format!("{uri};tls_verify=false"), "--count", "2"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "hello\nhello\n");
    let mut l = l;
    let mut stderr = l.child.stderr.take().unwrap();
    assert!(l.terminate_ref().success());
    let mut text = String::new();
    stderr.read_to_string(&mut text).unwrap();
    assert!(
        text.contains("warning:") && text.contains("self-signed"),
        "{text}"
    );
}

#[test]
fn ws_http_wss_https_echo() {
    let l = Listener::start(&[
        "echo://127.0.0.1:0;transport=ws",
        "echo://127.0.0.1:0/echo;transport=http",
        "echo://127.0.0.1:0;transport=wss",
        "echo://127.0.0.1:0;transport=https",
    ]);
    let cases = [
        (
            format!("echo://127.0.0.1:{};transport=ws", l.port(0)),
            "text frames",
        ),
        (
            format!("echo://127.0.0.1:{}/echo;transport=http", l.port(1)),
            "a POST body",
        ),
        (
            format!(
                "echo://127.0.0.1:{};transport=wss;tls_verify=false",
                l.port(2)
            ),
            "tls",
        ),
        (
            format!(
                "echo://127.0.0.1:{};transport=https;tls_verify=false",
                l.port(3)
            ),
            "tls",
        ),
    ];
    for (uri, msg) in &cases {
        let (code, out, err) = nkp(&["send", uri, "--message", msg, "--count", "2"]);
        assert_eq!(code, 0, "{uri}: {err}");
        assert_eq!(out, format!("{msg}\n{msg}\n"), "{uri}");
    }
    let (code, out, err) = nkp(&["send", &cases[0].0, "--binary"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "hello\n");
    // a plain HTTP POST to a port only WebSocket serves gets a 404 (its empty body is printed)
    let (code, out, err) = nkp(&[
        "send",
        &format!("echo://127.0.0.1:{}/nowhere;transport=http", l.port(0)),
    ]);
    assert_eq!((code, out.as_str()), (0, "\n"), "{err}");
    // a WebSocket handshake nobody serves: a clear error naming the 404
    let (code, _, err) = nkp(&[
        "send",
        &format!("echo://127.0.0.1:{}/x;transport=ws", l.port(1)),
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("404"), "{err}");
    assert!(l.terminate().success());
}
