//! The yamux dialect's codec (hashicorp/yamux and rust-yamux 0.13; `/work/shared/YAMUX.md` has
//! the sources): the 12-byte big-endian header and the rules a header must follow before its
//! body is read.
//!
//! `version u8 | type u8 | flags u16 | stream id u32 | length u32`, version 0. Only Data frames
//! have a body (`length` bytes); for a Window Update `length` is a window delta, for a Ping an
//! opaque value echoed back, for a GoAway an error code. Flags: SYN opens a stream (on its
//! first Data or Window Update), ACK accepts one, FIN half-closes, RST resets; a Ping carries
//! SYN (request) or ACK (reply).
//!
//! What this codec rejects, and why (YAMUX.md §10): a version other than 0 and a type above 3
//! are fatal in both implementations. Unknown flag bits are ignored, as both do. Flag
//! combinations neither implementation sends and whose meaning they disagree on are errors
//! rather than guesses: a Ping must be exactly a request or a reply (Go reads a Ping without
//! SYN as a reply, rust-yamux one without ACK as a request), a GoAway carries no flags, and no
//! frame both opens and accepts a stream. Data and Window Updates name a stream, never the
//! session's id 0 (Go would open a stream 0; rust-yamux rejects it). A GoAway's code is 0, 1
//! or 2. Everything else (a window overrun, a delta that overflows, a duplicate SYN, parity)
//! depends on the session's state and is checked there.

use std::fmt;

use bytes::{BufMut, BytesMut};

use crate::frame::{foreign_protocol_hint, ProtocolError};

/// Length of a yamux frame header in bytes.
pub const HEADER_LEN: usize = 12;
/// The only yamux protocol version.
pub const VERSION: u8 = 0;

/// A yamux frame type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameType {
    /// Stream data; `length` payload bytes follow the header.
    Data,
    /// Grows the receiver's send window by `length` bytes.
    WindowUpdate,
    /// A liveness probe (SYN) or its answer (ACK); `length` is an opaque value.
    Ping,
    /// The sender opens no more streams; `length` is a [`GoAwayCode`].
    GoAway,
}

impl FrameType {
    /// The type's byte on the wire.
    pub fn to_byte(self) -> u8 {
        match self {
            FrameType::Data => 0,
            FrameType::WindowUpdate => 1,
            FrameType::Ping => 2,
            FrameType::GoAway => 3,
        }
    }
}

/// The flags of a yamux header. Bits other than the four known ones are kept as received and
/// mean nothing.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct Flags(pub u16);

impl Flags {
    /// Opens a stream; on a Ping, a request.
    pub const SYN: Flags = Flags(1);
    /// Accepts a stream; on a Ping, the reply.
    pub const ACK: Flags = Flags(2);
    /// Ends the sender's direction of a stream.
    pub const FIN: Flags = Flags(4);
    /// Resets a stream: both directions end and what is buffered is dropped.
    pub const RST: Flags = Flags(8);

    /// Whether every flag of `other` is set.
    pub fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any flag of `other` is set.
    pub fn intersects(self, other: Flags) -> bool {
        self.0 & other.0 != 0
    }
}

impl std::ops::BitOr for Flags {
    type Output = Flags;

    fn bitor(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }
}

impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [
            (Flags::SYN, "SYN"),
            (Flags::ACK, "ACK"),
            (Flags::FIN, "FIN"),
            (Flags::RST, "RST"),
        ];
        let set: Vec<&str> = names
            .iter()
            .filter(|(flag, _)| self.contains(*flag))
            .map(|(_, name)| *name)
            .collect();
        let unknown = self.0 & !0xf;
        match (set.is_empty(), unknown) {
            (true, 0) => f.write_str("0"),
            (false, 0) => f.write_str(&set.join("|")),
            (true, _) => write!(f, "0x{unknown:04x}"),
            (false, _) => write!(f, "{}|0x{unknown:04x}", set.join("|")),
        }
    }
}

