//! The frame layer: the protocol header, then `type | channel | size | payload | 0xCE`
//! frames, cut out of a byte stream by [`FrameCodec`] however the reads are chunked.
//!
//! This module only knows framing. What a method frame's payload means is
//! [`method`](super::method)'s business, what a content header carries is
//! [`content`](super::content)'s; which frame may follow which is the connection/channel
//! state machines'.
//!
//! Architecture invariants:
//! - A frame's payload is a `Bytes` slice split off the read buffer, never copied: body
//!   frames go to the queues as those slices, and so do the raw properties of content
//!   headers and the exchange/routing-key bytes of `basic.publish`.
//! - The decoder checks a frame's declared size against `frame_max` before buffering it, so
//!   a peer cannot make the server buffer more than one maximal frame.
//! - Every error is a [`ProtocolError`] that closes the connection; after one the stream is
//!   out of sync and the decoder must not be fed again.

use std::fmt;
use std::io;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::ProtocolError;
use super::content::ContentHeader;
use super::method::RawMethod;

/// The protocol header the server speaks and answers a wrong header with.
pub const PROTOCOL_HEADER: [u8; 8] = *b"AMQP\x00\x00\x09\x01";
/// The AMQP 0-9 header, which RabbitMQ (and Warren) serve as 0-9-1.
const PROTOCOL_HEADER_0_9: [u8; 8] = *b"AMQP\x01\x01\x00\x09";
/// The octet that ends every frame.
pub const FRAME_END: u8 = 0xCE;
/// Bytes before a frame's payload: type, channel, size.
pub const FRAME_HEADER_LEN: usize = 7;
/// Bytes a frame adds around its payload (header and end octet).
pub const FRAME_OVERHEAD: u32 = 8;
/// The spec's smallest `frame_max`, in force until `connection.tune-ok`.
pub const FRAME_MIN_SIZE: u32 = 4096;
/// How far past `frame_max` an incoming frame may go before it is refused. RabbitMQ allows
/// the 8 bytes of overhead extra ("quite a few clients get it wrong"), so a peer that counts
/// `frame_max` as the payload limit keeps working; Warren does the same. Frames Warren
/// sends never use this slack.
pub const FRAME_SIZE_FUDGE: u32 = FRAME_OVERHEAD;

/// The four frame types of AMQP 0-9-1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameType {
    /// A method (1).
    Method = 1,
    /// A content header (2).
    Header = 2,
    /// A piece of content body (3).
    Body = 3,
    /// A heartbeat (8).
    Heartbeat = 8,
}

impl FrameType {
    /// The type for a frame-type octet, if it is one of the four.
    pub const fn from_octet(octet: u8) -> Option<FrameType> {
        match octet {
            1 => Some(FrameType::Method),
            2 => Some(FrameType::Header),
            3 => Some(FrameType::Body),
            8 => Some(FrameType::Heartbeat),
            _ => None,
        }
    }
}

impl fmt::Display for FrameType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FrameType::Method => "method",
            FrameType::Header => "content header",
            FrameType::Body => "content body",
            FrameType::Heartbeat => "heartbeat",
        })
    }
}

/// Which acceptable protocol header a client opened with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientProtocol {
    /// `AMQP 0 0 9 1`.
    Amqp091,
    /// `AMQP 1 1 0 9` (AMQP 0-9), which RabbitMQ treats as 0-9-1 and so does Warren.
    Amqp09,
}

/// Checks the 8 bytes a client opens the connection with.
///
/// `Ok(None)`: fewer than 8 bytes so far. `Ok(Some(_))`: a header Warren serves.
/// `Err(ProtocolError::BadProtocolHeader)`: anything else (another AMQP version, HTTP, TLS);
/// the server must answer with [`PROTOCOL_HEADER`] and close the socket.
pub fn parse_protocol_header(buf: &[u8]) -> Result<Option<ClientProtocol>, ProtocolError> {
    let Some(first) = buf.first_chunk::<8>() else {
        return Ok(None);
    };
    match *first {
        PROTOCOL_HEADER => Ok(Some(ClientProtocol::Amqp091)),
        PROTOCOL_HEADER_0_9 => Ok(Some(ClientProtocol::Amqp09)),
        other => Err(ProtocolError::BadProtocolHeader(other)),
    }
}

