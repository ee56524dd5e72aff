//! smolmux talking to smolmux in the Go smux dialects (`Protocol::SmuxV1` and `SmuxV2`) over
//! loopback TCP: echo both ways, stream ids by role, half-close, abort (a FIN, and what
//! arrives after it discarded), many streams, the receive bounds of each version, keepalive
//! and its timeout. Every test runs in both versions.

mod support;

use std::io::ErrorKind;
use std::time::Duration;

use futures_lite::{future, AsyncReadExt, AsyncWriteExt};
use smol::net::TcpStream;
use smolmux::{Config, Mux, Protocol, Role, Stream};
use support::*;

const VERSIONS: [Protocol; 2] = [Protocol::SmuxV1, Protocol::SmuxV2];

fn config(protocol: Protocol, role: Role) -> Config {
    Config::default().protocol(protocol).role(role)
}

/// `a` dialed (the smux client), `b` accepted (the server), both speaking `protocol`.
async fn pair(protocol: Protocol) -> Pair {
    pair_with(protocol, |config| config).await
}

async fn pair_with(protocol: Protocol, tweak: impl Fn(Config) -> Config) -> Pair {
    smol_pair(
        tweak(config(protocol, Role::Client)),
        tweak(config(protocol, Role::Server)),
    )
    .await
}

/// Reads `stream` to EOF.
async fn read_all(stream: &mut Stream) -> Vec<u8> {
    let mut data = Vec::new();
    stream.read_to_end(&mut data).await.unwrap();
    data
}

// ----- data transfer -----

#[test]
fn echo_both_ways_with_ids_by_role() {
    for protocol in VERSIONS {
        run(async {
            let pair = pair(protocol).await;
            let _b_echoes = spawn_echo_server(pair.b.clone());
            let _a_echoes = spawn_echo_server(pair.a.clone());
            // Several MiB: well past v2's initial 256 KiB window, so UPDs must keep it open.
            for (seed, opener, parity) in [(1, &pair.a, 1), (2, &pair.b, 0), (3, &pair.a, 1)] {
                let mut stream = opener.open(b"").await.unwrap();
                assert_eq!(stream.id() % 2, parity, "{protocol:?}: id {}", stream.id());
                assert_ne!(stream.id(), 0, "{protocol:?}: stream 0 is the session's");
                let data = pattern(seed, 3 << 20);
                let reply = round_trip(&mut stream, &data).await.unwrap();
                assert!(reply == data, "{protocol:?}: echo differs");
            }
            assert_eq!(pair.a.last_rtt(), None, "{protocol:?}: NOP measures no RTT");
        });
    }
}

#[test]
fn many_streams_opened_from_both_sides_echo_distinct_patterns() {
    const STREAMS: u64 = 200;
    for protocol in VERSIONS {
        run(async {
            let pair = pair(protocol).await;
            let _b_echoes = spawn_echo_server(pair.b.clone());
            let _a_echoes = spawn_echo_server(pair.a.clone());
            let tasks: Vec<_> = (0..STREAMS)
                .map(|i| {
                    let opener = if i % 2 == 0 { &pair.a } else { &pair.b }.clone();
                    spawn(async move {
                        let mut stream = opener.open(b"").await.unwrap();
                        let data = pattern(100 + i, 40_000 + i as usize * 97);
                        let reply = round_trip(&mut stream, &data).await.unwrap();
                        (reply == data, stream.id())
                    })
                })
                .collect();
            let mut ids = Vec::new();
            for task in tasks {
                let (same, id) = task.await;
                assert!(same, "{protocol:?}: stream {id}'s echo differs");
                ids.push(id);
            }
            ids.sort_unstable();
            ids.dedup();
            assert_eq!(ids.len() as u64, STREAMS, "{protocol:?}: ids repeated");
            eventually("every stream gone from both tables", || {
                pair.a.stats().open_streams == 0 && pair.b.stats().open_streams == 0
            })
            .await;
        });
    }
}

