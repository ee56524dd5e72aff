//! The wire format: frame headers, commands, encoding and validated decoding.
//!
//! Public only for the fuzz targets and the tests' scripted peer: hidden from the docs and not
//! part of the stable API (it takes `bytes::BytesMut`, which the stable API does not expose).
//!
//! In picomux and smux every frame is an 8-byte header (version, command, little-endian u16
//! body length, little-endian u32 stream id) followed by the body; yamux has a 12-byte
//! big-endian header of its own ([`YamuxHeader`]). A [`Framing`] says how long a header is and
//! how long a body it announces, and [`FrameIter`] (like the session's reader) is generic over
//! it. Decoding validates the header before the body is read, so a bad version or unknown
//! command is reported without waiting for its body. What is valid depends on the
//! [`Protocol`]: the rules of each dialect are in `src/wire/`.

use std::fmt;

use bytes::{BufMut, BytesMut};

pub use crate::config::Protocol;
pub use crate::wire::smux::Upd;
pub use crate::wire::yamux::{
    Flags, FrameType, GoAwayCode, YamuxHeader, HEADER_LEN as YAMUX_HEADER_LEN,
};

/// Length of a frame header in bytes.
pub const HEADER_LEN: usize = 8;
/// Largest frame body: the body length field is a u16.
pub const MAX_BODY: usize = u16::MAX as usize;
/// picomux's protocol version (smux's are 1 and 2).
pub const VERSION: u8 = 1;
/// Credits each side holds on a new stream, fixed by the protocol.
pub const INITIAL_CREDITS: u32 = 10;

/// A frame command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Opens a stream; the body is the opener's metadata.
    Syn,
    /// Ends the sender's direction (empty body) or aborts the stream (body = UTF-8 reason).
    Fin,
    /// Stream data; costs one credit.
    Psh,
    /// Ignored (picomux: smolmux's signals in its body); smux's keepalive, on stream 0.
    Nop,
    /// picomux: grants credits; the body is a little-endian u16.
    More,
    /// smux v2: the receiver's window update; the body is a [`Upd`].
    Upd,
    /// Liveness probe with a JSON body; answered with PONG.
    Ping,
    /// Answer to a PING.
    Pong,
}

impl Command {
    /// The command's byte on the wire.
    pub fn to_byte(self) -> u8 {
        match self {
            Command::Syn => 0x00,
            Command::Fin => 0x01,
            Command::Psh => 0x02,
            Command::Nop => 0x03,
            Command::More | Command::Upd => 0x04,
            Command::Ping => 0xa0,
            Command::Pong => 0xa1,
        }
    }
}

/// A decoded, validated frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// What the frame does.
    pub command: Command,
    /// Length of the body that follows.
    pub body_len: u16,
    /// The stream the frame belongs to (0 for PING and PONG).
    pub stream_id: u32,
}

/// A peer's violation of the wire protocol. Its message names the problem; the session ends with
/// [`std::io::ErrorKind::InvalidData`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtocolError(pub String);

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "protocol error: {}", self.0)
    }
}

impl From<ProtocolError> for std::io::Error {
    fn from(err: ProtocolError) -> Self {
        std::io::Error::new(std::io::ErrorKind::InvalidData, err.to_string())
    }
}

impl Header {
    /// Decodes and validates a picomux header.
    pub fn decode(bytes: &[u8; HEADER_LEN]) -> Result<Header, ProtocolError> {
        Header::decode_as(bytes, Protocol::Picomux)
    }

    /// Decodes and validates a header of `protocol`.
    pub fn decode_as(
        bytes: &[u8; HEADER_LEN],
        protocol: Protocol,
    ) -> Result<Header, ProtocolError> {
        crate::wire::decode_header(bytes, protocol)
    }

    /// The header with `command` and the length and stream id fields of `bytes` (the layout
    /// every dialect here shares).
    pub(crate) fn from_fields(command: Command, bytes: &[u8; HEADER_LEN]) -> Header {
        Header {
            command,
            body_len: u16::from_le_bytes([bytes[2], bytes[3]]),
            stream_id: u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
        }
    }

