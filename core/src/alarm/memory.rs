//! The memory alarm's monitor: what the process really holds (its resident set, read from
//! `/proc/self/statm`), sampled several times a second against `--memory-high-watermark`.
//!
//! The watermark is a fraction of the memory the broker may use (RabbitMQ's
//! `vm_memory_high_watermark.relative`, default 0.4) or an absolute size (`.absolute`). The
//! memory it may use is the smaller of the machine's (`MemTotal` in `/proc/meminfo`) and the
//! limit of the process's memory cgroup (v2 `memory.max`, v1 `memory.limit_in_bytes`, of its
//! own cgroup and every ancestor), so a container's limit counts, not the host's RAM.
//!
//! Why resident memory and not an estimate of what queues hold: the original failure was
//! memory nobody counted (a slow consumer's outgoing bytes), and the kernel's figure counts
//! everything. Why the allocator is trimmed: glibc's malloc keeps freed memory in its arenas,
//! so after a backlog drained the resident set can stay above the watermark and publishers
//! would never be unblocked. A sample at or above the watermark, and every sample while the
//! alarm is raised, is therefore preceded by `malloc_trim(0)` (on the blocking pool: it walks
//! every arena), and only the figure after the trim counts.

use std::path::{Path, PathBuf};
use std::sync::Weak;
use std::time::Duration;

use super::Alarms;
use crate::config::{ConfigError, parse_size};

/// How often the resident set is sampled. RabbitMQ looks every 2.5 s; Warren looks far more
/// often because a fast publisher can add a few hundred MB a second (the original report:
/// ~250 MB/s), and what it adds between two samples is how far the watermark is overshot.
/// A sample is one small read from `/proc`, so 5 a second cost nothing measurable.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(200);

/// `--memory-high-watermark`: how much memory the broker may hold before publishers are
/// blocked.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MemoryWatermark {
    /// A fraction (0 to 1) of the memory available to the process.
    Relative(f64),
    /// A number of bytes.
    Absolute(u64),
}

impl Default for MemoryWatermark {
    /// RabbitMQ's default: 40 % of the available memory.
    fn default() -> Self {
        MemoryWatermark::Relative(0.4)
    }
}

impl std::fmt::Display for MemoryWatermark {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MemoryWatermark::Relative(fraction) => write!(f, "{fraction}"),
            MemoryWatermark::Absolute(bytes) => write!(f, "{bytes} bytes"),
        }
    }
}

impl MemoryWatermark {
    /// Reads the setting: a number with a decimal point is a fraction (`0.4`, `1.0`);
    /// anything else is a size (`1GiB`, `512MB`, `268435456` bytes). `0` (either way) blocks
    /// every publisher at once, as it does in RabbitMQ.
    pub fn parse(setting: &'static str, value: &str) -> Result<MemoryWatermark, ConfigError> {
        let text = value.trim();
        if text.contains('.') {
            let fraction: f64 = text.parse().map_err(|_| ConfigError::Invalid {
                setting,
                value: value.to_owned(),
                why: "expected a fraction like 0.4 or a size like 1GiB".to_owned(),
            })?;
            if !(0.0..=1.0).contains(&fraction) {
                return Err(ConfigError::Invalid {
                    setting,
                    value: value.to_owned(),
                    why: "a fraction of the available memory must be between 0 and 1".to_owned(),
                });
            }
            return Ok(MemoryWatermark::Relative(fraction));
        }
        parse_size(setting, text).map(MemoryWatermark::Absolute)
    }

    /// The watermark in bytes, given the memory available.
    pub fn bytes(self, total: u64) -> u64 {
        match self {
            MemoryWatermark::Relative(fraction) => (total as f64 * fraction) as u64,
            MemoryWatermark::Absolute(bytes) => bytes,
        }
    }
}

/// Where the memory available to the process was read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TotalSource {
    /// The machine's physical memory (`/proc/meminfo`).
    Machine,
    /// The process's memory cgroup, whose limit is below the machine's memory.
    Cgroup,
}

impl TotalSource {
    fn name(self) -> &'static str {
        match self {
            TotalSource::Machine => "machine",
            TotalSource::Cgroup => "cgroup",
        }
    }
}

