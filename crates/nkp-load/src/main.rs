//! `nkp-load`: a load and soak test of nkpacket.
//!
//! Starts nkpacket `echo` listeners in this process (TCP with `tcp_packet=4`, UDP, WebSocket
//! `ws` and `wss` on the shared HTTP server) on loopback, then drives N concurrent clients ×
//! M messages each over plain tokio sockets (WebSocket: tokio-tungstenite, TLS:
//! tokio-rustls), checking every echo byte for byte:
//!
//! * TCP, WS, WSS: every message must come back (a single loss, corruption or stall fails
//!   the run);
//! * UDP: losses are counted and reported, never a failure;
//! * throughput per transport and one summary line (`load: PASSED ...` / `load: FAILED ...`).
//!
//! `--soak SECONDS` keeps a smaller load running in rounds (new connections each round) for
//! that long, samples the process's resident memory (`VmRSS` of `/proc/self/status`) after
//! each round, and fails when it keeps growing; at the end it checks that the server's
//! connections all went away.
//!
//! ```text
//! cargo xtask load                                # 1000 clients × 1000 messages, all four
//! cargo xtask load --clients 100 --messages 100   # the check `cargo xtask test` runs
//! cargo xtask load --soak 600                     # ten minutes of a smaller load
//! ```

mod client;
mod system;
mod ws;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use nkpacket::echo::Echo;
use nkpacket::{Nkpacket, Options};
use tokio::sync::Semaphore;

use client::{ClientReport, LoadTransport, Tcp, Udp};
use ws::{Ws, Wss};

/// Command line.
#[derive(Debug, Parser)]
#[command(
    name = "nkp-load",
    about = "Load and soak test: nkpacket echo listeners, plain-socket clients, loopback only"
)]
struct Args {
    /// Concurrent clients per transport (default 1000; 50 with --soak).
    #[arg(long)]
    clients: Option<u32>,
    /// Messages per client (default 1000; 200 per round with --soak).
    #[arg(long)]
    messages: Option<u32>,
    /// Bytes per message (at least 8).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Transports to drive, comma-separated: tcp, udp, ws, wss.
    #[arg(long, default_value = "tcp,udp,ws,wss", value_delimiter = ',')]
    transports: Vec<String>,
    /// Keep a smaller load running for this many seconds and check memory.
    #[arg(long, value_name = "SECONDS")]
    soak: Option<u64>,
    /// Listen on `[::1]` instead of `127.0.0.1`.
    #[arg(long)]
    ipv6: bool,
    /// At most this many connects in progress at once (the listen backlog is finite).
    #[arg(long, default_value_t = 256)]
    connect_concurrency: usize,
}

/// Idle timeout of the soak's UDP listener: per-peer connections of finished clients go away
/// after it (the default of 30 s would keep thousands of them around).
const SOAK_UDP_IDLE: Duration = Duration::from_secs(2);

/// The soak's node-wide connection cap: rounds follow each other faster than the UDP idle
/// timeout, so per-peer UDP connections of earlier rounds are still alive (they cost memory,
/// not descriptors). With the default cap, new TCP connections would be refused (closed at
/// once), which is the server doing its job, not what the soak measures.
const SOAK_MAX_CONNECTIONS: usize = 200_000;

/// How often the soak prints its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// The transports, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Tcp,
    Udp,
    Ws,
    Wss,
}

impl Kind {
    /// Name in reports and on the command line.
    fn name(self) -> &'static str {
        match self {
            Kind::Tcp => "tcp",
            Kind::Udp => "udp",
            Kind::Ws => "ws",
            Kind::Wss => "wss",
        }
    }

    /// Whether a single lost or duplicated echo fails the run.
    fn reliable(self) -> bool {
        self != Kind::Udp
    }
}

