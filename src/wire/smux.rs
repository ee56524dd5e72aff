//! The Go xtaci/smux dialects, versions 1 and 2 (`/work/shared/SMUX.md` has the sources): the
//! header rules, the UPD body of version 2's byte windows, and the role-split stream ids.
//!
//! On the wire smux is picomux's 8-byte header with stricter rules: the version byte is exactly
//! the configured one, SYN, FIN and NOP carry no body, version 2 adds UPD (command 4, an 8-byte
//! body), and there is no MORE, PING or PONG.

use crate::config::Role;
use crate::frame::{foreign_protocol_hint, Command, Header, ProtocolError};

/// The window a version-2 sender assumes before the receiver's first UPD (Go's
/// `initialPeerWindow`): what a peer may send on a new stream before hearing from us.
pub(crate) const INITIAL_PEER_WINDOW: u32 = 262_144;

/// Length of a UPD body.
pub(crate) const UPD_LEN: usize = 8;

/// Decodes and validates a header of smux version `version` (1 or 2).
pub(super) fn decode_header(bytes: &[u8; 8], version: u8) -> Result<Header, ProtocolError> {
    if bytes[0] != version {
        let hint = match bytes[0] {
            1 | 2 => format!(
                ": the peer speaks smux version {} and this session version {version}; \
                 both ends must configure the same version",
                bytes[0]
            ),
            _ => foreign_protocol_hint(bytes).to_owned(),
        };
        return Err(ProtocolError(format!(
            "bad version byte {} (expected {version}){hint}",
            bytes[0]
        )));
    }
    let command = match bytes[1] {
        0 => Command::Syn,
        1 => Command::Fin,
        2 => Command::Psh,
        3 => Command::Nop,
        4 if version >= 2 => Command::Upd,
        other => {
            return Err(ProtocolError(format!(
                "unknown command 0x{other:02x} for smux version {version}"
            )))
        }
    };
    let header = Header::from_fields(command, bytes);
    let required = match command {
        Command::Syn | Command::Fin | Command::Nop => Some(0),
        Command::Upd => Some(UPD_LEN as u16),
        _ => None,
    };
    if let Some(required) = required.filter(|&len| len != header.body_len) {
        return Err(ProtocolError(format!(
            "{:?} frame on stream {} has a {}-byte body (must be {required} in smux)",
            command, header.stream_id, header.body_len
        )));
    }
    Ok(header)
}

/// A UPD body: the receiver's cumulative count of bytes read (mod 2^32) and its window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Upd {
    /// Bytes of the stream the receiver's application has read so far, mod 2^32.
    pub consumed: u32,
    /// Most bytes the receiver lets be in flight (sent and not yet read).
    pub window: u32,
}

impl Upd {
    /// Parses a UPD body: `None` unless it is exactly 8 bytes.
    pub fn decode(body: &[u8]) -> Option<Upd> {
        let body: &[u8; UPD_LEN] = body.try_into().ok()?;
        let [c0, c1, c2, c3, w0, w1, w2, w3] = *body;
        Some(Upd {
            consumed: u32::from_le_bytes([c0, c1, c2, c3]),
            window: u32::from_le_bytes([w0, w1, w2, w3]),
        })
    }

    /// The body on the wire.
    pub fn to_bytes(self) -> [u8; UPD_LEN] {
        let mut body = [0; UPD_LEN];
        body[..4].copy_from_slice(&self.consumed.to_le_bytes());
        body[4..].copy_from_slice(&self.window.to_le_bytes());
        body
    }
}