/// One AMQP frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// The protocol header: decoded once, first, when the codec expects it; encoded as
    /// [`PROTOCOL_HEADER`] (the server's answer to a bad header).
    ProtocolHeader,
    /// A method frame; its payload is decoded by [`RawMethod`].
    Method {
        /// The channel.
        channel: u16,
        /// The undecoded method (class id, method id, arguments).
        method: RawMethod,
    },
    /// A content header frame.
    Header {
        /// The channel.
        channel: u16,
        /// The parsed header; its properties are a slice of the frame.
        header: ContentHeader,
    },
    /// A content body frame.
    Body {
        /// The channel.
        channel: u16,
        /// The body piece: a slice of the read buffer, never copied.
        payload: Bytes,
    },
    /// A heartbeat (always channel 0).
    Heartbeat,
}

impl Frame {
    /// The frame's channel (0 for heartbeats and the protocol header).
    pub fn channel(&self) -> u16 {
        match self {
            Frame::Method { channel, .. }
            | Frame::Header { channel, .. }
            | Frame::Body { channel, .. } => *channel,
            Frame::ProtocolHeader | Frame::Heartbeat => 0,
        }
    }
}

/// Errors from reading or writing frames on a socket.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The peer broke the protocol; answer per [`ProtocolError::reply_code`].
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The socket failed; nothing can be sent.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Decodes and encodes AMQP frames for `tokio_util::codec::Framed`.
///
/// A server-side codec starts expecting the protocol header and a `frame_max` of
/// [`FRAME_MIN_SIZE`]; the connection calls [`FrameCodec::set_frame_max`] with the value
/// negotiated in `connection.tune-ok`.
#[derive(Clone, Debug)]
pub struct FrameCodec {
    /// The negotiated frame_max (0 = no limit), frame overhead included.
    frame_max: u32,
    expect_protocol_header: bool,
}

impl Default for FrameCodec {
    fn default() -> FrameCodec {
        FrameCodec::new()
    }
}

impl FrameCodec {
    /// A codec for a freshly accepted connection: protocol header first, then frames of at
    /// most [`FRAME_MIN_SIZE`].
    pub fn new() -> FrameCodec {
        FrameCodec {
            frame_max: FRAME_MIN_SIZE,
            expect_protocol_header: true,
        }
    }

    /// A codec that expects frames straight away (the header was handled elsewhere).
    pub fn without_protocol_header() -> FrameCodec {
        FrameCodec {
            frame_max: FRAME_MIN_SIZE,
            expect_protocol_header: false,
        }
    }

    /// Sets the negotiated `frame_max` (bytes per frame including the 8 bytes of overhead;
    /// 0 means no limit, which Warren's tune never agrees to).
    pub fn set_frame_max(&mut self, frame_max: u32) {
        self.frame_max = frame_max;
    }

    /// The `frame_max` in force.
    pub fn frame_max(&self) -> u32 {
        self.frame_max
    }

