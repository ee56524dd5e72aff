//! A scripted raw-frame peer sends malformed or hostile input: every protocol violation ends the
//! session with `InvalidData` and a message naming the problem, seen both by the driver and by
//! operations that were pending; legal oddities are tolerated; floods cost bounded memory.

mod support;

use std::io::ErrorKind;
use std::time::Duration;

use futures_lite::AsyncReadExt;
use futures_lite::AsyncWriteExt;
use smolmux::frame::Command;
use smolmux::Config;
use support::mock_peer::{
    abort, concat, fin, mock_pair, more, nop, ping, ping_raw, pong, psh, raw_frame, raw_header,
    syn, GOOD_VERSION,
};
use support::*;

/// The mock opens stream 1 (a read is left pending on it) and stream 2 (accepted, idle), and an
/// accept is left pending. Then the mock sends `bad` (and closes its write half if `then_eof`).
/// The driver, the pending read, the pending accept and a later open must all fail with `kind`
/// and a message containing `needle`; the mux hangs up.
async fn violation(bad: Vec<u8>, then_eof: bool, kind: ErrorKind, needle: &str) {
    let (mux, driver, mut mock) = mock_pair(Config::default()).await;
    mock.handshake().await;
    mock.send(&concat(&[syn(1, b"victim"), syn(2, b"idle")]))
        .await;
    let mut victim = mux.accept().await.unwrap();
    let idle = mux.accept().await.unwrap();
    assert_eq!((victim.id(), idle.id()), (1, 2));

    let mut read = Box::pin(async move {
        let mut buf = [0u8; 64];
        victim.read(&mut buf).await
    });
    assert_pending(&mut read, "read").await;
    let mut accept = Box::pin(mux.accept());
    assert_pending(&mut accept, "accept").await;

    mock.send(&bad).await;
    if then_eof {
        mock.shutdown_write();
    }

    assert_err(driver.await, kind, needle);
    assert_err(read.await, kind, needle);
    assert_err(accept.await, kind, needle);
    assert!(!mux.is_alive());
    assert_err(mux.open(b"").await, kind, needle);
    mock.expect_eof().await;
    drop(idle);
}

#[test]
fn psh_beyond_credits_is_a_protocol_error() {
    run(async {
        // The mux granted 10 credits on stream 2 and its application reads nothing.
        let flood: Vec<Vec<u8>> = (0..11).map(|_| psh(2, b"x")).collect();
        violation(
            concat(&flood),
            false,
            ErrorKind::InvalidData,
            "PSH on stream 2 beyond the credits",
        )
        .await;
    });
}

#[test]
fn bad_version_byte_is_a_protocol_error() {
    run(async {
        violation(
            raw_frame(2, Command::Psh.to_byte(), 1, b"x"),
            false,
            ErrorKind::InvalidData,
            "bad version byte 2",
        )
        .await;
    });
}

#[test]
fn unknown_command_is_named_in_the_error() {
    run(async {
        violation(
            raw_frame(GOOD_VERSION, 0x42, 1, b""),
            false,
            ErrorKind::InvalidData,
            "unknown command 0x42",
        )
        .await;
    });
}

#[test]
fn more_with_three_byte_body_is_a_protocol_error() {
    run(async {
        violation(
            raw_frame(GOOD_VERSION, Command::More.to_byte(), 1, &[5, 0, 0]),
            false,
            ErrorKind::InvalidData,
            "MORE frame on stream 1 has a 3-byte body",
        )
        .await;
    });
}

#[test]
fn ping_body_that_is_not_json_is_a_protocol_error() {
    run(async {
        violation(
            ping_raw(b"hello, not json"),
            false,
            ErrorKind::InvalidData,
            "PING body",
        )
        .await;
    });
}

#[test]
fn duplicate_syn_is_a_protocol_error() {
    run(async {
        violation(
            syn(1, b"again"),
            false,
            ErrorKind::InvalidData,
            "duplicate SYN",
        )
        .await;
    });
}

#[test]
fn psh_after_fin_is_a_protocol_error() {
    run(async {
        violation(
            concat(&[fin(2), psh(2, b"late")]),
            false,
            ErrorKind::InvalidData,
            "after its FIN",
        )
        .await;
    });
}

#[test]
fn eof_in_the_middle_of_a_frame_is_unexpected_eof() {
    run(async {
        let mut half = raw_header(GOOD_VERSION, Command::Psh.to_byte(), 100, 1);
        half.extend_from_slice(&[0x55; 40]);
        violation(half, true, ErrorKind::UnexpectedEof, "middle of a frame").await;
    });
}

#[test]
fn eof_in_the_middle_of_a_header_is_unexpected_eof() {
    run(async {
        let header = raw_header(GOOD_VERSION, Command::Psh.to_byte(), 1, 1);
        violation(
            header[..5].to_vec(),
            true,
            ErrorKind::UnexpectedEof,
            "middle of a frame",
        )
        .await;
    });
}

// ----- legal oddities -----

#[test]
fn syn_with_id_zero_is_a_valid_stream() {
    run(async {
        let (mux, _driver, mut mock) = mock_pair(Config::default()).await;
        mock.handshake().await;
        mock.send(&concat(&[syn(0, b"zero"), psh(0, b"hello"), fin(0)]))
            .await;
        let mut stream = mux.accept().await.unwrap();
        assert_eq!(stream.id(), 0);
        assert_eq!(stream.metadata(), b"zero");
        let mut got = Vec::new();
        stream.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"hello");

        // The mock announced smolmux, so its FIN was a half-close: we may still answer.
        stream.write_all(b"back").await.unwrap();
        stream.close().await.unwrap();
        assert_eq!(mock.expect(Command::Psh, 0).await.body, b"back");
        assert!(mock.expect(Command::Fin, 0).await.body.is_empty());
        assert!(mux.is_alive());
        drop(stream);
        eventually("stream 0 left the table", || mux.stats().open_streams == 0).await;
    });
}

