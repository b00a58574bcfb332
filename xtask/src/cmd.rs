//! Running external programs: the environment every step shares, echoing, waiting with a
//! time limit, and streaming output while watching for a summary line.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, IsTerminal, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// What every program started by xtask gets: the repository root as working directory, a
/// `PATH` with the project's venv first, and a few extra variables.
#[derive(Debug, Clone)]
pub struct Env {
    /// The workspace root (the folder holding the root `Cargo.toml`).
    pub root: PathBuf,
    /// The `PATH` handed to children (the venv's `bin` first once it exists).
    pub path: OsString,
    /// Extra variables set on every child, in order.
    pub vars: Vec<(String, String)>,
    /// True when running in CI (`CI=true` or `CI=1`).
    pub ci: bool,
    /// The cargo to run: `$CARGO` when xtask runs under cargo, else `cargo`.
    pub cargo: OsString,
}

impl Env {
    /// Builds the environment from this process's own.
    pub fn from_process(root: PathBuf) -> Self {
        let ci = std::env::var("CI")
            .map(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "true" | "1" | "yes"))
            .unwrap_or(false);
        Env {
            root,
            path: std::env::var_os("PATH").unwrap_or_else(|| OsString::from("/usr/bin:/bin")),
            vars: Vec::new(),
            ci,
            cargo: std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo")),
        }
    }

    /// The project's Python virtual environment.
    pub fn venv(&self) -> PathBuf {
        self.root.join(".venv")
    }

    /// Puts `dir` first on the `PATH` handed to children (once).
    pub fn prepend_path(&mut self, dir: &Path) {
        let mut dirs: Vec<PathBuf> = std::env::split_paths(&self.path)
            .filter(|p| p != dir)
            .collect();
        dirs.insert(0, dir.to_path_buf());
        if let Ok(joined) = std::env::join_paths(dirs) {
            self.path = joined;
        }
    }

    /// Sets (or replaces) an extra variable for every child.
    pub fn set(&mut self, key: &str, value: &str) {
        self.vars.retain(|(k, _)| k != key);
        self.vars.push((key.to_string(), value.to_string()));
    }

    /// A command for `program` with this environment applied.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.current_dir(&self.root).env("PATH", &self.path);
        for (k, v) in &self.vars {
            cmd.env(k, v);
        }
        cmd
    }

    /// A `cargo` command with this environment applied.
    pub fn cargo(&self) -> Command {
        self.command(&self.cargo)
    }

    /// Looks `program` up on the children's `PATH`.
    pub fn which(&self, program: &str) -> Option<PathBuf> {
        std::env::split_paths(&self.path)
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
    }
}

/// Variables every child gets (see [`Env`]): left out of echoed command lines.
const COMMON_VARS: &[&str] = &["PATH", "VIRTUAL_ENV", "NKP_REQUIRE_PEERS"];

/// `cmd` as a shell-like line, for echoing and error messages. Leaves out the variables
/// every child gets, and shows cargo as `cargo`.
pub fn display(cmd: &Command) -> String {
    let mut line = String::new();
    for (k, v) in cmd.get_envs() {
        if !COMMON_VARS.iter().any(|c| k == *c)
            && let Some(v) = v
        {
            line.push_str(&format!("{}={} ", k.to_string_lossy(), v.to_string_lossy()));
        }
    }
    let program = Path::new(cmd.get_program());
    if program.file_name().is_some_and(|name| name == "cargo") {
        line.push_str("cargo");
    } else {
        line.push_str(&program.to_string_lossy());
    }
    for arg in cmd.get_args() {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    line
}

/// Runs `cmd` with inherited stdio, echoing it first; fails unless it exits 0.
pub fn run(mut cmd: Command) -> Result<(), String> {
    eprintln!("$ {}", display(&cmd));
    let status = cmd
        .status()
        .map_err(|e| format!("could not start `{}`: {e}", display(&cmd)))?;
    check(&cmd, status)
}

/// Runs `cmd` quietly and returns its stdout if it exits 0, `None` otherwise (also when it
/// cannot be started). For probes such as `tool --version`.
pub fn probe(mut cmd: Command) -> Option<String> {
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if out.status.success() {
        Some(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        None
    }
}

/// Runs `cmd` capturing stdout and stderr; returns (success, stdout + stderr).
pub fn capture(mut cmd: Command) -> Result<(bool, String), String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("could not start `{}`: {e}", display(&cmd)))?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    Ok((out.status.success(), text))
}

