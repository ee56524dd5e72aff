//! How streams and sessions end, between two smolmux peers over loopback TCP: abort after a
//! half-close, dropping a stream (STOP_SENDING), dropping every handle, both sides closing (smol
//! and async-std), control traffic beside streams nobody reads, extreme durations in `Config`,
//! `close_timeout`, GOAWAY, and refused streams.
//!
//! Waiting: something that should happen at once is given [`STUCK`] (see [`promptly`]), far more
//! than it needs on any machine, so a missing behaviour fails with a message naming it instead of
//! at the 60 s hang guard. No assertion compares a duration.

mod support;

use std::future::Future;
use std::io::{self, ErrorKind};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_lite::future::{self, FutureExt as _};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use smolmux::{Config, Mux, Stream};
use support::*;

/// How long something that should happen at once may take before the test calls it a hang: far
/// above the milliseconds it takes, so a noisy machine cannot trip it, and far below the hang
/// guard, so that a missing behaviour fails with a message that names it.
const STUCK: Duration = Duration::from_secs(10);

/// Awaits `fut`, failing the test if it has not finished within [`STUCK`].
async fn promptly<T>(what: &str, fut: impl Future<Output = T>) -> T {
    within(STUCK, fut)
        .await
        .unwrap_or_else(|| panic!("{what}: still waiting after {STUCK:?} (it hangs)"))
}

/// Asserts that `err` is of `kind` and its message contains `needle`.
#[track_caller]
fn assert_error(err: io::Error, kind: ErrorKind, needle: &str) {
    assert_err(Err::<(), _>(err), kind, needle);
}

/// Asserts that a driver resolved `Ok(())`, naming the side.
#[track_caller]
fn assert_clean_end(side: &str, ended: io::Result<()>) {
    if let Err(err) = ended {
        panic!("{side}'s driver should resolve Ok(()) after an orderly end, got {err:?}");
    }
}

/// Writes 64 KiB chunks to `stream` until a write fails; returns the stream and the error.
async fn write_until_error(mut stream: Stream, seed: u64) -> (Stream, io::Error) {
    let chunk = pattern(seed, 64 << 10);
    loop {
        if let Err(err) = stream.write_all(&chunk).await {
            return (stream, err);
        }
    }
}

/// Waits until B's writer on the pair's one stream waits for A (B's send buffer is full) and A
/// has received some of its bytes: so A has read B's start-up PING, which says B speaks smolmux.
async fn wait_until_blocked_on_a(pair: &Pair) {
    let send_buffer = Config::default().stream_send_buffer;
    eventually("B's writer waits for A, and A received bytes", || {
        pair.b.stats().send_buffered_bytes >= send_buffer && pair.a.stats().recv_buffered_bytes > 0
    })
    .await;
}

// ----- aborting and dropping streams -----

/// The request/response shape: A sends a request and half-closes, B answers with more than the
/// windows hold, and A gives up. Before, an abort after our own FIN stayed local: nothing told
/// B, whose writer waited for credits for ever.
#[test]
fn abort_after_half_close_fails_the_peers_pending_and_later_writes() {
    const REASON: &str = "client cancelled";
    run(async {
        let pair = default_pair().await;
        let mut a = pair.a.open(b"request").await.unwrap();
        a.write_all(b"GET /big").await.unwrap();
        a.close().await.unwrap();

        let mut b = pair.b.accept().await.unwrap();
        let mut request = Vec::new();
        b.read_to_end(&mut request).await.unwrap();
        assert_eq!(request, b"GET /big");

        // A reads nothing, so B's writer fills A's window and its own send buffer, then waits.
        let writer = spawn(write_until_error(b, 1));
        wait_until_blocked_on_a(&pair).await;

        a.abort(REASON);
        let (mut b, err) = promptly("B's pending write after A's abort", writer).await;
        assert_error(err, ErrorKind::ConnectionReset, REASON);
        assert_err(
            b.write_all(b"more").await,
            ErrorKind::ConnectionReset,
            REASON,
        );

        drop((a, b));
        eventually("the aborted stream left both tables", || {
            pair.a.stats().open_streams == 0 && pair.b.stats().open_streams == 0
        })
        .await;
        assert!(pair.a.is_alive() && pair.b.is_alive());
    });
}