/// The echo server: one node, one listener per transport.
struct Server {
    nk: Nkpacket,
    tcp: Option<SocketAddr>,
    udp: Option<SocketAddr>,
    ws: Option<SocketAddr>,
    wss: Option<SocketAddr>,
    /// Directory of the `wss` listener's self-signed certificate, removed at the end.
    cert_dir: Option<PathBuf>,
}

impl Server {
    /// Stops the node and removes the certificate directory.
    async fn stop(self) {
        self.nk.shutdown().await;
        if let Some(dir) = &self.cert_dir
            && let Err(e) = std::fs::remove_dir_all(dir)
        {
            eprintln!("warning: removing {}: {e}", dir.display());
        }
    }
}

/// Counts of one transport over a run (or over a soak).
#[derive(Debug, Default, Clone, Copy)]
struct Totals {
    clients: u64,
    failed_clients: u64,
    sent: u64,
    echoed: u64,
    corrupt: u64,
    duplicate: u64,
    bytes: u64,
    elapsed: Duration,
}

impl Totals {
    fn add(&mut self, other: &Totals) {
        self.clients += other.clients;
        self.failed_clients += other.failed_clients;
        self.sent += other.sent;
        self.echoed += other.echoed;
        self.corrupt += other.corrupt;
        self.duplicate += other.duplicate;
        self.bytes += other.bytes;
        self.elapsed += other.elapsed;
    }

    fn lost(&self, expected: u64) -> u64 {
        expected.saturating_sub(self.echoed)
    }

