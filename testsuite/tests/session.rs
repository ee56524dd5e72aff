//! Whole sessions over loopback TCP on smol: data transfer, half-close, flow control, liveness,
//! limits, aborts, closing, and failure of the connection.

mod support;

use std::future::Future;
use std::io::{self, ErrorKind};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use futures_lite::future;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use smolmux::frame::Command;
use smolmux::{Config, Driver, Mux, Stream};
use support::mock_peer::{self, concat, fin, mock_pair, psh, syn};
use support::*;

const MIN_RECV: usize = Config::MIN_STREAM_RECEIVE_BUFFER;

// ----- data transfer -----

#[test]
fn echo_on_one_stream() {
    run(async {
        let pair = default_pair().await;
        let _server = spawn_echo_server(pair.b.clone());
        let mut stream = pair.a.open(b"echo").await.unwrap();
        let data = pattern(1, 300_000);
        let reply = round_trip(&mut stream, &data).await.unwrap();
        assert_eq!(reply, data);
        assert!(pair.a.is_alive() && pair.b.is_alive());
    });
}

#[test]
fn echo_over_from_io() {
    run(async {
        let (x, y) = tcp_pair().await;
        let (a, driver_a) = Mux::from_io(x, Config::default());
        let (b, driver_b) = Mux::from_io(y, Config::default());
        let _drivers = (spawn(driver_a), spawn(driver_b));
        let _server = spawn_echo_server(b);
        for i in 0..3 {
            let mut stream = a.open(b"from_io").await.unwrap();
            let data = pattern(20 + i, 200_000);
            assert_eq!(round_trip(&mut stream, &data).await.unwrap(), data);
        }
    });
}

#[test]
fn thousand_concurrent_streams_echo_distinct_patterns() {
    const STREAMS: usize = 1000;
    run(async {
        let config = Config::default().max_streams(4096).accept_backlog(2048);
        let pair = smol_pair(config.clone(), config).await;
        let _server = spawn_echo_server(pair.b.clone());
        let clients: Vec<_> = (0..STREAMS)
            .map(|i| {
                let a = pair.a.clone();
                spawn(async move {
                    let data = pattern(1000 + i as u64, 512 + (i * 37) % 8192);
                    let mut stream = a.open(format!("stream {i}").as_bytes()).await?;
                    let reply = round_trip(&mut stream, &data).await?;
                    assert!(reply == data, "stream {i} echoed the wrong bytes");
                    io::Result::Ok(())
                })
            })
            .collect();
        for (i, client) in clients.into_iter().enumerate() {
            client
                .await
                .unwrap_or_else(|err| panic!("stream {i} failed: {err}"));
        }
        eventually("every stream left both tables", || {
            pair.a.stats().open_streams == 0 && pair.b.stats().open_streams == 0
        })
        .await;
        assert!(pair.a.is_alive() && pair.b.is_alive());
    });
}

/// At the default settings, with the acceptor's backlog (256) far below the burst: stream
/// credits make the opens wait for the acceptor instead of being refused, and its backlog never
/// holds more than `accept_backlog`.
#[test]
fn a_burst_of_a_thousand_opens_at_the_defaults_waits_for_credits_and_none_is_refused() {
    const STREAMS: usize = 1000;
    run(async {
        let pair = default_pair().await;
        let b = pair.b.clone();
        // A slow acceptor: it yields between accepts, so the burst outruns it.
        let server = spawn(async move {
            let mut most_pending = 0;
            while let Ok(stream) = b.accept().await {
                most_pending = most_pending.max(b.stats().pending_accept);
                spawn(echo(stream)).detach();
                sleep(Duration::from_micros(100)).await;
            }
            most_pending
        });
        let clients: Vec<_> = (0..STREAMS)
            .map(|i| {
                let a = pair.a.clone();
                spawn(async move {
                    let data = pattern(7000 + i as u64, 100 + i);
                    let mut stream = a.open(&(i as u32).to_le_bytes()).await?;
                    let reply = round_trip(&mut stream, &data).await?;
                    assert!(reply == data, "stream {i} echoed the wrong bytes");
                    io::Result::Ok(())
                })
            })
            .collect();
        for (i, client) in clients.into_iter().enumerate() {
            client
                .await
                .unwrap_or_else(|err| panic!("stream {i} failed: {err}"));
        }
        pair.a.close().await.unwrap();
        let most_pending = server.await;
        assert!(
            most_pending <= Config::default().accept_backlog,
            "{most_pending} streams waited to be accepted"
        );
    });
}

#[test]
fn split_halves_read_and_write_from_two_tasks_and_the_write_halfs_drop_is_a_fin() {
    run(async {
        let pair = default_pair().await;
        let _server = spawn_echo_server(pair.b.clone());
        let (mut reader, mut writer) = pair.a.open(b"halves").await.unwrap().split();
        assert_eq!(reader.id(), writer.id());
        let data = pattern(31, 3 << 20);
        let expected = data.clone();
        let read = spawn(async move {
            let mut got = Vec::new();
            reader.read_to_end(&mut got).await.map(|_| got)
        });
        writer.write_all(&data).await.unwrap();
        drop(writer); // FIN after the bytes: the echo server ends its reply
        let got = read.await.unwrap();
        assert!(
            got == expected,
            "got {} of {} bytes",
            got.len(),
            expected.len()
        );
        eventually("the stream left both tables", || {
            pair.a.stats().open_streams == 0 && pair.b.stats().open_streams == 0
        })
        .await;
    });
}

