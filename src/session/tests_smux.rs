//! Unit tests of the session in the smux dialects, playing a hostile or plain Go smux peer:
//! frames in, frames out, no sockets.

use std::io::ErrorKind;
use std::task::Waker;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::tests::psh_bytes;
use super::*;
use crate::config::Role;
use crate::frame::{encode_frame_as, Command, FrameIter};

/// A smux session under test; the peer is played by the test.
struct Smux {
    s: Session,
    protocol: Protocol,
    now: Instant,
}

impl Smux {
    fn new(protocol: Protocol, role: Role) -> Self {
        Smux::with(Config::default().protocol(protocol).role(role))
    }

    fn with(config: Config) -> Self {
        let protocol = config.protocol;
        let mut h = Smux {
            s: Session::new(config),
            protocol,
            now: Instant::now(),
        };
        assert!(
            h.s.end().is_none(),
            "{:?}",
            h.s.end().map(SessionEnd::error)
        );
        h.s.on_timeout(h.now); // the driver's first timer run
        assert_eq!(h.transmit(), [], "smux says nothing first");
        h
    }

    fn recv(&mut self, command: Command, id: u32, body: &[u8]) -> Result<(), ProtocolError> {
        let mut bytes = BytesMut::new();
        encode_frame_as(&mut bytes, self.protocol, command, id, body);
        let mut frames = FrameIter::for_protocol(&bytes, self.protocol);
        let (header, body) = frames.next_frame()?.expect("a whole frame");
        self.s
            .on_frame(header, Bytes::copy_from_slice(body), self.now)
    }

    fn upd(&mut self, id: u32, consumed: u32, window: u32) -> Result<(), ProtocolError> {
        self.recv(Command::Upd, id, &Upd { consumed, window }.to_bytes())
    }

    /// Everything the session sends now, decoded as its dialect (so a frame smux lacks, or a
    /// body smux forbids, fails here).
    fn transmit(&mut self) -> Vec<(Command, u32, Bytes)> {
        let mut out = Transmit::default();
        self.s.poll_transmit(&mut out, usize::MAX, self.now);
        let out = out.to_vec();
        let mut frames = FrameIter::for_protocol(&out, self.protocol);
        let mut result = Vec::new();
        while let Some((h, body)) = frames.next_frame().unwrap() {
            result.push((h.command, h.stream_id, Bytes::copy_from_slice(body)));
        }
        assert_eq!(frames.consumed(), out.len());
        result
    }

    fn open(&mut self) -> u32 {
        self.s
            .app_open(Bytes::new())
            .unwrap()
            .expect("open would wait")
    }

    fn write(&mut self, id: u32, data: &[u8]) -> usize {
        let waker = Waker::noop();
        self.s.app_write(id, data, waker).unwrap().unwrap()
    }

    fn read(&mut self, id: u32, len: usize) -> Option<io::Result<Vec<u8>>> {
        let mut buf = vec![0; len];
        let waker = Waker::noop();
        self.s.app_read(id, &mut buf, waker).map(|r| {
            r.map(|n| {
                buf.truncate(n);
                buf
            })
        })
    }

    fn upds(frames: &[(Command, u32, Bytes)]) -> Vec<(u32, Upd)> {
        frames
            .iter()
            .filter(|f| f.0 == Command::Upd)
            .map(|f| (f.1, Upd::decode(&f.2).expect("an 8-byte UPD")))
            .collect()
    }
}

const BOTH: [Protocol; 2] = [Protocol::SmuxV1, Protocol::SmuxV2];

// ----- what we send -----

