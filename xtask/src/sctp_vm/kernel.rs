//! The guest kernel: Debian's cloud kernel fetched with `apt-get download` into the cache,
//! its image decompressed once to an ELF `vmlinux`, and the module closure of `sctp`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::lz4;
use crate::cmd::{self, Env};

/// A kernel ready to boot.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// `uname -r` of the kernel.
    pub version: String,
    /// What QEMU boots: the ELF `vmlinux` when it could be made, else the bzImage.
    pub image: PathBuf,
    /// `lib/modules/<version>` of the extracted package.
    pub module_dir: PathBuf,
}

/// Resolves a metapackage (`linux-image-cloud-amd64`) to the concrete package it depends on
/// (`linux-image-6.1.0-56-cloud-amd64`), from `apt-cache depends` output.
pub fn concrete_package(apt_cache_depends: &str) -> Option<String> {
    apt_cache_depends.lines().find_map(|l| {
        let dep = l.trim().strip_prefix("Depends:")?.trim();
        let rest = dep.strip_prefix("linux-image-")?;
        rest.starts_with(|c: char| c.is_ascii_digit())
            .then(|| dep.to_string())
    })
}

fn resolve(env: &Env, meta: &str) -> Option<String> {
    if meta
        .strip_prefix("linux-image-")
        .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()))
    {
        return Some(meta.to_string());
    }
    let mut c = env.command("apt-cache");
    c.args(["depends", meta]);
    cmd::probe(c).and_then(|out| concrete_package(&out))
}

/// A kernel extracted earlier, if any (newest first), for when apt cannot answer.
fn cached(cache: &Path) -> Option<PathBuf> {
    let mut dirs: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(cache.join("kernel"))
        .ok()?
        .flatten()
        .filter(|e| e.path().join(".ready").is_file())
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    dirs.sort();
    dirs.pop().map(|(_, p)| p)
}

/// Makes sure the kernel package `meta` (resolved to its concrete package) is extracted in
/// `cache`, and returns it. `may_update`: run `apt-get update` when apt knows no such
/// package (root only).
pub fn prepare(env: &Env, cache: &Path, meta: &str, may_update: bool) -> Result<Kernel, String> {
    let mut pkg = resolve(env, meta);
    if pkg.is_none() && may_update {
        eprintln!("xtask: sctp-vm: apt does not know {meta}: apt-get update");
        let mut up = env.command("apt-get");
        up.args(["update", "-qq"])
            .env("DEBIAN_FRONTEND", "noninteractive");
        cmd::run(up)?;
        pkg = resolve(env, meta);
    }
    let dir = match pkg {
        Some(pkg) => {
            let dir = cache.join("kernel").join(&pkg);
            if !dir.join(".ready").is_file() {
                fetch(env, cache, &pkg, &dir)?;
            }
            dir
        }
        None => match cached(cache) {
            Some(dir) => {
                eprintln!(
                    "xtask: sctp-vm: apt cannot resolve {meta}; using the cached {}",
                    dir.display()
                );
                dir
            }
            None => {
                return Err(format!(
                    "cannot resolve the kernel package {meta} (apt-cache depends {meta} \
                     names no linux-image-<version>): run `apt-get update`"
                ));
            }
        },
    };
    let version = std::fs::read_to_string(dir.join(".ready"))
        .map_err(|e| format!("{}: {e}", dir.join(".ready").display()))?
        .trim()
        .to_string();
    let boot = dir.join("boot");
    let elf = boot.join(format!("vmlinux-{version}"));
    let image = if elf.is_file() {
        elf
    } else {
        boot.join(format!("vmlinuz-{version}"))
    };
    Ok(Kernel {
        module_dir: dir.join("lib/modules").join(&version),
        version,
        image,
    })
}

