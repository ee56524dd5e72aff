//! smolmux talking to smolmux in the yamux dialect (`Protocol::Yamux`) over loopback TCP: echo
//! both ways with ids by role and a measured RTT, many streams, half-close, abort as RST,
//! refusal as RST (`ConnectionRefused`), the 256 un-ACKed opens, the per-stream window bound,
//! keepalive and its timeout, and the graceful close. The tests whose behaviour yamux shares
//! with smux (FIN as a half-close, no metadata) follow `smux_session.rs`; the others say what
//! yamux does differently.

mod support;

use std::io::ErrorKind;
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use smol::net::TcpStream;
use smolmux::{Config, Mux, Protocol, Role, Stream};
use support::*;

fn config(role: Role) -> Config {
    Config::default().protocol(Protocol::Yamux).role(role)
}

/// `a` dialed (the yamux client), `b` accepted (the server).
async fn pair_with(tweak: impl Fn(Config) -> Config) -> Pair {
    smol_pair(tweak(config(Role::Client)), tweak(config(Role::Server))).await
}

async fn pair() -> Pair {
    pair_with(|config| config).await
}

/// Reads `stream` to EOF.
async fn read_all(stream: &mut Stream) -> Vec<u8> {
    let mut data = Vec::new();
    stream.read_to_end(&mut data).await.unwrap();
    data
}

// ----- data transfer -----

#[test]
fn echo_both_ways_with_ids_by_role_and_a_measured_rtt() {
    run(async {
        let pair = pair().await;
        let _b_echoes = spawn_echo_server(pair.b.clone());
        let _a_echoes = spawn_echo_server(pair.a.clone());
        // Several MiB: well past the initial 256 KiB window, so Window Updates must keep it
        // open.
        for (seed, opener, parity) in [(1, &pair.a, 1), (2, &pair.b, 0), (3, &pair.a, 1)] {
            let mut stream = opener.open(b"").await.unwrap();
            assert_eq!(stream.id() % 2, parity, "id {}", stream.id());
            assert_ne!(stream.id(), 0, "stream 0 is the session's");
            let data = pattern(seed, 3 << 20);
            let reply = round_trip(&mut stream, &data).await.unwrap();
            assert!(reply == data, "echo differs");
        }
        // The Pings at the start measured the round trip (each side answers the other's).
        eventually("both RTTs measured", || {
            pair.a.last_rtt().is_some() && pair.b.last_rtt().is_some()
        })
        .await;
    });
}

#[test]
fn many_streams_opened_from_both_sides_echo_distinct_patterns() {
    const STREAMS: u64 = 300;
    run(async {
        let pair = pair().await;
        let _b_echoes = spawn_echo_server(pair.b.clone());
        let _a_echoes = spawn_echo_server(pair.a.clone());
        let tasks: Vec<_> = (0..STREAMS)
            .map(|i| {
                let opener = if i % 2 == 0 { &pair.a } else { &pair.b }.clone();
                spawn(async move {
                    let mut stream = opener.open(b"").await.unwrap();
                    let data = pattern(100 + i, 20_000 + i as usize * 97);
                    round_trip(&mut stream, &data).await.unwrap() == data
                })
            })
            .collect();
        for task in tasks {
            assert!(task.await, "an echo differs");
        }
    });
}

#[test]
fn metadata_is_refused() {
    run(async {
        let pair = pair().await;
        let err = pair.a.open(b"meta").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
        assert!(err.to_string().contains("no metadata"), "{err}");
        let _echo = spawn_echo_server(pair.b.clone());
        let mut stream = pair.a.open(b"").await.unwrap();
        assert_eq!(round_trip(&mut stream, b"ok").await.unwrap(), b"ok");
    });
}

