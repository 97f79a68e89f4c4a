//! The record: the one unit the message log is made of, its byte layout, its checksum.
//!
//! Every record is a fixed header and a payload:
//!
//! ```text
//! offset  size  field
//!  0       4    payload length (bytes after the header)
//!  4       4    crc32c over bytes 8.. to the end of the payload
//!  8       1    format version (1)
//!  9       1    kind
//! 10       8    index: dense, +1 per record across the whole log (the SyncMark)
//! 18       8    time written, epoch ms (stamped by the writer, once per batch)
//! 26       …    payload
//! ```
//!
//! All integers big-endian, as in [`codec`](crate::store::codec). A queue is named in every
//! record by its strings, `u16 vhost len | vhost | u16 name len | name` (a "queue name" below):
//! nothing stored is a node-local number, so another node replaying the same records builds
//! the same state. Payloads by kind:
//!
//! ```text
//! 1 Enqueue      u64 message id | u32 n | n × (queue name | u64 deadline | u8 flags)
//!                | message (codec layout), written once whatever n is
//! 2 Remove       u64 message id | queue name   (ack, reject, expiry, purge, drop)
//! 3 Delivered    u64 message id | queue name
//! 4 ForgetQueue  queue name
//! ```
//!
//! Entry flag bit 0 says "already delivered": a compaction copy carries the delivered flag
//! of the message it moves instead of writing a second record. An Enqueue for an id the log
//! already holds is such a copy: it says where the message lives now and what its entries
//! are at that point of the log.
//!
//! Shaped this way because callers encode on the publish path (under the batch lock) and the
//! writer thread seals: a caller writes the header with the time and checksum left zero, and
//! the writer stamps the time and computes the checksums for the whole batch just before
//! its one `write_all`, so the hot path does no hashing and reads no clock. The length sits
//! outside the checksum so that a reader can find the end of a record before checking it; a
//! damaged length shows up as a checksum failure (or a record running past the file).

use crate::broker::message::Message;
use crate::store::{QueueKey, StoreError, StoreResult, codec};

/// Header size in bytes.
pub(super) const HEADER: usize = 26;
/// The format version this code writes and reads.
pub(super) const VERSION: u8 = 1;
/// Entry flag: the message had been delivered from this queue.
pub(super) const FLAG_DELIVERED: u8 = 1;

const LEN_AT: usize = 0;
const CRC_AT: usize = 4;
const VERSION_AT: usize = 8;
const KIND_AT: usize = 9;
const INDEX_AT: usize = 10;
const TIME_AT: usize = 18;

/// What a record says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Kind {
    Enqueue = 1,
    Remove = 2,
    Delivered = 3,
    ForgetQueue = 4,
}

impl Kind {
    fn from_u8(v: u8) -> Option<Kind> {
        Some(match v {
            1 => Kind::Enqueue,
            2 => Kind::Remove,
            3 => Kind::Delivered,
            4 => Kind::ForgetQueue,
            _ => return None,
        })
    }
}

// ---- encoding (callers, under the batch lock) ----

/// Refuses a queue whose name cannot be written (longer than a u16 length allows), before
/// anything is put in the batch.
pub(super) fn check_queue(queue: &QueueKey) -> StoreResult<()> {
    if queue.vhost.len() > usize::from(u16::MAX) || queue.queue.len() > usize::from(u16::MAX) {
        return Err(StoreError::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "a queue or vhost name longer than 65535 bytes cannot be stored",
        )));
    }
    Ok(())
}

/// Appends `queue` as a queue name (checked by [`check_queue`]).
pub(super) fn put_queue(buf: &mut Vec<u8>, queue: &QueueKey) {
    buf.extend_from_slice(&(queue.vhost.len() as u16).to_be_bytes());
    buf.extend_from_slice(queue.vhost.as_bytes());
    buf.extend_from_slice(&(queue.queue.len() as u16).to_be_bytes());
    buf.extend_from_slice(queue.queue.as_bytes());
}

/// Starts a record of `kind` at the end of `buf`; returns where it starts. Time and checksum
/// stay zero until [`seal`].
pub(super) fn begin(buf: &mut Vec<u8>, kind: Kind, index: u64) -> usize {
    let start = buf.len();
    buf.extend_from_slice(&[0; VERSION_AT]);
    buf.push(VERSION);
    buf.push(kind as u8);
    buf.extend_from_slice(&index.to_be_bytes());
    buf.extend_from_slice(&[0; 8]);
    start
}