    /// Appends the encoded picomux header to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        self.encode_as(out, Protocol::Picomux);
    }

    /// Appends the encoded header, as `protocol` frames it, to `out`.
    ///
    /// # Panics
    ///
    /// If `protocol` is [`Protocol::Yamux`], whose frames have another layout
    /// ([`YamuxHeader::encode`]).
    pub fn encode_as(&self, out: &mut BytesMut, protocol: Protocol) {
        out.put_u8(crate::wire::version_byte(protocol));
        out.put_u8(self.command.to_byte());
        out.put_u16_le(self.body_len);
        out.put_u32_le(self.stream_id);
    }
}

/// What the first bytes of a connection look like when they are not a frame but another
/// protocol (a peer, or a port, that is not what the user thinks), as a hint for the error; ""
/// when they look like nothing known. Also used on the partial header left at the end of a
/// connection (a TLS alert is 7 bytes, shorter than a header).
pub(crate) fn foreign_protocol_hint(bytes: &[u8]) -> &'static str {
    let starts = |prefix: &[u8]| bytes.starts_with(prefix);
    if starts(&[0x16, 0x03]) {
        ": this looks like a TLS handshake; does the peer expect TLS?"
    } else if starts(&[0x15, 0x03]) {
        ": this looks like a TLS alert; is one side speaking TLS and the other not?"
    } else if starts(b"HTTP/") {
        ": this looks like an HTTP response; is the peer an HTTP server?"
    } else if [
        &b"GET "[..],
        b"POST ",
        b"PUT ",
        b"HEAD ",
        b"CONNECT ",
        b"OPTIONS ",
    ]
    .iter()
    .any(|method| starts(method))
    {
        ": this looks like an HTTP request; is the peer an HTTP client?"
    } else if starts(b"SSH-") {
        ": this looks like SSH"
    } else {
        ""
    }
}

/// Appends a whole picomux frame to `out`. The body must be at most [`MAX_BODY`] bytes.
pub fn encode_frame(out: &mut BytesMut, command: Command, stream_id: u32, body: &[u8]) {
    encode_frame_as(out, Protocol::Picomux, command, stream_id, body);
}

/// Appends a whole frame of `protocol` to `out`. The body must be at most [`MAX_BODY`] bytes.
///
/// # Panics
///
/// If `protocol` is [`Protocol::Yamux`] (see [`Header::encode_as`]).
pub fn encode_frame_as(
    out: &mut BytesMut,
    protocol: Protocol,
    command: Command,
    stream_id: u32,
    body: &[u8],
) {
    debug_assert!(body.len() <= MAX_BODY);
    Header {
        command,
        body_len: body.len() as u16,
        stream_id,
    }
    .encode_as(out, protocol);
    out.extend_from_slice(body);
}

/// A smolmux signal, carried in the one-byte body of a NOP frame.
///
/// Every peer ignores NOP frames (picomux and older smolmux versions included), so a signal can
/// never be misread as something else; smolmux still sends them only to peers that announced
/// smolmux's extensions. A NOP whose body is not exactly one known byte is ignored, as the
/// protocol says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// On a stream: "I will read no more of this stream; stop sending" (the sender's writes
    /// fail, and it ends its direction with FIN). QUIC's STOP_SENDING.
    StopSending,
    /// On stream 0: "I open no more streams and accept none of yours; existing streams
    /// finish". HTTP/2's GOAWAY.
    GoAway,
    /// On stream 0: "every stream is done both ways and this is my last frame". Sent after
    /// GOAWAY; once both sides have sent it, the session ends without waiting for the
    /// connection's end.
    Bye,
    /// On stream 0: "you may open this many more streams" (QUIC's MAX_STREAMS, as an
    /// increment). The body is the byte 4 and the count as a little-endian u32.
    MoreStreams(u32),
}

impl Signal {
    /// The signal a NOP body carries, if it carries one.
    pub fn decode(body: &[u8]) -> Option<Signal> {
        match *body {
            [1] => Some(Signal::StopSending),
            [2] => Some(Signal::GoAway),
            [3] => Some(Signal::Bye),
            [4, a, b, c, d] => Some(Signal::MoreStreams(u32::from_le_bytes([a, b, c, d]))),
            _ => None,
        }
    }

