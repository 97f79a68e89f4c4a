//! Segment files: the log on disk is a directory of them, each a run of records.
//!
//! A segment is named by the index of its first record, zero-padded to 20 digits
//! (`00000000000000000001.seg`), so sorting the names sorts the log and a name says where
//! its records start without opening it. Only the newest (active) segment is written, by
//! appending; older ones are only read (compaction, a recovery of a queue that needs a body
//! from disk) and finally deleted whole. Nothing here interprets records: this is files.
//!
//! A damaged segment is never deleted: it is renamed `<name>.damaged-<epoch ms>`, out of the
//! segment set, for someone to look at. Its good prefix goes back under the segment's name
//! first (written to `<name>.tmp`, synced, then renamed into place once the damaged file is
//! aside), so the records before the damage stay in the log; a `.tmp` left by a crash is
//! finished (renamed) or dropped at the next open, whichever the crash point calls for.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const SUFFIX: &str = ".seg";
const TMP: &str = ".tmp";

/// The file name of the segment starting at record `first`.
pub(super) fn file_name(first: u64) -> String {
    format!("{first:020}{SUFFIX}")
}

/// The path of the segment starting at `first` in `dir`.
pub(super) fn path(dir: &Path, first: u64) -> PathBuf {
    dir.join(file_name(first))
}

fn parse_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The segments in `dir`, oldest first, after finishing any repair a crash interrupted.
pub(super) fn list(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut tmps = Vec::new();
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(seg) = name.strip_suffix(TMP).and_then(parse_name) {
            tmps.push(seg);
        } else if let Some(first) = parse_name(name) {
            out.push((first, entry.path()));
        }
    }
    for first in tmps {
        let seg = path(dir, first);
        let tmp = tmp_path(dir, first);
        if seg.exists() {
            // The damaged original was not moved aside yet: the repair starts over.
            fs::remove_file(&tmp)?;
        } else {
            // Only the last rename was missing.
            fs::rename(&tmp, &seg)?;
            sync_dir(dir)?;
            out.push((first, seg));
        }
    }
    out.sort_unstable_by_key(|(first, _)| *first);
    Ok(out)
}

fn tmp_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{}{TMP}", file_name(first)))
}

/// Makes the directory's entries (new, renamed files) durable.
pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates the segment starting at `first`, empty, for appending.
pub(super) fn create(dir: &Path, first: u64) -> io::Result<File> {
    let file = OpenOptions::new()
        .append(true)
        .create_new(true)
        .open(path(dir, first))?;
    sync_dir(dir)?;
    Ok(file)
}

/// Opens an existing segment for appending.
pub(super) fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().append(true).open(path)
}

/// Reads the whole file at `path` into `buf` (cleared first; its capacity is reused).
pub(super) fn read_all(path: &Path, buf: &mut Vec<u8>) -> io::Result<()> {
    buf.clear();
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    buf.reserve(usize::try_from(len).unwrap_or(0));
    file.read_to_end(buf)?;
    Ok(())
}

/// Reads `len` bytes at `offset` of `file` into `buf` (replacing what it held); fewer if
/// the file ends first.
pub(super) fn read_at(file: &File, offset: u64, len: usize, buf: &mut Vec<u8>) -> io::Result<()> {
    buf.clear();
    buf.resize(len, 0);
    let mut done = 0;
    while done < len {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(done);
    Ok(())
}

/// Cuts the file at `path` to `len` bytes, durably.
pub(super) fn truncate(path: &Path, len: u64) -> io::Result<()> {
    let file = OpenOptions::new().write(true).open(path)?;
    file.set_len(len)?;
    file.sync_all()
}

/// Moves the damaged segment `first` aside, keeping `good` (its records before the damage)
/// under its name if there are any. Returns where the damaged file went.
pub(super) fn quarantine(dir: &Path, first: u64, good: &[u8], now_ms: u64) -> io::Result<PathBuf> {
    let seg = path(dir, first);
    let tmp = tmp_path(dir, first);
    if !good.is_empty() {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        file.write_all(good)?;
        file.sync_all()?;
    }
    let mut aside = dir.join(format!("{}.damaged-{now_ms}", file_name(first)));
    let mut n = 1;
    while aside.exists() {
        aside = dir.join(format!("{}.damaged-{now_ms}-{n}", file_name(first)));
        n += 1;
    }
    fs::rename(&seg, &aside)?;
    if !good.is_empty() {
        fs::rename(&tmp, &seg)?;
    }
    sync_dir(dir)?;
    Ok(aside)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_as_the_log_does_and_only_segments_are_listed() {
        assert_eq!(file_name(1), "00000000000000000001.seg");
        assert_eq!(parse_name(&file_name(u64::MAX)), Some(u64::MAX));
        assert_eq!(parse_name("1.seg"), None);
        assert_eq!(parse_name("00000000000000000001.seg.damaged-5"), None);
        assert!(file_name(9) < file_name(10));
    }
}