/// Before, a dropped stream's incoming data was discarded and credited back, so the peer's
/// writer never learned that nobody reads: it wrote into the void for ever.
#[test]
fn dropping_a_stream_fails_the_peers_writes_with_broken_pipe() {
    run(async {
        let pair = default_pair().await;
        let a = pair.a.open(b"").await.unwrap();
        let b = pair.b.accept().await.unwrap();

        let writer = spawn(write_until_error(b, 2));
        wait_until_blocked_on_a(&pair).await;

        drop(a);
        let (mut b, err) = promptly("B's pending write after A dropped its stream", writer).await;
        assert_error(err, ErrorKind::BrokenPipe, "stopped reading");
        assert_err(
            b.write(b"x").await,
            ErrorKind::BrokenPipe,
            "stopped reading",
        );
        // A's direction ended gracefully: B reads EOF.
        let mut rest = Vec::new();
        let n = promptly("B's read to EOF", b.read_to_end(&mut rest))
            .await
            .unwrap();
        assert_eq!(n, 0);

        drop(b);
        eventually("the stream left both tables", || {
            pair.a.stats().open_streams == 0 && pair.b.stats().open_streams == 0
        })
        .await;
        assert!(pair.a.is_alive() && pair.b.is_alive());
    });
}

/// Dropping is a graceful end of our direction: what was written before the drop arrives, then
/// EOF; and the peer learns, before that EOF, that nobody reads its direction any more.
#[test]
fn bytes_written_before_a_drop_arrive_then_eof_and_the_peer_may_no_longer_write() {
    // More than the 10 initial credits carry, so the reader's grants must still count.
    const LEN: u64 = (1 << 20) + 12_345;
    run(async {
        let pair = default_pair().await;
        let a = pair.a.clone();
        let writer = spawn(async move {
            let mut stream = a.open(b"dropped").await?;
            write_pattern(&mut stream, 3, 0, LEN).await?;
            drop(stream); // no flush, no close
            io::Result::Ok(())
        });
        let mut b = pair.b.accept().await.unwrap();
        let received = promptly("B's read to EOF", read_pattern(&mut b, 3))
            .await
            .unwrap();
        writer.await.unwrap();
        assert_eq!(received, LEN, "B read the wrong number of bytes");

        // The stop signal goes before A's FIN, so B knows by now.
        assert_err(
            b.write_all(b"reply nobody reads").await,
            ErrorKind::BrokenPipe,
            "stopped reading",
        );
        drop(b);
        eventually("the stream left both tables", || {
            pair.a.stats().open_streams == 0 && pair.b.stats().open_streams == 0
        })
        .await;
        assert!(pair.a.is_alive() && pair.b.is_alive());
    });
}

// ----- ending sessions -----

/// A opens a stream that B accepts and keeps, idle; then A drops the stream and its `Mux`. With
/// `settled`, B first sends a byte on the stream and A reads it, so A has certainly read B's
/// start-up PING (which says B speaks smolmux) before the drop.
async fn dropping_every_handle_ends_both_sessions(settled: bool) {
    let Pair {
        a,
        b,
        driver_a,
        driver_b,
    } = default_pair().await;
    let mut a_stream = a.open(b"idle").await.unwrap();
    let mut kept = b.accept().await.unwrap();
    if settled {
        kept.write_all(b"!").await.unwrap();
        kept.flush().await.unwrap();
        let mut byte = [0u8; 1];
        a_stream.read_exact(&mut byte).await.unwrap();
    }

    drop(a_stream);
    drop(a);

    let mut rest = Vec::new();
    let n = promptly("B's kept stream reading EOF", kept.read_to_end(&mut rest))
        .await
        .unwrap();
    assert_eq!(n, 0);
    assert_clean_end("A", promptly("A's driver", driver_a).await);
    assert_clean_end("B", promptly("B's driver", driver_b).await);
    assert!(!b.is_alive());
    drop((kept, b));
}

/// Before, A's stream stayed in A's table while B's direction was open, so A's session never
/// ended once its handles were gone.
#[test]
fn dropping_every_handle_ends_both_sessions_while_the_peer_holds_a_stream() {
    run(dropping_every_handle_ends_both_sessions(true));
}

