//! The lifecycle tables of `docs/protocol.md` ("How streams and sessions end"), cell by cell:
//! each test drives one state through one event and checks the wire, the application's view and
//! when the state is freed.

use super::*;

/// A stream we opened on a smolmux peer, its SYN already sent.
fn opened(h: &mut Harness) -> u32 {
    let id = h.open();
    assert_eq!(commands(&h.transmit()), vec![Command::Syn]);
    id
}

fn close(h: &mut Harness, id: u32) -> Option<std::io::Result<()>> {
    h.s.app_close(id, &noop())
}

fn write_err(h: &mut Harness, id: u32) -> std::io::Error {
    h.s.app_write(id, b"x", &noop()).unwrap().unwrap_err()
}

fn goaway(h: &mut Harness) {
    h.recv(Command::Nop, 0, &[2]).unwrap();
}

fn bye(h: &mut Harness) -> Result<(), ProtocolError> {
    h.recv(Command::Nop, 0, &[3])
}

// ----- send direction -----

#[test]
fn abort_after_our_fin_sends_the_reason_to_a_smolmux_peer_whose_direction_is_open() {
    let mut h = Harness::smolmux_peer(Config::default());
    let id = opened(&mut h);
    assert!(close(&mut h, id).is_none());
    assert_eq!(commands(&h.transmit()), vec![Command::Fin]);
    h.s.app_abort(id, "client cancelled");
    assert_eq!(
        h.transmit(),
        vec![(Command::Fin, id, Bytes::from_static(b"client cancelled"))]
    );
    let err = h.read(id, 10).unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionReset);
    h.s.app_drop(id, h.now);
    assert_eq!(h.s.stats().open_streams, 0, "both directions are done");
}

#[test]
fn abort_after_our_fin_towards_a_picomux_peer_is_local_only() {
    let mut h = Harness::picomux_peer(Config::default());
    let id = opened(&mut h);
    assert!(close(&mut h, id).is_none());
    h.transmit();
    h.s.app_abort(id, "cancelled");
    assert!(h.transmit().is_empty(), "picomux took our FIN as the end");
    assert_eq!(
        h.read(id, 10).unwrap().unwrap_err().kind(),
        ErrorKind::ConnectionReset
    );
}

#[test]
fn stop_sending_drops_queued_bytes_fails_writes_and_ends_our_direction_with_an_empty_fin() {
    let mut h = Harness::smolmux_peer(ten_frame_window());
    let id = opened(&mut h);
    h.recv(Command::Nop, id, &[1]).unwrap();
    let err = write_err(&mut h, id);
    assert_eq!(err.kind(), ErrorKind::BrokenPipe);
    assert!(err.to_string().contains("stopped reading"), "{err}");
    assert_eq!(h.transmit(), vec![(Command::Fin, id, Bytes::new())]);
    assert!(
        matches!(close(&mut h, id), Some(Ok(()))),
        "nothing was lost"
    );
    // The peer's direction goes on until its FIN.
    h.recv(Command::Psh, id, b"still coming").unwrap();
    assert_eq!(h.read(id, 20).unwrap().unwrap(), b"still coming");
    h.recv(Command::Fin, id, b"").unwrap();
    h.s.app_drop(id, h.now);
    assert_eq!(h.s.stats().open_streams, 0);
}

#[test]
fn close_after_stop_sending_fails_when_written_bytes_were_dropped() {
    let mut h = Harness::smolmux_peer(ten_frame_window());
    let id = opened(&mut h);
    h.s.app_write(id, &[7; 100], &noop()).unwrap().unwrap();
    assert!(close(&mut h, id).is_none(), "queued: FIN after the bytes");
    h.recv(Command::Nop, id, &[1]).unwrap();
    assert_eq!(h.s.stats().send_buffered_bytes, 0);
    let err = close(&mut h, id).unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BrokenPipe);
    assert!(err.to_string().contains("100 bytes"), "{err}");
    let err = h.s.app_flush(id, &noop()).unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BrokenPipe);
    assert_eq!(h.transmit(), vec![(Command::Fin, id, Bytes::new())]);
}