/// Ends the record begun at `start`: writes its payload length. A payload too long for the
/// length field is taken back out of `buf` and refused.
pub(super) fn finish(buf: &mut Vec<u8>, start: usize) -> StoreResult<()> {
    let Ok(len) = u32::try_from(buf.len() - start - HEADER) else {
        buf.truncate(start);
        return Err(StoreError::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "a record longer than 4 GiB cannot be stored",
        )));
    };
    buf[start + LEN_AT..start + CRC_AT].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

/// Appends an Enqueue record (fresh appends: no entry delivered yet).
pub(super) fn encode_enqueue(
    buf: &mut Vec<u8>,
    index: u64,
    id: u64,
    queues: &[(&QueueKey, u64)],
    message: &Message,
) -> StoreResult<()> {
    let Ok(n) = u32::try_from(queues.len()) else {
        return Err(StoreError::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "too many queues for one record",
        )));
    };
    let start = begin(buf, Kind::Enqueue, index);
    buf.extend_from_slice(&id.to_be_bytes());
    buf.extend_from_slice(&n.to_be_bytes());
    for (queue, deadline) in queues {
        put_queue(buf, queue);
        buf.extend_from_slice(&deadline.to_be_bytes());
        buf.push(0);
    }
    codec::encode(message, buf);
    finish(buf, start)
}

/// Appends a Remove or Delivered record.
pub(super) fn encode_mark(buf: &mut Vec<u8>, kind: Kind, index: u64, queue: &QueueKey, id: u64) {
    let start = begin(buf, kind, index);
    buf.extend_from_slice(&id.to_be_bytes());
    put_queue(buf, queue);
    // A queue name and an id are far below the length limit.
    let _ = finish(buf, start);
}

/// Appends a ForgetQueue record.
pub(super) fn encode_forget(buf: &mut Vec<u8>, index: u64, queue: &QueueKey) {
    let start = begin(buf, Kind::ForgetQueue, index);
    put_queue(buf, queue);
    let _ = finish(buf, start);
}

// ---- sealing (the writer, before its write) ----

/// Stamps `time` into the record at the front of `record` (exactly one whole record) and
/// computes its checksum.
pub(super) fn seal(record: &mut [u8], time: u64) {
    record[TIME_AT..HEADER].copy_from_slice(&time.to_be_bytes());
    let crc = crc32c::crc32c(&record[VERSION_AT..]);
    record[CRC_AT..VERSION_AT].copy_from_slice(&crc.to_be_bytes());
}

/// The total length (header and payload) of the record starting at `at` in a batch the
/// writer built itself (so well formed).
pub(super) fn len_at(buf: &[u8], at: usize) -> usize {
    HEADER + be32(&buf[at + LEN_AT..]) as usize
}

// ---- reading ----

/// Why bytes are not a good record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Bad {
    /// The header or payload runs past the end of the bytes.
    Incomplete,
    /// The checksum does not match.
    Checksum,
    /// A version this code does not know.
    Version(u8),
    /// Passed its checksum but does not parse (a kind unknown, a field past its end).
    Malformed,
}

impl std::fmt::Display for Bad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bad::Incomplete => f.write_str("incomplete record"),
            Bad::Checksum => f.write_str("checksum mismatch"),
            Bad::Version(v) => write!(f, "unknown record version {v}"),
            Bad::Malformed => f.write_str("record does not parse"),
        }
    }
}

/// A record read back, checksum verified.
#[derive(Clone, Copy, Debug)]
pub(super) struct Record<'a> {
    /// Its index.
    pub index: u64,
    /// When it was written (epoch ms).
    #[allow(dead_code)] // read by replication and tools, not by the store itself
    pub time: u64,
    /// What it says.
    pub body: Body<'a>,
    /// Header and payload length.
    pub len: usize,
}

/// A record's payload, parsed.
#[derive(Clone, Copy, Debug)]
pub(super) enum Body<'a> {
    Enqueue {
        id: u64,
        entries: Entries<'a>,
        /// The message, codec layout.
        message: &'a [u8],
    },
    Remove {
        id: u64,
        queue: &'a [u8],
    },
    Delivered {
        id: u64,
        queue: &'a [u8],
    },
    ForgetQueue {
        queue: &'a [u8],
    },
}