#[test]
fn dropping_the_read_half_stops_the_peers_writes_while_the_write_half_goes_on() {
    run(async {
        let pair = default_pair().await;
        let (reader, mut writer) = pair.a.open(b"").await.unwrap().split();
        let mut peer = pair.b.accept().await.unwrap();
        drop(reader);
        let err = loop {
            if let Err(err) = peer.write_all(&[7; 64 << 10]).await {
                break err;
            }
        };
        assert_eq!(err.kind(), ErrorKind::BrokenPipe, "{err}");
        // Our direction is still open: the peer reads what we write, then EOF.
        writer.write_all(b"still talking").await.unwrap();
        writer.close().await.unwrap();
        let mut got = Vec::new();
        peer.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"still talking");
    });
}

#[test]
fn transfer_100_mb_verified() {
    const TOTAL: u64 = 100 << 20;
    run(async {
        let pair = default_pair().await;
        let a = pair.a.clone();
        let writer = spawn(async move {
            let mut stream = a.open(b"bulk").await?;
            write_pattern(&mut stream, 7, 0, TOTAL).await?;
            stream.close().await
        });
        let mut stream = pair.b.accept().await.unwrap();
        assert_eq!(stream.metadata(), b"bulk");
        let received = read_pattern(&mut stream, 7).await.unwrap();
        writer.await.unwrap();
        assert_eq!(received, TOTAL);
        let stats = pair.b.stats();
        assert_eq!(stats.recv_buffered_bytes, 0);
    });
}

// ----- half-close -----

#[test]
fn half_close_opener_closes_first_acceptor_keeps_writing() {
    run(async {
        let pair = default_pair().await;
        let mut a = pair.a.open(b"").await.unwrap();
        a.write_all(b"request").await.unwrap();
        a.close().await.unwrap();

        let mut b = pair.b.accept().await.unwrap();
        let mut request = Vec::new();
        b.read_to_end(&mut request).await.unwrap();
        assert_eq!(request, b"request");

        // More than the 10 initial credits' worth, so A must keep granting after its FIN.
        let reply = pattern(3, 2 << 20);
        let expected = reply.clone();
        let writer = spawn(async move {
            b.write_all(&reply).await?;
            b.close().await
        });
        let mut got = Vec::new();
        a.read_to_end(&mut got).await.unwrap();
        writer.await.unwrap();
        assert!(got == expected, "reply corrupted ({} bytes)", got.len());
        assert_err(
            a.write(b"x").await,
            ErrorKind::BrokenPipe,
            "closed for writing",
        );
    });
}

#[test]
fn half_close_acceptor_closes_first_opener_keeps_writing() {
    run(async {
        let pair = default_pair().await;
        let mut a = pair.a.open(b"").await.unwrap();
        let mut b = pair.b.accept().await.unwrap();
        b.close().await.unwrap();
        let mut nothing = Vec::new();
        a.read_to_end(&mut nothing).await.unwrap();
        assert!(nothing.is_empty());

        let data = pattern(4, 2 << 20);
        let expected = data.clone();
        let writer = spawn(async move {
            a.write_all(&data).await?;
            a.close().await?;
            io::Result::Ok(a)
        });
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.unwrap();
        writer.await.unwrap();
        assert!(got == expected, "data corrupted ({} bytes)", got.len());
        assert_err(
            b.write(b"x").await,
            ErrorKind::BrokenPipe,
            "closed for writing",
        );
    });
}

// ----- metadata -----

#[test]
fn metadata_round_trips_empty_and_max_and_too_long_fails() {
    run(async {
        let pair = default_pair().await;
        let big = pattern(9, 65_535);

        let empty = pair.a.open(b"").await.unwrap();
        let full = pair.a.open(&big).await.unwrap();
        assert_eq!(empty.metadata(), b"");
        assert_eq!(full.metadata(), &big[..]);

        let err = assert_err(
            pair.a.open(&vec![7; 65_536]).await,
            ErrorKind::InvalidInput,
            "65536",
        );
        assert!(err.to_string().contains("metadata"), "{err}");

        let after = pair.a.open(b"after").await.unwrap();
        for sent in [&empty, &full, &after] {
            let got = pair.b.accept().await.unwrap();
            assert_eq!(got.id(), sent.id());
            assert!(
                got.metadata() == sent.metadata(),
                "metadata of stream {}",
                got.id()
            );
        }

        // And the other way.
        let back = pair.b.open(&big).await.unwrap();
        let got = pair.a.accept().await.unwrap();
        assert_eq!(got.id(), back.id());
        assert!(got.metadata() == &big[..]);
        assert!(pair.a.is_alive() && pair.b.is_alive());
    });
}

// ----- flow control -----

/// Writes the pattern from `pos` until a write stays pending for a while; returns the new
/// position. Fails if `limit` bytes go through without blocking.
async fn write_until_blocked(stream: &mut Stream, seed: u64, pos: u64, limit: u64) -> u64 {
    write_until_blocked_or_failed(stream, seed, pos, limit)
        .await
        .unwrap()
}

/// As [`write_until_blocked`], but a failed write ends it with the error.
async fn write_until_blocked_or_failed(
    stream: &mut Stream,
    seed: u64,
    mut pos: u64,
    limit: u64,
) -> io::Result<u64> {
    let mut source = PatternStream::new(seed);
    loop {
        assert!(
            pos < limit,
            "the writer never blocked although the peer reads nothing ({pos} bytes written)"
        );
        let off = (pos % PatternStream::CHUNK as u64) as usize;
        let chunk = source.slice(pos, PatternStream::CHUNK - off).to_vec();
        match within(Duration::from_millis(500), stream.write(&chunk)).await {
            Some(written) => pos += written? as u64,
            None => return Ok(pos),
        }
    }
}