#[test]
fn a_picomux_fin_with_bytes_queued_fails_flush_and_close() {
    let mut h = Harness::picomux_peer(Config::default());
    let id = opened(&mut h);
    // No credits left: the bytes stay queued.
    h.s.app_write(id, &[1; 40_000], &noop()).unwrap().unwrap();
    h.recv(Command::Fin, id, b"").unwrap();
    assert_eq!(
        h.s.app_flush(id, &noop()).unwrap().unwrap_err().kind(),
        ErrorKind::BrokenPipe
    );
    assert_eq!(
        close(&mut h, id).unwrap().unwrap_err().kind(),
        ErrorKind::BrokenPipe
    );
    assert_eq!(write_err(&mut h, id).kind(), ErrorKind::BrokenPipe);
    assert!(
        h.transmit().is_empty(),
        "no FIN back: picomux ended the stream"
    );
}

#[test]
fn a_picomux_fin_with_nothing_queued_lets_close_succeed() {
    let mut h = Harness::picomux_peer(Config::default());
    let id = opened(&mut h);
    h.recv(Command::Fin, id, b"").unwrap();
    assert!(matches!(close(&mut h, id), Some(Ok(()))));
    assert!(matches!(h.s.app_flush(id, &noop()), Some(Ok(()))));
}

#[test]
fn dropping_a_stream_tells_a_smolmux_peer_to_stop_sending_before_its_data() {
    let mut h = Harness::smolmux_peer(Config::default());
    let id = h.open();
    h.write(id, b"last");
    h.s.app_drop(id, h.now);
    let frames = h.transmit();
    assert_eq!(
        frames,
        vec![
            (Command::Syn, id, Bytes::new()),
            (Command::Nop, id, Bytes::from_static(&[1])),
            (Command::Psh, id, Bytes::from_static(b"last")),
            (Command::Fin, id, Bytes::new()),
        ]
    );
    h.recv(Command::Fin, id, b"").unwrap();
    assert_eq!(h.s.stats().open_streams, 0);
}

#[test]
fn dropping_a_stream_before_its_syn_went_sends_no_more_ahead_of_the_syn() {
    let mut h = Harness::picomux_peer(Config::default());
    let id = h.open();
    h.s.app_drop(id, h.now);
    assert_eq!(commands(&h.transmit()), vec![Command::Syn, Command::Fin]);
}

#[test]
fn dropping_a_stream_after_the_peers_fin_sends_no_stop_sending() {
    let mut h = Harness::smolmux_peer(Config::default());
    let id = opened(&mut h);
    h.recv(Command::Fin, id, b"").unwrap();
    h.s.app_drop(id, h.now);
    assert_eq!(h.transmit(), vec![(Command::Fin, id, Bytes::new())]);
    assert_eq!(h.s.stats().open_streams, 0);
}

#[test]
fn a_stream_dropped_before_the_peers_first_ping_still_tells_a_smolmux_peer_to_stop() {
    let mut h = Harness::new(Config::default());
    h.recv(Command::Syn, 1, b"").unwrap();
    h.accept();
    h.s.app_drop(1, h.now);
    assert_eq!(commands(&h.transmit()), vec![Command::Fin], "not known yet");
    h.recv_ping(true);
    let frames = h.transmit();
    assert!(
        frames.contains(&(Command::Nop, 1, Bytes::from_static(&[1]))),
        "{frames:?}"
    );
    h.recv(Command::Fin, 1, b"").unwrap();
    assert_eq!(h.s.stats().open_streams, 0);
}

#[test]
fn dropping_a_stream_towards_a_picomux_peer_sends_no_stop_sending() {
    let mut h = Harness::picomux_peer(Config::default());
    let id = opened(&mut h);
    h.s.app_drop(id, h.now);
    assert_eq!(commands(&h.transmit()), vec![Command::Fin]);
}

#[test]
fn abort_after_stop_sending_reaches_the_peer_whose_direction_is_open() {
    let mut h = Harness::smolmux_peer(Config::default());
    let id = opened(&mut h);
    h.recv(Command::Nop, id, &[1]).unwrap();
    h.transmit(); // our empty FIN
    h.s.app_abort(id, "no more");
    assert_eq!(
        h.transmit(),
        vec![(Command::Fin, id, Bytes::from_static(b"no more"))]
    );
}

// ----- receive direction -----