#[test]
fn metadata_is_refused_and_accepted_streams_carry_none() {
    for protocol in VERSIONS {
        run(async {
            let pair = pair(protocol).await;
            let err = pair.a.open(b"meta").await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{protocol:?}: {err}");
            assert!(err.to_string().contains("metadata"), "{err}");
            let mut stream = pair.a.open(b"").await.unwrap();
            stream.write_all(b"x").await.unwrap();
            stream.flush().await.unwrap();
            let accepted = pair.b.accept().await.unwrap();
            assert_eq!(accepted.metadata(), b"", "{protocol:?}");
            assert!(pair.a.is_alive() && pair.b.is_alive());
        });
    }
}

// ----- stream ends -----

#[test]
fn half_close_both_ways() {
    for protocol in VERSIONS {
        run(async {
            let pair = pair(protocol).await;
            let mut ours = pair.a.open(b"").await.unwrap();
            ours.write_all(b"question").await.unwrap();
            ours.close().await.unwrap();
            let mut theirs = pair.b.accept().await.unwrap();
            assert_eq!(read_all(&mut theirs).await, b"question");
            // Our FIN ended only our direction: the peer still answers, at length (read while
            // it writes: v2's window would stop a writer nobody reads).
            let answer = pattern(7, 8 << 20);
            let reply = future::zip(
                async {
                    theirs.write_all(&answer).await.unwrap();
                    theirs.close().await.unwrap();
                },
                read_all(&mut ours),
            )
            .await
            .1;
            assert!(reply == answer, "{protocol:?}");
            drop((ours, theirs));
            // And the other way round: the acceptor half-closes first.
            let mut ours = pair.a.open(b"").await.unwrap();
            ours.write_all(b"hi").await.unwrap();
            ours.flush().await.unwrap();
            let mut theirs = pair.b.accept().await.unwrap();
            theirs.close().await.unwrap();
            assert_eq!(read_all(&mut ours).await, b"");
            ours.write_all(b" there").await.unwrap();
            ours.close().await.unwrap();
            assert_eq!(read_all(&mut theirs).await, b"hi there");
            drop((ours, theirs));
            eventually("both streams gone", || {
                pair.a.stats().open_streams == 0 && pair.b.stats().open_streams == 0
            })
            .await;
        });
    }
}

#[test]
fn abort_is_a_fin_and_what_arrives_after_it_is_discarded() {
    for protocol in VERSIONS {
        run(async {
            let window = Config::MIN_STREAM_RECEIVE_BUFFER;
            let pair = pair_with(protocol, |config| config.stream_receive_buffer(window)).await;
            let mut ours = pair.a.open(b"").await.unwrap();
            ours.write_all(b"start").await.unwrap();
            ours.flush().await.unwrap();
            let mut theirs = pair.b.accept().await.unwrap();
            let mut start = [0; 5];
            theirs.read_exact(&mut start).await.unwrap();
            ours.abort("changed my mind");
            // Locally the stream is reset at once.
            let err = ours.read(&mut [0; 8]).await.unwrap_err();
            assert_eq!(
                err.kind(),
                ErrorKind::ConnectionReset,
                "{protocol:?}: {err}"
            );
            let err = ours.write_all(b"more").await.unwrap_err();
            assert_eq!(
                err.kind(),
                ErrorKind::ConnectionReset,
                "{protocol:?}: {err}"
            );
            // Gone: in v2 the entry must stay, acknowledging, until the peer's FIN.
            drop(ours);
            // smux has no reset: the peer sees the end of the stream, no reason...
            assert_eq!(read_all(&mut theirs).await, b"", "{protocol:?}");
            // ...and may write on (4 windows), into nothing, without stalling.
            hang_guard(theirs.write_all(&pattern(9, 4 * window)))
                .await
                .unwrap();
            hang_guard(theirs.close()).await.unwrap();
            drop(theirs);
            eventually("the aborted stream gone from both tables", || {
                pair.a.stats().open_streams == 0 && pair.b.stats().open_streams == 0
            })
            .await;
            assert_eq!(pair.a.stats().recv_buffered_bytes, 0, "{protocol:?}");
            // The session is unharmed.
            let _echo = spawn_echo_server(pair.b.clone());
            let mut stream = pair.a.open(b"").await.unwrap();
            assert_eq!(round_trip(&mut stream, b"ok").await.unwrap(), b"ok");
        });
    }
}

