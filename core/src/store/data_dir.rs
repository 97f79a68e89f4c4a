//! The data directory: where a broker keeps what must survive it, claimed by one broker at a
//! time and stamped with the format of what is inside.
//!
//! At start the broker creates the directory if it is missing, then:
//! - takes an exclusive lock on `LOCK` inside it: two brokers writing one set of files would
//!   each corrupt what the other wrote, so the second is refused at start;
//! - reads `FORMAT` (`warren-data <version>`), or writes it for a new directory: a directory
//!   written by a Warren whose format this one does not know is refused rather than misread;
//! - writes its process id into `LOCK`, last, for the message a second broker gets.
//!
//! The lock is the operating system's (`flock`), so it goes with the process however that
//! ends — a `kill -9` leaves no stale lock behind.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The format this Warren writes and reads.
pub const FORMAT_VERSION: u32 = 1;

const LOCK_FILE: &str = "LOCK";
const FORMAT_FILE: &str = "FORMAT";
const FORMAT_PREFIX: &str = "warren-data ";

/// Why a data directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    /// Another broker holds it.
    #[error(
        "data directory {} is in use by another Warren{}; stop that one first, or give this one \
         another directory with --data-dir",
        .path.display(),
        .holder.as_deref().map(|pid| format!(" (process {pid})")).unwrap_or_default()
    )]
    Locked {
        /// The directory.
        path: PathBuf,
        /// The process id the holder wrote, if it could be read.
        holder: Option<String>,
    },
    /// It was written in a format this Warren does not read.
    #[error(
        "data directory {} holds format '{found}', and this Warren reads format {FORMAT_VERSION} \
         only; start the Warren version that wrote it, or give this one another directory with \
         --data-dir",
        .path.display()
    )]
    UnknownFormat {
        /// The directory.
        path: PathBuf,
        /// What its `FORMAT` file says.
        found: String,
    },
    /// The file system refused.
    #[error(
        "cannot use data directory {}: {source}; fix its permissions or give another with \
         --data-dir",
        .path.display()
    )]
    Io {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// A data directory this process holds; the lock is released when it is dropped.
#[derive(Debug)]
pub struct DataDir {
    path: PathBuf,
    /// Held open for the lock.
    _lock: File,
}

impl DataDir {
    /// Claims the directory at `path` (creating it), checking or writing its format. Blocking:
    /// call it off the async reactor.
    pub fn open(path: &Path) -> Result<DataDir, DataDirError> {
        let io = |source| DataDirError::Io {
            path: path.to_owned(),
            source,
        };
        std::fs::create_dir_all(path).map_err(io)?;
        let mut lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path.join(LOCK_FILE))
            .map_err(io)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = lock.read_to_string(&mut holder);
                let holder = Some(holder.trim().to_owned()).filter(|h| !h.is_empty());
                return Err(DataDirError::Locked {
                    path: path.to_owned(),
                    holder,
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        check_format(path).map_err(|e| match e {
            FormatError::Io(source) => io(source),
            FormatError::Unknown(found) => DataDirError::UnknownFormat {
                path: path.to_owned(),
                found,
            },
        })?;
        // The pid goes in last: once it is there, the directory is held and stamped.
        lock.set_len(0).map_err(io)?;
        writeln!(lock, "{}", std::process::id()).map_err(io)?;
        Ok(DataDir {
            path: path.to_owned(),
            _lock: lock,
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

enum FormatError {
    Io(std::io::Error),
    Unknown(String),
}

/// Reads `FORMAT`, or writes it (through a synced temporary file renamed into place, so a
/// crash never leaves a half-written one) when the directory has none.
fn check_format(dir: &Path) -> Result<(), FormatError> {
    let file = dir.join(FORMAT_FILE);
    match std::fs::read_to_string(&file) {
        Ok(text) => {
            let text = text.trim();
            match text.strip_prefix(FORMAT_PREFIX).map(str::parse::<u32>) {
                Some(Ok(FORMAT_VERSION)) => Ok(()),
                _ => Err(FormatError::Unknown(text.to_owned())),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let temporary = dir.join(format!("{FORMAT_FILE}.new"));
            let mut out = File::create(&temporary).map_err(FormatError::Io)?;
            writeln!(out, "{FORMAT_PREFIX}{FORMAT_VERSION}").map_err(FormatError::Io)?;
            out.sync_all().map_err(FormatError::Io)?;
            std::fs::rename(&temporary, &file).map_err(FormatError::Io)?;
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(FormatError::Io)
        }
        Err(e) => Err(FormatError::Io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "warren-data-dir-test-{}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_new_directory_is_created_and_stamped() {
        let dir = fresh("new").join("nested");
        let held = DataDir::open(&dir).expect("opens");
        assert_eq!(held.path(), dir);
        let format = std::fs::read_to_string(dir.join(FORMAT_FILE)).expect("FORMAT written");
        assert_eq!(format.trim(), format!("warren-data {FORMAT_VERSION}"));
        drop(held);
        DataDir::open(&dir).expect("opens again once released");
    }

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid() {
        let dir = fresh("locked");
        let _first = DataDir::open(&dir).expect("first");
        let err = DataDir::open(&dir).expect_err("second");
        let text = err.to_string();
        assert!(matches!(err, DataDirError::Locked { .. }), "{text}");
        assert!(
            text.contains(&format!("(process {})", std::process::id())),
            "{text}"
        );
        assert!(text.contains("--data-dir"), "{text}");
    }

    #[test]
    fn an_unknown_format_is_refused_and_left_alone() {
        let dir = fresh("format");
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join(FORMAT_FILE), "warren-data 99\n").expect("write");
        let err = DataDir::open(&dir).expect_err("refused");
        assert!(
            err.to_string().contains("holds format 'warren-data 99'"),
            "{err}"
        );
        let after = std::fs::read_to_string(dir.join(FORMAT_FILE)).expect("still there");
        assert_eq!(after, "warren-data 99\n", "not rewritten");
    }
}
