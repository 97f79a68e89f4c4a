//! The disk alarm's monitor: free space under the data directory, looked at every second,
//! raises the alarm while it is below `--disk-free-limit` (RabbitMQ's `disk_free_limit`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::Alarms;

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

    #[cfg(target_os = "linux")]
    #[test]
    fn free_space_is_read_from_the_file_system() {
        let free = free_bytes(&std::env::temp_dir()).expect("statvfs");
        assert!(free > 0);
        assert!(free_bytes(Path::new("/no/such/dir/here")).is_err());
    }
}