/// How many bytes a version-2 sender may still send after the peer's UPD `upd`, having sent
/// `sent` bytes in all (mod 2^32) and heard `previous` as the peer's consumed count before.
/// A consumed count behind the previous one, or ahead of what was sent, is a protocol error
/// (Go's `ErrConsumed`).
pub(crate) fn send_allowance(
    id: u32,
    sent: u32,
    previous: u32,
    upd: Upd,
) -> Result<u32, ProtocolError> {
    let advance = upd.consumed.wrapping_sub(previous) as i32;
    let inflight = sent.wrapping_sub(upd.consumed) as i32;
    if advance < 0 {
        return Err(ProtocolError(format!(
            "UPD on stream {id}: consumed count went backwards ({} after {previous})",
            upd.consumed
        )));
    }
    if inflight < 0 {
        return Err(ProtocolError(format!(
            "UPD on stream {id}: {} bytes consumed but only {sent} sent (mod 2^32)",
            upd.consumed
        )));
    }
    Ok(upd.window.saturating_sub(inflight as u32))
}

/// Stream ids as smux assigns them: the client's odd, the server's even, counting up by two
/// and never reused; once they run out, no more streams can be opened in the session.
#[derive(Debug)]
pub(crate) struct CountingIds {
    next: Option<u32>,
}

impl CountingIds {
    pub(super) fn new(role: Role) -> Self {
        // Id 0 is the session's (NOP); Go's own first ids are 3 (client) and 2 (server).
        let first = match role {
            Role::Client => 1,
            Role::Server => 2,
        };
        CountingIds { next: Some(first) }
    }

    pub(super) fn next(&mut self) -> Option<u32> {
        let id = self.next?;
        self.next = id.checked_add(2);
        Some(id)
    }
}

