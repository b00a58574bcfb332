//! `cargo xtask test`: install what is missing, then format, lint, test, document and check
//! the dependencies, stopping at the first failure.

use std::time::{Duration, Instant};

use crate::cmd::{self, Env};
use crate::{deny, fuzz, install, load};

/// Options of `cargo xtask test`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Options {
    /// Skip installing Debian packages and the Python venv.
    pub no_install: bool,
    /// Skip clippy, the fuzz smoke run, rustdoc and cargo-deny.
    pub quick: bool,
}

/// How a step ended.
#[derive(Debug)]
enum Outcome {
    Passed,
    /// Passed, with something the summary must repeat.
    PassedWithNote(String),
    Skipped(&'static str),
    Failed(String),
}

struct StepResult {
    name: &'static str,
    outcome: Outcome,
    took: Duration,
}

/// What a step returns: `Ok(Some(note))` passed with a caveat for the summary.
type StepOutput = Result<Option<String>, String>;

/// The steps run so far and what the summary repeats.
struct Pipeline {
    env: Env,
    results: Vec<StepResult>,
    /// Summary lines of the test runners, repeated at the end for whoever reads the log.
    summaries: Vec<String>,
}

impl Pipeline {
    /// Runs one step (or records it as skipped); false if it failed.
    fn step(
        &mut self,
        name: &'static str,
        skip: Option<&'static str>,
        f: impl FnOnce(&mut Env, &mut Vec<String>) -> StepOutput,
    ) -> bool {
        if let Some(reason) = skip {
            self.results.push(StepResult {
                name,
                outcome: Outcome::Skipped(reason),
                took: Duration::ZERO,
            });
            return true;
        }
        eprintln!("\n==> {name}");
        let t = Instant::now();
        let outcome = match f(&mut self.env, &mut self.summaries) {
            Ok(None) => Outcome::Passed,
            Ok(Some(note)) => Outcome::PassedWithNote(note),
            Err(e) => Outcome::Failed(e),
        };
        let took = t.elapsed();
        let ok = !matches!(outcome, Outcome::Failed(_));
        match &outcome {
            Outcome::Failed(e) => eprintln!("==> {name}: FAILED in {}: {e}", fmt_duration(took)),
            _ => eprintln!("==> {name}: ok in {}", fmt_duration(took)),
        }
        self.results.push(StepResult {
            name,
            outcome,
            took,
        });
        ok
    }
}

/// Runs the whole pipeline; `Err` (already reported) when a step failed.
pub fn run(mut env: Env, opts: Options) -> Result<(), ()> {
    let start = Instant::now();
    let install_skip = opts.no_install.then_some("--no-install");
    let quick_skip = opts.quick.then_some("--quick");
    install::prepare_env(&mut env);
    if env.ci {
        eprintln!("xtask: CI=true: NKP_REQUIRE_PEERS=1 for every step, nextest profile `ci`");
    }
    let mut p = Pipeline {
        env,
        results: Vec::new(),
        summaries: Vec::new(),
    };

    let ok = p.step("install", install_skip, |env, _| {
        install::install(env).map(|()| None)
    }) && p.step("fmt", None, |env, _| {
        let mut c = env.cargo();
        c.args(["fmt", "--all", "--", "--check"]);
        if !cmd::stderr_is_terminal() {
            // rustfmt colours its diff even into a pipe: keep CI logs plain.
            c.arg("--color=never");
        }
        cmd::run(c).map_err(|e| format!("{e}: run `cargo fmt --all`"))?;
        Ok(None)
    }) && p.step("clippy", quick_skip, |env, _| {
        let mut c = env.cargo();
        c.args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]);
        cmd::run(c).map(|()| None)
    }) && p.step("tests", None, |env, summaries| {
        tests(env, summaries).map(|()| None)
    }) && p.step("sctp-vm", None, |env, summaries| {
        crate::sctp_vm::step(env, !opts.no_install, summaries)
    }) && p.step("load", None, |env, summaries| {
        let line = load::check(env)?;
        summaries.push(line);
        Ok(None)
    }) && p.step("fuzz", quick_skip, |env, summaries| {
        let opts = fuzz::Options {
            seconds: fuzz::SMOKE_SECONDS,
            targets: Vec::new(),
        };
        let summary = fuzz::run(env, &opts)?;
        summaries.push(format!("fuzz smoke run: no crash, {summary}"));
        Ok(None)
    }) && p.step("doctests", None, |env, summaries| {
        let mut c = env.cargo();
        c.args(["test", "--workspace", "--doc"]);
        let (result, lines) = cmd::run_watching(c, is_libtest_result);
        summaries.push(format!("doctests: {}", libtest_totals(&lines)));
        result.map(|()| None)
    }) && p.step("rustdoc", quick_skip, |env, _| {
        let mut c = env.cargo();
        c.args(["doc", "--workspace", "--no-deps"])
            .env("RUSTDOCFLAGS", "-D warnings");
        cmd::run(c).map(|()| None)
    }) && p.step("cargo-deny", quick_skip, |env, _| deny::check(env));

    print_summary(&p.results, &p.summaries, start.elapsed(), ok);
    if ok { Ok(()) } else { Err(()) }
}