#[test]
fn open_write_abort_and_refuse_send_only_what_smux_knows() {
    for protocol in BOTH {
        let mut h = Smux::with(
            Config::default()
                .protocol(protocol)
                .role(Role::Client)
                .accept_backlog(1),
        );
        let id = h.open();
        assert_eq!(id % 2, 1);
        h.write(id, b"data");
        h.s.app_abort(id, "a reason smux cannot carry");
        h.recv(Command::Syn, 2, b"").unwrap();
        h.recv(Command::Syn, 4, b"").unwrap(); // past the backlog: refused
        let frames = h.transmit();
        // SYN, then the abort: a FIN without the reason (the data was discarded). The
        // refusal is a plain FIN too. Decoding as smux checked every body.
        assert!(
            frames.contains(&(Command::Syn, id, Bytes::new())),
            "{frames:?}"
        );
        assert!(
            frames.contains(&(Command::Fin, id, Bytes::new())),
            "{frames:?}"
        );
        assert!(
            frames.contains(&(Command::Fin, 4, Bytes::new())),
            "{frames:?}"
        );
        assert_eq!(psh_bytes(&frames, id), 0, "{frames:?}");
        let err = h.s.app_open(Bytes::from_static(b"meta")).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert_eq!(h.s.last_rtt(), None);
    }
}

#[test]
fn v2_sender_keeps_to_the_assumed_window_until_the_first_upd() {
    let mut h = Smux::new(Protocol::SmuxV2, Role::Server);
    let id = h.open();
    assert_eq!(id, 2);
    let mut sent = 0;
    let chunk = vec![7; 100_000];
    for _ in 0..4 {
        while h.s.app_write(id, &chunk, Waker::noop()).is_some() {}
        sent += psh_bytes(&h.transmit(), id);
    }
    assert_eq!(sent, INITIAL_PEER_WINDOW as usize);
    // The peer read 1000 bytes and has a 64 KiB window: 64 KiB beyond those 1000 may fly.
    h.upd(id, 1000, 65_536).unwrap();
    let frames = h.transmit();
    assert_eq!(psh_bytes(&frames, id), 0, "262,144 in flight > 65,536");
    h.upd(id, INITIAL_PEER_WINDOW, 65_536).unwrap();
    assert_eq!(psh_bytes(&h.transmit(), id), 65_536);
}

#[test]
fn v2_receiver_sends_upd_at_the_first_read_then_every_half_window() {
    let window = Config::MIN_STREAM_RECEIVE_BUFFER;
    let mut h = Smux::with(
        Config::default()
            .protocol(Protocol::SmuxV2)
            .role(Role::Client)
            .stream_receive_buffer(window),
    );
    h.recv(Command::Syn, 2, b"").unwrap();
    assert_eq!(h.transmit(), [], "no UPD before the first read");
    for _ in 0..8 {
        h.recv(Command::Psh, 2, &[1; 60_000]).unwrap();
    }
    h.read(2, 10).unwrap().unwrap();
    let told = Smux::upds(&h.transmit());
    assert_eq!(
        told,
        [(
            2,
            Upd {
                consumed: 10,
                window: window as u32
            }
        )]
    );
    h.read(2, window / 2 - 1).unwrap().unwrap();
    assert_eq!(
        h.transmit(),
        [],
        "not yet half a window since the latest UPD"
    );
    h.read(2, 1).unwrap().unwrap();
    let told = Smux::upds(&h.transmit());
    assert_eq!(told[0].1.consumed, 10 + (window / 2) as u32);
}

#[test]
fn v1_sends_no_upd_and_its_sender_has_no_window() {
    let mut h = Smux::new(Protocol::SmuxV1, Role::Client);
    h.recv(Command::Syn, 2, b"").unwrap();
    h.recv(Command::Psh, 2, b"hello").unwrap();
    h.read(2, 5).unwrap().unwrap();
    let id = h.open();
    let mut sent = 0;
    for _ in 0..8 {
        while h.s.app_write(id, &[3; 100_000], Waker::noop()).is_some() {}
        sent += psh_bytes(&h.transmit(), id);
    }
    assert!(sent > 2 * INITIAL_PEER_WINDOW as usize, "sent {sent}");
    assert!(Smux::upds(&h.transmit()).is_empty());
}