#[test]
fn stalled_reader_blocks_writer_within_buffers_then_everything_arrives() {
    const TOTAL: u64 = 16 << 20;
    const SEND_BUF: usize = 64 << 10;
    run(async {
        let a_config = Config::default().stream_send_buffer(SEND_BUF);
        let b_config = Config::default().stream_receive_buffer(MIN_RECV);
        let pair = smol_pair(a_config, b_config).await;
        let mut writer = pair.a.open(b"stalled").await.unwrap();
        let mut reader = pair.b.accept().await.unwrap();

        let stalled_at = write_until_blocked(&mut writer, 11, 0, TOTAL).await;
        let (a_stats, b_stats) = (pair.a.stats(), pair.b.stats());
        assert!(
            b_stats.recv_buffered_bytes <= MIN_RECV,
            "receiver buffers {} bytes, above stream_receive_buffer {MIN_RECV}",
            b_stats.recv_buffered_bytes
        );
        assert!(
            a_stats.send_buffered_bytes <= SEND_BUF,
            "sender buffers {} bytes, above stream_send_buffer {SEND_BUF}",
            a_stats.send_buffered_bytes
        );
        // 10 initial credits of at most 65,535 bytes, plus the send buffer.
        assert!(
            stalled_at <= (MIN_RECV + SEND_BUF) as u64,
            "{stalled_at} bytes accepted by write although the reader reads nothing"
        );

        // The stalled stream does not hold up another one.
        let mut other = pair.a.open(b"other").await.unwrap();
        other.write_all(b"ping").await.unwrap();
        other.close().await.unwrap();
        let mut other_b = pair.b.accept().await.unwrap();
        assert_eq!(other_b.metadata(), b"other");
        let mut got = Vec::new();
        other_b.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"ping");
        other_b.write_all(b"pong").await.unwrap();
        other_b.close().await.unwrap();
        got.clear();
        other.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"pong");

        // Nothing moved on the stalled stream meanwhile.
        assert!(pair.b.stats().recv_buffered_bytes <= MIN_RECV);

        // Reading restarts: every byte arrives, in order, and the bounds hold throughout.
        let b = pair.b.clone();
        let monitor = spawn(async move {
            let mut worst = 0;
            while b.stats().open_streams > 0 {
                worst = worst.max(b.stats().recv_buffered_bytes);
                sleep(Duration::from_millis(1)).await;
            }
            worst
        });
        let read = spawn(async move {
            let n = read_pattern(&mut reader, 11).await;
            drop(reader);
            n
        });
        write_pattern(&mut writer, 11, stalled_at, TOTAL)
            .await
            .unwrap();
        writer.close().await.unwrap();
        assert_eq!(read.await.unwrap(), TOTAL);
        drop((writer, other, other_b));
        let worst = monitor.await;
        assert!(
            worst <= MIN_RECV,
            "receiver buffered {worst} bytes on one stream, above stream_receive_buffer"
        );
    });
}

/// Several streams whose application reads nothing: the session's receive buffer, not only
/// each stream's, bounds what the receiver holds, by resetting the streams read longest ago
/// (their writers learn why); the stream that is left delivers everything once it is read.
async fn stalled_readers_bound_the_session_receive_buffer() {
    const STREAMS: u64 = 4;
    const TOTAL: u64 = 3 << 20;
    const SEND_BUF: usize = 64 << 10;
    // Each stream may hold up to MIN_RECV; four of them could hold four times the session's.
    const SESSION_LIMIT: usize = MIN_RECV;
    let a_config = Config::default().stream_send_buffer(SEND_BUF);
    let b_config = Config::default()
        .stream_receive_buffer(MIN_RECV)
        .session_receive_buffer(SESSION_LIMIT);
    let pair = smol_pair(a_config, b_config).await;
    let mut writers = Vec::new();
    for i in 0..STREAMS {
        let mut stream = pair.a.open(&i.to_le_bytes()).await.unwrap();
        // The stream written may itself be the one reset (frames of equal streams tie).
        let pos = write_until_blocked_or_failed(&mut stream, 50 + i, 0, TOTAL)
            .await
            .unwrap_or(0);
        writers.push((stream, pos));
        let buffered = pair.b.stats().recv_buffered_bytes;
        assert!(
            buffered <= SESSION_LIMIT,
            "receiver buffers {buffered} bytes, above session_receive_buffer {SESSION_LIMIT}"
        );
    }
    assert!(pair.a.stats().send_buffered_bytes <= STREAMS as usize * SEND_BUF);

    // The streams that were reset never reach the application; the rest deliver everything.
    let pending = pair.b.stats().pending_accept;
    assert!(
        (1..STREAMS as usize).contains(&pending),
        "{pending} of {STREAMS} streams left: four floors cannot fit one stream's buffer"
    );
    let readers = spawn_pattern_readers(pair.b.clone(), pending as u64, 50);
    let writer_tasks: Vec<_> = writers
        .into_iter()
        .map(|(mut stream, pos)| {
            spawn(async move {
                let seed = 50 + stream_index(&stream);
                write_pattern(&mut stream, seed, pos, TOTAL).await?;
                stream.close().await
            })
        })
        .collect();
    let mut reset = 0;
    for task in writer_tasks {
        if let Err(err) = task.await {
            assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
            assert!(err.to_string().contains("session_receive_buffer"), "{err}");
            reset += 1;
        }
    }
    assert_eq!(reset, STREAMS as usize - pending);
    for (i, result) in readers.await {
        assert_eq!(result.unwrap(), TOTAL, "stream {i}");
    }
    assert!(pair.a.is_alive() && pair.b.is_alive());
}