#[test]
fn an_abort_after_the_peers_fin_resets_both_directions() {
    let mut h = Harness::smolmux_peer(Config::default());
    h.recv(Command::Syn, 1, b"").unwrap();
    h.accept();
    h.recv(Command::Psh, 1, b"request").unwrap();
    h.recv(Command::Fin, 1, b"").unwrap();
    h.write(1, b"reply");
    h.recv(Command::Fin, 1, b"client cancelled").unwrap();
    let err = write_err(&mut h, 1);
    assert_eq!(err.kind(), ErrorKind::ConnectionReset);
    assert!(err.to_string().contains("client cancelled"), "{err}");
    let err = h.read(1, 10).unwrap().unwrap_err();
    assert!(err.to_string().contains("client cancelled"), "{err}");
    assert_eq!(h.s.stats().recv_buffered_bytes, 0);
    assert_eq!(h.s.stats().send_buffered_bytes, 0);
    assert!(h.transmit().is_empty(), "nothing answers an abort");
    h.s.app_drop(1, h.now);
    assert_eq!(h.s.stats().open_streams, 0);
}

#[test]
fn a_second_empty_fin_and_a_fin_after_a_reset_are_ignored() {
    let mut h = Harness::smolmux_peer(Config::default());
    h.recv(Command::Syn, 1, b"").unwrap();
    h.accept();
    h.recv(Command::Fin, 1, b"").unwrap();
    h.recv(Command::Fin, 1, b"").unwrap();
    assert_eq!(h.read(1, 10).unwrap().unwrap(), b"");
    h.s.app_abort(1, "done");
    h.recv(Command::Fin, 1, b"crossing abort").unwrap();
    let err = h.read(1, 10).unwrap().unwrap_err();
    assert!(err.to_string().contains("aborted locally: done"), "{err}");
}

// ----- the session -----

#[test]
fn a_peers_goaway_stops_opens_and_accepts_is_answered_and_streams_go_on() {
    let mut h = Harness::smolmux_peer(Config::default());
    h.recv(Command::Syn, 1, b"").unwrap();
    let mine = opened(&mut h);
    goaway(&mut h);
    let err = h.s.app_open(Bytes::new()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotConnected);
    assert!(err.to_string().contains("peer is closing"), "{err}");
    assert_eq!(
        h.accept().0,
        1,
        "streams already opened are still handed out"
    );
    assert!(h.s.app_accept().unwrap().is_err(), "then accept fails");
    assert_eq!(signals(&h.transmit()), vec![Signal::GoAway]);
    h.write(mine, b"still flowing");
    h.write(1, b"both ways");
    assert_eq!(
        commands(&h.transmit()),
        vec![Command::Psh, Command::Psh],
        "no BYE while streams are open"
    );
    for id in [1, mine] {
        assert!(close(&mut h, id).is_none());
        h.recv(Command::Fin, id, b"").unwrap();
    }
    let frames = h.transmit();
    assert_eq!(commands(&frames).last(), Some(&Command::Nop));
    assert_eq!(signals(&frames), vec![Signal::Bye]);
    bye(&mut h).unwrap();
    assert!(h.s.should_close_write());
    h.s.on_write_closed();
    assert!(h.s.end().unwrap().is_clean());
}

#[test]
fn our_goaway_follows_the_syns_of_the_streams_opened_before_the_close() {
    let mut h = Harness::smolmux_peer(Config::default());
    let id = h.open();
    h.s.app_close_session(h.now);
    let frames = h.transmit();
    assert_eq!(
        frames,
        vec![
            (Command::Syn, id, Bytes::new()),
            (Command::Nop, 0, Bytes::from_static(&[2])),
            (Command::Fin, id, Bytes::new()),
        ]
    );
}

#[test]
fn bye_before_goaway_is_a_protocol_error() {
    let mut h = Harness::smolmux_peer(Config::default());
    let err = bye(&mut h).unwrap_err();
    assert!(err.to_string().contains("BYE before GOAWAY"), "{err}");
}

#[test]
fn any_frame_after_the_peers_bye_is_a_protocol_error() {
    let mut h = Harness::smolmux_peer(Config::default());
    goaway(&mut h);
    bye(&mut h).unwrap();
    let err = h.recv(Command::Syn, 5, b"").unwrap_err();
    assert!(err.to_string().contains("after the peer's BYE"), "{err}");
}

#[test]
fn a_peers_bye_resets_locally_the_streams_it_left_open() {
    let mut h = Harness::smolmux_peer(Config::default());
    h.recv(Command::Syn, 1, b"").unwrap();
    h.accept();
    goaway(&mut h);
    bye(&mut h).unwrap();
    let err = h.read(1, 10).unwrap().unwrap_err();
    assert!(
        err.to_string().contains("the peer ended the session"),
        "{err}"
    );
    h.transmit();
    h.s.app_drop(1, h.now);
    assert_eq!(h.s.stats().open_streams, 0);
}