#[test]
fn keepalive_nop_every_interval_and_timeout_when_nothing_arrives() {
    for protocol in BOTH {
        let config = Config::default()
            .protocol(protocol)
            .role(Role::Client)
            .ping_interval(Some(Duration::from_secs(60)))
            .ping_timeout(Duration::from_secs(25));
        let mut h = Smux::with(config);
        let start = h.now;
        // The NOP interval is at most Go's 10 s, whatever ping_interval says.
        assert_eq!(h.s.next_timeout(), Some(start + Duration::from_secs(10)));
        h.now = start + Duration::from_secs(10);
        h.s.on_timeout(h.now);
        assert_eq!(h.transmit(), [(Command::Nop, 0, Bytes::new())]);
        // Any frame counts as alive, a NOP included.
        h.now = start + Duration::from_secs(20);
        h.recv(Command::Nop, 0, b"").unwrap();
        h.now = start + Duration::from_secs(44);
        h.s.on_timeout(h.now);
        assert!(h.s.end().is_none(), "20 s + 25 s not yet passed");
        h.now = start + Duration::from_secs(45);
        h.s.on_timeout(h.now);
        let err = h.s.end().expect("timed out").error();
        assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
        assert!(err.to_string().contains("nothing received"), "{err}");
    }
}

#[test]
fn a_full_receive_budget_stops_the_reader_and_is_no_timeout() {
    for protocol in BOTH {
        let config = Config::default()
            .protocol(protocol)
            .role(Role::Client)
            .stream_receive_buffer(Config::MIN_STREAM_RECEIVE_BUFFER)
            .session_receive_buffer(Config::MIN_STREAM_RECEIVE_BUFFER)
            .ping_timeout(Duration::from_secs(30));
        let mut h = Smux::with(config);
        let start = h.now;
        h.recv(Command::Syn, 2, b"").unwrap();
        while !h.s.reader_paused() {
            h.recv(Command::Psh, 2, &[0; 65_535]).unwrap();
        }
        // Paused, the peer's frames wait unread: its silence is ours.
        h.now = start + Duration::from_secs(300);
        h.s.on_timeout(h.now);
        assert!(h.s.end().is_none());
        h.read(2, 100_000).unwrap().unwrap();
        assert!(!h.s.reader_paused());
    }
}

// ----- a hostile peer -----

#[test]
fn syn_of_our_parity_of_stream_0_or_repeated_ends_the_session() {
    for (role, bad) in [(Role::Client, 3), (Role::Client, 0), (Role::Server, 2)] {
        for protocol in BOTH {
            let mut h = Smux::new(protocol, role);
            let err = h.recv(Command::Syn, bad, b"").unwrap_err().0;
            assert!(err.contains(&format!("SYN for stream {bad}")), "{err}");
        }
    }
    let mut h = Smux::new(Protocol::SmuxV2, Role::Server);
    h.recv(Command::Syn, 1, b"").unwrap();
    let err = h.recv(Command::Syn, 1, b"").unwrap_err().0;
    assert!(err.contains("duplicate SYN"), "{err}");
}

#[test]
fn upd_with_consumed_backwards_or_beyond_what_we_sent_ends_the_session() {
    let mut h = Smux::new(Protocol::SmuxV2, Role::Client);
    let id = h.open();
    h.write(id, &[1; 5000]);
    h.transmit();
    h.upd(id, 4000, 65_536).unwrap();
    let err = h.upd(id, 3999, 65_536).unwrap_err().0;
    assert!(err.contains("went backwards"), "{err}");
    let mut h = Smux::new(Protocol::SmuxV2, Role::Client);
    let id = h.open();
    h.write(id, &[1; 5000]);
    h.transmit();
    let err = h.upd(id, 5001, 65_536).unwrap_err().0;
    assert!(err.contains("only 5000 sent"), "{err}");
}

#[test]
fn an_over_granting_upd_only_lets_us_send_what_was_written() {
    let mut h = Smux::new(Protocol::SmuxV2, Role::Client);
    let id = h.open();
    h.upd(id, 0, u32::MAX).unwrap();
    h.upd(7, 0, u32::MAX).unwrap(); // a stream we do not know: ignored
    h.write(id, &[1; 1000]);
    assert_eq!(psh_bytes(&h.transmit(), id), 1000);
    assert_eq!(h.s.stats().send_buffered_bytes, 0);
}