/// The index a test stream carries in its metadata (see the stalled-reader tests).
fn stream_index(stream: &Stream) -> u64 {
    u64::from_le_bytes(stream.metadata().try_into().unwrap())
}

#[test]
fn stalled_readers_bound_the_session_receive_buffer_streams_one_by_one() {
    run(stalled_readers_bound_the_session_receive_buffer());
}

/// Streams that each read once (so that their windows open wide) and then stall do not fill the
/// session's receive buffer, which would stop every other stream: the windows share it out.
#[test]
fn readers_that_read_once_then_stall_do_not_stop_other_streams() {
    // 20 full windows of 64 frames would hold 2.5 times the session's buffer.
    const STREAMS: u64 = 20;
    const SESSION_LIMIT: usize = 512 * 65_535;
    run(async {
        let b_config = Config::default().session_receive_buffer(SESSION_LIMIT);
        assert_eq!(b_config.stream_receive_buffer / 65_535, 64);
        let pair = smol_pair(Config::default(), b_config).await;
        let mut stalled = Vec::new();
        // One by one, so that the first streams open while they are alone.
        for i in 0..STREAMS {
            let mut writer = pair.a.open(b"").await.unwrap();
            write_pattern(&mut writer, 70 + i, 0, 1).await.unwrap();
            let mut reader = pair.b.accept().await.unwrap();
            let mut first = [0u8; 1];
            reader.read_exact(&mut first).await.unwrap();
            stalled.push((writer, reader));
        }
        let blocked: Vec<_> = stalled
            .into_iter()
            .enumerate()
            .map(|(i, (mut writer, reader))| {
                spawn(async move {
                    write_until_blocked(&mut writer, 70 + i as u64, 1, 64 << 20).await;
                    (writer, reader)
                })
            })
            .collect();
        let mut stalled = Vec::new();
        for task in blocked {
            stalled.push(task.await);
        }
        let buffered = pair.b.stats().recv_buffered_bytes;
        assert!(
            buffered < SESSION_LIMIT,
            "stalled readers hold {buffered} bytes: the session's buffer is full"
        );

        // The stalled streams' send buffers crowd the session (four full ones or more), which
        // leaves another stream a 64 KiB buffer: more than that still moves, in many rounds.
        // The echo is read while it is written, so that the test does not depend on how much
        // the buffers along the way hold: crowded, they may hold less than the 1 MiB sent.
        let crowded = 4 * Config::default().stream_send_buffer;
        assert!(pair.a.stats().send_buffered_bytes >= crowded);
        let _server = spawn_echo_server(pair.b.clone());
        let other = pair.a.open(b"other").await.unwrap();
        let (mut reader, mut writer) = other.split();
        let data = pattern(90, 1 << 20);
        let send = async {
            writer.write_all(&data).await.unwrap();
            writer.close().await.unwrap();
        };
        let mut reply = Vec::new();
        future::zip(send, reader.read_to_end(&mut reply))
            .await
            .1
            .unwrap();
        assert!(reply == data, "the echo differs");
        drop(stalled);
    });
}

/// A driver the test can hold still, as a busy executor might.
struct PausableDriver {
    driver: Driver,
    paused: Arc<AtomicBool>,
    waker: Arc<Mutex<Option<Waker>>>,
}

impl Future for PausableDriver {
    type Output = io::Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.paused.load(Ordering::SeqCst) {
            *self.waker.lock().unwrap() = Some(cx.waker().clone());
            if self.paused.load(Ordering::SeqCst) {
                return Poll::Pending;
            }
        }
        Pin::new(&mut self.driver).poll(cx)
    }
}

/// Several frames of different streams arrive in one burst while the session's receive buffer
/// is nearly full. `Stats` documents `recv_buffered_bytes` as bounded by
/// `session_receive_buffer`: the frames past it reset the stream read longest ago.
#[test]
fn a_burst_of_frames_past_the_session_limit_resets_the_stream_read_longest_ago() {
    const FRAME: usize = 65_535;
    const LIMIT: usize = MIN_RECV; // 655,350 bytes: ten full frames
    run(async {
        let config = Config::default()
            .stream_receive_buffer(MIN_RECV)
            .session_receive_buffer(LIMIT);
        let (mux, driver, mut mock) = mock_peer::mock_pair_unspawned(config).await;
        let paused = Arc::new(AtomicBool::new(false));
        let waker = Arc::new(Mutex::new(None::<Waker>));
        let _driver = spawn(PausableDriver {
            driver,
            paused: paused.clone(),
            waker: waker.clone(),
        });
        mock.handshake().await;

        // Nine full frames on stream 1: just below the limit, so the driver reads on.
        let payload = pattern(77, FRAME);
        let mut first = vec![syn(1, b"")];
        first.extend((0..9).map(|_| psh(1, &payload)));
        mock.send(&concat(&first)).await;
        eventually("nine frames buffered", || {
            mux.stats().recv_buffered_bytes == 9 * FRAME
        })
        .await;

        // While the driver is held still, one full frame on each of four new streams arrives.
        paused.store(true, Ordering::SeqCst);
        let mut burst = Vec::new();
        for id in 2..=5u32 {
            burst.push(syn(id, b""));
            burst.push(psh(id, &payload));
        }
        let burst = concat(&burst);
        let mut tcp = mock.tcp.clone();
        let sender = spawn(async move { tcp.write_all(&burst).await });
        sleep(Duration::from_millis(200)).await;
        paused.store(false, Ordering::SeqCst);
        if let Some(waker) = waker.lock().unwrap().take() {
            waker.wake();
        }
        sender.await.unwrap();
        sleep(Duration::from_millis(200)).await;

        let buffered = mux.stats().recv_buffered_bytes;
        assert!(
            buffered <= LIMIT,
            "{buffered} bytes buffered: session_receive_buffer is {LIMIT}"
        );

        // The third frame of the burst passed the limit: stream 1, never read and holding the
        // most, was reset (its opener learns why) and left the backlog; the others are whole.
        let reset = mock.expect(Command::Fin, 1).await;
        assert!(
            String::from_utf8_lossy(&reset.body).contains("session_receive_buffer"),
            "{reset:?}"
        );
        for id in 2..=5u32 {
            let mut stream = mux.accept().await.unwrap();
            assert_eq!(stream.id(), id);
            let mut got = vec![0u8; FRAME];
            stream.read_exact(&mut got).await.unwrap();
            assert!(got == payload);
        }
        assert!(mux.is_alive());
    });
}