/// The same, with the drop right after B accepted: A may not have read B's start-up PING yet,
/// and must still tell B to stop sending once it learns that B speaks smolmux.
#[test]
fn dropping_every_handle_right_after_the_open_ends_both_sessions_all_the_same() {
    run(dropping_every_handle_ends_both_sessions(false));
}

/// Both sides close, B 50 ms after A. Before, B saw A's EOF first, its session ended with
/// `ConnectionAborted`, and B's own `close` failed with it.
#[test]
fn both_sides_closing_deliver_every_byte_and_end_cleanly() {
    const TOTAL: u64 = 2 << 20;
    run(async {
        let Pair {
            a,
            b,
            driver_a,
            driver_b,
        } = default_pair().await;
        let reader = {
            let b = b.clone();
            spawn(async move {
                let mut stream = b.accept().await?;
                read_pattern(&mut stream, 4).await
            })
        };
        let mut stream = a.open(b"bulk").await.unwrap();
        write_pattern(&mut stream, 4, 0, TOTAL).await.unwrap();
        // `stream` stays open: A's close is what ends it.
        let a_close = {
            let a = a.clone();
            spawn(async move { a.close().await })
        };
        sleep(Duration::from_millis(50)).await;
        let b_close = {
            let b = b.clone();
            spawn(async move { b.close().await })
        };

        let received = promptly("B's reader", reader).await.unwrap();
        assert_eq!(received, TOTAL, "B read the wrong number of bytes");
        if let Err(err) = promptly("A's close", a_close).await {
            panic!("A's close should return Ok(()), got {err:?}");
        }
        if let Err(err) = promptly("B's close", b_close).await {
            panic!("B's close should return Ok(()), got {err:?}");
        }
        assert_clean_end("A", promptly("A's driver", driver_a).await);
        assert_clean_end("B", promptly("B's driver", driver_b).await);
        drop(stream);
    });
}

/// async-std's `TcpStream::close` only flushes, so the session must end without the transport's
/// EOF. Before, B never learned of A's close: its accept loop waited for ever.
#[async_std::test]
async fn both_sides_closing_end_the_session_over_async_std_without_transport_eof() {
    hang_guard(async {
        let AsyncStdPair {
            a,
            b,
            driver_a,
            driver_b,
        } = async_std_pair(Config::default(), Config::default()).await;
        let acceptor = {
            let b = b.clone();
            async_std::task::spawn(async move {
                loop {
                    match b.accept().await {
                        Ok(stream) => {
                            async_std::task::spawn(echo(stream));
                        }
                        Err(err) => return err,
                    }
                }
            })
        };
        let mut stream = a.open(b"echo").await.unwrap();
        let data = pattern(5, 100_000);
        let reply = promptly("the echo", round_trip(&mut stream, &data))
            .await
            .unwrap();
        assert!(reply == data, "the echo differs");
        drop(stream);

        let a_close = {
            let a = a.clone();
            async_std::task::spawn(async move { a.close().await })
        };
        let _accept_error = promptly("B's accept loop seeing A's close", acceptor).await;
        if let Err(err) = promptly("B's close", b.close()).await {
            panic!("B's close should return Ok(()), got {err:?}");
        }
        if let Err(err) = promptly("A's close", a_close).await {
            panic!("A's close should return Ok(()), got {err:?}");
        }
        assert_clean_end("A", promptly("A's driver", driver_a).await);
        assert_clean_end("B", promptly("B's driver", driver_b).await);
    })
    .await;
}

// ----- control traffic beside streams nobody reads -----