/// A GoAway's error code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GoAwayCode {
    /// 0: a normal end; the sender opens and accepts no new streams, existing ones go on.
    Normal,
    /// 1: the sender saw a protocol error.
    ProtocolError,
    /// 2: the sender failed internally.
    InternalError,
}

impl GoAwayCode {
    /// The code as a GoAway's `length` carries it.
    pub fn to_u32(self) -> u32 {
        match self {
            GoAwayCode::Normal => 0,
            GoAwayCode::ProtocolError => 1,
            GoAwayCode::InternalError => 2,
        }
    }

    fn from_u32(code: u32) -> Option<GoAwayCode> {
        match code {
            0 => Some(GoAwayCode::Normal),
            1 => Some(GoAwayCode::ProtocolError),
            2 => Some(GoAwayCode::InternalError),
            _ => None,
        }
    }
}

/// A decoded, validated yamux header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct YamuxHeader {
    /// What the frame does.
    pub frame_type: FrameType,
    /// SYN, ACK, FIN, RST (and any unknown bits, which mean nothing).
    pub flags: Flags,
    /// The stream the frame belongs to; 0 is the session (Ping and GoAway).
    pub stream_id: u32,
    /// Data: the body's length; Window Update: the delta; Ping: the opaque value; GoAway: the
    /// code.
    pub length: u32,
}

impl YamuxHeader {
    /// Decodes and validates a yamux header.
    pub fn decode(bytes: &[u8; HEADER_LEN]) -> Result<YamuxHeader, ProtocolError> {
        let word = |at: usize| {
            u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        if bytes[0] != VERSION {
            return Err(ProtocolError(format!(
                "bad yamux version byte {} (expected {VERSION}){}",
                bytes[0],
                version_hint(bytes)
            )));
        }
        let frame_type = match bytes[1] {
            0 => FrameType::Data,
            1 => FrameType::WindowUpdate,
            2 => FrameType::Ping,
            3 => FrameType::GoAway,
            other => {
                return Err(ProtocolError(format!(
                    "unknown yamux frame type 0x{other:02x}"
                )))
            }
        };
        let header = YamuxHeader {
            frame_type,
            flags: Flags(u16::from_be_bytes([bytes[2], bytes[3]])),
            stream_id: word(4),
            length: word(8),
        };
        header.check()?;
        Ok(header)
    }

    /// The checks that need only the header (see the module's docs).
    fn check(&self) -> Result<(), ProtocolError> {
        let flags = self.flags;
        let known = |flags: Flags| Flags(flags.0 & 0xf);
        let bad_flags = |rule: &str| {
            Err(ProtocolError(format!(
                "{:?} frame on stream {} with flags {flags:?}: {rule}",
                self.frame_type, self.stream_id
            )))
        };
        match self.frame_type {
            FrameType::Data | FrameType::WindowUpdate => {
                if self.stream_id == 0 {
                    return Err(ProtocolError(format!(
                        "{:?} frame on stream 0, which is the session's (Ping and GoAway only)",
                        self.frame_type
                    )));
                }
                if flags.contains(Flags::SYN | Flags::ACK) {
                    return bad_flags("a frame cannot both open (SYN) and accept (ACK) a stream");
                }
            }
            FrameType::Ping => {
                if known(flags) != Flags::SYN && known(flags) != Flags::ACK {
                    return bad_flags("a Ping is either a request (SYN) or a reply (ACK)");
                }
            }
            FrameType::GoAway => {
                if known(flags) != Flags::default() {
                    return bad_flags("a GoAway carries no flags");
                }
                if GoAwayCode::from_u32(self.length).is_none() {
                    return Err(ProtocolError(format!(
                        "GoAway with unknown code {} (0 normal, 1 protocol error, 2 internal error)",
                        self.length
                    )));
                }
            }
        }
        Ok(())
    }

    /// The GoAway code of a (validated) GoAway header; `None` for the other types.
    pub fn go_away_code(&self) -> Option<GoAwayCode> {
        match self.frame_type {
            FrameType::GoAway => GoAwayCode::from_u32(self.length),
            _ => None,
        }
    }

    /// Length of the body that follows the header: Data's `length`, 0 for the other types.
    pub fn body_len(&self) -> usize {
        match self.frame_type {
            FrameType::Data => self.length as usize,
            _ => 0,
        }
    }

    /// The header on the wire.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut bytes = [0; HEADER_LEN];
        bytes[0] = VERSION;
        bytes[1] = self.frame_type.to_byte();
        bytes[2..4].copy_from_slice(&self.flags.0.to_be_bytes());
        bytes[4..8].copy_from_slice(&self.stream_id.to_be_bytes());
        bytes[8..].copy_from_slice(&self.length.to_be_bytes());
        bytes
    }