    /// The largest payload accepted from the peer (including RabbitMQ's fudge).
    fn max_incoming_payload(&self) -> u32 {
        match self.frame_max {
            0 => u32::MAX,
            max => max
                .saturating_sub(FRAME_OVERHEAD)
                .saturating_add(FRAME_SIZE_FUDGE),
        }
    }
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        if self.expect_protocol_header {
            return match parse_protocol_header(src)? {
                None => {
                    src.reserve(PROTOCOL_HEADER.len() - src.len());
                    Ok(None)
                }
                Some(_) => {
                    src.advance(PROTOCOL_HEADER.len());
                    self.expect_protocol_header = false;
                    Ok(Some(Frame::ProtocolHeader))
                }
            };
        }
        let Some(head) = src.first_chunk::<FRAME_HEADER_LEN>() else {
            return Ok(None);
        };
        let type_octet = head[0];
        let channel = u16::from_be_bytes([head[1], head[2]]);
        let size = u32::from_be_bytes([head[3], head[4], head[5], head[6]]);
        let Some(frame_type) = FrameType::from_octet(type_octet) else {
            return Err(ProtocolError::UnknownFrameType {
                frame_type: type_octet,
                channel,
            }
            .into());
        };
        if size > self.max_incoming_payload() {
            return Err(ProtocolError::FrameTooLarge {
                frame_type: type_octet,
                channel,
                size,
                frame_max: self.frame_max,
            }
            .into());
        }
        // Bounded by frame_max above, so this cannot be made to reserve without limit.
        let total = FRAME_HEADER_LEN + size as usize + 1;
        if src.len() < total {
            src.reserve(total - src.len());
            return Ok(None);
        }
        let end = src[total - 1];
        if end != FRAME_END {
            return Err(ProtocolError::BadFrameEnd {
                frame_type: type_octet,
                channel,
                found: end,
            }
            .into());
        }
        let short = |min: u32| -> Result<(), ProtocolError> {
            if size < min {
                return Err(ProtocolError::ShortPayload {
                    frame_type,
                    channel,
                    len: size,
                });
            }
            Ok(())
        };
        match frame_type {
            FrameType::Heartbeat if channel != 0 => {
                return Err(ProtocolError::HeartbeatOnChannel { channel }.into());
            }
            FrameType::Heartbeat if size != 0 => {
                return Err(ProtocolError::HeartbeatWithPayload { len: size }.into());
            }
            FrameType::Method => short(4)?,
            FrameType::Header => short(14)?,
            FrameType::Heartbeat | FrameType::Body => {}
        }
        src.advance(FRAME_HEADER_LEN);
        // The zero-copy split: the payload shares the read buffer's allocation.
        let payload = src.split_to(size as usize).freeze();
        src.advance(1);
        let frame = match frame_type {
            FrameType::Method => Frame::Method {
                channel,
                method: RawMethod::from_payload(payload),
            },
            FrameType::Header => Frame::Header {
                channel,
                header: ContentHeader::parse(payload)?,
            },
            FrameType::Body => Frame::Body { channel, payload },
            FrameType::Heartbeat => Frame::Heartbeat,
        };
        Ok(Some(frame))
    }
}

impl Encoder<Frame> for FrameCodec {
    type Error = CodecError;

    /// Writes one frame. Refuses (541, a server bug) a payload larger than `frame_max`
    /// allows; content bodies must be split by the caller, see
    /// [`encode_content`](super::encode_content).
    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), CodecError> {
        let max_payload = match self.frame_max {
            0 => u32::MAX as usize,
            max => max.saturating_sub(FRAME_OVERHEAD) as usize,
        };
        let too_large = || ProtocolError::Encode("frame larger than frame_max");
        match frame {
            Frame::ProtocolHeader => dst.put_slice(&PROTOCOL_HEADER),
            Frame::Heartbeat => {
                dst.put_slice(&[FrameType::Heartbeat as u8, 0, 0, 0, 0, 0, 0, FRAME_END])
            }
            Frame::Method { channel, method } => {
                let payload = method.payload();
                if payload.len() > max_payload {
                    return Err(too_large().into());
                }
                write_frame(dst, FrameType::Method, channel, payload);
            }
            Frame::Body { channel, payload } => {
                if payload.len() > max_payload {
                    return Err(too_large().into());
                }
                write_frame(dst, FrameType::Body, channel, &payload);
            }
            Frame::Header { channel, header } => {
                let len = header.payload_len();
                if len > max_payload {
                    return Err(too_large().into());
                }
                dst.reserve(len + FRAME_OVERHEAD as usize);
                write_frame_head(dst, FrameType::Header, channel, len);
                header.write_payload(dst);
                dst.put_u8(FRAME_END);
            }
        }
        Ok(())
    }
}

/// Writes a frame's type, channel and size. `len` must fit in u32 (callers bound it by
/// frame_max).
pub(crate) fn write_frame_head(
    dst: &mut BytesMut,
    frame_type: FrameType,
    channel: u16,
    len: usize,
) {
    dst.put_u8(frame_type as u8);
    dst.put_u16(channel);
    dst.put_u32(len as u32);
}