#[test]
fn v2_psh_beyond_the_window_ends_the_session() {
    let window = Config::MIN_STREAM_RECEIVE_BUFFER;
    let mut h = Smux::with(
        Config::default()
            .protocol(Protocol::SmuxV2)
            .role(Role::Client)
            .stream_receive_buffer(window),
    );
    h.recv(Command::Syn, 2, b"").unwrap();
    for _ in 0..10 {
        h.recv(Command::Psh, 2, &[0; 65_535]).unwrap();
    }
    // 655,350 bytes, the whole window, and no UPD sent: one more byte is too many.
    let err = h.recv(Command::Psh, 2, b"x").unwrap_err().0;
    assert!(err.contains("beyond its window"), "{err}");
}

#[test]
fn psh_for_unknown_streams_and_empty_psh_cost_nothing() {
    for protocol in BOTH {
        let mut h = Smux::new(protocol, Role::Client);
        for id in [2, 4, 1000, u32::MAX - 1] {
            h.recv(Command::Psh, id, &[9; 65_535]).unwrap();
            h.recv(Command::Fin, id, b"").unwrap();
            if protocol == Protocol::SmuxV2 {
                h.upd(id, 0, 1 << 20).unwrap();
            }
        }
        h.recv(Command::Syn, 2, b"").unwrap();
        h.recv(Command::Psh, 2, b"").unwrap();
        assert_eq!(h.s.stats().recv_buffered_bytes, 0);
        assert_eq!(h.transmit(), []);
        assert!(h.s.end().is_none());
    }
}

#[test]
fn psh_after_fin_ends_the_session() {
    for protocol in BOTH {
        let mut h = Smux::new(protocol, Role::Server);
        h.recv(Command::Syn, 1, b"").unwrap();
        h.recv(Command::Fin, 1, b"").unwrap();
        let err = h.recv(Command::Psh, 1, b"late").unwrap_err().0;
        assert!(err.contains("after its FIN"), "{err}");
    }
}

#[test]
fn data_after_our_abort_is_discarded_and_still_acknowledged() {
    let mut h = Smux::with(
        Config::default()
            .protocol(Protocol::SmuxV2)
            .role(Role::Server)
            .stream_receive_buffer(Config::MIN_STREAM_RECEIVE_BUFFER),
    );
    h.recv(Command::Syn, 1, b"").unwrap();
    h.recv(Command::Psh, 1, b"early").unwrap();
    h.s.app_abort(1, "no");
    // The FIN, and the unread bytes acknowledged as if read.
    let frames = h.transmit();
    assert!(
        frames.contains(&(Command::Fin, 1, Bytes::new())),
        "{frames:?}"
    );
    assert_eq!(Smux::upds(&frames)[0].1.consumed, 5, "{frames:?}");
    for _ in 0..8 {
        h.recv(Command::Psh, 1, &[5; 60_000]).unwrap();
    }
    assert_eq!(h.s.stats().recv_buffered_bytes, 0);
    // The sender is not left waiting for a window nobody reads: half a window discarded
    // since the latest UPD brings the next.
    let told = Smux::upds(&h.transmit());
    assert_eq!(told.len(), 1, "{told:?}");
    assert!(told[0].1.consumed >= 5 + Config::MIN_STREAM_RECEIVE_BUFFER as u32 / 2);
}

#[test]
fn nop_and_syn_floods_stay_bounded() {
    for protocol in BOTH {
        let mut h = Smux::with(
            Config::default()
                .protocol(protocol)
                .role(Role::Client)
                .max_streams(16),
        );
        for _ in 0..10_000 {
            h.recv(Command::Nop, 0, b"").unwrap();
        }
        assert_eq!(h.transmit(), [], "NOPs are not answered");
        let mut id = 2;
        while !h.s.reader_paused() {
            h.recv(Command::Syn, id, b"").unwrap();
            id += 2;
        }
        // The refusals queue up to a bound; the reader then waits for the writer.
        assert!(h.s.stats().open_streams <= 16);
        assert!(id < 2 * (MAX_PENDING_REFUSALS as u32 + 100), "{id}");
        let frames = h.transmit();
        assert!(frames.iter().all(|f| f.0 == Command::Fin && f.2.is_empty()));
        assert!(!h.s.reader_paused());
    }
}

