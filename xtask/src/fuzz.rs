//! `cargo xtask fuzz`: builds the cargo-fuzz targets of `fuzz/` and runs each for a while,
//! failing when libFuzzer finds a crash, a hang or a memory blow-up.
//!
//! The targets are built with `--sanitizer none`: the code under test has no `unsafe` (the
//! workspace denies it), so AddressSanitizer would only slow builds and runs down; panics,
//! arithmetic overflow (debug assertions are on in fuzz builds), hangs (`-timeout`) and memory
//! (`-rss_limit_mb`, plus the framing target's own allocation check) are what is looked for.
//! cargo-fuzz needs nightly flags; `RUSTC_BOOTSTRAP=1` lets the stable toolchain take them.
//!
//! Each target's corpus is `fuzz/corpus/<target>` (kept between runs, not committed), seeded
//! from the committed `fuzz/seeds/<target>`. The full libFuzzer log of the last run is
//! `fuzz/artifacts/<target>/last-run.log`; crashes land beside it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::cmd::{self, Env};
use crate::install;

/// The fuzz targets (`[[bin]]`s of `fuzz/Cargo.toml`), in the order they run.
pub const TARGETS: &[&str] = &[
    "uri",
    "options",
    "framing",
    "stun",
    "dns_order",
    "ws_client_handshake",
    "ws_server_frames",
    "http_head",
    "proxy_header",
];

/// Seconds per target of `cargo xtask fuzz` without `--seconds`.
pub const DEFAULT_SECONDS: u64 = 60;

/// Seconds per target of the smoke run inside `cargo xtask test`.
pub const SMOKE_SECONDS: u64 = 10;

/// libFuzzer: an input running longer than this (seconds) is a hang.
const INPUT_TIMEOUT_SECS: u64 = 10;

/// libFuzzer: a process using more memory than this (MiB) has failed.
const RSS_LIMIT_MB: u64 = 2048;

/// Options of `cargo xtask fuzz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Seconds each target runs.
    pub seconds: u64,
    /// Targets to run (all of [`TARGETS`] when empty).
    pub targets: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            seconds: DEFAULT_SECONDS,
            targets: Vec::new(),
        }
    }
}

/// Parses `[--seconds N] [TARGET...]`.
pub fn parse_options(args: &[String]) -> Result<Options, String> {
    let mut opts = Options::default();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => {
                let value = args.next().ok_or("--seconds needs a value")?;
                opts.seconds = value
                    .parse()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("--seconds: `{value}` is not a positive number"))?;
            }
            flag if flag.starts_with('-') => return Err(format!("unknown option `{flag}`")),
            target if TARGETS.contains(&target) => opts.targets.push(target.to_string()),
            other => {
                return Err(format!(
                    "unknown fuzz target `{other}` (targets: {})",
                    TARGETS.join(", ")
                ));
            }
        }
    }
    Ok(opts)
}

/// Whether `cargo fuzz` runs.
pub fn cargo_fuzz_present(env: &Env) -> bool {
    let mut probe = env.cargo();
    probe.args(["fuzz", "--version"]);
    cmd::probe(probe).is_some()
}

/// Installs cargo-fuzz from crates.io unless it is there already.
pub fn ensure_cargo_fuzz(env: &Env) -> Result<(), String> {
    if cargo_fuzz_present(env) {
        eprintln!("xtask: cargo-fuzz present");
        return Ok(());
    }
    let mut c = env.cargo();
    c.args(["install", "cargo-fuzz", "--locked"]);
    cmd::run(c)?;
    if cargo_fuzz_present(env) {
        Ok(())
    } else {
        Err("cargo-fuzz was installed but `cargo fuzz --version` does not run".into())
    }
}

/// A `cargo fuzz <sub>` command that the stable toolchain accepts, on `fuzz/`, building in
/// `fuzz/target` whatever `CARGO_TARGET_DIR` says (fuzz builds use other compiler flags: they
/// would invalidate a shared target directory).
fn cargo_fuzz(env: &Env, sub: &str) -> std::process::Command {
    let fuzz_dir = env.root.join("fuzz");
    let mut c = env.cargo();
    c.env("RUSTC_BOOTSTRAP", "1")
        .args(["fuzz", sub, "--sanitizer", "none", "--fuzz-dir"])
        .arg(&fuzz_dir)
        .arg("--target-dir")
        .arg(fuzz_dir.join("target"));
    c
}