/// The memory available to the process: min(physical memory, cgroup limit).
pub fn total_memory() -> Option<(u64, TotalSource)> {
    let machine = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| meminfo_total(&text));
    let cgroup = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|text| cgroup_limit(Path::new("/sys/fs/cgroup"), &text));
    match (machine, cgroup) {
        (Some(m), Some(c)) if c < m => Some((c, TotalSource::Cgroup)),
        (Some(m), _) => Some((m, TotalSource::Machine)),
        (None, Some(c)) => Some((c, TotalSource::Cgroup)),
        (None, None) => None,
    }
}

/// `MemTotal` of `/proc/meminfo`, in bytes.
fn meminfo_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut words = line.split_whitespace().skip(1);
    let n: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") => n.checked_mul(1024),
        None => Some(n),
        Some(_) => None,
    }
}

/// The files that may limit the memory of the process whose `/proc/self/cgroup` is
/// `proc_cgroup`, under the cgroup file systems mounted at `root`: its own cgroup's and each
/// ancestor's (a parent's limit binds its children too), for v2 (`0::/path`) and v1 (the
/// hierarchy whose controllers include `memory`).
fn cgroup_limit_files(root: &Path, proc_cgroup: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for line in proc_cgroup.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let (dir, file) = if id == "0" && controllers.is_empty() {
            (root.to_owned(), "memory.max")
        } else if controllers.split(',').any(|c| c == "memory") {
            (root.join("memory"), "memory.limit_in_bytes")
        } else {
            continue;
        };
        let mut cgroup = Path::new(path.trim());
        loop {
            let relative = cgroup.strip_prefix("/").unwrap_or(cgroup);
            files.push(dir.join(relative).join(file));
            match cgroup.parent() {
                Some(parent) => cgroup = parent,
                None => break,
            }
        }
    }
    files
}

/// The tightest cgroup memory limit that applies to the process (`None`: unlimited or no
/// memory cgroup). v1 writes "unlimited" as a huge number, which `min` with the machine's
/// memory takes care of.
fn cgroup_limit(root: &Path, proc_cgroup: &str) -> Option<u64> {
    cgroup_limit_files(root, proc_cgroup)
        .iter()
        .filter_map(|file| std::fs::read_to_string(file).ok())
        .filter_map(|text| text.trim().parse::<u64>().ok())
        .min()
}

/// Resident memory of this process in bytes (`None` where it cannot be read).
pub fn resident_bytes() -> Option<u64> {
    // statm: size resident shared … in pages.
    let text = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = text.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages.saturating_mul(page_size()))
}

fn page_size() -> u64 {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: sysconf has no preconditions; it returns -1 on error, handled below.
        let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if size > 0 {
            return size as u64;
        }
    }
    4096
}

/// Gives the memory glibc's malloc keeps in its arenas back to the kernel.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim only walks and releases the allocator's free memory; it is safe to
    // call at any time from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Other allocators give memory back on their own.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}

/// One sample: the resident set, trimmed first while the alarm is raised, or trimmed and
/// sampled again when it is above `limit` (only the figure after a trim raises the alarm).
fn sample(limit: u64, raised: bool) -> Option<u64> {
    if raised {
        trim();
        return resident_bytes();
    }
    let used = resident_bytes()?;
    if used <= limit {
        return Some(used);
    }
    trim();
    resident_bytes()
}

