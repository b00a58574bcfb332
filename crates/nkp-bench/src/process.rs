//! Server processes: this binary started again as `nkp-bench serve`, one per implementation,
//! so that each server's memory is its own.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{OnceLock, mpsc};
use std::time::Duration;

use crate::server::Impl;

/// CPUs the server processes are pinned to (`taskset -c` list), when pinning.
static SERVER_CPUS: OnceLock<String> = OnceLock::new();

/// Pins every server started from now on to `cpus` (a `taskset -c` list such as `1`).
pub fn pin_servers(cpus: &str) {
    let _ = SERVER_CPUS.set(cpus.to_string());
}

/// Pins this process's current thread (and the threads it starts afterwards) to `cpus`.
pub fn pin_self(cpus: &str) -> Result<(), String> {
    let status = Command::new("taskset")
        .args(["-p", "-c", cpus, &std::process::id().to_string()])
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("taskset: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("taskset -p -c {cpus} failed"))
    }
}

/// How long a server may take to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running server process; killed (and reaped) when dropped.
pub struct Server {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Server {
    /// Starts `nkp-bench serve <imp> <service> --cert-dir <dir>` and waits for its address.
    pub fn spawn(imp: Impl, service: &str, cert_dir: &std::path::Path) -> Result<Server, String> {
        let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
        let mut cmd = match SERVER_CPUS.get() {
            Some(cpus) => {
                let mut c = Command::new("taskset");
                c.args(["-c", cpus]).arg(exe);
                c
            }
            None => Command::new(exe),
        };
        let mut child = cmd
            .args(["serve", imp.as_str(), service, "--cert-dir"])
            .arg(cert_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start the {service} server: {e}"))?;
        let stdout = child.stdout.take();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let Some(stdout) = stdout else {
                let _ = tx.send(None);
                return;
            };
            let mut lines = BufReader::new(stdout).lines();
            let first = lines.next().and_then(Result::ok);
            let _ = tx.send(first);
            // Keep draining so the server never blocks on a full pipe.
            for _ in lines {}
        });
        let line = rx.recv_timeout(START_TIMEOUT).ok().flatten();
        let addr = line
            .as_deref()
            .and_then(|l| l.strip_prefix("listening "))
            .and_then(|a| a.trim().parse().ok());
        match addr {
            Some(addr) => Ok(Server { child, addr }),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                Err(format!(
                    "the {} {service} server did not start (it said {line:?})",
                    imp.as_str()
                ))
            }
        }
    }

    /// The server's resident memory now, in bytes.
    pub fn rss(&self) -> Result<u64, String> {
        rss_of(self.child.id())
    }
}

impl Server {
    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// CPU time all threads of a process have run, in nanoseconds (`/proc/<pid>/task/*/schedstat`).
pub fn cpu_ns(pid: u32) -> Result<u64, String> {
    let dir = format!("/proc/{pid}/task");
    let mut total = 0u64;
    for entry in std::fs::read_dir(&dir).map_err(|e| format!("{dir}: {e}"))? {
        let Ok(entry) = entry else { continue };
        // A thread may end between the listing and the read.
        if let Ok(s) = std::fs::read_to_string(entry.path().join("schedstat")) {
            total += s
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Ok(total)
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `VmRSS` of a process, in bytes.
pub fn rss_of(pid: u32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    parse_vmrss(&status).ok_or_else(|| format!("{path}: no VmRSS line"))
}

fn parse_vmrss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vmrss() {
        let s = "Name:\tx\nVmHWM:\t  900 kB\nVmRSS:\t    1234 kB\nThreads: 2\n";
        assert_eq!(parse_vmrss(s), Some(1234 * 1024));
        assert!(rss_of(std::process::id()).unwrap() > 0);
        assert!(cpu_ns(std::process::id()).unwrap() > 0);
    }
}
