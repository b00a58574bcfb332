//! The report: one table of echo rows, one of the other rows, as Markdown, with the command,
//! the machine and the date.

use std::fmt::Write as _;

use crate::client::EchoResult;
use crate::suite::{Config, median};

/// One echo row: throughput and latency of nkpacket and of its baseline.
#[derive(Debug, Clone)]
pub struct EchoRow {
    name: String,
    nk: EchoResult,
    base: EchoResult,
    thr: f64,
    p50: f64,
    p99: f64,
    cpu: f64,
    min_ratio: f64,
    error: Option<String>,
}

/// Highest p99 latency ratio accepted.
pub const MAX_P99_RATIO: f64 = 1.2;

fn ratios(a: &[f64], b: &[f64]) -> f64 {
    median(a.iter().zip(b).map(|(x, y)| x / y).collect())
}

impl EchoRow {
    /// Row name, e.g. `tcp4 c=16 1024B`.
    pub fn name_of(transport: &str, conns: usize, size: usize) -> String {
        format!("{transport} c={conns} {size}B")
    }

    /// A row from the rounds of both implementations (paired by index).
    pub fn from_rounds(
        transport: &str,
        conns: usize,
        size: usize,
        nk: &[EchoResult],
        base: &[EchoResult],
        min_ratio: f64,
    ) -> EchoRow {
        let col = |v: &[EchoResult], f: fn(&EchoResult) -> f64| v.iter().map(f).collect::<Vec<_>>();
        let summary = |v: &[EchoResult]| EchoResult {
            rate: median(col(v, |r| r.rate)),
            p50_us: median(col(v, |r| r.p50_us)),
            p99_us: median(col(v, |r| r.p99_us)),
            lost: v.iter().map(|r| r.lost).sum(),
            cpu_us: median(col(v, |r| r.cpu_us)),
        };
        EchoRow {
            name: Self::name_of(transport, conns, size),
            nk: summary(nk),
            base: summary(base),
            thr: ratios(&col(nk, |r| r.rate), &col(base, |r| r.rate)),
            p50: ratios(&col(nk, |r| r.p50_us), &col(base, |r| r.p50_us)),
            p99: ratios(&col(nk, |r| r.p99_us), &col(base, |r| r.p99_us)),
            cpu: ratios(&col(nk, |r| r.cpu_us), &col(base, |r| r.cpu_us)),
            min_ratio,
            error: None,
        }
    }

    /// A row that could not be measured.
    pub fn failed(transport: &str, conns: usize, size: usize, error: String) -> EchoRow {
        EchoRow {
            name: Self::name_of(transport, conns, size),
            nk: EchoResult::default(),
            base: EchoResult::default(),
            thr: f64::NAN,
            p50: f64::NAN,
            p99: f64::NAN,
            cpu: f64::NAN,
            min_ratio: 0.0,
            error: Some(error),
        }
    }

    fn ok(&self) -> bool {
        self.error.is_none() && self.thr >= self.min_ratio && self.p99 <= MAX_P99_RATIO
    }

    fn verdict(&self) -> String {
        match &self.error {
            Some(e) => format!("FAILED: {e}"),
            None if self.ok() => "ok".into(),
            None => "MISS".into(),
        }
    }

    /// One line for the progress output.
    pub fn progress_line(&self) -> String {
        format!(
            "{:<20} {:>10.0} vs {:>10.0} msg/s ({:.2}x)  p50 {:.0}/{:.0} us ({:.2}x)  p99 {:.0}/{:.0} us ({:.2}x)  cpu {:.2}/{:.2} us/msg ({:.2}x)  {}",
            self.name,
            self.nk.rate,
            self.base.rate,
            self.thr,
            self.nk.p50_us,
            self.base.p50_us,
            self.p50,
            self.nk.p99_us,
            self.base.p99_us,
            self.p99,
            self.nk.cpu_us,
            self.base.cpu_us,
            self.cpu,
            self.verdict()
        )
    }
}