/// Downloads and extracts `pkg` into `dir` (through a temporary directory renamed at the
/// end, so a concurrent or interrupted run never sees half a kernel).
fn fetch(env: &Env, cache: &Path, pkg: &str, dir: &Path) -> Result<(), String> {
    let debs = cache.join("debs");
    std::fs::create_dir_all(&debs).map_err(|e| format!("{}: {e}", debs.display()))?;
    eprintln!("xtask: sctp-vm: downloading {pkg}");
    let mut dl = env.command("apt-get");
    dl.current_dir(&debs)
        .args(["download", "-q", "-o", "APT::Sandbox::User=root", pkg]);
    cmd::run(dl).map_err(|e| format!("{e} (run `apt-get update` first?)"))?;
    let deb = std::fs::read_dir(&debs)
        .map_err(|e| format!("{}: {e}", debs.display()))?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{pkg}_")) && n.ends_with(".deb"))
        })
        .ok_or_else(|| format!("apt-get download {pkg} left no .deb in {}", debs.display()))?;
    let tmp = cache
        .join("kernel")
        .join(format!("{pkg}.tmp{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    let mut x = env.command("dpkg-deb");
    x.arg("-x").arg(&deb).arg(&tmp);
    cmd::run(x)?;
    let modules = tmp.join("lib/modules");
    let version = std::fs::read_dir(&modules)
        .map_err(|e| format!("{}: {e}", modules.display()))?
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().to_str().map(String::from))
        .next()
        .ok_or_else(|| format!("{pkg} has no lib/modules/<version>"))?;
    let vmlinuz = tmp.join("boot").join(format!("vmlinuz-{version}"));
    match extract_vmlinux(&vmlinuz) {
        Ok(elf) => {
            let out = tmp.join("boot").join(format!("vmlinux-{version}"));
            std::fs::write(&out, elf).map_err(|e| format!("{}: {e}", out.display()))?;
        }
        Err(e) => eprintln!(
            "xtask: sctp-vm: booting the compressed image ({e}); boots take a few seconds more"
        ),
    }
    std::fs::write(tmp.join(".ready"), format!("{version}\n"))
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    if std::fs::rename(&tmp, dir).is_err() {
        // Another run got there first.
        let _ = std::fs::remove_dir_all(&tmp);
    }
    let _ = std::fs::remove_file(&deb);
    if !dir.join(".ready").is_file() {
        return Err(format!("could not set up {}", dir.display()));
    }
    Ok(())
}

/// Finds the compressed payload of a bzImage and decompresses it to the ELF `vmlinux`
/// (LZ4 in Rust; xz, zstd and gzip through their tools when installed).
pub fn extract_vmlinux(bzimage: &Path) -> Result<Vec<u8>, String> {
    let img = std::fs::read(bzimage).map_err(|e| format!("{}: {e}", bzimage.display()))?;
    let is_elf = |b: &[u8]| b.starts_with(b"\x7fELF");
    for off in find_all(&img, &lz4::LEGACY_MAGIC).take(4) {
        if let Ok(out) = lz4::decompress_legacy(&img[off..])
            && is_elf(&out)
        {
            return Ok(out);
        }
    }
    let others: [(&[u8], &str); 3] = [
        (b"\xfd7zXZ\x00", "xz"),
        (b"\x28\xb5\x2f\xfd", "zstd"),
        (b"\x1f\x8b\x08", "gzip"),
    ];
    for (magic, tool) in others {
        for off in find_all(&img, magic).take(3) {
            if let Some(out) = pipe_through(tool, &img[off..])
                && is_elf(&out)
            {
                return Ok(out);
            }
        }
    }
    Err(format!(
        "no decompressible kernel payload found in {}",
        bzimage.display()
    ))
}

fn find_all<'a>(hay: &'a [u8], needle: &'a [u8]) -> impl Iterator<Item = usize> + 'a {
    hay.windows(needle.len())
        .enumerate()
        .filter(move |(_, w)| *w == needle)
        .map(|(i, _)| i)
}

/// `tool -dc` with `input` on stdin; its stdout even when it complains about trailing
/// garbage (the kernel image follows the payload).
fn pipe_through(tool: &str, input: &[u8]) -> Option<Vec<u8>> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(tool)
        .arg("-dc")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut stdin = child.stdin.take()?;
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().ok()?;
    let _ = writer.join();
    Some(out.stdout)
}

/// The `.ko` files under `module_dir/kernel`, by module name (`-` as `_`).
fn index(module_dir: &Path) -> BTreeMap<String, PathBuf> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<String, PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, root, out);
            } else if let Some(name) = p.file_name().and_then(|n| n.to_str())
                && let Some((stem, _)) = name.split_once(".ko")
                && let Ok(rel) = p.strip_prefix(root)
            {
                out.insert(stem.replace('-', "_"), rel.to_path_buf());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(&module_dir.join("kernel"), module_dir, &mut out);
    out
}