/// The test suite: nextest when installed, else `cargo test`.
fn tests(env: &Env, summaries: &mut Vec<String>) -> Result<(), String> {
    let mut probe = env.cargo();
    probe.args(["nextest", "--version"]);
    if cmd::probe(probe).is_some() {
        let mut c = env.cargo();
        c.args(["nextest", "run", "--workspace", "--no-fail-fast"]);
        if env.ci {
            c.args(["--profile", "ci"]);
        }
        if cmd::stderr_is_terminal() {
            // Its output goes through a pipe to us: keep the colours for a terminal.
            c.args(["--color", "always"]);
        }
        let (result, lines) = cmd::run_watching(c, is_nextest_summary);
        match lines.last() {
            Some(line) => summaries.push(format!("nextest: {line}")),
            None => summaries.push("nextest: no summary line (did it build?)".to_string()),
        }
        result
    } else {
        install::loud_warning(
            "cargo-nextest not found: falling back to `cargo test` \
             (install it with `cargo install --locked cargo-nextest`)",
        );
        let mut c = env.cargo();
        // Doctests are the next step, as with nextest.
        c.args([
            "test",
            "--workspace",
            "--no-fail-fast",
            "--lib",
            "--bins",
            "--tests",
        ]);
        if cmd::stderr_is_terminal() {
            c.args(["--color", "always"]);
        }
        let (result, lines) = cmd::run_watching(c, is_libtest_result);
        summaries.push(format!("cargo test: {}", libtest_totals(&lines)));
        result
    }
}

/// nextest's final line: "Summary [   1.234s] 12 tests run: 12 passed, 0 skipped".
fn is_nextest_summary(line: &str) -> bool {
    line.starts_with("Summary [")
}

/// libtest's per-binary line: "test result: ok. 3 passed; 0 failed; 1 ignored; ...".
fn is_libtest_result(line: &str) -> bool {
    line.starts_with("test result:")
}

/// Adds up libtest's "test result:" lines.
fn libtest_totals(lines: &[String]) -> String {
    let mut passed = 0u64;
    let mut failed = 0u64;
    let mut ignored = 0u64;
    for line in lines {
        for part in line.split([';', '.']) {
            let mut words = part.split_whitespace();
            if let (Some(n), Some(what)) = (words.next(), words.next())
                && let Ok(n) = n.parse::<u64>()
            {
                match what {
                    "passed" => passed += n,
                    "failed" => failed += n,
                    "ignored" => ignored += n,
                    _ => {}
                }
            }
        }
    }
    format!(
        "{} tests run: {passed} passed, {failed} failed, {ignored} ignored ({} binaries)",
        passed + failed,
        lines.len()
    )
}

fn print_summary(results: &[StepResult], summaries: &[String], total: Duration, ok: bool) {
    eprintln!("\n==================== cargo xtask test: summary ====================");
    for r in results {
        let (status, detail) = match &r.outcome {
            Outcome::Passed => ("ok", String::new()),
            Outcome::PassedWithNote(note) => ("ok (!)", format!("  {note}")),
            Outcome::Skipped(why) => ("skipped", format!("  ({why})")),
            Outcome::Failed(e) => ("FAILED", format!("  {e}")),
        };
        let took = if matches!(r.outcome, Outcome::Skipped(_)) {
            "-".to_string()
        } else {
            fmt_duration(r.took)
        };
        eprintln!("  {:<11} {:<8} {:>8}{detail}", r.name, status, took);
    }
    for line in summaries {
        eprintln!("  {line}");
    }
    eprintln!(
        "  total: {} — {}",
        fmt_duration(total),
        if ok { "PASSED" } else { "FAILED" }
    );
    eprintln!("===================================================================");
}

fn fmt_duration(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs >= 60.0 {
        format!("{}m{:02}s", d.as_secs() / 60, d.as_secs() % 60)
    } else {
        format!("{secs:.1}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_up_libtest_results() {
        let lines = vec![
            "test result: ok. 3 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; \
             finished in 0.01s"
                .to_string(),
            "test result: FAILED. 2 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out"
                .to_string(),
        ];
        assert_eq!(
            libtest_totals(&lines),
            "6 tests run: 5 passed, 1 failed, 1 ignored (2 binaries)"
        );
    }

    #[test]
    fn recognises_nextest_summary() {
        assert!(is_nextest_summary(
            "Summary [   0.123s] 12 tests run: 12 passed, 0 skipped"
        ));
        assert!(!is_nextest_summary("Starting 12 tests across 3 binaries"));
    }

    #[test]
    fn formats_durations() {
        assert_eq!(fmt_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(fmt_duration(Duration::from_secs(125)), "2m05s");
    }
}
