//! The seam between the one session state machine (`session/`) and the wire dialects: what
//! differs per protocol is decided here, once per session, and the session asks.
//!
//! | concern | picomux ([`picomux`]) | smux v1 / v2 ([`smux`]) |
//! |---|---|---|
//! | codec | version 1, MORE = 4 (2-byte body), PING/PONG | version 1 or 2 exactly, empty SYN/FIN/NOP, v2: UPD = 4 (8 bytes) |
//! | flow control ([`Flow`]) | frame credits, granted by MORE | v1: none; v2: bytes, by cumulative UPD |
//! | stream ids ([`StreamIds`]) | random start, random odd step | client odd, server even, counting up, never reused |
//! | liveness ([`Dialect::pings`]) | PING/PONG, RTT measured | NOP on stream 0; anything received counts |
//! | stream ends ([`Dialect::fin_half_closes`]) | FIN with a reason aborts; a picomux FIN ends both ways | FIN is only a half-close; abort = FIN and discard |
//!
//! Every dialect here has picomux's 8-byte header (`frame::HEADER_LEN`); a dialect with
//! another header (yamux's 12 big-endian bytes) adds its length here and to
//! [`decode_header`], and the reader asks for it per dialect.

pub(crate) mod picomux;
pub(crate) mod smux;

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

    pub(crate) fn flow(self) -> Flow {
        match self.protocol {
            Protocol::Picomux => Flow::FrameCredits,
            Protocol::SmuxV1 => Flow::SessionOnly,
            Protocol::SmuxV2 => Flow::ByteWindow,
        }
    }

    /// Whether liveness is PING/PONG (with a measured RTT) rather than smux's NOP.
    pub(crate) fn pings(self) -> bool {
        self.is_picomux()
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
            Protocol::SmuxV1 | Protocol::SmuxV2 => {
                StreamIds::Counting(smux::CountingIds::new(self.role))
            }
        }
    }

    /// Checks the id of a stream the peer opens.
    pub(crate) fn check_peer_id(self, id: u32) -> Result<(), ProtocolError> {
        match self.protocol {
            Protocol::Picomux => Ok(()), // picomux ids are random: any may come
            Protocol::SmuxV1 | Protocol::SmuxV2 => smux::check_peer_id(id, self.role),
        }
    }
}

/// Decodes and validates a frame header of `protocol`.
pub(crate) fn decode_header(bytes: &[u8; 8], protocol: Protocol) -> Result<Header, ProtocolError> {
    match protocol {
        Protocol::Picomux => picomux::decode_header(bytes),
        Protocol::SmuxV1 => smux::decode_header(bytes, 1),
        Protocol::SmuxV2 => smux::decode_header(bytes, 2),
    }
}

/// The version byte frames of `protocol` carry.
pub(crate) fn version_byte(protocol: Protocol) -> u8 {
    match protocol {
        Protocol::Picomux => VERSION,
        Protocol::SmuxV1 => 1,
        Protocol::SmuxV2 => 2,
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
