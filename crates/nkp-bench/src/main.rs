//! `nkp-bench`: nkpacket against hand-written tokio code, row by row, as ratios.
//!
//! ```text
//! nkp-bench run [--quick] [--rounds N] [--secs S] [--idle-conns N] [--only a,b] [--out FILE]
//! nkp-bench serve <nk|base> <udp|tcp|tcp4|tls|ws|wss|stun> --cert-dir DIR
//! ```
//!
//! `run` (what `cargo xtask bench` runs) starts each server as a separate process (`serve`),
//! drives them from one load client in this process, alternating nkpacket and the baseline
//! round by round, and prints a Markdown report. See `BENCHMARKS.md` at the repository root.

mod client;
mod process;
mod report;
mod server;
mod suite;
mod transports;

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "\
usage: nkp-bench run [--quick] [--rounds N] [--secs S] [--idle-conns N] [--only ROW,ROW] [--out FILE]
       nkp-bench serve <nk|base> <udp|tcp|tcp4|tls|ws|wss|stun> --cert-dir DIR

run     every row, nkpacket and its baseline alternately; prints a Markdown report
        --quick        2 rounds of 0.3 s, 2000 idle connections (development)
        --rounds N     rounds per implementation and row (default 5)
        --secs S       measured seconds per round (default 1.0)
        --idle-conns N idle connections of the memory rows (default 10000)
        --only A,B     only rows whose name contains A or B (e.g. `tcp4`, `c=64`, `memory`)
        --out FILE     also write the report to FILE
        --no-pin       do not pin the client to CPU 0 and the servers to the others
serve   one server (used by run)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("run") => run(&args[1..]),
        Some("serve") => serve(&args[1..]),
        Some("help" | "-h" | "--help") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn value<'a>(args: &'a [String], i: &mut usize, flag: &str) -> Result<&'a str, String> {
    *i += 1;
    args.get(*i)
        .map(String::as_str)
        .ok_or_else(|| format!("{flag} needs a value"))
}

fn number<T: std::str::FromStr>(s: &str, flag: &str) -> Result<T, String> {
    s.parse().map_err(|_| format!("{flag}: not a number: {s}"))
}

fn run(args: &[String]) -> Result<ExitCode, String> {
    raise_fd_limit();
    let dir = std::env::temp_dir().join(format!("nkp-bench-{}", std::process::id()));
    let quick = args.iter().any(|a| a == "--quick");
    let mut cfg = if quick {
        suite::Config::quick(dir.clone())
    } else {
        suite::Config::full(dir.clone())
    };
    cfg.command = std::iter::once("nkp-bench run".to_string())
        .chain(args.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ");
    let mut out: Option<PathBuf> = None;
    let mut pin = true;
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        match a {
            "--quick" => {}
            "--rounds" => cfg.rounds = number::<usize>(value(args, &mut i, a)?, a)?.max(1),
            "--secs" => cfg.secs = number::<f64>(value(args, &mut i, a)?, a)?.clamp(0.05, 60.0),
            "--idle-conns" => {
                cfg.idle_conns = number::<usize>(value(args, &mut i, a)?, a)?.clamp(64, 15_000)
            }
            "--only" => {
                cfg.only = value(args, &mut i, a)?
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            }
            "--out" => out = Some(PathBuf::from(value(args, &mut i, a)?)),
            "--pin" => pin = true,
            "--no-pin" => pin = false,
            other => return Err(format!("unknown option `{other}`\n\n{USAGE}")),
        }
        i += 1;
    }
    nkpacket::tls::write_self_signed(&dir, &["localhost".into(), "127.0.0.1".into()])
        .map_err(|e| format!("certificate: {e}"))?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if pin && cpus >= 2 {
        // The load client on CPU 0, every server on the others: each server's placement is
        // then the same, instead of a per-process draw between same-CPU and cross-CPU
        // wake-ups (2.5x apart on one connection).
        let servers = if cpus == 2 {
            "1".to_string()
        } else {
            format!("1-{}", cpus - 1)
        };
        process::pin_servers(&servers);
        process::pin_self("0")?;
        cfg.pinning = Some(format!("load client on CPU 0, servers on CPU {servers}"));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    eprintln!("nkp-bench: {} ({})", cfg.command, report::machine());
    let result = rt.block_on(suite::run(&cfg));
    let _ = std::fs::remove_dir_all(&dir);
    let report = result?;
    let md = report.markdown();
    println!("{md}");
    if let Some(path) = out {
        std::fs::write(&path, &md).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if !report.all_ok() {
        eprintln!("nkp-bench: some rows missed their targets (see the verdict column)");
    }
    Ok(ExitCode::SUCCESS)
}

fn serve(args: &[String]) -> Result<ExitCode, String> {
    let (Some(imp), Some(service)) = (args.first(), args.get(1)) else {
        return Err(format!(
            "serve needs an implementation and a service\n\n{USAGE}"
        ));
    };
    let imp = server::Impl::parse(imp).ok_or_else(|| format!("unknown implementation {imp}"))?;
    let mut dir = None;
    let mut i = 2;
    while i < args.len() {
        match args[i].as_str() {
            "--cert-dir" => dir = Some(PathBuf::from(value(args, &mut i, "--cert-dir")?)),
            other => return Err(format!("unknown option `{other}`")),
        }
        i += 1;
    }
    let dir = dir.ok_or("serve needs --cert-dir")?;
    server::serve(imp, service, &transports::Certs::in_dir(&dir))?;
    Ok(ExitCode::SUCCESS)
}

/// Raises the soft limit on open files to the hard one (10 000 idle connections per side).
#[allow(unsafe_code)]
pub fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` into the valid, exclusively borrowed `limit`.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit only reads the valid `raised`.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            eprintln!("nkp-bench: cannot raise the open-file limit");
        }
    }
}