// ----- liveness -----

#[test]
fn ping_rtt_is_measured() {
    run(async {
        let config = Config::default().ping_interval(Some(Duration::from_millis(50)));
        let start = Instant::now();
        let pair = smol_pair(config.clone(), config).await;
        eventually("A measured a round trip", || pair.a.last_rtt().is_some()).await;
        eventually("B measured a round trip", || pair.b.last_rtt().is_some()).await;
        let rtt = pair.a.last_rtt().unwrap();
        assert!(
            rtt <= start.elapsed(),
            "RTT {rtt:?} longer than the session"
        );
        // Several intervals later the session is still up (every PING was answered).
        sleep(Duration::from_millis(300)).await;
        assert!(pair.a.is_alive() && pair.b.is_alive());
        assert!(pair.a.last_rtt().is_some());
    });
}

#[test]
fn pings_repeat_every_interval_with_at_most_one_outstanding() {
    run(async {
        let config = Config::default().ping_interval(Some(Duration::from_millis(50)));
        let (mux, _driver, mut mock) = mock_pair(config).await;
        let first = mock.expect_ping().await;
        assert!(first.smolmux);
        assert_eq!(first.next_ping_in_ms, 50);
        assert_eq!(mux.last_rtt(), None, "no PONG yet");
        mock.send(&mock_peer::pong()).await;

        let second = mock.expect_ping().await;
        assert_eq!(second.next_ping_in_ms, 50);
        assert!(mux.last_rtt().is_some(), "the first PONG was measured");

        // While the second PING is unanswered, no third one is sent.
        match mock.try_next_frame(Duration::from_millis(300)).await {
            Err(err) if err.kind() == ErrorKind::TimedOut => {}
            other => panic!("a PING is outstanding, yet the mux sent {other:?}"),
        }
        mock.send(&mock_peer::pong()).await;
        mock.expect_ping().await;
        assert!(mux.is_alive());
    });
}

#[test]
fn ping_timeout_ends_session_with_timed_out() {
    run(async {
        let config = Config::default()
            .ping_interval(Some(Duration::from_millis(100)))
            .ping_timeout(Duration::from_secs(1));
        let (mux, driver, mut mock) = mock_pair(config).await;
        mock.answer_pings = false;
        mock.expect_ping().await; // never answered
        mock.send(&mock_peer::syn(1, b"victim")).await;
        let mut stream = mux.accept().await.unwrap();
        let mut read = Box::pin(async move { stream.read(&mut [0; 16]).await });
        assert_pending(&mut read, "read").await;
        let mut accept = Box::pin(mux.accept());
        assert_pending(&mut accept, "accept").await;

        assert_err(driver.await, ErrorKind::TimedOut, "ping timeout");
        assert_err(accept.await, ErrorKind::TimedOut, "ping timeout");
        assert_err(read.await, ErrorKind::TimedOut, "ping timeout");
        assert!(!mux.is_alive());
        assert_err(mux.open(b"").await, ErrorKind::TimedOut, "ping timeout");
        mock.expect_eof().await;
    });
}

// ----- failure of the connection -----

#[test]
fn connection_cut_mid_frame_fails_every_pending_operation() {
    const PER_SIDE: u32 = 20;
    const SEND_BUF: usize = 8 << 10;
    run(async {
        let config = Config::default()
            .stream_send_buffer(SEND_BUF)
            .max_frame_body(1024);
        let (mux, driver, mut mock) = mock_pair(config).await;
        mock.handshake().await;
        let syns: Vec<Vec<u8>> = (1..=PER_SIDE).map(|id| syn(id, b"remote")).collect();
        mock.send(&concat(&syns)).await;
        let mut streams = Vec::new();
        for _ in 0..PER_SIDE {
            streams.push(mux.accept().await.unwrap());
        }
        for _ in 0..PER_SIDE {
            streams.push(mux.open(b"local").await.unwrap());
        }
        let drain = mock.spawn_drain();

        // On every stream a read that waits for data and a writer that fills its buffer; the
        // mock grants no credits, so every writer ends up blocked.
        let ops = spawn_pending_ops(streams);
        let acceptor = {
            let mux = mux.clone();
            spawn(async move { mux.accept().await })
        };
        let all_full = 2 * PER_SIDE as usize * SEND_BUF;
        eventually("every writer blocked on a full send buffer", || {
            mux.stats().send_buffered_bytes == all_full
        })
        .await;

        // Half a PSH frame, then the connection ends.
        let mut half = mock_peer::raw_header(1, 0x02, 100, 1);
        half.extend_from_slice(&[0xab; 50]);
        mock.send(&half).await;
        mock.shutdown_write();

        assert_err(driver.await, ErrorKind::UnexpectedEof, "middle of a frame");
        for op in ops {
            assert_err(op.await, ErrorKind::UnexpectedEof, "middle of a frame");
        }
        assert_err(
            acceptor.await,
            ErrorKind::UnexpectedEof,
            "middle of a frame",
        );
        assert_err(
            mux.open(b"").await,
            ErrorKind::UnexpectedEof,
            "middle of a frame",
        );
        drain.await; // the mux hung up
    });
}