#[test]
fn half_close_both_ways() {
    run(async {
        let pair = pair().await;
        let mut ours = pair.a.open(b"").await.unwrap();
        ours.write_all(b"question").await.unwrap();
        ours.close().await.unwrap();
        let mut theirs = pair.b.accept().await.unwrap();
        assert_eq!(read_all(&mut theirs).await, b"question");
        // Our FIN ended only our direction: the answer still comes, after our EOF.
        let answer = pattern(5, 1 << 20);
        theirs.write_all(&answer).await.unwrap();
        theirs.close().await.unwrap();
        assert!(read_all(&mut ours).await == answer);
        drop((ours, theirs));
        eventually("both tables empty", || {
            pair.a.stats().open_streams == 0 && pair.b.stats().open_streams == 0
        })
        .await;
    });
}

#[test]
fn open_then_close_without_data_ends_both_ways() {
    // rust-yamux sends a FIN without SYN here and hangs against Go; we send the SYN first.
    run(async {
        let pair = pair().await;
        let _echo = spawn_echo_server(pair.b.clone());
        for _ in 0..5 {
            let mut stream = pair.a.open(b"").await.unwrap();
            stream.close().await.unwrap();
            assert_eq!(hang_guard(read_all(&mut stream)).await, b"");
        }
    });
}

// ----- abort and refusal -----

#[test]
fn abort_is_a_reset_of_both_directions() {
    run(async {
        let pair = pair().await;
        let mut ours = pair.a.open(b"").await.unwrap();
        ours.write_all(b"start").await.unwrap();
        ours.flush().await.unwrap();
        let mut theirs = pair.b.accept().await.unwrap();
        let mut start = [0; 5];
        theirs.read_exact(&mut start).await.unwrap();
        ours.abort("changed my mind");
        let err = ours.read(&mut [0; 8]).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
        // The peer sees an RST (yamux carries no reason): its reads and writes fail.
        let err = hang_guard(theirs.read(&mut [0; 8])).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
        assert!(err.to_string().contains("RST"), "{err}");
        let err = theirs.write_all(b"more").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
        drop((ours, theirs));
        eventually("the aborted stream gone from both tables", || {
            pair.a.stats().open_streams == 0 && pair.b.stats().open_streams == 0
        })
        .await;
        let _echo = spawn_echo_server(pair.b.clone());
        let mut stream = pair.a.open(b"").await.unwrap();
        assert_eq!(round_trip(&mut stream, b"ok").await.unwrap(), b"ok");
    });
}

#[test]
fn a_stream_past_the_accept_backlog_is_refused_and_the_session_goes_on() {
    run(async {
        let pair = pair_with(|config| config.accept_backlog(1)).await;
        let mut first = pair.a.open(b"").await.unwrap();
        first.write_all(b"1").await.unwrap();
        first.flush().await.unwrap();
        let mut second = pair.a.open(b"").await.unwrap();
        second.write_all(b"2").await.unwrap();
        // The refusal may come back before the flush has seen its bytes go: then the flush
        // already reports it.
        if let Err(err) = second.flush().await {
            assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
        }
        // The backlog holds one: the second gets an RST before any ACK, a refusal.
        let err = hang_guard(second.read(&mut [0; 1])).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
        let mut accepted = pair.b.accept().await.unwrap();
        let mut byte = [0];
        accepted.read_exact(&mut byte).await.unwrap();
        assert_eq!(&byte, b"1");
        assert!(pair.a.is_alive() && pair.b.is_alive());
    });
}

#[test]
fn at_most_256_opens_await_their_ack_and_the_next_waits() {
    // The acceptor takes all 300 into its backlog but accepts (and so ACKs) none yet: 256
    // opens go out, the 257th waits rather than being refused by a full backlog elsewhere.
    run(async {
        let pair = pair_with(|config| config.accept_backlog(1000)).await;
        let mut streams = Vec::new();
        for _ in 0..256 {
            streams.push(pair.a.open(b"").await.unwrap());
        }
        let err = pair.a.try_open(b"").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::WouldBlock, "{err}");
        assert!(err.to_string().contains("ACK"), "{err}");
        let waiting = {
            let a = pair.a.clone();
            spawn(async move { a.open(b"").await })
        };
        eventually("all 256 SYNs arrived", || {
            pair.b.stats().pending_accept == 256
        })
        .await;
        sleep(Duration::from_millis(50)).await;
        assert!(
            !waiting.is_finished(),
            "an open past 256 un-ACKed ones went"
        );
        // One accept is one ACK: the waiting open goes.
        let accepted = pair.b.accept().await.unwrap();
        let opened = hang_guard(waiting).await.unwrap();
        assert_eq!(opened.id(), 2 * 256 + 1);
        drop((accepted, opened, streams));
    });
}

