//! The process's limit on open file descriptors, which bounds how many connections the
//! broker can hold: every socket is one.
//!
//! RabbitMQ's production checklist asks for a high `ulimit -n`; a Linux login usually starts
//! processes with a soft limit of 1024 under a hard limit far above it. Any process may raise
//! its own soft limit up to the hard one, so the broker does that at start-up and logs what
//! it got; the accept loop names the limit when it runs out.

// `rlim_t` is `u64` on Linux but not on every unix: the casts to `u64` are needed there.
#![allow(clippy::unnecessary_cast)]

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and returns the limit now in force
/// (`None` where it cannot be read). Logs the change at info, or a warning if it failed.
pub fn raise_fd_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes one rlimit into the struct it is given, which lives on
        // this stack frame for the call.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
            tracing::warn!(
                "cannot read the open file limit: {}",
                std::io::Error::last_os_error()
            );
            return None;
        }
        let before = limit.rlim_cur;
        // An unlimited hard limit still cannot be exceeded past the kernel's `nr_open`
        // (1 Mi by default): ask for that instead of infinity.
        let target = if limit.rlim_max == libc::RLIM_INFINITY {
            std::fs::read_to_string("/proc/sys/fs/nr_open")
                .ok()
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or(1 << 20)
        } else {
            limit.rlim_max
        };
        if limit.rlim_cur >= target {
            tracing::info!(
                limit = before as u64,
                "open file limit (already at the hard limit)"
            );
            return Some(before as u64);
        }
        let raised = libc::rlimit {
            rlim_cur: target,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads one rlimit from a struct on this stack frame.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            tracing::warn!(
                limit = before as u64,
                "cannot raise the open file limit to {target}: {}",
                std::io::Error::last_os_error()
            );
            return Some(before as u64);
        }
        tracing::info!(
            from = before as u64,
            to = raised.rlim_cur as u64,
            "raised the open file limit to the hard limit"
        );
        Some(raised.rlim_cur as u64)
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// The soft `RLIMIT_NOFILE` in force now, for log lines (`None` where it cannot be read).
pub fn current_fd_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: as in `raise_fd_limit`.
        let read = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
        read.then_some(limit.rlim_cur as u64)
    }
    #[cfg(not(unix))]
    {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_raised_limit_is_the_one_in_force() {
        let raised = raise_fd_limit();
        assert!(raised.is_some());
        assert_eq!(raised, current_fd_limit());
    }
}