/// Accepts `count` streams whose metadata is their index `i` (little-endian u64) and reads each
/// to its end, checking the pattern seeded `seed + i`; yields `(i, bytes read)` per stream.
fn spawn_pattern_readers(
    mux: Mux,
    count: u64,
    seed: u64,
) -> smol::Task<Vec<(u64, io::Result<u64>)>> {
    spawn(async move {
        let mut tasks = Vec::new();
        for _ in 0..count {
            let mut stream = mux.accept().await.unwrap();
            let i = stream_index(&stream);
            tasks.push(spawn(async move {
                (i, read_pattern(&mut stream, seed + i).await)
            }));
        }
        let mut results = Vec::new();
        for task in tasks {
            results.push(task.await);
        }
        results
    })
}

/// On every stream, a read that waits for data and a writer that writes until it blocks: the
/// operations a dying session must fail. Each task's output says how it ended.
fn spawn_pending_ops(streams: Vec<Stream>) -> Vec<smol::Task<io::Result<String>>> {
    let mut ops = Vec::new();
    for (i, stream) in streams.into_iter().enumerate() {
        let (mut reader, mut writer) = futures_lite::io::split(stream);
        ops.push(spawn(async move {
            let mut buf = [0u8; 64];
            reader
                .read(&mut buf)
                .await
                .map(|n| format!("read returned {n}"))
        }));
        ops.push(spawn(async move {
            let chunk = vec![i as u8; 4096];
            loop {
                writer.write_all(&chunk).await?;
            }
        }));
    }
    ops
}

#[test]
fn pending_operations_fail_when_the_peer_socket_is_dropped() {
    const PER_SIDE: usize = 10;
    const SEND_BUF: usize = 16 << 10;
    run(async {
        let a_config = Config::default()
            .stream_send_buffer(SEND_BUF)
            .max_frame_body(4096);
        let Pair {
            a,
            b,
            driver_a,
            driver_b,
        } = smol_pair(a_config, Config::default()).await;
        let mut a_streams = Vec::new();
        let mut b_streams = Vec::new();
        for _ in 0..PER_SIDE {
            a_streams.push(a.open(b"a").await.unwrap());
            b_streams.push(b.accept().await.unwrap());
            b_streams.push(b.open(b"b").await.unwrap());
            a_streams.push(a.accept().await.unwrap());
        }
        let ops = spawn_pending_ops(a_streams);
        let a_accept = {
            let a = a.clone();
            spawn(async move { a.accept().await })
        };
        let b_accept = {
            let b = b.clone();
            spawn(async move { b.accept().await })
        };
        let all_full = 2 * PER_SIDE * SEND_BUF;
        eventually("every writer on A blocked (B reads nothing)", || {
            a.stats().send_buffered_bytes == all_full
        })
        .await;

        // B's driver owns B's socket: cancelling it drops the socket.
        assert!(driver_b.cancel().await.is_none(), "B's driver had ended");
        assert_err(b_accept.await, ErrorKind::BrokenPipe, "driver was dropped");
        assert!(!b.is_alive());

        let ended = driver_a.await;
        let kind = a.open(b"").await.unwrap_err().kind();
        match &ended {
            Ok(()) => assert_eq!(kind, ErrorKind::ConnectionAborted),
            Err(err) => assert_eq!(err.kind(), kind, "{err}"),
        }
        assert!(
            matches!(
                kind,
                ErrorKind::ConnectionAborted
                    | ErrorKind::ConnectionReset
                    | ErrorKind::UnexpectedEof
                    | ErrorKind::BrokenPipe
            ),
            "unexpected kind {kind:?}"
        );
        for op in ops {
            let err = op.await.unwrap_err();
            assert_eq!(err.kind(), kind, "{err}");
        }
        assert_eq!(a_accept.await.unwrap_err().kind(), kind);
        drop(b_streams);
    });
}

#[test]
fn open_after_session_died_fails_at_once() {
    run(async {
        let Pair {
            a,
            b,
            driver_a,
            driver_b,
        } = default_pair().await;
        assert!(driver_b.cancel().await.is_none());
        let ended = driver_a.await;
        assert!(
            ended.as_ref().map_or_else(
                |e| matches!(
                    e.kind(),
                    ErrorKind::ConnectionReset | ErrorKind::UnexpectedEof
                ),
                |_| true
            ),
            "A's driver: {ended:?}"
        );
        assert!(!a.is_alive());
        let mut open = Box::pin(a.open(b"too late"));
        match future::poll_once(&mut open).await {
            Some(Err(_)) => {}
            other => panic!("open on a dead session must fail at once, got {other:?}"),
        }
        let mut accept = Box::pin(a.accept());
        assert!(matches!(future::poll_once(&mut accept).await, Some(Err(_))));
        let mut open_b = Box::pin(b.open(b""));
        match future::poll_once(&mut open_b).await {
            Some(Err(err)) => {
                assert_eq!(err.kind(), ErrorKind::BrokenPipe);
            }
            other => panic!("open on a session whose driver was dropped: {other:?}"),
        }
    });
}