#[test]
fn v2_window_shrinks_while_the_sender_interleaves_and_grows_back() {
    let mut h = Smux::new(Protocol::SmuxV2, Role::Client);
    let full = h.s.smux_window();
    h.recv(Command::Syn, 2, b"").unwrap();
    h.recv(Command::Psh, 2, &[1; 65_535]).unwrap();
    h.read(2, 100).unwrap().unwrap();
    assert_eq!(Smux::upds(&h.transmit())[0].1.window, full);
    h.recv(Command::Syn, 4, b"").unwrap();
    // A quarter frame right after the same stream's: a write's tail, it says nothing.
    h.recv(Command::Psh, 2, &[2; 16_383]).unwrap();
    assert_eq!(h.transmit(), []);
    // A quarter frame right after another stream's message: the sender is interleaving with
    // messages; the smaller window is told at once, before any more is read.
    h.recv(Command::Psh, 4, &[4; 64]).unwrap();
    h.recv(Command::Psh, 2, &[2; 16_383]).unwrap();
    let told = Smux::upds(&h.transmit());
    assert_eq!(
        told,
        [(
            2,
            Upd {
                consumed: 100,
                window: 163_830
            }
        )]
    );
    // Its reads are reported every half of the smaller window (81,915 bytes).
    h.read(2, 81_900).unwrap().unwrap();
    assert_eq!(h.transmit(), []);
    h.read(2, 15).unwrap().unwrap();
    assert_eq!(Smux::upds(&h.transmit()).len(), 1);
    // Full frames again: the whole window, at once.
    h.recv(Command::Psh, 2, &[3; 65_535]).unwrap();
    let told = Smux::upds(&h.transmit());
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0].1.window, full);
}

#[test]
fn v2_one_streams_small_frames_in_a_row_keep_its_whole_window() {
    // An echo or a proxy writes what it reads, often in small pieces: with no other stream's
    // frames between them, that is not interleaving. (A smaller window here let a peer that
    // writes 3 MiB before reading the echo wait on us while we waited on it.)
    let mut h = Smux::new(Protocol::SmuxV2, Role::Client);
    let full = h.s.smux_window();
    h.recv(Command::Syn, 2, b"").unwrap();
    h.recv(Command::Psh, 2, &[1; 65_535]).unwrap();
    h.read(2, 100).unwrap().unwrap();
    assert_eq!(Smux::upds(&h.transmit())[0].1.window, full);
    for len in [14_564, 9_000, 20_000, 512, 1] {
        h.recv(Command::Psh, 2, &vec![2; len]).unwrap();
    }
    assert_eq!(h.transmit(), [], "no UPD with a smaller window");
    h.read(2, 200_000).unwrap().unwrap();
    assert!(Smux::upds(&h.transmit())
        .iter()
        .all(|(_, upd)| upd.window == full));
    // Nor is a new stream's first frame, small after another stream's, interleaving: its
    // writer may just have queued little yet.
    h.recv(Command::Syn, 4, b"").unwrap();
    h.recv(Command::Psh, 4, &[4; 14_564]).unwrap();
    h.read(4, 1).unwrap().unwrap();
    assert_eq!(
        Smux::upds(&h.transmit()),
        [(
            4,
            Upd {
                consumed: 1,
                window: full
            }
        )]
    );
}

#[test]
fn v2_a_bulk_sender_filling_what_is_left_of_its_window_keeps_the_whole_window() {
    let mut h = Smux::new(Protocol::SmuxV2, Role::Client);
    let full = h.s.smux_window();
    h.recv(Command::Syn, 2, b"").unwrap();
    // Full frames up to 1,000 bytes short of the initial 262,144-byte window, then the
    // 1,000 the window still allows: the sender stalls there until our UPD.
    for _ in 0..4 {
        h.recv(Command::Psh, 2, &[1; 65_286]).unwrap();
    }
    h.recv(Command::Psh, 2, &[1; 1_000]).unwrap();
    h.read(2, 262_144).unwrap().unwrap();
    let told = Smux::upds(&h.transmit());
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(
        told[0].1.window, full,
        "a stalled bulk stream keeps its whole window"
    );
    // Full frames again, and the same again at the next stall.
    h.recv(Command::Psh, 2, &[1; 65_535]).unwrap();
    h.recv(Command::Psh, 2, &[1; 9]).unwrap();
    h.read(2, 65_544).unwrap().unwrap();
    assert!(Smux::upds(&h.transmit())
        .iter()
        .all(|(_, upd)| upd.window == full));
}

