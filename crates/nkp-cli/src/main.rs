//! `nkp`: run nkpacket listeners with the built-in echo protocol, send to them, resolve URIs.
//!
//! ```text
//! nkp listen [--domain D] URI...
//! nkp send URI [--message TEXT] [--binary] [--count N] [--timeout MS] [--nameserver IP:PORT]
//! nkp resolve URI [--nameserver IP:PORT] [--listen]
//! nkp stun HOST:PORT [--timeout MS]
//! ```
//!
//! Failures print one line, `error: ...`, on stderr and exit 1 (2 for usage errors).

mod client;

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use nkpacket::dns::DnsConfig;
use nkpacket::{Nkpacket, Options, echo::Echo};

/// The nkpacket command line.
#[derive(Parser, Debug)]
#[command(
    name = "nkp",
    version,
    about = "Run nkpacket listeners, send, resolve."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the built-in echo protocol on each URI until SIGINT/SIGTERM.
    Listen {
        /// Domain of the listeners.
        #[arg(long)]
        domain: Option<String>,
        /// Listener URIs, e.g. `echo://127.0.0.1:5060;transport=tcp`.
        #[arg(required = true)]
        uris: Vec<String>,
    },
    /// Send a message to a URI and print each echo on its own line.
    Send {
        /// Destination URI.
        uri: String,
        /// The message.
        #[arg(long, default_value = "hello")]
        message: String,
        /// WebSocket: send binary frames instead of text.
        #[arg(long)]
        binary: bool,
        /// How many times to send it (on one connection).
        #[arg(long, default_value_t = 1)]
        count: usize,
        /// Time for the whole exchange, in milliseconds.
        #[arg(long, default_value_t = 5000)]
        timeout: u64,
        /// DNS server to use instead of the system's.
        #[arg(long)]
        nameserver: Option<String>,
    },
    /// Print the destinations a URI resolves to.
    Resolve {
        /// The URI.
        uri: String,
        /// DNS server to use instead of the system's.
        #[arg(long)]
        nameserver: Option<String>,
        /// Resolve as a listener would (no NAPTR/SRV, port kept).
        #[arg(long)]
        listen: bool,
    },
    /// Send a STUN Binding request and print the mapped address.
    Stun {
        /// The STUN server, `HOST:PORT`.
        server: String,
        /// Time to wait for the answer, in milliseconds (retransmitting meanwhile).
        #[arg(long, default_value_t = 5000)]
        timeout: u64,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("NKP_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start the runtime: {e}")),
    };
    let result = rt.block_on(async move {
        match cli.command {
            Command::Listen { domain, uris } => listen(domain, uris).await,
            Command::Send {
                uri,
                message,
                binary,
                count,
                timeout,
                nameserver,
            } => {
                let dns = dns_config(&nameserver)?;
                let timeout = Duration::from_millis(timeout);
                client::send(&uri, &message, binary, count, timeout, dns).await
            }
            Command::Resolve {
                uri,
                nameserver,
                listen,
            } => resolve(&uri, listen, dns_config(&nameserver)?).await,
            Command::Stun { server, timeout } => {
                stun(&server, Duration::from_millis(timeout)).await
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(1)
}

/// `--nameserver IP:PORT` (port 53 when omitted) → that server only; none → the system's.
pub(crate) fn dns_config(ns: &Option<String>) -> Result<DnsConfig, String> {
    let Some(ns) = ns else {
        return Ok(DnsConfig::default());
    };
    let addr = ns
        .parse::<std::net::SocketAddr>()
        .or_else(|_| {
            ns.trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .map(|ip| std::net::SocketAddr::new(ip, 53))
        })
        .map_err(|_| format!("--nameserver {ns:?}: expected IP:PORT"))?;
    Ok(DnsConfig::with_nameservers(vec![addr]))
}

/// Prints a line and flushes at once (other programs wait for it).
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

async fn listen(domain: Option<String>, uris: Vec<String>) -> Result<(), String> {
    let nk = Nkpacket::builder().protocol("echo", Echo).build();
    let mut opts = Options::default();
    opts.domain = domain;
    for uri in &uris {
        let mut lopts = opts.clone();
        self_signed_if_needed(&nk, uri, &mut lopts).await?;
        let l = nk
            .start_listener(uri.as_str(), lopts)
            .await
            .map_err(|e| format!("{uri}: {e}"))?;
        say(&format!(
            "listening {} {}",
            l.info().transport(),
            l.info().local()
        ));
    }
    wait_for_signal().await?;
    // Stop accepting, close idle connections, give busy ones up to 5 s.
    nk.shutdown_with(Duration::from_secs(5)).await;
    Ok(())
}

/// A tls/wss/https listener without certificate files gets a fresh self-signed certificate
/// for its host (the library itself refuses to guess), with a warning.
async fn self_signed_if_needed(nk: &Nkpacket, uri: &str, opts: &mut Options) -> Result<(), String> {
    let dests = nk
        .resolve(uri, opts, true)
        .await
        .map_err(|e| format!("{uri}: {e}"))?;
    let Some(d) = dests.first() else {
        return Ok(());
    };
    if !d.transport.is_secure()
        || (d.options.tls_certfile.is_some() && d.options.tls_keyfile.is_some())
    {
        return Ok(());
    }
    let mut hosts: Vec<String> = nkpacket::tls::DEFAULT_HOSTS
        .iter()
        .map(|h| h.to_string())
        .collect();
    if let Some(h) = &d.options.host
        && !hosts.contains(h)
    {
        hosts.insert(0, h.clone());
    }
    let dir = std::env::temp_dir().join(format!("nkp-{}-certs", std::process::id()));
    let (cert, key) =
        nkpacket::tls::write_self_signed(&dir, &hosts).map_err(|e| format!("{uri}: {e}"))?;
    eprintln!(
        "warning: {uri} has no tls_certfile/tls_keyfile: using a self-signed certificate for {}",
        hosts.join(", ")
    );
    opts.tls_certfile = Some(cert.display().to_string());
    opts.tls_keyfile = Some(key.display().to_string());
    Ok(())
}

async fn wait_for_signal() -> Result<(), String> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term =
        signal(SignalKind::terminate()).map_err(|e| format!("cannot watch SIGTERM: {e}"))?;
    let mut int =
        signal(SignalKind::interrupt()).map_err(|e| format!("cannot watch SIGINT: {e}"))?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

async fn resolve(uri: &str, listen: bool, dns: DnsConfig) -> Result<(), String> {
    let nk = Nkpacket::builder()
        .protocol("echo", Echo)
        .dns(dns)
        .try_build()
        .map_err(|e| e.to_string())?;
    let dests = nk
        .resolve(uri, &Options::default(), listen)
        .await
        .map_err(|e| e.to_string())?;
    if dests.is_empty() {
        return Err(format!("{uri} resolved to nothing"));
    }
    for d in dests {
        say(&format!(
            "{} {} {}",
            d.transport,
            d.addr.ip(),
            d.addr.port()
        ));
    }
    Ok(())
}

async fn stun(server: &str, timeout: Duration) -> Result<(), String> {
    let addr = match server.parse::<std::net::SocketAddr>() {
        Ok(a) => a,
        Err(_) => tokio::net::lookup_host(server)
            .await
            .map_err(|e| format!("{server}: {e}"))?
            .next()
            .ok_or_else(|| format!("{server}: no address"))?,
    };
    let bind = if addr.is_ipv6() {
        "[::]:0"
    } else {
        "0.0.0.0:0"
    };
    let socket = tokio::net::UdpSocket::bind(bind)
        .await
        .map_err(|e| format!("bind {bind}: {e}"))?;
    let query = nkp_stun::query(&socket, addr, nkp_stun::DEFAULT_T1);
    let mapped = tokio::time::timeout(timeout, query)
        .await
        .map_err(|_| {
            format!(
                "timeout after {} ms waiting for {addr}",
                timeout.as_millis()
            )
        })?
        .map_err(|e| e.to_string())?;
    say(&format!("mapped {mapped}"));
    Ok(())
}
