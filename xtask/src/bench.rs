//! `cargo xtask bench`: the benchmark suite (`crates/nkp-bench`), built in release mode.
//!
//! ```text
//! cargo xtask bench                      every row, 5 alternating rounds of 1 s (~7 minutes)
//! cargo xtask bench --quick              2 rounds of 0.3 s (about a minute)
//! cargo xtask bench --only tcp4,memory   only the rows whose name contains one of these
//! cargo xtask bench --out report.md      also write the Markdown report to a file
//! ```
//!
//! Every flag goes to `nkp-bench run` (`cargo xtask bench -- --help`). Each row compares
//! nkpacket with a hand-written tokio baseline measured alternately in the same run, so the
//! ratios hold on a busy machine even when the absolute numbers do not. See `BENCHMARKS.md`.

use crate::cmd::{self, Env};

/// Builds nkp-bench in release mode and runs its suite with `args`.
pub fn run(env: &Env, args: &[String]) -> Result<(), String> {
    let args = args.strip_prefix(&["--".to_string()]).unwrap_or(args);
    let mut c = env.cargo();
    c.args(["run", "--release", "--quiet", "-p", "nkp-bench", "--"]);
    if args
        .iter()
        .any(|a| matches!(a.as_str(), "-h" | "--help" | "help"))
    {
        c.arg("help");
    } else {
        c.arg("run").args(args);
    }
    cmd::run(c)
}