/// 240 streams whose application never reads carry up to 10 frames each before any grant,
/// 150 MiB in all, more than B's 64 MiB session buffer. Before, B's driver stopped reading the
/// connection once the buffer was full, so PINGs went unanswered and both sessions timed out.
/// Now B resets the streams it cannot hold, and everything else goes on.
#[test]
fn streams_nobody_reads_never_stop_pings_or_a_fresh_stream() {
    const STREAMS: usize = 240;
    const PER_STREAM: usize = 1 << 20;
    const FRESH: &[u8] = b"fresh";
    run(async {
        let config = Config::default()
            .ping_interval(Some(Duration::from_millis(200)))
            .ping_timeout(Duration::from_secs(1));
        let limit = config.session_receive_buffer;
        let pair = smol_pair(config.clone(), config).await;

        // B accepts every stream; it echoes the fresh one and never reads the others.
        let unread = Arc::new(Mutex::new(Vec::new()));
        let _acceptor = {
            let b = pair.b.clone();
            let unread = unread.clone();
            spawn(async move {
                while let Ok(stream) = b.accept().await {
                    if stream.metadata() == FRESH {
                        spawn(echo(stream)).detach();
                    } else {
                        unread.lock().unwrap().push(stream);
                    }
                }
            })
        };
        let stop = Arc::new(AtomicBool::new(false));
        let monitor = {
            let b = pair.b.clone();
            let stop = stop.clone();
            spawn(async move {
                let mut worst = 0;
                while !stop.load(Ordering::SeqCst) {
                    worst = worst.max(b.stats().recv_buffered_bytes);
                    sleep(Duration::from_millis(1)).await;
                }
                worst.max(b.stats().recv_buffered_bytes)
            })
        };

        let data: Arc<[u8]> = pattern(6, PER_STREAM).into();
        let errors = Arc::new(Mutex::new(Vec::new()));
        let mut writers = Vec::new();
        for i in 0..STREAMS {
            let mut stream = promptly("A's open", pair.a.open(format!("unread {i}").as_bytes()))
                .await
                .unwrap();
            let (data, errors) = (data.clone(), errors.clone());
            writers.push(spawn(async move {
                if let Err(err) = stream.write_all(&data).await {
                    errors.lock().unwrap().push(err);
                }
                stream
            }));
        }

        // Several ping intervals, each PING answered within its timeout or a session dies.
        sleep(Duration::from_secs(3)).await;
        assert!(
            pair.a.is_alive() && pair.b.is_alive(),
            "a session died while streams went unread (A alive: {}, B alive: {})",
            pair.a.is_alive(),
            pair.b.is_alive()
        );

        let mut fresh = pair.a.open(FRESH).await.unwrap();
        let message = pattern(7, 64 << 10);
        let reply = promptly("the fresh stream's echo", round_trip(&mut fresh, &message))
            .await
            .unwrap();
        assert!(reply == message, "the fresh stream's echo differs");
        assert!(pair.a.is_alive() && pair.b.is_alive());

        stop.store(true, Ordering::SeqCst);
        let worst = monitor.await;
        assert!(
            worst <= limit,
            "B buffered {worst} bytes, above session_receive_buffer + one frame ({limit})"
        );
        for err in errors.lock().unwrap().iter() {
            assert_eq!(
                err.kind(),
                ErrorKind::ConnectionReset,
                "a write on an unread stream failed otherwise than by a reset: {err}"
            );
        }
        drop(writers);
    });
}