// ----- limits -----

#[test]
fn accept_backlog_overflow_is_refused_with_fin_and_session_goes_on() {
    const BACKLOG: u32 = 8;
    run(async {
        let config = Config::default().accept_backlog(BACKLOG as usize);
        let (mux, _driver, mut mock) = mock_pair(config).await;
        mock.handshake().await;
        let syns: Vec<Vec<u8>> = (0..BACKLOG + 5)
            .map(|i| syn(100 + i, format!("s{i}").as_bytes()))
            .collect();
        mock.send(&concat(&syns)).await;
        for i in BACKLOG..BACKLOG + 5 {
            let refusal = mock.expect(Command::Fin, 100 + i).await;
            assert_eq!(
                refusal.body,
                b"stream refused: accept backlog full"[..],
                "a refusal is a FIN with the reason"
            );
        }
        assert!(mux.is_alive());
        let stats = mux.stats();
        assert_eq!(stats.pending_accept, BACKLOG as usize);
        assert_eq!(stats.open_streams, BACKLOG as usize);

        let mut accepted = Vec::new();
        for i in 0..BACKLOG {
            let stream = mux.accept().await.unwrap();
            assert_eq!(stream.id(), 100 + i);
            assert_eq!(stream.metadata(), format!("s{i}").as_bytes());
            accepted.push(stream);
        }
        // With room again, a new stream is taken and works.
        mock.send(&concat(&[syn(500, b"late"), psh(500, b"data")]))
            .await;
        let mut late = mux.accept().await.unwrap();
        assert_eq!(late.id(), 500);
        let mut buf = [0u8; 4];
        late.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"data");
        late.write_all(b"back").await.unwrap();
        late.flush().await.unwrap();
        let reply = mock.expect(Command::Psh, 500).await;
        assert_eq!(reply.body, b"back");
    });
}

#[test]
fn max_streams_overflow_is_refused_with_fin_and_open_waits_for_a_free_slot() {
    run(async {
        let config = Config::default().max_streams(4).accept_backlog(64);
        let (mux, _driver, mut mock) = mock_pair(config).await;
        mock.handshake().await;
        let syns: Vec<Vec<u8>> = (1..=9).map(|id| syn(id, b"")).collect();
        mock.send(&concat(&syns)).await;
        for id in 5..=9 {
            let refusal = mock.expect(Command::Fin, id).await;
            assert_eq!(refusal.body, b"stream refused: max_streams reached"[..]);
        }
        assert!(mux.is_alive());
        assert_eq!(mux.stats().open_streams, 4);
        assert_err(mux.try_open(b""), ErrorKind::WouldBlock, "max_streams");
        let mut waiting = Box::pin(mux.open(b"new"));
        assert_pending(&mut waiting, "open past max_streams").await;

        // Close stream 1 in both directions: room for one more, which the waiting open takes.
        let first = mux.accept().await.unwrap();
        assert_eq!(first.id(), 1);
        drop(first);
        let stop = mock.expect(Command::Nop, 1).await;
        assert_eq!(
            stop.body,
            [1],
            "STOP_SENDING: the mock's direction is still open"
        );
        mock.expect(Command::Fin, 1).await;
        mock.send(&fin(1)).await;
        let opened = waiting.await.unwrap();
        let syn_frame = mock.expect(Command::Syn, opened.id()).await;
        assert_eq!(syn_frame.body, b"new");

        // Full again.
        mock.send(&syn(10, b"")).await;
        mock.expect(Command::Fin, 10).await;
        assert!(mux.is_alive());
    });
}

#[test]
fn refused_opens_fail_with_the_reason_and_free_their_slots() {
    run(async {
        let b_config = Config::default().accept_backlog(2);
        let pair = smol_pair(Config::default(), b_config).await;
        let mut streams = Vec::new();
        for i in 0u8..5 {
            streams.push(pair.a.open(&[i]).await.unwrap());
        }
        for stream in &mut streams[2..] {
            let mut buf = Vec::new();
            assert_err(
                stream.read_to_end(&mut buf).await.map(drop),
                ErrorKind::ConnectionRefused,
                "accept backlog full",
            );
            // Writes fail too, instead of waiting for credits that never come.
            assert_err(
                stream.write_all(&[0; 1 << 20]).await,
                ErrorKind::ConnectionRefused,
                "accept backlog full",
            );
        }
        for i in 0u8..2 {
            assert_eq!(pair.b.accept().await.unwrap().metadata(), &[i]);
        }
        streams.truncate(2);
        eventually("the refused streams left the opener's table", || {
            pair.a.stats().open_streams == 2
        })
        .await;
        assert!(pair.a.is_alive() && pair.b.is_alive());
    });
}

// ----- abort, drop, close -----

