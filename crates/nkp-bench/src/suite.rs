//! `nkp-bench run`: every row, nkpacket and its baseline measured alternately (A B, B A, ...)
//! in short rounds, reported as medians and as the median of the per-round ratios.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use nkpacket::dns::DnsConfig;
use nkpacket::{Nkpacket, Options, echo::Echo};
use tokio::net::UdpSocket;
use tokio::time::Instant;

use crate::client::{EchoResult, Plan, Samples, udp_loop};
use crate::process::{self, Server};
use crate::report::{EchoRow, OtherRow, Report};
use crate::server::{Impl, STUN};
use crate::transports::{self, ClientCtx, Conn, Transport};

/// Connection counts of the echo rows.
pub const CONNS: [usize; 3] = [1, 16, 64];
/// Message sizes of the echo rows.
pub const SIZES: [usize; 2] = [64, 1024];
/// Concurrent connectors of the set-up rows.
const SETUP_CONCURRENCY: usize = 16;
/// Concurrent STUN clients.
const STUN_CLIENTS: usize = 16;
/// Most round trips one connection makes in one round.
const MAX_MSGS: u64 = 5_000_000;
/// Slack after a round's end before it is declared stuck.
const STUCK_AFTER: Duration = Duration::from_secs(10);

/// What to run and for how long.
#[derive(Debug, Clone)]
pub struct Config {
    /// Rounds per implementation and row.
    pub rounds: usize,
    /// Measured seconds per round.
    pub secs: f64,
    /// Warm-up seconds per round.
    pub warm: f64,
    /// Idle connections of the memory rows.
    pub idle_conns: usize,
    /// Rounds of the memory rows (each a fresh pair of server processes).
    pub idle_rounds: usize,
    /// Only rows whose name contains one of these (all when empty).
    pub only: Vec<String>,
    /// Where the certificate lives.
    pub cert_dir: PathBuf,
    /// The command line, for the report.
    pub command: String,
    /// How processes were pinned to CPUs, for the report.
    pub pinning: Option<String>,
}

impl Config {
    /// The full run (about 7 minutes on 2 cores).
    pub fn full(cert_dir: PathBuf) -> Config {
        Config {
            rounds: 5,
            secs: 1.0,
            warm: 0.2,
            idle_conns: 10_000,
            idle_rounds: 2,
            only: Vec::new(),
            cert_dir,
            command: String::new(),
            pinning: None,
        }
    }

    /// `--quick`: a few seconds per row.
    pub fn quick(cert_dir: PathBuf) -> Config {
        Config {
            rounds: 2,
            secs: 0.3,
            warm: 0.1,
            idle_conns: 2_000,
            idle_rounds: 1,
            ..Config::full(cert_dir)
        }
    }

    fn wants(&self, row: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| row.contains(o.as_str()))
    }

    fn plan(&self) -> Plan {
        let start = Instant::now() + Duration::from_millis(5);
        let warm_until = start + Duration::from_secs_f64(self.warm);
        Plan {
            warm_until,
            end: warm_until + Duration::from_secs_f64(self.secs),
            max_msgs: MAX_MSGS,
        }
    }

    /// The implementations in the order of round `r` (A B, then B A, ...).
    fn order(r: usize) -> [Impl; 2] {
        if r.is_multiple_of(2) {
            [Impl::Nk, Impl::Base]
        } else {
            [Impl::Base, Impl::Nk]
        }
    }
}

