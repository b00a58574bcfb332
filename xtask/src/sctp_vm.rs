//! `cargo xtask sctp-vm`: runs the SCTP tests where the kernel has SCTP.
//!
//! The development and CI kernels have no SCTP (`socket(IPPROTO_SCTP)` fails), so the tests
//! of `nkp-sctp` boot a throw-away QEMU VM with Debian's cloud kernel (the `sctp` module and
//! its dependencies loaded) and a busybox initramfs holding the test binaries, and run them
//! there (software emulation: nested KVM does not work on these machines). A boot, the
//! tests and the power-off take a few seconds.
//!
//! ```text
//! cargo xtask sctp-vm                    build the SCTP test binaries (nkp-sctp's, the
//!                                        facade's and the `nkp` command's), run them all in
//!                                        one VM (or natively when the host has SCTP)
//! cargo xtask sctp-vm -- BINARY [ARGS]   run one program in the VM (a cargo runner:
//!   CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="cargo xtask sctp-vm --" cargo test -p nkp-sctp)
//! ```
//!
//! What it needs, installed when missing (as root, with apt): `qemu-system-x86`
//! (`--no-install-recommends`) and `busybox-static`. The kernel is not installed: the
//! `linux-image-cloud-amd64` metapackage is resolved to its current kernel package, which
//! is fetched with `apt-get download` into `target/sctp-vm/` and extracted there once (with
//! its image decompressed to an ELF `vmlinux`, which boots faster).
//!
//! The guest runs the programs with `NKP_REQUIRE_SCTP=1` (a test that finds no SCTP fails
//! instead of skipping) and the caller's `RUST_*`, `CARGO_*` and `NKP_*` variables. Their
//! stdout and stderr are streamed back; the exit code is the program's (the first failing
//! one's), or an error when the VM times out or reports no exit code, with the tail of the
//! kernel console. Binaries the tests start (the `nkp` command) are copied in too, and
//! `NKP_EXE_<NAME>` tells the tests where.
//!
//! Environment: `NKP_SCTP_VM_FORCE=1` uses the VM even when the host has SCTP;
//! `NKP_SCTP_VM_TIMEOUT` (seconds, default 120) limits one boot; `NKP_SCTP_VM_KEEP=1`
//! keeps the run directory; `NKP_SCTP_VM_KERNEL` picks another kernel package.

mod cpio;
mod kernel;
mod lz4;

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use crate::cmd::{self, Env};
use crate::install;

/// The kernel metapackage (small, LZ4-compressed, `crc32c` built in, SCTP as a module).
const KERNEL_PACKAGE: &str = "linux-image-cloud-amd64";
/// Kernel modules loaded in the guest (with their dependencies).
const MODULES: &[&str] = &["sctp"];
/// Debian packages the runner needs on the host.
const HOST_PACKAGES: &[&str] = &["qemu-system-x86", "busybox-static"];
/// The package whose test binaries `cargo xtask sctp-vm` runs.
const TEST_PACKAGE: &str = "nkp-sctp";
/// Guest console line carrying the exit code.
const EXIT_MARK: &str = "SCTPVM-EXIT-CODE=";
/// How the error of a VM that timed out starts.
const TIMED_OUT: &str = "the VM timed out";
/// How the error of a VM that reported no exit code starts.
const NO_EXIT_CODE: &str = "the VM reported no exit code";

/// The guest's `/init`: mounts, loads the modules, brings up `lo`, runs `/sctpvm/run.sh`
/// with its output on the second and third serial ports, prints the exit code on the
/// console and powers off.
const INIT: &str = r#"#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
con=/dev/ttyS0
for m in $(cat /etc/sctpvm/modules); do
  insmod "/lib/modules/$(uname -r)/$m" || echo "SCTPVM-WARN: insmod $m failed" > $con