/// Works out the watermark in bytes, logs it, and starts the task that raises the memory
/// alarm while the process holds more than that. The first sample is taken here, so a
/// watermark already exceeded (or 0) blocks the first publisher. Ends with the runtime, or
/// when `alarms` is dropped. Where memory cannot be measured it logs why and does nothing.
pub fn watch_memory(alarms: Weak<Alarms>, watermark: MemoryWatermark) {
    let total = total_memory();
    let limit = match (watermark, total) {
        (MemoryWatermark::Absolute(bytes), _) => bytes,
        (MemoryWatermark::Relative(_), Some((total, _))) => watermark.bytes(total),
        (MemoryWatermark::Relative(_), None) => {
            tracing::warn!(
                "cannot read the memory available to the process: the memory alarm is off \
                 (give --memory-high-watermark as a size, e.g. 1GiB, to turn it on)"
            );
            return;
        }
    };
    let Some(used) = resident_bytes() else {
        tracing::warn!("cannot read the process's resident memory: the memory alarm is off");
        return;
    };
    let (total_bytes, source) = total.unwrap_or((0, TotalSource::Machine));
    tracing::info!(
        limit_bytes = limit,
        total_bytes,
        source = source.name(),
        used_bytes = used,
        "memory high watermark set to {} MiB ({watermark} of {} MiB, {} memory)",
        limit >> 20,
        total_bytes >> 20,
        source.name()
    );
    if total_bytes > 0 && limit > total_bytes {
        tracing::warn!(
            limit_bytes = limit,
            total_bytes,
            "the memory high watermark is above the memory available to the process: the \
             kernel may kill the broker before the alarm blocks publishers"
        );
    }
    let Some(first) = alarms.upgrade() else {
        return;
    };
    first.set_memory(sample(limit, false).unwrap_or(used), limit);
    drop(first);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(SAMPLE_EVERY).await;
            let Some(raised) = alarms.upgrade().map(|a| a.raised().memory) else {
                return;
            };
            let used = tokio::task::spawn_blocking(move || sample(limit, raised)).await;
            let Some(alarms) = alarms.upgrade() else {
                return;
            };
            if let Ok(Some(used)) = used {
                alarms.set_memory(used, limit);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fraction_has_a_decimal_point_and_anything_else_is_a_size() {
        let parse = |v: &str| MemoryWatermark::parse("--memory-high-watermark", v);
        assert_eq!(
            parse("0.4").expect("fraction"),
            MemoryWatermark::Relative(0.4)
        );
        assert_eq!(
            parse("1.0").expect("fraction"),
            MemoryWatermark::Relative(1.0)
        );
        assert_eq!(
            parse(" 0.0 ").expect("fraction"),
            MemoryWatermark::Relative(0.0)
        );
        assert_eq!(
            parse("1GiB").expect("size"),
            MemoryWatermark::Absolute(1 << 30)
        );
        assert_eq!(
            parse("512MB").expect("size"),
            MemoryWatermark::Absolute(512_000_000)
        );
        assert_eq!(parse("0").expect("size"), MemoryWatermark::Absolute(0));
        for bad in ["1.5", "-0.1", "0.4.1", "lots", "1 PiB", ""] {
            let err = parse(bad).expect_err(bad).to_string();
            assert!(err.contains("--memory-high-watermark"), "{err}");
        }
        assert_eq!(MemoryWatermark::default().bytes(1000), 400);
        assert_eq!(MemoryWatermark::Absolute(7).bytes(1000), 7);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn physical_memory_is_read_from_meminfo() {
        let text = "MemTotal:       24684140 kB\nMemFree:        16765232 kB\n";
        assert_eq!(meminfo_total(text), Some(24_684_140 * 1024));
        assert_eq!(meminfo_total("MemFree: 1 kB\n"), None);
        assert!(total_memory().is_some_and(|(bytes, _)| bytes > 0));
    }

    #[test]
    fn the_tightest_limit_of_the_cgroup_and_its_ancestors_counts() {
        let root = std::env::temp_dir().join(format!("warren-cgroup-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let write = |rel: &str, text: &str| {
            let file = root.join(rel);
            std::fs::create_dir_all(file.parent().expect("parent")).expect("dir");
            std::fs::write(file, text).expect("write");
        };
        // v2: the own cgroup unlimited, its parent limited.
        write("system.slice/memory.max", "1073741824\n");
        write("system.slice/warren.service/memory.max", "max\n");
        assert_eq!(
            cgroup_limit(&root, "0::/system.slice/warren.service\n"),
            Some(1 << 30)
        );
        // v1: the memory hierarchy, "unlimited" written as a huge number at the root.
        write("memory/memory.limit_in_bytes", "9223372036854771712\n");
        write("memory/box/memory.limit_in_bytes", "536870912\n");
        let v1 = "9:name=systemd:/\n4:cpu,memory:/box\n0::/\n";
        assert_eq!(cgroup_limit(&root, v1), Some(512 << 20));
        // No memory controller, no limit.
        assert_eq!(cgroup_limit(&root, "3:cpuset:/box\n"), None);
        let _ = std::fs::remove_dir_all(&root);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn resident_memory_is_measured_and_a_sample_above_the_watermark_trims_first() {
        let rss = resident_bytes().expect("statm");
        assert!(rss > 0);
        // Far above any watermark of 1 byte: trimmed, then sampled again.
        assert!(sample(1, false).expect("sampled") > 0);
        assert!(sample(u64::MAX, true).expect("sampled") > 0);
    }
}