    /// Appends the encoded header to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_slice(&self.to_bytes());
    }
}

/// Why a version byte is not 0, when the header looks like something known: the smux-layout
/// dialects' versions 1 and 2 (picomux, smux), or another protocol altogether.
fn version_hint(bytes: &[u8; HEADER_LEN]) -> String {
    match bytes[0] {
        1 | 2 => format!(
            ": version {} is picomux's or smux's; does the peer speak another dialect?",
            bytes[0]
        ),
        _ => foreign_protocol_hint(bytes).to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(frame_type: FrameType, flags: Flags, stream_id: u32, length: u32) -> YamuxHeader {
        YamuxHeader {
            frame_type,
            flags,
            stream_id,
            length,
        }
    }

    fn raw(version: u8, frame_type: u8, flags: u16, stream_id: u32, length: u32) -> [u8; 12] {
        let mut bytes = header(FrameType::Data, Flags(flags), stream_id, length).to_bytes();
        bytes[0] = version;
        bytes[1] = frame_type;
        bytes
    }

    fn error(bytes: [u8; 12]) -> String {
        YamuxHeader::decode(&bytes).unwrap_err().to_string()
    }

    #[test]
    fn the_layout_is_big_endian_as_in_the_spec() {
        let h = header(
            FrameType::WindowUpdate,
            Flags::SYN,
            0x0102_0304,
            0x0506_0708,
        );
        assert_eq!(h.to_bytes(), [0, 1, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8]);
        let mut out = BytesMut::new();
        h.encode(&mut out);
        assert_eq!(&out[..], &h.to_bytes());
    }

    #[test]
    fn every_valid_header_round_trips() {
        let stream_flags = [
            Flags::default(),
            Flags::SYN,
            Flags::ACK,
            Flags::FIN,
            Flags::RST,
            Flags::SYN | Flags::FIN,
            Flags::ACK | Flags::FIN,
            Flags::ACK | Flags::RST,
            Flags::FIN | Flags::RST,
        ];
        let mut cases = Vec::new();
        for flags in stream_flags {
            for frame_type in [FrameType::Data, FrameType::WindowUpdate] {
                for (id, length) in [(1, 0), (2, 16 << 20), (u32::MAX, u32::MAX)] {
                    cases.push(header(frame_type, flags, id, length));
                }
            }
        }
        for flags in [Flags::SYN, Flags::ACK] {
            for (id, opaque) in [(0, 0), (0, u32::MAX), (7, 12345)] {
                cases.push(header(FrameType::Ping, flags, id, opaque));
            }
        }
        for code in [
            GoAwayCode::Normal,
            GoAwayCode::ProtocolError,
            GoAwayCode::InternalError,
        ] {
            let h = header(FrameType::GoAway, Flags::default(), 0, code.to_u32());
            assert_eq!(h.go_away_code(), Some(code));
            cases.push(h);
        }
        for h in cases {
            assert_eq!(YamuxHeader::decode(&h.to_bytes()), Ok(h), "{h:?}");
        }
    }

    #[test]
    fn only_data_frames_have_a_body() {
        assert_eq!(
            header(FrameType::Data, Flags::SYN, 1, 70_000).body_len(),
            70_000
        );
        for frame_type in [FrameType::WindowUpdate, FrameType::Ping] {
            assert_eq!(header(frame_type, Flags::SYN, 1, 70_000).body_len(), 0);
        }
        assert_eq!(
            header(FrameType::GoAway, Flags::default(), 0, 2).body_len(),
            0
        );
        assert_eq!(
            header(FrameType::Ping, Flags::ACK, 0, 9).go_away_code(),
            None
        );
    }

    #[test]
    fn unknown_flag_bits_are_kept_and_ignored() {
        // Go ignored 0x8010 on the wire; so do we, on every type.
        let h = YamuxHeader::decode(&raw(0, 0, 0x8010 | 1, 3, 5)).unwrap();
        assert_eq!(h.flags, Flags(0x8011));
        assert!(h.flags.contains(Flags::SYN) && !h.flags.intersects(Flags::ACK | Flags::FIN));
        assert!(YamuxHeader::decode(&raw(0, 2, 0x8010 | 2, 0, 5)).is_ok());
        assert!(YamuxHeader::decode(&raw(0, 3, 0x8010, 0, 0)).is_ok());
        assert_eq!(format!("{:?}", Flags(0x8011)), "SYN|0x8010");
        assert_eq!(format!("{:?}", Flags(0x8010)), "0x8010");
        assert_eq!(format!("{:?}", Flags::ACK | Flags::RST), "ACK|RST");
        assert_eq!(format!("{:?}", Flags::default()), "0");
    }

    #[test]
    fn a_version_other_than_0_is_rejected_and_explained() {
        let err = error(raw(1, 0, 0, 1, 0));
        assert!(
            err.contains("bad yamux version byte 1 (expected 0)"),
            "{err}"
        );
        assert!(err.contains("picomux's or smux's"), "{err}");
        let err = error(raw(2, 4, 0, 1, 0));
        assert!(
            err.contains("version byte 2") && err.contains("smux"),
            "{err}"
        );
        let err = error(*b"GET / HTTP/1");
        assert!(err.contains("HTTP request"), "{err}");
        let err = error(raw(0x7f, 0, 0, 1, 0));
        assert!(
            err.contains("byte 127") && !err.contains("looks like"),
            "{err}"
        );
    }

    #[test]
    fn unknown_types_are_rejected_by_value() {
        for byte in [4, 5, 0x80, 0xff] {
            let err = error(raw(0, byte, 0, 1, 0));
            assert!(
                err.contains(&format!("unknown yamux frame type 0x{byte:02x}")),
                "{err}"
            );
        }
    }

    #[test]
    fn data_and_window_updates_on_stream_0_are_rejected() {
        for byte in [0, 1] {
            let err = error(raw(0, byte, 1, 0, 0));
            assert!(err.contains("on stream 0, which is the session's"), "{err}");
        }
    }

    #[test]
    fn a_frame_that_both_opens_and_accepts_is_rejected() {
        for byte in [0, 1] {
            let err = error(raw(0, byte, 1 | 2, 5, 0));
            assert!(
                err.contains("flags SYN|ACK") && err.contains("both open"),
                "{err}"
            );
        }
    }

    #[test]
    fn a_ping_is_exactly_a_request_or_a_reply() {
        for flags in [0, 1 | 2, 4, 8, 1 | 4, 2 | 8] {
            let err = error(raw(0, 2, flags, 0, 7));
            assert!(
                err.contains("either a request (SYN) or a reply (ACK)"),
                "{err}"
            );
        }
    }

    #[test]
    fn a_go_away_has_no_flags_and_a_known_code() {
        for flags in [1, 2, 4, 8] {
            let err = error(raw(0, 3, flags, 0, 0));
            assert!(err.contains("a GoAway carries no flags"), "{err}");
        }
        for code in [3, 0x100, u32::MAX] {
            let err = error(raw(0, 3, 0, 0, code));
            assert!(err.contains(&format!("unknown code {code}")), "{err}");
        }
    }
}