/// Median of a non-empty list (NaN for an empty one).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| !x.is_nan());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if !v.len().is_multiple_of(2) {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// Runs the suite and returns the report.
pub async fn run(cfg: &Config) -> Result<Report, String> {
    let certs = transports::Certs::in_dir(&cfg.cert_dir);
    let ctx = ClientCtx {
        tls: transports::tls::client_config(&certs).map_err(|e| e.to_string())?,
    };
    let mut report = Report::new(cfg);
    for t in transports::all() {
        let rows = t.rows();
        if rows.echo {
            echo_rows(cfg, t.as_ref(), &ctx, &mut report).await;
        }
        if rows.setup {
            let name = format!("{} connection set-up", t.name());
            if cfg.wants(&name) {
                let row = setup_row(cfg, t.as_ref(), &ctx, &name)
                    .await
                    .unwrap_or_else(|e| OtherRow::failed(&name, e));
                report.push_other(row);
            }
        }
        if let Some(target) = rows.idle_kib {
            let name = format!("{} memory per idle connection", t.name());
            if cfg.wants(&name) {
                let row = idle_row(cfg, t.as_ref(), &ctx, &name, target)
                    .await
                    .unwrap_or_else(|e| OtherRow::failed(&name, e));
                report.push_other(row);
            }
        }
    }
    let name = "stun binding responses";
    if cfg.wants(name) {
        let row = stun_row(cfg, name)
            .await
            .unwrap_or_else(|e| OtherRow::failed(name, e));
        report.push_other(row);
    }
    let name = "cached dns resolution";
    if cfg.wants(name) {
        let row = dns_row(cfg, name)
            .await
            .unwrap_or_else(|e| OtherRow::failed(name, e));
        report.push_other(row);
    }
    Ok(report)
}

async fn echo_rows(cfg: &Config, t: &dyn Transport, ctx: &ClientCtx, report: &mut Report) {
    let wanted: Vec<(usize, usize)> = CONNS
        .iter()
        .flat_map(|&c| SIZES.iter().map(move |&s| (c, s)))
        .filter(|&(c, s)| cfg.wants(&EchoRow::name_of(t.name(), c, s)))
        .collect();
    if wanted.is_empty() {
        return;
    }
    let servers = match spawn_pair(t.name(), cfg) {
        Ok(s) => s,
        Err(e) => {
            for (c, s) in wanted {
                report.push_echo(EchoRow::failed(t.name(), c, s, e.clone()));
            }
            return;
        }
    };
    for (conns, size) in wanted {
        let payload = vec![b'x'; size];
        let wire: Arc<[u8]> = t.wire(&payload).into();
        let mut per: [Vec<EchoResult>; 2] = [Vec::new(), Vec::new()];
        let mut failure = None;
        'rounds: for r in 0..cfg.rounds {
            for imp in Config::order(r) {
                match echo_round(cfg, t, &servers[idx(imp)], ctx, conns, wire.clone()).await {
                    Ok(res) => per[idx(imp)].push(res),
                    Err(e) => {
                        failure = Some(format!("{} round {r}: {e}", imp.as_str()));
                        break 'rounds;
                    }
                }
            }
        }
        let row = match failure {
            Some(e) => EchoRow::failed(t.name(), conns, size, e),
            None => {
                EchoRow::from_rounds(t.name(), conns, size, &per[0], &per[1], t.rows().min_ratio)
            }
        };
        eprintln!("{}", row.progress_line());
        report.push_echo(row);
    }
}

fn idx(imp: Impl) -> usize {
    match imp {
        Impl::Nk => 0,
        Impl::Base => 1,
    }
}

fn spawn_pair(service: &str, cfg: &Config) -> Result<[Server; 2], String> {
    let nk = Server::spawn(Impl::Nk, service, &cfg.cert_dir)?;
    let base = Server::spawn(Impl::Base, service, &cfg.cert_dir)?;
    Ok([nk, base])
}

async fn connect_all(
    t: &dyn Transport,
    addr: SocketAddr,
    ctx: &ClientCtx,
    n: usize,
    wire: &[u8],
) -> Result<Vec<Box<dyn Conn>>, String> {
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        // bounded for every transport: a server that stops answering fails the row
        let one = async {
            let mut c = t
                .connect(addr, ctx)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            c.ping(wire).await.map_err(|e| format!("first echo: {e}"))?;
            Ok::<_, String>(c)
        };
        let c = tokio::time::timeout(STUCK_AFTER, one)
            .await
            .map_err(|_| format!("connect and first echo: no answer within {STUCK_AFTER:?}"))??;
        conns.push(c);
    }
    Ok(conns)
}