#[test]
fn v2_twenty_stalled_readers_leave_the_session_reading() {
    // Each stream is read once (its first UPD tells the window), then never again, while the
    // peer fills the window it was told. At 4 MiB each, 16 of them would fill the 64 MiB
    // session budget and stop the reader, and every other stream with it.
    let mut h = Smux::new(Protocol::SmuxV2, Role::Client);
    let mut held = 0;
    for id in (2..=40).step_by(2) {
        // Full frames: a bulk sender, not one interleaving the streams with messages.
        h.recv(Command::Syn, id, b"").unwrap();
        h.recv(Command::Psh, id, &[7; MAX_BODY]).unwrap();
        h.read(id, 1).unwrap().unwrap();
        let told = Smux::upds(&h.transmit());
        assert_eq!(told.len(), 1, "stream {id}: {told:?}");
        let window = told[0].1.window as usize;
        assert!(
            window >= INITIAL_PEER_WINDOW as usize,
            "stream {id}: {window}"
        );
        // What the window allows beyond the 1 byte read, less the frame already sent.
        for len in chunks(window + 1 - MAX_BODY, MAX_BODY) {
            h.recv(Command::Psh, id, &vec![7; len]).unwrap();
        }
        held += window;
        assert!(
            !h.s.reader_paused(),
            "stream {id}: reader paused at {held} bytes"
        );
    }
    assert!(held <= Config::default().session_receive_buffer, "{held}");
    // A 21st stream still gets through.
    h.recv(Command::Syn, 42, b"").unwrap();
    h.recv(Command::Psh, 42, b"hello").unwrap();
    assert_eq!(h.read(42, 5).unwrap().unwrap(), b"hello");
}

/// `total` split into pieces of at most `max`.
fn chunks(total: usize, max: usize) -> impl Iterator<Item = usize> {
    (0..total.div_ceil(max)).map(move |i| max.min(total - i * max))
}

/// Plays a Go smux v2 sender writing `total` bytes on stream `id`: it keeps to the window
/// (262,144 bytes until the first UPD, then the latest UPD's consumed + window) and reads
/// our UPDs as they come. Returns the bytes it could send.
fn peer_writes_within_the_window(h: &mut Smux, id: u32, total: usize) -> usize {
    let (mut sent, mut consumed, mut window) = (0usize, 0u32, INITIAL_PEER_WINDOW);
    loop {
        let allowed = (consumed as usize + window as usize).saturating_sub(sent);
        let len = allowed.min(total - sent).min(MAX_BODY);
        if len == 0 {
            for (upd_id, upd) in Smux::upds(&h.transmit()) {
                if upd_id == id && upd.consumed as usize + upd.window as usize > sent {
                    (consumed, window) = (upd.consumed, upd.window);
                }
            }
            let allowed = (consumed as usize + window as usize).saturating_sub(sent);
            if sent == total || allowed == 0 {
                return sent;
            }
            continue;
        }
        h.recv(Command::Psh, id, &vec![7; len]).unwrap();
        sent += len;
    }
}