#[test]
fn a_refused_stream_ends_at_once_and_the_session_goes_on() {
    for protocol in VERSIONS {
        run(async {
            let window = Config::MIN_STREAM_RECEIVE_BUFFER;
            let pair = pair_with(protocol, |config| {
                config.accept_backlog(1).stream_receive_buffer(window)
            })
            .await;
            let mut first = pair.a.open(b"").await.unwrap();
            first.write_all(b"1").await.unwrap();
            first.flush().await.unwrap();
            let mut second = pair.a.open(b"").await.unwrap();
            second.write_all(b"2").await.unwrap();
            second.flush().await.unwrap();
            // The backlog holds one: the second is refused with a FIN (smux has nothing else).
            assert_eq!(hang_guard(read_all(&mut second)).await, b"", "{protocol:?}");
            // It may write on (4 windows) into nothing: v2's refusal keeps acknowledging.
            hang_guard(second.write_all(&pattern(2, 4 * window)))
                .await
                .unwrap();
            hang_guard(second.close()).await.unwrap();
            let mut accepted = pair.b.accept().await.unwrap();
            let mut byte = [0];
            accepted.read_exact(&mut byte).await.unwrap();
            assert_eq!(&byte, b"1");
            assert!(pair.a.is_alive() && pair.b.is_alive(), "{protocol:?}");
        });
    }
}

// ----- receive bounds -----

/// Version 1 has no per-stream flow control: a stream nobody reads fills the session's
/// receive budget, the reader stops (bounding memory), and it resumes once the application
/// reads, with nothing lost.
#[test]
fn v1_stops_reading_at_the_session_budget_and_loses_nothing() {
    const BUDGET: usize = 1 << 20;
    run(async {
        let pair = pair_with(Protocol::SmuxV1, |config| {
            config
                .stream_receive_buffer(Config::MIN_STREAM_RECEIVE_BUFFER)
                .session_receive_buffer(BUDGET)
        })
        .await;
        let data = pattern(11, 8 << 20);
        let mut ours = pair.a.open(b"").await.unwrap();
        let writer = {
            let data = data.clone();
            spawn(async move {
                ours.write_all(&data).await.unwrap();
                ours.close().await.unwrap();
                ours
            })
        };
        let mut theirs = pair.b.accept().await.unwrap();
        eventually("the budget filled", || {
            pair.b.stats().recv_buffered_bytes >= BUDGET
        })
        .await;
        sleep(Duration::from_millis(100)).await;
        let held = pair.b.stats().recv_buffered_bytes;
        // At most one frame past the budget: the reader checks before each frame.
        assert!(held <= BUDGET + 65_535, "held {held}");
        assert!(read_all(&mut theirs).await == data);
        drop(writer.await);
    });
}

/// Version 2 bounds each stream by its window: a stream nobody reads holds at most the
/// window, and the other streams go on.
#[test]
fn v2_bounds_an_unread_stream_by_its_window_and_others_go_on() {
    const WINDOW: usize = Config::MIN_STREAM_RECEIVE_BUFFER;
    run(async {
        let pair = pair_with(Protocol::SmuxV2, |config| {
            config.stream_receive_buffer(WINDOW)
        })
        .await;
        let mut unread = pair.a.open(b"").await.unwrap();
        let writer = spawn(async move {
            let result = unread.write_all(&pattern(12, 8 << 20)).await;
            (unread, result)
        });
        let mut stalled = pair.b.accept().await.unwrap();
        // The first read sends the first UPD, which tells the sender our window.
        stalled.read_exact(&mut [0]).await.unwrap();
        eventually("the window filled", || {
            pair.b.stats().recv_buffered_bytes >= WINDOW - 1
        })
        .await;
        sleep(Duration::from_millis(100)).await;
        let held = pair.b.stats().recv_buffered_bytes;
        assert!(held <= WINDOW, "held {held}, the window is {WINDOW}");
        // Another stream still echoes (a round trip within the window: `round_trip` reads
        // only once it has written everything).
        let _echo = spawn_echo_server(pair.b.clone());
        let mut other = pair.a.open(b"").await.unwrap();
        let data = pattern(13, 200_000);
        assert!(round_trip(&mut other, &data).await.unwrap() == data);
        drop(stalled);
        drop(writer);
    });
}