/// Builds every target, then runs each selected one for `opts.seconds`. `Ok(note)` with a
/// one-line summary when nothing was found; `Err` naming the reproducers otherwise.
pub fn run(env: &Env, opts: &Options) -> Result<String, String> {
    ensure_cargo_fuzz(env)?;
    let start = Instant::now();
    cmd::run(cargo_fuzz(env, "build"))?;
    let built = start.elapsed();

    let targets: Vec<&str> = if opts.targets.is_empty() {
        TARGETS.to_vec()
    } else {
        opts.targets.iter().map(String::as_str).collect()
    };
    let mut failures = Vec::new();
    let mut lines = Vec::new();
    for target in &targets {
        match run_target(env, target, opts.seconds) {
            Ok(stats) => {
                eprintln!("xtask: fuzz {target}: ok, {stats}");
                lines.push(format!("{target}: {stats}"));
            }
            Err(e) => {
                eprintln!("xtask: fuzz {target}: FAILED: {e}");
                failures.push(format!("{target}: {e}"));
            }
        }
    }
    let summary = format!(
        "{} targets × {} s, build {:.0} s, total {:.0} s",
        targets.len(),
        opts.seconds,
        built.as_secs_f64(),
        start.elapsed().as_secs_f64()
    );
    if failures.is_empty() {
        for line in &lines {
            eprintln!("  {line}");
        }
        Ok(summary)
    } else {
        Err(format!("{}; {summary}", failures.join("; ")))
    }
}