#[test]
fn after_our_bye_nothing_more_is_sent_not_even_a_pong() {
    let mut h = Harness::smolmux_peer(Config::default());
    h.s.app_close_session(h.now);
    goaway(&mut h);
    assert_eq!(signals(&h.transmit()), vec![Signal::GoAway, Signal::Bye]);
    h.recv_ping(true);
    assert!(h.transmit().is_empty());
}

#[test]
fn close_timeout_aborts_the_open_streams_and_ends_without_the_peers_bye() {
    let config = Config {
        close_timeout: Duration::from_secs(5),
        ..Config::default()
    };
    let mut h = Harness::smolmux_peer(config);
    h.recv(Command::Syn, 1, b"").unwrap();
    h.accept();
    h.s.app_close_session(h.now);
    h.transmit();
    assert_eq!(h.s.next_timeout(), Some(h.now + Duration::from_secs(5)));
    h.now += Duration::from_secs(5);
    h.s.on_timeout(h.now);
    let frames = h.transmit();
    let abort = frames.iter().find(|f| f.0 == Command::Fin).unwrap();
    assert!(
        String::from_utf8_lossy(&abort.2).contains("close_timeout"),
        "{abort:?}"
    );
    assert_eq!(signals(&frames), vec![Signal::Bye]);
    assert!(h.s.should_close_write(), "no wait for the peer's BYE");
    h.s.on_write_closed();
    let err = h.s.close_outcome().unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TimedOut);
    assert!(err.to_string().contains("close_timeout"), "{err}");
    assert!(h.s.end().unwrap().is_clean());
}

#[test]
fn dropping_the_mux_lets_streams_in_use_go_on_until_every_handle_is_gone() {
    let config = Config {
        close_timeout: Duration::from_secs(5),
        ping_interval: None,
        ..Config::default()
    };
    let mut h = Harness::smolmux_peer(config);
    let id = opened(&mut h);
    h.s.app_drop_mux(h.now);
    assert_eq!(signals(&h.transmit()), vec![Signal::GoAway]);
    assert_eq!(
        h.s.next_timeout(),
        None,
        "no deadline while a handle is held"
    );
    h.write(id, b"still in use");
    assert_eq!(commands(&h.transmit()), vec![Command::Psh]);
    h.now += Duration::from_secs(1);
    // The send buffer's spent chunk is freed (its deadline would hide the close deadline).
    h.s.on_timeout(h.now);
    h.s.app_drop(id, h.now);
    assert_eq!(
        h.s.next_timeout(),
        Some(h.now + Duration::from_secs(5)),
        "every handle gone: the deadline starts"
    );
    goaway(&mut h);
    h.transmit(); // STOP_SENDING, FIN
    h.recv(Command::Fin, id, b"").unwrap();
    assert_eq!(signals(&h.transmit()), vec![Signal::Bye]);
    bye(&mut h).unwrap();
    assert!(h.s.should_close_write());
}

#[test]
fn a_close_waits_for_the_peers_first_ping_to_know_how_to_end() {
    let mut h = Harness::new(Config::default());
    h.s.app_close_session(h.now);
    h.transmit();
    assert!(
        !h.s.should_close_write(),
        "picomux or smolmux? not known yet"
    );
    h.recv_ping(false);
    h.transmit();
    assert!(
        h.s.should_close_write(),
        "a picomux peer: close the write half"
    );
}

#[test]
fn eof_while_only_the_peer_drains_ends_the_session_at_once() {
    let mut h = Harness::smolmux_peer(Config::default());
    goaway(&mut h);
    h.s.on_eof();
    let end = h.s.end().unwrap();
    assert!(end.is_clean());
    assert_eq!(end.error().kind(), ErrorKind::ConnectionAborted);
}

#[test]
fn write_closed_towards_a_picomux_peer_ends_when_no_handle_and_no_stream_is_left() {
    let mut h = Harness::picomux_peer(Config::default());
    let id = opened(&mut h);
    h.s.app_drop_mux(h.now);
    assert!(close(&mut h, id).is_none());
    h.transmit();
    assert!(h.s.should_close_write());
    h.s.on_write_closed();
    assert!(h.s.end().is_none(), "the stream's reply may still come");
    h.recv(Command::Fin, id, b"").unwrap();
    h.s.app_drop(id, h.now);
    assert!(h.s.end().unwrap().is_clean());
}

