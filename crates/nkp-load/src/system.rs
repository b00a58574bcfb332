//! What the load test asks of the operating system: a higher open-file limit, and the
//! process's resident memory.

use std::io;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (each TCP client costs two descriptors
/// in this process, each UDP client one). Returns the new soft and the hard limit.
#[allow(unsafe_code)]
pub fn raise_fd_limit() -> io::Result<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` into the valid, exclusively borrowed `limit`.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit only reads the valid `raised`.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(io::Error::last_os_error());
        }
        limit = raised;
    }
    Ok((limit.rlim_cur, limit.rlim_max))
}

/// The resident set size of this process (`VmRSS` in `/proc/self/status`), in bytes.
pub fn rss_bytes() -> io::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    parse_vm_rss(&status).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no VmRSS line"))
}

/// The `VmRSS:   12345 kB` line, in bytes.
fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Fewest samples (rounds) before memory growth is judged.
const MIN_SAMPLES: usize = 8;

/// Growth tolerated from the early rounds to the late ones: a quarter, and at least 32 MiB
/// (allocator caches, connection table capacity, tokio's worker state).
const SLACK_BYTES: u64 = 32 * 1024 * 1024;

/// Whether RSS kept growing over the soak's rounds: `(ok, report line)`.
///
/// The first round is warm-up and skipped. The baseline is the highest sample of the first
/// quarter of the rest, the end the lowest of the last quarter: a steady leak lifts even the
/// lowest late sample above the highest early one, while noise and plateaus do not.
pub fn judge_rss(samples: &[u64]) -> (bool, String) {
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let rest = samples.get(1..).unwrap_or(&[]);
    if rest.len() < MIN_SAMPLES {
        let last = samples.last().copied().unwrap_or(0);
        return (
            true,
            format!(
                "memory: RSS {:.1} MiB; {} rounds are too few to judge growth (need {})",
                mib(last),
                samples.len(),
                MIN_SAMPLES + 1
            ),
        );
    }
    let quarter = (rest.len() / 4).max(1);
    let baseline = rest[..quarter].iter().copied().max().unwrap_or(0);
    let end = rest[rest.len() - quarter..]
        .iter()
        .copied()
        .min()
        .unwrap_or(0);
    let allowed = baseline + (baseline / 4).max(SLACK_BYTES);
    let ok = end <= allowed;
    let peak = samples.iter().copied().max().unwrap_or(0);
    (
        ok,
        format!(
            "memory {}: RSS {:.1} MiB early, {:.1} MiB late (allowed {:.1}), peak {:.1} MiB",
            if ok { "ok" } else { "GROWING" },
            mib(baseline),
            mib(end),
            mib(allowed),
            mib(peak)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn reads_vm_rss() {
        let status = "Name:\tnkp-load\nVmPeak:\t  2000 kB\nVmRSS:\t    1500 kB\nThreads:\t3\n";
        assert_eq!(parse_vm_rss(status), Some(1500 * 1024));
        assert_eq!(parse_vm_rss("Name: x\n"), None);
        assert!(rss_bytes().unwrap() > 0);
    }

    #[test]
    fn flat_or_noisy_memory_passes() {
        let flat: Vec<u64> = (0..40).map(|i| 100 * MIB + (i % 3) * MIB).collect();
        assert!(judge_rss(&flat).0);
        // A plateau after warm-up growth.
        let plateau: Vec<u64> = (0..40).map(|i| (60 + 2 * i.min(10)) * MIB).collect();
        assert!(judge_rss(&plateau).0);
    }

    #[test]
    fn steady_growth_fails() {
        let leak: Vec<u64> = (0..40).map(|i| 100 * MIB + i * 4 * MIB).collect();
        let (ok, line) = judge_rss(&leak);
        assert!(!ok, "{line}");
        assert!(line.contains("GROWING"));
    }

    #[test]
    fn few_samples_are_not_judged() {
        let (ok, line) = judge_rss(&[1, 2, 3]);
        assert!(ok);
        assert!(line.contains("too few"), "{line}");
    }

    #[test]
    fn fd_limit_is_at_least_kept() {
        let (soft, hard) = raise_fd_limit().unwrap();
        assert!(soft <= hard && soft > 0);
    }
}
