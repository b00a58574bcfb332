//! `cargo xtask load`: the load and soak test (`crates/nkp-load`), built in release mode.
//!
//! ```text
//! cargo xtask load                                   1000 clients × 1000 messages, tcp + udp
//! cargo xtask load --clients 200 --messages 5000     any nkp-load flags pass through
//! cargo xtask load --soak 600                        ten minutes of a smaller load, memory checked
//! ```
//!
//! `cargo xtask test` runs [`check`]: a reduced run (100 × 100, debug build, reusing the test
//! build) that fails on any lost or corrupted TCP message.

use crate::cmd::{self, Env};

/// Clients and messages of the reduced run inside `cargo xtask test`.
pub const CHECK_SIZE: (u32, u32) = (100, 100);

/// Runs nkp-load (release build) with `args` passed through.
pub fn run(env: &Env, args: &[String]) -> Result<(), String> {
    let mut c = env.cargo();
    c.args(["run", "--release", "--quiet", "-p", "nkp-load", "--"])
        .args(args);
    cmd::run(c)
}

/// The reduced run of `cargo xtask test`; returns nkp-load's summary line.
pub fn check(env: &Env) -> Result<String, String> {
    let (clients, messages) = CHECK_SIZE;
    let mut c = env.cargo();
    c.args(["run", "--quiet", "-p", "nkp-load", "--"])
        .args(["--clients", &clients.to_string()])
        .args(["--messages", &messages.to_string()]);
    let (result, lines) = cmd::run_watching(c, is_summary);
    result?;
    Ok(lines
        .last()
        .cloned()
        .unwrap_or_else(|| "load: no summary line".to_string()))
}

/// nkp-load's closing line: "load: PASSED 100x100: ..." (or "soak: ...").
fn is_summary(line: &str) -> bool {
    line.starts_with("load: PASSED") || line.starts_with("load: FAILED")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_the_summary() {
        assert!(is_summary(
            "load: PASSED 100x100: tcp ok: 10000/10000 echoed"
        ));
        assert!(is_summary(
            "load: FAILED 100x100: tcp FAILED: 9999/10000 echoed"
        ));
        assert!(!is_summary("load: 100 clients × 100 messages of 64 bytes"));
    }
}