/// The checked record at `at` in `buf` (which may hold more after it).
pub(super) fn read(buf: &[u8], at: usize) -> Result<Record<'_>, Bad> {
    decode(buf, at, true)
}

/// The record at `at` in a batch the writer has just sealed itself: parsed, its checksum
/// not computed again.
pub(super) fn view(buf: &[u8], at: usize) -> Result<Record<'_>, Bad> {
    decode(buf, at, false)
}

fn decode(buf: &[u8], at: usize, verify: bool) -> Result<Record<'_>, Bad> {
    let rest = buf.get(at..).ok_or(Bad::Incomplete)?;
    if rest.len() < HEADER {
        return Err(Bad::Incomplete);
    }
    let len = HEADER + be32(&rest[LEN_AT..]) as usize;
    let record = rest.get(..len).ok_or(Bad::Incomplete)?;
    if verify && crc32c::crc32c(&record[VERSION_AT..]) != be32(&record[CRC_AT..]) {
        return Err(Bad::Checksum);
    }
    if record[VERSION_AT] != VERSION {
        return Err(Bad::Version(record[VERSION_AT]));
    }
    let kind = Kind::from_u8(record[KIND_AT]).ok_or(Bad::Malformed)?;
    let body = parse(kind, &record[HEADER..]).ok_or(Bad::Malformed)?;
    Ok(Record {
        index: be64(&record[INDEX_AT..]),
        time: be64(&record[TIME_AT..]),
        body,
        len,
    })
}

/// Whether a record that passes its checksum starts at `at` with an index in `indexes`:
/// how recovery tells a torn tail (nothing valid after the damage) from damage in the middle.
pub(super) fn plausible_at(buf: &[u8], at: usize, indexes: std::ops::Range<u64>) -> bool {
    let Some(rest) = buf.get(at..) else {
        return false;
    };
    // Cheap filters first: the scan tries every byte offset.
    if rest.len() < HEADER || rest[VERSION_AT] != VERSION || Kind::from_u8(rest[KIND_AT]).is_none()
    {
        return false;
    }
    if !indexes.contains(&be64(&rest[INDEX_AT..])) {
        return false;
    }
    read(buf, at).is_ok()
}

fn parse(kind: Kind, payload: &[u8]) -> Option<Body<'_>> {
    let mut r = Reader { b: payload, at: 0 };
    let body = match kind {
        Kind::Enqueue => {
            let id = r.u64()?;
            let count = r.u32()?;
            let from = r.at;
            for _ in 0..count {
                r.queue()?;
                r.u64()?;
                r.u8()?;
            }
            let entries = Entries {
                bytes: &payload[from..r.at],
                left: count,
            };
            Body::Enqueue {
                id,
                entries,
                message: &payload[r.at..],
            }
        }
        Kind::Remove => Body::Remove {
            id: r.u64()?,
            queue: r.queue()?,
        },
        Kind::Delivered => Body::Delivered {
            id: r.u64()?,
            queue: r.queue()?,
        },
        Kind::ForgetQueue => Body::ForgetQueue { queue: r.queue()? },
    };
    // Nothing may follow a fixed-size payload; an Enqueue's message runs to the end.
    (kind == Kind::Enqueue || r.at == payload.len()).then_some(body)
}

/// One queue's entry in an Enqueue record.
#[derive(Clone, Copy, Debug)]
pub(super) struct Entry<'a> {
    /// The queue name, as encoded (what the log's queue table is keyed by).
    pub queue: &'a [u8],
    pub deadline: u64,
    pub flags: u8,
}

/// The entries of an Enqueue record (already checked to parse).
#[derive(Clone, Copy, Debug)]
pub(super) struct Entries<'a> {
    bytes: &'a [u8],
    left: u32,
}

impl<'a> Iterator for Entries<'a> {
    type Item = Entry<'a>;

    fn next(&mut self) -> Option<Entry<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let mut r = Reader {
            b: self.bytes,
            at: 0,
        };
        let entry = Entry {
            queue: r.queue()?,
            deadline: r.u64()?,
            flags: r.u8()?,
        };
        self.bytes = &self.bytes[r.at..];
        Some(entry)
    }
}

