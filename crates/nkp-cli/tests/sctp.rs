//! `nkp listen` and `nkp send` over SCTP, as a user runs them. Needs a kernel with SCTP:
//! `cargo xtask sctp-vm` runs this test in a VM (with the `nkp` binary copied there, named
//! by `NKP_EXE_NKP`); elsewhere it says SKIPPED, and fails when `NKP_REQUIRE_SCTP=1`.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

/// The `nkp` binary: the VM's copy when running there, else the one cargo built.
fn nkp() -> String {
    std::env::var("NKP_EXE_NKP").unwrap_or_else(|_| env!("CARGO_BIN_EXE_nkp").to_string())
}

fn required() -> bool {
    std::env::var_os("NKP_REQUIRE_SCTP").is_some_and(|v| v != "0")
}

#[test]
fn listen_and_send_over_sctp() {
    for host in ["127.0.0.1", "[::1]"] {
        let mut server = Command::new(nkp())
            .args(["listen", &format!("echo://{host}:0;transport=sctp")])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn nkp listen");
        let mut out = BufReader::new(server.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        if line.is_empty() {
            // it exited: say why
            let mut err = String::new();
            server
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            let status = server.wait().unwrap();
            assert!(!status.success(), "nkp listen exited 0 without a listener");
            assert!(
                err.contains("SCTP is not supported by this kernel"),
                "nkp listen failed: {err}"
            );
            assert!(!required(), "NKP_REQUIRE_SCTP is set but: {err}");
            eprintln!("SKIPPED listen_and_send_over_sctp: {}", err.trim());
            return;
        }
        let parts: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(parts[..2], ["listening", "sctp"], "bad line {line:?}");
        let addr = parts[2];
        let sent = Command::new(nkp())
            .args([
                "send",
                &format!("echo://{addr};transport=sctp"),
                "--message",
                "over sctp",
                "--count",
                "3",
                "--timeout",
                "10000",
            ])
            .output()
            .expect("run nkp send");
        let stdout = String::from_utf8_lossy(&sent.stdout);
        assert!(
            sent.status.success(),
            "nkp send to {addr}: {}\n{stdout}",
            String::from_utf8_lossy(&sent.stderr)
        );
        assert_eq!(
            stdout.lines().collect::<Vec<_>>(),
            ["over sctp", "over sctp", "over sctp"]
        );
        server.kill().unwrap();
        server.wait().unwrap();
    }
}