/// Many small echoes at once at the default settings: none of them is reset or refused.
#[test]
fn two_hundred_concurrent_streams_echo_16_kib_each_at_default_settings() {
    const STREAMS: usize = 200;
    run(async {
        let pair = default_pair().await;
        let _server = spawn_echo_server(pair.b.clone());
        let clients: Vec<_> = (0..STREAMS)
            .map(|i| {
                let a = pair.a.clone();
                spawn(async move {
                    let data = pattern(100 + i as u64, 16 << 10);
                    let mut stream = a.open(format!("echo {i}").as_bytes()).await?;
                    let reply = round_trip(&mut stream, &data).await?;
                    assert!(reply == data, "stream {i} echoed the wrong bytes");
                    io::Result::Ok(())
                })
            })
            .collect();
        for (i, client) in clients.into_iter().enumerate() {
            promptly("an echo", client)
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

// ----- durations in Config -----

/// A driver's outcome, with a panic turned into its message.
type Outcome = Result<io::Result<()>, String>;

async fn catch_panic(driver: smolmux::Driver) -> Outcome {
    AssertUnwindSafe(driver)
        .catch_unwind()
        .await
        .map_err(|panic| {
            panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".into())
        })
}

#[track_caller]
fn assert_driver_ok(side: &str, outcome: Option<Outcome>) {
    match outcome {
        Some(Ok(Ok(()))) => {}
        Some(Ok(Err(err))) => panic!("{side}'s driver should resolve Ok(()), got {err:?}"),
        Some(Err(panic)) => panic!("{side}'s driver panicked: {panic}"),
        None => panic!("{side}'s driver still runs {STUCK:?} after the close"),
    }
}

/// Checks that `config` is valid, and that two sessions with it echo and close, their drivers
/// resolving `Ok` (a duration added to the clock must not overflow it).
fn a_session_with_echoes_and_closes(config: Config) {
    if let Err(err) = config.validate() {
        panic!("{config:?} should be valid: {err}");
    }
    run(async move {
        let (x, y) = tcp_pair().await;
        let (a, driver_a) = Mux::new(x.clone(), x, config.clone());
        let (b, driver_b) = Mux::new(y.clone(), y, config);
        let driver_a = spawn(catch_panic(driver_a));
        let driver_b = spawn(catch_panic(driver_b));
        let _server = spawn_echo_server(b);
        // Not an assertion: time for the start-up PINGs (four round trips) to be answered, so
        // that the next PING is scheduled from the last PONG before the echo and the close.
        sleep(Duration::from_millis(200)).await;

        let data = pattern(8, 200_000);
        let echoed = within(STUCK, async {
            let mut stream = a.open(b"echo").await?;
            round_trip(&mut stream, &data).await
        })
        .await;
        let closed = within(STUCK, a.close()).await;
        // A panicking driver explains a failed echo or close: report it first.
        assert_driver_ok("A", within(STUCK, driver_a).await);
        assert_driver_ok("B", within(STUCK, driver_b).await);
        match echoed {
            Some(Ok(reply)) => assert!(reply == data, "the echo differs"),
            Some(Err(err)) => panic!("the echo failed: {err:?}"),
            None => panic!("the echo still runs after {STUCK:?}"),
        }
        match closed {
            Some(Ok(())) => {}
            Some(Err(err)) => panic!("A's close should return Ok(()), got {err:?}"),
            None => panic!("A's close still runs after {STUCK:?}"),
        }
    });
}

/// Before, the PING deadline (`sent + ping_timeout`) overflowed the clock and the driver
/// panicked at its first PING.
#[test]
fn a_ping_timeout_of_duration_max_is_valid_and_never_overflows_the_clock() {
    a_session_with_echoes_and_closes(Config::default().ping_timeout(Duration::MAX));
}

/// Before, scheduling the next PING (`now + ping_interval`) overflowed the clock and the driver
/// panicked once the start-up PINGs were answered.
#[test]
fn a_ping_interval_of_duration_max_is_valid_and_never_overflows_the_clock() {
    a_session_with_echoes_and_closes(Config::default().ping_interval(Some(Duration::MAX)));
}

#[test]
fn a_close_timeout_of_duration_max_is_valid_and_never_overflows_the_clock() {
    a_session_with_echoes_and_closes(Config::default().close_timeout(Duration::MAX));
}

// ----- close_timeout, GOAWAY, refusals -----

/// B holds its direction of a stream open through A's close: at A's `close_timeout` the stream
/// is aborted, A's `close` says so, and the session ends anyway.
#[test]
fn close_timeout_aborts_the_streams_left_open_and_close_reports_timed_out() {
    run(async {
        let a_config = Config::default().close_timeout(Duration::from_millis(300));
        let Pair {
            a,
            b,
            driver_a,
            driver_b,
        } = smol_pair(a_config, Config::default()).await;
        let mut a_stream = a.open(b"held").await.unwrap();
        a_stream.write_all(b"hello").await.unwrap();
        a_stream.flush().await.unwrap();
        let mut b_stream = b.accept().await.unwrap();
        let mut hello = [0u8; 5];
        b_stream.read_exact(&mut hello).await.unwrap();
        assert_eq!(&hello, b"hello");

        match promptly("A's close", a.close()).await {
            Ok(()) => panic!("A's close returned Ok(()) although B held a stream open"),
            Err(err) => assert_error(err, ErrorKind::TimedOut, "close_timeout"),
        }

        // B's reads return EOF (A's FIN) until A's abort arrives, then fail; so do its writes.
        let mut buf = [0u8; 16];
        let err = promptly("B's reads failing after A's close_timeout", async {
            loop {
                match b_stream.read(&mut buf).await {
                    Err(err) => return err,
                    Ok(_) => sleep(Duration::from_millis(5)).await,
                }
            }
        })
        .await;
        assert_error(err, ErrorKind::ConnectionReset, "");
        assert_err(
            b_stream.write_all(b"too late").await,
            ErrorKind::ConnectionReset,
            "",
        );

        assert_clean_end("A", promptly("A's driver", driver_a).await);
        let _b_ended = promptly("B's driver", driver_b).await;
        drop((a_stream, b_stream, b));
    });
}

/// Once A's close (its GOAWAY) has reached B, B opens nothing more and hands out only the
/// streams already in its backlog; the streams in use go on. Before, B learned of A's close
/// only at the connection's EOF, and then its session had ended (`ConnectionAborted`).
#[test]
fn after_the_peers_close_open_fails_with_not_connected_and_accept_drains_the_backlog() {
    run(async {
        let Pair {
            a,
            b,
            driver_a,
            driver_b,
        } = default_pair().await;
        let mut a_held = a.open(b"held").await.unwrap();
        let mut b_held = b.accept().await.unwrap();
        let mut a_queued = a.open(b"queued").await.unwrap();
        a_queued.write_all(b"queued data").await.unwrap();
        a_queued.flush().await.unwrap();
        eventually("B has the second stream in its backlog", || {
            b.stats().pending_accept == 1
        })
        .await;

        let a_close = {
            let a = a.clone();
            spawn(async move { a.close().await })
        };
        // Probes opened before the close reaches B are refused by A; dropping them is enough.
        let mut refused = None;
        eventually("A's close reached B (B's open fails)", || {
            match future::block_on(future::poll_once(b.open(b"probe"))) {
                Some(Err(err)) => {
                    refused = Some(err);
                    true
                }
                // Opened (the probe is dropped here) or waiting to open.
                Some(Ok(_)) | None => false,
            }
        })
        .await;
        assert_error(refused.unwrap(), ErrorKind::NotConnected, "");

        let mut queued = promptly("B's accept of the queued stream", b.accept())
            .await
            .unwrap();
        assert_eq!(queued.metadata(), b"queued");
        let mut got = Vec::new();
        queued.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"queued data");
        assert_err(
            promptly("B's accept with an empty backlog", b.accept()).await,
            ErrorKind::NotConnected,
            "",
        );

        // The stream in use goes on: A's close ended A's direction, B's is still open.
        let mut nothing = Vec::new();
        assert_eq!(b_held.read_to_end(&mut nothing).await.unwrap(), 0);
        b_held.write_all(b"still here").await.unwrap();
        b_held.close().await.unwrap();
        let mut reply = Vec::new();
        promptly(
            "A's read on the held stream",
            a_held.read_to_end(&mut reply),
        )
        .await
        .unwrap();
        assert_eq!(reply, b"still here");
        drop(queued);

        if let Err(err) = promptly("A's close", a_close).await {
            panic!("A's close should return Ok(()) once the streams are done, got {err:?}");
        }
        assert_clean_end("A", promptly("A's driver", driver_a).await);
        assert_clean_end("B", promptly("B's driver", driver_b).await);
        drop((a_held, a_queued, b_held));
    });
}

#[test]
fn a_refused_stream_fails_its_reads_with_connection_refused() {
    run(async {
        let b_config = Config::default().accept_backlog(1);
        let pair = smol_pair(Config::default(), b_config).await;
        let mut streams = Vec::new();
        for i in 0u8..3 {
            streams.push(promptly("A's open", pair.a.open(&[i])).await.unwrap());
        }
        // The first SYN fills B's backlog; the other two are refused.
        for stream in &mut streams[1..] {
            let mut buf = [0u8; 16];
            let read = promptly("a read on a refused stream", stream.read(&mut buf)).await;
            assert_err(read, ErrorKind::ConnectionRefused, "refused");
        }
        let first = pair.b.accept().await.unwrap();
        assert_eq!(first.metadata(), &[0]);
        assert!(pair.a.is_alive() && pair.b.is_alive());
    });
}
