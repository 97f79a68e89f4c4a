//! Resource alarms: conditions under which the broker stops taking new messages so that
//! what it holds can drain — RabbitMQ's disk (and, later, memory) alarms.
//!
//! While any alarm is raised, every connection that publishes is blocked: it is sent
//! `connection.blocked` (if it announced the capability) and its socket is not read until
//! the alarm clears, then `connection.unblocked`. Connections that only consume keep being
//! read, so acks keep flowing and queues can drain. [`Alarms`] is a watch that connections
//! subscribe to; monitors (here: free disk space under the data directory) raise and clear.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::watch;

/// Which alarms are raised.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Raised {
    /// Free disk space under the data directory is below `--disk-free-limit`.
    pub disk: bool,
}

impl Raised {
    /// Whether any alarm is raised.
    pub fn any(&self) -> bool {
        self.disk
    }

    /// The reason a `connection.blocked` gives (RabbitMQ's words).
    pub fn reason(&self) -> &'static str {
        if self.disk { "low on disk" } else { "" }
    }
}

/// The broker's alarms.
#[derive(Debug)]
pub struct Alarms {
    raised: watch::Sender<Raised>,
}

impl Default for Alarms {
    fn default() -> Self {
        Alarms {
            raised: watch::Sender::new(Raised::default()),
        }
    }
}

impl Alarms {
    /// What is raised now.
    pub fn raised(&self) -> Raised {
        *self.raised.borrow()
    }

    /// A watch on the alarms, for a connection.
    pub fn subscribe(&self) -> watch::Receiver<Raised> {
        self.raised.subscribe()
    }

    /// Raises or clears the disk alarm (logging each change once).
    pub fn set_disk(&self, low: bool, free: u64, limit: u64) {
        self.raised.send_if_modified(|r| {
            if r.disk == low {
                return false;
            }
            r.disk = low;
            if low {
                tracing::warn!(
                    free_bytes = free,
                    limit_bytes = limit,
                    "disk alarm raised: free disk space is below --disk-free-limit; publishing \
                     connections are blocked until it is back"
                );
            } else {
                tracing::info!(free_bytes = free, limit_bytes = limit, "disk alarm cleared");
            }
            true
        });
    }
}

/// How often free disk space is looked at.
const DISK_CHECK: Duration = Duration::from_secs(1);

/// Free bytes for an unprivileged writer on the file system holding `path`.
#[cfg(target_os = "linux")]
pub fn free_bytes(path: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::other("a path with a NUL byte"))?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a valid NUL-terminated path and `stat` is writable memory of the right
    // type; statvfs fills it completely on success, which is checked before it is read.
    let rc = unsafe { libc::statvfs(c.as_ptr(), stat.as_mut_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it initialised `stat`.
    let stat = unsafe { stat.assume_init() };
    #[allow(clippy::unnecessary_cast)] // the field types differ between libc targets
    Ok((stat.f_bavail as u64).saturating_mul(stat.f_frsize as u64))
}

/// Free bytes (not measurable on this platform: never low).
#[cfg(not(target_os = "linux"))]
pub fn free_bytes(_path: &Path) -> std::io::Result<u64> {
    Ok(u64::MAX)
}

/// Starts the task that raises the disk alarm while free space under `dir` is below
/// `limit` bytes (0: never). The check itself runs on the blocking pool. Ends with the
/// runtime, or when `alarms` is dropped.
pub fn watch_disk(alarms: std::sync::Weak<Alarms>, dir: PathBuf, limit: u64) {
    if limit == 0 {
        return;
    }
    tokio::spawn(async move {
        let mut warned = false;
        loop {
            let path = dir.clone();
            let free = tokio::task::spawn_blocking(move || free_bytes(&path)).await;
            let Some(alarms) = alarms.upgrade() else {
                return;
            };
            match free {
                Ok(Ok(free)) => {
                    warned = false;
                    alarms.set_disk(free < limit, free, limit);
                }
                Ok(Err(e)) if !warned => {
                    warned = true;
                    tracing::warn!(dir = %dir.display(), "cannot read free disk space: {e}");
                }
                _ => {}
            }
            drop(alarms);
            tokio::time::sleep(DISK_CHECK).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_disk_alarm_is_raised_and_cleared_once_each() {
        let alarms = Alarms::default();
        let mut rx = alarms.subscribe();
        alarms.set_disk(true, 10, 50);
        assert!(rx.has_changed().expect("open"));
        assert_eq!(rx.borrow_and_update().reason(), "low on disk");
        alarms.set_disk(true, 9, 50);
        assert!(!rx.has_changed().expect("open"), "no change, no wake-up");
        alarms.set_disk(false, 100, 50);
        assert!(!rx.borrow_and_update().any());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn free_space_is_read_from_the_file_system() {
        let free = free_bytes(&std::env::temp_dir()).expect("statvfs");
        assert!(free > 0);
        assert!(free_bytes(Path::new("/no/such/dir/here")).is_err());
    }
}
