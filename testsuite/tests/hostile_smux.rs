//! A raw TCP peer writes hand-built Go smux frames (`../shared/SMUX.md`) at a smolmux session in
//! `SmuxV1` or `SmuxV2` mode. Every protocol violation ends the session with `InvalidData` and
//! a message naming the problem, seen by the driver and by the operations that were pending;
//! what Go smux skips (a PSH with no body, a PSH for a stream nobody knows) the session skips
//! too and goes on; a SYN flood past `max_streams` is refused with FIN while memory stays
//! bounded.
//!
//! The frames are built here byte by byte, not with smolmux's codec, so that these tests say
//! what the wire is rather than what the codec thinks it is. Every frame the session sends back
//! is checked for the configured version byte. Waits are bounded by the hang guard only.

mod support;

use std::io::{self, ErrorKind};
use std::time::Duration;

use futures_lite::future::FutureExt as _;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use smol::net::TcpStream;
use smol::{Task, Timer};
use smolmux::{Config, Mux, Protocol, Role, Stats};
use support::{assert_err, assert_pending, eventually, run, spawn, tcp_pair};

// ----- the wire, by hand -----

const SYN: u8 = 0;
const FIN: u8 = 1;
const PSH: u8 = 2;
const NOP: u8 = 3;
const UPD: u8 = 4;
/// picomux's commands, none of which smux has: MORE shares UPD's number.
const MORE: u8 = 4;
const PING: u8 = 0xa0;
const PONG: u8 = 0xa1;

const HEADER_LEN: usize = 8;

/// Both smux versions, as the version byte.
const VERSIONS: [u8; 2] = [1, 2];

/// `ver u8 | cmd u8 | len u16 LE | sid u32 LE`, then the body.
fn frame(version: u8, command: u8, id: u32, body: &[u8]) -> Vec<u8> {
    let len = u16::try_from(body.len()).expect("a frame body fits in u16");
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.push(version);
    out.push(command);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// A version-2 UPD body: the cumulative bytes read (mod 2^32), then the window.
fn upd(version: u8, id: u32, consumed: u32, window: u32) -> Vec<u8> {
    let mut body = consumed.to_le_bytes().to_vec();
    body.extend_from_slice(&window.to_le_bytes());
    frame(version, UPD, id, &body)
}

fn protocol(version: u8) -> Protocol {
    match version {
        1 => Protocol::SmuxV1,
        2 => Protocol::SmuxV2,
        _ => unreachable!("smux has versions 1 and 2"),
    }
}

/// The session's settings: smux `version` in `role`, and no keepalive, so that a mock that
/// sends nothing for a while is not timed out.
fn config(version: u8, role: Role) -> Config {
    Config::default()
        .protocol(protocol(version))
        .role(role)
        .ping_interval(None)
}

/// The first ids a peer of the session in `role` opens streams with (the peer has the other
/// role: a client's ids are odd, a server's even).
fn peer_ids(role: Role) -> [u32; 3] {
    match role {
        Role::Server => [1, 3, 5],
        Role::Client => [2, 4, 6],
    }
}

/// The first id the session itself opens a stream with, in `role`.
fn own_first_id(role: Role) -> u32 {
    match role {
        Role::Client => 1,
        Role::Server => 2,
    }
}

// ----- the mock peer -----

/// A frame the session sent.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Frame {
    command: u8,
    id: u32,
    body: Vec<u8>,
}

impl Frame {
    /// Keepalive and window updates: upkeep that tests of other frames skip.
    fn is_upkeep(&self) -> bool {
        (self.command == NOP && self.id == 0) || self.command == UPD
    }
}

/// Reads the session's frames from a socket, checking each one's version byte.
struct FrameReader {
    tcp: TcpStream,
    version: u8,
    buf: Vec<u8>,
    /// Every UPD read so far: stream id, consumed, window.
    upds: Vec<(u32, u32, u32)>,
}