/// A row other than echo: one number per implementation.
#[derive(Debug, Clone)]
pub struct OtherRow {
    name: String,
    unit: &'static str,
    nk: f64,
    base: f64,
    ratio: f64,
    /// `true` when more is better.
    higher: bool,
    /// Absolute target for the nkpacket value (at most, for lower-is-better rows).
    target: Option<f64>,
    error: Option<String>,
}

impl OtherRow {
    fn new(
        name: &str,
        unit: &'static str,
        nk: &[f64],
        base: &[f64],
        target: Option<f64>,
        higher: bool,
    ) -> OtherRow {
        OtherRow {
            name: name.to_string(),
            unit,
            nk: median(nk.to_vec()),
            base: median(base.to_vec()),
            ratio: ratios(nk, base),
            higher,
            target,
            error: None,
        }
    }

    /// A row where more is better (rates).
    pub fn higher_better(
        name: &str,
        unit: &'static str,
        nk: &[f64],
        base: &[f64],
        target: Option<f64>,
    ) -> OtherRow {
        Self::new(name, unit, nk, base, target, true)
    }

    /// A row where less is better (memory, cost).
    pub fn lower_better(
        name: &str,
        unit: &'static str,
        nk: &[f64],
        base: &[f64],
        target: Option<f64>,
    ) -> OtherRow {
        Self::new(name, unit, nk, base, target, false)
    }

    /// A row that could not be measured.
    pub fn failed(name: &str, error: String) -> OtherRow {
        OtherRow {
            name: name.to_string(),
            unit: "",
            nk: f64::NAN,
            base: f64::NAN,
            ratio: f64::NAN,
            higher: true,
            target: None,
            error: Some(error),
        }
    }

    fn target_text(&self) -> String {
        match self.target {
            Some(t) if self.higher => format!(">= {t} {}", self.unit),
            Some(t) => format!("<= {t} {}", self.unit),
            None => "-".into(),
        }
    }

    fn verdict(&self) -> String {
        if let Some(e) = &self.error {
            return format!("FAILED: {e}");
        }
        match self.target {
            Some(t) if (self.higher && self.nk >= t) || (!self.higher && self.nk <= t) => {
                "ok".into()
            }
            Some(_) => "MISS".into(),
            None => "info".into(),
        }
    }

    /// One line for the progress output.
    pub fn progress_line(&self) -> String {
        format!(
            "{:<36} {:>12.1} vs {:>12.1} {} ({:.2}x)  {}",
            self.name,
            self.nk,
            self.base,
            self.unit,
            self.ratio,
            self.verdict()
        )
    }
}

/// Everything measured in a run.
#[derive(Debug, Clone)]
pub struct Report {
    command: String,
    pinning: Option<String>,
    rounds: usize,
    secs: f64,
    idle_conns: usize,
    echo: Vec<EchoRow>,
    other: Vec<OtherRow>,
}

impl Report {
    /// An empty report for a run with `cfg`.
    pub fn new(cfg: &Config) -> Report {
        Report {
            command: cfg.command.clone(),
            pinning: cfg.pinning.clone(),
            rounds: cfg.rounds,
            secs: cfg.secs,
            idle_conns: cfg.idle_conns,
            echo: Vec::new(),
            other: Vec::new(),
        }
    }

    /// Adds an echo row.
    pub fn push_echo(&mut self, row: EchoRow) {
        self.echo.push(row);
    }

    /// Adds another row.
    pub fn push_other(&mut self, row: OtherRow) {
        self.other.push(row);
    }

    /// True when every row met its target.
    pub fn all_ok(&self) -> bool {
        self.echo.iter().all(EchoRow::ok)
            && self
                .other
                .iter()
                .all(|r| !matches!(r.verdict().as_str(), "MISS") && r.error.is_none())
    }