done
ip link set lo up
hostname sctpvm
stty -F /dev/ttyS1 raw -echo; stty -F /dev/ttyS2 raw -echo
echo "SCTPVM-START $(cut -d' ' -f1 /proc/uptime)" > $con
/bin/sh /sctpvm/run.sh < /dev/null > /dev/ttyS1 2> /dev/ttyS2
rc=$?
# tcsetattr(TCSADRAIN) waits until the UARTs have sent everything
stty -F /dev/ttyS1 raw; stty -F /dev/ttyS2 raw
echo "SCTPVM-EXIT-CODE=$rc uptime=$(cut -d' ' -f1 /proc/uptime)" > $con
sync
poweroff -f
"#;

/// `cargo xtask sctp-vm [-- BINARY ARGS...]`.
pub fn main(args: &[String]) -> ExitCode {
    let env = Env::from_process(crate::workspace_root());
    match args {
        [] => match run_tests(&env, true) {
            Ok(summary) => {
                eprintln!("xtask: sctp-vm: {summary}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: sctp-vm: {e}");
                ExitCode::FAILURE
            }
        },
        [dashdash, program, rest @ ..] if dashdash == "--" => {
            let program = PathBuf::from(program);
            match run_program(&env, &program, rest) {
                Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
                Err(e) => {
                    eprintln!("error: sctp-vm: {e}");
                    // As the reference runner: 124 timeout, 125 no exit code, 126 setup.
                    ExitCode::from(if e.starts_with(TIMED_OUT) {
                        124
                    } else if e.starts_with(NO_EXIT_CODE) {
                        125
                    } else {
                        126
                    })
                }
            }
        }
        _ => {
            eprintln!("usage: cargo xtask sctp-vm [-- BINARY [ARGS...]]");
            ExitCode::from(2)
        }
    }
}

/// The `sctp-vm` step of `cargo xtask test` (after the tests): its summary line goes to
/// `summaries`. Without `install`, missing host tools skip the step (with a note) instead
/// of being installed.
pub fn step(
    env: &Env,
    install: bool,
    summaries: &mut Vec<String>,
) -> Result<Option<String>, String> {
    if !install && !tools_present(env) && !host_has_sctp() {
        let note = format!(
            "skipped: {} missing (--no-install)",
            HOST_PACKAGES.join(", ")
        );
        install::loud_warning(&format!("sctp-vm {note}"));
        return Ok(Some(note));
    }
    let summary = run_tests(env, install)?;
    summaries.push(format!("sctp-vm: {summary}"));
    Ok(None)
}

/// Builds the test binaries of [`TEST_PACKAGE`] and runs them all (in one VM, or natively).
pub fn run_tests(env: &Env, install: bool) -> Result<String, String> {
    let (binaries, tools) = build_tests(env)?;
    if binaries.is_empty() {
        return Err(format!("cargo built no test binaries for {TEST_PACKAGE}"));
    }
    let run = binaries
        .iter()
        .map(|b| (b.clone(), Vec::new()))
        .collect::<Vec<_>>();
    let t = Instant::now();
    let (code, results, where_) = if host_has_sctp() && !forced() {
        eprintln!("xtask: sctp-vm: this kernel has SCTP: running the tests natively");
        let mut code = 0;
        let mut results = Vec::new();
        for (bin, args) in &run {
            let mut c = env.command(bin);
            c.args(args).env("NKP_REQUIRE_SCTP", "1");
            let (res, lines) = cmd::run_watching(c, is_result);
            results.extend(lines);
            if res.is_err() && code == 0 {
                code = 101;
            }
        }
        (code, results, "natively")
    } else {
        let mut vm = Vm::prepare(env, install)?;
        vm.tools = tools;
        let (code, results) = vm.run(&run)?;
        (code, results, "in the VM")
    };
    let summary = format!(
        "{} binaries {where_} in {:.1}s: {}",
        binaries.len(),
        t.elapsed().as_secs_f64(),
        if results.is_empty() {
            "no test results".to_string()
        } else {
            results.join(" | ")
        }
    );
    if code == 0 {
        Ok(summary)
    } else {
        Err(format!("exit code {code}; {summary}"))
    }
}