impl FrameReader {
    /// The next frame, `None` at EOF (or a reset) on a frame boundary.
    async fn next(&mut self) -> Option<Frame> {
        loop {
            if self.buf.len() >= HEADER_LEN {
                let len = u16::from_le_bytes([self.buf[2], self.buf[3]]) as usize;
                if self.buf.len() >= HEADER_LEN + len {
                    assert_eq!(
                        self.buf[0],
                        self.version,
                        "the session sent a frame with the wrong version byte: {:?}",
                        &self.buf[..HEADER_LEN]
                    );
                    let frame = Frame {
                        command: self.buf[1],
                        id: u32::from_le_bytes(self.buf[4..8].try_into().unwrap()),
                        body: self.buf[HEADER_LEN..HEADER_LEN + len].to_vec(),
                    };
                    self.buf.drain(..HEADER_LEN + len);
                    if frame.command == UPD {
                        assert_eq!(frame.body.len(), 8, "{frame:?}");
                        let word = |at: usize| {
                            u32::from_le_bytes(frame.body[at..at + 4].try_into().unwrap())
                        };
                        self.upds.push((frame.id, word(0), word(4)));
                    }
                    return Some(frame);
                }
            }
            let mut chunk = [0u8; 16 << 10];
            match self.tcp.read(&mut chunk).await {
                Ok(0) | Err(_) if self.buf.is_empty() => return None,
                Ok(0) => panic!("EOF inside a frame: {:?}", self.buf),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return None,
                Err(e) => panic!("mock peer read: {e}"),
            }
        }
    }

    /// The next frame that is not upkeep; fails the test at EOF.
    async fn next_stream_frame(&mut self) -> Frame {
        loop {
            match self.next().await {
                Some(frame) if frame.is_upkeep() => {}
                Some(frame) => return frame,
                None => panic!("the session closed the connection while a frame was expected"),
            }
        }
    }

    /// Expects the next frame that is not upkeep to be `command` on stream `id`.
    async fn expect(&mut self, command: u8, id: u32) -> Frame {
        let frame = self.next_stream_frame().await;
        assert_eq!((frame.command, frame.id), (command, id), "{frame:?}");
        frame
    }

    /// Reads PSH frames of stream `id` until `len` bytes have come; returns them.
    async fn expect_data(&mut self, id: u32, len: usize) -> Vec<u8> {
        let mut data = Vec::with_capacity(len);
        while data.len() < len {
            let frame = self.expect(PSH, id).await;
            data.extend_from_slice(&frame.body);
        }
        assert_eq!(data.len(), len, "more data than was written");
        data
    }

    /// The first UPD for stream `id` reporting at least `consumed` bytes read (its consumed
    /// count and window), read already or waited for; only upkeep may come first.
    async fn expect_upd(&mut self, id: u32, consumed: u32) -> (u32, u32) {
        loop {
            let reaching = self.upds.iter().find(|u| u.0 == id && u.1 >= consumed);
            if let Some(&(_, consumed, window)) = reaching {
                return (consumed, window);
            }
            match self.next().await {
                Some(f) if f.is_upkeep() => {}
                Some(f) => panic!("expected a UPD for stream {id}, got {f:?}"),
                None => panic!("the session closed the connection while a UPD was expected"),
            }
        }
    }

    /// Reads until the session closes the connection; only upkeep may come first.
    async fn expect_eof(&mut self) {
        while let Some(frame) = self.next().await {
            assert!(frame.is_upkeep(), "expected EOF, got {frame:?}");
        }
    }
}

/// The raw end of the connection.
struct Mock {
    tcp: TcpStream,
    reader: FrameReader,
    version: u8,
}

impl Mock {
    async fn send(&mut self, bytes: &[u8]) {
        self.tcp.write_all(bytes).await.expect("mock peer write");
        self.tcp.flush().await.expect("mock peer flush");
    }

    /// A frame of this session's version.
    fn frame(&self, command: u8, id: u32, body: &[u8]) -> Vec<u8> {
        frame(self.version, command, id, body)
    }
}