    /// The report as Markdown.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "Command: `{}`  ", self.command);
        let _ = writeln!(s, "Date: {} (UTC)  ", today());
        let _ = writeln!(s, "Machine: {}  ", machine());
        let _ = writeln!(
            s,
            "Pinning: {}  ",
            self.pinning.as_deref().unwrap_or("none")
        );
        let _ = writeln!(
            s,
            "Rounds: {} per implementation and row, {} s measured each, alternating A B / B A; \
             {} idle connections for the memory rows.\n",
            self.rounds, self.secs, self.idle_conns
        );
        let _ = writeln!(
            s,
            "Ratios are medians of per-round nkpacket/baseline ratios; absolute numbers are \
             medians. Targets: throughput ratio >= 0.9 (udp >= 1.0), p99 ratio <= {MAX_P99_RATIO}. \
             Server CPU per message (all threads, from /proc/<pid>/task/*/schedstat, over the \
             measured window) is the least noisy measure of overhead on a busy machine.\n"
        );
        if !self.echo.is_empty() {
            s.push_str(
                "| echo row | nk msg/s | base msg/s | thr ratio | nk p50 µs | base p50 µs | p50 ratio | nk p99 µs | base p99 µs | p99 ratio | server CPU µs/msg nk / base | CPU ratio | verdict |\n",
            );
            s.push_str("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|\n");
            for r in &self.echo {
                let lost = if r.nk.lost + r.base.lost > 0 {
                    format!(" (lost {}/{})", r.nk.lost, r.base.lost)
                } else {
                    String::new()
                };
                let _ = writeln!(
                    s,
                    "| {} | {:.0} | {:.0} | **{:.2}** | {:.1} | {:.1} | {:.2} | {:.1} | {:.1} | **{:.2}** | {:.2} / {:.2} | {:.2} | {}{} |",
                    r.name,
                    r.nk.rate,
                    r.base.rate,
                    r.thr,
                    r.nk.p50_us,
                    r.base.p50_us,
                    r.p50,
                    r.nk.p99_us,
                    r.base.p99_us,
                    r.p99,
                    r.nk.cpu_us,
                    r.base.cpu_us,
                    r.cpu,
                    r.verdict(),
                    lost
                );
            }
            s.push('\n');
        }
        if !self.other.is_empty() {
            s.push_str("| row | nkpacket | baseline | ratio | target | verdict |\n");
            s.push_str("|---|--:|--:|--:|---|---|\n");
            for r in &self.other {
                let _ = writeln!(
                    s,
                    "| {} | {:.1} {} | {:.1} {} | **{:.2}** | {} | {} |",
                    r.name,
                    r.nk,
                    r.unit,
                    r.base,
                    r.unit,
                    r.ratio,
                    r.target_text(),
                    r.verdict()
                );
            }
        }
        s
    }
}

/// nproc, CPU model and kernel.
pub fn machine() -> String {
    // Counted from /proc/cpuinfo: this process may be pinned to fewer CPUs.
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let nproc = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or_else(|| "unknown CPU".to_string(), |m| m.trim().to_string());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|k| k.trim().to_string())
        .unwrap_or_else(|_| "unknown kernel".into());
    format!("{nproc} CPUs, {cpu}, Linux {kernel}")
}

/// Today's date (UTC) as YYYY-MM-DD.
pub fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Days since 1970-01-01 to a civil date (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(20_513), (2026, 3, 1));
    }

    #[test]
    fn echo_row_ratios_are_paired_medians() {
        let r = |rate, p50_us, p99_us| EchoResult {
            rate,
            p50_us,
            p99_us,
            lost: 0,
            cpu_us: 1.0,
        };
        let nk = [
            r(90.0, 10.0, 20.0),
            r(100.0, 10.0, 22.0),
            r(95.0, 11.0, 20.0),
        ];
        let base = [
            r(100.0, 10.0, 20.0),
            r(100.0, 10.0, 20.0),
            r(100.0, 10.0, 20.0),
        ];
        let row = EchoRow::from_rounds("tcp", 1, 64, &nk, &base, 0.9);
        assert!((row.thr - 0.95).abs() < 1e-9);
        assert!((row.p99 - 1.0).abs() < 1e-9);
        assert!(row.ok());
    }
}
