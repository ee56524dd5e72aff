//! A raw TCP peer writes hand-built yamux frames (`../shared/YAMUX.md`) at a smolmux session in
//! `Yamux` mode. Every protocol violation ends the session with `InvalidData` and a message
//! naming the problem, seen by the driver and by the operations that were pending; what both
//! yamux implementations skip (a pong nobody asked for, Data for a stream nobody knows) the
//! session skips too and goes on; SYN floods are refused with RST and Ping floods answered,
//! with memory bounded.
//!
//! The frames are built here byte by byte, not with smolmux's codec, so that these tests say
//! what the wire is rather than what the codec thinks it is. Every frame the session sends back
//! is checked for version 0. Waits are bounded by the hang guard only.

mod support;

use std::io::{self, ErrorKind};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use smol::net::TcpStream;
use smol::Task;
use smolmux::{Config, Mux, Protocol, Role};
use support::{assert_err, assert_pending, eventually, run, spawn, tcp_pair};

// ----- the wire, by hand -----

const DATA: u8 = 0;
const WINDOW_UPDATE: u8 = 1;
const PING: u8 = 2;
const GO_AWAY: u8 = 3;

const SYN: u16 = 1;
const ACK: u16 = 2;
const FIN: u16 = 4;
const RST: u16 = 8;

const HEADER_LEN: usize = 12;
/// The window either side may fill before the other's first Window Update.
const INITIAL_WINDOW: u32 = 256 << 10;

/// `version u8 | type u8 | flags u16 BE | stream id u32 BE | length u32 BE`, then a Data
/// frame's body.
fn header(version: u8, frame_type: u8, flags: u16, id: u32, length: u32) -> Vec<u8> {
    let mut out = vec![version, frame_type];
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&length.to_be_bytes());
    out
}

fn frame(frame_type: u8, flags: u16, id: u32, length: u32) -> Vec<u8> {
    header(0, frame_type, flags, id, length)
}

fn data(flags: u16, id: u32, body: &[u8]) -> Vec<u8> {
    let mut out = frame(DATA, flags, id, body.len() as u32);
    out.extend_from_slice(body);
    out
}

/// The session under test: a yamux server (its peer, the mock, opens odd ids), with no
/// keepalive so that a mock that sends nothing for a while is not timed out.
fn config() -> Config {
    Config::default()
        .protocol(Protocol::Yamux)
        .role(Role::Server)
        .ping_interval(None)
}

// ----- the mock peer -----

/// A frame the session sent.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Frame {
    frame_type: u8,
    flags: u16,
    id: u32,
    length: u32,
    body: Vec<u8>,
}

impl Frame {
    /// Window updates without flags and the session's own Pings (it measures the round trip
    /// at the start even without keepalive; unanswered, they time nothing out): upkeep that
    /// tests of other frames skip.
    fn is_upkeep(&self) -> bool {
        (self.frame_type == WINDOW_UPDATE && self.flags == 0)
            || (self.frame_type == PING && self.flags == SYN)
    }
}

/// Reads the session's frames from a socket, checking each one's version.
struct FrameReader {
    tcp: TcpStream,
    buf: Vec<u8>,
}