// ----- receive bounds -----

#[test]
fn an_unread_stream_holds_at_most_its_window_and_others_go_on() {
    const WINDOW: usize = Config::MIN_STREAM_RECEIVE_BUFFER;
    run(async {
        let pair = pair_with(|config| config.stream_receive_buffer(WINDOW)).await;
        let mut unread = pair.a.open(b"").await.unwrap();
        let writer = spawn(async move {
            let result = unread.write_all(&pattern(12, 8 << 20)).await;
            (unread, result)
        });
        let stalled = pair.b.accept().await.unwrap();
        // The ACK at accept grants the window beyond the first 256 KiB.
        eventually("the window filled", || {
            pair.b.stats().recv_buffered_bytes >= WINDOW
        })
        .await;
        sleep(Duration::from_millis(100)).await;
        let held = pair.b.stats().recv_buffered_bytes;
        assert!(held <= WINDOW, "held {held}, the window is {WINDOW}");
        let _echo = spawn_echo_server(pair.b.clone());
        let mut other = pair.a.open(b"").await.unwrap();
        let data = pattern(13, 200_000);
        assert!(round_trip(&mut other, &data).await.unwrap() == data);
        drop(stalled);
        drop(writer);
    });
}

/// Streams whose readers stall fill the session's budget (every new stream gets 256 KiB, more
/// than the budget's share). As in picomux mode, the stream read longest ago is reset (an RST
/// saying why) rather than the reader stopped: a stopped reader would leave the peer's Pings
/// and our pongs unread, and the keepalive would end the session. Memory stays within the
/// budget, the session and the other streams go on.
#[test]
fn a_full_receive_budget_resets_the_stream_read_longest_ago_and_the_session_goes_on() {
    const STREAMS: usize = 8;
    const EACH: usize = 250_000;
    run(async {
        let window = Config::MIN_STREAM_RECEIVE_BUFFER;
        let pair = pair_with(|config| {
            config
                .stream_receive_buffer(window)
                .session_receive_buffer(window)
                .ping_interval(Some(Duration::from_millis(50)))
                .ping_timeout(Duration::from_millis(300))
        })
        .await;
        // All accepted before any data comes (a stream reset while still in the backlog
        // would never be accepted).
        let mut opened = Vec::new();
        for _ in 0..STREAMS {
            opened.push(pair.a.open(b"").await.unwrap());
        }
        let mut accepted = Vec::new();
        for _ in 0..STREAMS {
            accepted.push(pair.b.accept().await.unwrap());
        }
        let writers: Vec<_> = opened
            .into_iter()
            .map(|mut stream| {
                spawn(async move {
                    let data = pattern(u64::from(stream.id()), EACH);
                    // A reset stream's writes fail: that is the point.
                    let _ = stream.write_all(&data).await;
                    let _ = stream.close().await;
                    stream
                })
            })
            .collect();
        // Many ping timeouts long, reading nothing.
        for _ in 0..30 {
            sleep(Duration::from_millis(50)).await;
            let held = pair.b.stats().recv_buffered_bytes;
            assert!(held <= window + 65_535, "held {held}");
        }
        assert!(pair.a.is_alive() && pair.b.is_alive());
        let (mut whole, mut reset) = (0, 0);
        for mut stream in accepted {
            let mut got = Vec::new();
            match stream.read_to_end(&mut got).await {
                Ok(_) => {
                    assert!(got == pattern(u64::from(stream.id()), EACH));
                    whole += 1;
                }
                Err(err) => {
                    assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
                    assert!(err.to_string().contains("receive buffer full"), "{err}");
                    reset += 1;
                }
            }
        }
        assert!(reset >= 1 && whole >= 1, "{whole} whole, {reset} reset");
        for writer in writers {
            drop(hang_guard(writer).await);
        }
        let _echo = spawn_echo_server(pair.b.clone());
        let mut stream = pair.a.open(b"").await.unwrap();
        assert_eq!(round_trip(&mut stream, b"ok").await.unwrap(), b"ok");
    });
}