#[test]
fn abort_reason_surfaces_on_the_peer() {
    const REASON: &str = "client gave up: reason #42";
    run(async {
        let pair = default_pair().await;
        let mut a = pair.a.open(b"").await.unwrap();
        a.write_all(b"some bytes").await.unwrap();
        let mut b = pair.b.accept().await.unwrap();
        let mut buf = [0u8; 10];
        b.read_exact(&mut buf).await.unwrap();

        {
            let mut read = Box::pin(b.read(&mut buf));
            assert_pending(&mut read, "read").await;
            a.abort(REASON);
            assert_err(read.await, ErrorKind::ConnectionReset, REASON);
        }
        assert_err(b.read(&mut buf).await, ErrorKind::ConnectionReset, REASON);
        assert_err(b.write_all(b"x").await, ErrorKind::ConnectionReset, REASON);
        assert_err(b.close().await, ErrorKind::ConnectionReset, REASON);

        drop((a, b));
        eventually("the aborted stream left both tables", || {
            pair.a.stats().open_streams == 0 && pair.b.stats().open_streams == 0
        })
        .await;
        assert!(pair.a.is_alive() && pair.b.is_alive());
        // Other streams are unaffected.
        let _server = spawn_echo_server(pair.b.clone());
        let mut stream = pair.a.open(b"").await.unwrap();
        assert_eq!(
            round_trip(&mut stream, b"still fine").await.unwrap(),
            b"still fine"
        );
    });
}

#[test]
fn abort_fails_later_local_operations_with_connection_reset() {
    run(async {
        let pair = default_pair().await;
        let mut a = pair.a.open(b"").await.unwrap();
        a.write_all(b"x").await.unwrap();
        let mut b = pair.b.accept().await.unwrap();
        let mut buf = [0u8; 8];
        b.read_exact(&mut buf[..1]).await.unwrap();
        a.abort("local reason");
        // Wait until the abort is on the wire (the peer sees it), then use the aborted stream.
        assert_err(
            b.read(&mut buf).await,
            ErrorKind::ConnectionReset,
            "local reason",
        );
        assert_err(
            a.read(&mut buf).await,
            ErrorKind::ConnectionReset,
            "aborted",
        );
        assert_err(a.write(b"x").await, ErrorKind::ConnectionReset, "aborted");
    });
}

#[test]
fn dropping_a_stream_sends_fin_after_written_bytes() {
    run(async {
        let pair = default_pair().await;
        let data = pattern(5, 1 << 20);
        let expected = data.clone();
        let a = pair.a.clone();
        let writer = spawn(async move {
            let mut stream = a.open(b"dropped").await?;
            stream.write_all(&data).await?;
            drop(stream); // no close, no flush
            io::Result::Ok(())
        });
        let mut b = pair.b.accept().await.unwrap();
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.unwrap();
        writer.await.unwrap();
        assert!(
            got == expected,
            "got {} of {} bytes",
            got.len(),
            expected.len()
        );

        // A's drop told B to stop sending (STOP_SENDING came before A's FIN): B's writes fail,
        // and as nothing B wrote was lost, its close succeeds.
        let err = b.write_all(&pattern(6, 1 << 20)).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BrokenPipe, "{err}");
        assert!(err.to_string().contains("stopped reading"), "{err}");
        b.close().await.unwrap();
        drop(b);
        eventually("the stream left both tables", || {
            pair.a.stats().open_streams == 0 && pair.b.stats().open_streams == 0
        })
        .await;
        assert_eq!(pair.a.stats().recv_buffered_bytes, 0);
    });
}

#[test]
fn mux_close_fins_every_stream_after_its_queued_bytes() {
    const STREAMS: u64 = 5;
    const LEN: u64 = 800_000;
    run(async {
        // A send buffer large enough that every write completes while B reads nothing.
        let a_config = Config::default().stream_send_buffer(1 << 20);
        let pair = smol_pair(a_config, Config::default()).await;
        let mut streams = Vec::new();
        for i in 0..STREAMS {
            let mut stream = pair.a.open(&i.to_le_bytes()).await.unwrap();
            write_pattern(&mut stream, 100 + i, 0, LEN).await.unwrap();
            streams.push(stream);
        }
        // 10 credits carry at most 655,350 bytes per stream: the rest is still queued.
        assert!(pair.a.stats().send_buffered_bytes > 0);

        let mut close = Box::pin(pair.a.close());
        assert_pending(&mut close, "close with queued bytes").await;
        assert_err(
            pair.a.open(b"late").await,
            ErrorKind::NotConnected,
            "closing",
        );

        let b = pair.b.clone();
        let readers = spawn_pattern_readers(b, STREAMS, 100);
        close.await.unwrap();
        for (i, result) in readers.await {
            assert_eq!(result.unwrap(), LEN, "stream {i}");
        }
        // Closing, or closed by now (B hung up after reading A's EOF): either way no stream.
        let err = pair.a.open(b"later").await.unwrap_err();
        assert!(
            matches!(
                err.kind(),
                ErrorKind::NotConnected | ErrorKind::ConnectionAborted
            ),
            "{err:?}"
        );
        assert!(pair.a.accept().await.is_err());
        drop(streams);
        // B read EOF on the connection and ended cleanly; then A read B's EOF.
        pair.driver_b.await.unwrap();
        pair.driver_a.await.unwrap();
    });
}

#[test]
fn invalid_config_fails_driver_and_every_operation_with_invalid_input() {
    run(async {
        let cases = [
            (Config::default().max_streams(0), "max_streams"),
            (
                Config::default().stream_receive_buffer(1000),
                "stream_receive_buffer",
            ),
        ];
        for (config, name) in cases {
            let (x, _y) = tcp_pair().await;
            let (mux, driver) = Mux::new(x.clone(), x, config);
            assert!(!mux.is_alive());
            assert_err(mux.open(b"").await, ErrorKind::InvalidInput, name);
            assert_err(mux.accept().await, ErrorKind::InvalidInput, name);
            assert_err(mux.close().await, ErrorKind::InvalidInput, name);
            assert_err(spawn(driver).await, ErrorKind::InvalidInput, name);
        }
    });
}