/// A session speaking smux `version` in `role` (its driver spawned) and the mock peer.
async fn smux_pair(config: Config, version: u8) -> (Mux, Task<io::Result<()>>, Mock) {
    let (session_side, mock_side) = tcp_pair().await;
    let (mux, driver) = Mux::new(session_side.clone(), session_side, config);
    let mock = Mock {
        reader: FrameReader {
            tcp: mock_side.clone(),
            version,
            buf: Vec::new(),
            upds: Vec::new(),
        },
        tcp: mock_side,
        version,
    };
    (mux, spawn(driver), mock)
}

/// Every needle must be in the error's message (the first is checked with the kind).
#[track_caller]
fn assert_err_names<T: std::fmt::Debug>(result: io::Result<T>, needles: &[&str]) {
    let err = assert_err(result, ErrorKind::InvalidData, needles[0]);
    for needle in &needles[1..] {
        assert!(
            err.to_string().contains(needle),
            "error {err:?} should mention {needle:?}"
        );
    }
}

/// The mock (the peer of a session in `role`) opens two streams; the session accepts both and
/// leaves a read pending on the first, and an accept pending. Then the mock sends `bad`. The
/// driver, the pending read, the pending accept and a later open all fail with `InvalidData`
/// and a message containing every one of `needles`; the session hangs up.
async fn violation(version: u8, role: Role, bad: Vec<u8>, needles: &[&str]) {
    let (mux, driver, mut mock) = smux_pair(config(version, role), version).await;
    let [victim_id, idle_id, _] = peer_ids(role);
    let opens = [
        mock.frame(SYN, victim_id, b""),
        mock.frame(SYN, idle_id, b""),
    ];
    mock.send(&opens.concat()).await;
    let mut victim = mux.accept().await.unwrap();
    let idle = mux.accept().await.unwrap();
    assert_eq!((victim.id(), idle.id()), (victim_id, idle_id));

    let mut read = Box::pin(async move {
        let mut buf = [0u8; 64];
        victim.read(&mut buf).await
    });
    assert_pending(&mut read, "read").await;
    let mut accept = Box::pin(mux.accept());
    assert_pending(&mut accept, "accept").await;

    mock.send(&bad).await;

    assert_err_names(driver.await, needles);
    assert_err_names(read.await, needles);
    assert_err_names(accept.await, needles);
    assert!(!mux.is_alive());
    assert_err_names(mux.open(b"").await, needles);
    mock.reader.expect_eof().await;
    drop(idle);
}

/// The session (in `role`) has opened a stream and written `SENT` bytes on it, which the mock
/// has read; a read is pending on it. Then the mock sends `bad`, about that stream (whose id is
/// passed in); everything fails as in [`violation`].
async fn violation_on_own_stream(role: Role, bad: impl FnOnce(u32) -> Vec<u8>, needles: &[&str]) {
    const VERSION: u8 = 2;
    let (mux, driver, mut mock) = smux_pair(config(VERSION, role), VERSION).await;
    let mut stream = mux.open(b"").await.unwrap();
    let id = stream.id();
    assert_eq!(id, own_first_id(role));
    stream.write_all(&[7; SENT as usize]).await.unwrap();
    stream.flush().await.unwrap();
    mock.reader.expect(SYN, id).await;
    assert_eq!(
        mock.reader.expect_data(id, SENT as usize).await,
        [7; SENT as usize]
    );

    let mut read = Box::pin(async move {
        let mut buf = [0u8; 64];
        stream.read(&mut buf).await
    });
    assert_pending(&mut read, "read").await;

    mock.send(&bad(id)).await;

    assert_err_names(driver.await, needles);
    assert_err_names(read.await, needles);
    assert!(!mux.is_alive());
    assert_err_names(mux.open(b"").await, needles);
    mock.reader.expect_eof().await;
}

/// What [`violation_on_own_stream`] writes before the bad frame.
const SENT: u32 = 100;