    /// Appends the NOP frame carrying this signal on `stream_id` to `out`.
    pub fn encode_frame(self, out: &mut BytesMut, stream_id: u32) {
        match self {
            Signal::StopSending => encode_frame(out, Command::Nop, stream_id, &[1]),
            Signal::GoAway => encode_frame(out, Command::Nop, stream_id, &[2]),
            Signal::Bye => encode_frame(out, Command::Nop, stream_id, &[3]),
            Signal::MoreStreams(count) => {
                let [a, b, c, d] = count.to_le_bytes();
                encode_frame(out, Command::Nop, stream_id, &[4, a, b, c, d]);
            }
        }
    }
}

/// A frame layout: how long a header is, how it is decoded and validated, and how long a body
/// it announces. Decoders are generic over it, so that each layout's decoding is compiled on
/// its own and no frame pays for a choice of layout.
pub trait Framing: Copy {
    /// A decoded, validated header.
    type Header: Copy;
    /// Bytes in a header.
    const HEADER_LEN: usize;
    /// Decodes and validates a header; `bytes` is exactly [`Framing::HEADER_LEN`] long.
    fn decode(self, bytes: &[u8]) -> Result<Self::Header, ProtocolError>;
    /// Length of the body that follows `header`.
    fn body_len(header: &Self::Header) -> usize;
    /// Whether the body is stream data (which a reader may hand to a stream as it is, rather
    /// than read and drop).
    fn carries_data(header: &Self::Header) -> bool;
}

/// The 8-byte little-endian layout of picomux and smux ([`Header`]), with the rules of the
/// dialect given. [`Protocol::Yamux`] is not of this layout: every one of its headers is
/// refused (use [`YamuxFraming`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SmuxFraming(pub Protocol);

impl Framing for SmuxFraming {
    type Header = Header;
    const HEADER_LEN: usize = HEADER_LEN;

    fn decode(self, bytes: &[u8]) -> Result<Header, ProtocolError> {
        let bytes = bytes.try_into().expect("a whole header");
        Header::decode_as(bytes, self.0)
    }

    fn body_len(header: &Header) -> usize {
        header.body_len as usize
    }

    fn carries_data(header: &Header) -> bool {
        header.command == Command::Psh
    }
}

/// yamux's 12-byte big-endian layout ([`YamuxHeader`]); only Data frames have a body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct YamuxFraming;

impl Framing for YamuxFraming {
    type Header = YamuxHeader;
    const HEADER_LEN: usize = YAMUX_HEADER_LEN;

    fn decode(self, bytes: &[u8]) -> Result<YamuxHeader, ProtocolError> {
        YamuxHeader::decode(bytes.try_into().expect("a whole header"))
    }

    fn body_len(header: &YamuxHeader) -> usize {
        header.body_len()
    }

    fn carries_data(header: &YamuxHeader) -> bool {
        header.frame_type == FrameType::Data
    }
}

/// A complete frame of `F`'s layout: its header and its body.
pub type Frame<'a, F> = (<F as Framing>::Header, &'a [u8]);

/// Incremental decoder over a byte slice: yields each complete frame as a header and a body slice,
/// and reports how many bytes it consumed so the caller can keep the partial tail.
pub struct FrameIter<'a, F: Framing = SmuxFraming> {
    buf: &'a [u8],
    consumed: usize,
    framing: F,
}

impl<'a> FrameIter<'a, SmuxFraming> {
    /// Decodes picomux frames from the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        FrameIter::for_protocol(buf, Protocol::Picomux)
    }

    /// Decodes frames of `protocol` (one of the 8-byte layout) from the start of `buf`.
    pub fn for_protocol(buf: &'a [u8], protocol: Protocol) -> Self {
        FrameIter::with_framing(buf, SmuxFraming(protocol))
    }
}

impl<'a, F: Framing> FrameIter<'a, F> {
    /// Decodes frames of `framing` from the start of `buf`.
    pub fn with_framing(buf: &'a [u8], framing: F) -> Self {
        FrameIter {
            buf,
            consumed: 0,
            framing,
        }
    }

    /// Bytes taken by the complete frames yielded so far.
    pub fn consumed(&self) -> usize {
        self.consumed
    }