#[test]
fn frames_for_unknown_stream_ids_are_ignored() {
    run(async {
        let (mux, _driver, mut mock) = mock_pair(Config::default()).await;
        mock.handshake().await;
        mock.send(&concat(&[
            psh(99, b"stray data"),
            fin(98),
            more(97, 5),
            abort(96, "stray abort"),
            nop(95),
            syn(1, b"after"),
            psh(1, b"ok"),
        ]))
        .await;
        let mut stream = mux.accept().await.unwrap();
        assert_eq!((stream.id(), stream.metadata()), (1, &b"after"[..]));
        let mut buf = [0u8; 2];
        stream.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ok");
        assert!(mux.is_alive());
        let stats = mux.stats();
        assert_eq!((stats.open_streams, stats.pending_accept), (1, 0));

        // Nothing was sent about the unknown ids: the next frame is our data on stream 1.
        stream.write_all(b"reply").await.unwrap();
        stream.flush().await.unwrap();
        let frame = mock.next_non_liveness().await;
        assert_eq!(
            (frame.command, frame.stream_id),
            (Command::Psh, 1),
            "{frame:?}"
        );
    });
}

#[test]
fn unsolicited_pong_does_not_update_rtt() {
    run(async {
        // Without a ping interval the mux pings only at the start: four PINGs in a row, each
        // sent when the previous one is answered, to measure the path's round trip.
        let config = Config::default().ping_interval(None);
        let (mux, _driver, mut mock) = mock_pair(config).await;
        let first = mock.expect_ping().await;
        assert!(first.smolmux);

        // Frames are handled in order, so accepting a stream opened after some frames proves
        // that those frames were handled.
        mock.send(&syn(1, b"sync")).await;
        let _s1 = mux.accept().await.unwrap();
        assert_eq!(mux.last_rtt(), None, "our PING is outstanding: no RTT yet");

        let mut synced = Vec::new();
        for round in 0..4u32 {
            if round > 0 {
                mock.expect_ping().await;
            }
            mock.send(&concat(&[pong(), syn(10 + round, b"sync")]))
                .await;
            synced.push(mux.accept().await.unwrap());
        }
        let measured = mux.last_rtt().expect("the PONGs answered our PINGs");

        // No PING of ours is outstanding now: later PONGs answer nothing. Had one been taken
        // for an answer, the RTT would have changed (we waited in between).
        sleep(Duration::from_millis(100)).await;
        mock.send(&concat(&[pong(), pong(), pong(), syn(3, b"sync")]))
            .await;
        let _s3 = mux.accept().await.unwrap();
        assert_eq!(mux.last_rtt(), Some(measured));
        assert!(mux.is_alive());

        // And the mux sent no further PING.
        match mock.try_next_frame(Duration::from_millis(200)).await {
            Err(err) if err.kind() == ErrorKind::TimedOut => {}
            other => panic!("unexpected frame from the mux: {other:?}"),
        }
    });
}

#[test]
fn ping_flood_is_answered_in_bounded_memory() {
    const PINGS: usize = 100_000;
    run(async {
        let (mux, _driver, mut mock) = mock_pair(Config::default()).await;
        mock.handshake().await;

        // 100k PINGs (about 4 MB) while the mock reads nothing: this write completes only if
        // the mux keeps reading although its PONGs are not being read.
        let flood = ping(1_800_000, true).repeat(PINGS);
        mock.send(&flood).await;
        let stats = mux.stats();
        assert_eq!(stats.open_streams, 0);
        assert_eq!(stats.pending_accept, 0);
        assert_eq!(stats.recv_buffered_bytes, 0);
        assert_eq!(stats.send_buffered_bytes, 0);
        assert!(mux.is_alive());

        // The session still works, and the mock now reads.
        mock.send(&concat(&[syn(1, b"after the flood"), psh(1, b"hi")]))
            .await;
        let mut stream = mux.accept().await.unwrap();
        let mut buf = [0u8; 2];
        stream.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hi");
        stream.write_all(b"still alive").await.unwrap();
        stream.flush().await.unwrap();

        let mut pongs = 0usize;
        loop {
            let frame = mock.next_frame().await;
            match frame.command {
                Command::Pong => pongs += 1,
                Command::Psh => {
                    assert_eq!((frame.stream_id, &frame.body[..]), (1, &b"still alive"[..]));
                    break;
                }
                // Our PINGs, credits for the stream the application read from, and stream
                // credits.
                Command::Ping | Command::More => {}
                _ if frame.is_liveness() => {}
                other => panic!("unexpected {other:?} during the flood: {frame:?}"),
            }
        }
        // One PONG per PING at most (plus the handshake's), and at least one.
        assert!(
            (1..=PINGS + 1).contains(&pongs),
            "{pongs} PONGs for {PINGS} PINGs"
        );
        assert!(mux.is_alive());
        let stats = mux.stats();
        assert_eq!(stats.recv_buffered_bytes, 0);
        assert_eq!(stats.send_buffered_bytes, 0);
    });
}