/// A session that has swallowed something must still carry a fresh stream both ways: the mock
/// opens stream `id`, sends "ping" and its FIN, and reads "pong" and the session's FIN back.
async fn still_works(mux: &Mux, mock: &mut Mock, id: u32) {
    let frames = [
        mock.frame(SYN, id, b""),
        mock.frame(PSH, id, b"ping"),
        mock.frame(FIN, id, b""),
    ];
    mock.send(&frames.concat()).await;
    let mut stream = mux.accept().await.unwrap();
    assert_eq!(stream.id(), id);
    let mut got = Vec::new();
    stream.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"ping");
    stream.write_all(b"pong").await.unwrap();
    stream.close().await.unwrap();
    assert_eq!(mock.reader.expect_data(id, 4).await, b"pong");
    mock.reader.expect(FIN, id).await;
    assert!(mux.is_alive());
}

// ----- the header -----

#[test]
fn a_wrong_version_byte_is_a_protocol_error_naming_both_versions() {
    for version in VERSIONS {
        let other = 3 - version;
        run(async move {
            violation(
                version,
                Role::Server,
                frame(other, PSH, 1, b"x"),
                &[
                    &format!("version byte {other}"),
                    &format!("expected {version}"),
                ],
            )
            .await;
        });
    }
}

#[test]
fn a_version_byte_of_neither_smux_version_is_a_protocol_error() {
    for version in VERSIONS {
        run(async move {
            violation(
                version,
                Role::Client,
                frame(0xff, SYN, 8, b""),
                &["version byte 255", &format!("expected {version}")],
            )
            .await;
        });
    }
}

#[test]
fn a_syn_with_a_body_is_a_protocol_error() {
    // picomux's SYN carries metadata; smux's must be empty.
    for version in VERSIONS {
        run(async move {
            violation(
                version,
                Role::Server,
                frame(version, SYN, 5, b"meta"),
                &["stream 5", "4-byte body"],
            )
            .await;
        });
    }
}

#[test]
fn a_fin_with_a_body_is_a_protocol_error() {
    // picomux's abort is a FIN with a reason; smux has no such thing.
    for version in VERSIONS {
        run(async move {
            violation(
                version,
                Role::Server,
                frame(version, FIN, 1, b"reset"),
                &["stream 1", "5-byte body"],
            )
            .await;
        });
    }
}

// ----- picomux's commands -----