/// Runs one program in the VM (or natively when the host has SCTP); its exit code.
pub fn run_program(env: &Env, program: &Path, args: &[String]) -> Result<i32, String> {
    let program =
        std::fs::canonicalize(program).map_err(|e| format!("{}: {e}", program.display()))?;
    if host_has_sctp() && !forced() {
        let status = Command::new(&program)
            .args(args)
            .env("NKP_REQUIRE_SCTP", "1")
            .status()
            .map_err(|e| format!("{}: {e}", program.display()))?;
        return Ok(status.code().unwrap_or(128));
    }
    let vm = Vm::prepare(env, true)?;
    let (code, _) = vm.run(&[(program, args.to_vec())])?;
    Ok(code)
}

fn forced() -> bool {
    std::env::var("NKP_SCTP_VM_FORCE").is_ok_and(|v| v == "1" || v == "true")
}

fn is_result(line: &str) -> bool {
    line.starts_with("test result:")
}

/// Whether the host kernel does SCTP: the protocol is registered, or the running kernel
/// has the module (which `socket()` loads on demand).
fn host_has_sctp() -> bool {
    let registered = std::fs::read_to_string("/proc/net/protocols")
        .is_ok_and(|p| p.lines().any(|l| l.starts_with("SCTP ")));
    let module = std::fs::read_to_string("/proc/sys/kernel/osrelease").is_ok_and(|r| {
        Path::new("/lib/modules")
            .join(r.trim())
            .join("kernel/net/sctp")
            .is_dir()
    });
    registered || module
}

/// The tests that need kernel SCTP: all of [`TEST_PACKAGE`]'s, the facade's SCTP test, and
/// the `nkp` command's (which runs the `nkp` binary: see [`Vm::tools`]).
const TEST_SELECTIONS: &[&[&str]] = &[
    &["-p", TEST_PACKAGE],
    &["-p", "nkpacket", "--test", "sctp"],
    &["-p", "nkp-cli", "--test", "sctp"],
];

/// `cargo test ... --no-run` for each of [`TEST_SELECTIONS`], and the test executables it
/// reports.
fn build_tests(env: &Env) -> Result<(Vec<PathBuf>, Vec<PathBuf>), String> {
    let (mut all, mut tools) = (Vec::new(), Vec::new());
    for selection in TEST_SELECTIONS {
        let mut c = env.cargo();
        c.arg("test")
            .args(*selection)
            .args(["--no-run", "--message-format=json-render-diagnostics"]);
        eprintln!("$ {}", cmd::display(&c));
        let out = c
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| format!("could not start cargo: {e}"))?;
        if !out.status.success() {
            return Err(format!("building the tests {} failed", selection.join(" ")));
        }
        let (t, b) = executables(&String::from_utf8_lossy(&out.stdout));
        all.extend(t);
        tools.extend(
            b.into_iter()
                .filter(|b| !tools.contains(b))
                .collect::<Vec<_>>(),
        );
    }
    Ok((all, tools))
}

/// The `"executable"` paths of cargo's JSON messages: (test programs, other programs).
/// The other programs are the package binaries cargo builds for integration tests
/// (`CARGO_BIN_EXE_<name>`), such as `nkp`.
fn executables(json_lines: &str) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let (mut tests, mut bins) = (Vec::new(), Vec::new());
    for l in json_lines
        .lines()
        .filter(|l| l.contains("\"reason\":\"compiler-artifact\""))
    {
        let Some(start) = l
            .find("\"executable\":\"")
            .map(|i| i + "\"executable\":\"".len())
        else {
            continue;
        };
        let Some(end) = l[start..].find('"').map(|e| e + start) else {
            continue;
        };
        let path = PathBuf::from(&l[start..end]);
        // the profile object has no nested objects: its `"test"` is the first after it
        let is_test = l.find("\"profile\":{").is_none_or(|p| {
            l[p..]
                .find('}')
                .is_some_and(|e| l[p..p + e].contains("\"test\":true"))
        });
        if is_test {
            tests.push(path)
        } else {
            bins.push(path)
        }
    }
    (tests, bins)
}

fn tools_present(env: &Env) -> bool {
    env.which("qemu-system-x86_64").is_some() && static_busybox(env).is_some()
}