/// Checks the id of a stream the peer opens: not 0, and of the peer's parity (an id of ours
/// could collide with a stream we open).
pub(super) fn check_peer_id(id: u32, role: Role) -> Result<(), ProtocolError> {
    let peer_parity = match role {
        Role::Client => 0, // the server's ids are even
        Role::Server => 1,
    };
    if id == 0 || id % 2 != peer_parity {
        let whose = match role {
            Role::Client => "server, whose ids are even and not 0",
            Role::Server => "client, whose ids are odd",
        };
        return Err(ProtocolError(format!(
            "SYN for stream {id}: the peer is the smux {whose}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(version: u8, command: u8, body_len: u16, id: u32) -> [u8; 8] {
        let mut bytes = [version, command, 0, 0, 0, 0, 0, 0];
        bytes[2..4].copy_from_slice(&body_len.to_le_bytes());
        bytes[4..].copy_from_slice(&id.to_le_bytes());
        bytes
    }

    fn error(version: u8, bytes: [u8; 8]) -> String {
        decode_header(&bytes, version).unwrap_err().to_string()
    }

    #[test]
    fn commands_of_each_version() {
        for version in [1, 2] {
            for (byte, command) in [
                (0, Command::Syn),
                (1, Command::Fin),
                (2, Command::Psh),
                (3, Command::Nop),
            ] {
                let len = if command == Command::Psh { 100 } else { 0 };
                let h = decode_header(&header(version, byte, len, 7), version).unwrap();
                assert_eq!((h.command, h.body_len, h.stream_id), (command, len, 7));
            }
        }
        let upd = decode_header(&header(2, 4, 8, 9), 2).unwrap();
        assert_eq!(upd.command, Command::Upd);
    }

    #[test]
    fn a_version_mismatch_names_both_versions() {
        let err = error(1, header(2, 0, 0, 3));
        assert!(
            err.contains("smux version 2") && err.contains("version 1"),
            "{err}"
        );
        let err = error(2, header(1, 3, 0, 0));
        assert!(
            err.contains("smux version 1") && err.contains("version 2"),
            "{err}"
        );
        // Something else entirely gets the foreign-protocol hint.
        let err = error(1, *b"GET / HT");
        assert!(err.contains("HTTP"), "{err}");
    }

    #[test]
    fn commands_smux_does_not_have_are_errors() {
        // UPD in version 1, picomux's PING and PONG, and anything else.
        for (version, byte) in [(1, 4), (1, 0xa0), (2, 0xa0), (2, 0xa1), (2, 5), (1, 0xff)] {
            let err = error(version, header(version, byte, 0, 0));
            assert!(
                err.contains(&format!("unknown command 0x{byte:02x}")),
                "{err}"
            );
        }
    }

    #[test]
    fn syn_fin_and_nop_bodies_must_be_empty_and_upd_eight_bytes() {
        for version in [1, 2] {
            for byte in [0, 1, 3] {
                let err = error(version, header(version, byte, 1, 5));
                assert!(err.contains("1-byte body (must be 0"), "{err}");
            }
            // An empty PSH is fine (the session skips it).
            assert!(decode_header(&header(version, 2, 0, 5), version).is_ok());
        }
        for len in [0, 2, 7, 9, 65535] {
            let err = error(2, header(2, 4, len, 5));
            assert!(err.contains("(must be 8"), "{err}");
        }
    }

    #[test]
    fn upd_body_round_trips_little_endian() {
        let upd = Upd {
            consumed: 0x0403_0201,
            window: 0x0807_0605,
        };
        assert_eq!(upd.to_bytes(), [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(Upd::decode(&upd.to_bytes()), Some(upd));
        assert_eq!(Upd::decode(&upd.to_bytes()[..7]), None);
    }

    #[test]
    fn send_allowance_is_the_window_less_what_is_in_flight() {
        let upd = |consumed, window| Upd { consumed, window };
        assert_eq!(send_allowance(1, 1000, 0, upd(400, 1000)), Ok(400));
        // Everything in flight, or more than the window (it shrank): nothing to send.
        assert_eq!(send_allowance(1, 1000, 0, upd(0, 1000)), Ok(0));
        assert_eq!(send_allowance(1, 1000, 0, upd(0, 10)), Ok(0));
        // The counts wrap at 2^32.
        let before = u32::MAX - 99;
        assert_eq!(send_allowance(1, 100, before, upd(u32::MAX, 500)), Ok(399));
        // A window as large as the field holds is taken as it is.
        assert_eq!(send_allowance(1, 0, 0, upd(0, u32::MAX)), Ok(u32::MAX));
    }

    #[test]
    fn consumed_going_backwards_or_past_what_was_sent_is_an_error() {
        let upd = |consumed| Upd {
            consumed,
            window: 1 << 20,
        };
        let err = send_allowance(3, 1000, 500, upd(499)).unwrap_err().0;
        assert!(err.contains("went backwards"), "{err}");
        let err = send_allowance(3, 1000, 500, upd(1001)).unwrap_err().0;
        assert!(err.contains("only 1000 sent"), "{err}");
    }

    #[test]
    fn ids_count_up_by_role_and_run_out() {
        let mut client = CountingIds::new(Role::Client);
        let mut server = CountingIds::new(Role::Server);
        let client_ids: Vec<_> = (0..3).map(|_| client.next().unwrap()).collect();
        let server_ids: Vec<_> = (0..3).map(|_| server.next().unwrap()).collect();
        assert_eq!((client_ids, server_ids), (vec![1, 3, 5], vec![2, 4, 6]));
        let mut last = CountingIds {
            next: Some(u32::MAX - 2),
        };
        assert_eq!(last.next(), Some(u32::MAX - 2));
        assert_eq!(last.next(), Some(u32::MAX));
        assert_eq!(last.next(), None);
        assert_eq!(last.next(), None);
    }

    #[test]
    fn a_peer_must_open_streams_of_its_own_parity() {
        assert!(check_peer_id(2, Role::Client).is_ok());
        assert!(check_peer_id(3, Role::Server).is_ok());
        for (id, role) in [(3, Role::Client), (0, Role::Client), (2, Role::Server)] {
            let err = check_peer_id(id, role).unwrap_err().0;
            assert!(err.contains(&format!("SYN for stream {id}")), "{err}");
        }
    }
}