/// One round of echo against one server.
async fn echo_round(
    cfg: &Config,
    t: &dyn Transport,
    server: &Server,
    ctx: &ClientCtx,
    n: usize,
    wire: Arc<[u8]>,
) -> Result<EchoResult, String> {
    let conns = connect_all(t, server.addr, ctx, n, &wire).await?;
    let plan = cfg.plan();
    let cpu = tokio::spawn(cpu_over(server.pid(), plan));
    let mut result = run_conns(conns, wire, plan).await?;
    if let Ok(Ok(ns)) = cpu.await {
        result.cpu_us = ns as f64 / 1000.0 / (result.rate * plan.window().as_secs_f64()).max(1.0);
    }
    Ok(result)
}

/// CPU time `pid` used during the plan's measured window, in nanoseconds.
async fn cpu_over(pid: u32, plan: Plan) -> Result<u64, String> {
    tokio::time::sleep_until(plan.warm_until).await;
    let before = process::cpu_ns(pid)?;
    tokio::time::sleep_until(plan.end).await;
    Ok(process::cpu_ns(pid)?.saturating_sub(before))
}

async fn run_conns(
    conns: Vec<Box<dyn Conn>>,
    wire: Arc<[u8]>,
    plan: Plan,
) -> Result<EchoResult, String> {
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|c| tokio::spawn(c.run(wire.clone(), plan)))
        .collect();
    let mut all = Samples::default();
    let deadline = plan.end + STUCK_AFTER;
    for task in tasks {
        match tokio::time::timeout_at(deadline, task).await {
            Ok(Ok(Ok(s))) => all.merge(s),
            Ok(Ok(Err(e))) => return Err(format!("echo: {e}")),
            Ok(Err(e)) => return Err(format!("client task: {e}")),
            Err(_) => return Err("the server stopped answering".into()),
        }
    }
    Ok(EchoResult::from_samples(all, plan.window()))
}

/// Connections per second: `SETUP_CONCURRENCY` clients each connecting (with the TLS
/// handshake), exchanging one byte and closing, in a loop.
async fn setup_row(
    cfg: &Config,
    t: &dyn Transport,
    ctx: &ClientCtx,
    name: &str,
) -> Result<OtherRow, String> {
    let servers = spawn_pair(t.name(), cfg)?;
    let wire: Arc<[u8]> = t.wire(b"x").into();
    let mut per: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for r in 0..cfg.rounds {
        for imp in Config::order(r) {
            let plan = cfg.plan();
            let mut tasks = Vec::new();
            for _ in 0..SETUP_CONCURRENCY {
                let connect = ClientSetup {
                    t: transports::by_name(t.name()).ok_or("transport vanished")?,
                    ctx: ctx.clone(),
                    addr: servers[idx(imp)].addr,
                };
                tasks.push(tokio::spawn(connect.run(wire.clone(), plan)));
            }
            let mut count = 0u64;
            for task in tasks {
                match tokio::time::timeout_at(plan.end + STUCK_AFTER, task).await {
                    Ok(Ok(Ok(n))) => count += n,
                    Ok(Ok(Err(e))) => return Err(format!("{}: {e}", imp.as_str())),
                    Ok(Err(e)) => return Err(format!("client task: {e}")),
                    Err(_) => return Err(format!("{}: connections stalled", imp.as_str())),
                }
            }
            per[idx(imp)].push(count as f64 / plan.window().as_secs_f64());
        }
    }
    let row = OtherRow::higher_better(name, "conn/s", &per[0], &per[1], None);
    eprintln!("{}", row.progress_line());
    Ok(row)
}

struct ClientSetup {
    t: Box<dyn Transport>,
    ctx: ClientCtx,
    addr: SocketAddr,
}