/// A statically linked busybox on the host, if any.
fn static_busybox(env: &Env) -> Option<PathBuf> {
    let candidates = [
        env.which("busybox"),
        Some(PathBuf::from("/bin/busybox")),
        Some(PathBuf::from("/usr/bin/busybox")),
    ];
    candidates.into_iter().flatten().find(|p| {
        p.is_file() && {
            let mut ldd = env.command("ldd");
            ldd.arg(p);
            // ldd exits 1 for a static binary, saying so.
            cmd::capture(ldd).is_ok_and(|(_, out)| out.contains("not a dynamic executable"))
        }
    })
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// Installs [`HOST_PACKAGES`] with apt (update first only when the install fails).
fn install_host_tools(env: &Env) -> Result<(), String> {
    if !is_root() || env.which("apt-get").is_none() {
        return Err(format!(
            "qemu-system-x86_64 or a static busybox is missing and cannot be installed here \
             (needs root and apt-get): apt-get install --no-install-recommends {}",
            HOST_PACKAGES.join(" ")
        ));
    }
    let install = || {
        let mut c = env.command("apt-get");
        c.args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(HOST_PACKAGES)
            .env("DEBIAN_FRONTEND", "noninteractive");
        cmd::run(c)
    };
    if install().is_err() {
        let mut up = env.command("apt-get");
        up.args(["update", "-qq"])
            .env("DEBIAN_FRONTEND", "noninteractive");
        cmd::run(up)?;
        install()?;
    }
    Ok(())
}

/// Everything needed to boot: QEMU, busybox, the kernel and its modules.
struct Vm {
    qemu: PathBuf,
    busybox: PathBuf,
    kernel: kernel::Kernel,
    modules: Vec<PathBuf>,
    cache: PathBuf,
    timeout: Duration,
    /// Programs the tests start (not run themselves), copied to `/sctpvm/bin/<name>`; the
    /// guest's `NKP_EXE_<NAME>` (upper case, `-` → `_`) says where, in place of the host
    /// path cargo compiled into the tests as `CARGO_BIN_EXE_<name>`.
    tools: Vec<PathBuf>,
}

impl Vm {
    fn prepare(env: &Env, install: bool) -> Result<Vm, String> {
        if !tools_present(env) {
            if !install {
                return Err(format!("missing: {}", HOST_PACKAGES.join(", ")));
            }
            eprintln!(
                "xtask: sctp-vm: installing {} (--no-install-recommends)",
                HOST_PACKAGES.join(" ")
            );
            install_host_tools(env)?;
        }
        let qemu = env
            .which("qemu-system-x86_64")
            .ok_or("qemu-system-x86_64 not found after installing qemu-system-x86")?;
        let busybox = static_busybox(env).ok_or("no static busybox after installing it")?;
        let cache = env.root.join("target").join("sctp-vm");
        std::fs::create_dir_all(&cache).map_err(|e| format!("{}: {e}", cache.display()))?;
        let meta = std::env::var("NKP_SCTP_VM_KERNEL").unwrap_or_else(|_| KERNEL_PACKAGE.into());
        let kernel = kernel::prepare(env, &cache, &meta, install && is_root())?;
        let modules = kernel::closure(&kernel.module_dir, MODULES)?;
        let timeout = std::env::var("NKP_SCTP_VM_TIMEOUT")
            .ok()
            .and_then(|v| v.parse().ok())
            .map(Duration::from_secs)
            .unwrap_or(Duration::from_secs(120));
        Ok(Vm {
            qemu,
            busybox,
            kernel,
            modules,
            cache,
            timeout,
            tools: Vec::new(),
        })
    }

    /// The initramfs: busybox, modules, `/init`, and the programs with their libraries.
    fn initramfs(&self, programs: &[(PathBuf, Vec<String>)]) -> Result<Vec<u8>, String> {
        let mut a = cpio::Archive::new();
        for d in [
            "proc", "sys", "dev", "run", "root", "sbin", "usr/bin", "usr/sbin",
        ] {
            a.dir(d);
        }
        a.dir_mode("tmp", 0o1777);
        let bb =
            std::fs::read(&self.busybox).map_err(|e| format!("{}: {e}", self.busybox.display()))?;
        a.file("bin/busybox", 0o755, &bb);
        let mut list = Command::new(&self.busybox);
        list.arg("--list");
        let applets = cmd::probe(list).ok_or("busybox --list failed")?;
        for applet in applets.lines().map(str::trim).filter(|a| !a.is_empty()) {
            if applet != "busybox" {
                a.symlink(&format!("bin/{applet}"), "busybox");
            }
        }
        let mut mods = String::new();
        for rel in &self.modules {
            let src = self.kernel.module_dir.join(rel);
            let data = std::fs::read(&src).map_err(|e| format!("{}: {e}", src.display()))?;
            let rel = rel.to_string_lossy();
            a.file(
                &format!("lib/modules/{}/{rel}", self.kernel.version),
                0o644,
                &data,
            );
            mods.push_str(&rel);
            mods.push('\n');
        }
        a.file("etc/sctpvm/modules", 0o644, mods.as_bytes());
        a.file("init", 0o755, INIT.as_bytes());
        a.file(
            "etc/passwd",
            0o644,
            b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        );
        a.file("etc/group", 0o644, b"root:x:0:\nnogroup:x:65534:\n");
        a.file(
            "etc/hosts",
            0o644,
            b"127.0.0.1 localhost sctpvm\n::1 localhost ip6-localhost ip6-loopback\n",
        );
        a.file(
            "etc/nsswitch.conf",
            0o644,
            b"hosts: files\npasswd: files\ngroup: files\n",
        );

        // The programs, and the shared libraries they need at their host paths.
        let mut libs = std::collections::BTreeSet::new();
        let mut script = String::from("#!/bin/sh\n");
        for (k, v) in guest_env() {
            script.push_str(&format!("export {k}={}\n", quote(&v)));
        }
        for tool in &self.tools {
            let data = std::fs::read(tool).map_err(|e| format!("{}: {e}", tool.display()))?;
            let name = tool
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .ok_or_else(|| format!("{}: no file name", tool.display()))?;
            let guest = format!("/sctpvm/bin/{name}");
            a.file(&guest, 0o755, &data);
            libs.extend(shared_libraries(tool));
            script.push_str(&format!(
                "export NKP_EXE_{}={}\n",
                name.to_ascii_uppercase().replace('-', "_"),
                quote(&guest)
            ));
        }
        script.push_str("mkdir -p /work && cd /work\nrc=0\n");
        for (i, (program, args)) in programs.iter().enumerate() {
            let data = std::fs::read(program).map_err(|e| format!("{}: {e}", program.display()))?;
            let name = program
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| format!("program{i}"));
            let guest = format!("/sctpvm/bin/{name}");
            a.file(&guest, 0o755, &data);
            libs.extend(shared_libraries(program));
            let mut line = quote(&guest);
            for arg in args {
                line.push(' ');
                line.push_str(&quote(arg));
            }
            if programs.len() == 1 {
                script.push_str(&format!("exec {line}\n"));
            } else {
                script.push_str(&format!(
                    "{line}\nr=$?\n[ $rc -eq 0 ] && [ $r -ne 0 ] && rc=$r\n"
                ));
            }
        }
        script.push_str("exit $rc\n");
        a.file("sctpvm/run.sh", 0o755, script.as_bytes());
        for lib in libs {
            let real = std::fs::canonicalize(&lib).unwrap_or_else(|_| lib.clone());
            let data = std::fs::read(&real).map_err(|e| format!("{}: {e}", real.display()))?;
            a.file(&lib.to_string_lossy(), 0o755, &data);
        }
        Ok(a.finish())
    }

    /// Boots once, running `programs` in order; (exit code, libtest result lines).
    fn run(&self, programs: &[(PathBuf, Vec<String>)]) -> Result<(i32, Vec<String>), String> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let work = self
            .cache
            .join(format!("run-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
        let res = self.boot(&work, programs);
        if std::env::var("NKP_SCTP_VM_KEEP").is_ok_and(|v| v == "1") {
            eprintln!("xtask: sctp-vm: kept {}", work.display());
        } else {
            let _ = std::fs::remove_dir_all(&work);
        }
        res
    }

    fn boot(
        &self,
        work: &Path,
        programs: &[(PathBuf, Vec<String>)],
    ) -> Result<(i32, Vec<String>), String> {
        let initrd = work.join("initrd");
        std::fs::write(&initrd, self.initramfs(programs)?)
            .map_err(|e| format!("{}: {e}", initrd.display()))?;
        let (console, out, err) = (
            work.join("console.log"),
            work.join("stdout.log"),
            work.join("stderr.log"),
        );
        for f in [&console, &out, &err] {
            std::fs::write(f, b"").map_err(|e| format!("{}: {e}", f.display()))?;
        }
        let mut q = Command::new(&self.qemu);
        q.args([
            "-accel",
            "tcg,thread=multi",
            "-cpu",
            "max",
            "-smp",
            "2",
            "-m",
            "1G",
        ])
        .args(["-nodefaults", "-no-user-config", "-display", "none"])
        .args(["-vga", "none", "-no-reboot"])
        .arg("-kernel")
        .arg(&self.kernel.image)
        .arg("-initrd")
        .arg(&initrd)
        .args([
            "-append",
            "console=ttyS0 quiet loglevel=4 panic=-1 oops=panic mitigations=off tsc=reliable",
        ])
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .arg("-chardev")
        .arg(format!("file,id=gout,path={}", out.display()))
        .args(["-serial", "chardev:gout"])
        .arg("-chardev")
        .arg(format!("file,id=gerr,path={}", err.display()))
        .args(["-serial", "chardev:gerr"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        let t = Instant::now();
        let mut child = q
            .spawn()
            .map_err(|e| format!("could not start {}: {e}", self.qemu.display()))?;
        let mut qemu_err = child.stderr.take();
        let qemu_err = std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(e) = qemu_err.as_mut() {
                let _ = e.read_to_string(&mut s);
            }
            s
        });
        // Relay the guest's stdout and stderr while it runs (the files only grow).
        let mut relay_out = Relay::new(&out);
        let mut relay_err = Relay::new(&err);
        let mut timed_out = false;
        let status = loop {
            relay_out.pump(false);
            relay_err.pump(true);
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if t.elapsed() > self.timeout => {
                    let _ = child.kill();
                    let _ = child.wait();
                    timed_out = true;
                    break None;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => return Err(format!("waiting for qemu: {e}")),
            }
        };
        relay_out.pump(false);
        relay_err.pump(true);
        let qemu_err = qemu_err.join().unwrap_or_default();
        let console_text =
            String::from_utf8_lossy(&std::fs::read(&console).unwrap_or_default()).into_owned();
        let problems: Vec<&str> = console_text
            .lines()
            .filter(|l| {
                [
                    "SCTPVM-WARN",
                    "Kernel panic",
                    "BUG:",
                    "Oops",
                    "general protection",
                ]
                .iter()
                .any(|m| l.contains(m))
            })
            .collect();
        if !problems.is_empty() {
            eprintln!(
                "xtask: sctp-vm: the guest kernel reported problems:\n{}",
                problems.join("\n")
            );
        }
        let tail = || {
            let start = console_text.len().saturating_sub(3000);
            let start = (start..console_text.len())
                .find(|i| console_text.is_char_boundary(*i))
                .unwrap_or(start);
            format!(
                "qemu stderr:\n{qemu_err}\nconsole tail:\n{}",
                &console_text[start..]
            )
        };
        if timed_out {
            return Err(format!(
                "{TIMED_OUT} after {}s (NKP_SCTP_VM_TIMEOUT)\n{}",
                self.timeout.as_secs(),
                tail()
            ));
        }
        let code = console_text
            .lines()
            .filter_map(|l| l.split(EXIT_MARK).nth(1))
            .filter_map(|rest| rest.split_whitespace().next()?.parse::<i32>().ok())
            .next_back();
        let Some(code) = code else {
            return Err(format!(
                "{NO_EXIT_CODE} (qemu {})\n{}",
                status.map(|s| s.to_string()).unwrap_or_default(),
                tail()
            ));
        };
        eprintln!(
            "xtask: sctp-vm: VM exit code {code} after {:.1}s (boot, tests, power-off)",
            t.elapsed().as_secs_f64()
        );
        Ok((code, relay_out.results))
    }
}

/// Copies what a growing file gains to our stdout or stderr, keeping libtest result lines.
struct Relay {
    file: Option<std::fs::File>,
    line: Vec<u8>,
    results: Vec<String>,
}

impl Relay {
    fn new(path: &Path) -> Relay {
        Relay {
            file: std::fs::File::open(path).ok(),
            line: Vec::new(),
            results: Vec::new(),
        }
    }

    fn pump(&mut self, to_stderr: bool) {
        let Some(f) = self.file.as_mut() else {
            return;
        };
        let mut buf = Vec::new();
        let pos = f.stream_position().unwrap_or(0);
        if f.read_to_end(&mut buf).is_err() {
            let _ = f.seek(SeekFrom::Start(pos));
            return;
        }
        if buf.is_empty() {
            return;
        }
        // Output is best effort.
        let _ = if to_stderr {
            std::io::stderr().lock().write_all(&buf)
        } else {
            let mut o = std::io::stdout().lock();
            o.write_all(&buf).and_then(|()| o.flush())
        };
        for b in buf {
            if b == b'\n' {
                let line = String::from_utf8_lossy(&self.line);
                let line = cmd::strip_ansi(line.trim());
                if is_result(&line) {
                    self.results.push(line);
                }
                self.line.clear();
            } else {
                self.line.push(b);
            }
        }
    }
}

/// Variables handed to the guest programs.
fn guest_env() -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| {
            (k.starts_with("RUST_") || k.starts_with("CARGO_") || k.starts_with("NKP_"))
                && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
        .filter(|(k, _)| k != "NKP_REQUIRE_SCTP")
        .collect();
    vars.push(("NKP_REQUIRE_SCTP".into(), "1".into()));
    vars
}

/// Single-quotes `s` for the guest's shell.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The shared libraries (and the dynamic loader) `ldd` lists for `program`.
fn shared_libraries(program: &Path) -> Vec<PathBuf> {
    let Ok(out) = Command::new("ldd").arg(program).output() else {
        return Vec::new();
    };
    parse_ldd(&String::from_utf8_lossy(&out.stdout))
}

fn parse_ldd(text: &str) -> Vec<PathBuf> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            let path = match l.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next()?,
                None => l.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_test_executables_in_cargo_json() {
        let json = r#"{"reason":"compiler-artifact","package_id":"path+file:///r/crates/nkp-sctp#0.1.0","profile":{"opt_level":"0","test":true},"executable":"/t/debug/deps/sctp-abc","fresh":true}
{"reason":"compiler-artifact","package_id":"registry+x#libc@0.2","executable":null}
{"reason":"compiler-artifact","package_id":"path+file:///r/crates/nkp-cli#0.1.0","target":{"kind":["bin"],"name":"nkp","test":true},"profile":{"opt_level":"0","debug_assertions":true,"test":false},"executable":"/t/debug/nkp","fresh":true}
{"reason":"build-finished","success":true}"#;
        assert_eq!(
            executables(json),
            (
                vec![PathBuf::from("/t/debug/deps/sctp-abc")],
                vec![PathBuf::from("/t/debug/nkp")]
            )
        );
    }

    #[test]
    fn parses_ldd_output() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                    \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\
                    \t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n";
        assert_eq!(
            parse_ldd(text),
            vec![
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2")
            ]
        );
    }

    #[test]
    fn quotes_for_the_shell() {
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn the_guest_requires_sctp() {
        assert!(
            guest_env()
                .iter()
                .any(|(k, v)| k == "NKP_REQUIRE_SCTP" && v == "1")
        );
    }
}
