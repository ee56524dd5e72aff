//! The seam between the one session state machine (`session/`) and the wire dialects: what
//! differs per protocol is decided here, once per session, and the session asks.
//!
//! | concern | picomux ([`picomux`]) | smux v1 / v2 ([`smux`]) | yamux ([`yamux`]) |
//! |---|---|---|---|
//! | codec | version 1, MORE = 4 (2-byte body), PING/PONG | version 1 or 2 exactly, empty SYN/FIN/NOP, v2: UPD = 4 (8 bytes) | 12-byte big-endian header, version 0, types Data/WU/Ping/GoAway, flags SYN/ACK/FIN/RST |
//! | flow control ([`Flow`]) | frame credits, granted by MORE | v1: none; v2: bytes, by cumulative UPD | bytes, 256 KiB initial, grown by WU deltas |
//! | stream ids ([`StreamIds`]) | random start, random odd step | client odd, server even, counting up, never reused | as smux |
//! | liveness ([`Dialect::pings`]) | PING/PONG, RTT measured | NOP on stream 0; anything received counts | Ping SYN/ACK with an opaque value |
//! | stream ends ([`Dialect::fin_half_closes`]) | FIN with a reason aborts; a picomux FIN ends both ways | FIN is only a half-close; abort = FIN and discard | FIN half-closes, RST resets |
//!
//! yamux ([`yamux`]) has a 12-byte big-endian header with flags where the others have commands;
//! the session's yamux rules (flags to events, Window Update deltas, ACK, Ping values, GoAway
//! codes) are in `session/yamux.rs`.
//!
//! **Header layouts.** picomux and smux share the 8-byte layout (`frame::SmuxFraming`, decoded
//! by [`decode_header`]); yamux has its own (`frame::YamuxFraming`). The reader's decoder
//! (`FrameIter`, `ReadBuffer::next_frame`) is generic over `frame::Framing`, which gives the
//! header's length and the body's, so picomux's decoding is compiled for its layout alone.
//! The driver picks the reader's dispatch once per session: yamux headers are decoded alone
//! (`ReadBuffer::next_header`) and a Data body reaches the session in pieces
//! (`ReadBuffer::take_body`), since a Go peer's Data frame is as long as the window it was
//! granted (megabytes), longer than a read segment.

pub(crate) mod picomux;
pub(crate) mod smux;
pub(crate) mod yamux;

use crate::config::{Config, Protocol, Role};
use crate::frame::{Header, ProtocolError, VERSION};

/// The dialect a session speaks, resolved from its [`Config`] (a smux role is known: the
/// config was validated).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Dialect {
    pub(crate) protocol: Protocol,
    /// Unused by picomux.
    role: Role,
}

/// How a dialect's receiver limits what each stream's sender may send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flow {
    /// picomux: each PSH costs one credit; the receiver grants more with MORE.
    FrameCredits,
    /// smux v2: bytes; the receiver reports what it has read with UPD.
    ByteWindow,
    /// smux v1: nothing per stream; the receiver stops reading the connection while its
    /// session budget is full.
    SessionOnly,
}

impl Dialect {
    pub(crate) fn new(config: &Config) -> Dialect {
        Dialect {
            protocol: config.protocol,
            role: config.role.unwrap_or(Role::Client),
        }
    }

    pub(crate) fn is_picomux(self) -> bool {
        self.protocol == Protocol::Picomux
    }

    /// Whether frames are yamux's (the session's yamux rules are in `session/yamux.rs`).
    pub(crate) fn is_yamux(self) -> bool {
        self.protocol == Protocol::Yamux
    }

    pub(crate) fn flow(self) -> Flow {
        match self.protocol {
            Protocol::Picomux => Flow::FrameCredits,
            Protocol::SmuxV1 => Flow::SessionOnly,
            Protocol::SmuxV2 | Protocol::Yamux => Flow::ByteWindow,
        }
    }

    /// Whether liveness is a ping answered by a pong (with a measured RTT: picomux's PING/PONG,
    /// yamux's Ping SYN/ACK) rather than smux's NOP.
    pub(crate) fn pings(self) -> bool {
        self.is_picomux() || self.is_yamux()
    }

    /// Whether a FIN only ends its sender's direction (smux, and smolmux peers), rather than
    /// the whole stream (a picomux peer).
    pub(crate) fn fin_half_closes(self, peer_is_smolmux: bool) -> bool {
        !self.is_picomux() || peer_is_smolmux
    }

    /// Whether FIN may carry an abort reason and SYN metadata: picomux only; smux's are empty.
    pub(crate) fn has_bodies(self) -> bool {
        self.is_picomux()
    }

    /// The stream-id allocator of this dialect.
    pub(crate) fn stream_ids(self) -> StreamIds {
        match self.protocol {
            Protocol::Picomux => StreamIds::Random(picomux::RandomIds::new()),
            // yamux splits and counts ids as smux does: client odd from 1, server even from 2.
            Protocol::SmuxV1 | Protocol::SmuxV2 | Protocol::Yamux => {
                StreamIds::Counting(smux::CountingIds::new(self.role))
            }
        }
    }

    /// Checks the id of a stream the peer opens.
    pub(crate) fn check_peer_id(self, id: u32) -> Result<(), ProtocolError> {
        match self.protocol {
            Protocol::Picomux => Ok(()), // picomux ids are random: any may come
            Protocol::SmuxV1 | Protocol::SmuxV2 | Protocol::Yamux => {
                smux::check_peer_id(id, self.role)
            }
        }
    }
}

/// Decodes and validates an 8-byte frame header of `protocol`; yamux's headers are of another
/// layout, so `Protocol::Yamux` refuses them all.
pub(crate) fn decode_header(bytes: &[u8; 8], protocol: Protocol) -> Result<Header, ProtocolError> {
    match protocol {
        Protocol::Picomux => picomux::decode_header(bytes),
        Protocol::SmuxV1 => smux::decode_header(bytes, 1),
        Protocol::SmuxV2 => smux::decode_header(bytes, 2),
        Protocol::Yamux => Err(ProtocolError(
            "yamux frames have a 12-byte header, not the 8-byte one of picomux and smux \
             (decode them with frame::YamuxFraming)"
                .into(),
        )),
    }
}

/// The version byte 8-byte frames of `protocol` carry.
///
/// # Panics
///
/// For `Protocol::Yamux`, whose frames are not of that layout (`frame::YamuxHeader`).
pub(crate) fn version_byte(protocol: Protocol) -> u8 {
    match protocol {
        Protocol::Picomux => VERSION,
        Protocol::SmuxV1 => 1,
        Protocol::SmuxV2 => 2,
        Protocol::Yamux => panic!("yamux frames are encoded with frame::YamuxHeader"),
    }
}

/// Allocates the ids of the streams we open.
#[derive(Debug)]
pub(crate) enum StreamIds {
    Random(picomux::RandomIds),
    Counting(smux::CountingIds),
}

impl StreamIds {
    /// The next id (skipping those `in_use`), or `None` once the dialect's ids ran out.
    pub(crate) fn next(&mut self, in_use: impl Fn(u32) -> bool) -> Option<u32> {
        match self {
            StreamIds::Random(ids) => Some(ids.next(in_use)),
            // Counting ids are never reused, so none can be in use.
            StreamIds::Counting(ids) => ids.next(),
        }
    }
}