// ----- liveness -----

/// Pings every 50 ms keep an idle session alive through many 300 ms timeouts.
#[test]
fn keepalive_holds_an_idle_session() {
    run(async {
        let pair = pair_with(|config| {
            config
                .ping_interval(Some(Duration::from_millis(50)))
                .ping_timeout(Duration::from_millis(300))
        })
        .await;
        sleep(Duration::from_millis(1500)).await;
        assert!(pair.a.is_alive() && pair.b.is_alive());
        let _echo = spawn_echo_server(pair.b.clone());
        let mut stream = pair.a.open(b"").await.unwrap();
        assert_eq!(round_trip(&mut stream, b"alive").await.unwrap(), b"alive");
    });
}

/// A peer that never answers our Ping ends the session with `TimedOut`.
#[test]
fn ping_timeout_ends_a_session_whose_peer_never_answers() {
    run(async {
        let (ours, silent) = tcp_pair().await;
        let _drain = spawn(async move {
            let mut silent: TcpStream = silent;
            let mut sink = vec![0; 64 << 10];
            while silent.read(&mut sink).await.is_ok_and(|n| n > 0) {}
        });
        let config = config(Role::Client)
            .ping_interval(Some(Duration::from_millis(50)))
            .ping_timeout(Duration::from_millis(300));
        let (mux, driver) = Mux::new(ours.clone(), ours, config);
        let err = hang_guard(driver).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
        assert!(err.to_string().contains("ping timeout"), "{err}");
        assert!(!mux.is_alive());
    });
}

// ----- closing -----

#[test]
fn close_sends_goaway_the_peer_opens_nothing_more_and_both_ends_finish() {
    run(async {
        let pair = pair().await;
        let _echo = spawn_echo_server(pair.b.clone());
        let mut stream = pair.a.open(b"").await.unwrap();
        let data = pattern(21, 1 << 20);
        stream.write_all(&data).await.unwrap();
        let closing = {
            let a = pair.a.clone();
            spawn(async move { a.close().await })
        };
        // The stream in use finishes: the echo comes back in full...
        assert!(read_all(&mut stream).await == data);
        // ...and the peer, which had our GoAway(0) before our FIN, opens nothing more (its
        // session is draining, or already over).
        let err = pair.b.open(b"").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotConnected, "{err}");
        drop(stream);
        hang_guard(closing).await.unwrap();
        hang_guard(pair.driver_a).await.unwrap();
        hang_guard(pair.driver_b).await.unwrap();
    });
}

#[test]
fn the_peer_of_a_close_ends_cleanly_even_when_the_closer_hangs_up_at_once() {
    // The closer's GoAway(0) drains the peer, which answers with its own GoAway and closes its
    // write half; the closer, done with every stream, may drop the connection before those
    // arrive, so the peer's last writes can fail. Its session still ends cleanly (the
    // benchmark's teardown found this: "connection write failed: Transport endpoint is not
    // connected").
    for _ in 0..20 {
        run(async {
            let pair = pair().await;
            let _echo = spawn_echo_server(pair.b.clone());
            let mut stream = pair.a.open(b"").await.unwrap();
            assert_eq!(round_trip(&mut stream, b"hi").await.unwrap(), b"hi");
            drop(stream);
            hang_guard(pair.a.close()).await.unwrap();
            drop(pair.a);
            hang_guard(pair.driver_b).await.unwrap();
            hang_guard(pair.driver_a).await.unwrap();
        });
    }
}