/// The queue a queue name (as encoded) names (for tests and tools: the store itself keys
/// queues by their encoded names).
#[cfg(test)]
pub(super) fn queue_key(name: &[u8]) -> QueueKey {
    let mut r = Reader { b: name, at: 0 };
    let mut part = || -> &[u8] {
        let len = r.u16().unwrap_or(0) as usize;
        r.take(len).unwrap_or(&[])
    };
    let vhost = String::from_utf8_lossy(part()).into_owned();
    let queue = String::from_utf8_lossy(part()).into_owned();
    QueueKey {
        vhost: vhost.into(),
        queue: queue.into(),
    }
}

/// `queue` as an encoded queue name.
pub(super) fn queue_name(queue: &QueueKey) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + queue.vhost.len() + queue.queue.len());
    put_queue(&mut out, queue);
    out
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let out = self.b.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(out)
    }

    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn u16(&mut self) -> Option<u16> {
        let b = self.take(2)?;
        Some(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Option<u32> {
        Some(be32(self.take(4)?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(be64(self.take(8)?))
    }

    /// A queue name, as encoded.
    fn queue(&mut self) -> Option<&'a [u8]> {
        let from = self.at;
        let vhost = self.u16()? as usize;
        self.take(vhost)?;
        let name = self.u16()? as usize;
        self.take(name)?;
        Some(&self.b[from..self.at])
    }
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn be64(b: &[u8]) -> u64 {
    let mut a = [0; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Properties, ShortStr};
    use bytes::Bytes;

    fn queue(name: &str) -> QueueKey {
        QueueKey {
            vhost: "/".into(),
            queue: name.into(),
        }
    }

    fn message() -> Message {
        Message::new(
            &ShortStr::copy_from_str("x").expect("short"),
            &ShortStr::copy_from_str("k").expect("short"),
            &Properties::empty(),
            &Bytes::from_static(b"body"),
        )
    }

    fn sealed() -> Vec<u8> {
        let mut buf = Vec::new();
        encode_enqueue(
            &mut buf,
            7,
            42,
            &[(&queue("a"), 5), (&queue("b"), 6)],
            &message(),
        )
        .expect("encodes");
        encode_mark(&mut buf, Kind::Remove, 8, &queue("a"), 42);
        encode_mark(&mut buf, Kind::Delivered, 9, &queue("b"), 42);
        encode_forget(&mut buf, 10, &queue("b"));
        let mut at = 0;
        while at < buf.len() {
            let len = len_at(&buf, at);
            seal(&mut buf[at..at + len], 1234);
            at += len;
        }
        buf
    }

    #[test]
    fn every_kind_reads_back_as_written() {
        let buf = sealed();
        let first = read(&buf, 0).expect("enqueue");
        assert_eq!((first.index, first.time), (7, 1234));
        let Body::Enqueue {
            id,
            entries,
            message: m,
        } = first.body
        else {
            panic!("not an enqueue: {:?}", first.body);
        };
        assert_eq!(id, 42);
        let entries: Vec<_> = entries
            .map(|e| (queue_key(e.queue), e.deadline, e.flags))
            .collect();
        assert_eq!(entries, [(queue("a"), 5, 0), (queue("b"), 6, 0)]);
        let (back, used) = codec::decode(&Bytes::copy_from_slice(m)).expect("message");
        assert_eq!((back.body(), used), (message().body(), m.len()));
        let mut at = first.len;
        let second = read(&buf, at).expect("remove");
        assert!(
            matches!(second.body, Body::Remove { id: 42, queue: q } if queue_key(q) == queue("a"))
        );
        at += second.len;
        let third = read(&buf, at).expect("delivered");
        assert!(matches!(third.body, Body::Delivered { id: 42, .. }));
        at += third.len;
        let fourth = read(&buf, at).expect("forget");
        assert!(matches!(fourth.body, Body::ForgetQueue { .. }));
        assert_eq!(at + fourth.len, buf.len());
    }

    #[test]
    fn a_flipped_bit_or_a_cut_is_caught() {
        let buf = sealed();
        let len = read(&buf, 0).expect("reads").len;
        for at in 0..len {
            let mut bad = buf.clone();
            bad[at] ^= 0x10;
            assert!(read(&bad, 0).is_err(), "a flip at {at} went unnoticed");
        }
        for cut in 0..len {
            assert_eq!(
                read(&buf[..cut], 0).err(),
                Some(Bad::Incomplete),
                "cut at {cut}"
            );
        }
        assert!(plausible_at(&buf, len, 0..100));
        assert!(!plausible_at(&buf, len, 0..8), "index outside the range");
        assert!(!plausible_at(&buf, 1, 0..100));
    }
}