impl ClientSetup {
    async fn run(self, wire: Arc<[u8]>, plan: Plan) -> Result<u64, String> {
        let mut n = 0u64;
        let mut errors = 0u32;
        let mut done = 0u64;
        loop {
            let t0 = Instant::now();
            if t0 >= plan.end || done >= plan.max_msgs {
                return Ok(n);
            }
            done += 1;
            let r = async {
                let mut c = self.t.connect(self.addr, &self.ctx).await?;
                c.ping(&wire).await
            }
            .await;
            match r {
                Ok(()) if t0 >= plan.warm_until => n += 1,
                Ok(()) => {}
                Err(e) => {
                    errors += 1;
                    if errors > 50 {
                        return Err(format!("repeated connection failures, last: {e}"));
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }
}

/// RSS growth of a fresh server process over `idle_conns` idle connections (each served one
/// echo first).
async fn idle_row(
    cfg: &Config,
    t: &dyn Transport,
    ctx: &ClientCtx,
    name: &str,
    target_kib: f64,
) -> Result<OtherRow, String> {
    let wire: Arc<[u8]> = t.wire(b"hello").into();
    let mut per: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for r in 0..cfg.idle_rounds {
        for imp in Config::order(r) {
            let server = Server::spawn(imp, t.name(), &cfg.cert_dir)?;
            // Let the runtime settle (threads started, first allocations made).
            let warm = connect_all(t, server.addr, ctx, 16, &wire).await?;
            drop(warm);
            tokio::time::sleep(Duration::from_millis(300)).await;
            let before = server.rss()?;
            let conns = open_many(t, server.addr, ctx, cfg.idle_conns, &wire).await?;
            let after = settled_rss(&server).await?;
            drop(conns);
            let per_conn = after.saturating_sub(before) as f64 / cfg.idle_conns as f64 / 1024.0;
            per[idx(imp)].push(per_conn);
        }
    }
    let row = OtherRow::lower_better(name, "KiB", &per[0], &per[1], Some(target_kib));
    eprintln!("{}", row.progress_line());
    Ok(row)
}

/// Opens `n` connections, 64 at a time, each proven served by one echo.
async fn open_many(
    t: &dyn Transport,
    addr: SocketAddr,
    ctx: &ClientCtx,
    n: usize,
    wire: &Arc<[u8]>,
) -> Result<Vec<Box<dyn Conn>>, String> {
    const PARALLEL: usize = 64;
    let mut tasks = Vec::new();
    for i in 0..PARALLEL {
        let share = n / PARALLEL + usize::from(i < n % PARALLEL);
        let t = transports::by_name(t.name()).ok_or("transport vanished")?;
        let ctx = ctx.clone();
        let wire = wire.clone();
        tasks.push(tokio::spawn(async move {
            connect_all(t.as_ref(), addr, &ctx, share, &wire).await
        }));
    }
    let mut all = Vec::with_capacity(n);
    for task in tasks {
        let conns = tokio::time::timeout(Duration::from_secs(120), task)
            .await
            .map_err(|_| "opening idle connections took over 2 minutes".to_string())?
            .map_err(|e| format!("client task: {e}"))??;
        all.extend(conns);
    }
    Ok(all)
}

/// The server's RSS once it stops moving (two reads 300 ms apart within 1 %), at most 5 s.
async fn settled_rss(server: &Server) -> Result<u64, String> {
    let mut last = server.rss()?;
    for _ in 0..16 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = server.rss()?;
        if now.abs_diff(last) * 100 <= last {
            return Ok(now);
        }
        last = now;
    }
    Ok(last)
}

/// STUN Binding responses per second: `STUN_CLIENTS` closed-loop clients against the
/// nkpacket UDP listener with `;stun` and against a plain socket answering with
/// `nkp_stun::respond`.
async fn stun_row(cfg: &Config, name: &str) -> Result<OtherRow, String> {
    let servers = spawn_pair(STUN, cfg)?;
    let (_, request) = nkp_stun::binding_request();
    let wire: Arc<[u8]> = request.to_vec().into();
    let mut per: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for r in 0..cfg.rounds {
        for imp in Config::order(r) {
            let plan = cfg.plan();
            let mut tasks = Vec::new();
            for _ in 0..STUN_CLIENTS {
                let sock = UdpSocket::bind("127.0.0.1:0")
                    .await
                    .map_err(|e| format!("client socket: {e}"))?;
                sock.connect(servers[idx(imp)].addr)
                    .await
                    .map_err(|e| format!("client socket: {e}"))?;
                let wire = wire.clone();
                tasks.push(tokio::spawn(async move {
                    udp_loop(&sock, &wire, plan, nkp_stun::is_stun).await
                }));
            }
            let mut all = Samples::default();
            for task in tasks {
                match tokio::time::timeout_at(plan.end + STUCK_AFTER, task).await {
                    Ok(Ok(Ok(s))) => all.merge(s),
                    Ok(Ok(Err(e))) => return Err(format!("{}: {e}", imp.as_str())),
                    Ok(Err(e)) => return Err(format!("client task: {e}")),
                    Err(_) => return Err(format!("{}: stalled", imp.as_str())),
                }
            }
            per[idx(imp)].push(EchoResult::from_samples(all, plan.window()).rate);
        }
    }
    let row = OtherRow::higher_better(name, "resp/s", &per[0], &per[1], None);
    eprintln!("{}", row.progress_line());
    Ok(row)
}

/// The name seeded in the DNS cache.
const DNS_NAME: &str = "bench.nkpacket.test";

/// Cost of a cached resolution: `Nkpacket::resolve` of a URI whose host is in the cache,
/// against `DnsResolver::ips` of that host on the same resolver (the cache lookup alone).
async fn dns_row(cfg: &Config, name: &str) -> Result<OtherRow, String> {
    // A nameserver nobody answers on: a query reaching the network would take seconds and
    // show at once.
    let dns_cfg = DnsConfig::with_nameservers(vec![SocketAddr::from((Ipv4Addr::LOCALHOST, 9))]);
    let nk = Nkpacket::builder()
        .dns(dns_cfg)
        .protocol("echo", Echo)
        .build();
    let dns = nk.dns().ok_or("the node has no DNS resolver")?.clone();
    let ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));
    dns.insert_ips(DNS_NAME, vec![ip], Duration::from_secs(3600));
    let uri = format!("echo://{DNS_NAME}:5060;transport=udp");
    let opts = Options::default();
    let dests = nk
        .resolve(uri.as_str(), &opts, false)
        .await
        .map_err(|e| format!("resolve {uri}: {e}"))?;
    if dests.len() != 1 || dests[0].addr != SocketAddr::new(ip, 5060) {
        return Err(format!("resolve {uri} gave {} destinations", dests.len()));
    }
    let mut per: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for r in 0..cfg.rounds {
        for imp in Config::order(r) {
            let plan = cfg.plan();
            let mut n = 0u64;
            let mut measured = 0u64;
            let mut started = None;
            loop {
                let now = Instant::now();
                if now >= plan.end || n >= plan.max_msgs {
                    break;
                }
                if now >= plan.warm_until && started.is_none() {
                    started = Some(now);
                    measured = 0;
                }
                // A batch between clock reads.
                for _ in 0..64 {
                    match imp {
                        Impl::Nk => {
                            nk.resolve(uri.as_str(), &opts, false)
                                .await
                                .map_err(|e| format!("resolve: {e}"))?;
                        }
                        Impl::Base => {
                            dns.ips(DNS_NAME, false)
                                .await
                                .map_err(|e| format!("ips: {e}"))?;
                        }
                    }
                }
                n += 64;
                measured += 64;
            }
            let elapsed = started.map_or(plan.window(), |s| s.elapsed());
            per[idx(imp)].push(elapsed.as_nanos() as f64 / measured.max(1) as f64);
        }
    }
    nk.shutdown().await;
    let row = OtherRow::lower_better(name, "ns/op", &per[0], &per[1], None);
    eprintln!("{}", row.progress_line());
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(vec![]).is_nan());
    }

    #[test]
    fn rounds_alternate() {
        assert_eq!(Config::order(0), [Impl::Nk, Impl::Base]);
        assert_eq!(Config::order(1), [Impl::Base, Impl::Nk]);
    }
}