/// Runs one target; `Ok(stats)` or `Err(what was found, with the reproducer)`.
fn run_target(env: &Env, target: &str, seconds: u64) -> Result<String, String> {
    let fuzz_dir = env.root.join("fuzz");
    let corpus = fuzz_dir.join("corpus").join(target);
    let seeds = fuzz_dir.join("seeds").join(target);
    let artifacts = fuzz_dir.join("artifacts").join(target);
    for dir in [&corpus, &artifacts] {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    let mut c = cargo_fuzz(env, "run");
    c.arg(target)
        .arg(&corpus)
        .arg(&seeds)
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .arg(format!("-timeout={INPUT_TIMEOUT_SECS}"))
        .arg(format!("-rss_limit_mb={RSS_LIMIT_MB}"))
        .arg("-print_final_stats=1");
    eprintln!("$ {}", cmd::display(&c));
    // libFuzzer stops by itself after `seconds`; the margin covers an incremental rebuild
    // and the last input's timeout.
    let limit = Duration::from_secs(seconds + 120 + INPUT_TIMEOUT_SECS);
    let outcome = cmd::capture_with_timeout(c, limit)?;
    let log_path = artifacts.join("last-run.log");
    let text = match &outcome {
        Some((_, text)) => text.as_str(),
        None => "",
    };
    // The log is for whoever investigates: failing to write it hides nothing else.
    let _ = std::fs::write(&log_path, text);
    match outcome {
        None => Err(format!(
            "did not stop within {} s (log: {})",
            limit.as_secs(),
            rel(&env.root, &log_path)
        )),
        Some((true, text)) => Ok(stats(&text)),
        Some((false, text)) => {
            print_tail(&text, 40);
            let found = finding(&text);
            Err(match reproducer(&text, &env.root) {
                Some(path) => format!(
                    "{found}; reproduce with `RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none \
                     {target} {path}` (log: {})",
                    rel(&env.root, &log_path)
                ),
                None => format!(
                    "{found}, no reproducer written (log: {})",
                    rel(&env.root, &log_path)
                ),
            })
        }
    }
}

/// `path` relative to `root` when it is inside it.
fn rel(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

/// Prints the interesting part of a failed run: from the panic message on when there is
/// one (cargo-fuzz's own backtrace follows it), else the last lines.
fn print_tail(text: &str, lines: usize) {
    let all: Vec<&str> = text.lines().collect();
    let start = all
        .iter()
        .position(|l| l.contains("panicked at"))
        .unwrap_or(all.len().saturating_sub(lines));
    let end = (start + lines).min(all.len());
    eprintln!("---- libFuzzer output ----");
    for line in &all[start..end] {
        eprintln!("{line}");
    }
    eprintln!("--------------------------");
}

/// The file libFuzzer wrote the failing input to ("Test unit written to PATH"), relative to
/// the repository root when it can be.
pub fn reproducer(text: &str, root: &Path) -> Option<String> {
    let line = text
        .lines()
        .rev()
        .find_map(|l| l.split_once("Test unit written to ").map(|(_, p)| p.trim()))?;
    let path = PathBuf::from(line);
    let path = if path.is_absolute() {
        path
    } else {
        // cargo fuzz runs the target from the fuzz directory.
        root.join("fuzz").join(path)
    };
    let path = path.canonicalize().unwrap_or(path);
    Some(rel(root, &path))
}

/// What libFuzzer reported: a panic message, a timeout, an out-of-memory, or a crash.
pub fn finding(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    if let Some(i) = lines.iter().position(|l| l.contains("panicked at")) {
        let place = lines[i]
            .split_once("panicked at ")
            .map_or("", |(_, p)| p.trim_end_matches(':'));
        let message = lines.get(i + 1).copied().unwrap_or("").trim();
        return format!("panic at {place}: {message}");
    }
    for (needle, what) in [
        ("ERROR: libFuzzer: timeout", "an input ran too long (hang)"),
        ("ERROR: libFuzzer: out-of-memory", "out of memory"),
        ("ERROR: libFuzzer: deadly signal", "a crash (deadly signal)"),
    ] {
        if text.contains(needle) {
            return what.to_string();
        }
    }
    "the fuzzer failed".to_string()
}

/// The closing statistics: "N runs, cov C, corpus K".
pub fn stats(text: &str) -> String {
    let runs = text
        .lines()
        .rev()
        .find_map(|l| {
            l.strip_prefix("Done ")
                .and_then(|r| r.split_whitespace().next())
        })
        .unwrap_or("?");
    let last_status = text
        .lines()
        .rev()
        .find(|l| l.starts_with('#') && l.contains(" cov: "));
    let field = |name: &str| {
        last_status
            .and_then(|l| {
                let mut words = l.split_whitespace();
                words.find(|w| *w == name)?;
                words.next()
            })
            .unwrap_or("?")
            .to_string()
    };
    format!(
        "{runs} runs, cov {}, corpus {}",
        field("cov:"),
        field("corp:")
    )
}

/// The install step's part: cargo-fuzz, skipped when present. Failures are loud warnings, as
/// for the other installs; the fuzz step then tries again and fails with the reason.
pub fn install(env: &Env) {
    if let Err(e) = ensure_cargo_fuzz(env) {
        install::loud_warning(&format!("could not install cargo-fuzz: {e}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_options() {
        assert_eq!(parse_options(&[]).unwrap(), Options::default());
        let o = parse_options(&args(&["--seconds", "5", "uri", "stun"])).unwrap();
        assert_eq!(o.seconds, 5);
        assert_eq!(o.targets, ["uri", "stun"]);
        assert!(parse_options(&args(&["--seconds"])).is_err());
        assert!(parse_options(&args(&["--seconds", "0"])).is_err());
        assert!(parse_options(&args(&["nope"])).is_err());
        assert!(parse_options(&args(&["--fast"])).is_err());
    }

    #[test]
    fn targets_match_the_fuzz_manifest() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let manifest = std::fs::read_to_string(root.join("fuzz/Cargo.toml")).unwrap();
        let mut bins: Vec<&str> = manifest
            .lines()
            .filter_map(|l| l.strip_prefix("name = \""))
            .filter_map(|l| l.strip_suffix('"'))
            .filter(|name| *name != "nkpacket-fuzz")
            .collect();
        bins.sort_unstable();
        let mut targets = TARGETS.to_vec();
        targets.sort_unstable();
        assert_eq!(bins, targets);
        for t in TARGETS {
            let seeds = root.join("fuzz/seeds").join(t);
            let n = std::fs::read_dir(&seeds).map(|d| d.count()).unwrap_or(0);
            assert!(n > 0, "no seeds in {}", seeds.display());
            assert!(root.join(format!("fuzz/fuzz_targets/{t}.rs")).is_file());
        }
    }

    #[test]
    fn reads_libfuzzer_output() {
        let ok = "#1234\tpulse  cov: 10 ft: 11 corp: 5/100b lim: 4 exec/s: 1 rss: 30Mb\n\
                  #99999\tDONE   cov: 601 ft: 903 corp: 103/2921b lim: 4096 exec/s: 1 rss: 51Mb\n\
                  Done 99999 runs in 11 second(s)\n";
        assert_eq!(stats(ok), "99999 runs, cov 601, corpus 103/2921b");
        assert_eq!(stats(""), "? runs, cov ?, corpus ?");

        let crash = "thread '<unnamed>' (1) panicked at fuzz_targets/framing.rs:179:21:\n\
                     1 bytes left: Ok(None)\n\
                     ==1== ERROR: libFuzzer: deadly signal\n\
                     artifact_prefix='/r/fuzz/artifacts/framing/'; Test unit written to \
                     /r/fuzz/artifacts/framing/crash-566d\n";
        assert_eq!(
            finding(crash),
            "panic at fuzz_targets/framing.rs:179:21: 1 bytes left: Ok(None)"
        );
        assert_eq!(
            reproducer(crash, Path::new("/r")).as_deref(),
            Some("fuzz/artifacts/framing/crash-566d")
        );
        assert_eq!(
            finding("==2== ERROR: libFuzzer: timeout after 10 seconds"),
            "an input ran too long (hang)"
        );
        assert_eq!(reproducer("nothing", Path::new("/r")), None);
    }
}