#[test]
fn v2_after_abort_and_drop_the_peer_may_write_on_until_its_fin() {
    let window = Config::MIN_STREAM_RECEIVE_BUFFER;
    let mut h = Smux::with(
        Config::default()
            .protocol(Protocol::SmuxV2)
            .role(Role::Server)
            .stream_receive_buffer(window),
    );
    h.recv(Command::Syn, 1, b"").unwrap();
    let (id, _) = h.s.app_accept().unwrap().unwrap();
    h.s.app_abort(id, "no");
    h.s.app_drop(id, h.now);
    assert!(h.transmit().contains(&(Command::Fin, 1, Bytes::new())));
    // The entry stays, discarding and acknowledging, so the peer's writer never waits.
    assert_eq!(
        peer_writes_within_the_window(&mut h, 1, 4 * window),
        4 * window
    );
    assert_eq!(h.s.stats().open_streams, 1);
    assert_eq!(h.s.stats().recv_buffered_bytes, 0);
    h.recv(Command::Fin, 1, b"").unwrap();
    assert_eq!(h.s.stats().open_streams, 0, "forgotten at the peer's FIN");
}

#[test]
fn v2_a_refused_stream_is_acknowledged_until_its_fin_within_max_streams() {
    let window = Config::MIN_STREAM_RECEIVE_BUFFER;
    let mut h = Smux::with(
        Config::default()
            .protocol(Protocol::SmuxV2)
            .role(Role::Server)
            .stream_receive_buffer(window)
            .accept_backlog(1)
            .max_streams(3),
    );
    h.recv(Command::Syn, 1, b"").unwrap();
    h.recv(Command::Syn, 3, b"").unwrap(); // backlog full: refused
    assert!(h.transmit().contains(&(Command::Fin, 3, Bytes::new())));
    assert_eq!(
        peer_writes_within_the_window(&mut h, 3, 4 * window),
        4 * window
    );
    assert_eq!(h.s.stats().open_streams, 2, "the refused entry counts");
    assert_eq!(h.s.stats().pending_accept, 1);
    // A full table refuses without an entry: memory stays within max_streams.
    h.recv(Command::Syn, 5, b"").unwrap();
    h.recv(Command::Syn, 7, b"").unwrap();
    assert_eq!(h.s.stats().open_streams, 3);
    h.recv(Command::Fin, 3, b"").unwrap();
    assert_eq!(h.s.stats().open_streams, 2, "forgotten at the peer's FIN");
    assert_eq!(h.s.app_accept().unwrap().unwrap().0, 1);
}

#[test]
fn v2_writes_fail_when_the_peer_fins_and_grants_no_window_for_ping_timeout() {
    let timeout = Duration::from_secs(5);
    let mut h = Smux::with(
        Config::default()
            .protocol(Protocol::SmuxV2)
            .role(Role::Client)
            .ping_timeout(timeout)
            .ping_interval(None),
    );
    let id = h.open();
    let data = vec![1; 300_000];
    let mut written = 0;
    while written < data.len() {
        written += h.write(id, &data[written..]);
        psh_bytes(&h.transmit(), id);
    }
    assert_eq!(
        h.s.stats().send_buffered_bytes,
        300_000 - INITIAL_PEER_WINDOW as usize
    );
    // A smolmux peer half-closes and keeps acknowledging: the clock starts afresh at each UPD.
    h.recv(Command::Fin, id, b"").unwrap();
    h.s.on_timeout(h.now);
    assert_eq!(
        h.s.stall_deadline(),
        Some(h.now + timeout),
        "the timer knows"
    );
    h.now += timeout / 2;
    h.upd(id, 1000, INITIAL_PEER_WINDOW).unwrap();
    assert_eq!(psh_bytes(&h.transmit(), id), 1000);
    h.s.on_timeout(h.now);
    h.now += timeout - Duration::from_millis(1);
    h.s.on_timeout(h.now);
    let waker = Waker::noop();
    assert!(
        h.s.app_flush(id, waker).is_none(),
        "still waiting for the window"
    );
    // A Go peer forgets the stream at its Close: no UPD for ping_timeout fails the writes.
    h.now += Duration::from_millis(1);
    h.s.on_timeout(h.now);
    let err = h.s.app_flush(id, waker).unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BrokenPipe);
    assert!(err.to_string().contains("stopped granting window"), "{err}");
    let err = h.s.app_write(id, b"more", waker).unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BrokenPipe);
    assert_eq!(h.s.stats().send_buffered_bytes, 0);
    assert_eq!(h.transmit(), [(Command::Fin, id, Bytes::new())]);
    assert!(h.s.end().is_none(), "the session goes on");
}