#[test]
fn durations_too_long_for_the_clock_mean_never() {
    let config = Config {
        ping_interval: Some(Duration::MAX),
        ping_timeout: Duration::MAX,
        close_timeout: Duration::MAX,
        ..Config::default()
    };
    config.validate().unwrap();
    let mut h = Harness::smolmux_peer(config);
    answer_startup_pings(&mut h, &[1, 1, 1]);
    h.s.app_close_session(h.now);
    h.transmit();
    assert_eq!(h.s.next_timeout(), None);
    h.now += Duration::from_secs(1 << 40);
    h.s.on_timeout(h.now);
    assert!(h.s.end().is_none());
}

// ----- stream credits -----

#[test]
fn opens_past_the_initial_stream_credits_wait_for_a_smolmux_peers_grant() {
    let mut h = Harness::new(Config::default());
    h.recv_ping(true);
    for _ in 0..admission::INITIAL_STREAM_CREDITS {
        h.open();
    }
    assert_eq!(h.s.app_open(Bytes::new()).unwrap(), None, "credits used up");
    let err = h.s.open_blocked_error();
    assert_eq!(err.kind(), ErrorKind::WouldBlock);
    assert!(err.to_string().contains("stream credits"), "{err}");
    h.recv(Command::Nop, 0, &[4, 2, 0, 0, 0]).unwrap(); // STREAMS 2
    assert!(
        std::mem::take(&mut h.s.notify_open),
        "waiting opens are woken"
    );
    h.open();
    h.open();
    assert_eq!(h.s.app_open(Bytes::new()).unwrap(), None);
}

#[test]
fn opens_towards_a_picomux_peer_wait_only_for_max_streams() {
    let config = Config {
        max_streams: 150,
        ..Config::default()
    };
    let mut h = Harness::picomux_peer(config);
    let ids: Vec<u32> = (0..150).map(|_| h.open()).collect();
    assert_eq!(h.s.app_open(Bytes::new()).unwrap(), None, "max_streams");
    assert!(h.s.open_blocked_error().to_string().contains("max_streams"));
    h.transmit();
    h.recv(Command::Fin, ids[0], b"").unwrap();
    h.s.app_drop(ids[0], h.now);
    assert!(
        std::mem::take(&mut h.s.notify_open),
        "a freed slot wakes waiting opens"
    );
    h.open();
}

#[test]
fn accepting_streams_grants_the_peer_more_in_batches_within_the_backlog() {
    let config = Config {
        accept_backlog: 8,
        ..Config::default()
    };
    let mut h = Harness::smolmux_peer(config);
    // The backlog (8) is below the initial credits (100): nothing to grant yet.
    for id in 1..=100 {
        h.recv(Command::Syn, id, b"").unwrap();
    }
    h.transmit(); // 92 refusals: a peer may open 100 at first, the backlog takes 8
    let mut granted = 0;
    for _ in 0..8 {
        h.accept();
        for (command, id, body) in h.transmit() {
            assert_eq!((command, id), (Command::Nop, 0));
            let Some(Signal::MoreStreams(count)) = Signal::decode(&body) else {
                panic!("not a STREAMS grant: {body:?}");
            };
            granted += count;
        }
    }
    // Never more than the backlog has room for (8); grants wait to be worth a frame (a quarter
    // of the backlog) unless the peer has no credit left, so the last one is still owed.
    assert_eq!(granted, 7);
}

#[test]
fn a_refusal_fails_the_openers_operations_with_connection_refused() {
    let mut h = Harness::smolmux_peer(Config::default());
    let id = opened(&mut h);
    h.recv(Command::Fin, id, b"stream refused: session closing")
        .unwrap();
    assert_eq!(write_err(&mut h, id).kind(), ErrorKind::ConnectionRefused);
    h.recv(Command::Syn, 9, b"").unwrap();
    h.accept();
    h.recv(Command::Fin, 9, b"cancelled by the app").unwrap();
    assert_eq!(write_err(&mut h, 9).kind(), ErrorKind::ConnectionReset);
}