/// Writes a whole frame around `payload`.
pub(crate) fn write_frame(dst: &mut BytesMut, frame_type: FrameType, channel: u16, payload: &[u8]) {
    dst.reserve(payload.len() + FRAME_OVERHEAD as usize);
    write_frame_head(dst, frame_type, channel, payload.len());
    dst.put_slice(payload);
    dst.put_u8(FRAME_END);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ReplyCode;
    use crate::protocol::content::Properties;
    use crate::protocol::testutil::XorShift;
    use crate::protocol::testutil::publish_method;
    use amq_protocol::protocol::BasicProperties;

    fn codec() -> FrameCodec {
        let mut c = FrameCodec::without_protocol_header();
        c.set_frame_max(131_072);
        c
    }

    fn decode_all(codec: &mut FrameCodec, buf: &mut BytesMut) -> Result<Vec<Frame>, CodecError> {
        let mut frames = Vec::new();
        while let Some(f) = codec.decode(buf)? {
            frames.push(f);
        }
        Ok(frames)
    }

    fn protocol_error(result: Result<Option<Frame>, CodecError>) -> ProtocolError {
        match result {
            Err(CodecError::Protocol(e)) => e,
            other => panic!("expected a protocol error, got {other:?}"),
        }
    }

    /// Protocol header, publish method, content header, two body frames, heartbeat.
    fn publish_stream() -> (BytesMut, Vec<Frame>) {
        let props = Properties::from_basic_properties(
            &BasicProperties::default()
                .with_delivery_mode(2)
                .with_expiration("1000".into()),
        )
        .unwrap();
        let frames = vec![
            Frame::Method {
                channel: 1,
                method: publish_method("amq.topic", "a.b.c", true, false),
            },
            Frame::Header {
                channel: 1,
                header: ContentHeader::new(11, props),
            },
            Frame::Body {
                channel: 1,
                payload: Bytes::from_static(b"hello "),
            },
            Frame::Body {
                channel: 1,
                payload: Bytes::from_static(b"world"),
            },
            Frame::Heartbeat,
        ];
        let mut buf = BytesMut::from(&PROTOCOL_HEADER[..]);
        let mut enc = codec();
        for f in &frames {
            enc.encode(f.clone(), &mut buf).unwrap();
        }
        let mut expected = vec![Frame::ProtocolHeader];
        expected.extend(frames);
        (buf, expected)
    }

    #[test]
    fn round_trips_at_every_single_split_point() {
        let (stream, expected) = publish_stream();
        for split in 0..=stream.len() {
            let mut codec = FrameCodec::new();
            let mut buf = BytesMut::new();
            let mut frames = Vec::new();
            for part in [&stream[..split], &stream[split..]] {
                buf.extend_from_slice(part);
                frames.extend(decode_all(&mut codec, &mut buf).unwrap());
            }
            assert_eq!(frames, expected, "split at {split}");
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn round_trips_at_every_pair_of_split_points() {
        let (stream, expected) = publish_stream();
        let n = stream.len();
        for a in 0..=n {
            for b in a..=n {
                let mut codec = FrameCodec::new();
                let mut buf = BytesMut::new();
                let mut frames = Vec::new();
                for part in [&stream[..a], &stream[a..b], &stream[b..]] {
                    buf.extend_from_slice(part);
                    frames.extend(decode_all(&mut codec, &mut buf).unwrap());
                }
                assert_eq!(frames, expected, "split at {a}, {b}");
            }
        }
    }

    #[test]
    fn round_trips_byte_by_byte_and_in_random_chunks() {
        let (stream, expected) = publish_stream();
        let mut rng = XorShift::new(3);
        for round in 0..200 {
            let mut codec = FrameCodec::new();
            let mut buf = BytesMut::new();
            let mut frames = Vec::new();
            let mut pos = 0;
            while pos < stream.len() {
                let step = if round == 0 {
                    1
                } else {
                    1 + rng.below(40) as usize
                };
                let end = (pos + step).min(stream.len());
                buf.extend_from_slice(&stream[pos..end]);
                pos = end;
                frames.extend(decode_all(&mut codec, &mut buf).unwrap());
            }
            assert_eq!(frames, expected);
        }
    }

    #[test]
    fn body_frames_are_slices_of_the_read_buffer() {
        let (stream, _) = publish_stream();
        let mut codec = FrameCodec::new();
        let mut buf = BytesMut::from(&stream[..]);
        let base = buf.as_ptr() as usize;
        let range = base..base + stream.len();
        let frames = decode_all(&mut codec, &mut buf).unwrap();
        let mut bodies = 0;
        for f in frames {
            match f {
                Frame::Body { payload, .. } => {
                    assert!(range.contains(&(payload.as_ptr() as usize)));
                    bodies += 1;
                }
                Frame::Header { header, .. } => {
                    let raw = header.properties().raw();
                    assert!(range.contains(&(raw.as_ptr() as usize)));
                }
                _ => {}
            }
        }
        assert_eq!(bodies, 2);
    }

    #[test]
    fn protocol_header_is_checked() {
        assert_eq!(parse_protocol_header(b"AMQP\0\0\x09"), Ok(None));
        assert_eq!(
            parse_protocol_header(b"AMQP\0\0\x09\x01"),
            Ok(Some(ClientProtocol::Amqp091))
        );
        assert_eq!(
            parse_protocol_header(b"AMQP\x01\x01\x00\x09"),
            Ok(Some(ClientProtocol::Amqp09))
        );
        for bad in [
            &b"AMQP\0\0\x09\x00"[..],
            b"AMQP\0\x01\0\0",
            b"GET / HTTP/1.1",
        ] {
            let e = parse_protocol_header(bad).unwrap_err();
            assert!(e.replies_with_protocol_header());
        }
        let mut codec = FrameCodec::new();
        let mut buf = BytesMut::from(&b"HTTP/1.1"[..]);
        let e = protocol_error(codec.decode(&mut buf));
        assert_eq!(e, ProtocolError::BadProtocolHeader(*b"HTTP/1.1"));
        let mut out = BytesMut::new();
        codec.encode(Frame::ProtocolHeader, &mut out).unwrap();
        assert_eq!(&out[..], b"AMQP\0\0\x09\x01");
    }

    #[test]
    fn framing_violations_are_frame_errors() {
        let cases: Vec<(Vec<u8>, ProtocolError)> = vec![
            (
                vec![1, 0, 1, 0, 0, 0, 4, 0, 10, 0, 10, 0xCD],
                ProtocolError::BadFrameEnd {
                    frame_type: 1,
                    channel: 1,
                    found: 0xCD,
                },
            ),
            (
                vec![4, 0, 1, 0, 0, 0, 0, FRAME_END],
                ProtocolError::UnknownFrameType {
                    frame_type: 4,
                    channel: 1,
                },
            ),
            (
                vec![8, 0, 5, 0, 0, 0, 0, FRAME_END],
                ProtocolError::HeartbeatOnChannel { channel: 5 },
            ),
            (
                vec![8, 0, 0, 0, 0, 0, 1, 0, FRAME_END],
                ProtocolError::HeartbeatWithPayload { len: 1 },
            ),
            (
                vec![1, 0, 1, 0, 0, 0, 3, 0, 10, 0, FRAME_END],
                ProtocolError::ShortPayload {
                    frame_type: FrameType::Method,
                    channel: 1,
                    len: 3,
                },
            ),
            (
                vec![2, 0, 1, 0, 0, 0, 2, 0, 60, FRAME_END],
                ProtocolError::ShortPayload {
                    frame_type: FrameType::Header,
                    channel: 1,
                    len: 2,
                },
            ),
        ];
        for (bytes, expected) in cases {
            let mut buf = BytesMut::from(&bytes[..]);
            let e = protocol_error(codec().decode(&mut buf));
            assert_eq!(e, expected);
            assert_eq!(e.reply_code(), ReplyCode::FrameError);
        }
    }

    #[test]
    fn frame_max_is_enforced_with_rabbitmqs_fudge() {
        let mut codec = FrameCodec::without_protocol_header();
        assert_eq!(codec.frame_max(), FRAME_MIN_SIZE);
        let body = |size: u32| {
            let mut b = vec![3, 0, 1];
            b.extend_from_slice(&size.to_be_bytes());
            b.resize(7 + size as usize, 0);
            b.push(FRAME_END);
            BytesMut::from(&b[..])
        };
        // Payload up to frame_max itself is tolerated (RabbitMQ's fudge)...
        assert!(matches!(
            codec.decode(&mut body(4096)),
            Ok(Some(Frame::Body { .. }))
        ));
        // ...one byte more is refused from the header alone, before buffering the payload.
        let mut head = BytesMut::from(&body(4097)[..7]);
        let e = protocol_error(codec.decode(&mut head));
        assert_eq!(
            e,
            ProtocolError::FrameTooLarge {
                frame_type: 3,
                channel: 1,
                size: 4097,
                frame_max: 4096
            }
        );
        assert_eq!(e.reply_code(), ReplyCode::FrameError);
        codec.set_frame_max(131_072);
        assert!(matches!(codec.decode(&mut body(100_000)), Ok(Some(_))));
        codec.set_frame_max(0);
        assert!(matches!(codec.decode(&mut body(200_000)), Ok(Some(_))));
    }

    #[test]
    fn encoder_refuses_frames_over_frame_max() {
        let mut codec = FrameCodec::without_protocol_header();
        let mut out = BytesMut::new();
        let big = Frame::Body {
            channel: 1,
            payload: Bytes::from(vec![0; 4089]),
        };
        assert!(codec.encode(big, &mut out).is_err());
        let ok = Frame::Body {
            channel: 1,
            payload: Bytes::from(vec![0; 4088]),
        };
        codec.encode(ok, &mut out).unwrap();
        assert_eq!(out.len(), 4096);
    }

    #[test]
    fn frames_parse_with_amq_protocol() {
        let (stream, _) = publish_stream();
        let mut rest = &stream[..];
        let mut count = 0;
        while !rest.is_empty() {
            let (r, _) = amq_protocol::frame::parse_frame(rest).unwrap();
            rest = r;
            count += 1;
        }
        assert_eq!(count, 6);
    }

    /// Random and mutated byte streams never panic the decoder: every call yields a frame,
    /// "need more bytes", or a typed error.
    #[test]
    fn fuzzed_streams_never_panic() {
        let (stream, _) = publish_stream();
        let mut rng = XorShift::new(0xF00D);
        let mut outcomes = [0usize; 3];
        for i in 0..150_000 {
            let mut bytes = if i % 10 == 0 {
                (0..rng.below(64)).map(|_| rng.next() as u8).collect()
            } else {
                stream.to_vec()
            };
            rng.mutate(&mut bytes);
            let mut codec = if i % 2 == 0 {
                FrameCodec::new()
            } else {
                codec()
            };
            let mut buf = BytesMut::new();
            let mut pos = 0;
            'feed: while pos < bytes.len() {
                let end = (pos + 1 + rng.below(64) as usize).min(bytes.len());
                buf.extend_from_slice(&bytes[pos..end]);
                pos = end;
                loop {
                    match codec.decode(&mut buf) {
                        Ok(Some(frame)) => {
                            outcomes[0] += 1;
                            if let Frame::Method { method, .. } = &frame {
                                let _ = method.decode();
                                if method.is_basic_publish() {
                                    let _ = method.decode_publish();
                                }
                            }
                        }
                        Ok(None) => break,
                        Err(CodecError::Protocol(e)) => {
                            assert!(e.reply_code().closes_connection());
                            outcomes[1] += 1;
                            break 'feed;
                        }
                        Err(CodecError::Io(e)) => panic!("{e}"),
                    }
                }
            }
            outcomes[2] += 1;
        }
        assert!(
            outcomes[0] > 100_000 && outcomes[1] > 10_000,
            "{outcomes:?}"
        );
    }
}
