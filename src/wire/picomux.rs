//! The picomux 0.1 dialect: its header rules (version 1, never checked by picomux itself but
//! checked by us; MORE has a 2-byte body) and its random stream ids.
//!
//! The rest of picomux's behaviour (frame credits granted by MORE, PING/PONG with a JSON body,
//! a FIN that may carry an abort reason, smolmux's extensions in NOP bodies) is the session's
//! default, in `session/`.

use crate::frame::{foreign_protocol_hint, Command, Header, ProtocolError, VERSION};

/// Decodes and validates a picomux header.
pub(super) fn decode_header(bytes: &[u8; 8]) -> Result<Header, ProtocolError> {
    if bytes[0] != VERSION {
        return Err(ProtocolError(format!(
            "bad version byte {} (expected {VERSION}){}",
            bytes[0],
            foreign_protocol_hint(bytes)
        )));
    }
    let command = match bytes[1] {
        0x00 => Command::Syn,
        0x01 => Command::Fin,
        0x02 => Command::Psh,
        0x03 => Command::Nop,
        0x04 => Command::More,
        0xa0 => Command::Ping,
        0xa1 => Command::Pong,
        other => return Err(ProtocolError(format!("unknown command 0x{other:02x}"))),
    };
    let header = Header::from_fields(command, bytes);
    if command == Command::More && header.body_len != 2 {
        return Err(ProtocolError(format!(
            "MORE frame on stream {} has a {}-byte body (must be 2)",
            header.stream_id, header.body_len
        )));
    }
    Ok(header)
}

/// Stream ids as picomux picks them: a random start walked by a random odd step, which visits
/// all 2^32 ids before repeating one (ids still in use are skipped).
#[derive(Debug)]
pub(crate) struct RandomIds {
    next: u32,
    step: u32,
}

impl RandomIds {
    pub(super) fn new() -> Self {
        RandomIds {
            next: fastrand::u32(..),
            step: fastrand::u32(..) | 1,
        }
    }

    pub(super) fn next(&mut self, in_use: impl Fn(u32) -> bool) -> u32 {
        loop {
            let id = self.next;
            self.next = self.next.wrapping_add(self.step);
            if !in_use(id) {
                return id;
            }
        }
    }
}