/// Runs `cmd` capturing its output, but kills it after `limit`. Returns `Some((success,
/// stdout + stderr))`, or `None` if it timed out.
pub fn capture_with_timeout(
    mut cmd: Command,
    limit: Duration,
) -> Result<Option<(bool, String)>, String> {
    // Its own process group, so that a timeout also stops what it started (git, say),
    // which would otherwise keep the pipes open.
    cmd.process_group(0);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("could not start `{}`: {e}", display(&cmd)))?;
    let readers: Vec<_> = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|mut src| {
        thread::spawn(move || {
            let mut text = Vec::new();
            // A read error only truncates what we show.
            let _ = src.read_to_end(&mut text);
            String::from_utf8_lossy(&text).into_owned()
        })
    })
    .collect();
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if start.elapsed() >= limit => {
                // Best effort: the child may have exited in between.
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{}", child.id())])
                    .stderr(Stdio::null())
                    .status();
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => thread::sleep(Duration::from_millis(100)),
            Err(e) => return Err(format!("waiting for `{}`: {e}", display(&cmd))),
        }
    };
    let text: String = readers.into_iter().filter_map(|h| h.join().ok()).collect();
    Ok(status.map(|s| (s.success(), text)))
}

/// Runs `cmd`, copying its stdout and stderr through to ours line by line, and returns the
/// lines (ANSI colours removed) for which `keep` is true. Fails unless it exits 0; the kept
/// lines are returned in the error case too, as the second element.
pub fn run_watching(mut cmd: Command, keep: fn(&str) -> bool) -> (Result<(), String>, Vec<String>) {
    eprintln!("$ {}", display(&cmd));
    let mut child = match cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn() {
        Ok(child) => child,
        Err(e) => {
            return (
                Err(format!("could not start `{}`: {e}", display(&cmd))),
                Vec::new(),
            );
        }
    };
    let out = child.stdout.take().map(|s| tee(s, false, keep));
    let err = child.stderr.take().map(|s| tee(s, true, keep));
    let status = child.wait();
    let mut kept = Vec::new();
    for handle in [out, err].into_iter().flatten() {
        if let Ok(lines) = handle.join() {
            kept.extend(lines);
        }
    }
    let result = match status {
        Ok(status) => check(&cmd, status),
        Err(e) => Err(format!("waiting for `{}`: {e}", display(&cmd))),
    };
    (result, kept)
}

/// Copies `src` line by line to our stdout or stderr on a thread; returns the kept lines.
fn tee(
    src: impl Read + Send + 'static,
    to_stderr: bool,
    keep: fn(&str) -> bool,
) -> thread::JoinHandle<Vec<String>> {
    thread::spawn(move || {
        let mut kept = Vec::new();
        let mut reader = BufReader::new(src);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    // Output is best effort: a closed terminal must not stop the child.
                    let _ = if to_stderr {
                        std::io::stderr().lock().write_all(&buf)
                    } else {
                        std::io::stdout().lock().write_all(&buf)
                    };
                    let line = strip_ansi(&String::from_utf8_lossy(&buf));
                    let line = line.trim();
                    if keep(line) {
                        kept.push(line.to_string());
                    }
                }
            }
        }
        kept
    })
}

/// Removes ANSI escape sequences (colours) from `s`.
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                // Parameters and intermediates, then one final byte in '@'..='~'.
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            } else {
                chars.next();
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether our own stderr is a terminal (to ask children for colours when we pipe them).
pub fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}

fn check(cmd: &Command, status: ExitStatus) -> Result<(), String> {
    if status.success() {
        Ok(())
    } else {
        let how = match status.code() {
            Some(code) => format!("exit code {code}"),
            None => "a signal".to_string(),
        };
        Err(format!("`{}` failed with {how}", display(cmd)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_colours() {
        assert_eq!(
            strip_ansi("\u{1b}[32;1m     Summary\u{1b}[0m [   0.1s] 3 tests run"),
            "     Summary [   0.1s] 3 tests run"
        );
        assert_eq!(strip_ansi("plain"), "plain");
    }

    #[test]
    fn prepends_path_once() {
        let mut env = Env::from_process(PathBuf::from("/repo"));
        env.path = OsString::from("/a:/venv/bin:/b");
        env.prepend_path(Path::new("/venv/bin"));
        assert_eq!(env.path, OsString::from("/venv/bin:/a:/b"));
    }
}