#[test]
fn a_connection_failure_after_the_peers_bye_is_an_orderly_end() {
    let mut h = Harness::smolmux_peer(Config::default());
    goaway(&mut h);
    bye(&mut h).unwrap();
    h.s.on_io_error(ErrorKind::BrokenPipe, "connection write failed".into());
    assert!(h.s.end().unwrap().is_clean());
    assert!(matches!(h.s.close_outcome(), Some(Ok(()))));
}

#[test]
fn a_connection_failure_before_any_bye_ends_the_session_with_the_error() {
    let mut h = Harness::smolmux_peer(Config::default());
    goaway(&mut h);
    h.s.on_io_error(ErrorKind::BrokenPipe, "connection write failed".into());
    assert!(!h.s.end().unwrap().is_clean());
}

#[test]
fn closing_after_an_orderly_end_forgets_the_streams_left_in_the_backlog() {
    let mut h = Harness::smolmux_peer(Config::default());
    h.recv(Command::Syn, 1, b"").unwrap();
    h.recv(Command::Psh, 1, b"unread").unwrap();
    h.s.on_eof();
    assert_eq!(
        h.s.stats().pending_accept,
        1,
        "still handed out after an orderly end"
    );
    h.s.app_close_session(h.now);
    assert_eq!(h.s.stats(), Stats::default());
}

// ----- FinQueued, StopQueued and AbortQueued against abort and FIN; recv Finished; Draining, Finishing and WriteClosed against drop, EOF and errors -----

/// A stream with bytes queued beyond the credits, then `close()`: FinQueued.
fn fin_queued(h: &mut Harness) -> u32 {
    let id = opened(h);
    h.s.app_write(id, &[5; 40_000], &noop()).unwrap().unwrap();
    assert!(close(h, id).is_none(), "FIN waits behind the bytes");
    id
}

#[test]
fn abort_while_the_fin_is_queued_drops_the_bytes_and_sends_only_the_reason() {
    let mut h = Harness::smolmux_peer(ten_frame_window());
    let id = fin_queued(&mut h);
    h.s.app_abort(id, "gave up");
    assert_eq!(h.s.stats().send_buffered_bytes, 0);
    // AbortQueued: write and close fail with ConnectionReset, a second abort changes nothing.
    let err = write_err(&mut h, id);
    assert_eq!(err.kind(), ErrorKind::ConnectionReset);
    assert!(
        err.to_string().contains("aborted locally: gave up"),
        "{err}"
    );
    assert_eq!(
        close(&mut h, id).unwrap().unwrap_err().kind(),
        ErrorKind::ConnectionReset
    );
    h.s.app_abort(id, "again");
    h.recv(Command::Nop, id, &[1]).unwrap(); // STOP_SENDING: ignored
    assert_eq!(
        h.transmit(),
        vec![(Command::Fin, id, Bytes::from_static(b"gave up"))],
        "no bytes, no empty FIN: the reason alone"
    );
    h.s.app_drop(id, h.now);
    assert_eq!(h.s.stats().open_streams, 0);
}

#[test]
fn an_abort_fin_while_the_fin_is_queued_drops_the_bytes_and_sends_nothing() {
    let mut h = Harness::smolmux_peer(ten_frame_window());
    let id = fin_queued(&mut h);
    h.recv(Command::Fin, id, b"peer cancelled").unwrap();
    assert_eq!(h.s.stats().send_buffered_bytes, 0);
    assert!(h.transmit().is_empty(), "Done(Reset): nothing answers");
    let err = write_err(&mut h, id);
    assert_eq!(err.kind(), ErrorKind::ConnectionReset);
    assert!(err.to_string().contains("peer cancelled"), "{err}");
    h.s.app_drop(id, h.now);
    assert_eq!(h.s.stats().open_streams, 0);
}

#[test]
fn a_picomux_fin_while_our_fin_is_queued_drops_the_bytes_and_fails_close() {
    let mut h = Harness::picomux_peer(Config::default());
    let id = fin_queued(&mut h);
    h.recv(Command::Fin, id, b"").unwrap();
    assert_eq!(h.s.stats().send_buffered_bytes, 0);
    let err = close(&mut h, id).unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BrokenPipe);
    assert!(h.transmit().is_empty(), "Done(PeerClosed): no FIN back");
    h.s.app_drop(id, h.now);
    assert_eq!(h.s.stats().open_streams, 0);
}