    fn rate(&self) -> f64 {
        self.echoed as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let kinds = match parse_kinds(&args.transports) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if args.size < 8 || args.size > 1200 {
        eprintln!("error: --size must be 8..=1200 bytes (one UDP datagram)");
        return ExitCode::from(2);
    }
    match system::raise_fd_limit() {
        Ok((soft, hard)) => println!("fd limit: {soft} (hard {hard})"),
        Err(e) => eprintln!("warning: could not raise the fd limit: {e}"),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let ok = runtime.block_on(async {
        match args.soak {
            Some(seconds) => soak(&args, &kinds, Duration::from_secs(seconds)).await,
            None => load(&args, &kinds).await,
        }
    });
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn parse_kinds(names: &[String]) -> Result<Vec<Kind>, String> {
    let mut kinds = Vec::new();
    for name in names {
        let kind = match name.trim().to_ascii_lowercase().as_str() {
            "tcp" => Kind::Tcp,
            "udp" => Kind::Udp,
            "ws" => Kind::Ws,
            "wss" => Kind::Wss,
            other => return Err(format!("unknown transport `{other}` (tcp, udp, ws, wss)")),
        };
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    if kinds.is_empty() {
        return Err("no transport given".into());
    }
    Ok(kinds)
}

/// Starts the echo listeners for `kinds`, sized for `clients` concurrent clients.
async fn start_server(
    kinds: &[Kind],
    clients: u32,
    ipv6: bool,
    udp_idle: Option<Duration>,
    max_connections: Option<usize>,
) -> Result<Server, String> {
    let clients = clients as usize;
    // Inbound TCP and per-peer UDP connections of every client, with room to spare.
    let nk = Nkpacket::builder()
        .max_connections(max_connections.unwrap_or(clients * 4 + 1024))
        .protocol("echo", Echo)
        .build();
    let host = if ipv6 { "[::1]" } else { "127.0.0.1" };
    let mut server = Server {
        nk,
        tcp: None,
        udp: None,
        ws: None,
        wss: None,
        cert_dir: None,
    };
    match add_listeners(&mut server, kinds, clients, host, udp_idle).await {
        Ok(()) => Ok(server),
        Err(e) => {
            server.stop().await;
            Err(e)
        }
    }
}

/// Starts one echo listener per kind on `host`, recording their addresses in `server`.
async fn add_listeners(
    server: &mut Server,
    kinds: &[Kind],
    clients: usize,
    host: &str,
    udp_idle: Option<Duration>,
) -> Result<(), String> {
    for kind in kinds {
        let mut opts = Options::default();
        let uri = match kind {
            Kind::Tcp => {
                opts.tcp_max_connections = Some(clients * 2 + 64);
                format!("echo://{host}:0;transport=tcp;tcp_packet=4")
            }
            Kind::Udp => {
                opts.idle_timeout = udp_idle;
                format!("echo://{host}:0;transport=udp")
            }
            Kind::Ws => {
                // the shared HTTP server's cap on concurrent connections (sessions included)
                opts.tcp_max_connections = Some(clients * 2 + 64);
                format!("echo://{host}:0;transport=ws")
            }
            Kind::Wss => {
                opts.tcp_max_connections = Some(clients * 2 + 64);
                let (cert, key) = self_signed(&mut server.cert_dir)?;
                for (name, path) in [("tls_certfile", cert), ("tls_keyfile", key)] {
                    opts.set(name, &path.to_string_lossy())
                        .map_err(|e| format!("{name}: {e}"))?;
                }
                format!("echo://{host}:0;transport=wss")
            }
        };
        let listener = server
            .nk
            .start_listener(uri.as_str(), opts)
            .await
            .map_err(|e| format!("starting {uri}: {e}"))?;
        let addr = listener.info().local();
        println!("listening {} {addr}", listener.info().transport());
        match kind {
            Kind::Tcp => server.tcp = Some(addr),
            Kind::Udp => server.udp = Some(addr),
            Kind::Ws => server.ws = Some(addr),
            Kind::Wss => server.wss = Some(addr),
        }
    }
    Ok(())
}

/// Writes a self-signed certificate and key for the `wss` listener in a new directory of the
/// system's temporary directory (recorded in `dir` so that it is removed at the end).
fn self_signed(dir: &mut Option<PathBuf>) -> Result<(PathBuf, PathBuf), String> {
    let path = std::env::temp_dir().join(format!("nkp-load-{}", std::process::id()));
    std::fs::create_dir_all(&path).map_err(|e| format!("creating {}: {e}", path.display()))?;
    *dir = Some(path.clone());
    nkpacket::tls::write_self_signed(&path, &[])
        .map_err(|e| format!("self-signed certificate in {}: {e}", path.display()))
}

/// Runs `clients` clients of one transport at once; `(totals, first errors)`.
async fn round<T: LoadTransport>(
    transport: Arc<T>,
    server: SocketAddr,
    clients: u32,
    messages: u32,
    size: usize,
    connect_concurrency: usize,
) -> (Totals, Vec<String>) {
    let start = Instant::now();
    // Connects are paced: a thousand SYNs at once overflow the listen backlog and cost
    // seconds of SYN retries.
    let gate = Arc::new(Semaphore::new(connect_concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for id in 0..clients {
        let transport = transport.clone();
        let gate = gate.clone();
        tasks.spawn(async move {
            client::run_client(&*transport, server, &gate, id, messages, size).await
        });
    }
    let mut totals = Totals::default();
    let mut errors = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (report, error): (ClientReport, Option<String>) = match joined {
            Ok(r) => r,
            Err(e) => (
                ClientReport {
                    failed: true,
                    ..ClientReport::default()
                },
                Some(format!("client task: {e}")),
            ),
        };
        totals.clients += 1;
        totals.failed_clients += u64::from(report.failed);
        totals.sent += report.sent;
        totals.echoed += report.echoed;
        totals.corrupt += report.corrupt;
        totals.duplicate += report.duplicate;
        totals.bytes += report.echoed * size as u64;
        if let Some(e) = error
            && errors.len() < 5
        {
            errors.push(e);
        }
    }
    totals.elapsed = start.elapsed();
    (totals, errors)
}

/// One round of `kind`.
async fn round_of(
    kind: Kind,
    server: &Server,
    clients: u32,
    messages: u32,
    args: &Args,
) -> Result<(Totals, Vec<String>), String> {
    let missing = || format!("no {} listener", kind.name());
    Ok(match kind {
        Kind::Tcp => {
            let addr = server.tcp.ok_or_else(missing)?;
            round(
                Arc::new(Tcp),
                addr,
                clients,
                messages,
                args.size,
                args.connect_concurrency,
            )
            .await
        }
        Kind::Udp => {
            let addr = server.udp.ok_or_else(missing)?;
            round(
                Arc::new(Udp),
                addr,
                clients,
                messages,
                args.size,
                args.connect_concurrency,
            )
            .await
        }
        Kind::Ws => {
            let addr = server.ws.ok_or_else(missing)?;
            round(
                Arc::new(Ws),
                addr,
                clients,
                messages,
                args.size,
                args.connect_concurrency,
            )
            .await
        }
        Kind::Wss => {
            let addr = server.wss.ok_or_else(missing)?;
            round(
                Arc::new(Wss::new()?),
                addr,
                clients,
                messages,
                args.size,
                args.connect_concurrency,
            )
            .await
        }
    })
}

/// Judges one transport's totals: `(ok, report line)`.
fn judge(kind: Kind, t: &Totals, expected: u64) -> (bool, String) {
    let lost = t.lost(expected);
    let reliable = kind.reliable();
    let ok =
        t.corrupt == 0 && t.failed_clients == 0 && (!reliable || (lost == 0 && t.duplicate == 0));
    let loss_pct = 100.0 * lost as f64 / (expected.max(1)) as f64;
    let line = format!(
        "{} {}: {}/{} echoed, {} lost ({:.3}%), {} corrupt, {} duplicate, {} failed clients, \
         {:.1} s, {:.0} msg/s, {:.1} MB/s each way",
        kind.name(),
        if ok { "ok" } else { "FAILED" },
        t.echoed,
        expected,
        lost,
        loss_pct,
        t.corrupt,
        t.duplicate,
        t.failed_clients,
        t.elapsed.as_secs_f64(),
        t.rate(),
        t.bytes as f64 / t.elapsed.as_secs_f64().max(1e-9) / 1e6,
    );
    (ok, line)
}

/// The plain load test.
async fn load(args: &Args, kinds: &[Kind]) -> bool {
    let clients = args.clients.unwrap_or(1000);
    let messages = args.messages.unwrap_or(1000);
    let server = match start_server(kinds, clients, args.ipv6, None, None).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return false;
        }
    };
    println!(
        "load: {clients} clients × {messages} messages of {} bytes per transport",
        args.size
    );
    let expected = u64::from(clients) * u64::from(messages);
    let mut all_ok = true;
    let mut parts = Vec::new();
    for kind in kinds {
        let (totals, errors) = match round_of(*kind, &server, clients, messages, args).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: {e}");
                return false;
            }
        };
        let (ok, line) = judge(*kind, &totals, expected);
        println!("{line}");
        for e in &errors {
            println!("  first errors: {e}");
        }
        all_ok &= ok;
        parts.push(line);
    }
    server.stop().await;
    println!(
        "load: {} {clients}x{messages}: {}",
        if all_ok { "PASSED" } else { "FAILED" },
        parts.join("; ")
    );
    all_ok
}

/// The soak test: rounds of a smaller load until `duration` has passed, RSS after each.
async fn soak(args: &Args, kinds: &[Kind], duration: Duration) -> bool {
    let clients = args.clients.unwrap_or(50);
    let messages = args.messages.unwrap_or(200);
    let server = match start_server(
        kinds,
        clients,
        args.ipv6,
        Some(SOAK_UDP_IDLE),
        Some(SOAK_MAX_CONNECTIONS),
    )
    .await
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return false;
        }
    };
    println!(
        "soak: {} s of rounds of {clients} clients × {messages} messages per transport",
        duration.as_secs()
    );
    let start = Instant::now();
    let mut totals = vec![Totals::default(); kinds.len()];
    let mut expected = 0u64;
    let mut samples: Vec<u64> = Vec::new();
    let mut rounds = 0u32;
    let mut all_ok = true;
    let mut last_report = Instant::now();
    while start.elapsed() < duration {
        for (i, kind) in kinds.iter().enumerate() {
            match round_of(*kind, &server, clients, messages, args).await {
                Ok((t, errors)) => {
                    let (ok, line) = judge(*kind, &t, u64::from(clients) * u64::from(messages));
                    if !ok {
                        println!("round {rounds}: {line}");
                        for e in &errors {
                            println!("  first errors: {e}");
                        }
                        all_ok = false;
                    }
                    totals[i].add(&t);
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    return false;
                }
            }
        }
        expected += u64::from(clients) * u64::from(messages);
        rounds += 1;
        match system::rss_bytes() {
            Ok(rss) => samples.push(rss),
            Err(e) => {
                eprintln!("error: reading RSS: {e}");
                return false;
            }
        }
        if last_report.elapsed() >= PROGRESS_EVERY {
            last_report = Instant::now();
            println!(
                "soak: {:.0} s, {rounds} rounds, RSS {:.1} MiB, {} connections",
                start.elapsed().as_secs_f64(),
                mib(samples.last().copied().unwrap_or(0)),
                server.nk.connection_count()
            );
        }
        if !all_ok {
            break;
        }
    }
    let mut parts = Vec::new();
    for (i, kind) in kinds.iter().enumerate() {
        let (ok, line) = judge(*kind, &totals[i], expected);
        println!("{line}");
        all_ok &= ok;
        parts.push(line);
    }
    let (memory_ok, memory_line) = system::judge_rss(&samples);
    println!("{memory_line}");
    all_ok &= memory_ok;

    // Every connection of the finished clients goes away: TCP ones at once, UDP ones after
    // their idle timeout.
    let deadline = Instant::now() + SOAK_UDP_IDLE * 3 + Duration::from_secs(10);
    while server.nk.connection_count() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let left = server.nk.connection_count();
    let conns_ok = left == 0;
    println!(
        "connections left after the soak: {left}{}",
        if conns_ok { "" } else { " (leak?)" }
    );
    all_ok &= conns_ok;
    server.stop().await;
    println!(
        "soak: {} {} s, {rounds} rounds of {clients}x{messages}: {}; {memory_line}",
        if all_ok { "PASSED" } else { "FAILED" },
        duration.as_secs(),
        parts.join("; ")
    );
    all_ok
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_transports() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            parse_kinds(&names(&["tcp", "UDP", "tcp"])),
            Ok(vec![Kind::Tcp, Kind::Udp])
        );
        assert_eq!(
            parse_kinds(&names(&["ws", " WSS "])),
            Ok(vec![Kind::Ws, Kind::Wss])
        );
        assert!(parse_kinds(&names(&["sctp"])).is_err());
        assert!(parse_kinds(&[]).is_err());
    }

    #[test]
    fn judges_tcp_strictly_and_udp_leniently() {
        let t = Totals {
            clients: 2,
            sent: 10,
            echoed: 9,
            elapsed: Duration::from_secs(1),
            ..Totals::default()
        };
        assert!(!judge(Kind::Tcp, &t, 10).0);
        let (ok, line) = judge(Kind::Udp, &t, 10);
        assert!(ok, "{line}");
        assert!(line.contains("1 lost"), "{line}");
        let all = Totals { echoed: 10, ..t };
        assert!(judge(Kind::Tcp, &all, 10).0);
        let corrupt = Totals { corrupt: 1, ..all };
        assert!(!judge(Kind::Udp, &corrupt, 10).0);
    }

    /// A small run end to end over loopback: every TCP, WS and WSS message comes back.
    #[test]
    fn small_load_passes() {
        let args = Args::parse_from(["nkp-load", "--clients", "4", "--messages", "20"]);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        assert!(rt.block_on(load(&args, &[Kind::Tcp, Kind::Udp, Kind::Ws, Kind::Wss])));
    }
}