/// Module names built into the kernel (`modules.builtin`).
fn builtin(module_dir: &Path) -> BTreeSet<String> {
    std::fs::read_to_string(module_dir.join("modules.builtin"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.rsplit('/').next())
        .filter_map(|n| n.split_once(".ko").map(|(s, _)| s.replace('-', "_")))
        .collect()
}

/// The `.modinfo` strings of a module file (`depends=...`, `softdep=pre: ...`).
fn modinfo(path: &Path) -> Result<Vec<String>, String> {
    let name = path.to_string_lossy();
    let bytes = if name.ends_with(".ko") {
        std::fs::read(path).map_err(|e| format!("{name}: {e}"))?
    } else {
        let tool = if name.ends_with(".xz") {
            "xz"
        } else if name.ends_with(".zst") {
            "zstd"
        } else {
            "gzip"
        };
        let raw = std::fs::read(path).map_err(|e| format!("{name}: {e}"))?;
        pipe_through(tool, &raw).ok_or_else(|| format!("{name}: cannot run {tool} -dc"))?
    };
    Ok(bytes
        .split(|b| *b == 0)
        .filter(|s| s.starts_with(b"depends=") || s.starts_with(b"softdep="))
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect())
}

/// The modules to load for `wanted`, dependencies first, as paths relative to
/// `module_dir`. Built-in modules are skipped; a soft pre-dependency that is no module
/// (an alias such as `crc32c`, built in on the cloud kernel) is skipped too.
pub fn closure(module_dir: &Path, wanted: &[&str]) -> Result<Vec<PathBuf>, String> {
    let index = index(module_dir);
    let builtin = builtin(module_dir);
    let mut order = Vec::new();
    let mut seen = BTreeSet::new();
    fn visit(
        name: &str,
        soft: bool,
        ctx: (&Path, &BTreeMap<String, PathBuf>, &BTreeSet<String>),
        seen: &mut BTreeSet<String>,
        order: &mut Vec<PathBuf>,
    ) -> Result<(), String> {
        let (dir, index, builtin) = ctx;
        let name = name.replace('-', "_");
        if !seen.insert(name.clone()) || builtin.contains(&name) {
            return Ok(());
        }
        let Some(rel) = index.get(&name) else {
            return if soft {
                Ok(())
            } else {
                Err(format!(
                    "kernel module {name} not found in {}",
                    dir.display()
                ))
            };
        };
        for info in modinfo(&dir.join(rel))? {
            if let Some(pre) = info.strip_prefix("softdep=") {
                // "pre: a b post: c"
                let mut in_pre = false;
                for word in pre.split_whitespace() {
                    match word {
                        "pre:" => in_pre = true,
                        "post:" => in_pre = false,
                        dep if in_pre => visit(dep, true, ctx, seen, order)?,
                        _ => {}
                    }
                }
            } else if let Some(deps) = info.strip_prefix("depends=") {
                for dep in deps.split(',').filter(|d| !d.is_empty()) {
                    visit(dep, false, ctx, seen, order)?;
                }
            }
        }
        order.push(rel.clone());
        Ok(())
    }
    for m in wanted {
        visit(
            m,
            false,
            (module_dir, &index, &builtin),
            &mut seen,
            &mut order,
        )?;
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_the_metapackage() {
        let out = "linux-image-cloud-amd64\n  Depends: linux-image-6.1.0-56-cloud-amd64\n";
        assert_eq!(
            concrete_package(out).as_deref(),
            Some("linux-image-6.1.0-56-cloud-amd64")
        );
        assert_eq!(concrete_package("  Depends: linux-base\n"), None);
    }

    #[test]
    fn module_closure_puts_dependencies_first() {
        let dir = std::env::temp_dir().join(format!("xtask-modules-{}", std::process::id()));
        let net = dir.join("kernel/net");
        std::fs::create_dir_all(&net).unwrap();
        std::fs::write(
            net.join("sctp.ko"),
            b"junk\0depends=udp_tunnel,libcrc32c\0name=sctp\0",
        )
        .unwrap();
        std::fs::write(net.join("udp_tunnel.ko"), b"\0depends=\0").unwrap();
        std::fs::write(
            net.join("libcrc32c.ko"),
            b"\0softdep=pre: crc32c\0depends=\0",
        )
        .unwrap();
        std::fs::write(
            dir.join("modules.builtin"),
            "kernel/crypto/crc32c_generic.ko\n",
        )
        .unwrap();
        let order = closure(&dir, &["sctp"]).unwrap();
        assert_eq!(
            order,
            vec![
                PathBuf::from("kernel/net/udp_tunnel.ko"),
                PathBuf::from("kernel/net/libcrc32c.ko"),
                PathBuf::from("kernel/net/sctp.ko"),
            ]
        );
        assert!(closure(&dir, &["nope"]).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