#[test]
fn abort_while_the_empty_fin_after_stop_sending_is_queued_sends_only_the_reason() {
    let mut h = Harness::smolmux_peer(Config::default());
    let id = opened(&mut h);
    h.recv(Command::Nop, id, &[1]).unwrap();
    h.s.app_abort(id, "stop it");
    assert_eq!(
        h.transmit(),
        vec![(Command::Fin, id, Bytes::from_static(b"stop it"))]
    );
    assert_eq!(write_err(&mut h, id).kind(), ErrorKind::ConnectionReset);
}

#[test]
fn an_abort_fin_while_the_empty_fin_after_stop_sending_is_queued_ends_the_stream_silently() {
    let mut h = Harness::smolmux_peer(Config::default());
    let id = opened(&mut h);
    h.recv(Command::Nop, id, &[1]).unwrap();
    h.recv(Command::Fin, id, b"both ways").unwrap();
    assert!(
        h.transmit().is_empty(),
        "Done(Reset): the empty FIN is not sent"
    );
    assert_eq!(write_err(&mut h, id).kind(), ErrorKind::ConnectionReset);
    h.s.app_drop(id, h.now);
    assert_eq!(h.s.stats().open_streams, 0);
}

#[test]
fn a_psh_after_the_peers_fin_is_a_protocol_error() {
    let mut h = Harness::smolmux_peer(Config::default());
    h.recv(Command::Syn, 1, b"").unwrap();
    h.accept();
    h.recv(Command::Fin, 1, b"").unwrap();
    let err = h.recv(Command::Psh, 1, b"late").unwrap_err();
    assert!(err.0.contains("after its FIN"), "{}", err.0);
}

#[test]
fn dropping_the_last_mux_while_draining_sends_no_second_goaway() {
    let mut h = Harness::smolmux_peer(Config::default());
    let id = opened(&mut h);
    h.s.app_close_session(h.now);
    assert_eq!(signals(&h.transmit()), vec![Signal::GoAway]);
    h.s.app_drop_mux(h.now);
    assert!(signals(&h.transmit()).is_empty(), "{:?}", h.transmit());
    assert!(h.s.end().is_none(), "the stream still drains");
    goaway(&mut h);
    h.recv(Command::Fin, id, b"").unwrap();
    h.s.app_drop(id, h.now);
    assert_eq!(signals(&h.transmit()), vec![Signal::Bye]);
}

/// Both sides closing, every stream done: our BYE is out, the peer's not read yet (Finishing).
fn finishing() -> Harness {
    let mut h = Harness::smolmux_peer(Config::default());
    h.s.app_close_session(h.now);
    goaway(&mut h);
    assert_eq!(signals(&h.transmit()), vec![Signal::GoAway, Signal::Bye]);
    assert!(!h.s.should_close_write(), "waits for the peer's BYE");
    h
}

#[test]
fn eof_while_finishing_no_longer_waits_for_the_peers_bye() {
    let mut h = finishing();
    h.s.on_eof();
    assert!(h.s.should_close_write());
    h.s.on_write_closed();
    assert!(h.s.end().unwrap().is_clean());
}

#[test]
fn a_connection_error_while_finishing_ends_the_session_with_the_error() {
    let mut h = finishing();
    h.s.on_io_error(ErrorKind::ConnectionReset, "reset by peer".into());
    let end = h.s.end().unwrap();
    assert!(!end.is_clean());
    assert_eq!(end.error().kind(), ErrorKind::ConnectionReset);
}

/// Towards a picomux peer, our FINs out and the write half closed, a stream still open.
fn write_closed() -> (Harness, u32) {
    let mut h = Harness::picomux_peer(Config::default());
    let id = opened(&mut h);
    h.s.app_close_session(h.now);
    h.transmit();
    assert!(h.s.should_close_write());
    h.s.on_write_closed();
    assert!(h.s.end().is_none());
    (h, id)
}

#[test]
fn the_peers_eof_after_our_write_half_closed_ends_the_session_cleanly() {
    let (mut h, _) = write_closed();
    h.s.on_eof();
    assert!(h.s.end().unwrap().is_clean());
    assert!(matches!(h.s.close_outcome(), Some(Ok(()))));
}

#[test]
fn a_connection_error_after_our_write_half_closed_ends_the_session_with_the_error() {
    let (mut h, _) = write_closed();
    h.s.on_io_error(ErrorKind::ConnectionReset, "reset by peer".into());
    assert!(!h.s.end().unwrap().is_clean());
}