#[test]
fn ping_and_pong_are_not_smux_commands() {
    for version in VERSIONS {
        for (command, body, name) in [
            (PING, &br#"{"next_ping_in_ms":1000}"#[..], "0xa0"),
            (PONG, &b""[..], "0xa1"),
        ] {
            run(async move {
                violation(
                    version,
                    Role::Server,
                    frame(version, command, 0, body),
                    &[&format!("unknown command {name}")],
                )
                .await;
            });
        }
    }
}

#[test]
fn command_4_is_unknown_in_version_1() {
    // picomux's MORE (a 2-byte body) and version 2's UPD (8 bytes) alike.
    for body in [&5u16.to_le_bytes()[..], &[0u8; 8][..]] {
        run(async move {
            violation(
                1,
                Role::Server,
                frame(1, MORE, 1, body),
                &["unknown command 0x04"],
            )
            .await;
        });
    }
}

#[test]
fn picomux_more_is_a_short_upd_in_version_2() {
    run(async {
        violation(
            2,
            Role::Server,
            frame(2, MORE, 1, &5u16.to_le_bytes()),
            &["stream 1", "2-byte body"],
        )
        .await;
    });
}

// ----- UPD (version 2) -----

#[test]
fn upd_consuming_more_than_was_sent_is_a_protocol_error() {
    run(async {
        violation_on_own_stream(
            Role::Server,
            |id| upd(2, id, SENT + 1, 65_536),
            &["UPD on stream 2", &format!("{} bytes consumed", SENT + 1)],
        )
        .await;
    });
}

#[test]
fn upd_consuming_half_the_counter_space_ahead_is_a_protocol_error() {
    // Modular arithmetic must not read "2^31 ahead" as "far behind, so fine".
    run(async {
        violation_on_own_stream(
            Role::Client,
            |id| upd(2, id, SENT.wrapping_add(1 << 31), 65_536),
            &["UPD on stream 1", "consumed"],
        )
        .await;
    });
}

#[test]
fn upd_consumed_going_backwards_is_a_protocol_error() {
    run(async {
        violation_on_own_stream(
            Role::Server,
            |id| [upd(2, id, SENT, 65_536), upd(2, id, SENT / 2, 65_536)].concat(),
            &["UPD on stream 2", "backwards"],
        )
        .await;
    });
}

#[test]
fn upd_granting_the_whole_u32_window_is_taken_without_overflow() {
    // A window of u32::MAX is legal, if odd (Go's own sender reads it as a negative i32 and
    // stops). The session must not overflow on it, must go on sending exactly what the
    // application wrote, and must not buffer beyond its own send buffer.
    const BYTES: usize = 600 << 10; // past the 256 KiB a sender assumes before the first UPD
    run(async {
        let session_config = config(2, Role::Client).stream_send_buffer(64 << 10);
        let send_limit = session_config.stream_send_buffer;
        let (mux, driver, mut mock) = smux_pair(session_config, 2).await;
        let mut stream = mux.open(b"").await.unwrap();
        let id = stream.id();
        let data: Vec<u8> = (0..BYTES).map(|i| (i * 31 + 7) as u8).collect();
        let writer = spawn({
            let data = data.clone();
            async move {
                stream.write_all(&data).await?;
                stream.close().await?;
                io::Result::Ok(stream)
            }
        });
        mock.reader.expect(SYN, id).await;
        mock.send(&upd(2, id, 0, u32::MAX)).await;
        let mut got = Vec::with_capacity(BYTES);
        while got.len() < BYTES {
            let frame = mock.reader.expect(PSH, id).await;
            got.extend_from_slice(&frame.body);
            let consumed = got.len() as u32;
            mock.send(&upd(2, id, consumed, u32::MAX)).await;
            let stats = mux.stats();
            assert!(stats.send_buffered_bytes <= send_limit, "{stats:?}");
        }
        assert!(got == data, "the bytes arrived changed");
        mock.reader.expect(FIN, id).await;
        let stream = writer.await.unwrap();
        assert!(mux.is_alive());
        assert!(!driver.is_finished());
        drop(stream);
    });
}

// ----- stream ids -----

#[test]
fn a_syn_of_the_sessions_own_parity_is_a_protocol_error() {
    for version in VERSIONS {
        run(async move {
            // The session is the server (even ids): its client must open odd ones.
            violation(
                version,
                Role::Server,
                frame(version, SYN, 6, b""),
                &["SYN for stream 6"],
            )
            .await;
        });
        run(async move {
            // The session is the client (odd ids): its server must open even ones.
            violation(
                version,
                Role::Client,
                frame(version, SYN, 7, b""),
                &["SYN for stream 7"],
            )
            .await;
        });
    }
}

#[test]
fn a_syn_for_stream_0_is_a_protocol_error() {
    // Stream 0 is the session's own (NOP); it is even, but no server may open it.
    for version in VERSIONS {
        run(async move {
            violation(
                version,
                Role::Client,
                frame(version, SYN, 0, b""),
                &["SYN for stream 0"],
            )
            .await;
        });
    }
}

// ----- what smux skips -----

#[test]
fn psh_for_an_unknown_stream_is_discarded_and_the_session_goes_on() {
    // smux has no reset: data for a stream that was refused or forgotten is dropped (Go does
    // the same). It must not be buffered either.
    const FRAMES: usize = 200;
    for version in VERSIONS {
        run(async move {
            let (mux, driver, mut mock) = smux_pair(config(version, Role::Server), version).await;
            let [first, second, _] = peer_ids(Role::Server);
            let junk: Vec<Vec<u8>> = (0..FRAMES)
                .map(|i| mock.frame(PSH, 101 + 2 * (i as u32 % 5), &[0xee; 4096]))
                .collect();
            mock.send(&junk.concat()).await;
            mock.send(&mock.frame(PSH, 0, b"stream 0 is nobody's"))
                .await;
            still_works(&mux, &mut mock, first).await;
            assert_eq!(mux.stats().recv_buffered_bytes, 0, "{:?}", mux.stats());
            still_works(&mux, &mut mock, second).await;
            assert!(!driver.is_finished());
        });
    }
}

#[test]
fn empty_psh_frames_are_skipped() {
    for version in VERSIONS {
        run(async move {
            let (mux, driver, mut mock) = smux_pair(config(version, Role::Server), version).await;
            let [id, unknown, _] = peer_ids(Role::Server);
            mock.send(&mock.frame(SYN, id, b"")).await;
            let mut stream = mux.accept().await.unwrap();
            let mut read = Box::pin(async move {
                let mut buf = [0u8; 16];
                let n = stream.read(&mut buf).await?;
                io::Result::Ok((stream, buf[..n].to_vec()))
            });
            assert_pending(&mut read, "read").await;
            let empties: Vec<Vec<u8>> = (0..1000)
                .map(|i| mock.frame(PSH, if i % 2 == 0 { id } else { unknown }, b""))
                .collect();
            mock.send(&empties.concat()).await;
            // The empty frames delivered nothing (not even an EOF); the next byte is the data.
            assert_pending(&mut read, "read after empty PSH frames").await;
            mock.send(&mock.frame(PSH, id, b"x")).await;
            let (stream, got) = read.await.unwrap();
            assert_eq!(got, b"x");
            assert!(mux.is_alive());
            assert!(!driver.is_finished());
            drop(stream);
        });
    }
}

#[test]
fn upd_for_an_unknown_stream_is_ignored() {
    // Go ignores these too: a UPD may cross our FIN and the stream's end.
    run(async {
        let (mux, driver, mut mock) = smux_pair(config(2, Role::Server), 2).await;
        let [id, _, _] = peer_ids(Role::Server);
        mock.send(&[upd(2, 99, 12_345, 65_536), upd(2, 0, 0, u32::MAX)].concat())
            .await;
        still_works(&mux, &mut mock, id).await;
        assert!(!driver.is_finished());
    });
}

// ----- receive limits -----

#[test]
fn psh_beyond_the_announced_window_is_a_protocol_error() {
    // Go's receiver never checks its windows; ours does, or one stream could take the whole
    // session budget. Exactly the window, unread, is fine; one byte more is not.
    const WINDOW: usize = 1 << 20;
    run(async {
        let session_config = config(2, Role::Server).stream_receive_buffer(WINDOW);
        let (mux, driver, mut mock) = smux_pair(session_config, 2).await;
        let [id, _, _] = peer_ids(Role::Server);
        mock.send(&mock.frame(SYN, id, b"")).await;
        let stream = mux.accept().await.unwrap();
        let full: Vec<Vec<u8>> = (0..WINDOW / 32_768)
            .map(|_| mock.frame(PSH, id, &[1; 32_768]))
            .collect();
        mock.send(&full.concat()).await;
        eventually("the window arrived", || {
            mux.stats().recv_buffered_bytes == WINDOW
        })
        .await;
        assert!(mux.is_alive());
        mock.send(&mock.frame(PSH, id, b"!")).await;
        assert_err_names(
            driver.await,
            &[&format!("stream {id}"), "beyond its window"],
        );
        assert!(!mux.is_alive());
        mock.reader.expect_eof().await;
        drop(stream);
    });
}

#[test]
fn the_session_budget_stops_the_reader_until_the_application_reads() {
    // smux's session-wide backpressure: past session_receive_buffer the session reads nothing
    // more from the connection, so a peer that keeps writing (version 1 has no per-stream
    // limit; in version 2 each of many streams stays within its window) is held off by TCP.
    // Then the application reads it all, unchanged.
    const BUDGET: usize = 1 << 20;
    for (version, streams, per_stream) in [(1, 1, 32 << 20), (2, 16, BUDGET)] {
        run(async move {
            let session_config = config(version, Role::Server)
                .stream_receive_buffer(BUDGET)
                .session_receive_buffer(BUDGET);
            let (mux, driver, mut mock) = smux_pair(session_config, version).await;
            let ids: Vec<u32> = (0..streams).map(|i| 2 * i + 1).collect();
            let opens: Vec<Vec<u8>> = ids.iter().map(|&id| mock.frame(SYN, id, b"")).collect();
            mock.send(&opens.concat()).await;
            // Far more than the budget and the kernel's socket buffers together.
            let writer = spawn({
                let mut tcp = mock.tcp.clone();
                let ids = ids.clone();
                async move {
                    for offset in (0..per_stream).step_by(32_768) {
                        for &id in &ids {
                            let len = 32_768.min(per_stream - offset);
                            let body: Vec<u8> = (offset..offset + len)
                                .map(|i| (i as u32 ^ id) as u8)
                                .collect();
                            tcp.write_all(&frame(version, PSH, id, &body)).await?;
                        }
                    }
                    tcp.flush().await
                }
            });
            let bound = BUDGET + 65_535; // the budget plus at most one frame
            eventually("the budget filled", || {
                mux.stats().recv_buffered_bytes >= BUDGET
            })
            .await;
            // Nothing moves while nobody reads.
            Timer::after(Duration::from_millis(200)).await;
            assert!(
                mux.stats().recv_buffered_bytes <= bound,
                "{:?}",
                mux.stats()
            );
            assert!(!writer.is_finished(), "the peer was not held off");

            let mut accepted = Vec::new();
            for &id in &ids {
                let stream = mux.accept().await.unwrap();
                assert_eq!(stream.id(), id);
                accepted.push(stream);
            }
            // Read in the order the writer wrote, so that no stream waits behind another's
            // unread data.
            let mut chunk = vec![0u8; 32_768];
            for offset in (0..per_stream).step_by(32_768) {
                for (stream, &id) in accepted.iter_mut().zip(&ids) {
                    let len = 32_768.min(per_stream - offset);
                    stream.read_exact(&mut chunk[..len]).await.unwrap();
                    for (i, &byte) in chunk[..len].iter().enumerate() {
                        assert_eq!(byte, ((offset + i) as u32 ^ id) as u8, "stream {id}");
                    }
                    let stats = mux.stats();
                    assert!(stats.recv_buffered_bytes <= bound, "{stats:?}");
                }
            }
            writer.await.unwrap();
            assert!(mux.is_alive());
            assert!(!driver.is_finished());
            if version == 2 {
                // The reads were reported, at least every half window, with the window this
                // session announces (the 262,144-byte floor: an even share of half the 1 MiB
                // budget among 16 streams is less), and the consumed counts only went up.
                let (consumed, window) = mock
                    .reader
                    .expect_upd(ids[0], (per_stream / 2) as u32)
                    .await;
                assert!(consumed as usize <= per_stream, "{consumed}");
                assert_eq!(window, 262_144);
                let counts: Vec<u32> = mock
                    .reader
                    .upds
                    .iter()
                    .filter(|u| u.0 == ids[0])
                    .map(|u| u.1)
                    .collect();
                assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
            }
        });
    }
}

// ----- floods -----

#[test]
fn a_syn_flood_past_max_streams_is_refused_with_fin_and_the_session_goes_on() {
    // 3,000 SYNs, each with 512 bytes of data, against a table of 8 that nobody accepts from
    // until the flood is over. Each refused stream gets a FIN (smux's only refusal) and its
    // data is discarded: the table and the buffered bytes stay within the limits throughout.
    const MAX_STREAMS: usize = 8;
    const SYNS: u32 = 3_000;
    const DATA: usize = 512;
    for version in VERSIONS {
        run(async move {
            let session_config = config(version, Role::Server).max_streams(MAX_STREAMS);
            let (mux, driver, mut mock) = smux_pair(session_config, version).await;
            let ids: Vec<u32> = (0..SYNS).map(|i| 2 * i + 1).collect();
            let within_limits = |stats: &Stats| {
                assert!(stats.open_streams <= MAX_STREAMS, "{stats:?}");
                assert!(stats.pending_accept <= MAX_STREAMS, "{stats:?}");
                assert!(stats.recv_buffered_bytes <= MAX_STREAMS * DATA, "{stats:?}");
            };

            // The refusals are read as they come, so the session's writes never back up.
            let refused: Vec<u32> = ids[MAX_STREAMS..].to_vec();
            let mut reader = FrameReader {
                tcp: mock.tcp.clone(),
                version,
                buf: Vec::new(),
                upds: Vec::new(),
            };
            let refusals = spawn(async move {
                for &id in &refused {
                    let frame = reader.next_stream_frame().await;
                    assert_eq!((frame.command, frame.id), (FIN, id), "{frame:?}");
                    assert!(frame.body.is_empty(), "{frame:?}");
                }
                reader
            });
            for chunk in ids.chunks(500) {
                let frames: Vec<Vec<u8>> = chunk
                    .iter()
                    .flat_map(|&id| {
                        [
                            mock.frame(SYN, id, b""),
                            mock.frame(PSH, id, &[id as u8; DATA]),
                        ]
                    })
                    .collect();
                mock.send(&frames.concat()).await;
                within_limits(&mux.stats());
            }
            mock.reader = refusals.await;
            let stats = mux.stats();
            within_limits(&stats);
            assert_eq!(stats.pending_accept, MAX_STREAMS, "{stats:?}");
            assert!(mux.is_alive());
            assert!(!driver.is_finished());

            // The first 8 are intact. Once both sides have closed them, the table takes new
            // streams again.
            for &id in &ids[..MAX_STREAMS] {
                let mut stream = mux.accept().await.unwrap();
                assert_eq!(stream.id(), id);
                let mut got = [0u8; DATA];
                stream.read_exact(&mut got).await.unwrap();
                assert_eq!(got, [id as u8; DATA]);
                stream.close().await.unwrap();
                mock.reader.expect(FIN, id).await;
                mock.send(&mock.frame(FIN, id, b"")).await;
            }
            eventually("the table emptied", || mux.stats().open_streams == 0).await;
            still_works(&mux, &mut mock, 2 * SYNS + 1).await;
        });
    }
}

// ----- keeping the mock honest -----

#[test]
fn the_mock_speaks_smux_a_clean_exchange_both_ways() {
    // The baseline the other tests depart from: well-formed frames work, in both roles, and
    // version 2 reports reads with UPD.
    for version in VERSIONS {
        for role in [Role::Client, Role::Server] {
            run(async move {
                let (mux, driver, mut mock) = smux_pair(config(version, role), version).await;
                let [id, _, _] = peer_ids(role);
                still_works(&mux, &mut mock, id).await;
                let mut own = mux.open(b"").await.unwrap();
                let own_id = own.id();
                assert_eq!(own_id, own_first_id(role));
                own.write_all(b"hello").await.unwrap();
                own.flush().await.unwrap();
                mock.reader.expect(SYN, own_id).await;
                assert_eq!(mock.reader.expect_data(own_id, 5).await, b"hello");
                mock.send(&mock.frame(PSH, own_id, b"world")).await;
                let mut got = [0u8; 5];
                own.read_exact(&mut got).await.unwrap();
                assert_eq!(&got, b"world");
                if version == 2 {
                    // The first read is reported at once, as Go's receiver does, with the
                    // stream's receive buffer as the window.
                    let (consumed, window) = mock.reader.expect_upd(own_id, 1).await;
                    assert_eq!(consumed, 5);
                    assert_eq!(window as usize, Config::default().stream_receive_buffer);
                } else {
                    assert!(mock.reader.upds.is_empty(), "UPD in version 1");
                }
                mock.send(&mock.frame(FIN, own_id, b"")).await;
                let mut rest = Vec::new();
                own.read_to_end(&mut rest).await.unwrap();
                assert!(rest.is_empty(), "{rest:?}");
                own.close().await.unwrap();
                let fin = loop {
                    let frame = mock.reader.next().await.expect("the session's FIN");
                    if !frame.is_upkeep() {
                        break frame;
                    }
                };
                assert_eq!((fin.command, fin.id), (FIN, own_id));
                mux.close().await.unwrap();
                // The mock hangs up in its turn; the session ends cleanly.
                drop(mock);
                let ended = async { Some(driver.await) }
                    .or(async {
                        Timer::after(Duration::from_secs(10)).await;
                        None
                    })
                    .await;
                ended.expect("the driver ended").unwrap();
            });
        }
    }
}