// ----- liveness -----

/// NOPs every 50 ms keep an idle session alive through many 300 ms timeouts.
#[test]
fn keepalive_holds_an_idle_session() {
    for protocol in VERSIONS {
        run(async {
            let pair = pair_with(protocol, |config| {
                config
                    .ping_interval(Some(Duration::from_millis(50)))
                    .ping_timeout(Duration::from_millis(300))
            })
            .await;
            sleep(Duration::from_millis(1500)).await;
            assert!(pair.a.is_alive() && pair.b.is_alive(), "{protocol:?}");
            let _echo = spawn_echo_server(pair.b.clone());
            let mut stream = pair.a.open(b"").await.unwrap();
            assert_eq!(round_trip(&mut stream, b"alive").await.unwrap(), b"alive");
        });
    }
}

/// A peer that sends nothing at all ends the session with `TimedOut` once `ping_timeout`
/// passes, however busy our own side is.
#[test]
fn keepalive_timeout_ends_a_session_whose_peer_is_silent() {
    for protocol in VERSIONS {
        run(async {
            let (ours, silent) = tcp_pair().await;
            // The silent peer reads (so our writes never block) and never writes.
            let _drain = spawn(async move {
                let mut silent: TcpStream = silent;
                let mut sink = vec![0; 64 << 10];
                while silent.read(&mut sink).await.is_ok_and(|n| n > 0) {}
            });
            let config = config(protocol, Role::Client)
                .ping_interval(Some(Duration::from_millis(50)))
                .ping_timeout(Duration::from_millis(300));
            let (mux, driver) = Mux::new(ours.clone(), ours, config);
            let driver = spawn(driver);
            let mut stream = mux.open(b"").await.unwrap();
            let writing = spawn(async move {
                while stream.write_all(&[1; 1000]).await.is_ok() {
                    sleep(Duration::from_millis(10)).await;
                }
            });
            let err = hang_guard(driver).await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::TimedOut, "{protocol:?}: {err}");
            assert!(err.to_string().contains("keepalive timeout"), "{err}");
            hang_guard(writing).await;
            assert!(!mux.is_alive());
        });
    }
}

/// Without `ping_interval` there is no keepalive, and no timeout either.
#[test]
fn no_ping_interval_means_no_timeout() {
    for protocol in VERSIONS {
        run(async {
            let (ours, _silent) = tcp_pair().await;
            let config = config(protocol, Role::Server)
                .ping_interval(None)
                .ping_timeout(Duration::from_millis(50));
            let (mux, driver) = Mux::new(ours.clone(), ours, config);
            let mut driver = spawn(driver);
            let idle = future::or(async { Some((&mut driver).await) }, async {
                sleep(Duration::from_millis(500)).await;
                None
            });
            assert!(idle.await.is_none(), "{protocol:?}: the session ended");
            assert!(mux.is_alive());
        });
    }
}

// ----- closing -----

#[test]
fn close_waits_for_the_peers_direction_then_both_ends_finish() {
    for protocol in VERSIONS {
        run(async {
            let pair = pair(protocol).await;
            let _echo = spawn_echo_server(pair.b.clone());
            let mut stream = pair.a.open(b"").await.unwrap();
            let data = pattern(21, 1 << 20);
            stream.write_all(&data).await.unwrap();
            // Close the session while the echo is still coming back: FIN is a half-close
            // here, so the reply still arrives in full.
            let closing = {
                let a = pair.a.clone();
                spawn(async move { a.close().await })
            };
            assert!(read_all(&mut stream).await == data, "{protocol:?}");
            drop(stream);
            hang_guard(closing).await.unwrap();
            hang_guard(pair.driver_a).await.unwrap();
        });
    }
}
