//! What a test measures of a broker process's memory, from `/proc/<pid>/status` (Linux).

// Every test crate that has `mod common;` compiles this; not every one uses all of it.
#![allow(dead_code)]

/// A `kB` line of `/proc/<pid>/status` (`VmRSS`, `VmSize`, `VmHWM`), in bytes.
pub fn status_bytes(pid: u32, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Resident memory of `pid` in bytes (0 once it is gone).
pub fn rss(pid: u32) -> u64 {
    status_bytes(pid, "VmRSS:").unwrap_or(0)
}

/// Raises this process's soft limit on open files to its hard limit (children inherit it),
/// and returns the new soft limit.
pub fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the one struct given, which lives here.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        lim.rlim_cur = lim.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
            return 0;
        }
    }
    #[allow(clippy::unnecessary_cast)] // rlim_t differs between libc targets
    let soft = lim.rlim_cur as u64;
    soft
}