    /// The next complete frame, `Ok(None)` when only a partial frame (or nothing) is left, or the
    /// protocol error of the next header.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'a, F>>, ProtocolError> {
        let rest = &self.buf[self.consumed..];
        let Some(head) = rest.get(..F::HEADER_LEN) else {
            return Ok(None);
        };
        let header = self.framing.decode(head)?;
        let end = F::HEADER_LEN.saturating_add(F::body_len(&header));
        if rest.len() < end {
            return Ok(None);
        }
        self.consumed += end;
        Ok(Some((header, &rest[F::HEADER_LEN..end])))
    }
}

/// What a PING body says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PingInfo {
    /// When the peer plans to ping next, in milliseconds.
    pub next_ping_in_ms: u32,
    /// Whether the peer announced smolmux's extensions (`"smolmux": 1`).
    pub smolmux: bool,
}

impl PingInfo {
    /// Parses a PING body: a JSON object with a u32 `next_ping_in_ms`; other fields are ignored.
    pub fn decode(body: &[u8]) -> Result<PingInfo, ProtocolError> {
        let bad = |why: String| ProtocolError(format!("PING body is not the JSON object: {why}"));
        let value: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| bad(e.to_string()))?;
        let object = value
            .as_object()
            .ok_or_else(|| bad("not an object".into()))?;
        let next_ping_in_ms = object
            .get("next_ping_in_ms")
            .and_then(|v| v.as_u64())
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| bad("next_ping_in_ms missing or not a u32".into()))?;
        let smolmux = object.get("smolmux").and_then(|v| v.as_u64()) == Some(1);
        Ok(PingInfo {
            next_ping_in_ms,
            smolmux,
        })
    }

    /// Appends a whole PING frame carrying this info to `out`.
    pub fn encode_frame(&self, out: &mut BytesMut) {
        let body = if self.smolmux {
            format!(
                "{{\"next_ping_in_ms\":{},\"smolmux\":1}}",
                self.next_ping_in_ms
            )
        } else {
            format!("{{\"next_ping_in_ms\":{}}}", self.next_ping_in_ms)
        };
        encode_frame(out, Command::Ping, 0, body.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_bytes(version: u8, command: u8, len: u16, id: u32) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0] = version;
        b[1] = command;
        b[2..4].copy_from_slice(&len.to_le_bytes());
        b[4..8].copy_from_slice(&id.to_le_bytes());
        b
    }

    #[test]
    fn header_round_trips_for_every_command() {
        for command in [
            Command::Syn,
            Command::Fin,
            Command::Psh,
            Command::Nop,
            Command::Ping,
            Command::Pong,
        ] {
            let header = Header {
                command,
                body_len: 513,
                stream_id: 0xdead_beef,
            };
            let mut out = BytesMut::new();
            header.encode(&mut out);
            assert_eq!(out.len(), HEADER_LEN);
            assert_eq!(Header::decode(out[..].try_into().unwrap()), Ok(header));
        }
    }

    #[test]
    fn header_layout_is_little_endian() {
        let mut out = BytesMut::new();
        encode_frame(&mut out, Command::Psh, 0x0403_0201, b"xy");
        assert_eq!(&out[..], &[1, 2, 2, 0, 1, 2, 3, 4, b'x', b'y']);
    }

    #[test]
    fn bad_version_is_rejected() {
        let err = Header::decode(&header_bytes(2, 0, 0, 1)).unwrap_err();
        assert!(err.to_string().contains("bad version byte 2"), "{err}");
    }

    #[test]
    fn a_version_byte_from_another_protocol_says_which() {
        let cases: [(&[u8; 8], &str); 5] = [
            (
                &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01],
                "TLS handshake",
            ),
            (&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28, 0], "TLS alert"),
            (b"HTTP/1.1", "HTTP response"),
            (b"GET / HT", "HTTP request"),
            (b"SSH-2.0-", "SSH"),
        ];
        for (bytes, hint) in cases {
            let err = Header::decode(bytes).unwrap_err();
            assert!(err.to_string().contains(hint), "{err}");
        }
        let err = Header::decode(&header_bytes(2, 0, 0, 1)).unwrap_err();
        assert!(!err.to_string().contains("looks like"), "{err}");
        // A TLS alert is shorter than a header: the hint works on what arrived.
        let alert = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x46];
        assert!(foreign_protocol_hint(&alert).contains("TLS alert"));
        assert_eq!(foreign_protocol_hint(&[1, 2, 0]), "");
    }

    #[test]
    fn unknown_command_is_rejected_by_value() {
        let err = Header::decode(&header_bytes(1, 0x05, 0, 1)).unwrap_err();
        assert!(err.to_string().contains("unknown command 0x05"), "{err}");
    }

    #[test]
    fn more_with_wrong_body_length_is_rejected() {
        for len in [0u16, 1, 3, 65535] {
            let err = Header::decode(&header_bytes(1, 0x04, len, 7)).unwrap_err();
            assert!(err.to_string().contains("MORE frame"), "{err}");
        }
        assert!(Header::decode(&header_bytes(1, 0x04, 2, 7)).is_ok());
    }

    #[test]
    fn iter_yields_complete_frames_and_keeps_partial_tail() {
        let mut buf = BytesMut::new();
        encode_frame(&mut buf, Command::Syn, 1, b"meta");
        encode_frame(&mut buf, Command::Psh, 1, b"hello");
        let full = buf.len();
        encode_frame(&mut buf, Command::Psh, 1, b"partial");
        let bytes = &buf[..buf.len() - 3];
        let mut iter = FrameIter::new(bytes);
        let (h, body) = iter.next_frame().unwrap().unwrap();
        assert_eq!(
            (h.command, h.stream_id, body),
            (Command::Syn, 1, &b"meta"[..])
        );
        let (h, body) = iter.next_frame().unwrap().unwrap();
        assert_eq!((h.command, body), (Command::Psh, &b"hello"[..]));
        assert_eq!(iter.next_frame().unwrap(), None);
        assert_eq!(iter.consumed(), full);
    }

    #[test]
    fn iter_reports_bad_header_before_its_body_arrives() {
        let bytes = header_bytes(1, 0x77, 60000, 3);
        let err = FrameIter::new(&bytes).next_frame().unwrap_err();
        assert!(err.to_string().contains("0x77"));
    }

    #[test]
    fn every_split_point_decodes_the_same_frames() {
        let mut buf = BytesMut::new();
        encode_frame(&mut buf, Command::Syn, 9, &[7; 300]);
        encode_frame(&mut buf, Command::More, 9, &5u16.to_le_bytes());
        encode_frame(&mut buf, Command::Pong, 0, b"");
        for split in 0..=buf.len() {
            let mut seen = Vec::new();
            let mut pending = buf[..split].to_vec();
            for chunk in [&buf[split..], &[][..]] {
                let mut iter = FrameIter::new(&pending);
                while let Some((h, body)) = iter.next_frame().unwrap() {
                    seen.push((h.command, body.len()));
                }
                let used = iter.consumed();
                pending.drain(..used);
                pending.extend_from_slice(chunk);
            }
            let mut iter = FrameIter::new(&pending);
            while let Some((h, body)) = iter.next_frame().unwrap() {
                seen.push((h.command, body.len()));
            }
            assert_eq!(
                seen,
                vec![(Command::Syn, 300), (Command::More, 2), (Command::Pong, 0)],
                "split at {split}"
            );
        }
    }

    fn yamux(frame_type: FrameType, flags: Flags, stream_id: u32, length: u32) -> YamuxHeader {
        YamuxHeader {
            frame_type,
            flags,
            stream_id,
            length,
        }
    }

    #[test]
    fn yamux_frames_decode_at_every_split_point_and_only_data_has_a_body() {
        let frames = [
            (yamux(FrameType::WindowUpdate, Flags::SYN, 1, 65536), 0),
            (yamux(FrameType::Data, Flags::default(), 1, 300), 300),
            (yamux(FrameType::Ping, Flags::SYN, 0, 0xdead_beef), 0),
            (yamux(FrameType::Data, Flags::FIN, 1, 0), 0),
            (yamux(FrameType::GoAway, Flags::default(), 0, 0), 0),
        ];
        let mut buf = BytesMut::new();
        for (header, body_len) in frames {
            header.encode(&mut buf);
            buf.extend_from_slice(&vec![7; body_len]);
        }
        for split in 0..=buf.len() {
            let mut seen = Vec::new();
            let mut iter = FrameIter::with_framing(&buf[..split], YamuxFraming);
            while let Some((header, body)) = iter.next_frame().unwrap() {
                seen.push((header, body.len()));
            }
            let mut iter = FrameIter::with_framing(&buf[iter.consumed()..], YamuxFraming);
            while let Some((header, body)) = iter.next_frame().unwrap() {
                seen.push((header, body.len()));
            }
            assert_eq!(seen, frames, "split at {split}");
        }
    }

    #[test]
    fn a_bad_yamux_header_is_reported_before_its_body_arrives() {
        let bytes = yamux(FrameType::Data, Flags::SYN | Flags::ACK, 3, 1 << 30).to_bytes();
        let err = FrameIter::with_framing(&bytes, YamuxFraming)
            .next_frame()
            .unwrap_err();
        assert!(err.to_string().contains("SYN|ACK"), "{err}");
        // A valid header with a 4 GiB body waits for it, whatever the platform's usize.
        let bytes = yamux(FrameType::Data, Flags::SYN, 3, u32::MAX).to_bytes();
        let mut iter = FrameIter::with_framing(&bytes, YamuxFraming);
        assert_eq!(iter.next_frame(), Ok(None));
        assert_eq!(iter.consumed(), 0);
    }

    #[test]
    fn the_8_byte_layout_refuses_yamux() {
        let err = Header::decode_as(&header_bytes(0, 0, 0, 1), Protocol::Yamux).unwrap_err();
        assert!(err.to_string().contains("12-byte header"), "{err}");
        let err = FrameIter::for_protocol(&header_bytes(1, 2, 0, 1), Protocol::Yamux)
            .next_frame()
            .unwrap_err();
        assert!(err.to_string().contains("YamuxFraming"), "{err}");
    }

    #[test]
    fn signals_round_trip_in_nop_bodies_and_other_nop_bodies_carry_none() {
        for signal in [
            Signal::StopSending,
            Signal::GoAway,
            Signal::Bye,
            Signal::MoreStreams(0x0102_0304),
        ] {
            let mut out = BytesMut::new();
            signal.encode_frame(&mut out, 7);
            let (header, body) = FrameIter::new(&out).next_frame().unwrap().unwrap();
            assert_eq!((header.command, header.stream_id), (Command::Nop, 7));
            assert_eq!(Signal::decode(body), Some(signal));
        }
        for body in [
            &b""[..],
            b"\x00",
            b"\x05",
            b"\x01\x01",
            b"\x02\x00",
            b"\x04\x01\x02\x03",
        ] {
            assert_eq!(Signal::decode(body), None, "{body:?}");
        }
    }

    #[test]
    fn ping_body_round_trips_and_marks_smolmux() {
        for smolmux in [false, true] {
            let info = PingInfo {
                next_ping_in_ms: 1_800_000,
                smolmux,
            };
            let mut out = BytesMut::new();
            info.encode_frame(&mut out);
            assert_eq!(PingInfo::decode(&out[HEADER_LEN..]), Ok(info));
        }
    }

    #[test]
    fn picomux_ping_body_parses_and_unknown_fields_are_ignored() {
        let info = PingInfo::decode(br#"{"next_ping_in_ms":1800000}"#).unwrap();
        assert_eq!(info.next_ping_in_ms, 1_800_000);
        assert!(!info.smolmux);
        let info =
            PingInfo::decode(br#" { "x": [1, {"y": null}], "next_ping_in_ms": 5 } "#).unwrap();
        assert_eq!(info.next_ping_in_ms, 5);
    }

    #[test]
    fn malformed_ping_bodies_are_rejected() {
        let nested = "[".repeat(10_000);
        let spaces = " ".repeat(65_535);
        let cases: Vec<&[u8]> = vec![
            b"",
            b"not json",
            b"[1,2]",
            b"{}",
            br#"{"next_ping_in_ms":-1}"#,
            br#"{"next_ping_in_ms":4294967296}"#,
            br#"{"next_ping_in_ms":"5"}"#,
            nested.as_bytes(),
            spaces.as_bytes(),
            b"\xff\xfe",
        ];
        for body in cases {
            let err = PingInfo::decode(body).unwrap_err();
            assert!(err.to_string().contains("PING body"), "{err}");
        }
    }
}