impl FrameReader {
    /// The next frame, `None` at EOF (or a reset) on a frame boundary.
    async fn next(&mut self) -> Option<Frame> {
        loop {
            if self.buf.len() >= HEADER_LEN {
                let word = |at: usize| u32::from_be_bytes(self.buf[at..at + 4].try_into().unwrap());
                let length = word(8);
                let body_len = if self.buf[1] == DATA {
                    length as usize
                } else {
                    0
                };
                if self.buf.len() >= HEADER_LEN + body_len {
                    assert_eq!(self.buf[0], 0, "not version 0: {:?}", &self.buf[..12]);
                    let frame = Frame {
                        frame_type: self.buf[1],
                        flags: u16::from_be_bytes([self.buf[2], self.buf[3]]),
                        id: word(4),
                        length,
                        body: self.buf[HEADER_LEN..HEADER_LEN + body_len].to_vec(),
                    };
                    self.buf.drain(..HEADER_LEN + body_len);
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
    async fn next_frame(&mut self) -> Frame {
        loop {
            match self.next().await {
                Some(frame) if frame.is_upkeep() => {}
                Some(frame) => return frame,
                None => panic!("the session closed the connection while a frame was expected"),
            }
        }
    }

    /// Expects the next frame that is not upkeep to be of `frame_type` with `flags` on `id`.
    async fn expect(&mut self, frame_type: u8, flags: u16, id: u32) -> Frame {
        let frame = self.next_frame().await;
        assert_eq!(
            (frame.frame_type, frame.flags, frame.id),
            (frame_type, flags, id),
            "{frame:?}"
        );
        frame
    }

    /// Reads the Data frames of stream `id` until `len` bytes have come; returns them.
    async fn expect_data(&mut self, id: u32, len: usize) -> Vec<u8> {
        let mut got = Vec::new();
        while got.len() < len {
            let frame = self.expect(DATA, 0, id).await;
            got.extend_from_slice(&frame.body);
        }
        assert_eq!(got.len(), len, "more data than was written");
        got
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
}

impl Mock {
    async fn send(&mut self, bytes: &[u8]) {
        self.tcp.write_all(bytes).await.expect("mock peer write");
        self.tcp.flush().await.expect("mock peer flush");
    }
}

/// A session with `config` (its driver spawned) and the mock peer.
async fn yamux_pair(config: Config) -> (Mux, Task<io::Result<()>>, Mock) {
    let (session_side, mock_side) = tcp_pair().await;
    let (mux, driver) = Mux::new(session_side.clone(), session_side, config);
    let mock = Mock {
        reader: FrameReader {
            tcp: mock_side.clone(),
            buf: Vec::new(),
        },
        tcp: mock_side,
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

/// The mock opens streams 1 and 3; the session accepts both (ACKing each) and leaves a read
/// pending on the first, and an accept pending. Then the mock sends `bad`. The driver, the
/// pending read, the pending accept and a later open all fail with `InvalidData` and a message
/// containing every one of `needles`; the session hangs up.
async fn violation(bad: Vec<u8>, needles: &[&str]) {
    let (mux, driver, mut mock) = yamux_pair(config()).await;
    let opens = [
        frame(WINDOW_UPDATE, SYN, 1, 0),
        frame(WINDOW_UPDATE, SYN, 3, 0),
    ];
    mock.send(&opens.concat()).await;
    let mut victim = mux.accept().await.unwrap();
    let idle = mux.accept().await.unwrap();
    assert_eq!((victim.id(), idle.id()), (1, 3));
    mock.reader.expect(WINDOW_UPDATE, ACK, 1).await;
    mock.reader.expect(WINDOW_UPDATE, ACK, 3).await;

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

/// A session that has swallowed something must still carry a fresh stream both ways: the mock
/// opens stream `id` with "ping" and its FIN on one Data frame, and reads the ACK, "pong" and
/// the session's FIN back.
async fn still_works(mux: &Mux, mock: &mut Mock, id: u32) {
    mock.send(&data(SYN | FIN, id, b"ping")).await;
    let mut stream = mux.accept().await.unwrap();
    assert_eq!(stream.id(), id);
    let mut got = Vec::new();
    stream.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"ping");
    stream.write_all(b"pong").await.unwrap();
    stream.close().await.unwrap();
    mock.reader.expect(WINDOW_UPDATE, ACK, id).await;
    assert_eq!(mock.reader.expect_data(id, 4).await, b"pong");
    mock.reader.expect(WINDOW_UPDATE, FIN, id).await;
    assert!(mux.is_alive());
}

// ----- the header -----

#[test]
fn a_version_other_than_0_is_a_protocol_error() {
    run(violation(
        header(1, WINDOW_UPDATE, 0, 1, 10),
        &["bad yamux version byte 1", "expected 0"],
    ));
}

#[test]
fn an_unknown_frame_type_is_a_protocol_error() {
    run(violation(
        header(0, 4, 0, 1, 0),
        &["unknown yamux frame type 0x04"],
    ));
}

// ----- streams -----

#[test]
fn a_duplicate_syn_is_a_protocol_error() {
    run(violation(
        frame(WINDOW_UPDATE, SYN, 1, 0),
        &["duplicate SYN for open stream 1"],
    ));
}

#[test]
fn a_syn_of_the_sessions_own_parity_is_a_protocol_error() {
    // The session is the server: even ids are its own.
    run(violation(
        data(SYN, 4, b"x"),
        &["SYN for stream 4", "client, whose ids are odd"],
    ));
}

#[test]
fn a_second_fin_is_a_protocol_error() {
    // On stream 3: a FIN on stream 1 would end the read pending there.
    let fins = [frame(WINDOW_UPDATE, FIN, 3, 0), data(FIN, 3, b"")].concat();
    run(violation(fins, &["second FIN on stream 3"]));
}

#[test]
fn data_after_fin_is_a_protocol_error() {
    let frames = [frame(WINDOW_UPDATE, FIN, 3, 0), data(0, 3, b"late")].concat();
    run(violation(frames, &["Data on stream 3 after its FIN"]));
}

// ----- windows -----

#[test]
fn data_past_the_window_is_a_protocol_error_before_its_body_comes() {
    // On a stream not yet accepted (so no Window Update has grown its window), one byte more
    // than the 256 KiB every stream starts with, announced by the header alone: the session
    // ends without waiting for a body it would not take.
    let frames = [
        frame(WINDOW_UPDATE, SYN, 5, 0),
        frame(DATA, 0, 5, INITIAL_WINDOW + 1),
    ];
    run(violation(
        frames.concat(),
        &[
            "Data on stream 5 overruns its receive window",
            "262144 allowed",
        ],
    ));
}

#[test]
fn data_filling_the_window_over_several_frames_then_one_byte_more_is_a_protocol_error() {
    let frames = [
        data(SYN, 5, &vec![1; (INITIAL_WINDOW / 2) as usize]),
        data(0, 5, &vec![2; (INITIAL_WINDOW / 2) as usize]),
        data(0, 5, b"!"),
    ];
    run(violation(
        frames.concat(),
        &["overruns its receive window", "0 allowed"],
    ));
}

#[test]
fn a_window_update_overflowing_the_send_window_is_a_protocol_error() {
    // 256 KiB + (2^32 - 1) does not fit in the u32 the window is.
    run(violation(
        frame(WINDOW_UPDATE, 0, 1, u32::MAX),
        &["Window Update on stream 1 overflows the send window"],
    ));
}

#[test]
fn a_window_update_to_the_brim_is_taken() {
    run(async {
        let (mux, _driver, mut mock) = yamux_pair(config()).await;
        mock.send(&frame(WINDOW_UPDATE, SYN, 1, u32::MAX - INITIAL_WINDOW))
            .await;
        let mut stream = mux.accept().await.unwrap();
        mock.reader.expect(WINDOW_UPDATE, ACK, 1).await;
        stream.write_all(b"fits").await.unwrap();
        stream.flush().await.unwrap();
        assert_eq!(mock.reader.expect_data(1, 4).await, b"fits");
        still_works(&mux, &mut mock, 3).await;
    });
}

#[test]
fn data_for_an_unknown_stream_is_drained_and_the_session_goes_on() {
    run(async {
        let (mux, _driver, mut mock) = yamux_pair(config()).await;
        // Neither opened nor a FIN that could open it: dropped, body and all.
        mock.send(&data(0, 7, &[9; 100_000])).await;
        mock.send(&frame(WINDOW_UPDATE, 0, 9, 1000)).await;
        still_works(&mux, &mut mock, 11).await;
        assert_eq!(mux.stats().open_streams, 0);
    });
}

// ----- refusals -----

#[test]
fn a_syn_flood_past_the_backlog_is_refused_with_rst_and_the_session_goes_on() {
    const BACKLOG: usize = 8;
    const SYNS: u32 = 2_000;
    run(async {
        let (mux, driver, mut mock) = yamux_pair(config().accept_backlog(BACKLOG)).await;
        let ids: Vec<u32> = (0..SYNS).map(|i| 2 * i + 1).collect();
        let mut reader = FrameReader {
            tcp: mock.tcp.clone(),
            buf: Vec::new(),
        };
        let refused = ids[BACKLOG..].to_vec();
        let refusals = spawn(async move {
            for &id in &refused {
                reader.expect(WINDOW_UPDATE, RST, id).await;
            }
            reader
        });
        for chunk in ids.chunks(500) {
            let frames: Vec<Vec<u8>> = chunk.iter().map(|&id| data(SYN, id, &[3; 256])).collect();
            mock.send(&frames.concat()).await;
            let stats = mux.stats();
            assert!(stats.pending_accept <= BACKLOG, "{stats:?}");
            assert!(stats.recv_buffered_bytes <= BACKLOG * 256, "{stats:?}");
        }
        mock.reader = refusals.await;
        assert!(!driver.is_finished());
        for &id in &ids[..BACKLOG] {
            let mut stream = mux.accept().await.unwrap();
            assert_eq!(stream.id(), id);
            let mut got = [0u8; 256];
            stream.read_exact(&mut got).await.unwrap();
            mock.reader.expect(WINDOW_UPDATE, ACK, id).await;
            stream.close().await.unwrap();
            mock.reader.expect(WINDOW_UPDATE, FIN, id).await;
            mock.send(&frame(WINDOW_UPDATE, FIN, id, 0)).await;
        }
        eventually("the table emptied", || mux.stats().open_streams == 0).await;
        still_works(&mux, &mut mock, 2 * SYNS + 1).await;
    });
}

#[test]
fn an_rst_before_the_ack_is_a_refusal_and_after_it_a_reset() {
    run(async {
        let (mux, _driver, mut mock) = yamux_pair(config()).await;
        let mut refused = mux.open(b"").await.unwrap();
        let mut reset = mux.open(b"").await.unwrap();
        assert_eq!((refused.id(), reset.id()), (2, 4));
        mock.reader.expect(WINDOW_UPDATE, SYN, 2).await;
        mock.reader.expect(WINDOW_UPDATE, SYN, 4).await;
        let frames = [
            frame(WINDOW_UPDATE, RST, 2, 0),
            frame(WINDOW_UPDATE, ACK, 4, 0),
            frame(WINDOW_UPDATE, RST, 4, 0),
        ];
        mock.send(&frames.concat()).await;
        let mut buf = [0u8; 8];
        assert_err(
            refused.read(&mut buf).await,
            ErrorKind::ConnectionRefused,
            "stream refused by the peer",
        );
        assert_err(
            reset.read(&mut buf).await,
            ErrorKind::ConnectionReset,
            "stream reset by the peer",
        );
        drop((refused, reset));
        eventually("both streams gone", || mux.stats().open_streams == 0).await;
        still_works(&mux, &mut mock, 1).await;
    });
}

// ----- Ping -----

#[test]
fn a_pong_never_asked_for_is_ignored() {
    run(async {
        let (mux, _driver, mut mock) = yamux_pair(config()).await;
        mock.send(&frame(PING, ACK, 0, 12_345)).await;
        still_works(&mux, &mut mock, 1).await;
        assert_eq!(
            mux.last_rtt(),
            None,
            "an unasked pong measured a round trip"
        );
    });
}

#[test]
fn every_ping_of_a_flood_is_answered_in_order_with_its_value() {
    // More Pings at once than the session keeps answers for: the reader waits for the writer,
    // so none is lost and memory stays bounded.
    const PINGS: u32 = 5_000;
    run(async {
        let (mux, _driver, mut mock) = yamux_pair(config()).await;
        let mut reader = FrameReader {
            tcp: mock.tcp.clone(),
            buf: Vec::new(),
        };
        let pongs = spawn(async move {
            for value in 0..PINGS {
                let pong = reader.expect(PING, ACK, 0).await;
                assert_eq!(pong.length, value.wrapping_mul(2_654_435_761));
            }
            reader
        });
        let pings: Vec<Vec<u8>> = (0..PINGS)
            .map(|value| frame(PING, SYN, 0, value.wrapping_mul(2_654_435_761)))
            .collect();
        mock.send(&pings.concat()).await;
        mock.reader = pongs.await;
        still_works(&mux, &mut mock, 1).await;
    });
}

// ----- GoAway -----

#[test]
fn a_goaway_storm_drains_once_and_the_streams_in_use_finish() {
    run(async {
        let (mux, driver, mut mock) = yamux_pair(config()).await;
        mock.send(&data(SYN, 1, b"before")).await;
        let mut stream = mux.accept().await.unwrap();
        mock.reader.expect(WINDOW_UPDATE, ACK, 1).await;
        let storm: Vec<Vec<u8>> = (0..10_000).map(|_| frame(GO_AWAY, 0, 0, 0)).collect();
        mock.send(&storm.concat()).await;
        // Frames are taken in order: once this Ping is answered, the storm has been read. The
        // session answers the storm with one GoAway(0) of its own (it drains too), before or
        // after the pong; a second would fail the expectations below.
        mock.send(&frame(PING, SYN, 0, 77)).await;
        let (mut pong, mut goaways) = (false, 0);
        while !pong || goaways == 0 {
            let frame = mock.reader.next_frame().await;
            match (frame.frame_type, frame.flags, frame.length) {
                (PING, ACK, 77) => pong = true,
                (GO_AWAY, 0, 0) => goaways += 1,
                _ => panic!("unexpected {frame:?}"),
            }
        }
        assert_eq!(goaways, 1);
        let err = mux.open(b"").await.unwrap_err();
        assert!(err.to_string().contains("the peer is closing"), "{err}");
        // The stream in use goes on both ways.
        mock.send(&data(FIN, 1, b" and after")).await;
        let mut got = Vec::new();
        stream.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"before and after");
        stream.write_all(b"reply").await.unwrap();
        stream.close().await.unwrap();
        assert_eq!(mock.reader.expect_data(1, 5).await, b"reply");
        mock.reader.expect(WINDOW_UPDATE, FIN, 1).await;
        // Every stream done: the session closes its side, once.
        mock.reader.expect_eof().await;
        drop(mock);
        assert!(driver.await.is_ok());
    });
}

#[test]
fn goaway_with_an_error_code_ends_the_session_naming_it() {
    run(violation(
        frame(GO_AWAY, 0, 0, 1),
        &["GoAway(1: protocol error)"],
    ));
    run(violation(
        frame(GO_AWAY, 0, 0, 2),
        &["GoAway(2: internal error)"],
    ));
}

#[test]
fn our_close_sends_goaway_0_and_waits_for_the_streams() {
    run(async {
        let (mux, driver, mut mock) = yamux_pair(config()).await;
        mock.send(&data(SYN, 1, b"request")).await;
        let mut stream = mux.accept().await.unwrap();
        let mut got = [0u8; 7];
        stream.read_exact(&mut got).await.unwrap();
        stream.write_all(b"response").await.unwrap();
        stream.flush().await.unwrap();
        mock.reader.expect(WINDOW_UPDATE, ACK, 1).await;
        assert_eq!(mock.reader.expect_data(1, 8).await, b"response");
        let closing = spawn({
            let mux = mux.clone();
            async move { mux.close().await }
        });
        mock.reader.expect(GO_AWAY, 0, 0).await;
        assert!(mux.open(b"").await.is_err());
        // Our FIN, then the session waits for the peer's.
        mock.reader.expect(WINDOW_UPDATE, FIN, 1).await;
        assert_pending(&mut stream.read(&mut got), "the read before the peer's FIN").await;
        mock.send(&frame(WINDOW_UPDATE, FIN, 1, 0)).await;
        mock.reader.expect_eof().await;
        drop(mock);
        closing.await.unwrap();
        assert!(driver.await.is_ok());
        drop(stream);
    });
}
